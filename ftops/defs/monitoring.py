"""Monitoring assets: run_health, anomalies and alerts, kept up to date after each ingest."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.actions.delivery import deliver
from ftops.defs.as_of import AsOfConfig
from ftops.defs.automation import after_upstream_updates
from ftops.defs.checks import as_contract, contract_check, contract_spec, markdown_preview
from ftops.defs.notifiers import NotifiersResource
from ftops.defs.partitions import ONE_SHARD_DAY_PER_RUN, days_of_run, same_shard, shard_day_partitions
from ftops.defs.resources import PolicyResource, WarehouseResource
from ftops.monitoring.alerts import update_alerts, worst_first
from ftops.monitoring.anomalies import detect_anomalies_by_day
from ftops.monitoring.health import run_health as rollup_run_health
from ftops.monitoring.liveness import liveness_anomalies, signs_of_life_from_run_health
from ftops.schemas import ALERT_DELIVERIES, ALERTS, ANOMALIES, JOBS, RUN_HEALTH

# Rules look back over windows (trends, rolling medians): the previous day of the same shard is read
# as context so that a detection does not start afresh at midnight. Each day is computed from itself
# and that context alone, also inside a range backfill, so any grouping of days into runs stores the
# same rows. A job's samples are all in one shard, so its rules see all of them.
_WITH_PREVIOUS_DAY = same_shard(days_back=1)


def _counts_md(df: pd.DataFrame, by: list[str]) -> dg.MetadataValue:
    if df.empty:
        return dg.MetadataValue.md("none")
    counts = df.groupby(by, observed=True).size().rename("count").reset_index()
    return dg.MetadataValue.md(counts.sort_values("count", ascending=False).to_markdown(index=False))


@dg.asset(
    group_name="monitoring",
    partitions_def=shard_day_partitions,
    backfill_policy=ONE_SHARD_DAY_PER_RUN,
    metadata={"partition_column": "window_start"},
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(),
    check_specs=[contract_spec(RUN_HEALTH)],
)
def run_health(context: dg.AssetExecutionContext, metric_samples: pd.DataFrame, policy: PolicyResource) -> Iterator:
    """Per job, metric and hour: samples, NaN/Inf count, mean, min, max, last value, last step and
    when it was reached; for domain accuracy, whether the target was reached."""
    target = policy.load().monitoring.domain_accuracy.target
    health = (rollup_run_health(metric_samples, domain_accuracy_target=target) if not metric_samples.empty
              else RUN_HEALTH.empty())
    # non-finite values first (NaN/Inf loss), then the latest windows
    worst = health.sort_values(["non_finite", "window_start"], ascending=[False, False])
    yield dg.Output(health, metadata={
        "rows": len(health),
        "jobs": int(health["job_id"].nunique()),
        "non_finite_samples": int(health["non_finite"].sum()) if not health.empty else 0,
        "preview": markdown_preview(worst, ["job_id", "metric", "window_start", "samples", "non_finite", "mean",
                                            "last", "max_step"]),
    })
    yield contract_check(health, RUN_HEALTH)


@dg.asset(
    group_name="monitoring",
    partitions_def=shard_day_partitions,
    backfill_policy=ONE_SHARD_DAY_PER_RUN,
    metadata={"partition_column": "first_ts"},
    kinds={"pandas", "parquet"},
    ins={"metric_samples": dg.AssetIn(partition_mapping=_WITH_PREVIOUS_DAY)},
    automation_condition=after_upstream_updates(ignore=(JOBS.name,)),
    check_specs=[contract_spec(ANOMALIES)],
)
def anomalies(context: dg.AssetExecutionContext, metric_samples: pd.DataFrame, job_registry: pd.DataFrame,
              policy: PolicyResource) -> Iterator:
    """Rule and statistical detections (docs/architecture.md §5), one row per job, rule and window."""
    days = days_of_run(context)
    found = (detect_anomalies_by_day(metric_samples, days, job_registry, policy.load().monitoring)
             if not metric_samples.empty else ANOMALIES.empty())
    worst = (found[found["severity"] != "info"].groupby("job_id").size().sort_values(ascending=False).head(5)
             if not found.empty else pd.Series(dtype=int))
    yield dg.Output(found, metadata={
        "rows": len(found),
        "by_rule_and_severity": _counts_md(found, ["rule", "severity"]),
        "worst_jobs": dg.MetadataValue.json({str(k): int(v) for k, v in worst.items()}),
    })
    yield contract_check(found, ANOMALIES)


@dg.asset(
    group_name="monitoring",
    kinds={"pandas", "parquet"},
    # heartbeats arrive as samples (run_health); the registry alone would re-run alerts before the
    # anomalies of the same ingest exist
    automation_condition=after_upstream_updates(ignore=(JOBS.name,)),
    check_specs=[
        contract_spec(ALERTS),
        dg.AssetCheckSpec("alert_ids_unique", asset=ALERTS.name, description="One row per alert id."),
    ],
)
def alerts(context: dg.AssetExecutionContext, config: AsOfConfig, anomalies: pd.DataFrame,
           job_registry: pd.DataFrame, run_health: pd.DataFrame, policy: PolicyResource,
           warehouse: WarehouseResource) -> Iterator:
    """Alerts with a lifecycle (firing -> resolved), one per incident, stable across re-runs; the
    detections plus the liveness of each job (job_preempted, heartbeat_lost) as of the evaluation."""
    previous = warehouse.read(ALERTS.name)
    monitoring = policy.load().monitoring
    now = config.now()
    live = liveness_anomalies(job_registry, signs_of_life_from_run_health(run_health), now, monitoring)
    found = pd.concat([f for f in (as_contract(anomalies, ANOMALIES), live) if len(f)] or [ANOMALIES.empty()],
                      ignore_index=True)
    table = update_alerts(previous, found, now, resolve_after=pd.Timedelta(minutes=monitoring.merge_gap_minutes))
    firing = table[table["state"] == "firing"]
    yield dg.Output(table, metadata={
        "rows": len(table),
        "firing": len(firing),
        "firing_by_rule_and_severity": _counts_md(firing, ["rule", "severity"]),
        "firing_alerts": markdown_preview(worst_first(firing), ["job_id", "rule", "severity", "started_at", "message"]),
    })
    yield contract_check(table, ALERTS)
    duplicates = int(table["alert_id"].duplicated().sum())
    yield dg.AssetCheckResult(check_name="alert_ids_unique", passed=duplicates == 0,
                              metadata={"duplicate_ids": duplicates})


@dg.asset(
    group_name="monitoring",
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(),
    check_specs=[
        contract_spec(ALERT_DELIVERIES),
        dg.AssetCheckSpec("nothing_pending", asset=ALERT_DELIVERIES.name, blocking=False,
                          description="Every alert transition reached every notifier its route names."),
    ],
)
def alert_deliveries(context: dg.AssetExecutionContext, alerts: pd.DataFrame, policy: PolicyResource,
                     notifiers: NotifiersResource, warehouse: WarehouseResource) -> Iterator:
    """Which alert transitions (firing, resolved) reached which notifier; a notifier that is down keeps
    its alerts pending, and they are retried on the next run."""
    previous = warehouse.read(ALERT_DELIVERIES.name)
    table, report = deliver(as_contract(alerts, ALERTS), previous, policy.load().routes,
                            notifiers.build(context.log), pd.Timestamp.now(tz="UTC"))
    if not report.ok:
        context.log.warning(report.summary())
    undelivered = table[table["status"] != "delivered"] if not table.empty else table
    yield dg.Output(table, metadata={
        "rows": len(table),
        **report.as_metadata(),
        "not_delivered": markdown_preview(undelivered.sort_values("last_attempt_at", ascending=False),
                                          ["alert_id", "state", "notifier", "status", "attempts", "last_error"]),
    })
    yield contract_check(table, ALERT_DELIVERIES)
    pending = int((table["status"] == "pending").sum()) if not table.empty else 0
    yield dg.AssetCheckResult(check_name="nothing_pending", passed=pending == 0,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"pending": pending, "errors": "; ".join(report.errors) or "none"})


MONITORING_ASSETS = [run_health, anomalies, alerts, alert_deliveries]
