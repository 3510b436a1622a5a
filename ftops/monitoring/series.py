"""Metric samples as sorted per-metric arrays, and the grouped rolling helpers every rule uses.

Rules work on one metric at a time, with rows sorted by (job, device, ts, step) so that a job's
series on one device is one contiguous block (a "group"). Grouped rolling statistics are computed
in one pass over the whole array instead of one pandas call per group: each group is padded with
NaN (sample windows) or moved apart in time (time windows) so that no window reaches into the
previous group, and pandas' C rolling kernels skip the NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NS_PER_MINUTE = 60 * 1_000_000_000


@dataclass(frozen=True)
class MetricFrame:
    """One metric's samples, sorted by job, device, ts, step; codes index into the name arrays."""

    metric: str
    job: np.ndarray  # int64 codes into job_names
    device: np.ndarray  # int64 codes into device_names ("" = no device)
    group: np.ndarray  # 0..G-1, one per (job, device), contiguous and increasing
    ts: np.ndarray  # int64 ns since epoch, UTC
    step: np.ndarray  # float64, NaN where unknown
    value: np.ndarray  # float64
    job_names: np.ndarray
    device_names: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    @property
    def n_groups(self) -> int:
        return int(self.group[-1]) + 1 if len(self.group) else 0

    def group_starts(self) -> np.ndarray:
        """Index of the first row of each group."""
        return np.flatnonzero(np.r_[True, self.group[1:] != self.group[:-1]]) if len(self) else np.array([], int)

    def position_in_group(self) -> np.ndarray:
        starts = self.group_starts()
        return np.arange(len(self)) - starts[self.group]

    def take(self, mask: np.ndarray) -> MetricFrame:
        """The rows under `mask`, with groups renumbered (for derived series such as finite values)."""
        group = self.group[mask]
        if len(group):
            group = np.cumsum(np.r_[True, group[1:] != group[:-1]]) - 1
        return MetricFrame(self.metric, self.job[mask], self.device[mask], group, self.ts[mask],
                           self.step[mask], self.value[mask], self.job_names, self.device_names)


def _codes(values: pd.Series, null_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes in order of first appearance (so rows already grouped stay sorted) and names.

    With `null_name`, nulls get their own code named `null_name` instead of -1.
    """
    codes, names = pd.factorize(values, sort=False, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    names = np.asarray(names, dtype=object)
    if null_name is not None and (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names = np.r_[names, np.asarray([null_name], dtype=object)]
    return codes, names


def _is_lex_sorted(keys: list[np.ndarray]) -> bool:
    """Whether rows are already sorted by `keys` (primary first): readers usually emit them so."""
    if len(keys[0]) < 2:
        return True
    tied = np.ones(len(keys[0]) - 1, dtype=bool)
    for key in keys:
        diff = key[1:] - key[:-1]
        if np.any(tied & (diff < 0)):
            return False
        tied &= diff == 0
    return True


def split_by_metric(samples: pd.DataFrame) -> dict[str, MetricFrame]:
    """`metric_samples` -> one MetricFrame per metric present, each sorted by job, device, ts, step.

    Readers emit rows grouped by job and series and ordered in time; then no sort is needed, only
    a stable gather by metric (a radix sort of a few small codes). Anything else is lex-sorted.
    """
    if samples.empty:
        return {}
    metric_codes, metric_names = _codes(samples["metric"])
    job_codes, job_names = _codes(samples["job_id"])
    if "device" in samples:
        device_codes, device_names = _codes(samples["device"], null_name="")
    else:
        device_codes, device_names = np.zeros(len(samples), np.int64), np.asarray([""], dtype=object)
    ts = pd.to_datetime(samples["ts"], utc=True).dt.as_unit("ns").array.asi8
    step = (pd.to_numeric(samples["step"], errors="coerce").astype("float64").to_numpy(na_value=np.nan)
            if "step" in samples else np.full(len(samples), np.nan))
    value = pd.to_numeric(samples["value"], errors="coerce").astype("float64").to_numpy(na_value=np.nan)
    step_key = np.nan_to_num(step, nan=-1.0)
    if _is_lex_sorted([job_codes, metric_codes, device_codes, ts, step_key]):
        small = metric_codes.astype(np.int16) if len(metric_names) < 2**15 else metric_codes
        order = np.argsort(small, kind="stable")
    else:
        order = np.lexsort([step_key, ts, device_codes, job_codes, metric_codes])
    metric_codes, job_codes, device_codes, ts, step, value = (
        a[order] for a in (metric_codes, job_codes, device_codes, ts, step, value))
    bounds = np.flatnonzero(np.r_[True, metric_codes[1:] != metric_codes[:-1], True])
    frames: dict[str, MetricFrame] = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        job, dev = job_codes[lo:hi], device_codes[lo:hi]
        new_group = np.r_[True, (job[1:] != job[:-1]) | (dev[1:] != dev[:-1])]
        name = str(metric_names[metric_codes[lo]])
        frames[name] = MetricFrame(name, job, dev, np.cumsum(new_group) - 1, ts[lo:hi], step[lo:hi],
                                   value[lo:hi], job_names, device_names)
    return frames


def rolling_median(values: np.ndarray, group: np.ndarray, window: int, min_periods: int,
                   exclude_current: bool = False) -> np.ndarray:
    """Median of the last `window` samples of each group (NaN skipped), one pandas pass.

    `exclude_current` gives the median of the `window` samples before each one: the reference a
    spike is compared with must not contain the spike.
    """
    n = len(values)
    if n == 0:
        return np.array([], dtype=float)
    pad = window + 1
    pos = np.arange(n) + (group + 1) * pad
    padded = np.full(n + (int(group[-1]) + 2) * pad, np.nan)
    padded[pos] = values
    med = pd.Series(padded).rolling(window, min_periods=min_periods).median().to_numpy()
    return med[pos - 1] if exclude_current else med[pos]


def _position(group: np.ndarray) -> np.ndarray:
    if len(group) == 0:
        return group
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return np.arange(len(group)) - starts[group]


def robust_z(values: np.ndarray, group: np.ndarray, window: int, min_periods: int,
             rows: np.ndarray | None = None, median: np.ndarray | None = None,
             rel_floor: float = 0.01, chunk_rows: int = 65_536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(robust z, trailing median, scale) of samples against the `window` samples before each.

    z = (x - median) / (1.4826 * MAD) over the previous `window` samples of the same group. The
    median comes from one rolling pass for every row; the exact MAD (a median of deviations from
    that window's own median) is computed only for `rows` (default: all), gathered in chunks,
    because callers only need z where a cheap ratio test already says "maybe a spike". The scale
    is floored at `rel_floor` of |median| so that a perfectly flat history (repeated values) does
    not turn the next ordinary wiggle into z = inf. Rows outside `rows` get z = NaN. `median`
    is that trailing median when the caller already has it.
    """
    n = len(values)
    med = median if median is not None else rolling_median(values, group, window, min_periods,
                                                            exclude_current=True)
    z = np.full(n, np.nan)
    scale = np.full(n, np.nan)
    wanted = np.flatnonzero(np.isfinite(med) if rows is None else (rows & np.isfinite(med)))
    if len(wanted) == 0:
        return z, med, scale
    first_of_group = (np.arange(n) - _position(group))
    offsets = np.arange(window, 0, -1)
    for lo in range(0, len(wanted), chunk_rows):
        idx = wanted[lo:lo + chunk_rows]
        hist = idx[:, None] - offsets[None, :]
        inside = hist >= first_of_group[idx][:, None]
        vals = np.where(inside, values[np.maximum(hist, 0)], np.nan)
        dev = np.abs(vals - med[idx][:, None])
        enough = np.isfinite(dev).sum(axis=1) >= min_periods
        # sort puts NaN last, so the median of the finite deviations is picked by count
        dev.sort(axis=1)
        count = np.isfinite(dev).sum(axis=1)
        mid_lo = np.maximum((count - 1) // 2, 0)
        mid_hi = np.maximum(count // 2, 0)
        rows_ = np.arange(len(idx))
        mad = (dev[rows_, mid_lo] + dev[rows_, mid_hi]) / 2.0
        sc = np.fmax(1.4826 * mad, rel_floor * np.abs(med[idx]))
        sc = np.where(enough & (sc > 0), sc, np.nan)
        scale[idx] = sc
        with np.errstate(invalid="ignore", divide="ignore"):
            z[idx] = (values[idx] - med[idx]) / sc
    return z, med, scale


def time_rolling_median(values: np.ndarray, group: np.ndarray, ts: np.ndarray, window_ns: int,
                        min_periods: int) -> np.ndarray:
    """Median over the trailing time window (ts - window, ts] of each group, one pandas pass."""
    n = len(values)
    if n == 0:
        return np.array([], dtype=float)
    adj = shifted_time(group, ts, window_ns)
    series = pd.Series(values, index=pd.DatetimeIndex(adj.view("datetime64[ns]")))
    return series.rolling(pd.Timedelta(window_ns, unit="ns"), min_periods=min_periods).median().to_numpy()


def shifted_time(group: np.ndarray, ts: np.ndarray, window_ns: int) -> np.ndarray:
    """Timestamps moved so that groups follow each other more than one window apart (monotonic)."""
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    span = ts[ends] - ts[starts] + window_ns + 1
    base = np.r_[0, np.cumsum(span)[:-1]]
    return (ts - ts[starts][group]) + base[group]


def runs(fire: np.ndarray, group: np.ndarray, ts: np.ndarray, max_gap_ns: int) -> np.ndarray:
    """Run id (>= 0) of each firing sample, -1 elsewhere.

    A run is consecutive firing samples of one group; a non-firing sample, a new group or a gap in
    time longer than `max_gap_ns` ends it.
    """
    n = len(fire)
    if n == 0:
        return np.array([], dtype=np.int64)
    prev_fire = np.r_[False, fire[:-1]]
    new_group = np.r_[True, group[1:] != group[:-1]]
    gap = np.r_[True, np.diff(ts) > max_gap_ns]
    start = fire & (~prev_fire | new_group | gap)
    run_id = np.cumsum(start) - 1
    return np.where(fire, run_id, -1)


def sustained(fire: np.ndarray, group: np.ndarray, ts: np.ndarray, min_duration_ns: int,
              max_gap_ns: int) -> np.ndarray:
    """Firing samples that belong to a run lasting at least `min_duration_ns` (from its first sample).

    Only the samples from the moment the run has lasted long enough are kept: a condition is
    "sustained" from then on, and the anomaly's start says when it became so.
    """
    run_id = runs(fire, group, ts, max_gap_ns)
    keep = run_id >= 0
    if not keep.any():
        return keep
    ids = run_id[keep]
    first_ts = np.full(ids.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_ts, ids, ts[keep])
    out = np.zeros(len(fire), dtype=bool)
    out[keep] = (ts[keep] - first_ts[ids]) >= min_duration_ns
    return out
