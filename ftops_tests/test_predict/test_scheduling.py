"""The scheduling plan: placement on node pools or on the selector's instances, priority, mitigations,
and the three prediction assets on a temporary instance."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from ftops.policy import NodePool, PredictionPolicy, SpotPolicy
from ftops.predict.scheduling import (
    checkpoint_minutes,
    half_micro_batch,
    job_risk_table,
    priority_order,
    schedule_plan,
)
from ftops.schemas import JOB_RISK, SCHEDULE_PLAN, validate

NOW = pd.Timestamp("2026-03-18T09:00:00Z")
SPOT = SpotPolicy()  # checkpoint 2 min, default MTBI 20 h
POOLS = (NodePool("big", "A100-80GB", gpus_per_node=8, gpu_memory_gb=80.0, nodes=1, usd_per_hour=16.0),
         NodePool("small", "L4", gpus_per_node=4, gpu_memory_gb=24.0, nodes=2, usd_per_hour=2.0))


def _job(job_id: str, *, status: str = "pending", peak: float = 10.0, half: float | None = None,
         gpus: int = 1, gpu_hours: float = 10.0, risk: float = 0.1, critical: bool = False,
         pricing: str = "on_demand", batch: int = 4, accum: int = 2, gpu_model: str = "A100-80GB",
         gpu_memory_gb: float = 80.0) -> dict:
    return {"job_id": job_id, "status": status, "technique": "lora", "model_params_b": 7.0, "gpu_model": gpu_model,
            "gpu_count": gpus, "batch_size": batch, "grad_accum": accum, "critical": critical, "pricing": pricing,
            "gpu_memory_gb": gpu_memory_gb, "analytic_peak_memory_gb": peak, "peak_memory_gb": peak,
            "half_batch_peak_memory_gb": peak * 0.8 if half is None else half, "memory_ratio": peak / gpu_memory_gb,
            "memory_basis": "fitted", "analytic_gpu_hours": gpu_hours, "gpu_hours": gpu_hours,
            "gpu_hours_basis": "fitted", "risk": risk, "risky": risk >= 0.5, "top_factors": "gpu_count +0.30"}


def _risk(*jobs: dict) -> pd.DataFrame:
    return validate(pd.DataFrame(list(jobs)), JOB_RISK)


def _registry(risk: pd.DataFrame, instance_type: dict[str, str] | None = None) -> pd.DataFrame:
    """The registry rows behind a job_risk frame: submission order = row order."""
    reg = risk[["job_id", "status", "gpu_count", "pricing", "critical"]].copy()
    reg["submitted_at"] = NOW - pd.to_timedelta(np.arange(len(reg), 0, -1), unit="h")
    reg["instance_type"] = reg["job_id"].map(instance_type or {})
    reg["cloud"] = None
    reg["region"] = None
    return reg


def _plan(risk: pd.DataFrame, recommendations: pd.DataFrame | None = None, pools=POOLS,
          registry: pd.DataFrame | None = None, **policy) -> pd.DataFrame:
    prediction = PredictionPolicy(node_pools=pools, **policy)
    plan = schedule_plan(risk, recommendations, _registry(risk) if registry is None else registry, prediction, SPOT)
    validate(plan, SCHEDULE_PLAN)  # the contract holds
    return plan.set_index("job_id")


# ------------------------------------------------------------------------------------------ node pools


def test_a_job_goes_to_a_pool_whose_gpus_hold_its_memory():
    plan = _plan(_risk(_job("fits-l4", peak=12.0, gpu_model="L4", gpu_memory_gb=24.0),
                       _job("needs-80", peak=40.0, gpus=2)))
    assert plan.loc["fits-l4", "decision"] == "start" and plan.loc["fits-l4", "node_pool"] == "small"
    assert plan.loc["needs-80", "decision"] == "start" and plan.loc["needs-80", "node_pool"] == "big"
    assert plan.loc["needs-80", "gpu_memory_gb"] == 80.0 and plan.loc["needs-80", "target"] == "node_pool"
    assert plan.loc["needs-80", "pricing"] == "on_demand"
    # 10 GPU-hours of an A100-80GB job on A100s over 2 GPUs: 5 h; 2 GPUs of a 16 USD/h 8-GPU node
    assert plan.loc["needs-80", "expected_hours"] == pytest.approx(5.0)
    assert plan.loc["needs-80", "expected_cost_usd"] == pytest.approx(5.0 * 2 * 16.0 / 8)
    assert "8 free before this job" in plan.loc["needs-80", "reason"]


def test_a_job_that_fits_no_pool_is_reported_with_the_reason():
    plan = _plan(_risk(_job("too-big", peak=120.0, half=100.0), _job("too-wide", gpus=16)))
    assert (plan["decision"] == "unplaceable").all()
    assert plan.loc["too-big", "reason"] == ("predicted peak 120.0 GB per GPU (100.0 GB with half the micro-batch) is "
                                             "more than any node pool's GPUs hold (80 GB)")
    assert plan.loc["too-wide", "reason"] == "needs 16 GPUs; the largest node pool has 8"
    assert plan["node_pool"].isna().all()


def test_running_jobs_hold_their_pool_gpus_and_a_job_that_fits_waits():
    risk = _risk(_job("holder", status="running", gpus=6, peak=40.0), _job("waiter", gpus=4, peak=40.0),
                 _job("squeezed-in", gpus=2, peak=40.0))
    plan = _plan(risk, registry=_registry(risk, {"holder": "big"}))
    assert plan.loc["holder", "decision"] == "running" and plan.loc["holder", "node_pool"] == "big"
    assert pd.isna(plan.loc["holder", "priority"])
    assert plan.loc["squeezed-in", "decision"] == "start"
    assert plan.loc["waiter", "decision"] == "wait"
    # the waiter comes first (submitted earlier) but 2 GPUs are free: the later, smaller job backfills them
    assert plan.loc["waiter", "priority"] < plan.loc["squeezed-in", "priority"]
    assert plan.loc["waiter", "reason"] == "fits big but none has 4 GPUs free now (free: big 2)"
    assert plan.loc["waiter", "node_pool"] == "big"  # planned where it waits, so its cost is known


# ------------------------------------------------------------------------------------------- priority


def test_priority_is_critical_first_then_risk_adjusted_cost():
    risk = _risk(
        _job("cheap-safe", gpu_hours=10.0, risk=0.0),
        _job("cheap-risky", gpu_hours=10.0, risk=0.9),  # 10 x 1.9 = 19 risk-adjusted GPU-hours
        _job("dear-safe", gpu_hours=15.0, risk=0.0),  # 15: before the risky cheaper one
        _job("critical-dear", gpu_hours=100.0, risk=0.9, critical=True),
    )
    plan = _plan(risk)
    assert plan["priority"].sort_values().index.tolist() == ["critical-dear", "cheap-safe", "dear-safe", "cheap-risky"]
    cost = plan["expected_cost_usd"]
    assert plan.loc["cheap-risky", "risk_adjusted_cost_usd"] == pytest.approx(cost["cheap-risky"] * 1.9)
    # the one 8-GPU node is shared out in that order
    assert (plan["decision"] == "start").all()


def test_priority_ties_go_to_fewer_hours_then_earlier_submission():
    frame = pd.DataFrame({"job_id": ["b", "a", "c"], "critical": [False, False, False],
                          "risk_adjusted_cost_usd": [5.0, 5.0, np.nan], "gpu_hours": [2.0, 2.0, 1.0],
                          "submitted_at": [NOW - pd.Timedelta(hours=2), NOW - pd.Timedelta(hours=1), NOW]})
    assert priority_order(frame).tolist() == [1, 2, 3]  # unknown cost last; equal ones by submission


# ---------------------------------------------------------------------------------------- mitigations


def test_a_risky_job_checkpoints_at_the_ratio_of_its_young_daly_interval():
    plan = _plan(_risk(_job("risky", risk=0.6, gpu_hours=10.0), _job("safe", risk=0.1, gpu_hours=10.0)),
                 pools=POOLS[:1], risky_checkpoint_ratio=0.5, risk_threshold=0.5)
    # 10 GPU-hours on 1 A100-80GB of the pool: 10 h; p = 0.6 over 10 h is a failure rate -ln(0.4)/10 per hour
    mtbi = 10.0 / -math.log(0.4)
    young_daly = math.sqrt(2 * (2 / 60) * mtbi) * 60
    assert plan.loc["risky", "checkpoint_interval_minutes"] == pytest.approx(0.5 * young_daly)
    assert plan.loc["risky", "mitigations"].startswith(f"checkpoint every {0.5 * young_daly:.0f} min (0.5 x the "
                                                       f"{young_daly:.0f}-min Young/Daly interval): risk 0.60 >= 0.5")
    safe_mtbi = 10.0 / -math.log(0.9)
    assert plan.loc["safe", "checkpoint_interval_minutes"] == pytest.approx(math.sqrt(2 * (2 / 60) * safe_mtbi) * 60)
    assert pd.isna(plan.loc["safe", "mitigations"])


def test_checkpoint_interval_on_spot_adds_the_interruption_rate():
    interval, base = checkpoint_minutes(pd.Series([0.0, 0.0]), pd.Series([10.0, 10.0]), pd.Series([20.0, np.nan]),
                                        pd.Series([True, False]), checkpoint_minutes_each=2.0, risky_ratio=0.5)
    assert base[0] == pytest.approx(math.sqrt(2 * (2 / 60) * 20.0) * 60)  # spot's Young/Daly, as spot_plans has it
    assert interval[0] == pytest.approx(0.5 * base[0])
    assert np.isnan(base[1])  # no risk, no spot: nothing to checkpoint against


def test_tight_memory_halves_the_micro_batch_and_doubles_accumulation():
    plan = _plan(_risk(_job("tight", peak=75.0, half=60.0, batch=4, accum=2),
                       _job("roomy", peak=50.0, batch=4, accum=2)), memory_headroom_ratio=0.9)
    tight = plan.loc["tight"]
    assert (tight["batch_size"], tight["grad_accum"], tight["peak_memory_gb"]) == (2, 4, 60.0)
    assert tight["mitigations"] == ("micro-batch 4 -> 2, grad_accum 2 -> 4 (same effective batch): predicted peak "
                                    "75.0 GB > 0.9 x 80 GB")
    assert (plan.loc["roomy", "batch_size"], plan.loc["roomy", "grad_accum"]) == (4, 2)


def test_a_job_that_fits_only_with_half_the_micro_batch_is_placed_with_it():
    plan = _plan(_risk(_job("over", peak=90.0, half=70.0)))
    assert plan.loc["over", "decision"] == "start" and plan.loc["over", "batch_size"] == 2
    one = _plan(_risk(_job("over", peak=90.0, half=np.nan, batch=1)))  # a micro-batch of 1 cannot be halved
    assert one.loc["over", "decision"] == "unplaceable"


def test_critical_jobs_run_on_demand_instead_of_spot():
    risk = _risk(_job("crit-spot", critical=True, pricing="spot"),
                 _job("crit-running", status="running", critical=True, pricing="spot"))
    plan = _plan(risk, pools=(), recommendations=_recommendations(("crit-spot", 1, 80.0, "on_demand")))
    assert plan.loc["crit-spot", "pricing"] == "on_demand"
    for job in ("crit-spot", "crit-running"):
        assert "on demand instead of spot: critical job" in plan.loc[job, "mitigations"]


# ---------------------------------------------------------------------------------------------- cloud


def _recommendations(*rows: tuple[str, int | None, float, str]) -> pd.DataFrame:
    return pd.DataFrame([{
        "job_id": job_id, "rank": rank, "cloud": "aws", "region": "us-east-1",
        "instance_type": f"type-{gb:.0f}gb-{rank}", "gpu_model": "X", "gpu_count": 1, "instances": 1,
        "gpu_memory_gb": gb, "pricing": pricing, "expected_hours": 10.0, "expected_cost_usd": 100.0 * (rank or 0),
        "mtbi_hours": 20.0, "reason": None if rank else "model_params_b missing: the work cannot be sized",
    } for job_id, rank, gb, pricing in rows])


def test_cloud_takes_the_best_ranked_instance_that_holds_the_predicted_memory():
    risk = _risk(_job("first", peak=20.0), _job("second", peak=40.0), _job("none", peak=100.0, half=90.0),
                 _job("unsized", peak=10.0), _job("missing"))
    recs = _recommendations(("first", 1, 24.0, "spot"), ("first", 2, 80.0, "on_demand"),
                            ("second", 1, 24.0, "spot"), ("second", 2, 48.0, "spot"),
                            ("none", 1, 80.0, "on_demand"), ("unsized", None, np.nan, "on_demand"))
    plan = _plan(risk, recs, pools=())
    assert plan.loc["first", "instance_type"] == "type-24gb-1" and plan.loc["first", "reason"] == \
        "the selector's first choice"
    assert plan.loc["first", "pricing"] == "spot" and plan.loc["first", "target"] == "cloud"
    # on spot: interruptions (1 per 20 h) and failures (risk 0.1 over its 10 h) set the checkpoint interval
    rate = 1 / 20.0 - math.log(0.9) / 10.0
    assert plan.loc["first", "checkpoint_interval_minutes"] == pytest.approx(math.sqrt(2 * (2 / 60) / rate) * 60)
    assert plan.loc["second", "instance_type"] == "type-48gb-2"
    assert "rank 2 of the selector" in plan.loc["second", "reason"]
    assert plan.loc["none", "decision"] == "unplaceable"
    assert "more than the largest recommended GPU holds (80 GB)" in plan.loc["none", "reason"]
    assert plan.loc["unsized", "reason"] == ("no instance recommendation: model_params_b missing: the work cannot "
                                             "be sized")
    assert plan.loc["missing", "reason"] == ("no instance recommendation: the job is not in "
                                             "instance_recommendations")


# ---------------------------------------------------------------------------------------------- job_risk


def test_job_risk_joins_predictions_and_scores_of_live_jobs():
    jobs = pd.DataFrame({"job_id": ["a", "b"], "status": ["pending", "running"], "technique": ["lora", "full"],
                         "model_params_b": [7.0, 1.5], "gpu_type": ["A100-80GB", "L4"], "gpu_count": [1, 4],
                         "batch_size": [4, 1], "grad_accum": [2, 8], "critical": [True, None],
                         "pricing": ["spot", "on_demand"], "seq_len": [2048, 1024], "dataset_samples": [1000, 1000],
                         "epochs": [1, 1]})
    from ftops.predict.resources import fit_resource_model, predict_resources

    model = fit_resource_model(jobs.head(0).assign(ended_at=pd.Series(dtype="datetime64[ns, UTC]")), None, NOW)
    half = half_micro_batch(jobs)
    assert half["batch_size"].tolist()[0] == 2 and np.isnan(half["batch_size"].tolist()[1])
    assert half["grad_accum"].tolist() == [4.0, 16.0]
    scores = pd.DataFrame({"job_id": ["a"], "risk": [0.7], "top_factors": ["technique=lora +0.5"]})
    table = validate(job_risk_table(jobs, predict_resources(model, jobs), predict_resources(model, half), scores,
                                    risk_threshold=0.5), JOB_RISK).set_index("job_id")
    assert table.loc["a", "risky"] and table.loc["a", "top_factors"] == "technique=lora +0.5"
    assert pd.isna(table.loc["b", "risk"]) and not table.loc["b", "risky"]  # the risk model gave no score
    assert table.loc["a", "half_batch_peak_memory_gb"] < table.loc["a", "peak_memory_gb"]
    assert pd.isna(table.loc["b", "half_batch_peak_memory_gb"])
    assert table.loc["a", "memory_ratio"] == pytest.approx(table.loc["a", "peak_memory_gb"] / 80.0)
    assert set(table["memory_basis"]) == {"analytic"}


# --------------------------------------------------------------------------------------------- assets


class FakeRiskModel:
    """Stands in for failure_risk_model: score_jobs is monkeypatched to read its fixed risks."""

    def __init__(self, risk: dict[str, float]) -> None:
        self.risk = risk


def _fake_score_jobs(model, jobs, run_health, now=None, *, context=None):
    assert now == NOW and context is not None and run_health is not None
    ids = jobs["job_id"].astype(str)
    return pd.DataFrame({"job_id": ids, "risk": ids.map(model.risk).fillna(0.0), "top_factors": "fake +1.00"})


def test_prediction_assets_materialise_model_risk_and_plan(tmp_path, monkeypatch):
    import ftops.defs.predict as predict_defs
    from ftops.defs.io_manager import JoblibModelIOManager, PartitionedParquetIOManager, read_model
    from ftops.defs.resources import PolicyResource

    from .test_resources import synthetic_fleet

    history, health = synthetic_fleet(40)
    live = pd.DataFrame([
        {**history.iloc[0].to_dict(), "job_id": "new-1", "status": "pending", "critical": True,
         "started_at": None, "ended_at": None},
        {**history.iloc[1].to_dict(), "job_id": "new-2", "status": "running", "ended_at": None,
         "instance_type": "big"},
    ])
    registry = pd.concat([history.assign(critical=False), live], ignore_index=True)
    registry["submitted_at"] = pd.to_datetime(registry["started_at"], utc=True).fillna(NOW)
    monkeypatch.setattr(predict_defs, "score_jobs", _fake_score_jobs)

    @dg.asset(name="job_registry")
    def job_registry_stub() -> pd.DataFrame:
        return registry

    @dg.asset(name="run_health")
    def run_health_stub() -> pd.DataFrame:
        return health.assign(window_start=NOW, window_minutes=60, samples=1, non_finite=0, last_ts=NOW, devices=1)

    @dg.asset(name="instance_recommendations")
    def recommendations_stub() -> pd.DataFrame:
        return pd.DataFrame({"job_id": pd.Series(dtype="string")})

    @dg.asset(name="failure_risk_model", io_manager_key="model_io_manager")
    def risk_model_stub() -> FakeRiskModel:
        return FakeRiskModel({"new-1": 0.8})

    config = tmp_path / "ftops.yaml"
    config.write_text(yaml.safe_dump({"prediction": {"min_history_jobs": 20, "node_pools": [
        {"name": "big", "gpu_model": "A100-80GB", "gpus_per_node": 8, "gpu_memory_gb": 80, "nodes": 2}]}}))
    warehouse = str(tmp_path / "warehouse")
    result = dg.materialize(
        [job_registry_stub, run_health_stub, recommendations_stub, risk_model_stub, *predict_defs.PREDICT_ASSETS],
        resources={"io_manager": PartitionedParquetIOManager(base_path=warehouse),
                   "model_io_manager": JoblibModelIOManager(base_path=warehouse),
                   "policy": PolicyResource(config_path=str(config))},
        run_config={"ops": {name: {"config": {"as_of": NOW.isoformat()}} for name in ("resource_model", "job_risk")}},
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    meta = result.asset_materializations_for_node("resource_model")[0].metadata
    assert meta["gpu_hours_basis"].value == "fitted" and meta["memory_n_test"].value == 10
    assert meta["gpu_hours_mape_fitted"].value < meta["gpu_hours_mape_analytic"].value
    model = read_model(warehouse, dg.AssetKey("resource_model"))
    assert model.gpu_hours.basis == "fitted"
    risk = pd.read_parquet(tmp_path / "warehouse" / "job_risk.parquet").set_index("job_id")
    assert risk.index.tolist() == ["new-1", "new-2"] and risk.loc["new-1", "risk"] == 0.8
    plan = pd.read_parquet(tmp_path / "warehouse" / "schedule_plan.parquet").set_index("job_id")
    assert plan.loc["new-1", "decision"] == "start" and plan.loc["new-1", "node_pool"] == "big"
    assert plan.loc["new-2", "decision"] == "running"
    assert "checkpoint every" in plan.loc["new-1", "mitigations"]
    plan_meta = result.asset_materializations_for_node("schedule_plan")[0].metadata
    assert "no deadline column" in plan_meta["deadline"].value
