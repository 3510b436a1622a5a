"""The durable ledger and write-ahead execution: each action applied once, also across a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftops.actions.actuators import ActuatorError, ControlFileActuator, RecordActuator
from ftops.actions.ledger_store import LedgerStore, execute_actions
from ftops.costs.ladder import plan_actions
from ftops.plans import PlannedAction, applied_keys
from ftops.policy import BudgetPolicy
from ftops.schemas import ACTION_LEDGER

from ..test_costs.frames import jobs
from .test_actuators import planned

REPO = Path(__file__).resolve().parents[2]
FLEET = jobs(
    {"job_id": "a", "pricing": "on_demand", "batch_size": 8, "grad_accum": 2},
    {"job_id": "b", "pricing": "on_demand", "batch_size": 4, "grad_accum": 1},
    {"job_id": "c", "pricing": "spot", "batch_size": 6, "grad_accum": 1},
)


def ladder(usage: float = 96.0, mode: str = "enforce", already: set[str] | None = None) -> list[PlannedAction]:
    policy = BudgetPolicy(limit_usd=1000.0, mode=mode)
    return plan_actions({"budget_category": "research", "usage_pct": usage}, FLEET, policy, "2025-06", already or set())


class EffectLog:
    """An actuator whose side effect is a line in effects.log; idempotent per action_id like the real ones.

    hang_on/hang_when make it stop forever at one action, before or after its side effect, so a
    test can kill the process exactly there.
    """

    name = "effect_log"

    def __init__(self, folder: Path, idempotent: bool = True, hang_on: str | None = None,
                 hang_when: str = "after", fail_on: str | None = None):
        self.log = folder / "effects.log"
        self.marker = folder / "hanging"
        self.idempotent, self.hang_on, self.hang_when, self.fail_on = idempotent, hang_on, hang_when, fail_on
        self.calls = 0

    def effects(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def apply(self, action: PlannedAction) -> str:
        self.calls += 1
        if action.action_id == self.fail_on:
            raise ActuatorError("target refused")
        if action.action_id == self.hang_on and self.hang_when == "before":
            self._hang()
        if self.idempotent and action.action_id in self.effects():
            return "already done"
        with open(self.log, "a") as f:
            f.write(action.action_id + "\n")
        if action.action_id == self.hang_on and self.hang_when == "after":
            self._hang()
        return "done"

    def _hang(self) -> None:
        self.marker.write_text("x")
        time.sleep(600)


def _child(folder: str, hang_index: int, hang_when: str) -> None:
    """Run in a subprocess that the test kills with SIGKILL while it hangs inside an actuator."""
    actions = ladder()
    execute_actions(actions, LedgerStore(Path(folder) / "ledger"),
                    EffectLog(Path(folder), hang_on=actions[hang_index].action_id, hang_when=hang_when), "enforce")


def statuses(store: LedgerStore) -> dict[str, str]:
    ledger = store.load()
    return dict(zip(ledger["action_id"], ledger["status"]))


def test_enforce_writes_planned_then_applied_and_a_rerun_changes_nothing(tmp_path):
    store, actuator, actions = LedgerStore(tmp_path / "ledger"), EffectLog(tmp_path), ladder()
    assert {a.action for a in actions} == {"switch_to_spot", "reduce_batch_size"} and len(actions) == 5

    results = execute_actions(actions, store, actuator, "enforce")
    assert [r["status"] for r in results] == ["applied"] * 5 and all(r["executed"] for r in results)
    assert sorted(actuator.effects()) == sorted(a.action_id for a in actions)
    events = store.events()
    assert [e["status"] for e in events] == ["planned"] * 5 + ["applied"] * 5  # write-ahead: all planned first
    ledger = store.load()
    assert list(ledger.columns) == list(ACTION_LEDGER.column_names) and len(ledger) == 5
    assert ledger["detail"].str.startswith("effect_log: done").all()
    assert json.loads(ledger.loc[ledger["action"].eq("reduce_batch_size"), "params"].iloc[0])["micro_batch_size"] == 4

    again = execute_actions(actions + actions, store, actuator, "enforce")
    assert len(again) == 5 and not any(r["executed"] for r in again)
    assert actuator.calls == 5 and len(store.events()) == 10
    assert store.done_keys("enforce") == {a.action_id for a in actions} == applied_keys(ledger)
    assert ladder(already=store.done_keys("enforce")) == []


def test_interrupt_between_planned_and_applied_then_rerun_applies_each_once(tmp_path):
    store, actions = LedgerStore(tmp_path / "ledger"), ladder()
    victim = actions[2]

    class Interrupting(EffectLog):
        def apply(self, action):
            detail = super().apply(action)
            if action.action_id == victim.action_id:
                raise KeyboardInterrupt  # after the side effect, before the ledger update
            return detail

    with pytest.raises(KeyboardInterrupt):
        execute_actions(actions, store, Interrupting(tmp_path), "enforce")
    left = statuses(store)
    assert [left[a.action_id] for a in actions] == ["applied", "applied", "planned", "planned", "planned"]
    assert {a.action_id for a in store.pending()} == {a.action_id for a in actions[2:]}
    assert store.pending("other-category") == []
    assert store.pending()[0] == victim  # rebuilt whole from the ledger

    actuator = EffectLog(tmp_path)
    results = execute_actions(actions, store, actuator, "enforce")
    assert [r["executed"] for r in results] == [False, False, True, True, True]
    assert "resumed after an interrupted run" in results[2]["detail"]
    assert sorted(actuator.effects()) == sorted(a.action_id for a in actions)  # each side effect exactly once
    assert set(statuses(store).values()) == {"applied"} and store.pending() == []


@pytest.mark.parametrize("hang_when", ["before", "after"])
def test_sigkill_between_planned_and_applied_then_rerun_applies_each_once(tmp_path, hang_when):
    """A real kill -9 of the enforcement process, before or after the side effect of the third action."""
    code = ("import sys; from ftops_tests.test_actions.test_ledger_store import _child; "
            "_child(sys.argv[1], 2, sys.argv[2])")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), hang_when], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "hanging").exists():
            assert child.poll() is None, "the child exited before reaching the kill point"
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    store, actions = LedgerStore(tmp_path / "ledger"), ladder()
    left = statuses(store)
    assert [left[a.action_id] for a in actions] == ["applied", "applied", "planned", "planned", "planned"]
    effects_before = EffectLog(tmp_path).effects()
    assert len(effects_before) == (2 if hang_when == "before" else 3)

    actuator = EffectLog(tmp_path)
    execute_actions(actions, store, actuator, "enforce")  # the lock died with the child
    assert sorted(actuator.effects()) == sorted(a.action_id for a in actions)
    assert set(statuses(store).values()) == {"applied"}


def test_dry_run_applies_nothing_and_is_reported_once(tmp_path):
    store, actuator = LedgerStore(tmp_path / "ledger"), EffectLog(tmp_path)
    actions = ladder(mode="dry_run")
    results = execute_actions(actions, store, actuator, "dry_run")
    assert actuator.calls == 0 and actuator.effects() == []
    assert {r["status"] for r in results} == {"skipped"} and not any(r["executed"] for r in results)
    ledger = store.load()
    assert set(ledger["mode"]) == {"dry_run"}
    assert ledger["detail"].str.startswith("dry run: effect_log would ").all()
    # the ladder does not report the same step again this period in dry run ...
    assert ladder(mode="dry_run", already=store.done_keys("dry_run")) == []
    # ... but a budget switched to enforce carries the steps out
    assert store.done_keys("enforce") == set()
    results = execute_actions(ladder(already=store.done_keys("enforce")), store, actuator, "enforce")
    assert {r["status"] for r in results} == {"applied"} and len(actuator.effects()) == len(actions)
    assert set(store.load()["mode"]) == {"enforce"}


def test_an_interrupted_enforcement_seen_by_a_dry_run_is_still_enforced_later(tmp_path):
    store, actions = LedgerStore(tmp_path / "ledger"), ladder()
    store.record_planned(actions, "enforce")  # the run died right after its write-ahead
    actuator = EffectLog(tmp_path)
    dry = execute_actions(ladder(mode="dry_run"), store, actuator, "dry_run")  # budget switched to dry_run
    assert {r["status"] for r in dry} == {"skipped"} and actuator.calls == 0
    assert store.pending() == [] and store.done_keys("enforce") == set()
    execute_actions(ladder(already=store.done_keys("enforce")), store, actuator, "enforce")
    assert sorted(actuator.effects()) == sorted(a.action_id for a in actions)


def test_dry_run_after_enforcement_does_not_touch_applied_rows(tmp_path):
    store, actuator = LedgerStore(tmp_path / "ledger"), EffectLog(tmp_path)
    execute_actions(ladder(), store, actuator, "enforce")
    results = execute_actions(ladder(mode="dry_run"), store, actuator, "dry_run")
    assert {r["status"] for r in results} == {"applied"} and actuator.calls == 5


def test_already_applied_keys_are_skipped_and_failed_ones_retried(tmp_path):
    store, actions = LedgerStore(tmp_path / "ledger"), ladder()
    failing = EffectLog(tmp_path, fail_on=actions[0].action_id)
    first = execute_actions(actions, store, failing, "enforce")
    assert first[0]["status"] == "failed" and first[0]["detail"] == "effect_log: target refused"
    assert [r["status"] for r in first[1:]] == ["applied"] * 4
    assert actions[0].action_id not in store.done_keys("enforce")

    retry = EffectLog(tmp_path)
    second = execute_actions(actions, store, retry, "enforce")
    assert retry.calls == 1 and [r["executed"] for r in second] == [True] + [False] * 4
    assert set(statuses(store).values()) == {"applied"}
    assert sorted(retry.effects()) == sorted(a.action_id for a in actions)


def test_an_unexpected_exception_fails_one_action_not_the_run(tmp_path):
    class Buggy:
        name = "buggy"

        def apply(self, action):
            if action.job_id == "a":
                raise RuntimeError("boom")
            return "ok"

    results = execute_actions(ladder(), LedgerStore(tmp_path), Buggy(), "enforce")
    assert {(r["job_id"], r["status"]) for r in results} == {("a", "failed"), ("b", "applied"), ("c", "applied")}
    assert "RuntimeError: boom" in results[0]["detail"]


def test_mode_off_records_nothing(tmp_path):
    store = LedgerStore(tmp_path / "ledger")
    results = execute_actions(ladder(), store, RecordActuator(), "off")
    assert {r["status"] for r in results} == {"off"} and not store.path.exists()
    with pytest.raises(ValueError):
        execute_actions(ladder(), store, RecordActuator(), "yolo")


def test_record_actuator_in_enforce_says_so(tmp_path):
    [result] = execute_actions([planned()], LedgerStore(tmp_path), RecordActuator(), "enforce")
    assert (result["status"], result["detail"]) == ("applied", "record: recorded (dry run)")


def test_control_file_actuator_end_to_end_is_applied_once(tmp_path):
    store, actuator = LedgerStore(tmp_path / "ledger"), ControlFileActuator(tmp_path / "control")
    execute_actions(ladder(), store, actuator, "enforce")
    document = json.loads((tmp_path / "control" / "a.json").read_text())
    assert [c["action"] for c in document["commands"]] == ["switch_to_spot", "reduce_batch_size"]
    # the crash-after-side-effect case: the ledger lost "applied", the file already holds the command
    with open(store.path, "rb+") as f:
        lines = f.read().splitlines(keepends=True)
        f.seek(0)
        f.truncate()
        f.writelines(lines[:-5])
    assert set(statuses(store).values()) == {"planned"}
    results = execute_actions(ladder(), store, actuator, "enforce")
    assert all("already holds" in r["detail"] for r in results)
    assert json.loads((tmp_path / "control" / "a.json").read_text())["commands"] == document["commands"]


def test_a_torn_last_line_is_ignored_and_sealed(tmp_path):
    store = LedgerStore(tmp_path)
    action = planned()
    store.record_planned([action], "enforce")
    with open(store.path, "ab") as f:
        f.write(b'{"action_id": "' + action.action_id.encode() + b'", "status": "appl')  # killed mid-write
    assert statuses(store) == {action.action_id: "planned"}
    store.mark(action.action_id, "applied", "done")
    assert statuses(store) == {action.action_id: "applied"}
    assert store.load()["detail"].tolist() == ["done"]


def test_empty_store_loads_the_empty_table(tmp_path):
    store = LedgerStore(tmp_path / "nothing-yet")
    assert store.load().empty and list(store.load().columns) == list(ACTION_LEDGER.column_names)
    assert store.done_keys("enforce") == set() and store.pending() == []
    with pytest.raises(ValueError):
        store.mark("x", "done")
