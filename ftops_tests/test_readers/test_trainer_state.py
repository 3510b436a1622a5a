from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from ftops.readers.samples import CONFLICT_REASON
from ftops.readers.trainer_state import default_job_id, read_trainer_state, unmapped_keys
from ftops.schemas import METRIC_SAMPLES, METRICS, validate

# A LoRA run as the Trainer writes it: logging every 10 steps, an evaluation at step 20 (same
# step as a logging entry, so `epoch` is repeated), a diverged loss at step 30, and the summary.
LOG_HISTORY_TEXT = """[
  {"epoch": 0.1, "grad_norm": 0.81, "learning_rate": 0.0002, "loss": 2.3136, "step": 10},
  {"epoch": 0.2, "grad_norm": 0.77, "learning_rate": 0.00019, "loss": 1.9021, "step": 20},
  {"epoch": 0.2, "eval_loss": 1.85, "eval_accuracy": 0.71, "eval_runtime": 3.2,
   "eval_samples_per_second": 31.2, "eval_steps_per_second": 3.9, "step": 20},
  {"epoch": 0.3, "grad_norm": Infinity, "learning_rate": 0.00018, "loss": NaN, "step": 30},
  {"epoch": 0.4, "grad_norm": 0.70, "learning_rate": 0.00017, "loss": "NaN", "step": 40},
  {"epoch": 0.4, "step": 40, "total_flos": 1.2e15, "train_loss": 2.0, "train_runtime": 80.0,
   "train_samples_per_second": 4.0, "train_steps_per_second": 0.5}
]"""


def _write_state(path: Path, log_history_text: str = LOG_HISTORY_TEXT, global_step: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        '{"best_metric": null, "epoch": 0.4, "global_step": %d, "max_steps": 40, "logging_steps": 10,\n'
        ' "log_history": %s,\n "num_train_epochs": 1, "train_batch_size": 2}' % (global_step, log_history_text)
    )
    return path


def _values(result, metric: str) -> list[float]:
    rows = result.accepted[result.accepted["metric"] == metric].sort_values("step")
    return rows["value"].tolist()


def test_maps_trainer_keys_and_counts_pairs(tmp_path: Path) -> None:
    path = _write_state(tmp_path / "job-7" / "trainer_state.json")
    result = read_trainer_state(path, started_at=pd.Timestamp("2024-05-01T10:00:00Z"))

    assert result.rejected.empty
    counts = result.accepted["metric"].value_counts().to_dict()
    # epoch is logged in 6 entries but at 4 distinct steps: repeats of one step are one sample
    assert counts == {
        "training_loss": 4, "grad_norm": 4, "learning_rate": 4, "epoch": 4,
        "val_loss": 1, "domain_accuracy": 1, "samples_per_second": 1,
    }
    assert set(result.accepted["metric"]) <= set(METRICS)
    assert _values(result, "val_loss") == [1.85]
    assert _values(result, "domain_accuracy") == [0.71]
    assert _values(result, "samples_per_second") == [4.0]
    assert (result.accepted["job_id"] == "job-7").all()
    assert (result.accepted["source"] == str(path)).all()
    assert result.rows_in == len(result.accepted) + len(result.rejected)
    validate(result.accepted, METRIC_SAMPLES)  # conforms to the contract


def test_nan_and_infinite_values_are_accepted(tmp_path: Path) -> None:
    result = read_trainer_state(_write_state(tmp_path / "run" / "trainer_state.json"),
                                started_at=pd.Timestamp("2024-05-01", tz="UTC"))
    loss = _values(result, "training_loss")
    assert loss[:2] == [2.3136, 1.9021]
    assert math.isnan(loss[2]) and math.isnan(loss[3])  # JSON NaN and the string "NaN"
    assert math.isinf(_values(result, "grad_norm")[2])
    assert "train_loss" not in set(result.accepted["metric"])  # the summary's run average is not a sample


def test_timestamps_from_train_runtime_and_started_at(tmp_path: Path) -> None:
    path = _write_state(tmp_path / "run" / "trainer_state.json")
    start = pd.Timestamp("2024-05-01T10:00:00Z")
    result = read_trainer_state(path, started_at=start)
    loss = result.accepted[result.accepted["metric"] == "training_loss"].sort_values("step")
    # train_runtime 80 s / global_step 40 = 2 s per step
    assert loss["ts"].tolist() == [start + pd.Timedelta(seconds=2 * s) for s in (10, 20, 30, 40)]
    assert loss["step"].tolist() == [10, 20, 30, 40]
    assert str(result.accepted["ts"].dtype) == "datetime64[ns, UTC]"


def test_naive_started_at_is_utc(tmp_path: Path) -> None:
    path = _write_state(tmp_path / "run" / "trainer_state.json")
    result = read_trainer_state(path, started_at=pd.Timestamp("2024-05-01T10:00:00"))
    assert result.accepted["ts"].min() == pd.Timestamp("2024-05-01T10:00:20Z")


def test_timestamps_anchor_on_file_mtime_without_started_at(tmp_path: Path) -> None:
    path = _write_state(tmp_path / "run" / "trainer_state.json")
    written = pd.Timestamp("2024-06-01T12:00:00Z")
    os.utime(path, (written.timestamp(), written.timestamp()))
    result = read_trainer_state(path)
    # the file was written at the last step: anchor = mtime - 40 steps * 2 s
    last = result.accepted[result.accepted["step"] == 40]["ts"].unique()
    assert list(last) == [written]
    assert result.accepted["ts"].min() == written - pd.Timedelta(seconds=60)


def test_one_second_per_step_without_train_runtime(tmp_path: Path) -> None:
    history = '[{"loss": 1.0, "step": 5}, {"loss": 0.9, "step": 10}]'
    path = _write_state(tmp_path / "run" / "trainer_state.json", history, global_step=10)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    result = read_trainer_state(path, started_at=start)
    assert result.accepted["ts"].tolist() == [start + pd.Timedelta(seconds=5), start + pd.Timedelta(seconds=10)]


def test_entry_without_step_is_one_rejected_row(tmp_path: Path) -> None:
    history = """[
      {"loss": 1.0, "learning_rate": 1e-4, "step": 5},
      {"epoch": 1.0, "predict_loss": 0.5, "predict_runtime": 3.0},
      {"loss": 0.8, "step": "five"},
      7
    ]"""
    path = _write_state(tmp_path / "run" / "trainer_state.json", history, global_step=5)
    result = read_trainer_state(path, started_at=pd.Timestamp("2024-01-01", tz="UTC"))
    assert len(result.accepted) == 2
    assert result.rejection_counts() == {
        "log entry has no step": 1,
        "log entry step is not an integer": 1,
        "log entry is not a JSON object": 1,
    }
    assert sorted(result.rejected["record"]) == ["log_history[1]", "log_history[2]", "log_history[3]"]
    no_step = result.rejected[result.rejected["record"] == "log_history[1]"]
    assert json.loads(no_step["raw"].iloc[0])["predict_loss"] == 0.5  # nothing is lost
    assert result.rows_in == 5


def test_conflicting_values_at_one_step_are_rejected(tmp_path: Path) -> None:
    history = '[{"loss": 1.0, "step": 5}, {"loss": 1.5, "step": 5}, {"epoch": 1.0, "loss": 1.0, "step": 6}]'
    path = _write_state(tmp_path / "run" / "trainer_state.json", history, global_step=6)
    result = read_trainer_state(path, started_at=pd.Timestamp("2024-01-01", tz="UTC"))
    assert result.rejection_counts() == {CONFLICT_REASON: 1}
    assert result.rejected["record"].tolist() == ["log_history[1].loss"]
    assert sorted(result.accepted["metric"]) == ["epoch", "training_loss", "training_loss"]


@pytest.mark.parametrize(
    "content, reason",
    [
        ('{"log_history": [{"loss": 1.0, "step": 1}', "not valid JSON"),
        ("", "not valid JSON"),
        ('{"global_step": 3}', "no log_history list"),
        ('{"log_history": {"loss": 1.0}}', "no log_history list"),
        ("[1, 2, 3]", "no log_history list"),
    ],
)
def test_unreadable_file_is_one_rejected_record(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "broken" / "trainer_state.json"
    path.parent.mkdir()
    path.write_text(content)
    result = read_trainer_state(path)
    assert result.accepted.empty
    assert len(result.rejected) == 1 and result.rows_in == 1
    assert reason in result.rejected["reason"].iloc[0]
    assert result.rejected["source"].iloc[0] == str(path)


def test_missing_file_is_one_rejected_record(tmp_path: Path) -> None:
    result = read_trainer_state(tmp_path / "nope" / "trainer_state.json")
    assert result.rejection_counts() == {"file not found": 1}


def test_empty_log_history_reads_nothing(tmp_path: Path) -> None:
    path = _write_state(tmp_path / "run" / "trainer_state.json", "[]")
    result = read_trainer_state(path)
    assert result.rows_in == 0


@pytest.mark.parametrize(
    "relpath, expected",
    [
        ("job-7/trainer_state.json", "job-7"),
        ("job-7/checkpoint-1200/trainer_state.json", "job-7"),
        ("job-7/output/trainer_state.json", "job-7"),
        ("runs/llama-lora__trainer_state.json", "llama-lora"),
        ("runs/llama-lora_trainer_state.json", "llama-lora"),
        ("runs/llama-loratrainer_state.json", "llama-lora"),
        ("runs/my-run.json", "my-run"),
    ],
)
def test_default_job_id(tmp_path: Path, relpath: str, expected: str) -> None:
    assert default_job_id(tmp_path / relpath) == expected
    path = _write_state(tmp_path / relpath)
    assert set(read_trainer_state(path).accepted["job_id"]) == {expected}


def test_explicit_job_id_wins(tmp_path: Path) -> None:
    path = _write_state(tmp_path / "job-7" / "trainer_state.json")
    assert set(read_trainer_state(path, job_id="other").accepted["job_id"]) == {"other"}


def test_unmapped_keys_are_listed_not_counted(tmp_path: Path) -> None:
    path = _write_state(tmp_path / "run" / "trainer_state.json")
    assert unmapped_keys(path) == {
        "eval_runtime": 1, "eval_samples_per_second": 1, "eval_steps_per_second": 1,
        "total_flos": 1, "train_loss": 1, "train_runtime": 1, "train_steps_per_second": 1,
    }
    assert unmapped_keys(tmp_path / "missing.json") == {}


# --- real files -------------------------------------------------------------------------------

# Jaong/Checkpoint-of-CPT logs the result of every `trainer.predict()` (predict_loss, ROUGE, ...)
# into log_history without a step: 10 entries whose time cannot be derived.
EXPECTED_REAL_REJECTIONS = {"Jaong__Checkpoint-of-CPT__trainer_state.json": {"log entry has no step": 10}}


def _real_files(realdata: Path) -> list[Path]:
    files = sorted((realdata / "trainer_states").glob("*trainer_state.json"))
    assert len(files) == 14
    return files


def test_real_trainer_states_match_manifest(realdata: Path) -> None:
    manifest = pd.read_csv(realdata / "trainer_states" / "MANIFEST.csv").set_index("file")
    for path in _real_files(realdata):
        row = manifest.loc[path.name]
        result = read_trainer_state(path, started_at=pd.Timestamp("2024-01-01", tz="UTC"))
        assert result.rows_in == len(result.accepted) + len(result.rejected)
        assert result.rejection_counts() == EXPECTED_REAL_REJECTIONS.get(path.name, {}), path.name
        validate(result.accepted, METRIC_SAMPLES)

        acc = result.accepted
        loss = acc[acc["metric"] == "training_loss"].sort_values("step")
        assert len(loss) == row["n_train_loss"], path.name
        assert loss["value"].iloc[0] == pytest.approx(row["loss_first"], abs=1e-4), path.name
        assert loss["value"].iloc[-1] == pytest.approx(row["loss_last"], abs=1e-4), path.name
        assert loss["value"].min() == pytest.approx(row["loss_min"], abs=1e-4), path.name
        assert 0 < acc["step"].max() <= row["global_step"], path.name

        val = acc[acc["metric"] == "val_loss"].sort_values("step")
        with_eval_loss = "eval_loss" in row["keys"].split("|")
        assert len(val) == (row["n_eval"] if with_eval_loss else 0), path.name
        if with_eval_loss:
            assert val["value"].iloc[0] == pytest.approx(row["eval_loss_first"])
            assert val["value"].iloc[-1] == pytest.approx(row["eval_loss_last"])
        grad = acc[acc["metric"] == "grad_norm"]
        if pd.notna(row["grad_norm_max"]):
            assert grad["value"].max() == pytest.approx(row["grad_norm_max"]), path.name
        else:
            assert grad.empty

        # one sample per key (the contract's de-duplication must not lose anything)
        assert not acc.duplicated(["job_id", "metric", "ts", "step", "device"]).any(), path.name


def test_real_trainer_state_details(realdata: Path) -> None:
    folder = realdata / "trainer_states"
    dude = read_trainer_state(folder / "Dude-0313__LogClassifier_Roberta_V1__output__trainer_state.json")
    accuracy = dude.accepted[dude.accepted["metric"] == "domain_accuracy"]["value"]
    assert len(accuracy) == 42 and accuracy.between(0, 1).all()
    assert set(dude.accepted["job_id"]) == {"Dude-0313__LogClassifier_Roberta_V1__output"}

    # train_runtime 64358 s over 5490 steps sets the clock; the file's mtime anchors the last step
    jaong_path = folder / "Jaong__Checkpoint-of-CPT__trainer_state.json"
    jaong = read_trainer_state(jaong_path)
    mtime = pd.Timestamp(jaong_path.stat().st_mtime, unit="s", tz="UTC")
    span = jaong.accepted["ts"].max() - jaong.accepted["ts"].min()
    assert abs(jaong.accepted["ts"].max() - mtime) < pd.Timedelta(milliseconds=1)
    assert span.total_seconds() == pytest.approx(64358.151 * (5490 - 500) / 5490, abs=1e-3)
    assert "predict_loss" in unmapped_keys(jaong_path)

    dpo_path = folder / "SeanGormann__llm_recovery__checkpoint-1000__trainer_state.json"
    dpo = read_trainer_state(dpo_path)
    assert set(dpo.accepted["metric"]) == {"training_loss", "grad_norm", "learning_rate", "epoch"}
    assert "rewards/accuracies" in unmapped_keys(dpo_path)
