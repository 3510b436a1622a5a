"""Report pages as assets: one page per job (`job_pages`, with the monitoring partitions) and the
benchmark page (`benchmark_report`). The pages themselves are built in ftops/reports.

`job_pages` runs per shard-day: it rebuilds the page of every job with samples in that partition,
from the job's whole series (every stored day of its shard, read with a Parquet filter on job_id,
from the day before the earliest start among those jobs), its alerts, its costs and its registry row.
It follows the partition's metric_samples and anomalies; alerts, job_costs and the registry are read
as they are (they alone would start a run of every partition since the start), and a run waits while
an input was just updated, is running or waits for its own inputs, so the alerts of the same ingest
come first. An alert that changes without new samples (heartbeat_lost on a silent job) is carried to
the page by `job_pages_alert_sensor`: it rebuilds the last partition each such job has a page in.
"""

import hashlib
import json
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.defs.automation import SENSOR_INTERVAL_SECONDS, after_upstream_updates
from ftops.defs.checks import as_contract, markdown_preview
from ftops.defs.io_manager import read_rows, stored_partition_keys
from ftops.defs.partitions import (
    ONE_SHARD_DAY_PER_RUN, shard_day_key, shard_day_partitions, shard_of_run, split_key,
)
from ftops.defs.resources import PolicyResource, ReportsResource, WarehouseResource
from ftops.reports.benchmark_page import BENCHMARK_FOLDER, benchmark_page
from ftops.reports.job_page import JOBS_FOLDER, job_page, job_page_name
from ftops.schemas import (
    ALERTS, ANOMALIES, BENCHMARK_COMPARISON, BENCHMARK_RECOMMENDATIONS, JOB_COSTS, JOBS, METRIC_SAMPLES,
)
from ftops.sharding import Shard, shard_of

_SAMPLES = dg.AssetKey(METRIC_SAMPLES.name)
_COST_COLUMNS = ["job_id", "period_start", "period_end", "cost_usd", "estimated", "suspicious"]
PREVIEW_ROWS = 20
PAGES = "job_pages"
GROUP = "reports"  # with the cost reports: every page people open is in one group


def _job_pages_automation() -> dg.AutomationCondition:
    # An input updated on this tick (its followers, alerts among them, are requested now) or waiting for
    # its own inputs (alerts waits for the anomalies of every shard) holds the pages back; the trigger
    # is remembered meanwhile, so the pages of an ingest show that ingest's alerts.
    settling = dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated() | dg.AutomationCondition.any_deps_in_progress())
    return (after_upstream_updates(ignore=(ALERTS.name, JOB_COSTS.name, JOBS.name)) & ~settling).with_label(
        "after its samples or anomalies were updated, once alerts and costs have settled")


def _jobs_by_day(base: str, partition_keys: list[str]) -> pd.DataFrame:
    """(day, job_id) of every job with samples in each partition of the run."""
    parts = []
    for key in partition_keys:
        ids = read_rows(base, _SAMPLES, [key], columns=["job_id"])
        if len(ids):
            parts.append(pd.DataFrame({"day": pd.Timestamp(split_key(key)[0], tz="UTC"),
                                       "job_id": ids["job_id"].astype("string").unique()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["day", "job_id"])


def _first_day(registry: pd.DataFrame, job_ids: list[str]) -> str | None:
    """The day before the earliest start among the jobs (None when one has no start: read every day)."""
    started = pd.to_datetime(registry["started_at"], utc=True) if "started_at" in registry else pd.Series(dtype=object)
    if len(started) < len(job_ids) or started.isna().any():
        return None
    return (started.min() - pd.Timedelta(days=1)).strftime("%Y-%m-%d")


def job_series(base: str, shard: str, job_ids: list[str], since: str | None) -> pd.DataFrame:
    """Every stored sample of `job_ids` (all in `shard`) from day `since` on."""
    keys = [k for k in stored_partition_keys(base, _SAMPLES)
            if "|" in k and split_key(k)[1] == shard and (since is None or split_key(k)[0] >= since)]
    return read_rows(base, _SAMPLES, keys, filters=[("job_id", "in", job_ids)])


@dg.asset(
    group_name=GROUP,
    partitions_def=shard_day_partitions,
    backfill_policy=ONE_SHARD_DAY_PER_RUN,
    metadata={"partition_column": "day"},
    kinds={"pandas", "parquet", "html"},
    deps=[METRIC_SAMPLES.name, ANOMALIES.name, ALERTS.name, JOB_COSTS.name, JOBS.name],
    automation_condition=_job_pages_automation(),
)
def job_pages(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
              reports: ReportsResource) -> Iterator:
    """One HTML page per job with samples in the partition: loss and validation loss, learning rate,
    gradient norm, throughput, GPU utilisation and memory per device and cost so far, with its alerts
    marked where they fired. The table: the page of each job built for each day of the run."""
    base = warehouse.base_path
    shard = shard_of_run(context).key
    present = _jobs_by_day(base, list(context.partition_keys))
    job_ids = sorted(present["job_id"].unique().tolist()) if len(present) else []
    rows = []
    if job_ids:
        by_id = [("job_id", "in", job_ids)]
        registry = read_rows(base, dg.AssetKey(JOBS.name), filters=by_id)
        samples = job_series(base, shard, job_ids, _first_day(registry, job_ids))
        alerts = read_rows(base, dg.AssetKey(ALERTS.name), filters=by_id)
        costs = read_rows(base, dg.AssetKey(JOB_COSTS.name), filters=by_id, columns=_COST_COLUMNS)
        samples_of = dict(tuple(samples.groupby("job_id", sort=False))) if len(samples) else {}
        alerts_of = dict(tuple(alerts.groupby("job_id", sort=False))) if len(alerts) else {}
        costs_of = dict(tuple(costs.groupby("job_id", sort=False))) if len(costs) else {}
        job_rows = {r["job_id"]: r for r in registry.to_dict("records")} if len(registry) else {}
        for job_id in job_ids:
            mine = samples_of.get(job_id, METRIC_SAMPLES.empty())
            its_alerts = alerts_of.get(job_id, ALERTS.empty())
            page = f"{JOBS_FOLDER}/{job_page_name(job_id)}"  # relative: the same wherever the folder is
            job_page(job_id, mine, its_alerts, costs_of.get(job_id), job_rows.get(job_id)).write(reports.path(page))
            rows.append({"job_id": job_id, "page": page, "samples": len(mine), "alerts": len(its_alerts),
                         "firing": int((its_alerts["state"] == "firing").sum())})
    built = pd.DataFrame(rows, columns=["job_id", "page", "samples", "alerts", "firing"])
    table = present.merge(built, on="job_id", how="inner")[["day", "job_id", "page", "samples", "alerts", "firing"]]
    table = table.astype({"job_id": "string", "page": "string", "samples": "int64", "alerts": "int64",
                          "firing": "int64"}).sort_values(["day", "job_id"]).reset_index(drop=True)
    context.log.info(f"{len(built)} job page(s) written to {reports.path(JOBS_FOLDER)}")
    yield dg.Output(table, metadata={
        "rows": len(table),
        "pages": len(built),
        "folder": dg.MetadataValue.path(reports.path(JOBS_FOLDER)),
        # the jobs with firing alerts first: the pages a person opens next
        "preview": markdown_preview(table.drop_duplicates("job_id").sort_values(["firing", "alerts"], ascending=False),
                                    ["job_id", "samples", "alerts", "firing", "page"], rows=PREVIEW_ROWS),
    })


@dg.asset(
    group_name=GROUP,
    kinds={"html"},
    automation_condition=after_upstream_updates(),
)
def benchmark_report(benchmark_comparison: pd.DataFrame, benchmark_recommendations: pd.DataFrame,
                     reports: ReportsResource) -> dg.MaterializeResult:
    """The benchmark comparison as a page: throughput against cost per 1M tokens and per 1k samples,
    one colour per technique, the best configuration of each group and the recommendations with the
    runs behind them (links to their job pages)."""
    comparison = as_contract(benchmark_comparison, BENCHMARK_COMPARISON)
    recommendations = as_contract(benchmark_recommendations, BENCHMARK_RECOMMENDATIONS)
    path = benchmark_page(comparison, recommendations).write(reports.path(BENCHMARK_FOLDER, "index.html"))
    best = comparison[comparison["best_in_group"].fillna(False).astype(bool)]
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "configurations": len(comparison),
        "recommendations": len(recommendations),
        "best_per_group": markdown_preview(best, ["configuration", "usd_per_million_tokens", "usd_per_1k_samples"],
                                           rows=PREVIEW_ROWS),
    })


def alert_fingerprints(alerts: pd.DataFrame | None) -> dict[str, str]:
    """Per job: a short hash of its alerts' ids and states, what its page marks. `last_seen_at` is left
    out: a firing alert seen again changes nothing on the page."""
    if alerts is None or alerts.empty:
        return {}
    mine = alerts[alerts["job_id"].notna().to_numpy()]
    keyed = mine["alert_id"].astype(str) + ":" + mine["state"].astype(str)
    joined = keyed.groupby(mine["job_id"].astype(str).to_numpy()).agg(lambda s: "|".join(sorted(s)))
    return {str(job): hashlib.sha256(text.encode()).hexdigest()[:16] for job, text in joined.items()}


def last_page_partitions(base: str, job_ids: list[str], shards: int) -> dict[str, list[str]]:
    """{shard-day key: jobs} of the newest partition each job has a page in (jobs without one: none)."""
    pages = dg.AssetKey(PAGES)
    wanted = {Shard(shard_of(j, shards), shards).key for j in job_ids}
    keys = [k for k in stored_partition_keys(base, pages) if "|" in k and split_key(k)[1] in wanted]
    built = read_rows(base, pages, keys, filters=[("job_id", "in", job_ids)], columns=["day", "job_id"])
    if not len(built):
        return {}
    newest = built.groupby("job_id")["day"].max()
    out: dict[str, list[str]] = {}
    for job_id, day in newest.items():
        key = shard_day_key(f"{pd.Timestamp(day):%Y-%m-%d}", Shard(shard_of(str(job_id), shards), shards).key)
        out.setdefault(key, []).append(str(job_id))
    return out


@dg.sensor(
    job_name="job_pages_update",
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a job's alerts change (one fires or resolves) without new samples of it, rebuilds the "
                "last job_pages partition the job has a page in, so its page shows the change.",
)
def job_pages_alert_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource,
                           policy: PolicyResource) -> dg.SensorResult:
    prints = alert_fingerprints(warehouse.read(ALERTS.name))
    cursor = json.dumps(prints, sort_keys=True)
    if context.cursor is None:  # the pages built so far were built with the alerts of their ingest
        return dg.SensorResult(skip_reason="first evaluation: remembering the alerts of every job", cursor=cursor)
    before = json.loads(context.cursor)
    changed = sorted(job for job, fingerprint in prints.items() if before.get(job) != fingerprint)
    targets = last_page_partitions(warehouse.base_path, changed, policy.load().partitions.shards) if changed else {}
    requests = [
        dg.RunRequest(run_key=f"job_pages:{key}:" + hashlib.sha256(
            "|".join(f"{j}={prints[j]}" for j in jobs).encode()).hexdigest()[:16],
            partition_key=key, tags={"ftops/trigger": "alerts_changed", "ftops/jobs": ",".join(jobs)[:200]})
        for key, jobs in sorted(targets.items())
    ]
    if not requests:
        return dg.SensorResult(skip_reason="no job's alerts changed" if not changed else
                               f"alerts of {len(changed)} job(s) changed, none has a page yet", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


PAGE_ASSETS = [job_pages, benchmark_report]
PAGE_SENSORS = [job_pages_alert_sensor]
