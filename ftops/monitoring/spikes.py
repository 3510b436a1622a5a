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


def loss_spike_hits(frame: MetricFrame, policy: LossPolicy) -> list[pd.DataFrame]:
    """loss_spike (warning) and loss_divergence (critical) on the finite training_loss samples."""
    finite = frame.take(np.isfinite(frame.value))
    window = policy.spike_window_samples
    z, med, ratio = spike_scores(finite, window, min(_MIN_LOSS_HISTORY, window),
                                 min(policy.spike_min_ratio, policy.divergence_ratio))
    spike = (z >= policy.spike_robust_z) & (ratio >= policy.spike_min_ratio)
    high = ratio >= policy.divergence_ratio
    diverged = run_position(high, finite.group) >= policy.divergence_samples - 1
    text = f"last {window} samples; threshold z {policy.spike_robust_z:g} and >= {policy.spike_min_ratio:g}x"
    return [
        make_hits(finite, "loss_spike", spike & ~diverged, WARNING, policy.spike_robust_z, text, ref=med, score=z),
        make_hits(finite, "loss_divergence", diverged, CRITICAL, policy.divergence_ratio,
                  f"{policy.divergence_samples} consecutive samples vs the last {window}", ref=med, score=ratio),
    ]


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
