"""The fast paths of detection give the same anomalies as the plain ones.

- A seeded fleet (the benchmark's generator plus series that trip the other rules) gives the
  anomaly counts by rule and severity that the code before the speed-up gave (recorded below).
- The benchmark's per-row Python loop, an independent plain implementation of the per-sample
  rules, finds the same firing samples per rule and severity as the vectorised rules.
- Row order and column dtypes do not change anything (grouped rows take the block path, shuffled
  rows the lex-sort path), and the pruned median computations equal full rolling medians.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ftops.monitoring import detect_anomalies
from ftops.monitoring import rules_training, spikes
from ftops.monitoring import series as series_module
from ftops.monitoring.anomalies import _READ_METRICS, detect_hits
from ftops.monitoring.catalog import METRIC_CATALOG, RULES
from ftops.monitoring.liveness import LIVENESS_RULES
from ftops.monitoring.series import _grouped_rolling, medians_between, split_by_metric, window_medians
from ftops.policy import GpuMemoryPolicy, MonitoringPolicy, ThroughputPolicy

from .helpers import noisy, series

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "monitoring.py"

# the defaults the counts below were recorded with (before the GPU-capacity and throughput defaults
# changed): the spec's numbers
SPEC = dataclasses.replace(
    MonitoringPolicy(),
    gpu_memory=GpuMemoryPolicy(used_ratio_warning=0.90, used_ratio_critical=0.95, used_ratio_window_minutes=1.0),
    throughput=ThroughputPolicy(baseline_samples_per_second=50.0),
)

# detect_anomalies(seeded_fleet(), policy=SPEC) with the code before the speed-up
BEFORE_COUNTS = {
    ("cost_per_hour_high", "warning"): 1,
    ("cost_per_sample_above_benchmark", "warning"): 1,
    ("cpu_high", "warning"): 1,
    ("domain_accuracy_low", "warning"): 3,
    ("gpu_memory_capacity_high", "critical"): 32,
    ("gpu_memory_copy_util_high", "critical"): 1,
    ("gpu_underutilized", "warning"): 5,
    ("grad_norm_explosion", "critical"): 11,
    ("host_memory_high", "warning"): 1,
    ("learning_rate_out_of_range", "warning"): 1,
    ("loss_divergence", "critical"): 1,
    ("loss_non_finite", "critical"): 1,
    ("loss_rising", "warning"): 2,
    # since then: a loss spike is info (it came back; one that does not is a divergence), and the
    # two flat-or-rising extra series (x-div, x-rise) are runs that are not learning
    ("loss_spike", "info"): 27,
    ("not_learning", "warning"): 2,
    ("overfitting", "warning"): 1,
    ("throughput_degraded", "warning"): 3,
    ("val_loss_stagnation", "warning"): 1,
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("ftops_benchmark_monitoring", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _extras() -> pd.DataFrame:
    """Series that trip the rules the benchmark fleet does not: one job each, reader order."""
    rng = np.random.default_rng(11)
    t = np.arange(120)
    parts = [
        series("training_loss", np.r_[noisy(1.0, 60, 0.01, 1), noisy(1.3, 60, 0.01, 2)], job="x-rise"),
        series("training_loss", np.r_[noisy(1.0, 40, 0.02, 3), np.full(5, 9.0), noisy(1.0, 10, 0.02, 4)],
               job="x-div"),
        series("learning_rate", np.r_[np.full(20, 2e-4), np.full(10, 5e-3), np.full(20, 2e-4)], job="x-lr"),
        series("val_loss", np.r_[np.linspace(2.0, 1.5, 6), np.full(14, 1.49)], every="10min", job="x-val"),
        series("training_loss", np.linspace(2.0, 0.5, 200), every="1min", job="x-val"),
        series("val_loss", np.r_[np.linspace(2.0, 1.2, 8), np.linspace(1.25, 1.6, 6)], every="10min", job="x-ovf"),
        series("training_loss", np.linspace(2.0, 0.3, 140), every="1min", job="x-ovf"),
        series("domain_accuracy", [0.7, 0.8, 0.83], every="1h", job="x-acc"),
        series("cost_per_hour_usd", np.full(6, 12.0), every="10min", job="x-cost"),
        series("samples_per_second", np.full(6, 2.0), every="10min", job="x-cost"),
        series("cpu_utilization_pct", np.r_[np.full(5, 50.0), np.full(20, 96.0)], every="30s", job="x-cpu"),
        series("host_memory_used_ratio", np.r_[np.full(5, 0.5), np.full(10, 0.9)], every="30s", job="x-cpu"),
        series("gpu_memory_copy_util_pct", np.r_[np.full(5, 50.0), np.full(10, 97.0)], every="30s",
               job="x-cpu", device="0"),
        series("samples_per_second", [30.0], job="x-one"),
        series("gpu_power_watts", 300 + rng.standard_normal(120), every="30s", job="x-cpu", device="0"),
        series("epoch", t / 40.0, job="x-rise"),
    ]
    return pd.concat(parts, ignore_index=True)


def seeded_fleet(bench) -> pd.DataFrame:
    fleet = pd.concat([bench.synthetic_samples(240_000, seed=5), _extras()], ignore_index=True)
    for c in ("job_id", "metric", "device", "host", "source"):
        fleet[c] = fleet[c].astype("string")
    return fleet


def _counts(an: pd.DataFrame) -> dict[tuple[str, str], int]:
    return {k: int(v) for k, v in an.groupby(["rule", "severity"]).size().items()}


def test_seeded_fleet_gives_the_counts_of_before_the_speed_up(bench):
    assert _counts(detect_anomalies(seeded_fleet(bench), policy=SPEC)) == BEFORE_COUNTS


def _by_key(an: pd.DataFrame) -> pd.DataFrame:
    # anomalies that tie on (job, first_ts, rule) are listed in device code order, which is the
    # order devices first appear in the input
    return an.sort_values(["job_id", "rule", "device", "first_ts"]).reset_index(drop=True)


def test_row_order_and_dtypes_change_nothing(bench):
    fleet = seeded_fleet(bench)
    want = _by_key(detect_anomalies(fleet, policy=SPEC))
    rng = np.random.default_rng(0)
    late = fleet["ts"] >= fleet["ts"].median()
    variants = {
        "shuffled": fleet.iloc[rng.permutation(len(fleet))],  # lex-sort path
        "two halves": pd.concat([fleet[~late], fleet[late]]),  # one series in several blocks
        "object and categorical": fleet.assign(job_id=fleet["job_id"].astype(object),
                                               metric=fleet["metric"].astype("category"),
                                               device=fleet["device"].astype(object)),
    }
    for name, frame in variants.items():
        got = _by_key(detect_anomalies(frame.reset_index(drop=True), policy=SPEC))
        pd.testing.assert_frame_equal(got, want, obj=name)


def test_split_block_path_equals_sorted_rows(bench, monkeypatch):
    fleet = seeded_fleet(bench)
    late = fleet["ts"] >= fleet["ts"].median()
    # string columns compared in slices on threads, as on large tables
    monkeypatch.setattr(series_module, "_PARALLEL_ROWS", 1000)
    for frame in (fleet, pd.concat([fleet[~late], fleet[late]], ignore_index=True)):
        fast = split_by_metric(frame)
        with monkeypatch.context() as m:
            m.setattr(series_module, "_MAX_BLOCK_FRACTION", 0.0)  # every input lex-sorted row by row
            slow = split_by_metric(frame)
        assert set(fast) == set(slow) == set(frame["metric"].unique())
        for name, f in fast.items():
            for field in ("group", "ts", "step", "value", "job", "device", "job_names", "device_names"):
                np.testing.assert_array_equal(getattr(f, field), getattr(slow[name], field),
                                              err_msg=f"{name}.{field}")
    only = split_by_metric(fleet, {"grad_norm"})
    assert list(only) == ["grad_norm"]
    np.testing.assert_array_equal(only["grad_norm"].value, fast["grad_norm"].value)


@pytest.mark.parametrize("policy", [MonitoringPolicy(), SPEC])
def test_loop_baseline_implements_the_same_rules(bench, policy):
    fleet = seeded_fleet(bench)
    fleet = fleet[~fleet["job_id"].str.startswith("x-")]  # the loop covers the per-sample rules
    loop = bench.loop_detect(fleet, policy)
    assert loop == bench.hit_counts(fleet, policy)


def _trend_fleet(seed: int) -> pd.DataFrame:
    """Smooth loss and grad-norm series (so the bounds rule most rows out) with rises, steps and
    spikes (so some rows are left), several jobs and sampling intervals."""
    rng = np.random.default_rng(seed)
    parts = []
    for j in range(12):
        n = int(rng.integers(60, 400))
        drift = np.full(n, -0.001)
        if j in (1, 6):
            drift[n // 2: n // 2 + 30] = 0.01  # a rise of 35 % over 30 samples
        level = 2.0 * np.exp(np.cumsum(drift))
        level[int(rng.integers(n // 3, n))] *= rng.uniform(1.5, 6)
        if j % 4 == 0:
            level[n // 4: n // 4 + 4] *= 4.0  # divergence
        every = ["15s", "1min", "90s"][j % 3]
        parts.append(series("training_loss", level * (1 + rng.normal(0, 0.005 * (1 + j % 3), n)), job=f"j{j}",
                            every=every))
        grad = 1.5 * (1 + rng.normal(0, 0.05, n))
        grad[rng.integers(0, n, 2)] *= rng.uniform(2, 20)
        parts.append(series("grad_norm", grad, job=f"j{j}", every=every))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("seed", range(4))
def test_pruned_medians_equal_full_rolling_medians(monkeypatch, seed):
    samples = _trend_fleet(seed)
    policy = dataclasses.replace(MonitoringPolicy(), loss=dataclasses.replace(MonitoringPolicy().loss,
                                                                               trend_increase_ratio=0.03))
    # exact medians at the rows the bounds leave, however many
    monkeypatch.setattr(rules_training, "_MAX_CANDIDATE_CELLS_PER_ROW", 10**9)
    monkeypatch.setattr(spikes, "_MAX_CANDIDATE_SHARE", 1.0)
    fast = detect_hits(samples, None, policy)[0]
    # one rolling median over every row
    monkeypatch.setattr(rules_training, "_maybe_rising", lambda *a, **k: None)
    monkeypatch.setattr(spikes, "_MAX_CANDIDATE_SHARE", -1.0)
    full = detect_hits(samples, None, policy)[0]
    assert len(full) > 0 and "loss_rising" in set(full["rule"])
    pd.testing.assert_frame_equal(fast, full)


def test_window_medians_equal_pandas_rolling():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 300))
        group = np.cumsum(np.r_[True, rng.random(n - 1) < 0.03]) - 1
        values = rng.standard_normal(n).round(int(rng.integers(0, 3)))
        values[rng.random(n) < 0.1] = np.nan
        values[rng.random(n) < 0.03] = np.inf  # pandas treats inf in a window as missing
        window, exclude = int(rng.integers(1, 12)), bool(trial % 2)
        min_periods = int(rng.integers(0, window + 1))
        want = _grouped_rolling(values, group, window, min_periods, exclude, "median")
        got = window_medians(values, group, window, min_periods, np.arange(n), exclude)
        np.testing.assert_array_equal(got, want)
        if not exclude:
            first = np.maximum(np.arange(n) - window + 1, np.flatnonzero(np.r_[True, np.diff(group) != 0])[group])
            np.testing.assert_array_equal(medians_between(values, first, np.arange(n), min_periods), want)


def test_every_metric_a_rule_reads_is_split_out():
    # the liveness rules judge jobs from the registry and the latest heartbeats, not sample series
    sample_rules = [r for r in RULES if r not in LIVENESS_RULES]
    read = {RULES[r].metric for r in sample_rules} | {m for m, info in METRIC_CATALOG.items()
                                                      if set(info.rules) - LIVENESS_RULES}
    assert read <= _READ_METRICS
