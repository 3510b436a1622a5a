"""The Hugging Face callback and the control-file reader, with fake Trainer objects.

These run whether or not transformers is installed; ftops_tests/test_integrations/ runs the real Trainer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from ftops.actions.actuators import ControlFileActuator
from ftops.integrations.hf import ControlFileReader, FtopsCallback, MetricExportWriter, take_restart_request
from ftops.pathparts import safe_path_part
from ftops.readers.metric_export import read_metric_export

from .test_actuators import planned

REPO = Path(__file__).resolve().parents[2]


def trainer_objects(step: int = 0, zero: bool = True):
    args = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=4, world_size=2,
                           output_dir="checkpoints")
    state = SimpleNamespace(global_step=step, is_world_process_zero=zero)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    return args, state, control


def test_on_log_writes_canonical_lines_the_reader_accepts(tmp_path):
    callback = FtopsCallback("ft-1", inbox=tmp_path / "inbox", host="node-7")
    args, state, control = trainer_objects()
    callback.on_train_begin(args, state, control)
    callback._last_log = (0, time.monotonic() - 2.0)  # two seconds of training before the first log
    state.global_step = 10
    assert callback.on_log(args, state, control, logs={"loss": 1.25, "learning_rate": 2e-4, "grad_norm": 3.5,
                                                       "epoch": 0.1}) is control
    state.global_step = 20
    callback.on_log(args, state, control, logs={"eval_loss": 1.4, "eval_runtime": 3.0, "epoch": 0.2})
    assert callback._last_log[1] > time.monotonic() + 2.0  # the evaluation's 3 s are not training time
    callback._last_log = (10, time.monotonic() - 1.0)  # then one second of training
    callback.on_log(args, state, control, logs={"loss": float("nan"), "grad_norm": float("inf"), "epoch": 0.2})
    callback.on_log(args, state, control, logs={"train_loss": 1.1, "train_samples_per_second": 99.0})

    [path] = (tmp_path / "inbox" / "metrics" / "ft-1").glob("hf-*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # strict JSON: no bare NaN
    assert {tuple(sorted(line)) for line in lines} == {
        ("device", "host", "job_id", "metric", "source", "step", "ts", "value")}
    assert all(line["ts"].endswith("Z") and line["source"] == "hf_callback" and line["device"] is None
               and line["host"] == "node-7" for line in lines)

    result = read_metric_export(path)
    assert result.rejected.empty
    samples = result.accepted
    assert len(samples) == len(lines) == 11
    assert set(samples["job_id"]) == {"ft-1"} and set(samples["source"]) == {"hf_callback"}
    by_metric = samples.groupby("metric")["value"].apply(list).to_dict()
    assert by_metric["training_loss"][0] == 1.25 and pytest.approx(by_metric["val_loss"]) == [1.4]
    assert by_metric["learning_rate"] == [2e-4] and by_metric["epoch"] == [0.1, 0.2, 0.2]
    assert by_metric["grad_norm"][1] == float("inf")
    assert samples.loc[samples["metric"].eq("training_loss"), "value"].isna().tolist() == [False, True]
    # 10 optimizer steps × 8 per device × 4 accumulation × 2 processes in about 2 s
    assert by_metric["samples_per_second"][0] == pytest.approx(320.0, rel=0.2)
    assert by_metric["samples_per_second"][1] == pytest.approx(640.0, rel=0.2)
    assert "train_loss" not in by_metric and len(by_metric["samples_per_second"]) == 2
    assert samples["step"].tolist()[:5] == [10] * 5


@pytest.mark.parametrize("job_id", ["../../escaped", "..", "a/../../b", "ft 1\\..\\x"])
def test_export_writer_stays_inside_the_inbox(tmp_path, job_id):
    inbox = tmp_path / "deep" / "inbox"
    MetricExportWriter(inbox, job_id, prefix="../hf").write([("training_loss", 1.0, 1)])

    [path] = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert path.parent.parent == inbox / "metrics"
    # the folder `ftops agent` writes this job's samples to, and the job id unchanged inside
    assert path.parent.name == safe_path_part(job_id)
    assert read_metric_export(path).accepted["job_id"].tolist() == [job_id]


def test_says_once_when_it_cannot_see_the_raw_loss(tmp_path, caplog):
    """No model loss to watch (a custom compute_loss) and the Trainer's NaN filter on: NaN may hide."""
    callback = FtopsCallback("ft-1", inbox=tmp_path)
    args, state, control = trainer_objects()
    callback.on_train_begin(args, state, control, model=None)
    for step, nan_filter in ((2, False), (4, True), (6, True)):
        args.logging_nan_inf_filter, state.global_step = nan_filter, step
        callback.on_log(args, state, control, logs={"loss": 0.0})
    warnings = [r for r in caplog.records if "logging_nan_inf_filter=False" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


def test_on_log_writes_only_on_the_main_process(tmp_path):
    callback = FtopsCallback("ft-1", inbox=tmp_path)
    args, state, control = trainer_objects(step=5, zero=False)
    callback.on_log(args, state, control, logs={"loss": 1.0})
    assert not (tmp_path / "metrics").exists()


def test_control_file_is_obeyed_once_and_leaves_a_restart_request(tmp_path):
    action = planned(job_id="ft-1")
    ControlFileActuator(tmp_path).apply(action)
    callback = FtopsCallback("ft-1", control_dir=tmp_path, poll_every_steps=10)
    args, state, control = trainer_objects(step=7)

    callback.on_step_end(args, state, control)  # not a polling step
    assert not control.should_save and args.per_device_train_batch_size == 8

    state.global_step = 10
    assert callback.on_step_end(args, state, control) is control
    assert control.should_save and control.should_training_stop
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 8)
    assert (tmp_path / "ft-1.done").read_text().split() == [action.action_id]

    control.should_save = control.should_training_stop = False
    state.global_step = 20
    callback.on_step_end(args, state, control)
    FtopsCallback("ft-1", control_dir=tmp_path, poll_every_steps=10).on_step_end(args, state, control)  # restarted
    assert not control.should_save and not control.should_training_stop

    request = take_restart_request(tmp_path, "ft-1")
    assert request["restart"] is True and request["resume_from_checkpoint"] is True
    assert (request["per_device_train_batch_size"], request["gradient_accumulation_steps"]) == (4, 8)
    assert request["action_ids"] == [action.action_id] and request["stopped_at_step"] == 10
    assert take_restart_request(tmp_path, "ft-1") is None  # taken once


def test_terminate_comes_first_and_is_never_restarted(tmp_path):
    actuator = ControlFileActuator(tmp_path)
    spot = planned(job_id="ft-1", action="switch_to_spot", params={"pricing": "spot"}, level=90.0)
    stop = planned(job_id="ft-1", action="terminate", params={"reason": "budget_exceeded"}, level=98.0)
    actuator.apply(spot)
    actuator.apply(stop)
    assert [c["action"] for c in ControlFileReader(tmp_path, "ft-1").pending()] == ["terminate", "switch_to_spot"]

    callback = FtopsCallback("ft-1", control_dir=tmp_path, poll_every_steps=1)
    args, state, control = trainer_objects(step=3)
    callback.on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop
    control.should_save = control.should_training_stop = False
    callback.on_step_end(args, state, control)  # switch_to_spot: checkpoint, keep training by default
    assert control.should_save and not control.should_training_stop
    request = take_restart_request(tmp_path, "ft-1")
    assert request["restart"] is False and request["pricing"] == "spot"
    assert request["action_ids"] == [stop.action_id, spot.action_id]
    assert ControlFileReader(tmp_path, "ft-1").poll() is None


def test_switch_to_spot_that_keeps_training_leaves_no_restart_request(tmp_path):
    actuator = ControlFileActuator(tmp_path)
    spot = planned(job_id="ft-1", action="switch_to_spot", params={"pricing": "spot"}, level=90.0)
    actuator.apply(spot)
    callback = FtopsCallback("ft-1", control_dir=tmp_path, poll_every_steps=1)
    args, state, control = trainer_objects(step=3)
    callback.on_step_end(args, state, control)
    assert control.should_save and not control.should_training_stop
    assert take_restart_request(tmp_path, "ft-1") is None  # the run goes on to its end: nothing to restart

    # a later command that does stop the run carries the spot request into its restart request
    smaller = planned(job_id="ft-1")
    actuator.apply(smaller)
    control.should_save = False
    state.global_step = 4
    callback.on_step_end(args, state, control)
    request = take_restart_request(tmp_path, "ft-1")
    assert request["restart"] is True and request["pricing"] == "spot"
    assert (request["per_device_train_batch_size"], request["gradient_accumulation_steps"]) == (4, 8)
    assert request["action_ids"] == [spot.action_id, smaller.action_id]


def test_switch_to_spot_can_stop_training(tmp_path):
    ControlFileActuator(tmp_path).apply(planned(job_id="ft-1", action="switch_to_spot", params={"pricing": "spot"}))
    args, state, control = trainer_objects(step=10)
    FtopsCallback("ft-1", control_dir=tmp_path, stop_on_switch_to_spot=True).on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop
    assert take_restart_request(tmp_path, "ft-1")["restart"] is True


def test_reader_for_custom_loops(tmp_path):
    reader = ControlFileReader(tmp_path, "ft-1")
    assert reader.poll() is None  # no file yet
    (tmp_path / "ft-1.json").write_text("{torn")
    assert reader.poll() is None  # unreadable: ignored this time, not an exception in the training loop
    # a hand-written single command without `commands` is read too
    (tmp_path / "ft-1.json").write_text(json.dumps({"action": "terminate", "action_id": "k1"}))
    assert reader.poll()["action_id"] == "k1" and reader.poll()["action_id"] == "k1"  # until marked done
    reader.mark_done("k1")
    assert reader.poll() is None


def test_other_ranks_follow_rank_zero(tmp_path, monkeypatch):
    """With torch.distributed initialised, rank 0's command is broadcast, so no rank stops alone."""
    ControlFileActuator(tmp_path).apply(planned(job_id="ft-1", action="terminate", params={}))
    rank0_command = ControlFileReader(tmp_path, "ft-1").poll()
    broadcasts = []

    def broadcast_object_list(box, src):
        broadcasts.append((list(box), src))
        box[0] = rank0_command  # what rank 0 sent

    dist = ModuleType("torch.distributed")
    dist.is_available, dist.is_initialized = (lambda: True), (lambda: True)
    dist.get_world_size, dist.broadcast_object_list = (lambda: 2), broadcast_object_list
    torch = ModuleType("torch")
    torch.distributed = dist
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.distributed", dist)

    args, state, control = trainer_objects(step=10, zero=False)
    FtopsCallback("ft-1", control_dir=tmp_path).on_step_end(args, state, control)
    assert broadcasts == [([None], 0)]  # rank 1 did not read the file itself
    assert control.should_training_stop
    assert not (tmp_path / "ft-1.done").exists()  # only rank 0 records what was obeyed


def test_without_transformers_every_hook_exists_and_does_nothing():
    # transformers may be installed here (CI installs it): block it, so the stand-in base is what is tested
    script = textwrap.dedent("""
        import sys
        from types import SimpleNamespace
        sys.modules["transformers"] = None  # `import transformers` now raises ImportError
        import ftops.integrations.hf as hf
        assert hf.FtopsCallback.__mro__[1] is hf._HookDefaults, hf.FtopsCallback.__mro__
        callback = hf.FtopsCallback("ft-1")
        args = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=4)
        state = SimpleNamespace(global_step=0, is_world_process_zero=True)
        control = SimpleNamespace(should_save=False, should_training_stop=False)
        for hook in ("on_init_end", "on_epoch_begin", "on_substep_end", "on_evaluate", "on_save", "on_predict",
                     "on_prediction_step", "on_optimizer_step", "on_pre_optimizer_step", "on_step_begin"):
            assert getattr(callback, hook)(args, state, control) is None, hook
        for hook in ("on_train_begin", "on_step_end", "on_log", "on_train_end"):
            assert getattr(callback, hook)(args, state, control) is control, hook  # no inbox, no control_dir
        try:
            callback.not_a_hook
        except AttributeError:
            print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    with pytest.raises(ValueError):
        FtopsCallback("ft-1", poll_every_steps=0)


def test_subclasses_trainer_callback_when_transformers_is_importable(tmp_path):
    fake = tmp_path / "fake_site" / "transformers"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("class TrainerCallback:\n    pass\n")
    script = textwrap.dedent("""
        import sys
        import ftops.integrations.hf as hf
        import transformers
        assert issubclass(hf.FtopsCallback, transformers.TrainerCallback)
        assert 'pandas' not in sys.modules  # the training side does not pay for ftops' data stack
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": f"{fake.parent}:{REPO}", "PATH": ""})
    assert out.stdout.strip() == "ok", out.stderr
