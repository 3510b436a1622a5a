"""Prediction assets (spec §3): the resource model, risk and resources of live jobs, the scheduling plan."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.defs.as_of import AsOfConfig
from ftops.defs.automation import hourly_after_upstream_updates
from ftops.defs.checks import as_contract, contract_check, contract_spec, markdown_preview
from ftops.defs.resources import PolicyResource
from ftops.predict.resources import ResourceModel, fit_resource_model, predict_resources
from ftops.predict.risk import score_jobs
from ftops.predict.scheduling import NO_DEADLINE, half_micro_batch, job_risk_table, live_jobs
from ftops.predict.scheduling import schedule_plan as plan_schedule
from ftops.schemas import INSTANCE_RECOMMENDATIONS, JOB_RISK, JOBS, RUN_HEALTH, SCHEDULE_PLAN, validate

GROUP = "prediction"


def _metadata_value(value: float | int | str) -> float | int | str | None:
    # NaN (no score: no held-out jobs) reads as a number in the UI; an absent value says what it is
    return None if isinstance(value, float) and value != value else value


@dg.asset(
    group_name=GROUP,
    kinds={"scikitlearn"},
    io_manager_key="model_io_manager",
    automation_condition=hourly_after_upstream_updates(),
)
def resource_model(config: AsOfConfig, job_registry: pd.DataFrame, run_health: pd.DataFrame,
                   policy: PolicyResource) -> dg.Output:
    """Predicts a job's peak GPU memory per GPU and its GPU-hours from its spec: ridge regressions on the
    log ratio to an analytic estimate (bytes per parameter plus activations; training FLOPs over datasheet
    TFLOP/s), trained on ended jobs and their metrics, or the analytic estimate while history is short.
    Metadata: the basis of each target and its time-ordered held-out MAPE beside the analytic one's."""
    settings = policy.load()
    model = fit_resource_model(as_contract(job_registry, JOBS), as_contract(run_health, RUN_HEALTH), config.now(),
                               min_history_jobs=settings.prediction.min_history_jobs,
                               mfu=settings.optimization.datasheet_mfu)
    metadata = {key: _metadata_value(value) for key, value in model.summary().items()}
    return dg.Output(model, metadata={**metadata, "notes": dg.MetadataValue.json(list(model.notes))})


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    automation_condition=hourly_after_upstream_updates(),
    check_specs=[contract_spec(JOB_RISK)],
)
def job_risk(config: AsOfConfig, job_registry: pd.DataFrame, run_health: pd.DataFrame,
             resource_model: ResourceModel, failure_risk_model: object, policy: PolicyResource) -> Iterator:
    """Every pending and running job: predicted peak memory per GPU (also at half the micro-batch) and
    GPU-hours with their basis, and its failure risk with the factors that drive it."""
    now = config.now()
    prediction = policy.load().prediction
    jobs = as_contract(job_registry, JOBS)
    health = as_contract(run_health, RUN_HEALTH)
    live = live_jobs(jobs)
    scores = (score_jobs(failure_risk_model, live, health, now, context=jobs)
              if failure_risk_model is not None and not live.empty else None)
    table = validate(job_risk_table(live, predict_resources(resource_model, live),
                                    predict_resources(resource_model, half_micro_batch(live)), scores,
                                    prediction.risk_threshold), JOB_RISK)
    risky = table[table["risky"].fillna(False).astype(bool)] if not table.empty else table
    yield dg.Output(table, metadata={
        "rows": len(table),
        "jobs": len(table),
        "risky": len(risky),
        "scored": int(table["risk"].notna().sum()) if not table.empty else 0,
        "memory_basis": resource_model.peak_memory.basis,
        "gpu_hours_basis": resource_model.gpu_hours.basis,
        "riskiest": markdown_preview(table.sort_values("risk", ascending=False) if not table.empty else table,
                                     ["job_id", "status", "risk", "top_factors", "peak_memory_gb", "gpu_hours"]),
    })
    yield contract_check(table, JOB_RISK)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    automation_condition=hourly_after_upstream_updates(),
    check_specs=[contract_spec(SCHEDULE_PLAN)],
)
def schedule_plan(job_risk: pd.DataFrame, instance_recommendations: pd.DataFrame, job_registry: pd.DataFrame,
                  policy: PolicyResource) -> Iterator:
    """Where and in which order pending jobs run (the selector's instance, or a node pool that fits the
    predicted memory and has the GPUs free), critical first then by risk-adjusted cost, with mitigations:
    a shorter checkpoint interval for risky jobs, on demand for critical ones, a smaller micro-batch where
    memory is tight. A job that fits nowhere says why."""
    settings = policy.load()
    table = validate(plan_schedule(as_contract(job_risk, JOB_RISK),
                                   as_contract(instance_recommendations, INSTANCE_RECOMMENDATIONS),
                                   as_contract(job_registry, JOBS), settings.prediction,
                                   settings.optimization.spot), SCHEDULE_PLAN)
    unplaceable = table[table["decision"] == "unplaceable"] if not table.empty else table
    mitigated = table[table["mitigations"].notna()] if not table.empty else table
    yield dg.Output(table, metadata={
        "rows": len(table),
        "jobs": len(table),
        "by_decision": dg.MetadataValue.json(table["decision"].value_counts().astype(int).to_dict()
                                             if not table.empty else {}),
        "placement": "node pools" if settings.prediction.node_pools else "instance_recommendations",
        "deadline": NO_DEADLINE,
        "mitigated": len(mitigated),
        "plan": markdown_preview(table[table["priority"].notna()] if not table.empty else table,
                                 ["priority", "job_id", "decision", "node_pool", "instance_type", "expected_cost_usd",
                                  "risk", "mitigations"]),
        "unplaceable": markdown_preview(unplaceable, ["job_id", "reason"]),
    })
    yield contract_check(table, SCHEDULE_PLAN)


PREDICT_ASSETS = [resource_model, job_risk, schedule_plan]
