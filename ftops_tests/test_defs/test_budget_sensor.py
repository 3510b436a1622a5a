"""budget_sensor with build_sensor_context: each crossing once, the right levels, a new period afresh."""

import json

import dagster as dg
import pandas as pd
import pytest

from ftops.defs.enforcement import LedgerResource, budget_sensor
from ftops.defs.io_manager import write_table
from ftops.defs.resources import PolicyResource, WarehouseResource
from ftops.schemas import JOBS, validate


def _status(usage_pct: float, period_key: str = "2026-11", current: bool = True) -> pd.DataFrame:
    thresholds = [t for t in (50.0, 80.0, 90.0) if usage_pct >= t]
    ladder = [t for t in (90.0, 95.0, 98.0) if usage_pct >= t]
    return pd.DataFrame([{
        "budget_category": "research", "period": "month", "period_key": period_key, "current": current,
        "limit_usd": 1000.0, "mode": "dry_run", "spend_usd": usage_pct * 10, "usage_pct": usage_pct,
        "thresholds_crossed": json.dumps(thresholds), "ladder_levels_reached": json.dumps(ladder),
    }])


@pytest.fixture
def setup(tmp_path):
    policy = tmp_path / "ftops.yaml"
    policy.write_text("budgets:\n  research:\n    limit_usd: 1000\n    mode: dry_run\n")
    warehouse = str(tmp_path / "warehouse")
    jobs = validate(pd.DataFrame([
        {"job_id": "a", "budget_category": "research", "status": "running", "pricing": "on_demand",
         "critical": False, "batch_size": 8, "grad_accum": 2},
        {"job_id": "b", "budget_category": "research", "status": "running", "pricing": "spot",
         "critical": True, "batch_size": 4, "grad_accum": 1},
    ]), JOBS)
    write_table(jobs, warehouse, dg.AssetKey("job_registry"))
    resources = {"warehouse": WarehouseResource(base_path=warehouse),
                 "policy": PolicyResource(config_path=str(policy)),
                 "ledger": LedgerResource(folder=str(tmp_path / "ledger"))}

    def tick(usage_pct: float, cursor: str | None, period_key: str = "2026-11",
             closed: pd.DataFrame | None = None) -> dg.SensorResult:
        status = pd.concat([_status(usage_pct, period_key), closed]) if closed is not None else _status(
            usage_pct, period_key)
        write_table(status, warehouse, dg.AssetKey("budget_status"))
        with dg.instance_for_test() as instance:
            return budget_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))

    return tick


def _levels(result: dg.SensorResult) -> list[str]:
    return [r.tags["ftops/level_pct"] for r in result.run_requests]


def test_first_crossing_requests_one_run_and_not_again(setup):
    tick = setup
    first = tick(55, None)
    assert _levels(first) == ["50"]
    request = first.run_requests[0]
    assert request.run_key == "budget:research:2026-11:50"
    assert request.tags["dagster/priority"] == "10"  # ahead of analytics runs in the run queue
    assert request.run_config["ops"]["enforce_budget"]["config"]["planned_actions"] == []
    again = tick(55, first.cursor)
    assert not again.run_requests


def test_crossing_80_then_95_between_ticks_requests_each_level_with_its_actions(setup):
    tick = setup
    first = tick(55, None)
    later = tick(96, first.cursor)
    assert _levels(later) == ["80", "90", "95"]
    configs = {r.tags["ftops/level_pct"]: r.run_config["ops"]["enforce_budget"]["config"] for r in later.run_requests}
    assert [(a["job_id"], a["action"]) for a in configs["90"]["planned_actions"]] == [("a", "switch_to_spot")]
    halve = {a["job_id"]: json.loads(a["params"]) for a in configs["95"]["planned_actions"]}
    assert halve["a"]["micro_batch_size"] == 4 and halve["a"]["grad_accum"] == 4  # effective batch 16 kept
    assert halve["b"]["micro_batch_size"] == 2 and halve["b"]["grad_accum"] == 2
    assert configs["95"]["mode"] == "dry_run"
    assert not tick(96, later.cursor).run_requests


def test_a_new_month_starts_afresh(setup):
    tick = setup
    november = tick(92, None)
    assert _levels(november) == ["50", "80", "90"]
    december = tick(60, november.cursor, period_key="2026-12")
    assert _levels(december) == ["50"]
    assert december.run_requests[0].run_key == "budget:research:2026-12:50"


def test_a_restart_without_cursor_repeats_the_same_run_keys(setup):
    tick = setup
    first = tick(92, None)
    restarted = tick(92, None)
    assert {r.run_key for r in restarted.run_requests} == {r.run_key for r in first.run_requests}


def test_a_crossing_that_plans_nothing_carries_the_reason(setup):
    tick = setup
    result = tick(99, None)
    configs = {r.tags["ftops/level_pct"]: r.run_config["ops"]["enforce_budget"]["config"] for r in result.run_requests}
    # a (non-critical) is terminated at 98 %, b is critical and on spot: nothing to do at 90 % but say so
    assert configs["90"]["planned_actions"] == []
    assert configs["90"]["no_action_reason"] == (
        "a: already planned for termination at 98 %; b: not on demand (spot)")
    assert configs["50"]["no_action_reason"].startswith("50 % is an alert threshold, not a ladder step")
    assert [a["job_id"] for a in configs["98"]["planned_actions"]] == ["a"] and configs["98"]["no_action_reason"] == ""


def test_a_closed_periods_overrun_is_history_and_requests_nothing(setup):
    tick = setup
    result = tick(10, None, "2026-12", closed=_status(120, "2026-11", current=False))
    assert not result.run_requests
    assert json.loads(result.cursor) == {"research": {"period": "2026-12", "levels": []}}
