"""Training rules (§1.1): loss trend, learning-rate range, throughput degradation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.hits import WARNING, make_hits
from ftops.monitoring.series import (
    NS_PER_MINUTE,
    MetricFrame,
    medians_between,
    rolling_mean,
    rolling_median,
    shifted_time,
    time_rolling_median,
    time_window_stats,
)
from ftops.policy import LearningRatePolicy, LossPolicy, ThroughputPolicy


def _group_reduce(ufunc: np.ufunc, values: np.ndarray, frame: MetricFrame) -> np.ndarray:
    """Per-group reduction broadcast back to rows."""
    starts = frame.group_starts()
    return ufunc.reduceat(values, starts)[frame.group]


# exact medians at the candidate rows (and the rows one window earlier) only while their windows
# hold fewer values than this many per row of the series: beyond, one rolling median is cheaper
_MAX_CANDIDATE_CELLS_PER_ROW = 16


def _maybe_rising(values: np.ndarray, adj: np.ndarray, before_idx: np.ndarray, valid: np.ndarray,
                  window_ns: int, policy: LossPolicy) -> np.ndarray | None:
    """Rows whose window median might exceed (1 + ratio) x the median one window earlier, or None
    when too many might (then every median is computed).

    A median lies within one standard deviation of the mean (Hotelling and Solomons), and rolling
    means and deviations are linear-time where rolling medians are not: mean + sd bounds the median
    now from above, mean - sd the earlier one from below. Rows the bounds rule out cannot fire; the
    slack covers the rounding of rolling sums, so it only ever admits more rows, never fewer.
    """
    if 1.0 + policy.trend_increase_ratio <= 0 or len(values) == 0:
        return None
    mean, sd, count = time_window_stats(values, adj, window_ns)
    sd = np.where(count == 1, 0.0, sd)  # a single sample is its own median
    slack = 1e-4 * (np.abs(mean) + sd)
    upper, lower = mean + sd + slack, mean - sd - slack
    j = np.maximum(before_idx, 0)
    enough = (count >= policy.trend_min_samples) & (count[j] >= policy.trend_min_samples)
    with np.errstate(invalid="ignore"):
        ruled_out = upper * (1 + 1e-9) < (1.0 + policy.trend_increase_ratio) * lower[j]
    maybe = valid & enough & ~ruled_out
    rows = np.flatnonzero(maybe)
    if len(rows) == 0:
        return maybe
    first = np.searchsorted(adj, adj[rows] - window_ns, side="right")
    width = int((rows - first).max()) + 1
    if 2 * len(rows) * width > _MAX_CANDIDATE_CELLS_PER_ROW * len(values):
        return None
    return maybe


_LEVEL_SAMPLES = 10  # a run's level (start, best so far): mean of this many samples


def _progress_levels(frame: MetricFrame) -> tuple[np.ndarray, np.ndarray]:
    """(start, best so far) per row: the mean of the series' first `_LEVEL_SAMPLES` samples and the
    lowest rolling mean of `_LEVEL_SAMPLES` samples up to the row (linear-time passes)."""
    level = rolling_mean(frame.value, frame.group, _LEVEL_SAMPLES)
    best = pd.Series(level).groupby(frame.group).cummin().to_numpy()
    starts = frame.group_starts()
    size = np.diff(np.r_[starts, len(frame)])
    start = level[starts + np.minimum(_LEVEL_SAMPLES, size) - 1][frame.group]
    return start, best


def loss_rising_hits(frame: MetricFrame, policy: LossPolicy, min_giveback: float = 0.0) -> pd.DataFrame:
    """Median loss of the last window vs the window before it rose by more than the ratio, and the
    loss gave back at least `min_giveback` of the progress the run had made (start - best level).

    Medians, not means or end points: one spike inside a window must not read as a trend. The
    give-back: healthy multi-epoch runs (W&B Alpaca, 3 epochs) drift up 25-30 % late in their last
    epoch while ending far below where they started; a run that is in trouble loses what it had
    learned, and a run that never made progress gives back everything at once.
    """
    finite = frame.take(np.isfinite(frame.value))
    window_ns = int(policy.trend_window_minutes * NS_PER_MINUTE)
    text = f"{policy.trend_window_minutes:g} min vs the {policy.trend_window_minutes:g} min before"
    if len(finite) == 0:
        return make_hits(finite, "loss_rising", np.zeros(0, bool), WARNING, policy.trend_increase_ratio, text)
    adj = shifted_time(finite.group, finite.ts, window_ns)
    before_idx = np.searchsorted(adj, adj - window_ns, side="right") - 1
    valid = (before_idx >= 0) & (finite.group[np.maximum(before_idx, 0)] == finite.group)
    maybe = _maybe_rising(finite.value, adj, before_idx, valid, window_ns, policy)
    if maybe is None:
        now = time_rolling_median(finite.value, finite.group, finite.ts, window_ns, policy.trend_min_samples)
    else:
        rows = np.union1d(np.flatnonzero(maybe), before_idx[maybe])
        first = np.searchsorted(adj, adj[rows] - window_ns, side="right")
        now = np.full(len(finite), np.nan)
        now[rows] = medians_between(finite.value, first, rows, policy.trend_min_samples)
    before = np.where(valid, now[np.maximum(before_idx, 0)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = np.where(before > 0, now / before - 1.0, np.nan)
    # compared as a product: now / before - 1 turns an exact +10 % into 0.1000000001
    fire = (before > 0) & (now > before * (1.0 + policy.trend_increase_ratio))
    if min_giveback > 0 and fire.any():
        start, best = _progress_levels(finite)
        fire &= now > best + min_giveback * np.maximum(start - best, 0.0)
    return make_hits(finite, "loss_rising", fire, WARNING, policy.trend_increase_ratio, text,
                     ref=before, score=rise, badness=rise, value=now)


def not_learning_hits(frame: MetricFrame, min_samples: int, min_improvement: float) -> pd.DataFrame:
    """not_learning: after `min_samples` logged losses, the median of the last quarter is less than
    `min_improvement` below the median of the first tenth (at least 3 samples each).

    Judged once per series, at its latest sample, and only when the series starts at the run's
    beginning (its first step within two logging intervals, or steps unknown): a window into the
    middle of a converged run is flat too, and is not a run that never learned.
    """
    lf = frame.take(np.isfinite(frame.value))
    text = f"first tenth vs last quarter of {min_samples}+ logged losses"
    n = len(lf)
    if n == 0:
        return make_hits(lf, "not_learning", np.zeros(0, bool), WARNING, min_improvement, text)
    pos = lf.position_in_group()
    size = np.bincount(lf.group)[lf.group]
    head = pos < np.maximum(3, np.ceil(size / 10))
    tail = pos >= size - np.maximum(3, size // 4)
    groups = np.arange(lf.n_groups)
    start = pd.Series(lf.value[head]).groupby(lf.group[head]).median().reindex(groups).to_numpy()[lf.group]
    recent = pd.Series(lf.value[tail]).groupby(lf.group[tail]).median().reindex(groups).to_numpy()[lf.group]
    starts = lf.group_starts()
    first_step = lf.step[starts]
    step_gap = pd.Series(np.diff(lf.step, prepend=np.nan)).where(pos > 0).groupby(lf.group).median().reindex(
        groups).to_numpy()
    from_start = (np.isnan(first_step) | (first_step <= 2 * np.where(step_gap > 0, step_gap, np.inf)))[lf.group]
    with np.errstate(invalid="ignore", divide="ignore"):
        improvement = np.where(start > 0, (start - recent) / start, np.nan)
    is_last = np.r_[lf.group[1:] != lf.group[:-1], True]
    fire = is_last & (size >= min_samples) & from_start & (improvement < min_improvement)
    return make_hits(lf, "not_learning", fire, WARNING, min_improvement, text, ref=start, score=improvement,
                     value=recent)


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


def throughput_degraded(frame: MetricFrame, policy: ThroughputPolicy) -> tuple[MetricFrame, np.ndarray, dict]:
    """(finite samples/s, degraded mask, details for the hits) on the rule of `throughput_hits`."""
    sps = frame.take(np.isfinite(frame.value))
    n = len(sps)
    k = max(policy.sustained_samples, 1)
    if n == 0:
        return sps, np.zeros(0, bool), {}
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
    configured = np.nan if policy.baseline_samples_per_second is None else policy.baseline_samples_per_second
    baseline = np.where(has_own, own, configured)
    judged = np.where(has_own, pos >= skip + count, policy.baseline_samples_per_second is not None)
    level = rolling_median(sps.value, sps.group, k, 1)
    # a job with fewer samples than the smoothing window is judged on what it has
    judged &= (pos >= k - 1) | (size < k)
    limit = policy.degradation_ratio * baseline
    fire = judged & (level < limit)
    return sps, fire, {"limit": limit, "baseline": baseline, "has_own": has_own, "level": level}


def throughput_hits(frame: MetricFrame, policy: ThroughputPolicy) -> pd.DataFrame:
    """samples/s (rolling median of a few samples) below ratio x baseline.

    The baseline is the job's own early steady state (median of the samples after a start-up skip)
    when it has enough samples and the policy allows it, else the configured number if one is set;
    samples before a job baseline exists are not judged against it, and a job with neither (one
    run-average sample, no configured number) is not judged at all.
    """
    k = max(policy.sustained_samples, 1)
    text = f"median of the last {k} samples"
    sps, fire, d = throughput_degraded(frame, policy)
    if len(sps) == 0:
        return make_hits(sps, "throughput_degraded", np.zeros(0, bool), WARNING, np.nan, text)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = d["level"] / d["baseline"]
    return make_hits(sps, "throughput_degraded", fire, WARNING, d["limit"], text, ref=d["baseline"],
                     score=np.where(d["has_own"], 1.0, 0.0), badness=-ratio, value=d["level"])
