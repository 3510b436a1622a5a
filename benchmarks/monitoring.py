"""Monitoring benchmark: `detect_anomalies` over 10 million samples, next to reading them and a loop.

    python benchmarks/monitoring.py                     # 10 million samples
    python benchmarks/monitoring.py --rows 1000000 --repeats 1

Synthetic fleet, generated with numpy (no per-row Python): ~40 jobs; per step training_loss,
learning_rate (warm-up + linear decay), grad_norm and samples_per_second; per 10 s tick GPU
utilisation, memory bandwidth and memory capacity for 8 GPUs plus host CPU and memory. Injected
trouble: loss spikes and NaN, grad-norm explosions, idle GPUs, memory pressure, a slow job.

Three timings in one run: `pd.read_parquet` of the samples into the canonical dtypes (written once
under benchmarks/.data/, git-ignored), `detect_anomalies` on them, and a straightforward per-row
Python loop over the same rules (per-series deques, `statistics.median`) on a 1-million-sample
slice, scaled to the full size. The loop must find the same firing samples per rule and severity
as the vectorised rules on that slice, or the run stops (ftops_tests/test_monitoring checks it on
other fleets too). Targets: detection <= read time; >= 20x faster than the loop.
"""

from __future__ import annotations

import argparse
import bisect
import math
import statistics
import sys
import time
from collections import Counter, defaultdict, deque
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ftops.monitoring import detect_anomalies  # noqa: E402
from ftops.monitoring.anomalies import detect_hits  # noqa: E402
from ftops.monitoring.catalog import setting  # noqa: E402
from ftops.monitoring.hits import SEVERITIES  # noqa: E402
from ftops.policy import MonitoringPolicy  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent / ".data"
N_JOBS = 40
DEVICES = 8
TRAINING = ("training_loss", "learning_rate", "grad_norm", "samples_per_second")
GPU = ("gpu_utilization_pct", "gpu_memory_copy_util_pct", "gpu_memory_used_ratio")
HOST = ("cpu_utilization_pct", "host_memory_used_ratio")
PER_TICK = len(TRAINING) + len(GPU) * DEVICES + len(HOST)  # 30 samples per job per tick


def synthetic_samples(rows: int, seed: int = 7) -> pd.DataFrame:
    """`rows` metric_samples (approximately), sorted as a reader emits them: job, metric, device, ts."""
    rng = np.random.default_rng(seed)
    ticks = max(rows // (N_JOBS * PER_TICK), 60)
    t = np.arange(ticks)
    t0 = pd.Timestamp("2025-03-01", tz="UTC").value
    ts_row = t0 + t * 10_000_000_000
    series_metric, series_device, values = [], [], []
    for_job = []
    for job in range(N_JOBS):
        noise = lambda scale: 1 + scale * rng.standard_normal(ticks)  # noqa: E731
        loss = (2.0 * np.exp(-t / (ticks / 4)) + 0.6) * noise(0.03)
        if job % 5 == 0:
            loss[rng.integers(100, ticks, 3)] *= 2.5
        if job == 3:
            loss[ticks // 2: ticks // 2 + 4] = np.nan
        warm = max(ticks // 20, 1)
        lr = np.where(t < warm, 2e-4 * t / warm, 2e-4 * (1 - (t - warm) / max(ticks - warm, 1)))
        grad = 2.5 * noise(0.1)
        if job % 7 == 0:
            grad[rng.integers(100, ticks, 2)] = 90.0
        sps = 100.0 * noise(0.02)
        if job == 11:
            sps[ticks // 2:] *= 0.6
        per_series = [loss, lr, grad, sps]
        names = list(TRAINING)
        devs = [""] * len(TRAINING)
        for m in GPU:
            for d in range(DEVICES):
                if m == "gpu_utilization_pct":
                    v = np.clip(85 + 5 * rng.standard_normal(ticks), 0, 100)
                    if job % 9 == 0 and d == 0:
                        v[ticks // 3: ticks // 3 + 120] = 5.0
                elif m == "gpu_memory_copy_util_pct":
                    v = np.clip(60 + 8 * rng.standard_normal(ticks), 0, 100)
                else:
                    v = np.clip(0.8 + 0.02 * rng.standard_normal(ticks), 0, 1)
                    if job % 13 == 0:
                        v[ticks // 2: ticks // 2 + 60] = 0.97
                per_series.append(v)
                names.append(m)
                devs.append(str(d))
        per_series.append(np.clip(60 + 10 * rng.standard_normal(ticks), 0, 100))
        per_series.append(np.clip(0.5 + 0.03 * rng.standard_normal(ticks), 0, 1))
        names += list(HOST)
        devs += ["", ""]
        series_metric += names
        series_device += devs
        values.append(np.concatenate(per_series))
        for_job += [f"job-{job:03d}"] * len(names)
    n_series = len(series_metric)
    value = np.concatenate(values)
    idx = np.repeat(np.arange(n_series), ticks)
    metric = pd.Categorical(np.asarray(series_metric)[idx])
    device = np.asarray(series_device, dtype=object)[idx]
    is_training = np.isin(np.asarray(series_metric), TRAINING)[idx]
    df = pd.DataFrame({
        "ts": pd.to_datetime(np.tile(ts_row, n_series), utc=True),
        "job_id": pd.array(np.asarray(for_job, dtype=object)[idx], dtype="string"),
        "metric": pd.array(np.asarray(metric), dtype="string"),
        "value": value,
        "step": pd.array(np.where(is_training, np.tile(t, n_series), 0), dtype="Int64"),
        "device": pd.array(np.where(device == "", None, device), dtype="string"),
        "host": pd.array(np.asarray([f"node-{j % 10}" for j in range(N_JOBS)], dtype=object)[
            np.repeat(np.arange(N_JOBS), ticks * PER_TICK)], dtype="string"),
        "source": pd.array(np.full(len(value), "bench"), dtype="string"),
    })
    df.loc[~is_training, "step"] = pd.NA
    return df


# the rules the loop implements: every per-sample rule on the metrics this fleet logs
LOOP_RULES = frozenset({
    "loss_non_finite", "loss_rising", "loss_spike", "loss_divergence", "loss_implausible",
    "learning_rate_out_of_range",
    "grad_norm_non_finite", "grad_norm_spike", "grad_norm_explosion", "throughput_degraded",
    "gpu_underutilized", "gpu_overutilized", "gpu_memory_copy_util_high", "gpu_memory_capacity_high",
    "cpu_high", "host_memory_high",
})
LEVEL_SAMPLES = 10  # a run's level (its start, its best so far) is the mean of this many losses


def _latest_at_or_before(points: list, ts: int) -> object:
    """The value of the last (ts, value) point at or before `ts` in a ts-sorted list, else None."""
    i = bisect.bisect_right(points, ts, key=lambda p: p[0])
    return points[i - 1][1] if i else None


def _spike(hist: deque, value: float, min_history: int, min_ratio: float) -> tuple[float, float, float]:
    """(robust z, median, ratio) of `value` against the finite samples before it, as ftops defines them:
    the MAD only where the ratio already passes (the vectorised code's shortcut too)."""
    if len(hist) < min_history:
        return math.nan, math.nan, math.nan
    med = statistics.median(hist)
    ratio = value / med if med > 0 else math.nan
    if not ratio >= min_ratio:
        return math.nan, med, ratio
    scale = max(1.4826 * statistics.median([abs(h - med) for h in hist]), 0.01 * abs(med))
    return ((value - med) / scale if scale > 0 else math.nan), med, ratio


def loop_detect(samples: pd.DataFrame, policy: MonitoringPolicy) -> Counter:
    """The straightforward version of the same rules: one Python iteration per sample, per-series
    state in dicts and deques, `statistics.median` for every median. Returns firing samples per
    (rule, severity), which must equal what `detect_hits` finds (checked in main and in the tests).

    Rules judged on a whole series (warm-up and decay of the learning rate, a job's throughput
    baseline, persistence of a grad-norm explosion, the start level a rising loss gives back) or on
    another metric at the time (the symptoms that make GPU saturation a warning) take a second look
    at the lists kept for that. Not covered: slow_convergence and not_learning, judged once per job
    (no per-sample work); a divergence in a run's first `spike_window_samples` losses, judged against
    the floor reached so far (the benchmark's runs start smoothly); and rules on metrics this fleet
    does not log (validation loss, accuracy, cost).
    """
    lp, gp, tp, up = policy.loss, policy.grad_norm, policy.throughput, policy.gpu_utilization
    giveback = setting(policy, "loss.trend_min_giveback_ratio") or 0.0
    plausible_max = setting(policy, "loss.plausible_max")
    throttle_c = setting(policy, "gpu_utilization.throttle_temperature_c")
    mp, cp, hp, lr = policy.gpu_memory, policy.cpu, policy.host_memory, policy.learning_rate
    minute = 60_000_000_000
    gap = policy.merge_gap_minutes * minute
    # metric -> [(rule, warning limit, critical limit or None, "high"/"low", strict, window ns)]
    sustained_rules = {
        "gpu_utilization_pct": [("gpu_underutilized", up.under_pct, None, "low", True, up.window_minutes * minute),
                                ("gpu_overutilized", up.over_pct, None, "high", True, up.window_minutes * minute)],
        "gpu_memory_copy_util_pct": [("gpu_memory_copy_util_high", mp.copy_util_warning_pct,
                                      mp.copy_util_critical_pct, "high", False, mp.window_minutes * minute)],
        "gpu_memory_used_ratio": [("gpu_memory_capacity_high", mp.used_ratio_warning, mp.used_ratio_critical,
                                   "high", False, mp.used_ratio_window_minutes * minute)],
        "cpu_utilization_pct": [("cpu_high", cp.alert_pct, None, "high", True, cp.window_minutes * minute)],
        "host_memory_used_ratio": [("host_memory_high", hp.warning_ratio, hp.critical_ratio, "high", False,
                                    hp.window_minutes * minute)],
    }

    def beyond(v: float, limit: float, side: str, strict: bool) -> bool:
        if side == "low":
            return v < limit if strict else v <= limit
        return v > limit if strict else v >= limit

    fired: Counter = Counter()
    rows = list(zip(samples["job_id"].tolist(), samples["metric"].tolist(), samples["device"].tolist(),
                    samples["ts"].astype("int64").tolist(), samples["value"].tolist()))
    finite_count = Counter((j, m, d) for j, m, d, _, v in rows if m == "samples_per_second" and math.isfinite(v))
    spike_hist: dict = defaultdict(deque)
    high_run: dict = defaultdict(int)
    trend: dict = defaultdict(deque)  # loss samples of the trailing window: (ts, value)
    trend_now: dict = defaultdict(deque)  # the window medians already computed: (ts, median)
    far_runs: dict = defaultdict(list)  # grad-norm samples far above their median, current run: ratios
    series: dict = defaultdict(list)
    state: dict = {}  # (series, rule, level) -> (run start ts, previous firing ts)
    last_ts: dict = {}
    window_ns = lp.trend_window_minutes * minute
    level_hist: dict = defaultdict(deque)  # the last LEVEL_SAMPLES losses of a series
    start_levels: dict = defaultdict(list)  # each series' level after each of its first LEVEL_SAMPLES losses
    best_level: dict = {}
    loss_count: Counter = Counter()
    rising: list = []  # (series, median now, best level then): judged once the start level is known
    saturated: list = []  # (job, device, ts) of sustained saturation: info unless a symptom at the time
    temperature: dict = defaultdict(list)  # (job, device) -> [(ts, °C)]
    slow_at: dict = defaultdict(list)  # job -> [(ts, throughput degraded at that sample)]

    def end_far_run(key: tuple) -> None:
        run = far_runs.pop(key, [])
        for ratio in run:
            explosion = ratio >= gp.explosion_ratio or len(run) >= gp.sustained_samples
            fired["grad_norm_explosion" if explosion else "grad_norm_spike", "critical" if explosion else "info"] += 1

    for job, metric, device, ts, value in rows:
        key = (job, metric, device)
        if metric == "training_loss" or metric == "grad_norm":
            if not math.isfinite(value):
                fired["loss_non_finite" if metric == "training_loss" else "grad_norm_non_finite", "critical"] += 1
                continue
            hist = spike_hist[key]
            if metric == "training_loss":
                if plausible_max is not None and value > plausible_max:
                    fired["loss_implausible", "critical"] += 1
                recent = level_hist[key]
                recent.append(value)
                if len(recent) > LEVEL_SAMPLES:
                    recent.popleft()
                mean_level = sum(recent) / len(recent)
                best_level[key] = min(best_level.get(key, mean_level), mean_level)
                loss_count[key] += 1
                if len(start_levels[key]) < LEVEL_SAMPLES:
                    start_levels[key].append(mean_level)
                window = lp.spike_window_samples
                z, med, ratio = _spike(hist, value, min(5, window), min(lp.spike_min_ratio, lp.divergence_ratio))
                high_run[key] = high_run[key] + 1 if ratio >= lp.divergence_ratio else 0
                if high_run[key] >= lp.divergence_samples:
                    fired["loss_divergence", "critical"] += 1
                elif z >= lp.spike_robust_z and ratio >= lp.spike_min_ratio:
                    fired["loss_spike", "info"] += 1
                # trend: median of the last window vs the median one window earlier
                win, nows = trend[key], trend_now[key]
                win.append((ts, value))
                while win[0][0] <= ts - window_ns:
                    win.popleft()
                now = statistics.median([v for _, v in win]) if len(win) >= lp.trend_min_samples else math.nan
                while len(nows) > 1 and nows[1][0] <= ts - window_ns:
                    nows.popleft()
                before = nows[0][1] if nows and nows[0][0] <= ts - window_ns else math.nan
                if before > 0 and now > before * (1.0 + lp.trend_increase_ratio):
                    rising.append((key, now, best_level[key]))
                nows.append((ts, now))
            else:
                window = gp.window_steps
                z, med, ratio = _spike(hist, value, min(gp.min_history_samples, window), gp.spike_min_ratio)
                if value > gp.threshold and z >= gp.robust_z and ratio >= gp.spike_min_ratio:
                    far_runs[key].append(ratio)
                else:
                    end_far_run(key)
            hist.append(value)
            if len(hist) > window:
                hist.popleft()
        elif metric == "learning_rate" or metric == "samples_per_second":
            if math.isfinite(value):
                series[key].append(value)
            if metric == "samples_per_second" and math.isfinite(value):
                values = series[key]
                pos, size = len(values) - 1, finite_count[key]
                skip, count, k = tp.baseline_skip_samples, tp.baseline_samples, max(tp.sustained_samples, 1)
                has_own = tp.use_job_baseline and size >= skip + count
                judged = not (has_own and pos < skip + count or not has_own and tp.baseline_samples_per_second is None)
                judged = judged and not (pos < k - 1 and size >= k)
                slow = False
                if judged:
                    baseline = (statistics.median(values[skip:skip + count]) if has_own
                                else tp.baseline_samples_per_second)
                    slow = statistics.median(values[-k:]) < tp.degradation_ratio * baseline
                if slow:
                    fired["throughput_degraded", "warning"] += 1
                slow_at[job].append((ts, slow))
        elif metric == "gpu_temperature_c":
            if math.isfinite(value):
                temperature[job, device].append((ts, value))
        elif metric in sustained_rules:
            previous = last_ts.get(key)
            last_ts[key] = ts
            for rule, warning, critical, side, strict, min_ns in sustained_rules[metric]:
                levels = [(limit, level) for limit, level in ((warning, "warning"), (critical, "critical"))
                          if limit is not None]
                if not levels:
                    continue
                sustained = []
                for limit, level in levels:
                    skey = (key, rule, level)
                    if value == value and beyond(value, limit, side, strict):
                        start = state.get(skey)
                        if start is None or ts - previous > gap:
                            start = ts
                        state[skey] = start
                        sustained.append(ts - start >= min_ns)
                    else:
                        state.pop(skey, None)
                        sustained.append(False)
                if sustained[0] and rule == "gpu_overutilized":
                    saturated.append((job, device, ts))
                elif sustained[0]:
                    fired[rule, "critical" if sustained[-1] and levels[-1][1] == "critical" else "warning"] += 1
    for key in list(far_runs):
        end_far_run(key)
    for key, now, best in rising:
        start = start_levels[key][min(LEVEL_SAMPLES, loss_count[key]) - 1]
        if now > best + giveback * max(start - best, 0.0):
            fired["loss_rising", "warning"] += 1
    for points in (*temperature.values(), *slow_at.values()):
        points.sort(key=lambda p: p[0])
    for job, device, ts in saturated:
        temp = _latest_at_or_before(temperature.get((job, device), []), ts)
        hot = throttle_c is not None and temp is not None and temp >= throttle_c
        slow = bool(_latest_at_or_before(slow_at.get(job, []), ts))
        fired["gpu_overutilized", "warning" if hot or slow else "info"] += 1
    for (job, metric, device), values in series.items():
        if metric != "learning_rate" or not values:
            continue
        peak = max(values)
        first_peak = values.index(peak)
        last_rise = max([i for i in range(1, len(values)) if values[i] > values[i - 1]], default=0)
        for i, v in enumerate(values):
            warmup = i < first_peak and peak >= lr.min
            decay = i >= last_rise and values[last_rise] >= lr.min
            if v > lr.max or (v < lr.min and not warmup and not decay):
                fired["learning_rate_out_of_range", "warning"] += 1
    return fired


def hit_counts(samples: pd.DataFrame, policy: MonitoringPolicy) -> Counter:
    """Firing samples per (rule, severity) of the vectorised rules, for the check against the loop."""
    hits = detect_hits(samples, None, policy)[0]
    hits = hits[hits["rule"].isin(LOOP_RULES)]
    severity = np.asarray(SEVERITIES)[hits["severity"].to_numpy(dtype=int)]
    return Counter(zip(hits["rule"], severity))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="samples to generate (default 10 million)")
    parser.add_argument("--loop-rows", type=int, default=1_000_000, help="slice for the per-row loop")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many reads and detections")
    args = parser.parse_args()

    DATA_DIR.mkdir(exist_ok=True)
    path = DATA_DIR / f"monitoring_{args.rows}.parquet"
    if not path.exists():
        t = time.perf_counter()
        synthetic_samples(args.rows).to_parquet(path, index=False)
        print(f"generated {path.name} in {time.perf_counter() - t:.1f} s")

    # best of --repeats for both, interleaved: the first touch of fresh memory (page faults) would
    # otherwise be charged to whichever runs first
    read_s = detect_s = float("inf")
    policy = MonitoringPolicy()
    for _ in range(args.repeats):
        t = time.perf_counter()
        samples = pd.read_parquet(path)
        read_s = min(read_s, time.perf_counter() - t)
        t = time.perf_counter()
        anomalies = detect_anomalies(samples, None, policy)
        detect_s = min(detect_s, time.perf_counter() - t)
    n = len(samples)

    # the loop's slice: whole series of the first jobs, so its rolling state is realistic
    loop_rows = min(args.loop_rows, n)
    sliced = samples.iloc[:loop_rows]
    t = time.perf_counter()
    loop_fired = loop_detect(sliced, policy)
    loop_slice_s = time.perf_counter() - t
    loop_s = loop_slice_s * n / loop_rows
    # a baseline only counts if it does the same work: same firing samples, rule by rule
    vector_fired = hit_counts(sliced, policy)
    if loop_fired != vector_fired:
        raise SystemExit(f"loop and detect_hits disagree on the slice: {loop_fired} vs {vector_fired}")

    print(f"\n{n:,} samples, {samples['job_id'].nunique()} jobs, {anomalies.shape[0]:,} anomalies "
          f"({anomalies['severity'].value_counts().to_dict()})\n")
    print("| step | seconds | samples/s | vs detect_anomalies |")
    print("|---|---:|---:|---:|")
    print(f"| `pd.read_parquet` | {read_s:.2f} | {n / read_s:,.0f} | {read_s / detect_s:.2f}x |")
    print(f"| `detect_anomalies` (all rules) | {detect_s:.2f} | {n / detect_s:,.0f} | 1.00x |")
    print(f"| per-row Python loop ({loop_rows:,} rows x {n / loop_rows:.0f}) | {loop_s:.1f} | "
          f"{n / loop_s:,.0f} | {loop_s / detect_s:.1f}x |")
    print(f"\nthe loop and detect_hits agree on the slice: {sum(loop_fired.values()):,} firing samples "
          f"in {len(loop_fired)} (rule, severity) pairs")
    print(f"detection / read = {detect_s / read_s:.2f} (target <= 1); "
          f"loop / detection = {loop_s / detect_s:.1f} (target >= 20)")


if __name__ == "__main__":
    main()
