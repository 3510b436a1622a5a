"""Report assets: the cost report of each month (`cost_report`) and ISO week (`weekly_cost_report`).

Each partition writes `<reports>/cost/<period>/index.html` (self-contained), `burn_down.html` and the
report's tables as Parquet beside them, and stores the list of what it wrote in the warehouse. Built on
demand (any period, the one in progress included) and by schedule once a period has closed: the
month's report at 02:00 UTC on the 1st, the week's at 02:00 UTC on Monday.
"""

import warnings

import dagster as dg
import pandas as pd

from ftops.costs.periods import PeriodWindow, period_window
from ftops.defs.as_of import AsOfConfig
from ftops.defs.checks import as_contract
from ftops.defs.partitions import FleetPartitions, monthly_partitions, weekly_partitions
from ftops.defs.resources import PolicyResource, ReportsResource
from ftops.reports.cost_figures import cost_report_tables
from ftops.reports.cost_report import write_cost_report
from ftops.reports.periods import parse_period, previous_period
from ftops.schemas import (
    BENCHMARK_RECOMMENDATIONS, BILLING_LINE_ITEMS, BUDGET_STATUS, INSTANCE_RECOMMENDATIONS, JOB_COSTS, JOBS,
    SPOT_PLANS,
)

GROUP = "reports"
# Mapping a period in progress onto the days that exist so far is beta in Dagster 1.13.
warnings.filterwarnings("ignore", message="Parameter `allow_nonexistent_upstream_partitions`", category=dg.BetaWarning)
# the month in progress reads the days of it that exist so far
_DAYS_OF_PERIOD = dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
_INS = {BILLING_LINE_ITEMS.name: dg.AssetIn(partition_mapping=_DAYS_OF_PERIOD)}


def build_cost_report(context: dg.AssetExecutionContext, config: AsOfConfig, window: PeriodWindow,
                      reports: ReportsResource, policy: PolicyResource, tables: dict[str, pd.DataFrame]) -> dg.Output:
    """Compute, write and describe the report of `window` (shared by the monthly and weekly assets)."""
    settings = policy.load()
    figures = cost_report_tables(
        window, as_contract(tables["job_costs"], JOB_COSTS), as_contract(tables["job_registry"], JOBS),
        config.now(),
        budget_status=as_contract(tables["budget_status"], BUDGET_STATUS), budgets=settings.budgets,
        line_items=as_contract(tables["billing_line_items"], BILLING_LINE_ITEMS),
        instance_recommendations=as_contract(tables["instance_recommendations"], INSTANCE_RECOMMENDATIONS),
        spot_plans=as_contract(tables["spot_plans"], SPOT_PLANS),
        benchmark_recommendations=as_contract(tables["benchmark_recommendations"], BENCHMARK_RECOMMENDATIONS),
    )
    files = write_cost_report(figures, reports.path("cost", window.key))
    written = pd.DataFrame(
        [{"file": p.name, "kind": "table", "rows": len(figures[n])} for n, p in files.tables.items()]
        + [{"file": files.index.name, "kind": "page", "rows": None},
           {"file": files.burn_down.name, "kind": "page", "rows": None}]
    ).astype({"file": "string", "kind": "string", "rows": "Int64"})
    summary = figures["summary"].iloc[0]
    context.log.info(f"cost report {window.key} written to {files.index}")
    return dg.Output(written, metadata={
        "rows": len(written),
        "period": window.key,
        "report": dg.MetadataValue.path(str(files.index)),
        "report_url": dg.MetadataValue.url(files.index.resolve().as_uri()),
        "burn_down": dg.MetadataValue.path(str(files.burn_down)),
        "summary": dg.MetadataValue.md(files.markdown),
        "total_usd": round(float(summary["total_usd"]), 2),
        "change_pct": None if pd.isna(summary["change_pct"]) else round(float(summary["change_pct"]), 1),
        "unattributed_usd": round(float(summary["unattributed_usd"]), 2),
    })


def _report_asset(name: str, partitions: dg.PartitionsDefinition, period: str):
    @dg.asset(name=name, group_name=GROUP, kinds={"pandas", "parquet", "html"}, partitions_def=partitions, ins=_INS,
              description=f"The cost report of each {period}: a self-contained HTML page (total and change against "
                          "the previous period, cost by technique, domain, budget category and team, the daily "
                          "trend with its forecast, top jobs and configurations, budgets with their burn-down, "
                          "unit costs, the unattributed bucket, savings found) and its tables as Parquet, under "
                          "FTOPS_REPORTS/cost/<period>/. Stores the list of files written.")
    def report(context: dg.AssetExecutionContext, config: AsOfConfig, reports: ReportsResource,
               policy: PolicyResource, job_costs: pd.DataFrame, job_registry: pd.DataFrame,
               budget_status: pd.DataFrame, billing_line_items: pd.DataFrame,
               instance_recommendations: pd.DataFrame, spot_plans: pd.DataFrame,
               benchmark_recommendations: pd.DataFrame) -> dg.Output:
        key = context.partition_key
        window = parse_period(key) if period == "month" else period_window(pd.Timestamp(key, tz="UTC"), "week")
        return build_cost_report(context, config, window, reports, policy, {
            "job_costs": job_costs, "job_registry": job_registry, "budget_status": budget_status,
            "billing_line_items": billing_line_items, "instance_recommendations": instance_recommendations,
            "spot_plans": spot_plans, "benchmark_recommendations": benchmark_recommendations})

    return report


cost_report = _report_asset("cost_report", monthly_partitions, "month")
weekly_cost_report = _report_asset("weekly_cost_report", weekly_partitions, "week")

monthly_cost_report_job = dg.define_asset_job("monthly_cost_report", selection=[cost_report],
                                              description="Build the cost report of a month.")
weekly_cost_report_job = dg.define_asset_job("weekly_cost_report_job", selection=[weekly_cost_report],
                                             description="Build the cost report of an ISO week.")


def closed_period_key(tick: pd.Timestamp, period: str) -> str:
    """The partition key of the last period closed at `tick` (weekly partitions are keyed by their Monday)."""
    window = previous_period(period_window(tick, period))
    return window.key if period == "month" else f"{window.start:%Y-%m-%d}"


def _closed_period_schedule(name: str, cron: str, job, period: str):
    @dg.schedule(name=name, cron_schedule=cron, job=job, execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Build the cost report of the {period} that just closed.")
    def schedule(context: dg.ScheduleEvaluationContext, policy: PolicyResource):
        tick = pd.Timestamp(context.scheduled_execution_time)
        closed = previous_period(period_window(tick, period))
        earliest = FleetPartitions.from_policy(policy.load().partitions).earliest
        if closed.end <= earliest:  # the fleet's first tick: that period is older than its data
            return dg.SkipReason(f"the {period} {closed.key} ended before partitions.start ({earliest:%Y-%m-%d})")
        key = closed_period_key(tick, period)
        return dg.RunRequest(run_key=f"{name}:{key}", partition_key=key)

    return schedule


monthly_cost_report_schedule = _closed_period_schedule("monthly_cost_report_schedule", "0 2 1 * *",
                                                       monthly_cost_report_job, "month")
weekly_cost_report_schedule = _closed_period_schedule("weekly_cost_report_schedule", "0 2 * * 1",
                                                      weekly_cost_report_job, "week")

REPORT_ASSETS = [cost_report, weekly_cost_report]
REPORT_JOBS = [monthly_cost_report_job, weekly_cost_report_job]
REPORT_SCHEDULES = [monthly_cost_report_schedule, weekly_cost_report_schedule]
