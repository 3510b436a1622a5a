"""The durable action ledger and the write-ahead execution of actions.

Storage: an append-only event log, `<folder>/action_ledger.jsonl`. Each line is one status change
of one action; `load()` folds the log into the `action_ledger` table (one row per action_id, the
latest status). An append of one line is flushed and fsynced before the call returns, so a kill
between two writes loses at most the line being written, and a torn last line is ignored on load.
Appending instead of rewriting keeps the history (planned at t1, applied at t2) and lets runs for
different budget categories write concurrently. The log needs a local (or network-mounted) disk;
the `action_ledger` asset publishes the folded table to the warehouse.

`execute_actions` applies the discipline:
1. under an exclusive lock on the folder (released by the kernel if the process dies), read the log;
2. write every action that is to run as `planned` BEFORE any side effect;
3. apply each one (mode `enforce`) and write `applied`, or `failed` with the error;
   in mode `dry_run` nothing is applied: the action is written `skipped` with detail "dry run: ...".

A run killed between 2 and 3 leaves `planned` rows. Re-running with the same actions resumes
them: an enforce-mode `planned` row is applied (once) and marked. If the kill came after the side
effect but before `applied` was written, the action is applied a second time, which is why every
actuator is idempotent per action_id (see `ftops.actions.actuators`): the second apply is a no-op.

Statuses stay within ACTION_LEDGER's vocabulary (planned, applied, skipped, failed); a dry run is
`skipped` with mode `dry_run`, so it reads "decided, not carried out, because dry run". Which keys
count as done depends on the mode (`done_keys`): a dry-run row does not block enforcement later
in the same period, and a failed action may be tried again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from ftops.actions.actuators import Actuator, ActuatorError
from ftops.plans import PlannedAction, ledger_rows
from ftops.schemas import ACTION_LEDGER, ACTION_STATUSES, MODES, Mode, validate

try:
    import fcntl
except ImportError:  # not POSIX: runs are serialised by Dagster's run queue only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOG_NAME = "action_ledger.jsonl"
_ROW_FIELDS = ("trigger", "job_id", "budget_category", "action", "params", "mode")


class LedgerStore:
    """The action ledger in `folder` (created on first write)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOG_NAME

    # -- reading ------------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Every readable event, oldest first; a torn or corrupt line is logged and skipped."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("%s line %d is not JSON (a write cut short?); ignored", self.path, number)
                continue
            if isinstance(event, dict) and event.get("action_id") and event.get("status") in ACTION_STATUSES:
                out.append(event)
        return out

    def _fold(self) -> dict[str, dict[str, Any]]:
        """action_id -> latest row (plus the `planned` extras), in first-seen order."""
        rows: dict[str, dict[str, Any]] = {}
        for event in self.events():  # ledger-sized (actions per period), not metric-sized
            row = rows.setdefault(event["action_id"], {"action_id": event["action_id"]})
            if "action" in event:  # a full row (planned): its fields replace the old ones
                row.update({k: event.get(k) for k in _ROW_FIELDS}, planned=event.get("planned") or {})
            row.update(ts=event.get("ts"), status=event["status"])
            if event.get("detail") is not None:
                row["detail"] = event["detail"]
        return {k: r for k, r in rows.items() if "action" in r}

    def load(self) -> pd.DataFrame:
        """The `action_ledger` table: one row per action_id with its latest status, in first-seen order."""
        rows = list(self._fold().values())
        if not rows:
            return ACTION_LEDGER.empty()
        frame = pd.DataFrame.from_records(rows)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
        return validate(frame, ACTION_LEDGER)

    def done_keys(self, mode: Mode) -> set[str]:
        """Keys the ladder must not plan again (`plan_actions(already_applied=...)`) in this mode.

        enforce: applied, or skipped in enforce mode (someone decided against it). A dry-run row
        does not count, so switching a budget to enforce mid-period carries the actions out; a
        planned row does not count either: it is in flight and `execute_actions` resumes it.
        dry_run: every recorded key except failed ones (the same as `ledger.applied_keys`), so a
        dry run reports each step once per period.
        """
        ledger = self.load()
        status, row_mode = ledger["status"].astype(str), ledger["mode"].astype(str)
        if mode == "enforce":
            done = status.eq("applied") | (status.eq("skipped") & row_mode.eq("enforce"))
        else:
            done = ~status.eq("failed")
        return set(ledger.loc[done.to_numpy(), "action_id"].astype(str))

    def pending(self, budget_category: str | None = None) -> list[PlannedAction]:
        """Enforce-mode actions left `planned` by a run that died: pass them to `execute_actions` again.

        Only meaningful while no other run is executing (a live run's actions are planned too);
        `execute_actions` holds the folder's lock, so a later caller sees only orphans.
        """
        return [
            _action_from_row(row)
            for row in self._fold().values()
            if row["status"] == "planned" and row["mode"] == "enforce"
            and (budget_category is None or row["budget_category"] == budget_category)
        ]

    # -- writing ------------------------------------------------------------------------------

    def record_planned(self, actions: Iterable[PlannedAction], mode: Mode) -> None:
        """Write each action as `planned` in `mode` (one fsynced append for the batch)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {list(MODES)}")
        actions = [dataclasses.replace(a, mode=mode) for a in actions]
        rows = ledger_rows(actions, status="planned").to_dict("records")
        self._append([{**row, "ts": _iso(row["ts"]), "planned": _planned_extras(a)} for row, a in zip(rows, actions)])

    def mark(self, action_id: str, status: str, detail: str | None = None) -> None:
        """Write a new status (and detail) for an action already in the ledger."""
        if status not in ACTION_STATUSES:
            raise ValueError(f"action_ledger.status {status!r} is not allowed; allowed: {list(ACTION_STATUSES)}")
        self._append([{"action_id": action_id, "ts": _iso(pd.Timestamp.now(tz="UTC")), "status": status,
                       "detail": detail}])

    def _append(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(e, sort_keys=True, default=str) + "\n" for e in events).encode()
        # O_APPEND: concurrent writers never overwrite each other's lines
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size and not _ends_with_newline(self.path):
                data = b"\n" + data  # seal a torn line from a killed writer so ours stays parseable
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the ledger for one execution (the kernel drops it if the process dies)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").isoformat().replace("+00:00", "Z")


def _planned_extras(action: PlannedAction) -> dict[str, Any]:
    # what ACTION_LEDGER has no column for but `pending` needs to rebuild the PlannedAction
    return {"level_pct": action.level_pct, "period_key": action.period_key, "reason": action.reason}


def _action_from_row(row: dict[str, Any]) -> PlannedAction:
    extras = row.get("planned") or {}
    return PlannedAction(
        action_id=row["action_id"], job_id=row["job_id"], budget_category=row["budget_category"],
        action=row["action"], params=json.loads(row["params"] or "{}"), level_pct=float(extras.get("level_pct", 0.0)),
        mode=row["mode"], period_key=str(extras.get("period_key", "")), trigger=row["trigger"],
        reason=str(extras.get("reason", "")),
    )


def execute_actions(
    actions: list[PlannedAction], store: LedgerStore, actuator: Actuator, mode: Mode
) -> list[dict[str, Any]]:
    """Record, apply and mark each action once; returns one result per distinct action, in order.

    Result keys: action_id, job_id, budget_category, action, mode, status (the ledger status now),
    detail, executed (True when the actuator was called in this call).
    Mode `off` records and applies nothing. An actuator exception other than KeyboardInterrupt
    or SystemExit marks that action `failed` and the others still run; KeyboardInterrupt,
    SystemExit and a kill leave `planned` rows that the next call resumes.
    """
    unique = list({a.action_id: a for a in actions}.values())
    if mode == "off":
        return [_result(a, mode, "off", "mode off: not recorded", False) for a in unique]
    if mode not in ("dry_run", "enforce"):
        raise ValueError(f"mode {mode!r} is not one of {list(MODES)}")
    with store.lock():
        ledger = store.load()
        current = {r["action_id"]: r for r in ledger.to_dict("records")}
        results: dict[str, dict[str, Any]] = {}
        to_plan, to_run = [], []
        for a in unique:
            row = current.get(a.action_id)
            state = _decide(row, mode)
            if state == "done":
                detail = None if pd.isna(row["detail"]) else str(row["detail"])
                results[a.action_id] = _result(a, row["mode"], row["status"], detail, False)
                continue
            if state == "plan":
                to_plan.append(a)
            to_run.append((a, state == "resume"))
        store.record_planned(to_plan, mode)  # the write-ahead: before any side effect
        for a, resumed in to_run:
            results[a.action_id] = _run_one(a, store, actuator, mode, resumed)
    return [results[a.action_id] for a in unique]


def _decide(row: dict[str, Any] | None, mode: Mode) -> str:
    """'done' (leave it), 'resume' (planned in this mode by a run that died) or 'plan' (record anew)."""
    if row is None or row["status"] == "failed":
        return "plan"
    if row["status"] == "applied":
        return "done"
    if row["status"] == "planned" and row["mode"] != mode:
        return "plan"  # a run in the other mode died: this run's mode decides what happens now
    if mode == "enforce" and row["mode"] != "enforce":
        return "plan"  # a dry run's record never stands in for the real thing
    if row["status"] == "planned":
        return "resume"
    return "done"  # skipped in this mode, or skipped under enforcement (decided against)


def _run_one(a: PlannedAction, store: LedgerStore, actuator: Actuator, mode: Mode, resumed: bool) -> dict:
    if mode == "dry_run":
        detail = f"dry run: {actuator.name} would {a.action.replace('_', ' ')} {json.dumps(a.params, sort_keys=True)}"
        store.mark(a.action_id, "skipped", detail)
        return _result(a, mode, "skipped", detail, False)
    prefix = f"{actuator.name}: " + ("resumed after an interrupted run; " if resumed else "")
    try:
        detail = prefix + actuator.apply(a)
        status = "applied"
    except ActuatorError as exc:
        detail, status = prefix + str(exc), "failed"
    except Exception as exc:  # a bug or an unexpected client error: one action fails, not the run
        detail, status = prefix + f"{type(exc).__name__}: {exc}", "failed"
    store.mark(a.action_id, status, detail)
    return _result(a, mode, status, detail, True)


def _result(a: PlannedAction, mode: str, status: str, detail: str | None, executed: bool) -> dict[str, Any]:
    return {"action_id": a.action_id, "job_id": a.job_id, "budget_category": a.budget_category,
            "action": a.action, "mode": mode, "status": status, "detail": detail, "executed": executed}
