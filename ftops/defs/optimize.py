"""Optimisation assets: the instance catalogue, the benchmark comparison and its recommendations,
instance recommendations and spot plans for the jobs, node activity and autoscaling advice."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.defs.as_of import AsOfConfig
from ftops.defs.automation import after_upstream_updates, hourly_after_upstream_updates
from ftops.defs.checks import as_contract, contract_check, contract_spec, markdown_preview
from ftops.defs.partitions import ONE_SHARD_DAY_PER_RUN, days_of_run, shard_day_partitions
from ftops.defs.resources import PolicyResource
from ftops.optimize.benchmark import (
    benchmark_comparison as compare_configurations,
    benchmark_exclusions,
    benchmark_recommendations as recommend_from_benchmark,
    job_throughput,
)
from ftops.optimize.catalog import combined_catalog
from ftops.optimize.gpus import datasheets
from ftops.optimize.recommendations import instance_recommendations as compute_instance_recommendations
from ftops.optimize.recommendations import spot_plans as compute_spot_plans
from ftops.optimize.scaling import node_activity as node_activity_of
from ftops.optimize.scaling import scaling_advice as advise_scaling
from ftops.optimize.spot import budget_usd_per_hour_by_category, mtbi_table
from ftops.schemas import (
    BENCHMARK_COMPARISON, BENCHMARK_RECOMMENDATIONS, BUDGET_STATUS, INSTANCE_CATALOG, INSTANCE_RECOMMENDATIONS,
    JOB_COSTS, JOBS, NODE_ACTIVITY, SCALING_ADVICE, SPOT_PLANS, validate,
)

GROUP = "optimization"


class CatalogResource(dg.ConfigurableResource):
    """The folder of catalogues added with `ftops catalog import` (FTOPS_CATALOG); none: bundled only."""

    folder: str | None = None


# Nothing upstream tells when ftops.yaml or an imported catalogue changed: refresh daily, and at once
# when the table is missing (job_costs and the optimisation assets read it).
_DAILY_OR_MISSING = (dg.AutomationCondition.on_cron("0 0 * * *")
                     | (dg.AutomationCondition.missing() & ~dg.AutomationCondition.in_progress()
                        & ~dg.AutomationCondition.newly_requested())).with_label("daily, or when missing")


@dg.asset(group_name=GROUP, kinds={"pandas", "parquet"}, automation_condition=_DAILY_OR_MISSING,
          check_specs=[contract_spec(INSTANCE_CATALOG)])
def instance_catalog(policy: PolicyResource, catalog: CatalogResource) -> Iterator:
    """GPU instance types of AWS, GCP and Azure with on-demand and spot USD per hour: the bundled
    catalogue, catalogues added with `ftops catalog import`, ftops.yaml `optimization.catalog` rows,
    and ftops.yaml `prices:` winning over all of them."""
    table = combined_catalog(policy.load(), catalog.folder)
    by_cloud = table.groupby("cloud").agg(rows=("instance_type", "size"), instance_types=("instance_type", "nunique"),
                                          gpu_models=("gpu_model", lambda s: ", ".join(sorted(s.unique()))))
    yield dg.Output(table, metadata={
        "rows": len(table),
        "by_cloud": dg.MetadataValue.md(by_cloud.reset_index().to_markdown(index=False) if not table.empty else "none"),
        "sources": dg.MetadataValue.json(table.groupby("source")["price_date"].max().fillna("").astype(str).to_dict()
                                         if not table.empty else {}),
    })
    yield contract_check(table, INSTANCE_CATALOG)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    automation_condition=hourly_after_upstream_updates(needs=(INSTANCE_CATALOG.name,)),
    check_specs=[contract_spec(BENCHMARK_COMPARISON)],
)
def benchmark_comparison(job_registry: pd.DataFrame, run_health: pd.DataFrame, job_costs: pd.DataFrame,
                         instance_catalog: pd.DataFrame) -> Iterator:
    """Per configuration the fleet ran (GPU model and count, technique, model size, micro-batch,
    sequence length, pricing): measured throughput, GPU utilisation, USD per 1,000 samples and per
    million tokens, samples per USD, and its rank within its technique and model size."""
    jobs = as_contract(job_registry, JOBS)
    throughput = job_throughput(run_health)
    table = compare_configurations(jobs, throughput, instance_catalog, as_contract(job_costs, JOB_COSTS))
    left_out = benchmark_exclusions(jobs, throughput)
    best = table[table["best_in_group"]] if not table.empty else table
    yield dg.Output(table, metadata={
        "rows": len(table),
        "configurations": len(table),
        "jobs_measured": int(table["jobs"].sum()) if not table.empty else 0,
        "jobs_left_out": len(left_out),
        "left_out_reasons": dg.MetadataValue.json(left_out["reason"].value_counts().astype(int).to_dict()
                                                  if not left_out.empty else {}),
        "best_per_group": markdown_preview(best, ["configuration", "jobs", "samples_per_second", "usd_per_hour",
                                                  "usd_per_million_tokens", "price_basis"]),
    })
    yield contract_check(table, BENCHMARK_COMPARISON)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    automation_condition=hourly_after_upstream_updates(needs=(INSTANCE_CATALOG.name,)),
    check_specs=[contract_spec(BENCHMARK_RECOMMENDATIONS)],
)
def benchmark_recommendations(config: AsOfConfig, benchmark_comparison: pd.DataFrame, job_registry: pd.DataFrame,
                              instance_catalog: pd.DataFrame, policy: PolicyResource) -> Iterator:
    """Moves from a configuration to a cheaper measured one of the same technique and model size, with
    the saving per month at the fleet's current volume and the jobs behind it; and calibration runs
    proposed for GPUs the fleet never measured whose datasheet promises a saving (launched by the
    `benchmark_calibration` job)."""
    settings = policy.load().optimization
    table = recommend_from_benchmark(
        benchmark_comparison, as_contract(job_registry, JOBS), instance_catalog, datasheets(),
        min_saving_ratio=settings.min_saving_ratio, calibration_steps=settings.calibration_steps, now=config.now())
    moves = table[table["kind"] == "move"] if not table.empty else table
    yield dg.Output(table, metadata={
        "rows": len(table),
        "moves": len(moves),
        "calibrations": int((table["kind"] == "calibrate").sum()) if not table.empty else 0,
        "saving_usd_per_month": round(float(moves["saving_usd_per_month"].sum()), 2) if not moves.empty else 0.0,
        "top_moves": markdown_preview(
            moves.sort_values("saving_usd_per_month", ascending=False) if not moves.empty else moves,
            ["message", "saving_usd_per_month", "job_ids"], rows=5),
    })
    yield contract_check(table, BENCHMARK_RECOMMENDATIONS)


def _plan_inputs(job_registry: pd.DataFrame, budget_status: pd.DataFrame, benchmark_comparison: pd.DataFrame,
                 policy: PolicyResource, now: pd.Timestamp) -> tuple:
    settings = policy.load()
    jobs = as_contract(job_registry, JOBS)
    budgets = budget_usd_per_hour_by_category(as_contract(budget_status, BUDGET_STATUS), now)
    measured = benchmark_comparison if not benchmark_comparison.empty else None
    return settings, jobs, budgets, measured, mtbi_table(jobs, settings.optimization.spot, now)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    automation_condition=hourly_after_upstream_updates(needs=(INSTANCE_CATALOG.name,)),
    check_specs=[contract_spec(INSTANCE_RECOMMENDATIONS)],
)
def instance_recommendations(config: AsOfConfig, job_registry: pd.DataFrame, instance_catalog: pd.DataFrame,
                             benchmark_comparison: pd.DataFrame, budget_status: pd.DataFrame,
                             policy: PolicyResource) -> Iterator:
    """For every pending job, the three instance types (each in its cheapest region) that finish it for
    the least money: hours from the fleet's measured throughput where it has one, else from datasheets;
    spot or on demand by the job's spot plan; and the saving against the instance it asked for."""
    now = config.now()
    settings, jobs, budgets, measured, mtbi = _plan_inputs(job_registry, budget_status, benchmark_comparison,
                                                          policy, now)
    table = validate(compute_instance_recommendations(jobs, instance_catalog, datasheets(), measured, settings,
                                                      budgets, mtbi), INSTANCE_RECOMMENDATIONS)
    first = table[table["rank"] == 1] if not table.empty else table
    worth = first[first["worth_switching"].fillna(False).astype(bool)] if not first.empty else first
    yield dg.Output(table, metadata={
        "rows": len(table),
        "pending_jobs": int(table["job_id"].nunique()) if not table.empty else 0,
        "not_planned": int(table["rank"].isna().sum()) if not table.empty else 0,
        "worth_switching": len(worth),
        "saving_usd": round(float((worth["current_cost_usd"] - worth["expected_cost_usd"]).sum()), 2)
        if not worth.empty else 0.0,
        "best_choices": markdown_preview(first, ["job_id", "cloud", "instance_type", "pricing", "expected_hours",
                                                 "expected_cost_usd", "current_cost_usd", "basis"]),
    })
    yield contract_check(table, INSTANCE_RECOMMENDATIONS)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    automation_condition=hourly_after_upstream_updates(needs=(INSTANCE_CATALOG.name,)),
    check_specs=[contract_spec(SPOT_PLANS)],
)
def spot_plans(config: AsOfConfig, job_registry: pd.DataFrame, instance_catalog: pd.DataFrame,
               benchmark_comparison: pd.DataFrame, budget_status: pd.DataFrame, policy: PolicyResource) -> Iterator:
    """Spot or on demand for every pending and running job on its instance type: the max spot price
    (0.7 x its budget per hour), the Young/Daly checkpoint interval from the interruption rate (learnt
    from the registry's preemptions once there are enough), and the expected cost and finish time both
    ways, lost work and restarts included."""
    now = config.now()
    settings, jobs, budgets, measured, mtbi = _plan_inputs(job_registry, budget_status, benchmark_comparison,
                                                          policy, now)
    table = validate(compute_spot_plans(jobs, instance_catalog, datasheets(), measured, settings, budgets, mtbi),
                     SPOT_PLANS)
    changes = table[table["change"].fillna(False).astype(bool)] if not table.empty else table
    yield dg.Output(table, metadata={
        "rows": len(table),
        "jobs": len(table),
        "by_pricing": dg.MetadataValue.json(table["pricing"].value_counts().astype(int).to_dict()
                                            if not table.empty else {}),
        "changes": len(changes),
        "changes_preview": markdown_preview(changes, ["job_id", "current_pricing", "pricing",
                                                      "checkpoint_interval_minutes", "expected_cost_usd", "reason"]),
        "mtbi": markdown_preview(mtbi, ["cloud", "region", "gpu_model", "spot_hours", "preemptions", "mtbi_hours",
                                        "basis"]),
    })
    yield contract_check(table, SPOT_PLANS)


@dg.asset(
    group_name=GROUP,
    partitions_def=shard_day_partitions,
    backfill_policy=ONE_SHARD_DAY_PER_RUN,
    metadata={"partition_column": "last_ts"},
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(),
    check_specs=[contract_spec(NODE_ACTIVITY)],
)
def node_activity(context: dg.AssetExecutionContext, metric_samples: pd.DataFrame, policy: PolicyResource) -> Iterator:
    """Per host and job of a shard-day: its last sample and its GPU utilisation over the idle window
    before the host's last sample (what scaling_advice needs to tell an idle node, kept small)."""
    idle_minutes = policy.load().optimization.scaling.idle_minutes
    parts = []
    if not metric_samples.empty:
        for start, end in days_of_run(context):
            day = metric_samples[(metric_samples["ts"] >= start) & (metric_samples["ts"] < end)]
            if not day.empty:
                parts.append(node_activity_of(day, end, idle_minutes))
    table = validate(pd.concat(parts, ignore_index=True), NODE_ACTIVITY) if parts else NODE_ACTIVITY.empty()
    idlest = table.sort_values(["gpu_util_mean_pct", "last_ts"], ascending=[True, False])
    yield dg.Output(table, metadata={
        "rows": len(table),
        "hosts": int(table["host"].nunique()),
        "idlest_hosts": markdown_preview(idlest, ["host", "job_id", "last_ts", "gpu_util_mean_pct", "devices"]),
    })
    yield contract_check(table, NODE_ACTIVITY)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    automation_condition=hourly_after_upstream_updates(),
    check_specs=[contract_spec(SCALING_ADVICE)],
)
def scaling_advice(config: AsOfConfig, node_activity: pd.DataFrame, job_registry: pd.DataFrame,
                   instance_recommendations: pd.DataFrame, policy: PolicyResource) -> Iterator:
    """Autoscaling advice, each line with its reason: idle nodes to hand to a pending job (reuse) or to
    release (GPU utilisation under the floor for the idle window, no running job on them), and how many
    nodes of each type to add for the pending jobs' chosen instances. Advice only: nothing is applied."""
    scaling = policy.load().optimization.scaling
    placements = (instance_recommendations[instance_recommendations["rank"] == 1]
                  if not instance_recommendations.empty else instance_recommendations)
    table = validate(advise_scaling(as_contract(node_activity, NODE_ACTIVITY), as_contract(job_registry, JOBS),
                                    placements, idle_gpu_utilization_pct=scaling.idle_gpu_utilization_pct,
                                    idle_minutes=scaling.idle_minutes, now=config.now()), SCALING_ADVICE)
    yield dg.Output(table, metadata={
        "rows": len(table),
        "lines": len(table),
        "nodes_by_action": dg.MetadataValue.json(table.groupby("action")["nodes"].sum().astype(int).to_dict()
                                                 if not table.empty else {}),
        "advice": markdown_preview(table, ["action", "instance_type", "nodes", "hosts", "job_ids", "reason"]),
    })
    yield contract_check(table, SCALING_ADVICE)


OPTIMIZATION_ASSETS = [instance_catalog, benchmark_comparison, benchmark_recommendations, instance_recommendations,
                       spot_plans, node_activity, scaling_advice]
