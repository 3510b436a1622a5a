"""Metric samples as sorted per-metric arrays, and the grouped rolling helpers every rule uses.

Rules work on one metric at a time, with rows sorted by (job, device, ts, step) so that a job's
series on one device is one contiguous block (a "group"). Splitting 10 million samples must cost
less than reading them: readers emit runs of rows of one job, metric and device in time order, so
the split finds those runs and copies slices instead of sorting rows. Grouped rolling statistics
are computed in one pass over the whole array instead of one pandas call per group: each group is
padded with NaN (sample windows) or moved apart in time (time windows) so that no window reaches
into the previous group, and pandas' C rolling kernels skip the NaN.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

NS_PER_MINUTE = 60 * 1_000_000_000


@dataclass(frozen=True)
class MetricFrame:
    """One metric's samples, sorted by job, device, ts, step; codes index into the name arrays.

    Job and device are stored per group (one (job, device) series): rules read them only where
    they fire, so the per-row arrays are built only when asked for.
    """

    metric: str
    group: np.ndarray  # 0..G-1, one per (job, device), contiguous and increasing
    ts: np.ndarray  # int64 ns since epoch, UTC
    step: np.ndarray  # float64, NaN where unknown
    value: np.ndarray  # float64
    group_job: np.ndarray  # per group: int64 code into job_names
    group_device: np.ndarray  # per group: int64 code into device_names ("" = no device)
    job_names: np.ndarray
    device_names: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    @cached_property
    def job(self) -> np.ndarray:
        """Per row: int64 code into job_names."""
        return self.group_job[self.group]

    @cached_property
    def device(self) -> np.ndarray:
        """Per row: int64 code into device_names."""
        return self.group_device[self.group]

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
        kept = group[np.r_[True, group[1:] != group[:-1]]] if len(group) else group
        if len(group):
            group = np.cumsum(np.r_[True, group[1:] != group[:-1]]) - 1
        return MetricFrame(self.metric, group, self.ts[mask], self.step[mask], self.value[mask],
                           self.group_job[kept], self.group_device[kept], self.job_names, self.device_names)


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


def _arrow_strings(values: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow array behind pandas' Arrow-backed strings (pandas' default), else None."""
    chunked = getattr(values.array, "_pa_array", None)  # no public accessor
    if isinstance(chunked, pa.ChunkedArray) and (pa.types.is_string(chunked.type)
                                                 or pa.types.is_large_string(chunked.type)):
        return chunked
    return None


def _arrow_changes(chunked: pa.ChunkedArray, lo: int, hi: int) -> np.ndarray:
    """Rows r in [lo, hi) (lo >= 1) whose string differs from row r - 1's; nulls equal each other."""
    now, before = chunked.slice(lo, hi - lo), chunked.slice(lo - 1, hi - lo)
    changed = pc.not_equal(now, before)
    if chunked.null_count:
        # a comparison with null is null: changed iff exactly one side is null
        changed = pc.coalesce(changed, pc.xor(pc.is_null(now), pc.is_null(before)))
    return np.asarray(pc.indices_nonzero(changed), dtype=np.int64) + lo


def _change_rows(values: pd.Series) -> np.ndarray:
    """Rows (>= 1) whose value differs from the previous row's; nulls equal each other.

    Categoricals compare their codes; anything else (not Arrow strings) is factorised.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
    else:
        codes = pd.factorize(values, sort=False, use_na_sentinel=True)[0]
    return np.flatnonzero(codes[1:] != codes[:-1]) + 1


def _workers() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 4))
    except AttributeError:  # no affinity API (macOS, Windows)
        return max(1, min(os.cpu_count() or 1, 4))


# below this many rows a thread pool costs more than it saves
_PARALLEL_ROWS = 1_000_000


def _all_change_rows(samples: pd.DataFrame, cols: list[str]) -> list[np.ndarray]:
    """`_change_rows` of each column. Arrow strings are compared in Arrow, a linear scan several
    times cheaper than hashing every row; on large tables in slices on a few threads (Arrow's
    kernels release the GIL, and pd.read_parquet reads with threads too)."""
    n = len(samples)
    out: list[np.ndarray] = []
    tasks: list[tuple[pa.ChunkedArray, int, int]] = []
    for c in cols:
        chunked = _arrow_strings(samples[c])
        if chunked is None:
            out.append(_change_rows(samples[c]))
            continue
        pieces = _workers() if n >= _PARALLEL_ROWS else 1
        cuts = np.linspace(1, n, pieces + 1).astype(np.int64)
        tasks += [(chunked, int(lo), int(hi)) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]
    if len(tasks) > 1 and n >= _PARALLEL_ROWS:
        with ThreadPoolExecutor(_workers()) as pool:
            out += list(pool.map(lambda t: _arrow_changes(*t), tasks))
    else:
        out += [_arrow_changes(*t) for t in tasks]
    return out


def _take(values: pd.Series, rows: np.ndarray) -> pd.Series:
    """values.iloc[rows] for a few rows; Arrow arrays chunk by chunk (taking from a chunked array
    whole would first concatenate all its chunks)."""
    chunked = getattr(values.array, "_pa_array", None)
    if not isinstance(chunked, pa.ChunkedArray) or chunked.num_chunks < 2:
        return values.iloc[rows]
    # rows are increasing, so each chunk's rows are one slice of them
    offsets = np.r_[0, np.cumsum([len(c) for c in chunked.chunks])]
    cut = np.searchsorted(rows, offsets)
    parts = [chunked.chunk(c).take(pa.array(rows[lo:hi] - offsets[c]))
             for c, (lo, hi) in enumerate(zip(cut[:-1].tolist(), cut[1:].tolist())) if hi > lo]
    return pd.Series(pd.array(pa.chunked_array(parts, type=chunked.type), dtype=values.dtype))


def _ns_utc(ts: pd.Series) -> np.ndarray:
    if isinstance(ts.dtype, pd.DatetimeTZDtype) and ts.dtype.unit == "ns":
        return ts.array.asi8  # already tz-aware nanoseconds: stored as UTC, no copy needed
    return pd.to_datetime(ts, utc=True).dt.as_unit("ns").array.asi8


def _float_values(values: pd.Series) -> np.ndarray:
    """float64 with NaN for nulls; no copy for a float64 column, one pass for nullable Int64."""
    if values.dtype == np.float64:
        return values.to_numpy()
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


@dataclass(frozen=True)
class _Blocks:
    """Runs of consecutive rows with the same (job, metric, device): how readers emit samples."""

    start: np.ndarray
    stop: np.ndarray
    metric: np.ndarray  # codes, first appearance order, per block
    job: np.ndarray
    device: np.ndarray


def _blocks(samples: pd.DataFrame) -> tuple[_Blocks, np.ndarray, np.ndarray, np.ndarray]:
    """The blocks of `samples` and the metric, job and device names their codes index.

    Only block heads are factorised: a value first appears at the head of a block, so codes in
    order of first appearance are the same as factorising every row.
    """
    n = len(samples)
    has_device = "device" in samples
    cols = ["metric", "job_id"] + (["device"] if has_device else [])
    head = np.zeros(n, dtype=bool)
    head[0] = True
    for rows in _all_change_rows(samples, cols):
        head[rows] = True
    start = np.flatnonzero(head)
    metric, metric_names = _codes(_take(samples["metric"], start))
    job, job_names = _codes(_take(samples["job_id"], start))
    if has_device:
        device, device_names = _codes(_take(samples["device"], start), null_name="")
    else:
        device, device_names = np.zeros(len(start), np.int64), np.asarray([""], dtype=object)
    stop = np.r_[start[1:], n]
    return _Blocks(start, stop, metric, job, device), metric_names, job_names, device_names


def _step_key(step: np.ndarray) -> np.ndarray:
    """Steps as a sort key: unknown steps first."""
    return np.nan_to_num(step, nan=-1.0)


def _rows_sorted_within_keys(blocks: _Blocks, order: np.ndarray, ts: np.ndarray, step: np.ndarray) -> bool:
    """Whether the blocks taken in `order` (sorted by key) have rows in (ts, step) order per key.

    Within a block consecutive rows are compared; where one key spans several blocks, the last row
    of one with the first row of the next.
    """
    if len(ts) < 2:
        return True
    # compared, not differenced: NaT (int64 min) would overflow a difference
    across = blocks.start[1:] - 1  # a block's first row vs the previous block's last: checked below
    down = ts[1:] < ts[:-1]
    down[across] = False
    if down.any():
        return False
    tie = ts[1:] == ts[:-1]
    tie[across] = False
    tie = np.flatnonzero(tie)
    if (_step_key(step[tie + 1]) < _step_key(step[tie])).any():
        return False
    same = ((blocks.metric[order][1:] == blocks.metric[order][:-1])
            & (blocks.job[order][1:] == blocks.job[order][:-1])
            & (blocks.device[order][1:] == blocks.device[order][:-1]))
    prev_last, next_first = blocks.stop[order][:-1][same] - 1, blocks.start[order][1:][same]
    t0, t1 = ts[prev_last], ts[next_first]
    return bool(((t0 < t1) | ((t0 == t1) & (_step_key(step[prev_last]) <= _step_key(step[next_first])))).all())


def _row_order(metric: np.ndarray, job: np.ndarray, device: np.ndarray, ts: np.ndarray, step: np.ndarray,
               n_jobs: int, n_devices: int) -> np.ndarray:
    """The stable lex order of rows by (metric, job, device, ts, step).

    Readers of long formats interleave metrics but keep each series in time order: then one stable
    sort of a combined series key is the whole answer, and a check proves it; else lex-sort.
    """
    n_metrics = int(metric.max()) + 1 if len(metric) else 1
    if len(ts) > 1 and n_metrics * n_jobs * n_devices < 2**62:
        key = (metric * n_jobs + job) * n_devices + device
        order = np.argsort(key, kind="stable")
        k, t = key[order], ts[order]
        same = k[1:] == k[:-1]
        if not (same & (t[1:] < t[:-1])).any():
            tie = np.flatnonzero(same & (t[1:] == t[:-1]))
            sk = _step_key(step[order[np.r_[tie, tie + 1]]])
            if not (sk[len(tie):] < sk[:len(tie)]).any():
                return order
    return np.lexsort([_step_key(step), ts, device, job, metric])


# above this many blocks per row the input is not grouped and row-level sorting is cheaper
_MAX_BLOCK_FRACTION = 1 / 64


def split_by_metric(samples: pd.DataFrame, metrics: Collection[str] | None = None) -> dict[str, MetricFrame]:
    """`metric_samples` -> one MetricFrame per metric present, each sorted by job, device, ts, step.

    `metrics` limits the output to those metrics (the ones some rule reads). Readers emit rows in
    blocks of one job, metric and device, ordered in time: then each metric's arrays are its
    blocks' slices concatenated (memory copies, no per-row gather). Anything else is lex-sorted.
    """
    if samples.empty:
        return {}
    n = len(samples)
    blocks, metric_names, job_names, device_names = _blocks(samples)
    ts = _ns_utc(samples["ts"])
    step = _float_values(samples["step"]) if "step" in samples else np.full(n, np.nan)
    value = _float_values(samples["value"])
    wanted = np.ones(len(metric_names), dtype=bool)
    if metrics is not None:
        wanted = np.isin(metric_names.astype(str), list(metrics))
    # blocks of one metric in order of (job, device) codes; stable, so a key's blocks keep their order
    order = np.lexsort((blocks.device, blocks.job, blocks.metric))
    order = order[wanted[blocks.metric[order]]]
    frames: dict[str, MetricFrame] = {}
    if len(order) == 0:  # none of the wanted metrics (a shard of heartbeats only)
        return frames
    if len(order) <= max(n * _MAX_BLOCK_FRACTION, 1) and _rows_sorted_within_keys(blocks, order, ts, step):
        no_step = np.logical_and.reduceat(np.isnan(step), blocks.start)
        b_metric = blocks.metric[order]
        bounds = np.flatnonzero(np.r_[True, b_metric[1:] != b_metric[:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            sel = order[lo:hi]
            start, stop = blocks.start[sel], blocks.stop[sel]
            size = stop - start
            b_job, b_dev = blocks.job[sel], blocks.device[sel]
            new_group = np.r_[True, (b_job[1:] != b_job[:-1]) | (b_dev[1:] != b_dev[:-1])]

            def gather(a: np.ndarray) -> np.ndarray:
                return np.concatenate([a[s:e] for s, e in zip(start.tolist(), stop.tolist())])

            # resource metrics carry no steps: one shared read-only NaN instead of a copy of NaNs
            steps = np.broadcast_to(np.nan, int(size.sum())) if no_step[sel].all() else gather(step)
            name = str(metric_names[b_metric[lo]])
            frames[name] = MetricFrame(name, np.repeat(np.cumsum(new_group) - 1, size), gather(ts), steps,
                                       gather(value), b_job[new_group], b_dev[new_group], job_names, device_names)
        return frames
    size = blocks.stop - blocks.start
    metric_codes, job_codes, device_codes = (np.repeat(c, size) for c in (blocks.metric, blocks.job, blocks.device))
    rows = wanted[metric_codes]
    if not rows.all():
        metric_codes, job_codes, device_codes, ts, step, value = (
            a[rows] for a in (metric_codes, job_codes, device_codes, ts, step, value))
    order = _row_order(metric_codes, job_codes, device_codes, ts, step, len(job_names), len(device_names))
    metric_codes, job_codes, device_codes, ts, step, value = (
        a[order] for a in (metric_codes, job_codes, device_codes, ts, step, value))
    bounds = np.flatnonzero(np.r_[True, metric_codes[1:] != metric_codes[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        job, dev = job_codes[lo:hi], device_codes[lo:hi]
        new_group = np.r_[True, (job[1:] != job[:-1]) | (dev[1:] != dev[:-1])]
        name = str(metric_names[metric_codes[lo]])
        frames[name] = MetricFrame(name, np.cumsum(new_group) - 1, ts[lo:hi], step[lo:hi], value[lo:hi],
                                   job[new_group], dev[new_group], job_names, device_names)
    return frames


_CHUNK_CELLS = 1 << 22  # rows x window per chunk of the matrix: bounded memory at any size


def _grouped_rolling(values: np.ndarray, group: np.ndarray, window: int, min_periods: int,
                     exclude_current: bool, stat: str) -> np.ndarray:
    """pandas' rolling `stat` per group in one pass: groups are padded apart with NaN."""
    n = len(values)
    pad = window + 1
    pos = np.arange(n) + (group + 1) * pad
    padded = np.full(n + (int(group[-1]) + 2) * pad, np.nan)
    padded[pos] = values
    out = getattr(pd.Series(padded).rolling(window, min_periods=min_periods), stat)().to_numpy()
    return out[pos - 1] if exclude_current else out[pos]


def window_medians(values: np.ndarray, group: np.ndarray, window: int, min_periods: int, rows: np.ndarray,
                   exclude_current: bool = False) -> np.ndarray:
    """The rolling median at `rows` (increasing indices) only: each window gathered and sorted.

    Same numbers as pandas' rolling median (NaN and inf skipped, mean of the two middle values for
    an even count, NaN below `min_periods`); cheaper when few rows are needed.
    """
    out = np.full(len(rows), np.nan)
    if len(rows) == 0:
        return out
    first_of_group = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])[group[rows]]
    offsets = np.arange(window, 0, -1) if exclude_current else np.arange(window - 1, -1, -1)
    step = max(_CHUNK_CELLS // window, 1)
    for lo in range(0, len(rows), step):
        idx = rows[lo:lo + step]
        hist = idx[:, None] - offsets[None, :]
        vals = values[np.maximum(hist, 0)]
        # like pandas, which treats +-inf in a rolling window as missing
        vals = np.where((hist >= first_of_group[lo:lo + step, None]) & np.isfinite(vals), vals, np.nan)
        out[lo:lo + step] = _sorted_row_medians(vals, min_periods)
    return out


def rolling_median(values: np.ndarray, group: np.ndarray, window: int, min_periods: int,
                   exclude_current: bool = False) -> np.ndarray:
    """Median of the last `window` samples of each group (NaN skipped), one pandas pass.

    `exclude_current` gives the median of the `window` samples before each one: the reference a
    spike is compared with must not contain the spike.
    """
    n = len(values)
    if n == 0:
        return np.array([], dtype=float)
    return _grouped_rolling(values, group, window, min_periods, exclude_current, "median")


def rolling_mean(values: np.ndarray, group: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` samples of each group (NaN skipped); a linear-time pass."""
    if len(values) == 0:
        return np.array([], dtype=float)
    return _grouped_rolling(values, group, window, 1, False, "mean")


def rolling_min(values: np.ndarray, group: np.ndarray, window: int, exclude_current: bool = False) -> np.ndarray:
    """Minimum of the last `window` samples of each group (NaN skipped); a linear-time pass."""
    if len(values) == 0:
        return np.array([], dtype=float)
    return _grouped_rolling(values, group, window, 1, exclude_current, "min")


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


def time_window_stats(values: np.ndarray, adj: np.ndarray, window_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, standard deviation, count) over the trailing time window (adj - window, adj] of each
    row, `adj` from `shifted_time`; linear-time pandas passes."""
    rolling = pd.Series(values, index=pd.DatetimeIndex(adj.view("datetime64[ns]"))).rolling(
        pd.Timedelta(window_ns, unit="ns"), min_periods=1)
    return rolling.mean().to_numpy(), rolling.std().to_numpy(), rolling.count().to_numpy()


def medians_between(values: np.ndarray, first: np.ndarray, rows: np.ndarray, min_periods: int) -> np.ndarray:
    """Median of values[first[i] .. rows[i]] (both included) for each i, NaN and inf skipped, NaN
    below `min_periods`: pandas' rolling median, evaluated at a few rows of variable windows."""
    out = np.full(len(rows), np.nan)
    if len(rows) == 0:
        return out
    width = int((rows - first).max()) + 1
    offsets = np.arange(width - 1, -1, -1)
    step = max(_CHUNK_CELLS // width, 1)
    for lo in range(0, len(rows), step):
        idx, low = rows[lo:lo + step], first[lo:lo + step]
        hist = idx[:, None] - offsets[None, :]
        vals = values[np.maximum(hist, 0)]
        vals = np.where((hist >= low[:, None]) & np.isfinite(vals), vals, np.nan)
        out[lo:lo + step] = _sorted_row_medians(vals, min_periods)
    return out


def _sorted_row_medians(vals: np.ndarray, min_periods: int) -> np.ndarray:
    """Median of each row of a matrix (NaN = missing), sorted in place; NaN below `min_periods`."""
    vals.sort(axis=1)  # NaN last
    count = (~np.isnan(vals)).sum(axis=1)
    r = np.arange(len(vals))
    a, b = vals[r, np.maximum((count - 1) // 2, 0)], vals[r, count // 2 - (count == 0)]
    med = np.where(count % 2 == 1, a, (a + b) / 2)
    return np.where(count >= max(min_periods, 1), med, np.nan)


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
    out = np.full(len(fire), -1, dtype=np.int64)
    idx = np.flatnonzero(fire)
    if len(idx):
        out[idx] = np.cumsum(_run_starts(idx, group, ts, max_gap_ns)) - 1
    return out


def _run_starts(idx: np.ndarray, group: np.ndarray, ts: np.ndarray, max_gap_ns: int) -> np.ndarray:
    """For firing rows `idx` (increasing): which of them start a run. Works on the firing rows only,
    so a rule that rarely fires costs one comparison over its metric, no full-size temporaries."""
    g, t = group[idx], ts[idx]
    return np.r_[True, (idx[1:] != idx[:-1] + 1) | (g[1:] != g[:-1]) | (t[1:] - t[:-1] > max_gap_ns)]


def sustained(fire: np.ndarray, group: np.ndarray, ts: np.ndarray, min_duration_ns: int,
              max_gap_ns: int) -> np.ndarray:
    """Firing samples that belong to a run lasting at least `min_duration_ns` (from its first sample).

    Only the samples from the moment the run has lasted long enough are kept: a condition is
    "sustained" from then on, and the anomaly's start says when it became so.
    """
    out = np.zeros(len(fire), dtype=bool)
    idx = np.flatnonzero(fire)
    if len(idx) == 0:
        return out
    start = _run_starts(idx, group, ts, max_gap_ns)
    t = ts[idx]
    # rows are in time order within a group, so a run's first sample is its earliest
    first_ts = t[start][np.cumsum(start) - 1]
    out[idx] = (t - first_ts) >= min_duration_ns
    return out
