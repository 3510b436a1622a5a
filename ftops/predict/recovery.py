"""Recovery of failed, stalled and diverged jobs (§3): which action each job needs now, if any.

One strategy per failure type (schemas.FAILURE_TYPES):
- oom: halve the micro-batch and double gradient accumulation (same effective batch), resume
  from the last checkpoint (`resume_smaller_batch`). At micro-batch 1 there is nothing left to
  halve: the owner is told instead.
- preempted: `resume` from the last checkpoint; from the `preemptions_before_on_demand`-th
  preemption on, on demand (`pricing: on_demand`), since spot capacity keeps being taken away.
- nan_loss (also a running job whose loss is non-finite or diverging): `rollback` to the last good
  checkpoint (saved before the incident) with the learning rate × `learning_rate_rollback_ratio`.
- hang (an ended job classified so, or a running job without heartbeat or step progress for
  `stall_minutes`): `restart` from the last checkpoint, stopping the stuck process first.
- node_failure: `reschedule` on other nodes (exclude the ones it ran on), resume.
- unknown: `restart` after an exponential backoff: base × factor^(attempt−1) minutes after the
  failure (1, 2, 4 min by default). A retry whose wait has not elapsed is not planned yet; a later
  evaluation plans it, so nothing has to sleep.
- code_error: never retried (the same code fails the same way): `notify_owner`.
- cancelled: a person stopped it; nothing.

Limits, each ending in `notify_owner` (an action, so the decision is in the ledger once and the
job_recovery run alerts the owner through the notifiers):
- retries are counted per job from the ledger (restart-type recovery actions of that job carried
  out: applied in enforce mode; in dry_run also the dry-run records, so a dry run shows the same
  sequence) and stop at `max_retries`.
- start-up failures: a job that fails again within `startup_failure_minutes` of a restart is not
  restarted blindly (`hang`, `unknown`: the same restart would fail the same way, a restart loop).
  Types whose retry changes something real are still retried up to the limit: oom (a smaller
  batch is exactly the fix for a peak at the first steps), nan_loss (a lower learning rate),
  preempted and node_failure (the cause is outside the job; on demand / other nodes).

Idempotency: a restart-type action's key is (job, action, "recovery", attempt), so the same attempt
is never carried out twice; `notify_owner` adds the incident (the failure it is about), so a job a
person relaunched that fails again is reported again. Each action names its incident in params
(`incident`), and a job whose current incident already has a recovery action in the ledger is
not planned again: that is what stops one failure from consuming every retry.

Pure: no dagster, no environment, no clock (`now` is passed in).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from ftops.costs.ladder import halved_batch
from ftops.plans import Action, PlannedAction
from ftops.policy import RecoveryPolicy
from ftops.schemas import utc_timestamp

TRIGGER = "recovery"
# Actions that make a new attempt at running the job: they count against max_retries.
RESTART_ACTIONS: tuple[str, ...] = ("resume_smaller_batch", "resume", "rollback", "restart", "reschedule")
RECOVERY_ACTIONS: tuple[str, ...] = (*RESTART_ACTIONS, "notify_owner")
# Retried after a start-up failure too, because their retry is not the same thing again.
FIXES_AT_STARTUP = frozenset({"oom", "nan_loss", "preempted", "node_failure"})
# Alert rules that make a running job need recovery. grad_norm_non_finite is left out on purpose:
# with fp16 loss scaling an inf gradient norm is routine (the step is skipped), not a divergence.
DIVERGENCE_RULES = ("loss_non_finite", "loss_divergence")
STALL_RULES = ("heartbeat_lost",)
# Registry states in which an ended failure still needs recovery (a job running again does not).
_NEEDS_RECOVERY = ("failed", "preempted")
_BATCH_ACTIONS = ("resume_smaller_batch", "reduce_batch_size")


@dataclass(frozen=True)
class RecoveryStep:
    """What recovery decided for one job now: an action, a wait, or nothing, and why."""

    job_id: str
    failure_type: str
    incident: str  # "<failure_type>@<ISO time of the failure>": the failure this step is about
    attempt: int  # the attempt an action would be (retries carried out so far + 1)
    action: PlannedAction | None
    reason: str
    not_before: pd.Timestamp | None = None  # set while a backoff is still running


# -- small pure helpers -----------------------------------------------------------------------


def backoff_minutes(attempt: int, base: float, factor: float) -> float:
    """Wait before retry `attempt` (1-based): base × factor^(attempt−1), i.e. 1, 2, 4 min by default."""
    return float(base) * float(factor) ** max(int(attempt) - 1, 0)


def recovery_key(job_id: str, action: str, attempt: int, incident: str | None = None) -> str:
    """Stable idempotency key: (job, action, trigger "recovery", attempt[, incident])."""
    parts: list[Any] = [job_id, action, TRIGGER, int(attempt)]
    if incident is not None:
        parts.append(incident)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _params(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(row.get("params") or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _counted(ledger: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Ledger rows that stand for an action carried out (or, in dry_run, that would have been)."""
    if ledger is None or ledger.empty:
        return pd.DataFrame(columns=["action_id", "ts", "trigger", "job_id", "action", "params", "mode", "status"])
    status, row_mode = ledger["status"].astype(str), ledger["mode"].astype(str)
    done = status.eq("applied")
    if mode == "dry_run":
        done |= status.eq("skipped") & row_mode.eq("dry_run")
    return ledger[(done & ledger["trigger"].astype(str).eq(TRIGGER)).to_numpy()]


def _recorded(ledger: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Recovery rows that block planning the same incident again in `mode` (cf. LedgerStore.done_keys).

    enforce: any enforce-mode row that did not fail (a planned one is in flight and resumed by the
    next job_recovery run). dry_run: any row that did not fail.
    """
    if ledger is None or ledger.empty:
        return pd.DataFrame(columns=["action_id", "job_id", "action", "params", "mode", "status"])
    keep = ledger["trigger"].astype(str).eq(TRIGGER) & ~ledger["status"].astype(str).eq("failed")
    if mode == "enforce":
        keep &= ledger["mode"].astype(str).eq("enforce")
    return ledger[keep.to_numpy()]


def attempts_so_far(ledger: pd.DataFrame, job_id: str, mode: str = "enforce") -> int:
    """Retries carried out for the job: its restart-type recovery actions that were applied
    (in dry_run also those recorded as dry runs)."""
    rows = _counted(ledger, mode)
    mine = rows["job_id"].astype(str).eq(job_id) & rows["action"].astype(str).isin(RESTART_ACTIONS)
    return int(mine.sum())


def _last_restart_ts(ledger: pd.DataFrame, job_id: str, mode: str) -> pd.Timestamp | None:
    rows = _counted(ledger, mode)
    rows = rows[(rows["job_id"].astype(str).eq(job_id) & rows["action"].astype(str).isin(RESTART_ACTIONS)).to_numpy()]
    if rows.empty:
        return None
    return utc_timestamp(pd.to_datetime(rows["ts"], utc=True).max())


def is_startup_failure(failed_at: pd.Timestamp | None, restarted_at: pd.Timestamp | None,
                       startup_failure_minutes: float) -> bool:
    """True when the job failed within `startup_failure_minutes` of its (re)start; False when unknown."""
    if failed_at is None or restarted_at is None or pd.isna(failed_at) or pd.isna(restarted_at):
        return False
    ran = (utc_timestamp(failed_at) - utc_timestamp(restarted_at)) / pd.Timedelta(minutes=1)
    return 0 <= ran < float(startup_failure_minutes)


def _ts(value: Any) -> pd.Timestamp | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    return None if pd.isna(ts) else utc_timestamp(ts)


def _iso(ts: pd.Timestamp) -> str:
    return utc_timestamp(ts).isoformat().replace("+00:00", "Z")


def _int_or_none(value: Any) -> int | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


# -- running jobs that need recovery ------------------------------------------------------------


def running_job_problems(alerts: pd.DataFrame | None, jobs: pd.DataFrame | None, stall_minutes: float,
                         now: pd.Timestamp) -> pd.DataFrame:
    """Running jobs that need recovery without having ended: the `stalled` input of `plan_recovery`.

    Columns: job_id, failure_type (hang | nan_loss), detected_at, evidence. From firing alerts:
    `heartbeat_lost` silent for at least `stall_minutes` → hang (the alert's value is the minutes
    of silence when it was last evaluated; the time since then is added); a non-finite or
    diverging loss → nan_loss, which wins over hang (a rollback restarts too, and from a
    checkpoint saved before the loss went bad). Only jobs the registry says are running.
    """
    columns = ["job_id", "failure_type", "detected_at", "evidence"]
    if alerts is None or alerts.empty or jobs is None or jobs.empty:
        return pd.DataFrame(columns=columns)
    now = utc_timestamp(now)
    running = set(jobs.loc[jobs["status"].astype("string").eq("running").fillna(False).to_numpy(), "job_id"]
                  .astype(str))
    firing = alerts[(alerts["state"].astype(str).eq("firing")
                     & alerts["job_id"].astype(str).isin(running)).to_numpy()]
    last_seen = pd.to_datetime(firing["last_seen_at"], utc=True)
    value = pd.to_numeric(firing["value"], errors="coerce")
    silent = value + (now - last_seen) / pd.Timedelta(minutes=1)
    stalled = firing["rule"].isin(STALL_RULES).to_numpy() & (silent >= float(stall_minutes)).fillna(False).to_numpy()
    diverged = firing["rule"].isin(DIVERGENCE_RULES).to_numpy()
    hits = firing[stalled | diverged].assign(
        failure_type=["nan_loss" if r in DIVERGENCE_RULES else "hang" for r in firing.loc[stalled | diverged, "rule"]],
        detected_at=pd.to_datetime(firing.loc[stalled | diverged, "started_at"], utc=True),
    )
    if hits.empty:
        return pd.DataFrame(columns=columns)
    # nan_loss first, then the earliest alert: one problem per job
    hits = hits.assign(_rank=hits["failure_type"].ne("nan_loss")).sort_values(["job_id", "_rank", "detected_at"])
    hits = hits.drop_duplicates("job_id")
    out = pd.DataFrame({"job_id": hits["job_id"].astype(str), "failure_type": hits["failure_type"],
                        "detected_at": hits["detected_at"],
                        "evidence": hits["rule"].astype(str) + ": " + hits["message"].astype(str)})
    return out.reset_index(drop=True)


# -- planning -------------------------------------------------------------------------------


def _current_batch(job: Mapping[str, Any], counted: pd.DataFrame, job_id: str) -> tuple[int | None, int]:
    """The micro-batch and accumulation the job runs with now: the registry's, or a smaller one
    that an earlier batch change (recovery or budget) set and the registry does not show yet."""
    micro, accum = _int_or_none(job.get("batch_size")), _int_or_none(job.get("grad_accum")) or 1
    changes = counted[(counted["job_id"].astype(str).eq(job_id)
                       & counted["action"].astype(str).isin(_BATCH_ACTIONS)).to_numpy()]
    for row in changes.to_dict("records"):
        p = _params(row)
        new_micro, new_accum = _int_or_none(p.get("micro_batch_size")), _int_or_none(p.get("grad_accum"))
        if new_micro is not None and (micro is None or new_micro < micro):
            micro, accum = new_micro, new_accum or 1
    return micro, accum


def _preemptions_before(counted: pd.DataFrame, job_id: str) -> int:
    rows = counted[(counted["job_id"].astype(str).eq(job_id) & counted["action"].astype(str).eq("resume")).to_numpy()]
    return sum(_params(r).get("cause") == "preempted" for r in rows.to_dict("records"))


def _incidents(failures: pd.DataFrame | None, jobs: pd.DataFrame | None,
               stalled: pd.DataFrame | None) -> list[dict[str, Any]]:
    """One current problem per job: an ended failure the registry still shows, or a running problem."""
    status = ({} if jobs is None or jobs.empty else
              dict(zip(jobs["job_id"].astype(str), jobs["status"].astype("string").fillna(""))))
    out: dict[str, dict[str, Any]] = {}
    if failures is not None and not failures.empty:
        for row in failures.drop_duplicates("job_id", keep="last").to_dict("records"):
            job_id = str(row["job_id"])
            # a job the registry shows running (relaunched) or done is past this failure
            if job_id in status and status[job_id] not in _NEEDS_RECOVERY:
                continue
            ftype = str(row["failure_type"])
            failed_at = _ts(row.get("ended_at"))
            out[job_id] = {"job_id": job_id, "failure_type": ftype, "failed_at": failed_at,
                           "started_at": _ts(row.get("started_at")), "evidence": _text(row.get("evidence")),
                           "running": False}
    if stalled is not None and not stalled.empty:
        for row in stalled.to_dict("records"):
            job_id = str(row["job_id"])
            if status.get(job_id, "running") != "running":
                continue
            out[job_id] = {"job_id": job_id, "failure_type": str(row["failure_type"]),
                           "failed_at": _ts(row.get("detected_at")), "started_at": None,
                           "evidence": _text(row.get("evidence")), "running": True}
    for item in out.values():
        when = item["failed_at"]
        item["incident"] = f"{item['failure_type']}@{_iso(when) if when is not None else 'unknown'}"
    return [out[k] for k in sorted(out)]


def recovery_steps(
    failures: pd.DataFrame | None,
    jobs: pd.DataFrame | None,
    ledger: pd.DataFrame | None,
    stalled: pd.DataFrame | None,
    policy: RecoveryPolicy,
    now: pd.Timestamp,
) -> list[RecoveryStep]:
    """The decision for every job with a current problem (see the module doc), in job order.

    failures: `job_failures` rows; jobs: `job_registry`; ledger: `action_ledger`; stalled:
    `running_job_problems(...)`. Mode `off` decides nothing.
    """
    if policy.mode == "off":
        return []
    now = utc_timestamp(now)
    ledger = ledger if ledger is not None else pd.DataFrame()
    counted = _counted(ledger, policy.mode)
    recorded = _recorded(ledger, policy.mode)
    handled = {(str(r["job_id"]), _params(r).get("incident")) for r in recorded.to_dict("records")}
    recorded_ids = set(recorded["action_id"].astype(str))
    registry = ({} if jobs is None or jobs.empty else
                {str(r["job_id"]): r for r in jobs.drop_duplicates("job_id", keep="last").to_dict("records")})
    steps = []
    for item in _incidents(failures, jobs, stalled):
        job_id, ftype, incident = item["job_id"], item["failure_type"], item["incident"]
        job = registry.get(job_id, {})
        done = attempts_so_far(ledger, job_id, policy.mode)
        attempt = done + 1

        def step(action: Action | None, params: dict[str, Any] | None, reason: str,
                 not_before: pd.Timestamp | None = None) -> RecoveryStep:
            planned = None
            if action is not None:
                key = recovery_key(job_id, action, attempt, incident if action == "notify_owner" else None)
                if key in recorded_ids:
                    return RecoveryStep(job_id, ftype, incident, attempt, None,
                                        f"{action} for attempt {attempt} already recorded", not_before)
                full = {**(params or {}), "attempt": attempt, "incident": incident, "cause": ftype}
                planned = PlannedAction(key, job_id, _text(job.get("budget_category")) or "", action, full, 0.0,
                                        policy.mode, "", trigger=TRIGGER, reason=reason)
            return RecoveryStep(job_id, ftype, incident, attempt, planned, reason, not_before)

        what = f"job {job_id} {'is' if item['running'] else 'failed'} ({ftype}" + (
            f": {item['evidence']})" if item["evidence"] else ")")
        if ftype == "cancelled":
            steps.append(step(None, None, f"{what}: stopped by a person, not recovered"))
            continue
        if (job_id, incident) in handled:
            steps.append(step(None, None, f"{what}: this failure already has a recovery action"))
            continue
        if ftype == "code_error":
            steps.append(step("notify_owner", {"retry": False},
                              f"{what}: a code error fails the same way again; not retried, owner notified"))
            continue
        if done >= policy.max_retries:
            steps.append(step("notify_owner", {"retry": False, "retries": done},
                              f"{what}: {done} of {policy.max_retries} retries used; stopped, owner notified"))
            continue
        restarted_at = _last_restart_ts(ledger, job_id, policy.mode)
        if done and item["started_at"] is not None:
            restarted_at = max(restarted_at, item["started_at"]) if restarted_at is not None else item["started_at"]
        if done and ftype not in FIXES_AT_STARTUP and is_startup_failure(item["failed_at"], restarted_at,
                                                                          policy.startup_failure_minutes):
            steps.append(step("notify_owner", {"retry": False, "startup_failure": True},
                              f"{what}: failed again within {policy.startup_failure_minutes:g} min of restart "
                              f"{done}; the same restart would fail the same way; owner notified"))
            continue
        of = f"attempt {attempt} of {policy.max_retries}"
        if ftype == "oom":
            micro, accum = _current_batch(job, counted, job_id)
            halved = halved_batch(micro, accum) if micro else None
            if halved is None:
                steps.append(step("notify_owner", {"retry": False},
                                  f"{what}: micro-batch {micro or 'unknown'}, nothing left to halve; owner notified"))
                continue
            steps.append(step("resume_smaller_batch", {**halved, "resume_from": "last_checkpoint"},
                              f"{what}; {of}: micro-batch {micro}→{halved['micro_batch_size']}, accumulation "
                              f"{accum}→{halved['grad_accum']} (effective batch {halved['effective_batch_size']}), "
                              "resume"))
        elif ftype == "preempted":
            n = _preemptions_before(counted, job_id) + 1
            params: dict[str, Any] = {"resume_from": "last_checkpoint", "preemptions": n}
            on_demand = n >= policy.preemptions_before_on_demand
            if on_demand:
                params["pricing"] = "on_demand"
            steps.append(step("resume", params, f"{what}; {of}: preemption {n}, resume from the last checkpoint"
                              + (" on demand" if on_demand else "")))
        elif ftype == "nan_loss":
            params = {"resume_from": "last_good_checkpoint", "learning_rate_ratio": policy.learning_rate_rollback_ratio,
                      "stop_running": item["running"]}
            if item["failed_at"] is not None:
                params["checkpoint_before"] = _iso(item["failed_at"])  # the last good one predates the incident
            steps.append(step("rollback", params, f"{what}; {of}: roll back to the last good checkpoint, learning "
                              f"rate × {policy.learning_rate_rollback_ratio:g}"))
        elif ftype == "hang":
            steps.append(step("restart", {"resume_from": "last_checkpoint", "stop_running": item["running"]},
                              f"{what}; {of}: restart from the last checkpoint"))
        elif ftype == "node_failure":
            steps.append(step("reschedule", {"resume_from": "last_checkpoint", "exclude_previous_nodes": True},
                              f"{what}; {of}: reschedule on other nodes, resume"))
        else:  # unknown, and any type a newer classifier adds: the cautious generic retry
            wait = backoff_minutes(attempt, policy.backoff_base_minutes, policy.backoff_factor)
            since = item["failed_at"] if item["failed_at"] is not None else now
            not_before = since + pd.Timedelta(minutes=wait)
            if now < not_before:
                steps.append(step(None, None, f"{what}; {of} waits {wait:g} min backoff until {_iso(not_before)}",
                                  not_before))
                continue
            steps.append(step("restart", {"resume_from": "last_checkpoint", "stop_running": item["running"],
                                          "backoff_minutes": wait, "not_before": _iso(not_before)},
                              f"{what}; {of}: restart after {wait:g} min backoff"))
    return steps


def plan_recovery(
    failures: pd.DataFrame | None,
    jobs: pd.DataFrame | None,
    ledger: pd.DataFrame | None,
    stalled: pd.DataFrame | None,
    policy: RecoveryPolicy,
    now: pd.Timestamp,
) -> list[PlannedAction]:
    """The recovery actions due now (at most one per job); `recovery_steps` says why for every job."""
    return [s.action for s in recovery_steps(failures, jobs, ledger, stalled, policy, now) if s.action is not None]
