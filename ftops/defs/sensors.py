"""`inbox_sensor`: new inbox files become ingest runs, keyed by file identity."""

import hashlib
import json

import dagster as dg

from ftops.defs.automation import SENSOR_INTERVAL_SECONDS
from ftops.defs.jobs import (
    billing_ingest, console_ingest, job_registry_ingest, metric_ingest, rejected_records_refresh,
)
from ftops.defs.resources import InboxResource
from ftops.staging import SHARDED_KINDS

_JOB_FOR_KIND = {"jobs": job_registry_ingest, "metrics": metric_ingest, "billing": billing_ingest,
                 "logs": console_ingest}
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dg.sensor(
    jobs=[job_registry_ingest, metric_ingest, billing_ingest, console_ingest, rejected_records_refresh],
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads each new inbox file once (staging) and requests ingest runs for the partitions it touches.",
)
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource) -> dg.SensorResult:
    staging = inbox.staging()
    staging.stage_inbox(inbox.inbox_path)
    # The cursor is the staged_at of the newest file already turned into runs; staging remembers
    # which files were read and which are in the tables (the demo or a manual run may have done
    # it), so a daemon restart neither re-reads nor re-requests.
    cursor = context.cursor or ""
    new = sorted(
        (m for m in staging.manifests() if m.staged_at > cursor and not staging.is_ingested(m)),
        key=lambda m: m.staged_at,
    )
    if not new:
        return dg.SensorResult(skip_reason="no new inbox files")
    partitions = inbox.partitions()
    requests = []
    for kind, job in _JOB_FOR_KIND.items():
        files = [m for m in new if m.kind == kind and m.accepted > 0]
        if not files:
            continue
        identities = sorted(m.identity for m in files)
        run_key = f"{kind}:" + hashlib.sha1(json.dumps(identities).encode()).hexdigest()[:20]
        tags = {"ftops/files": str(len(files)), "ftops/first_file": files[0].relpath}
        if kind in ("jobs", "logs"):  # unpartitioned tables
            requests.append(dg.RunRequest(run_key=run_key, job_name=job.name, tags=tags))
            continue
        span = partitions.day_range(min(m.min_ts for m in files), max(m.max_ts for m in files))
        if span is None:
            continue
        if kind not in SHARDED_KINDS:
            requests.append(dg.RunRequest(run_key=run_key, job_name=job.name,
                                          tags=tags | {RANGE_START: span[0], RANGE_END: span[1]}))
            continue
        # one run per shard the new files touch, over the days they cover
        for shard in sorted({s for m in files for s in staging.shards_of(m)}, key=lambda s: s.index):
            first, last = partitions.shard_day_range(span, shard)
            requests.append(dg.RunRequest(run_key=f"{run_key}:{shard.key}", job_name=job.name,
                                          tags=tags | {RANGE_START: first, RANGE_END: last,
                                                       "ftops/shard": shard.key}))
    if any(m.rejected for m in new):
        key = hashlib.sha1(json.dumps(sorted(m.identity for m in new)).encode()).hexdigest()[:20]
        requests.append(dg.RunRequest(run_key=f"rejected:{key}", job_name=rejected_records_refresh.name))
    context.log.info(f"{len(new)} new inbox file(s) -> {len(requests)} run request(s)")
    return dg.SensorResult(run_requests=requests, cursor=new[-1].staged_at)


# Downstream assets (monitoring, costs) follow ingest through their automation conditions; this
# sensor evaluates them, and runs by default so `dagster dev` keeps everything up to date.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "ftops_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
)
