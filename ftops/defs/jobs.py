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
