"""Benchmark comparison: measured throughput per configuration, per dollar, and what follows from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ftops.optimize.benchmark import (
    COMPARISON_COLUMNS,
    RECOMMENDATION_COLUMNS,
    benchmark_comparison,
    benchmark_exclusions,
    benchmark_recommendations,
    job_throughput,
    model_size_class,
    proposal_id,
)

NOW = pd.Timestamp("2026-06-30T12:00:00Z")
T0 = pd.Timestamp("2026-06-01T00:00:00Z")

CATALOG = pd.DataFrame.from_records([
    # cloud, region, instance_type, gpu_model, gpu_count, gpu_memory_gb (per GPU), on demand, spot
    ("aws", "us-east-1", "p4de.24xlarge", "A100-80GB", 8, 80.0, 40.0, 16.0),
    ("aws", "us-east-1", "g6e.12xlarge", "L40S", 4, 48.0, 10.0, 4.0),
    ("aws", "us-east-1", "p5.48xlarge", "H100", 8, 80.0, 98.0, 40.0),
    ("aws", "us-east-1", "p5e.48xlarge", "H200", 8, 141.0, 110.0, 12.0),
    ("aws", "us-east-1", "g6.xlarge", "L4", 1, 24.0, 0.8, 0.1),
    ("aws", "us-west-2", "p4de.24xlarge", "A100-80GB", 8, 80.0, 44.0, 20.0),
], columns=["cloud", "region", "instance_type", "gpu_model", "gpu_count", "gpu_memory_gb",
            "on_demand_usd_per_hour", "spot_usd_per_hour"]).assign(
    vcpus=96.0, memory_gb=1152.0, source="test", price_date="2026-06-01")

DATASHEETS = pd.DataFrame.from_records([
    ("A100-80GB", 80.0, 312.0), ("L40S", 48.0, 362.0), ("H100", 80.0, 989.0), ("H200", 141.0, 989.0),
    ("L4", 24.0, 121.0),
], columns=["gpu_model", "memory_gb", "dense_bf16_tflops"]).set_index("gpu_model")


def _job(job_id: str, **overrides) -> dict:
    job = dict(job_id=job_id, technique="lora", model_params_b=7.0, seq_len=2048, batch_size=4, grad_accum=2,
               gpu_type="A100-80GB", gpu_count=8, instance_type="p4de.24xlarge", cloud="aws", region="us-east-1",
               pricing="on_demand", budget_category="research", status="succeeded",
               started_at=NOW - pd.Timedelta(days=5), ended_at=NOW - pd.Timedelta(days=5) + pd.Timedelta(hours=10))
    job.update(overrides)
    return job


def _jobs(*jobs: dict) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(jobs)
    for column in ("started_at", "ended_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _throughput(*rows: tuple) -> pd.DataFrame:
    """(job_id, samples/s, tokens/s, steps/s, gpu util %) rows in job_throughput's shape."""
    frame = pd.DataFrame.from_records(rows, columns=["job_id", "samples_per_second", "tokens_per_second",
                                                     "steps_per_second", "gpu_utilization_pct"])
    return frame.assign(windows=pd.array([3] * len(frame), dtype="Int64"))


def _health(job_id: str, metric: str, windows: list[tuple[int, int, float]],
            steps: list[tuple[int, int]] | None = None) -> pd.DataFrame:
    """run_health rows: (hour after T0, samples, mean) per window; steps: (hour, max_step) reached at the hour's end."""
    rows = []
    step_at = dict(steps or [])
    for hour, samples, mean in windows:
        start = T0 + pd.Timedelta(hours=hour)
        step = step_at.get(hour)
        rows.append(dict(job_id=job_id, metric=metric, window_start=start, window_minutes=60, samples=samples,
                         non_finite=0, mean=mean, min=mean, max=mean, last=mean,
                         last_ts=start + pd.Timedelta(minutes=59),
                         max_step=step, max_step_ts=start + pd.Timedelta(minutes=59) if step is not None else pd.NaT,
                         devices=0, target_reached=pd.NA))
    frame = pd.DataFrame.from_records(rows)
    frame["max_step"] = frame["max_step"].astype("Int64")
    frame["max_step_ts"] = pd.to_datetime(frame["max_step_ts"], utc=True)
    return frame


# ------------------------------------------------------------------------------------ throughput

def test_throughput_is_sample_weighted_skips_warm_up_and_reads_step_progress():
    health = pd.concat([
        # three windows: the first (warm-up) is left out; the others weigh by their sample counts
        _health("a", "samples_per_second", [(0, 10, 1.0), (1, 30, 10.0), (2, 10, 20.0)]),
        _health("a", "tokens_per_second", [(0, 10, 100.0), (1, 30, 20000.0), (2, 10, 40000.0)]),
        # two windows only: both count
        _health("a", "gpu_utilization_pct", [(1, 10, 60.0), (2, 30, 90.0)]),
        _health("a", "training_loss", [(0, 5, 2.0), (1, 5, 1.5), (2, 5, 1.2)], steps=[(0, 100), (1, 460), (2, 820)]),
        # a Hugging Face summary: one samples/s value, no tokens, no steps
        _health("b", "samples_per_second", [(0, 1, 2.98)]),
    ], ignore_index=True)
    out = job_throughput(health).set_index("job_id")
    assert out.loc["a", "samples_per_second"] == pytest.approx((30 * 10.0 + 10 * 20.0) / 40)
    assert out.loc["a", "tokens_per_second"] == pytest.approx((30 * 20000.0 + 10 * 40000.0) / 40)
    assert out.loc["a", "gpu_utilization_pct"] == pytest.approx((10 * 60.0 + 30 * 90.0) / 40)
    assert out.loc["a", "steps_per_second"] == pytest.approx((820 - 100) / 7200)
    assert out.loc["a", "windows"] == 2
    assert out.loc["b", "samples_per_second"] == pytest.approx(2.98)
    assert np.isnan(out.loc["b", "tokens_per_second"]) and np.isnan(out.loc["b", "steps_per_second"])


def test_model_size_classes():
    labels = model_size_class(pd.Series([0.5, 1.5, 3.8, 6.2, 7.0, 8.0, 14.7, 34.0, 70.6, 180.0, np.nan]))
    assert list(labels) == ["1B", "1B", "3B", "7B", "7B", "7B", "13B", "34B", "70B", ">80B", "?B"]


# ------------------------------------------------------------------------------------ comparison

def _fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    jobs = _jobs(
        _job("j1", model_params_b=7.0),
        _job("j2", model_params_b=8.0, started_at=NOW - pd.Timedelta(days=3),
             ended_at=NOW - pd.Timedelta(days=3) + pd.Timedelta(hours=5)),
        _job("j3", gpu_type="L40S", gpu_count=4, instance_type="g6e.12xlarge", pricing="spot",
             started_at=NOW - pd.Timedelta(days=40), ended_at=NOW - pd.Timedelta(days=39)),
        _job("j4", technique="full", model_params_b=13.0, gpu_type="H100", instance_type="p5.48xlarge",
             pricing="spot"),
    )
    throughput = _throughput(
        ("j1", 10.0, 20000.0, 0.16, 90.0),
        ("j2", 12.0, 22000.0, 0.18, 80.0),
        ("j3", 8.0, 16000.0, 0.5, 85.0),
        ("j4", 5.0, 9000.0, 0.1, 88.0),
    )
    return jobs, throughput


def test_configurations_are_grouped_priced_and_ranked():
    jobs, throughput = _fleet()
    out = benchmark_comparison(jobs, throughput, CATALOG)
    assert tuple(out.columns) == COMPARISON_COLUMNS
    rows = out.set_index("configuration")
    a100 = rows.loc["lora 7B · 8× A100-80GB · on_demand · mb4 · seq2048"]
    assert a100["jobs"] == 2 and a100["job_ids"] == "j1,j2"
    assert a100["samples_per_second"] == pytest.approx(11.0)  # the median of the jobs
    assert a100["tokens_per_second"] == pytest.approx(21000.0)
    assert a100["samples_per_second_per_gpu"] == pytest.approx(11.0 / 8)
    assert a100["usd_per_hour"] == pytest.approx(40.0)
    assert a100["price_basis"] == "catalogue aws us-east-1 p4de.24xlarge"
    assert a100["usd_per_1k_samples"] == pytest.approx(40.0 / (11.0 * 3600) * 1000)
    assert a100["usd_per_million_tokens"] == pytest.approx(40.0 / (21000.0 * 3600) * 1e6)
    assert a100["samples_per_usd"] == pytest.approx(11.0 * 3600 / 40.0)
    assert a100["precision"] is None
    l40s = rows.loc["lora 7B · 4× L40S · spot · mb4 · seq2048"]
    assert l40s["usd_per_hour"] == pytest.approx(4.0)
    # per group, 1 = most work per dollar; the other group ranks on its own
    assert (l40s["rank_in_group"], l40s["best_in_group"]) == (1, True)
    assert (a100["rank_in_group"], a100["best_in_group"]) == (2, False)
    h100 = rows.loc["full 13B · 8× H100 · spot · mb4 · seq2048"]
    assert (h100["rank_in_group"], h100["best_in_group"]) == (1, True)


def test_price_basis_billed_beats_catalogue_and_falls_back_to_the_gpu_median():
    jobs, throughput = _fleet()
    jobs.loc[jobs["job_id"] == "j4", "instance_type"] = "p5.unknown"  # not in the catalogue
    hours = pd.date_range(T0, periods=10, freq="h")
    line = dict(job_id="j3", budget_category="research", estimated=False, attribution="tag", suspicious=False)
    costs = pd.concat([
        pd.DataFrame(dict(line, period_start=hours, period_end=hours + pd.Timedelta(hours=1), cost_usd=5.0)),
        # a volume billed for the same hours: more cost, not more hours
        pd.DataFrame(dict(line, period_start=hours, period_end=hours + pd.Timedelta(hours=1), cost_usd=0.5)),
        # an estimate and a monthly fee say nothing about the billed hourly rate
        pd.DataFrame(dict(line, period_start=[T0], period_end=[T0 + pd.Timedelta(hours=1)], cost_usd=[99.0],
                          estimated=[True])),
        pd.DataFrame(dict(line, period_start=[T0], period_end=[T0 + pd.Timedelta(days=30)], cost_usd=[300.0])),
    ], ignore_index=True)
    out = benchmark_comparison(jobs, throughput, CATALOG, costs).set_index("configuration")
    l40s = out.loc["lora 7B · 4× L40S · spot · mb4 · seq2048"]
    assert l40s["price_basis"] == "billed"
    assert l40s["usd_per_hour"] == pytest.approx(55.0 / 10)
    assert out.loc["lora 7B · 8× A100-80GB · on_demand · mb4 · seq2048", "price_basis"] == \
        "catalogue aws us-east-1 p4de.24xlarge"
    h100 = out.loc["full 13B · 8× H100 · spot · mb4 · seq2048"]
    assert h100["price_basis"] == "catalogue median aws H100 ×8 spot"
    assert h100["usd_per_hour"] == pytest.approx(40.0)


def test_a_job_that_died_at_start_up_gives_no_throughput():
    jobs = _jobs(
        _job("ok"),
        _job("dead", gpu_type="H100", instance_type="p5.48xlarge", status="failed", exit_reason="oom",
             ended_at=NOW - pd.Timedelta(days=5) + pd.Timedelta(minutes=6)),
        _job("late-oom", gpu_type="L40S", gpu_count=4, instance_type="g6e.12xlarge", status="failed",
             exit_reason="oom", ended_at=NOW - pd.Timedelta(days=5) + pd.Timedelta(hours=4)),
        _job("waiting", status="pending", started_at=pd.NaT, ended_at=pd.NaT),
        _job("silent", status="running", ended_at=pd.NaT),
    )
    throughput = _throughput(("ok", 10.0, 20000.0, 0.2, 90.0), ("dead", 50.0, 99000.0, 1.0, 10.0),
                             ("late-oom", 6.0, 12000.0, 0.3, 85.0))
    out = benchmark_comparison(jobs, throughput, CATALOG)
    ids = set(",".join(out["job_ids"]).split(","))
    assert ids == {"ok", "late-oom"}  # an OOM after hours of steady running still measured something
    assert not out["gpu_model"].eq("H100").any()
    excluded = benchmark_exclusions(jobs, throughput).set_index("job_id")["reason"]
    assert set(excluded.index) == {"dead", "waiting", "silent"}
    assert excluded["dead"].startswith("ended at start-up: failed after 0.1 h")
    assert excluded["waiting"] == "not run yet (pending)"
    assert excluded["silent"] == "no samples_per_second measured"


# ------------------------------------------------------------------------------- recommendations

def _move_fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    jobs = _jobs(
        _job("j1"),  # 10 hours on 8× A100-80GB on demand, 5 days ago
        _job("j3", gpu_type="L40S", gpu_count=4, instance_type="g6e.12xlarge", pricing="spot",
             started_at=NOW - pd.Timedelta(days=40), ended_at=NOW - pd.Timedelta(days=39)),
    )
    throughput = _throughput(("j1", 10.0, 20000.0, 0.16, 90.0), ("j3", 8.0, 16000.0, 0.5, 85.0))
    return jobs, throughput


def test_a_move_names_its_jobs_and_its_saving_is_the_hand_arithmetic():
    jobs, throughput = _move_fleet()
    comparison = benchmark_comparison(jobs, throughput, CATALOG)
    out = benchmark_recommendations(comparison, jobs, CATALOG, DATASHEETS, now=NOW)
    assert tuple(out.columns) == RECOMMENDATION_COLUMNS
    (move,) = out[out["kind"] == "move"].to_dict("records")
    assert move["from_configuration"] == "lora 7B · 8× A100-80GB · on_demand · mb4 · seq2048"
    assert move["to_configuration"] == "lora 7B · 4× L40S · spot · mb4 · seq2048"
    assert (move["from_job_ids"], move["to_job_ids"], move["job_ids"]) == ("j1", "j3", "j1,j3")
    assert move["unit"] == "million tokens"
    from_cost = 40.0 / (20000 * 3600) * 1e6  # USD per million tokens
    to_cost = 4.0 / (16000 * 3600) * 1e6
    assert move["cost_change_pct"] == pytest.approx((to_cost / from_cost - 1) * 100)  # −87.5 %
    assert move["time_change_pct"] == pytest.approx(25.0)  # 20,000 -> 16,000 tokens/s
    # the fleet's first start is 40 days back, so the window is the full 30 days, scaled to a month
    month = 30.4375 / 30
    assert move["monthly_volume"] == pytest.approx(10 * 3600 * 20000 / 1e6 * month)
    assert move["saving_usd_per_month"] == pytest.approx(10 * 40.0 * 0.875 * month)  # 355.10 USD
    assert move["message"] == (
        "move LoRA 7B jobs from 8× A100-80GB on-demand to 4× L40S spot: −88 % cost per million tokens, "
        "+25 % time; saves ~355 USD/month at the fleet's current volume (from jobs j1; measured on jobs j3)")


def test_no_move_from_a_configuration_unused_in_the_window_or_below_the_saving_ratio():
    jobs, throughput = _move_fleet()
    jobs.loc[jobs["job_id"] == "j1", ["started_at", "ended_at"]] = [NOW - pd.Timedelta(days=60),
                                                                     NOW - pd.Timedelta(days=59)]
    comparison = benchmark_comparison(jobs, throughput, CATALOG)
    out = benchmark_recommendations(comparison, jobs, CATALOG, DATASHEETS, now=NOW)
    assert not out["kind"].eq("move").any()
    jobs, throughput = _move_fleet()
    comparison = benchmark_comparison(jobs, throughput, CATALOG)
    out = benchmark_recommendations(comparison, jobs, CATALOG, DATASHEETS, now=NOW, min_saving_ratio=0.9)
    assert not out["kind"].eq("move").any()


def test_calibrations_only_for_unmeasured_gpus_with_stable_ids():
    jobs, throughput = _move_fleet()
    comparison = benchmark_comparison(jobs, throughput, CATALOG)
    out = benchmark_recommendations(comparison, jobs, CATALOG, DATASHEETS, now=NOW)
    calibrate = out[out["kind"] == "calibrate"]
    # measured in the group: A100-80GB, L40S. L4 has less memory than the best (L40S, 48 GB);
    # 8× H100 at 40 USD/h projects dearer per token than the measured L40S; 8× H200 at 12 USD/h cheaper.
    assert list(calibrate["gpu_model"]) == ["H200"]
    (row,) = calibrate.to_dict("records")
    speedup = (8 * 989.0) / (4 * 362.0)
    assert row["cost_change_pct"] == pytest.approx((12.0 / (16000 * speedup) / (4.0 / 16000) - 1) * 100)
    assert row["expected_hours"] == pytest.approx(200 / (0.5 * speedup) / 3600 + 0.25)
    assert row["expected_cost_usd"] == pytest.approx(row["expected_hours"] * 12.0)
    assert (row["instance_type"], row["cloud"], row["region"], row["pricing"]) == (
        "p5e.48xlarge", "aws", "us-east-1", "spot")
    assert (row["micro_batch"], row["seq_len"], row["steps"], row["gpu_count"]) == (4, 2048, 200, 8)
    assert row["job_ids"] == "j3" and "j3" in row["basis"] and row["proposal_id"] in row["message"]
    assert row["proposal_id"] == proposal_id({
        "technique": "lora", "model_size": "7B", "gpu_model": "H200", "gpu_count": 8,
        "instance_type": "p5e.48xlarge", "cloud": "aws", "region": "us-east-1", "pricing": "spot",
        "micro_batch": 4, "seq_len": 2048, "precision": None, "steps": 200})
    again = benchmark_recommendations(comparison, jobs, CATALOG, DATASHEETS, now=NOW + pd.Timedelta(days=1))
    assert list(again.loc[again["kind"] == "calibrate", "proposal_id"]) == [row["proposal_id"]]
    # once H200 is measured for the group, it is not proposed again
    jobs = pd.concat([jobs, _jobs(_job("calib-x", gpu_type="H200", instance_type="p5e.48xlarge",
                                       pricing="spot"))], ignore_index=True)
    throughput = pd.concat([throughput, _throughput(("calib-x", 30.0, 60000.0, 2.0, 90.0))], ignore_index=True)
    later = benchmark_recommendations(benchmark_comparison(jobs, throughput, CATALOG), jobs, CATALOG, DATASHEETS,
                                      now=NOW)
    assert not later["kind"].eq("calibrate").any()


# ------------------------------------------------------------------------------------ demo fleet

DEMO_END = pd.Timestamp("2026-03-18T09:00:00Z")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    from ftops.demo_fleet import write_demo_inbox
    from ftops.monitoring.health import run_health
    from ftops.readers.inbox import reader_for

    inbox = tmp_path_factory.mktemp("bench") / "inbox"
    write_demo_inbox(inbox, seed=3, n_jobs=18, days=2, end=DEMO_END)
    jobs = reader_for("jobs", str(inbox / "jobs" / "jobs.csv"))().accepted
    files = sorted(p for p in Path(inbox / "metrics").rglob("*") if p.is_file())
    samples = pd.concat([reader_for("metrics", str(p))().accepted for p in files], ignore_index=True)
    return jobs, run_health(samples)


def test_demo_fleet_ranks_configurations_and_names_real_jobs(demo):
    from ftops.optimize.catalog import bundled_catalog
    from ftops.optimize.gpus import datasheets

    jobs, health = demo
    throughput = job_throughput(health)
    catalog = bundled_catalog()
    comparison = benchmark_comparison(jobs, throughput, catalog)
    assert comparison["usd_per_hour"].notna().all()
    group_sizes = comparison.groupby(["technique", comparison["model_params_b"].pipe(model_size_class)]).size()
    assert group_sizes.max() >= 3
    assert comparison["rank_in_group"].max() >= 3
    assert comparison.groupby(["technique", model_size_class(comparison["model_params_b"])])["best_in_group"].sum().eq(1).all()
    out = benchmark_recommendations(comparison, jobs, catalog, datasheets(), now=DEMO_END)
    assert out["kind"].eq("move").any()
    known = set(jobs["job_id"].astype(str))
    named = {j for ids in out["job_ids"] for j in ids.split(",")}
    assert named and named <= known
    moves = out[out["kind"] == "move"]
    assert (moves["saving_usd_per_month"] > 0).all()
    assert all(any(j in m for j in ids.split(",")) for m, ids in zip(moves["message"], moves["from_job_ids"]))
