"""End to end in process: an OOM failure in the warehouse → job_health_sensor → job_recovery → one ledger
entry and one control-file command with the halved micro-batch; nothing twice, also across a killed run."""

import json

import dagster as dg
import pandas as pd
import pytest

from ftops.actions.actuators import ControlFileActuator
from ftops.actions.ledger_store import LedgerStore
from ftops.defs.enforcement import ActuatorResource, LedgerResource
from ftops.defs.io_manager import write_table
from ftops.defs.notifiers import NotifiersResource
from ftops.defs.recovery import RECOVERY_JOBS, RECOVERY_SENSORS, _action_from_config, job_health_sensor, job_recovery
from ftops.defs.resources import PolicyResource, WarehouseResource
from ftops.schemas import JOB_FAILURES, JOBS, validate

NOW = pd.Timestamp.now(tz="UTC").floor("s")  # the sensor plans at the wall clock; an OOM has no backoff


@pytest.fixture
def project(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    policy = tmp_path / "ftops.yaml"
    policy.write_text("recovery:\n  mode: enforce\n")
    started, ended = NOW - pd.Timedelta(hours=2), NOW - pd.Timedelta(minutes=3)
    jobs = validate(pd.DataFrame([{
        "job_id": "ft-oom", "status": "failed", "exit_reason": "oom", "batch_size": 8, "grad_accum": 2,
        "pricing": "on_demand", "budget_category": "research", "started_at": started, "ended_at": ended,
    }]), JOBS)
    write_table(jobs, warehouse, dg.AssetKey(JOBS.name))
    # job_failures in its contract, as the classifier asset will write it
    failures = validate(pd.DataFrame([{
        "job_id": "ft-oom", "status": "failed", "started_at": started, "ended_at": ended, "exit_code": 1,
        "failure_type": "oom", "basis": "exit_reason", "evidence": "exit_reason=oom",
    }]), JOB_FAILURES)
    write_table(failures, warehouse, dg.AssetKey(JOB_FAILURES.name))
    control = tmp_path / "control"
    resources = {
        "warehouse": WarehouseResource(base_path=warehouse),
        "policy": PolicyResource(config_path=str(policy)),
        "ledger": LedgerResource(folder=str(tmp_path / "ledger")),
        "actuator": ActuatorResource(kind="control_file", control_dir=str(control)),
        "notifiers": NotifiersResource(),
    }
    return resources, LedgerStore(tmp_path / "ledger"), control


def _tick(instance, resources, cursor):
    sensor_resources = {k: resources[k] for k in ("warehouse", "policy", "ledger")}
    return job_health_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=sensor_resources))


def _commands(control) -> list[dict]:
    return json.loads((control / "ft-oom.json").read_text())["commands"]


def test_an_oom_failure_is_recovered_once_with_a_halved_micro_batch(project):
    resources, store, control = project
    with dg.instance_for_test() as instance:
        first = _tick(instance, resources, None)
        [request] = first.run_requests
        assert request.run_key == "recovery:ft-oom:1"
        # asked again before the run executed: the cursor holds it back
        assert _tick(instance, resources, first.cursor).run_requests == []

        result = job_recovery.execute_in_process(run_config=request.run_config, instance=instance,
                                                 resources=resources)
        assert result.success

        table = store.load()
        assert len(table) == 1
        row = table.iloc[0]
        assert (row["job_id"], row["action"], row["trigger"], row["mode"], row["status"]) == (
            "ft-oom", "resume_smaller_batch", "recovery", "enforce", "applied")
        [command] = _commands(control)
        assert command["action"] == "resume_smaller_batch" and command["action_id"] == row["action_id"]
        assert (command["micro_batch_size"], command["grad_accum"]) == (4, 4)
        assert command["resume_from"] == "last_checkpoint" and command["trigger"] == "recovery"

        # after the run: the failure is handled, whatever the cursor says
        for cursor in (first.cursor, None):
            assert _tick(instance, resources, cursor).run_requests == []
        # re-executing the same run changes nothing
        assert job_recovery.execute_in_process(run_config=request.run_config, instance=instance,
                                               resources=resources).success
    assert len(_commands(control)) == 1 and len(store.load()) == 1
    assert [e["status"] for e in store.events()] == ["planned", "applied"]


@pytest.mark.parametrize("side_effect_done", [False, True])
def test_a_run_killed_between_planned_and_applied_is_resumed_once(project, side_effect_done):
    resources, store, control = project
    with dg.instance_for_test() as instance:
        [request] = _tick(instance, resources, None).run_requests
        config = request.run_config["ops"]["recover_job"]["config"]
        [action] = [_action_from_config(a, "enforce") for a in config["planned_actions"]]
        # What a run killed after its write-ahead leaves: `planned`, and maybe the command already written.
        store.record_planned([action], "enforce")
        if side_effect_done:
            ControlFileActuator(control).apply(action)
        # the failure has an action in flight: no new request (it is the re-run that resumes it)
        assert _tick(instance, resources, None).run_requests == []

        for _ in range(2):  # the re-run, then one more that must change nothing
            assert job_recovery.execute_in_process(run_config=request.run_config, instance=instance,
                                                   resources=resources).success
    [row] = store.load().to_dict("records")
    assert row["status"] == "applied" and row["action_id"] == action.action_id
    assert [c["action_id"] for c in _commands(control)] == [action.action_id]
    assert [e["status"] for e in store.events()] == ["planned", "applied"]


def test_the_wiring_builds_into_definitions(project):
    resources, _, _ = project
    defs = dg.Definitions(jobs=RECOVERY_JOBS, sensors=RECOVERY_SENSORS, resources=resources)
    assert defs.resolve_job_def("job_recovery") is not None
    assert defs.resolve_sensor_def("job_health_sensor").job_name == "job_recovery"


def test_a_retry_waiting_for_its_backoff_is_requested_by_a_later_tick_once_due():
    from ftops.defs.recovery import plan_requests
    from ftops.policy import RecoveryPolicy

    failed_at = pd.Timestamp("2026-11-03T10:00:00Z")
    failures = validate(pd.DataFrame([{
        "job_id": "ft-x", "status": "failed", "started_at": failed_at - pd.Timedelta(hours=1), "ended_at": failed_at,
        "exit_code": 137, "failure_type": "unknown", "basis": "exit_code", "evidence": "exit code 137"}]),
        JOB_FAILURES)
    jobs = validate(pd.DataFrame([{"job_id": "ft-x", "status": "failed"}]), JOBS)
    policy, ledger = RecoveryPolicy(mode="enforce"), LedgerStore("/nonexistent-ftops-ledger").load()
    early, cursor, notes = plan_requests(failures, jobs, None, ledger, policy, {}, failed_at + pd.Timedelta(seconds=30))
    assert early == [] and cursor == {"requested": {}} and "backoff" in notes[0]
    [due], cursor, _ = plan_requests(failures, jobs, None, ledger, policy, cursor, failed_at + pd.Timedelta(minutes=1))
    assert due.run_key == "recovery:ft-x:1" and due.tags["ftops/action"] == "restart"
    again, _, _ = plan_requests(failures, jobs, None, ledger, policy, cursor, failed_at + pd.Timedelta(minutes=2))
    assert again == []


def test_the_trainer_callback_leaves_recovery_commands_to_the_launcher(tmp_path):
    from ftops.integrations.hf import LAUNCHER_ACTIONS, ControlFileReader
    from ftops.plans import PlannedAction
    from ftops.predict.recovery import RECOVERY_ACTIONS

    assert set(LAUNCHER_ACTIONS) == set(RECOVERY_ACTIONS)  # hf.py keeps its own copy: no import of predict/
    actuator = ControlFileActuator(tmp_path)
    recovery = PlannedAction("r1", "ft-1", "", "rollback", {"learning_rate_ratio": 0.5}, 0.0, "enforce", "",
                             trigger="recovery")
    budget = PlannedAction("b1", "ft-1", "research", "switch_to_spot", {"pricing": "spot"}, 90.0, "enforce", "2026-11")
    actuator.apply(recovery)
    actuator.apply(budget)
    reader = ControlFileReader(tmp_path, "ft-1")
    assert reader.poll(skip=LAUNCHER_ACTIONS)["action_id"] == "b1"
    assert [c["action_id"] for c in reader.pending()] == ["r1", "b1"]  # the launcher still sees both
