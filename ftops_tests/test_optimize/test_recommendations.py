"""Per-job recommendations and spot plans on a hand-made registry and catalogue."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ftops.optimize.recommendations import RECOMMENDATION_COLUMNS, instance_recommendations, spot_plans
from ftops.policy import OptimizationPolicy, Policy, SpotPolicy
from ftops.schemas import JOBS

from .test_selection import CATALOG, DATASHEETS

POLICY = Policy(optimization=OptimizationPolicy(
    spot=SpotPolicy(checkpoint_minutes=6.0, restart_minutes=30.0, default_mtbi_hours=20.0), datasheet_mfu=0.5))


def registry(rows: list[dict]) -> pd.DataFrame:
    base = {"technique": "full", "model_params_b": 7.0, "dataset_samples": 1000, "seq_len": 1000, "epochs": 1.0,
            "gpu_type": "NVIDIA A100-SXM4-80GB", "gpu_count": 8, "instance_type": "p4de.24xlarge", "cloud": "aws",
            "region": "us-east-1", "pricing": "on_demand", "budget_category": "research", "critical": False,
            "status": "pending"}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    return pd.concat([JOBS.empty(), frame], ignore_index=True)


def test_pending_jobs_get_top_instance_types_with_plans_and_savings():
    jobs = registry([{"job_id": "p1"}, {"job_id": "r1", "status": "running"}])
    out = instance_recommendations(jobs, CATALOG, DATASHEETS, None, POLICY, {"research": 1000.0}, None, top=2)
    assert list(out.columns) == list(RECOMMENDATION_COLUMNS)
    assert list(out["job_id"]) == ["p1", "p1"]  # running jobs are not moved
    assert list(out["rank"]) == [1, 2]
    # 6 x 7e9 x 1e6 tokens on 8 GPUs at 50 % of 1000 TFLOP/s (H100)
    h100_hours = 6 * 7e9 * 1e6 / (8 * 1000e12 * 0.5 * 3600)
    first = out.iloc[0]
    assert first["instance_type"] == "p5.48xlarge" and first["region"] == "us-east-1"
    assert first["pricing"] == "spot"  # 30 USD/h under 0.7 x 1000, and far cheaper with interruptions
    assert first["expected_cost_usd"] < h100_hours * 100.0
    # one row per instance type: the second p5 region does not take rank 2
    assert out.iloc[1]["instance_type"] != "p5.48xlarge"
    # current: p4de on demand, 6 x 7e9 x 1e6 / (8 x 312e12 x 0.5 x 3600) h x 40 USD/h
    current = 6 * 7e9 * 1e6 / (8 * 312e12 * 0.5 * 3600) * 40.0
    assert first["current_cost_usd"] == pytest.approx(current)
    assert first["saving_ratio"] == pytest.approx(1 - first["expected_cost_usd"] / current)
    assert first["worth_switching"]


def test_gpu_memory_of_the_current_gpu_is_the_minimum_and_critical_jobs_stay_on_demand():
    jobs = registry([{"job_id": "c", "critical": True, "gpu_type": "H200", "instance_type": "p5en.48xlarge"}])
    out = instance_recommendations(jobs, CATALOG, DATASHEETS, None, POLICY, {}, None, top=3)
    assert set(out["instance_type"]) == {"p5en.48xlarge"}  # only H200 has >= 141 GB
    assert set(out["pricing"]) == {"on_demand"}
    assert out["reason"].iloc[0].startswith("critical job")


def test_unsizable_and_impossible_jobs_get_a_reason_row():
    jobs = registry([
        {"job_id": "a", "dataset_samples": None},
        {"job_id": "b", "technique": None},
        {"job_id": "c", "gpu_count": 3, "gpu_type": None},
    ])
    out = instance_recommendations(jobs, CATALOG, DATASHEETS, None, POLICY, {}, None).set_index("job_id")
    assert out["rank"].isna().all()
    assert out.loc["a", "reason"].startswith("dataset_samples, epochs or seq_len missing")
    assert out.loc["b", "reason"].startswith("technique missing")
    assert out.loc["c", "reason"].startswith("no instance has 3 GPUs")


def test_spot_plans_for_pending_and_running_jobs_on_their_instance():
    jobs = registry([
        {"job_id": "od", "status": "running"},
        {"job_id": "sp", "status": "pending", "pricing": "spot", "budget_category": "tight"},
        {"job_id": "gone", "status": "running", "instance_type": "p9.unknown"},
        {"job_id": "done", "status": "succeeded"},
    ])
    out = spot_plans(jobs, CATALOG, DATASHEETS, None, POLICY, {"research": 1000.0, "tight": 10.0}, None)
    out = out.set_index("job_id")
    assert list(out.index) == ["gone", "od", "sp"]
    od = out.loc["od"]
    hours = 6 * 7e9 * 1e6 / (8 * 312e12 * 0.5 * 3600)
    assert od["current_pricing"] == "on_demand" and od["pricing"] == "spot" and od["change"]
    assert od["on_demand_cost_usd"] == pytest.approx(hours * 40.0)
    assert od["checkpoint_interval_minutes"] == pytest.approx(120.0)
    assert od["mtbi_hours"] == 20.0 and od["mtbi_basis"] == "configured"
    # 16 USD/h spot is above 0.7 x 10: back to on demand
    sp = out.loc["sp"]
    assert sp["pricing"] == "on_demand" and sp["change"] and "above the max 0.7 × 10.0 = 7.00" in sp["reason"]
    gone = out.loc["gone"]
    assert pd.isna(gone["pricing"]) and "not in the catalogue" in gone["reason"]
    assert math.isnan(float(gone["expected_cost_usd"]))


def test_no_pending_jobs_gives_an_empty_frame():
    jobs = registry([{"job_id": "x", "status": "succeeded"}])
    out = instance_recommendations(jobs, CATALOG, DATASHEETS, None, POLICY, {}, None)
    assert out.empty and list(out.columns) == list(RECOMMENDATION_COLUMNS)


def test_a_job_without_a_category_budget_is_held_to_the_per_job_cost_limit():
    from ftops.optimize.gpus import datasheets
    from ftops.optimize.recommendations import job_work

    jobs = pd.DataFrame({
        "job_id": ["a", "b"], "gpu_type": ["H100", "H100"], "gpu_count": [8, 8], "dataset_samples": [1000, 1000],
        "epochs": [1, 1], "seq_len": [2048, 2048], "model_params_b": [7.0, 7.0], "technique": ["lora", "lora"],
        "critical": [False, False], "budget_category": ["research", "unbudgeted"],
    })
    work = job_work(jobs, datasheets(), {"research": 3.0}, per_job_usd_per_hour=30.0)
    assert work["budget_usd_per_hour"].tolist() == [3.0, 30.0]
    assert job_work(jobs, datasheets(), {"research": 3.0})["budget_usd_per_hour"].isna().tolist() == [False, True]


def test_no_job_on_a_catalogued_instance_gives_reasons_not_an_error():
    policy = Policy()
    assert spot_plans(JOBS.empty(), CATALOG, DATASHEETS, None, policy, {}, None).empty
    assert instance_recommendations(JOBS.empty(), CATALOG, DATASHEETS, None, policy, {}, None).empty
    running = pd.DataFrame([{"job_id": "x", "status": "running", "instance_type": "not-in-catalogue", "gpu_type": "H100",
                             "gpu_count": 8, "technique": "lora", "model_params_b": 7.0, "dataset_samples": 1000,
                             "epochs": 1, "seq_len": 2048, "pricing": "spot", "critical": False,
                             "budget_category": "research", "cloud": "aws", "region": "us-east-1"}])
    plans = spot_plans(running, CATALOG, DATASHEETS, None, policy, {}, None)
    assert plans["job_id"].tolist() == ["x"] and plans["pricing"].isna().all()
    assert "catalogue" in plans["reason"].iloc[0]
