"""FtopsCallback inside the real Hugging Face Trainer: a randomly initialised 2-layer GPT-2 on random tokens, CPU.

No hub access: the model is built from a config, and HF_HUB_OFFLINE makes any accidental download fail at
once. A developer without torch/transformers skips these; CI (CI set) fails instead, because .ci/run
installs them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ftops.actions.actuators import ControlFileActuator
from ftops.check_run import check_paths
from ftops.integrations.hf import FtopsCallback, take_restart_request
from ftops.readers.metric_export import read_metric_export
from ftops_tests.test_actions.test_actuators import planned

JOB = "ft-tiny-gpt2"
VOCAB, SEQ = 64, 16


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def hf() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        try:
            import torch
            import transformers
        except ImportError as exc:
            why = f"the real-Trainer tests need torch and transformers ({exc})"
            if _ci():
                pytest.fail(f"{why}; .ci/run installs torch==2.13.0 (CPU) and the test extra")
            pytest.skip(f"{why}: pip install torch==2.13.0 -e '.[test]'")
        transformers.logging.set_verbosity_error()  # the random config's notes are not test output
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 16-wide model gains nothing from threads, and CI shares its cores
        yield SimpleNamespace(torch=torch, transformers=transformers)
        torch.set_num_threads(threads)


def _dataset(hf: Any, n: int) -> Any:
    generator = hf.torch.Generator().manual_seed(n)
    tokens = hf.torch.randint(0, VOCAB, (n, SEQ), generator=generator)

    class Tokens(hf.torch.utils.data.Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {"input_ids": tokens[i], "labels": tokens[i]}

    return Tokens()


def _trainer(hf: Any, out: Path, callbacks: list[Any], *, max_steps: int = 8, micro: int = 4, accum: int = 1,
             lr: float = 1e-3, eval_steps: int | None = None, **args: Any) -> Any:
    tf = hf.transformers
    tf.set_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=16, n_layer=2, n_head=2))
    training_args = tf.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum, learning_rate=lr, logging_steps=2, save_strategy="no",
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps, per_device_eval_batch_size=4,
        report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0, **args)
    return tf.Trainer(model=model, args=training_args, train_dataset=_dataset(hf, 64),
                      eval_dataset=_dataset(hf, 8) if eval_steps else None, callbacks=callbacks)


def _exports(inbox: Path) -> list[Path]:
    return sorted((inbox / "metrics" / JOB).glob("hf-*.jsonl"))


def _export_samples(inbox: Path) -> Any:
    [path] = _exports(inbox)
    result = read_metric_export(path)
    assert result.rejected.empty, result.rejected
    return result.accepted


def _poison_weights_at(hf: Any, step: int) -> Any:
    """NaN weights from optimizer step `step` on, as an overflow would leave them: every later loss is NaN."""

    class Poison(hf.transformers.TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if state.global_step == step:
                with hf.torch.no_grad():
                    model.transformer.wte.weight.fill_(math.nan)

    return Poison()


# --- exports --------------------------------------------------------------------------------------

def test_healthy_run_exports_every_metric(hf: Any, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    trainer = _trainer(hf, tmp_path / "out", [FtopsCallback(JOB, inbox=inbox, host="node-1")], eval_steps=4)
    trainer.train()

    samples = _export_samples(inbox)
    by_metric = samples.groupby("metric")["step"].apply(list).to_dict()
    assert by_metric["training_loss"] == [2, 4, 6, 8] and by_metric["val_loss"] == [4, 8]
    assert {"learning_rate", "grad_norm", "epoch", "samples_per_second"} <= set(by_metric)
    assert samples["value"].notna().all() and set(samples["host"]) == {"node-1"}
    # random tokens: the loss starts near ln(vocabulary) and has nowhere to go
    first = samples.loc[samples["metric"].eq("training_loss"), "value"].iloc[0]
    assert first == pytest.approx(math.log(VOCAB), rel=0.1)


@pytest.mark.parametrize("nan_filter", [True, False])
def test_nan_loss_is_exported_as_nan_whatever_the_logging_filter(hf: Any, tmp_path: Path, nan_filter: bool) -> None:
    inbox = tmp_path / "inbox"
    trainer = _trainer(hf, tmp_path / "out", [FtopsCallback(JOB, inbox=inbox), _poison_weights_at(hf, 3)],
                       eval_steps=4, logging_nan_inf_filter=nan_filter)
    trainer.train()

    logged = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    if nan_filter:
        # the premise: the Trainer's own log turns a window of NaN losses into 0.0
        assert logged[6] == 0.0 and logged[8] == 0.0
    samples = _export_samples(inbox)
    loss = samples[samples["metric"].eq("training_loss")].set_index("step")["value"]
    assert not math.isnan(loss[2])  # before the weights went bad
    assert loss[[4, 6, 8]].isna().all(), loss.to_dict()
    val = samples[samples["metric"].eq("val_loss")].set_index("step")["value"]
    assert val[[4, 8]].isna().all(), val.to_dict()

    anomalies, problems = check_paths(_exports(inbox))
    assert problems == []
    nan = anomalies[anomalies["rule"].eq("loss_non_finite")]
    assert len(nan) == 1 and nan["job_id"].tolist() == [JOB] and nan["first_step"].tolist() == [4]


def test_huge_learning_rate_shows_loss_non_finite_in_check_run(hf: Any, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    _trainer(hf, tmp_path / "out", [FtopsCallback(JOB, inbox=inbox)], lr=1e6).train()

    anomalies, problems = check_paths([inbox / "metrics" / JOB])
    assert problems == []
    assert "loss_non_finite" in set(anomalies["rule"]), anomalies[["rule", "message"]]
    assert anomalies.loc[anomalies["rule"].eq("loss_non_finite"), "severity"].tolist() == ["critical"]


# --- control files: the documented launcher loop (docs/control-files.md) ------------------------

def _launcher_loop(hf: Any, tmp_path: Path, *, max_steps: int, poll_every_steps: int,
                   limit: int = 4) -> tuple[list[Any], Path]:
    """docs/control-files.md's loop; `limit` only keeps a broken callback from looping for ever."""
    inbox, control, out = tmp_path / "inbox", tmp_path / "control", tmp_path / "out"
    micro, accum, resume = 4, 2, False
    trainers = []
    for _ in range(limit):
        trainer = _trainer(hf, out, [FtopsCallback(JOB, inbox=inbox, control_dir=control,
                                                   poll_every_steps=poll_every_steps)],
                           max_steps=max_steps, micro=micro, accum=accum)
        trainer.train(resume_from_checkpoint=resume or None)
        trainers.append(trainer)
        request = take_restart_request(control, JOB)
        if not request or not request["restart"]:
            break
        micro = request.get("per_device_train_batch_size", micro)
        accum = request.get("gradient_accumulation_steps", accum)
        resume = True
    return trainers, inbox


def _command(tmp_path: Path, action: str, **params: Any) -> None:
    ControlFileActuator(tmp_path / "control").apply(planned(job_id=JOB, action=action, params=params))


def test_switch_to_spot_does_not_restart_a_finished_run(hf: Any, tmp_path: Path) -> None:
    _command(tmp_path, "switch_to_spot", pricing="spot")

    trainers, _ = _launcher_loop(hf, tmp_path, max_steps=6, poll_every_steps=2)

    assert len(trainers) == 1 and trainers[0].state.global_step == 6
    assert (tmp_path / "out" / "checkpoint-2").is_dir()  # the checkpoint a scheduler restarts from
    assert take_restart_request(tmp_path / "control", JOB) is None


def test_reduce_batch_size_restarts_once_with_the_new_sizes(hf: Any, tmp_path: Path) -> None:
    _command(tmp_path, "reduce_batch_size", micro_batch_size=2, grad_accum=4, effective_batch_size=8)

    trainers, inbox = _launcher_loop(hf, tmp_path, max_steps=6, poll_every_steps=2)

    assert [t.state.global_step for t in trainers] == [2, 6]
    assert (trainers[1].args.per_device_train_batch_size, trainers[1].args.gradient_accumulation_steps) == (2, 4)
    # one export per start, and check-run reads the job's folder as one run
    assert len(_exports(inbox)) == 2
    anomalies, problems = check_paths([inbox])
    assert problems == [] and "loss_non_finite" not in set(anomalies["rule"])


def test_a_command_at_the_last_step_does_not_restart_the_run(hf: Any, tmp_path: Path) -> None:
    _command(tmp_path, "reduce_batch_size", micro_batch_size=2, grad_accum=4, effective_batch_size=8)

    trainers, _ = _launcher_loop(hf, tmp_path, max_steps=4, poll_every_steps=4)

    assert [t.state.global_step for t in trainers] == [4]


def test_terminate_stops_and_is_not_restarted(hf: Any, tmp_path: Path) -> None:
    _command(tmp_path, "terminate", reason="budget_exceeded")

    trainers, _ = _launcher_loop(hf, tmp_path, max_steps=6, poll_every_steps=2)

    assert [t.state.global_step for t in trainers] == [2]
    assert (tmp_path / "out" / "checkpoint-2").is_dir()
    assert json.loads((tmp_path / "control" / f"{JOB}.json").read_text())["action"] == "terminate"
