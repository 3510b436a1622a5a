"""Monitoring assets: run_health, anomalies and alerts, kept up to date after each ingest."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.actions.delivery import ALERT_DELIVERIES, deliver
from ftops.defs.automation import after_upstream_updates
from ftops.defs.checks import as_contract, contract_check, contract_spec
from ftops.defs.notifiers import NotifiersResource
from ftops.defs.partitions import daily_partitions
from ftops.defs.resources import PolicyResource, WarehouseResource
from ftops.monitoring.alerts import ALERTS, update_alerts
from ftops.monitoring.anomalies import ANOMALIES, detect_anomalies
from ftops.monitoring.health import RUN_HEALTH, run_health as rollup_run_health

# Rules look back over windows (trends, rolling medians): the previous day is read as context so
# that a detection does not start afresh at midnight; only detections starting in the partition
# belong to it.
_WITH_PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1)


def _counts_md(df: pd.DataFrame, by: list[str]) -> dg.MetadataValue:
    if df.empty:
        return dg.MetadataValue.md("none")
    counts = df.groupby(by, observed=True).size().rename("count").reset_index()
    return dg.MetadataValue.md(counts.sort_values("count", ascending=False).to_markdown(index=False))


@dg.asset(
    group_name="monitoring",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_column": "window_start"},
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(),
    check_specs=[contract_spec("run_health")],
)
def run_health(context: dg.AssetExecutionContext, metric_samples: pd.DataFrame) -> Iterator:
    """Per job, metric and hour: samples, NaN/Inf count, mean, min, max, last value and last step."""
    health = rollup_run_health(metric_samples) if not metric_samples.empty else RUN_HEALTH.empty()
    yield dg.Output(health, metadata={"rows": len(health), "jobs": int(health["job_id"].nunique())})
    yield contract_check(health, RUN_HEALTH, "run_health")


@dg.asset(
    group_name="monitoring",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_column": "first_ts"},
    kinds={"pandas", "parquet"},
    ins={"metric_samples": dg.AssetIn(partition_mapping=_WITH_PREVIOUS_DAY)},
    automation_condition=after_upstream_updates(ignore=("job_registry",)),
    check_specs=[contract_spec("anomalies")],
)
def anomalies(context: dg.AssetExecutionContext, metric_samples: pd.DataFrame, job_registry: pd.DataFrame,
              policy: PolicyResource) -> Iterator:
    """Rule and statistical detections (ARCHITECTURE.md §4), one row per job, rule and window."""
    window = context.partition_time_window
    found = (detect_anomalies(metric_samples, job_registry, policy.load().monitoring)
             if not metric_samples.empty else ANOMALIES.empty())
    mine = (found["first_ts"] >= window.start) & (found["first_ts"] < window.end)
    found = found[mine.to_numpy()].reset_index(drop=True)
    worst = (found[found["severity"] != "info"].groupby("job_id").size().sort_values(ascending=False).head(5)
             if not found.empty else pd.Series(dtype=int))
    yield dg.Output(found, metadata={
        "rows": len(found),
        "by_rule_and_severity": _counts_md(found, ["rule", "severity"]),
        "worst_jobs": dg.MetadataValue.json({str(k): int(v) for k, v in worst.items()}),
    })
    yield contract_check(found, ANOMALIES, "anomalies")


@dg.asset(
    group_name="monitoring",
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(),
    check_specs=[
        contract_spec("alerts"),
        dg.AssetCheckSpec("alert_ids_unique", asset="alerts", description="One row per alert id."),
    ],
)
def alerts(context: dg.AssetExecutionContext, anomalies: pd.DataFrame, policy: PolicyResource,
           warehouse: WarehouseResource) -> Iterator:
    """Alerts with a lifecycle (firing -> resolved), one per incident, stable across re-runs."""
    previous = warehouse.read("alerts")
    monitoring = policy.load().monitoring
    found = as_contract(anomalies, ANOMALIES)
    table = update_alerts(previous, found, pd.Timestamp.now(tz="UTC"),
                          resolve_after=pd.Timedelta(minutes=monitoring.merge_gap_minutes))
    firing = table[table["state"] == "firing"]
    yield dg.Output(table, metadata={
        "rows": len(table),
        "firing": len(firing),
        "firing_by_rule_and_severity": _counts_md(firing, ["rule", "severity"]),
    })
    yield contract_check(table, ALERTS, "alerts")
    duplicates = int(table["alert_id"].duplicated().sum())
    yield dg.AssetCheckResult(check_name="alert_ids_unique", passed=duplicates == 0,
                              metadata={"duplicate_ids": duplicates})


@dg.asset(
    group_name="monitoring",
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(),
    check_specs=[
        contract_spec("alert_deliveries"),
        dg.AssetCheckSpec("nothing_pending", asset="alert_deliveries", blocking=False,
                          description="Every alert transition reached every notifier its route names."),
    ],
)
def alert_deliveries(context: dg.AssetExecutionContext, alerts: pd.DataFrame, policy: PolicyResource,
                     notifiers: NotifiersResource, warehouse: WarehouseResource) -> Iterator:
    """Which alert transitions (firing, resolved) reached which notifier; a notifier that is down keeps
    its alerts pending, and they are retried on the next run."""
    previous = warehouse.read("alert_deliveries")
    table, report = deliver(as_contract(alerts, ALERTS), previous, policy.load().routes,
                            notifiers.build(context.log), pd.Timestamp.now(tz="UTC"))
    if not report.ok:
        context.log.warning(report.summary())
    yield dg.Output(table, metadata=report.as_metadata())
    yield contract_check(table, ALERT_DELIVERIES, "alert_deliveries")
    pending = int((table["status"] == "pending").sum()) if not table.empty else 0
    yield dg.AssetCheckResult(check_name="nothing_pending", passed=pending == 0,
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={"pending": pending, "errors": "; ".join(report.errors) or "none"})


MONITORING_ASSETS = [run_health, anomalies, alerts, alert_deliveries]
