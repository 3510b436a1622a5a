"""The benchmark_calibration job: each proposed calibration run is launched once, dry run by default."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from ftops.actions.actuators import ActuatorError, ControlFileActuator, RecordActuator
from ftops.actions.actuators_kubernetes import KubernetesActuator
from ftops.actions.ledger_store import LedgerStore
from ftops.defs.calibration import BENCHMARK_RECOMMENDATIONS, CALIBRATION_JOBS, benchmark_calibration
from ftops.defs.enforcement import ActuatorResource, LedgerResource
from ftops.defs.io_manager import write_table
from ftops.defs.resources import WarehouseResource
from ftops.optimize.benchmark import RECOMMENDATION_COLUMNS
from ftops.optimize.calibration import calibration_actions, calibration_key
from ftops_tests.services import recording_http_server

AS_OF = "2026-06-30T12:00:00Z"


def _recommendations() -> pd.DataFrame:
    base = {c: None for c in RECOMMENDATION_COLUMNS}
    calibrate = dict(base, kind="calibrate", group="lora 7B", technique="lora", model_size="7B",
                     from_configuration="lora 7B · 4× L40S · spot · mb4 · seq2048", job_ids="j3", model_params_b=7.0,
                     gpu_model="H200", gpu_count=8, instance_type="p5e.48xlarge", cloud="aws", region="us-east-1",
                     pricing="spot", micro_batch=4, seq_len=2048, steps=200, expected_hours=0.27,
                     expected_usd_per_hour=12.0, expected_cost_usd=3.24, message="calibrate LoRA 7B on 8× H200")
    rows = [
        dict(calibrate, proposal_id="aaaa000011112222"),
        dict(calibrate, proposal_id="bbbb000011112222", gpu_model="H100", instance_type="p5.48xlarge",
             precision=float("nan")),
        dict(base, kind="move", group="lora 7B", job_ids="j1,j3", message="move LoRA 7B jobs ..."),
    ]
    frame = pd.DataFrame.from_records(rows, columns=list(RECOMMENDATION_COLUMNS))
    frame["as_of"] = pd.Timestamp(AS_OF)
    return frame


def _resources(tmp_path, **actuator) -> dict:
    warehouse = str(tmp_path / "warehouse")
    write_table(_recommendations(), warehouse, dg.AssetKey(BENCHMARK_RECOMMENDATIONS))
    return {"ledger": LedgerResource(folder=str(tmp_path / "ledger")), "actuator": ActuatorResource(**actuator),
            "warehouse": WarehouseResource(base_path=warehouse)}


def _config(**overrides) -> dict:
    return {"ops": {"launch_calibrations": {"config": {"as_of": AS_OF, **overrides}}}}


def test_calibration_actions_one_launch_per_proposal_with_a_stable_key():
    actions = calibration_actions(_recommendations(), "dry_run", "2026-06")
    assert [a.job_id for a in actions] == ["calib-aaaa000011112222", "calib-bbbb000011112222"]
    first = actions[0]
    assert (first.action, first.trigger, first.budget_category) == ("launch_calibration", "calibration", "calibration")
    assert first.params["steps"] == 200 and first.params["expected_cost_usd"] == pytest.approx(3.24)
    assert first.params["gpu_model"] == "H200" and first.params["proposal_id"] == "aaaa000011112222"
    assert actions[1].params["precision"] is None  # NaN never reaches a JSON payload
    # the same proposal in another period is the same launch
    later = calibration_actions(_recommendations(), "enforce", "2026-07")
    assert [a.action_id for a in later] == [a.action_id for a in actions]
    assert first.action_id == calibration_key("calib-aaaa000011112222")
    only = calibration_actions(_recommendations(), "dry_run", "2026-06", proposal_ids=["bbbb000011112222"])
    assert [a.job_id for a in only] == ["calib-bbbb000011112222"]


def test_dry_run_records_each_launch_once(tmp_path):
    resources = _resources(tmp_path, kind="webhook", webhook_url="http://127.0.0.1:9/never-called")
    assert CALIBRATION_JOBS == [benchmark_calibration]
    with dg.instance_for_test() as instance:
        for _ in range(2):  # the second run must change nothing
            result = benchmark_calibration.execute_in_process(run_config=_config(), instance=instance,
                                                              resources=resources)
            assert result.success
    store = LedgerStore(tmp_path / "ledger")
    table = store.load()
    assert list(table["job_id"]) == ["calib-aaaa000011112222", "calib-bbbb000011112222"]
    assert set(table["status"]) == {"skipped"} and set(table["mode"]) == {"dry_run"}
    assert set(table["trigger"]) == {"calibration"} and set(table["action"]) == {"launch_calibration"}
    assert table["detail"].str.startswith("dry run: webhook would launch calibration").all()
    assert json.loads(table["params"].iloc[0])["instance_type"] == "p5e.48xlarge"
    assert sorted(e["status"] for e in store.events()) == ["planned", "planned", "skipped", "skipped"]
    assert (tmp_path / "warehouse" / "action_ledger.parquet").exists()


def test_enforce_posts_each_launch_once_through_the_webhook(tmp_path):
    with recording_http_server() as server:
        resources = _resources(tmp_path, kind="webhook", webhook_url=f"{server.url}/launch")
        with dg.instance_for_test() as instance:
            for _ in range(2):
                result = benchmark_calibration.execute_in_process(run_config=_config(mode="enforce"),
                                                                  instance=instance, resources=resources)
                assert result.success
        assert len(server.requests) == 2
        bodies = [json.loads(r.body) for r in server.requests]
    assert [b["job_id"] for b in bodies] == ["calib-aaaa000011112222", "calib-bbbb000011112222"]
    first = bodies[0]
    assert (first["event"], first["action"], first["trigger"]) == ("ftops.action", "launch_calibration", "calibration")
    assert (first["steps"], first["gpu_model"], first["pricing"]) == (200, "H200", "spot")
    assert server.requests[0].headers["Idempotency-Key"] == first["action_id"]
    table = LedgerStore(tmp_path / "ledger").load()
    assert set(table["status"]) == {"applied"} and set(table["mode"]) == {"enforce"}


def test_control_file_and_kubernetes_refuse_to_launch(tmp_path):
    (action,) = calibration_actions(_recommendations(), "enforce", "2026-06", proposal_ids=["aaaa000011112222"])
    with pytest.raises(ActuatorError, match="control_file cannot launch a new job: .*use the webhook actuator"):
        ControlFileActuator(tmp_path / "control").apply(action)
    assert not (tmp_path / "control").exists()
    with pytest.raises(ActuatorError, match="kubernetes cannot launch a new job: .*use the webhook actuator"):
        KubernetesActuator(namespace="ml", client=object()).apply(action)
    assert RecordActuator().apply(action) == "recorded (dry run)"

    resources = _resources(tmp_path, kind="control_file", control_dir=str(tmp_path / "control"))
    with dg.instance_for_test() as instance:
        result = benchmark_calibration.execute_in_process(run_config=_config(mode="enforce"), instance=instance,
                                                          resources=resources)
    assert result.success  # a refused launch fails that action, not the run
    table = LedgerStore(tmp_path / "ledger").load()
    assert set(table["status"]) == {"failed"}
    assert table["detail"].str.contains("control_file cannot launch a new job").all()
