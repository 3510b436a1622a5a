"""Robust spike detection for training_loss and grad_norm (rolling median / MAD).

Measured on the real trainer_state files (../shared/realdata): healthy runs reach robust z 5 on
1.15x wiggles of a tight loss curve, and a healthy Mistral LoRA logs lone clipped grad-norm spikes
of 4.5x its median (robust z 16). So a spike needs both a high robust z and a visible ratio, and a
grad-norm *explosion* (critical) needs, on top, a huge ratio or persistence; the flagged loss spikes
(MetaMath, GeoLLM) are 1.9-2.3x at z 6-9.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.hits import CRITICAL, INFO, WARNING, make_hits, run_length, run_position
from ftops.monitoring.series import MetricFrame, robust_z, rolling_median, rolling_min, window_medians
from ftops.policy import GradNormPolicy, LossPolicy

_MIN_LOSS_HISTORY = 5


# above this share of rows that might be spikes, one rolling median over all rows is cheaper
_MAX_CANDIDATE_SHARE = 1 / 16


def spike_scores(frame: MetricFrame, window: int, min_history: int,
                 min_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(robust z, trailing median, ratio to it) against the `window` samples before each sample.

    Only rows whose ratio may reach `min_ratio` get numbers (NaN elsewhere): a spike needs both,
    and the medians are the costly part. The trailing minimum bounds the trailing median from
    below, so x < min_ratio x minimum rules a row out in one linear pass; the exact median (and
    the MAD) are then computed only for the rows left.
    """
    v, group = frame.value, frame.group
    med = None
    if min_ratio > 0 and len(v):
        limit = min_ratio * rolling_min(v, group, window, exclude_current=True)
        # a hair of slack: the rule divides (x / median >= ratio), this multiplies
        with np.errstate(invalid="ignore"):
            maybe = v >= limit - np.abs(limit) * 1e-9
        if maybe.sum() <= len(v) * _MAX_CANDIDATE_SHARE:
            med = np.full(len(v), np.nan)
            rows = np.flatnonzero(maybe)
            med[rows] = window_medians(v, group, window, min_history, rows, exclude_current=True)
    if med is None:
        med = rolling_median(v, group, window, min_history, exclude_current=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(med > 0, v / med, np.nan)
    z, _, _ = robust_z(v, group, window, min_history, rows=ratio >= min_ratio, median=med)
    return z, med, ratio


def non_finite_hits(frame: MetricFrame, rule: str) -> pd.DataFrame:
    bad = ~np.isfinite(frame.value)
    return make_hits(frame, rule, bad, CRITICAL, np.nan, "each sample")


def _early_floor(finite: MetricFrame, window: int) -> np.ndarray:
    """The lowest level a series reached before each of its first `window` samples (NaN elsewhere).

    Early in a run there is no trailing median to compare with, and a loss that climbs over a
    handful of logged points drags any median up with it: the floor it had reached is the
    reference. Levels are medians of 3 samples, so one low blip does not set the floor.
    """
    pos = finite.position_in_group()
    out = np.full(len(finite), np.nan)
    early = pos < window  # each series' first rows: a contiguous head per group
    if not early.any():
        return out
    v, group, p = finite.value[early], finite.group[early], pos[early]
    level = rolling_median(v, group, 3, 1)
    before = np.where(p >= 1, np.r_[np.nan, level[:-1]], np.nan)
    floor = pd.Series(before).groupby(group).cummin().to_numpy()
    out[early] = np.where(p >= 2, floor, np.nan)
    return out


def loss_spike_hits(frame: MetricFrame, policy: LossPolicy, plausible_max: float | None = None) -> list[pd.DataFrame]:
    """loss_spike (info), loss_divergence (critical) and loss_implausible (critical) on the finite
    training_loss samples.

    A spike is news, not a warning: a loss that comes back is harmless, and one that does not is a
    divergence. Healthy per-step losses (W&B Alpaca runs) reach 2.6x their 20-sample median at
    robust z 13, above the flagged spikes of MetaMath (1.9-2.3x at z 6-9): no local statistic tells
    them apart, so spikes cannot be warnings. A divergence is judged against the trailing median,
    and during the first `spike_window_samples` samples against the floor reached so far, so a
    short run that climbs several-fold over a few logged points is caught.
    """
    finite = frame.take(np.isfinite(frame.value))
    window = policy.spike_window_samples
    z, med, ratio = spike_scores(finite, window, min(_MIN_LOSS_HISTORY, window),
                                 min(policy.spike_min_ratio, policy.divergence_ratio))
    spike = (z >= policy.spike_robust_z) & (ratio >= policy.spike_min_ratio)
    floor = _early_floor(finite, window)
    early = np.isfinite(floor)
    ref = np.where(early, floor, med)
    with np.errstate(invalid="ignore", divide="ignore"):
        div_ratio = np.where(ref > 0, finite.value / ref, np.nan)
    high = div_ratio >= policy.divergence_ratio
    in_run = run_position(high, finite.group)
    diverged = in_run >= policy.divergence_samples - 1
    n = len(finite)
    if n:
        # a climb that reaches the end of a series too short to show it persist counts from 2 samples
        idx = np.arange(n)
        last_idx = np.flatnonzero(np.r_[finite.group[1:] != finite.group[:-1], True])[finite.group]
        size = np.bincount(finite.group)[finite.group]
        length = run_length(high, finite.group)
        reaches_end = high & (last_idx - idx == length - in_run - 1) & (length >= 2) & (size < window)
    else:
        reaches_end = np.zeros(0, dtype=bool)
    diverged |= reaches_end
    text = f"last {window} samples; threshold z {policy.spike_robust_z:g} and >= {policy.spike_min_ratio:g}x"
    out = [
        make_hits(finite, "loss_spike", spike & ~diverged, INFO, policy.spike_robust_z, text, ref=med, score=z),
        make_hits(finite, "loss_divergence", diverged & ~early, CRITICAL, policy.divergence_ratio,
                  f"{policy.divergence_samples} consecutive samples vs the last {window}", ref=ref, score=div_ratio),
        make_hits(finite, "loss_divergence", diverged & early, CRITICAL, policy.divergence_ratio,
                  f"consecutive samples vs the lowest level of the run's first {window}", ref=ref,
                  score=div_ratio),
    ]
    if plausible_max is not None:
        out.append(make_hits(finite, "loss_implausible", finite.value > plausible_max, CRITICAL, plausible_max,
                             "each sample"))
    return out


def grad_norm_hits(frame: MetricFrame, policy: GradNormPolicy) -> list[pd.DataFrame]:
    """grad_norm_explosion (critical) and grad_norm_spike (info) on the finite grad_norm samples."""
    finite = frame.take(np.isfinite(frame.value))
    window = policy.window_steps
    z, med, ratio = spike_scores(finite, window, min(policy.min_history_samples, window),
                                 policy.spike_min_ratio if policy.require_robust_z else 0.0)
    above = finite.value > policy.threshold
    text = f"last {window} samples; threshold z {policy.robust_z:g}, >= {policy.spike_min_ratio:g}x"
    if not policy.require_robust_z:
        return [make_hits(finite, "grad_norm_explosion", above, CRITICAL, policy.threshold,
                          "each sample", ref=med, score=z)]
    far = above & (z >= policy.robust_z) & (ratio >= policy.spike_min_ratio)
    # a whole persistent run is one explosion, including the samples before it was known to persist
    persistent = run_length(far, finite.group) >= policy.sustained_samples
    explosion = far & ((ratio >= policy.explosion_ratio) | persistent)
    return [
        make_hits(finite, "grad_norm_explosion", explosion, CRITICAL, policy.threshold, text, ref=med, score=z),
        make_hits(finite, "grad_norm_spike", far & ~explosion, INFO, policy.threshold, text, ref=med, score=z),
    ]
