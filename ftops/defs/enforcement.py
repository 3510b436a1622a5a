"""Budget enforcement: `budget_sensor` watches budget_status; the `budget_enforcement` job acts once.

The sensor requests one run per budget category, newly crossed level and period. Its cursor
remembers, per category, the period and the levels already crossed, so a crossing triggers once,
a new period starts fresh, and a daemon restart triggers nothing twice (the run keys repeat).
The job records each planned action in the ledger before applying it (ftops.actions.ledger_store),
so a run killed between "planned" and "applied" is resumed by the next run, never applied twice.
"""

import json
import os
from typing import Any

import dagster as dg
import pandas as pd

from ftops.actions.actuators import Actuator, ControlFileActuator, RecordActuator, WebhookActuator
from ftops.actions.delivery import route
from ftops.actions.ledger_store import LedgerStore, execute_actions
from ftops.actions.notifiers import AlertMessage, NotifierError
from ftops.costs.budgets import current_periods
from ftops.costs.ladder import explain_nothing_planned, plan_actions
from ftops.defs.automation import SENSOR_INTERVAL_SECONDS
from ftops.defs.io_manager import write_table
from ftops.defs.notifiers import NotifiersResource
from ftops.defs.resources import PolicyResource, WarehouseResource
from ftops.plans import PlannedAction
from ftops.policy import Policy
from ftops.schemas import ACTION_LEDGER, BUDGET_STATUS, JOBS

# Runs that act on jobs go ahead of the analytics in the run queue (the QueuedRunCoordinator starts
# higher `dagster/priority` first): an overrun must not wait behind a benchmark refresh.
ACTION_RUN_PRIORITY = {"dagster/priority": "10"}


action_ledger = dg.AssetSpec(
    ACTION_LEDGER.name,
    group_name="operations",
    kinds={"parquet"},
    description="Every enforcement and recovery action: planned, applied, skipped or failed, with its "
    "idempotency key. Written by the budget_enforcement job (the durable log is the ledger folder).",
)


class LedgerResource(dg.ConfigurableResource):
    """The durable action ledger: an append-only log in a local (or network-mounted) folder."""

    folder: str

    def store(self) -> LedgerStore:
        return LedgerStore(self.folder)


class ActuatorResource(dg.ConfigurableResource):
    """How actions reach the world: record (default, dry), control_file, webhook or kubernetes."""

    kind: str = "record"
    control_dir: str | None = None
    webhook_url: str | None = None
    webhook_secret_env: str | None = None  # NAME of the env var that holds the HMAC secret
    kubernetes_namespace: str = "default"
    timeout_seconds: float = 10.0

    def build(self) -> Actuator:
        if self.kind == "record":
            return RecordActuator()
        if self.kind == "control_file":
            if not self.control_dir:
                raise dg.DagsterInvalidConfigError("actuator control_file needs control_dir", [], None)
            return ControlFileActuator(self.control_dir)
        if self.kind == "webhook":
            if not self.webhook_url:
                raise dg.DagsterInvalidConfigError("actuator webhook needs webhook_url", [], None)
            secret = os.environ.get(self.webhook_secret_env) if self.webhook_secret_env else None
            return WebhookActuator(self.webhook_url, secret, timeout_seconds=self.timeout_seconds)
        if self.kind == "kubernetes":
            from ftops.actions.actuators_kubernetes import KubernetesActuator

            return KubernetesActuator(namespace=self.kubernetes_namespace)
        raise dg.DagsterInvalidConfigError(
            f"actuator kind {self.kind!r}: allowed values are record, control_file, webhook, kubernetes", [], None
        )


class EnforcementConfig(dg.Config):
    budget_category: str
    level_pct: float
    period_key: str
    usage_pct: float
    limit_usd: float
    mode: str
    planned_actions: list[dict[str, Any]] = []
    no_action_reason: str = ""  # why this crossing plans nothing, said in the run's logs and metadata


def _action_to_config(action: PlannedAction) -> dict[str, Any]:
    return {"action_id": action.action_id, "job_id": action.job_id, "action": action.action,
            "params": json.dumps(action.params, sort_keys=True), "level_pct": action.level_pct,
            "reason": action.reason}


def _action_from_config(entry: dict[str, Any], config: EnforcementConfig) -> PlannedAction:
    return PlannedAction(
        action_id=entry["action_id"], job_id=entry["job_id"], budget_category=config.budget_category,
        action=entry["action"], params=json.loads(entry["params"]), level_pct=float(entry["level_pct"]),
        mode=config.mode, period_key=config.period_key, reason=entry.get("reason", ""),
    )


def send_alert(alert: AlertMessage, notifiers: NotifiersResource, policy: PolicyResource,
               log: Any, what: str) -> list[str]:
    """Send an action run's alert through its routes; the notifiers it did not reach, with why."""
    built = notifiers.build(log)
    undelivered = []
    for name in route({"severity": alert.severity, "category": alert.category}, policy.load().routes):
        try:
            built[name].send([alert])
        except (NotifierError, KeyError) as exc:
            undelivered.append(f"{name}: {exc}")
            log.warning(f"{what} alert not delivered through {name}: {exc}")
    return undelivered


def publish_ledger(context: dg.OpExecutionContext, store: LedgerStore, warehouse: WarehouseResource,
                   results: list[dict[str, Any]], **metadata: Any) -> None:
    """Store the folded ledger where the `action_ledger` asset lives and record the materialisation,
    with what this run did."""
    table = store.load()
    write_table(table, warehouse.base_path, dg.AssetKey(ACTION_LEDGER.name))
    context.log_event(dg.AssetMaterialization(asset_key=ACTION_LEDGER.name, metadata={
        "rows": len(table),
        "this_run": dg.MetadataValue.md(pd.DataFrame(results).to_markdown(index=False) if results else "none"),
        **metadata,
    }))


def _budget_alert(config: EnforcementConfig, now: pd.Timestamp) -> AlertMessage:
    return AlertMessage(
        alert_id=f"budget:{config.budget_category}:{config.period_key}:{config.level_pct:g}",
        job_id=f"budget:{config.budget_category}", rule="budget_threshold", category="cost",
        severity="critical" if config.level_pct >= 90 else "warning", state="firing",
        message=(f"budget {config.budget_category!r} at {config.usage_pct:.1f}% of {config.limit_usd:g} USD "
                 f"for {config.period_key}: crossed {config.level_pct:g}% "
                 + (f"({len(config.planned_actions)} action(s) planned, mode {config.mode})" if config.planned_actions
                    else f"(no action: {config.no_action_reason or 'none planned'}; mode {config.mode})")),
        value=config.usage_pct, threshold=config.level_pct, started_at=now.to_pydatetime(),
        last_seen_at=now.to_pydatetime(),
    )


@dg.op(description="Alert at the crossed threshold and carry out the ladder step once (ledger first).")
def enforce_budget(context: dg.OpExecutionContext, config: EnforcementConfig, ledger: LedgerResource,
                   actuator: ActuatorResource, notifiers: NotifiersResource, policy: PolicyResource,
                   warehouse: WarehouseResource) -> None:
    store = ledger.store()
    actions = [_action_from_config(a, config) for a in config.planned_actions]
    # enforce-mode actions an earlier run planned and did not finish (killed between planned and
    # applied); a dry run must not re-record them as dry runs
    planned_here = {a.action_id for a in actions}
    orphans = ([a for a in store.pending(config.budget_category) if a.action_id not in planned_here]
               if config.mode == "enforce" else [])
    results = execute_actions(actions + orphans, store, actuator.build(), config.mode)
    for r in results:
        context.log.info(f"{r['action']} on {r['job_id']}: {r['status']} ({r['detail']})")
    nothing_done = "" if results else (config.no_action_reason or "no action planned")
    if nothing_done:
        context.log.info(f"no action at {config.level_pct:g} % for budget {config.budget_category!r}: {nothing_done}")

    now = pd.Timestamp.now(tz="UTC")
    undelivered = send_alert(_budget_alert(config, now), notifiers, policy, context.log, "budget")
    publish_ledger(context, store, warehouse, results, no_action_reason=nothing_done or "actions were taken",
                   budget_category=config.budget_category, level_pct=config.level_pct, mode=config.mode,
                   alert_undelivered="; ".join(undelivered) or "none")


@dg.job(description="One budget ladder step for one category and period (requested by budget_sensor).",
        tags={"ftops/trigger": "budget"})
def budget_enforcement() -> None:
    enforce_budget()


def _levels(row: pd.Series) -> list[float]:
    return sorted({float(x) for col in ("thresholds_crossed", "ladder_levels_reached")
                   for x in json.loads(row[col] or "[]")})


def plan_requests(status: pd.DataFrame, jobs: pd.DataFrame, policy: Policy, cursor: dict[str, Any],
                  done_keys) -> tuple[list[dg.RunRequest], dict[str, Any]]:
    """Run requests for levels crossed since the cursor, and the new cursor."""
    requests, new_cursor = [], dict(cursor)
    for _, row in current_periods(status).iterrows():  # one row per budget category: closed periods are history
        category = row["budget_category"]
        budget = policy.budgets.get(category) if isinstance(category, str) else None
        if budget is None:
            continue
        period = str(row["period_key"])
        seen = cursor.get(category, {})
        already = set(seen.get("levels", [])) if seen.get("period") == period else set()
        crossed = _levels(row)
        planned = plan_actions(row, jobs, budget, period, done_keys(budget.mode))
        for level in (lvl for lvl in crossed if lvl not in already):
            mine = [_action_to_config(a) for a in planned if a.level_pct == level]
            why = "" if mine else explain_nothing_planned(row, jobs, budget, period, done_keys(budget.mode), level)
            config = {"budget_category": category, "level_pct": level, "period_key": period,
                      "usage_pct": float(row["usage_pct"]), "limit_usd": float(row["limit_usd"]),
                      "mode": budget.mode, "planned_actions": mine, "no_action_reason": why}
            requests.append(dg.RunRequest(
                run_key=f"budget:{category}:{period}:{level:g}",
                run_config={"ops": {"enforce_budget": {"config": config}}},
                tags={"ftops/budget_category": category, "ftops/level_pct": f"{level:g}",
                      "ftops/period": period, "ftops/mode": budget.mode, **ACTION_RUN_PRIORITY},
            ))
        new_cursor[category] = {"period": period, "levels": sorted(already | set(crossed))}
    return requests, new_cursor


# By name, not job=: Dagster re-creates a sensor whose job object still needs resources, and that
# copy passes `owners=[]`, which prints a BetaWarning for a parameter we never set.
@dg.sensor(
    job_name=budget_enforcement.name,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="On an upward budget threshold crossing, requests budget_enforcement with the planned actions.",
)
def budget_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource, policy: PolicyResource,
                  ledger: LedgerResource) -> dg.SensorResult:
    status = warehouse.read(BUDGET_STATUS.name)
    if status is None or status.empty:
        return dg.SensorResult(skip_reason="budget_status not materialised yet")
    jobs = warehouse.read(JOBS.name)
    cursor = json.loads(context.cursor) if context.cursor else {}
    store = ledger.store()
    requests, new_cursor = plan_requests(status, jobs if jobs is not None else pd.DataFrame(
        columns=["job_id", "budget_category", "status", "critical", "pricing", "batch_size", "grad_accum"]),
        policy.load(), cursor, store.done_keys)
    if not requests:
        return dg.SensorResult(skip_reason="no new threshold crossing", cursor=json.dumps(new_cursor, sort_keys=True))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cursor, sort_keys=True))
