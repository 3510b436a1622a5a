"""Planned actions on jobs and the pure bookkeeping of the `action_ledger` table.

Budget enforcement (costs/ladder.py), recovery (predict/) and benchmark calibration
(optimize/calibration.py: "launch_calibration", which starts a new job instead of changing one)
plan actions; actions/ carries them out and records them. What they share lives here, so none
imports another, and none imports actions/, which does I/O.

The ledger has one row per action_id (the idempotency key). Adding an action whose key is already
in the ledger changes nothing, so re-planning the same step never applies it twice. `applied_keys`
is what planning must skip: every key except those that failed (a failed action may be tried
again) — a planned one is in flight, a skipped one was decided against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import pandas as pd

from ftops.schemas import ACTION_LEDGER, ACTION_STATUSES, Mode, utc_timestamp, validate

# Recovery (predict/recovery.py) adds the restart-type actions and notify_owner (no restart: a
# person must look); the budget ladder and calibration keep theirs.
Action = Literal["switch_to_spot", "reduce_batch_size", "terminate", "launch_calibration",
                 "resume_smaller_batch", "resume", "rollback", "restart", "reschedule", "notify_owner"]
RETRYABLE = ("failed",)


@dataclass(frozen=True)
class PlannedAction:
    action_id: str  # idempotency key: job, action, trigger, level, category, period (recovery: attempt)
    job_id: str
    budget_category: str
    action: Action
    params: dict[str, Any] = field(hash=False)
    level_pct: float
    mode: Mode
    period_key: str
    trigger: str = "budget"  # one of schemas.TRIGGERS
    reason: str = ""


def _now(ts: pd.Timestamp | None) -> pd.Timestamp:
    if ts is None:
        return pd.Timestamp.now(tz="UTC")
    return utc_timestamp(ts)


def ledger_rows(
    actions: Iterable[PlannedAction], status: str = "planned", ts: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Ledger rows for planned actions (detail: why each was planned)."""
    when = _now(ts)
    records = [
        {
            "action_id": a.action_id,
            "ts": when,
            "trigger": a.trigger,
            "job_id": a.job_id,
            "budget_category": a.budget_category,
            "action": a.action,
            "params": json.dumps(a.params, sort_keys=True),
            "mode": a.mode,
            "status": status,
            "detail": a.reason,
        }
        for a in actions
    ]
    if not records:
        return ACTION_LEDGER.empty()
    return validate(pd.DataFrame.from_records(records), ACTION_LEDGER)


def append(ledger: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`ledger` plus the rows whose action_id it does not hold yet; known keys keep their row."""
    new = rows[~rows["action_id"].isin(ledger["action_id"])].drop_duplicates("action_id")
    frames = [f for f in (ledger, new) if not f.empty]
    if not frames:
        return ACTION_LEDGER.empty()
    return validate(pd.concat(frames, ignore_index=True), ACTION_LEDGER)


def mark(
    ledger: pd.DataFrame, action_id: str, status: str, detail: str | None = None, ts: pd.Timestamp | None = None
) -> pd.DataFrame:
    """A copy of `ledger` with the action's status (and detail, time) set; KeyError if it is unknown."""
    if status not in ACTION_STATUSES:
        raise ValueError(f"action_ledger.status {status!r} is not allowed; allowed: {list(ACTION_STATUSES)}")
    hit = ledger["action_id"].eq(action_id).fillna(False).to_numpy()
    if not hit.any():
        raise KeyError(f"action_ledger has no action {action_id!r}")
    out = ledger.copy()
    out.loc[hit, "status"] = status
    out.loc[hit, "ts"] = _now(ts)
    if detail is not None:
        out.loc[hit, "detail"] = detail
    return validate(out, ACTION_LEDGER)


def applied_keys(ledger: pd.DataFrame) -> set[str]:
    """Keys the ladder must not plan again: every action in the ledger that did not fail."""
    done = ledger[~ledger["status"].isin(RETRYABLE).fillna(False).to_numpy()]
    return set(done["action_id"].astype(str))
