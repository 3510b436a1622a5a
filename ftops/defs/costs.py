"""Cost assets: job_costs (bills attributed to jobs, estimates where no bill yet) and budget_status."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.costs.attribution import attribute_costs
from ftops.costs.budgets import budget_status as compute_budget_status, current_periods
from ftops.costs.progress import progress_from_metrics
from ftops.costs.summary import job_cost_summary
from ftops.costs.usage import job_hours
from ftops.defs.as_of import AsOfConfig
from ftops.defs.automation import after_upstream_updates
from ftops.defs.checks import as_contract, contract_check, contract_spec, markdown_preview
from ftops.defs.resources import PolicyResource
from ftops.optimize.catalog import gpus_per_instance
from ftops.schemas import BILLING_LINE_ITEMS, BUDGET_STATUS, INSTANCE_CATALOG, JOB_COSTS, JOBS



@dg.asset(
    group_name="costs",
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(needs=(INSTANCE_CATALOG.name,)),
    check_specs=[
        contract_spec(JOB_COSTS),
        dg.AssetCheckSpec("bills_fully_counted", asset=JOB_COSTS.name,
                          description="Every billed USD is in job_costs: attributed or unattributed, never dropped."),
    ],
)
def job_costs(context: dg.AssetExecutionContext, config: AsOfConfig, billing_line_items: pd.DataFrame,
              job_registry: pd.DataFrame, instance_catalog: pd.DataFrame, policy: PolicyResource) -> Iterator:
    """Bills attributed to jobs by tag or resource id; GPU-hours not billed yet estimated at the
    ftops.yaml price, else the instance catalogue's price of the job's cloud, region and instance
    type, else that type's median over regions (marked estimated, replaced when the bill arrives);
    unmatched costs kept as unattributed."""
    now = config.now()
    bills = as_contract(billing_line_items, BILLING_LINE_ITEMS)
    jobs = as_contract(job_registry, JOBS)
    settings = policy.load()
    usage = job_hours(jobs, now, gpus_per_instance(instance_catalog),
                      earliest=pd.Timestamp(settings.partitions.start, tz="UTC"))
    costs = attribute_costs(bills, jobs, usage, settings.prices, now,
                            max_line_item_cost_usd=settings.ingest.max_line_item_cost_usd,
                            confirmed_line_items=settings.ingest.confirmed_line_items,
                            catalog=instance_catalog)
    held = costs["suspicious"].astype(bool)
    summary = job_cost_summary(costs, jobs, now=now)
    estimated = costs["estimated"].astype(bool)
    unattributed = costs["job_id"].isna()
    top = summary.sort_values("total_cost_usd", ascending=False).head(10) if not summary.empty else summary
    yield dg.Output(costs, metadata={
        "rows": len(costs),
        "billed_usd": round(float(costs.loc[~estimated, "cost_usd"].sum()), 2),
        "estimated_usd": round(float(costs.loc[estimated, "cost_usd"].sum()), 2),
        "unattributed_usd": round(float(costs.loc[unattributed, "cost_usd"].sum()), 2),
        "suspicious_lines": int(held.sum()),
        "suspicious_usd": round(float(costs.loc[held, "cost_usd"].sum()), 2),
        "top_jobs": dg.MetadataValue.md(top.to_markdown(index=False) if not top.empty else "none"),
    })
    yield contract_check(costs, JOB_COSTS)
    billed_in = round(float(bills["billed_cost"].sum()), 6)
    billed_out = round(float(costs.loc[~estimated, "cost_usd"].sum()), 6)
    yield dg.AssetCheckResult(check_name="bills_fully_counted", passed=abs(billed_in - billed_out) < 1e-4,
                              metadata={"billing_line_items_usd": billed_in, "job_costs_billed_usd": billed_out})


@dg.asset(
    group_name="costs",
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(),
    check_specs=[contract_spec(BUDGET_STATUS)],
)
def budget_status(context: dg.AssetExecutionContext, config: AsOfConfig, job_costs: pd.DataFrame,
                  job_registry: pd.DataFrame, run_health: pd.DataFrame, policy: PolicyResource) -> Iterator:
    """Per budget category and period: limit, spend (billed + estimated), usage %, remaining, burn
    rate, forecast at period end and for the next 24 h, thresholds and ladder levels crossed."""
    now = config.now()
    jobs = as_contract(job_registry, JOBS)
    progress = (progress_from_metrics(run_health.rename(columns={"max_step": "step"})[["job_id", "step"]])
                if not run_health.empty else None)
    status = compute_budget_status(as_contract(job_costs, JOB_COSTS), jobs, policy.load().budgets, now, progress)
    current = current_periods(status)
    closed = status[~status["current"].astype(bool).to_numpy()]
    overruns = closed[closed["usage_pct"] > 100]
    columns = ["budget_category", "period_key", "limit_usd", "spend_usd", "usage_pct", "forecast_period_end_usd",
               "thresholds_crossed", "ladder_levels_reached", "mode", "suspicious_usd"]
    yield dg.Output(status, metadata={
        "rows": len(status),
        "categories": len(current),
        "spend_usd": round(float(current["spend_usd"].sum()), 2),
        "over_90_pct": int((current["usage_pct"] >= 90).sum()),
        "forecast_over_limit": int((current["forecast_usage_pct"] > 100).sum()),
        "closed_periods_over_budget": len(overruns),
        "status": markdown_preview(current.sort_values("usage_pct", ascending=False), columns),
        "closed_period_overruns": markdown_preview(overruns, columns),
    })
    yield contract_check(status, BUDGET_STATUS)


COST_ASSETS = [job_costs, budget_status]
