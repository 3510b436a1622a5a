"""Asset jobs: what the inbox sensor and the demo materialise."""

from __future__ import annotations

import dagster as dg

from ftops.schemas import (
    ALERT_DELIVERIES, ALERTS, ANOMALIES, BENCHMARK_COMPARISON, BENCHMARK_RECOMMENDATIONS, BILLING_LINE_ITEMS,
    BUDGET_STATUS, CONSOLE_TAILS, INSTANCE_CATALOG, INSTANCE_RECOMMENDATIONS, JOB_COSTS, JOB_FAILURES, JOB_RISK, JOBS,
    METRIC_SAMPLES, NODE_ACTIVITY, REJECTED_RECORDS, RUN_HEALTH, SCALING_ADVICE, SCHEDULE_PLAN, SPOT_PLANS,
)

job_registry_ingest = dg.define_asset_job(
    "job_registry_ingest", selection=[JOBS.name], description="Rebuild the job registry from the inbox."
)
metric_ingest = dg.define_asset_job(
    "metric_ingest", selection=[METRIC_SAMPLES.name], description="Rebuild metric_samples partitions."
)
billing_ingest = dg.define_asset_job(
    "billing_ingest", selection=[BILLING_LINE_ITEMS.name], description="Rebuild billing_line_items partitions."
)
console_ingest = dg.define_asset_job(
    "console_ingest", selection=[CONSOLE_TAILS.name], description="Rebuild console_tails from the inbox's logs."
)
rejected_records_refresh = dg.define_asset_job(
    "rejected_records_refresh", selection=[REJECTED_RECORDS.name], description="Collect every rejected row."
)

INGEST_JOBS = [job_registry_ingest, metric_ingest, billing_ingest, console_ingest, rejected_records_refresh]

monitoring_update = dg.define_asset_job(
    "monitoring_update", selection=[RUN_HEALTH.name, ANOMALIES.name, NODE_ACTIVITY.name],
    description="Rebuild run_health, anomalies and node_activity partitions (declarative automation does this "
                "after ingest).",
)
alerts_update = dg.define_asset_job(
    "alerts_update", selection=[ALERTS.name, ALERT_DELIVERIES.name],
    description="Update the alert lifecycle and notify.",
)

costs_update = dg.define_asset_job(
    "costs_update", selection=[INSTANCE_CATALOG.name, JOB_COSTS.name, BUDGET_STATUS.name],
    description="Refresh the instance catalogue, attribute costs and update budgets.",
)

optimization_update = dg.define_asset_job(
    "optimization_update",
    selection=[BENCHMARK_COMPARISON.name, BENCHMARK_RECOMMENDATIONS.name, INSTANCE_RECOMMENDATIONS.name,
               SPOT_PLANS.name, SCALING_ADVICE.name, "benchmark_report"],
    description="Compare measured configurations, recommend instances and spot plans, advise on scaling; write "
                "the benchmark page.",
)

prediction_update = dg.define_asset_job(
    "prediction_update",
    selection=[JOB_FAILURES.name, "failure_risk_model", "resource_model", JOB_RISK.name, SCHEDULE_PLAN.name],
    description="Classify failures, fit the resource and failure-risk models, score live jobs, plan the schedule.",
)

# after alerts and costs, so each page shows the alerts and the cost of the same ingest
job_pages_update = dg.define_asset_job(
    "job_pages_update", selection=["job_pages"],
    description="Rebuild the page of every job with samples in the partitions (declarative automation does this "
                "after monitoring).",
)

MONITORING_JOBS = [monitoring_update, alerts_update, costs_update, job_pages_update, optimization_update,
                   prediction_update]

# The whole graph in dependency order, as `ftops demo` materialises it: (job, how its runs are cut):
# "all" one run; "days" one run over the range of days; "shard_days" one run per shard over the days.
GRAPH_STEPS: list[tuple[str, str]] = [
    ("job_registry_ingest", "all"),
    ("metric_ingest", "shard_days"),
    ("billing_ingest", "days"),
    ("console_ingest", "all"),
    ("rejected_records_refresh", "all"),
    ("monitoring_update", "shard_days"),
    ("alerts_update", "all"),
    ("costs_update", "all"),
    ("job_pages_update", "shard_days"),
    ("optimization_update", "all"),
    ("prediction_update", "all"),
]
