"""The budget_enforcement job: a run killed between "planned" and "applied" is resumed once."""

import json

import dagster as dg

from ftops.actions.ledger_store import LedgerStore
from ftops.costs.ladder import action_key
from ftops.plans import PlannedAction
from ftops.defs.enforcement import ActuatorResource, LedgerResource, _action_to_config, budget_enforcement
from ftops.defs.notifiers import NotifiersResource
from ftops.defs.resources import PolicyResource, WarehouseResource


def _action(job_id: str) -> PlannedAction:
    key = action_key(job_id, "reduce_batch_size", "budget", 95.0, "research", "2026-11")
    return PlannedAction(key, job_id, "research", "reduce_batch_size",
                         {"micro_batch_size": 4, "grad_accum": 4}, 95.0, "enforce", "2026-11")


def test_a_killed_run_is_resumed_and_each_action_applied_once(tmp_path):
    store = LedgerStore(tmp_path / "ledger")
    control = tmp_path / "control"
    first, second = _action("ft-1"), _action("ft-2")
    # What a run killed after its write-ahead and before any side effect leaves behind.
    store.record_planned([first, second], "enforce")
    assert set(store.load()["status"]) == {"planned"}

    resources = {
        "ledger": LedgerResource(folder=str(tmp_path / "ledger")),
        "actuator": ActuatorResource(kind="control_file", control_dir=str(control)),
        "notifiers": NotifiersResource(),
        "policy": PolicyResource(),
        "warehouse": WarehouseResource(base_path=str(tmp_path / "warehouse")),
    }
    config = {"ops": {"enforce_budget": {"config": {
        "budget_category": "research", "level_pct": 95.0, "period_key": "2026-11", "usage_pct": 96.0,
        "limit_usd": 100.0, "mode": "enforce", "planned_actions": [_action_to_config(first)]}}}}
    with dg.instance_for_test() as instance:
        for _ in range(2):  # the re-run, then a second re-run that must change nothing
            result = budget_enforcement.execute_in_process(run_config=config, instance=instance, resources=resources)
            assert result.success
    table = store.load().set_index("action_id")
    assert table.loc[first.action_id, "status"] == "applied"
    assert table.loc[second.action_id, "status"] == "applied"  # the orphan of the killed run, resumed
    for job_id, action in (("ft-1", first), ("ft-2", second)):
        document = json.loads((control / f"{job_id}.json").read_text())
        ids = [c["action_id"] for c in document["commands"]]
        assert ids.count(action.action_id) == 1
    applied = [e for e in store.events() if e["status"] == "applied"]
    assert sorted(e["action_id"] for e in applied) == sorted([first.action_id, second.action_id])
    assert (tmp_path / "warehouse" / "action_ledger.parquet").exists()


def test_a_run_that_plans_nothing_says_why_in_logs_and_metadata(tmp_path):
    resources = {
        "ledger": LedgerResource(folder=str(tmp_path / "ledger")),
        "actuator": ActuatorResource(),
        "notifiers": NotifiersResource(),
        "policy": PolicyResource(),
        "warehouse": WarehouseResource(base_path=str(tmp_path / "warehouse")),
    }
    why = "both running jobs (a, b) are already planned for termination at 98 %"
    config = {"ops": {"enforce_budget": {"config": {
        "budget_category": "research", "level_pct": 90.0, "period_key": "2026-11", "usage_pct": 99.0,
        "limit_usd": 100.0, "mode": "dry_run", "planned_actions": [], "no_action_reason": why}}}}
    with dg.instance_for_test() as instance:
        result = budget_enforcement.execute_in_process(run_config=config, instance=instance, resources=resources)
        messages = [e.message for e in instance.all_logs(result.run_id)]
    assert result.success
    [materialization] = result.asset_materializations_for_node("enforce_budget")
    assert materialization.metadata["no_action_reason"].value == why
    assert any(f"no action at 90 % for budget 'research': {why}" in (m or "") for m in messages)
