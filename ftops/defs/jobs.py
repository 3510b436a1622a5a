"""Asset jobs: what the inbox sensor and the demo materialise."""

from __future__ import annotations

import dagster as dg

job_registry_ingest = dg.define_asset_job(
    "job_registry_ingest", selection=["job_registry"], description="Rebuild the job registry from the inbox."
)
metric_ingest = dg.define_asset_job(
    "metric_ingest", selection=["metric_samples"], description="Rebuild metric_samples partitions."
)
billing_ingest = dg.define_asset_job(
    "billing_ingest", selection=["billing_line_items"], description="Rebuild billing_line_items partitions."
)
rejected_records_refresh = dg.define_asset_job(
    "rejected_records_refresh", selection=["rejected_records"], description="Collect every rejected row."
)

INGEST_JOBS = [job_registry_ingest, metric_ingest, billing_ingest, rejected_records_refresh]

monitoring_update = dg.define_asset_job(
    "monitoring_update", selection=["run_health", "anomalies"],
    description="Rebuild run_health and anomalies partitions (declarative automation does this after ingest).",
)
alerts_update = dg.define_asset_job(
    "alerts_update", selection=["alerts", "alert_deliveries"],
    description="Update the alert lifecycle and notify.",
)

costs_update = dg.define_asset_job(
    "costs_update", selection=["job_costs", "budget_status"], description="Attribute costs and update budgets.",
)

MONITORING_JOBS = [monitoring_update, alerts_update, costs_update]

# The whole graph in dependency order, as `ftops demo` materialises it: (job, over the time range?).
GRAPH_STEPS: list[tuple[str, bool]] = [
    ("job_registry_ingest", False),
    ("metric_ingest", True),
    ("billing_ingest", True),
    ("rejected_records_refresh", False),
    ("monitoring_update", True),
    ("alerts_update", False),
    ("costs_update", False),
]
