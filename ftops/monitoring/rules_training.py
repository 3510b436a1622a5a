"""Training rules (§1.1): loss trend, learning-rate range, throughput degradation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.hits import WARNING, make_hits
from ftops.monitoring.series import NS_PER_MINUTE, MetricFrame, rolling_median, shifted_time, time_rolling_median
from ftops.policy import LearningRatePolicy, LossPolicy, ThroughputPolicy


def _group_reduce(ufunc: np.ufunc, values: np.ndarray, frame: MetricFrame) -> np.ndarray:
    """Per-group reduction broadcast back to rows."""
    starts = frame.group_starts()
    return ufunc.reduceat(values, starts)[frame.group]


def loss_rising_hits(frame: MetricFrame, policy: LossPolicy) -> pd.DataFrame:
    """Median loss of the last window vs the window before it rose by more than the ratio.

    Medians, not means or end points: one spike inside a window must not read as a trend.
    """
    finite = frame.take(np.isfinite(frame.value))
    window_ns = int(policy.trend_window_minutes * NS_PER_MINUTE)
    text = f"{policy.trend_window_minutes:g} min vs the {policy.trend_window_minutes:g} min before"
    if len(finite) == 0:
        return make_hits(finite, "loss_rising", np.zeros(0, bool), WARNING, policy.trend_increase_ratio, text)
    now = time_rolling_median(finite.value, finite.group, finite.ts, window_ns, policy.trend_min_samples)
    adj = shifted_time(finite.group, finite.ts, window_ns)
    before_idx = np.searchsorted(adj, adj - window_ns, side="right") - 1
    valid = (before_idx >= 0) & (finite.group[np.maximum(before_idx, 0)] == finite.group)
    before = np.where(valid, now[np.maximum(before_idx, 0)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = np.where(before > 0, now / before - 1.0, np.nan)
    # compared as a product: now / before - 1 turns an exact +10 % into 0.1000000001
    fire = (before > 0) & (now > before * (1.0 + policy.trend_increase_ratio))
    return make_hits(finite, "loss_rising", fire, WARNING, policy.trend_increase_ratio, text,
                     ref=before, score=rise, badness=rise, value=now)


def learning_rate_hits(frame: MetricFrame, policy: LearningRatePolicy) -> pd.DataFrame:
    """Learning rate outside [min, max], except below min during warm-up or the final decay.

    Warm-up: the samples before the job first reaches its peak, when that peak is in range.
    Decay end: the samples after the last increase, when that tail started in range (a schedule
    that decays from a good value towards 0). A run stuck at a tiny constant rate is still caught.
    """
    lr = frame.take(np.isfinite(frame.value))
    text = f"expected range [{policy.min:g}, {policy.max:g}]"
    n = len(lr)
    if n == 0:
        return make_hits(lr, "learning_rate_out_of_range", np.zeros(0, bool), WARNING, policy.max, text)
    v = lr.value
    idx = np.arange(n)
    starts = lr.group_starts()
    group_start = starts[lr.group]
    peak = _group_reduce(np.maximum, v, lr)
    first_peak = np.minimum.reduceat(np.where(v == peak, idx, n), starts)[lr.group]
    warmup = (idx < first_peak) & (peak >= policy.min)
    rose = np.r_[False, (v[1:] > v[:-1]) & (lr.group[1:] == lr.group[:-1])]
    last_rise = np.maximum.reduceat(np.where(rose, idx, group_start), starts)[lr.group]
    decay = (idx >= last_rise) & (v[last_rise] >= policy.min)
    high = v > policy.max
    low = (v < policy.min) & ~warmup & ~decay
    threshold = np.where(high, policy.max, policy.min)
    # how far outside the range, in decades, so a window's worst sample is the most extreme either way
    with np.errstate(divide="ignore", invalid="ignore"):
        badness = np.where(high, np.log10(v / policy.max), np.log10(policy.min / np.maximum(v, 1e-300)))
    return make_hits(lr, "learning_rate_out_of_range", high | low, WARNING, threshold, text, badness=badness)


def throughput_hits(frame: MetricFrame, policy: ThroughputPolicy) -> pd.DataFrame:
    """samples/s (rolling median of a few samples) below ratio x baseline.

    The baseline is the job's own early steady state (median of the samples after a start-up skip)
    when it has enough samples and the policy allows it, else the configured number; samples
    before a job baseline exists are not judged against it.
    """
    sps = frame.take(np.isfinite(frame.value))
    n = len(sps)
    k = max(policy.sustained_samples, 1)
    text = f"median of the last {k} samples"
    if n == 0:
        return make_hits(sps, "throughput_degraded", np.zeros(0, bool), WARNING, np.nan, text)
    pos = sps.position_in_group()
    size = np.bincount(sps.group)[sps.group]
    skip, count = policy.baseline_skip_samples, policy.baseline_samples
    own = np.full(n, np.nan)
    has_own = np.zeros(n, dtype=bool)
    if policy.use_job_baseline:
        early = (pos >= skip) & (pos < skip + count)
        medians = pd.Series(sps.value[early]).groupby(sps.group[early]).median()
        own = medians.reindex(np.arange(sps.n_groups)).to_numpy()[sps.group]
        has_own = size >= skip + count
    baseline = np.where(has_own, own, policy.baseline_samples_per_second)
    judged = np.where(has_own, pos >= skip + count, True)
    level = rolling_median(sps.value, sps.group, k, 1)
    # a job with fewer samples than the smoothing window is judged on what it has
    judged &= (pos >= k - 1) | (size < k)
    limit = policy.degradation_ratio * baseline
    fire = judged & (level < limit)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = level / baseline
    return make_hits(sps, "throughput_degraded", fire, WARNING, limit, text, ref=baseline,
                     score=np.where(has_own, 1.0, 0.0), badness=-ratio, value=level)
