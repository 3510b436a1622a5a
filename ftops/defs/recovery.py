"""Job recovery: `job_health_sensor` watches failures and running jobs; `job_recovery` acts once.

Mirrors budget enforcement (ftops.defs.enforcement). The sensor reads `job_failures`, `job_registry`
and `alerts` from the warehouse plus the action ledger, asks `ftops.predict.recovery` what each job
needs now, and requests one `job_recovery` run per job and attempt (run key
`recovery:<job_id>:<attempt>`; a give-up adds the action id, so each incident reports once). Its
cursor remembers the run key last requested per job, so a job whose run has not executed yet is not
requested again; Dagster's run-key de-duplication covers a daemon restart. A retry still waiting
for its backoff is not requested; a later tick requests it once due.

The job plans again from the current tables before acting (a job relaunched by hand since the
request needs nothing), then records each action in the ledger before applying it
(ftops.actions.ledger_store): a run killed between "planned" and "applied" is resumed by the next
job_recovery run of that job, never applied twice. An action whose actuator failed stays `failed`
and is alerted as critical: re-execute the run from the UI to try again (its run key is used).
"""

import dataclasses
import json
from typing import Any

import dagster as dg
import pandas as pd

from ftops.actions.ledger_store import LedgerStore, execute_actions
from ftops.actions.notifiers import AlertMessage
from ftops.defs.automation import SENSOR_INTERVAL_SECONDS
from ftops.defs.enforcement import (
    ACTION_RUN_PRIORITY, ActuatorResource, LedgerResource, publish_ledger, send_alert,
)
from ftops.defs.notifiers import NotifiersResource
from ftops.defs.resources import PolicyResource, WarehouseResource
from ftops.plans import PlannedAction
from ftops.policy import RecoveryPolicy
from ftops.predict.recovery import RecoveryStep, recovery_steps, running_job_problems
from ftops.schemas import ALERTS, JOB_FAILURES, JOBS, utc_timestamp

OP_NAME = "recover_job"


class RecoveryConfig(dg.Config):
    job_id: str
    attempt: int
    failure_type: str
    incident: str
    mode: str
    reason: str = ""
    planned_actions: list[dict[str, Any]] = []
    as_of: str = ""  # ISO time to plan again at; empty: now (tests and backfills pin it)


def _action_to_config(action: PlannedAction) -> dict[str, Any]:
    return {"action_id": action.action_id, "job_id": action.job_id, "action": action.action,
            "budget_category": action.budget_category, "params": json.dumps(action.params, sort_keys=True),
            "reason": action.reason}


def _action_from_config(entry: dict[str, Any], mode: str) -> PlannedAction:
    return PlannedAction(
        action_id=entry["action_id"], job_id=entry["job_id"], budget_category=entry.get("budget_category", ""),
        action=entry["action"], params=json.loads(entry["params"]), level_pct=0.0, mode=mode, period_key="",
        trigger="recovery", reason=entry.get("reason", ""),
    )


def read_inputs(warehouse: WarehouseResource) -> tuple[pd.DataFrame | None, pd.DataFrame | None,
                                                       pd.DataFrame | None]:
    """job_failures, job_registry and alerts as the warehouse holds them (None: not materialised)."""
    return warehouse.read(JOB_FAILURES.name), warehouse.read(JOBS.name), warehouse.read(ALERTS.name)


def steps_now(failures: pd.DataFrame | None, jobs: pd.DataFrame | None, alerts: pd.DataFrame | None,
              ledger: pd.DataFrame, policy: RecoveryPolicy, now: pd.Timestamp) -> list[RecoveryStep]:
    stalled = running_job_problems(alerts, jobs, policy.stall_minutes, now)
    return recovery_steps(failures, jobs, ledger, stalled, policy, now)


def _run_key(step: RecoveryStep) -> str:
    key = f"recovery:{step.job_id}:{step.attempt}"
    if step.action is not None and step.action.action == "notify_owner":
        # telling the owner is not an attempt: the next failure would reuse the attempt number
        key += f":notify:{step.action.action_id[:12]}"
    return key


def plan_requests(failures: pd.DataFrame | None, jobs: pd.DataFrame | None, alerts: pd.DataFrame | None,
                  ledger: pd.DataFrame, policy: RecoveryPolicy, cursor: dict[str, Any],
                  now: pd.Timestamp) -> tuple[list[dg.RunRequest], dict[str, Any], list[str]]:
    """Run requests for jobs needing recovery now, the new cursor, and why the others got none."""
    requested: dict[str, str] = dict(cursor.get("requested", {}))
    requests, notes, new_requested = [], [], {}
    for step in steps_now(failures, jobs, alerts, ledger, policy, now):
        if step.action is None:
            notes.append(step.reason)
            continue
        run_key = _run_key(step)
        new_requested[step.job_id] = run_key
        if requested.get(step.job_id) == run_key:
            notes.append(f"{step.job_id}: {run_key} already requested")
            continue
        config = {"job_id": step.job_id, "attempt": step.attempt, "failure_type": step.failure_type,
                  "incident": step.incident, "mode": policy.mode, "reason": step.reason,
                  "planned_actions": [_action_to_config(step.action)]}
        requests.append(dg.RunRequest(
            run_key=run_key,
            run_config={"ops": {OP_NAME: {"config": config}}},
            tags={"ftops/job_id": step.job_id, "ftops/attempt": str(step.attempt),
                  "ftops/failure_type": step.failure_type, "ftops/action": step.action.action,
                  "ftops/mode": policy.mode, **ACTION_RUN_PRIORITY},
        ))
    # only jobs still needing this run are remembered: the cursor stays the size of the trouble
    return requests, {"requested": new_requested}, notes


def _alert(config: RecoveryConfig, result: dict[str, Any] | None, now: pd.Timestamp) -> AlertMessage:
    action = result["action"] if result else "none"
    gave_up = action == "notify_owner"
    failed = bool(result) and result["status"] == "failed"
    if failed:
        what = f"recovery action {action} FAILED ({result['detail']}); re-execute this job_recovery run to retry"
    elif gave_up:
        what = "not restarted: the owner must look"
    elif result:
        what = f"{action}: {result['status']} (mode {result['mode']})"
    else:
        what = "no action needed any more"
    return AlertMessage(
        alert_id=f"recovery:{config.job_id}:{config.incident}", job_id=config.job_id, rule="job_recovery",
        category="training", severity="critical" if (gave_up or failed) else "warning", state="firing",
        message=f"{config.reason}. {what}", value=float(config.attempt), threshold=None,
        started_at=now.to_pydatetime(), last_seen_at=now.to_pydatetime(),
    )


@dg.op(name=OP_NAME, description="Plan again from the current tables, then carry the recovery out once "
       "(ledger first) and alert.")
def recover_job(context: dg.OpExecutionContext, config: RecoveryConfig, ledger: LedgerResource,
                actuator: ActuatorResource, notifiers: NotifiersResource, policy: PolicyResource,
                warehouse: WarehouseResource) -> None:
    store: LedgerStore = ledger.store()
    now = utc_timestamp(config.as_of) if config.as_of else pd.Timestamp.now(tz="UTC")
    requested = [_action_from_config(a, config.mode) for a in config.planned_actions]
    failures, jobs, alerts = read_inputs(warehouse)
    if failures is None and alerts is None:
        actions, dropped = requested, []  # nothing to check against: trust the sensor's plan
    else:
        recovery = policy.load().recovery
        recovery = dataclasses.replace(recovery, mode=config.mode)  # the mode the sensor planned under
        current = {s.action.action_id for s in steps_now(failures, jobs, alerts, store.load(), recovery, now)
                   if s.action is not None and s.job_id == config.job_id}
        actions = [a for a in requested if a.action_id in current]
        dropped = [a for a in requested if a.action_id not in current]
    for a in dropped:
        context.log.info(f"{a.action} on {a.job_id} no longer planned (done by another run, or the job moved on)")
    # enforce-mode actions of this job that an earlier run planned and did not finish (killed between
    # planned and applied); a dry run must not re-record them as dry runs
    mine = {a.action_id for a in actions}
    orphans = ([a for a in store.pending() if a.trigger == "recovery" and a.job_id == config.job_id
                and a.action_id not in mine] if config.mode == "enforce" else [])
    results = execute_actions(actions + orphans, store, actuator.build(), config.mode)
    for r in results:
        context.log.info(f"{r['action']} on {r['job_id']}: {r['status']} ({r['detail']})")

    undelivered = [problem for alert in [_alert(config, r, now) for r in results] or [_alert(config, None, now)]
                   for problem in send_alert(alert, notifiers, policy, context.log, "recovery")]
    publish_ledger(context, store, warehouse, results, job_id=config.job_id, attempt=config.attempt,
                   failure_type=config.failure_type, mode=config.mode,
                   alert_undelivered="; ".join(undelivered) or "none")


@dg.job(description="Recovery of one job at one attempt (requested by job_health_sensor).",
        tags={"ftops/trigger": "recovery"})
def job_recovery() -> None:
    recover_job()


# By name, not job=: as for budget_sensor (a re-created sensor's job copy prints a BetaWarning).
@dg.sensor(
    job_name=job_recovery.name,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed, stalled or diverged job: requests job_recovery with the planned action.",
)
def job_health_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource, policy: PolicyResource,
                      ledger: LedgerResource) -> dg.SensorResult:
    recovery = policy.load().recovery
    if recovery.mode == "off":
        return dg.SensorResult(skip_reason="recovery mode is off")
    failures, jobs, alerts = read_inputs(warehouse)
    if failures is None and alerts is None:
        return dg.SensorResult(skip_reason="job_failures and alerts not materialised yet")
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests, new_cursor, notes = plan_requests(failures, jobs, alerts, ledger.store().load(), recovery, cursor,
                                                pd.Timestamp.now(tz="UTC"))
    encoded = json.dumps(new_cursor, sort_keys=True)
    if not requests:
        why = "; ".join(notes[:5]) + (f"; and {len(notes) - 5} more" if len(notes) > 5 else "")
        return dg.SensorResult(skip_reason=why or "no job needs recovery", cursor=encoded)
    return dg.SensorResult(run_requests=requests, cursor=encoded)


RECOVERY_JOBS = [job_recovery]
RECOVERY_SENSORS = [job_health_sensor]
