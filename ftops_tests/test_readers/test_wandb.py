from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ftops.readers.wandb import read_wandb_run
from ftops.schemas import METRIC_SAMPLES, validate

# A Hugging Face run as W&B exports it: one row per wandb.log call, the union of keys as columns,
# CRLF line ends, an eval row at step 20 and the Trainer's summary row at the end.
HISTORY = (
    "_runtime,_step,_timestamp,train/epoch,train/global_step,train/learning_rate,train/loss,"
    "eval/loss,eval/runtime,train/train_loss,train/train_samples_per_second,train/total_flos\r\n"
    "20.8,0,1700000020.5,0.01,10,0.0002,2.31,,,,,\r\n"
    "35.5,1,1700000035.5,0.02,20,0.00019,1.90,,,,,\r\n"
    "40.0,2,1700000040.0,0.02,20,,,1.85,3.2,,,\r\n"
    "55.0,3,1700000055.0,0.03,30,0.00018,NaN,,,,,\r\n"
    "70.0,4,1700000070.0,0.04,40,,,,,2.0,4.5,1.2e15\r\n"
)
# 2 GPUs; gpu.process.0.* repeats gpu.0.*; row 3 lost its _timestamp (only _runtime), row 4 has
# an unparseable one, and row 2 missed the GPU 1 sample.
SYSTEM = (
    "_runtime,_timestamp,cpu,disk,gpu.0.gpu,gpu.0.memory,gpu.0.memoryAllocated,gpu.0.powerWatts,"
    "gpu.0.powerPercent,gpu.0.temp,gpu.1.gpu,gpu.1.memory,gpu.1.memoryAllocated,gpu.1.powerWatts,"
    "gpu.1.powerPercent,gpu.1.temp,gpu.process.0.gpu,gpu.process.0.memoryAllocated,memory,network.sent\n"
    "10,1700000010,12.5,6.2,95,40,81.5,301.2,75.3,64,93,38,80.0,298.0,74.5,62,95,81.5,23.0,1000\n"
    "40,1700000040,13.0,6.2,96,41,81.5,305.0,76.2,65,,,,,,,96,81.5,23.5,2000\n"
    "70,,14.0,6.2,97,42,82.0,310.0,77.5,66,94,39,80.5,299.0,74.7,63,97,82.0,24.0,3000\n"
    "100,yesterday,15.0,6.2,97,42,82.0,310.0,77.5,66,94,39,80.5,299.0,74.7,63,97,82.0,24.0,4000\n"
)
METADATA = {"host": "a100-node-03", "startedAt": "2023-11-14T22:13:20.000000", "gpu": "NVIDIA A100-SXM4-80GB",
            "gpu_count": 2}


def _run(folder: Path, history: str | None = HISTORY, system: str | None = SYSTEM,
         metadata: dict | str | None = METADATA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if history is not None:
        (folder / "history.csv").write_bytes(history.encode())
    if system is not None:
        (folder / "system_stats.csv").write_bytes(system.encode())
    if metadata is not None:
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        (folder / "wandb-metadata.json").write_text(text)
    return folder


def _metric(result, metric: str) -> pd.DataFrame:
    acc = result.accepted
    return acc[acc["metric"] == metric].sort_values(["ts", "device"]).reset_index(drop=True)


def test_history_maps_hugging_face_keys(tmp_path: Path) -> None:
    result = read_wandb_run(_run(tmp_path / "3bchfair", system=None))

    assert result.rejected.empty
    assert result.accepted["metric"].value_counts().to_dict() == {
        "epoch": 5, "learning_rate": 3, "training_loss": 3, "val_loss": 1, "samples_per_second": 1,
    }
    loss = _metric(result, "training_loss")
    assert loss["step"].tolist() == [10, 20, 30]  # train/global_step, not W&B's _step
    assert loss["value"].iloc[:2].tolist() == [2.31, 1.90]
    assert math.isnan(loss["value"].iloc[2])  # a NaN loss is a sample, not an empty cell
    assert loss["ts"].iloc[0] == pd.Timestamp(1700000020.5, unit="s", tz="UTC")
    assert _metric(result, "val_loss")["value"].tolist() == [1.85]
    assert _metric(result, "samples_per_second")["step"].tolist() == [40]
    assert set(result.accepted["job_id"]) == {"3bchfair"}
    assert set(result.accepted["host"]) == {"a100-node-03"}
    assert set(result.accepted["source"]) == {str(tmp_path / "3bchfair" / "history.csv")}
    assert result.accepted["device"].isna().all()
    validate(result.accepted, METRIC_SAMPLES)


def test_system_stats_units_devices_and_timestamps(tmp_path: Path) -> None:
    result = read_wandb_run(_run(tmp_path / "run1", history=None))

    # the unparseable _timestamp row is refused cell by cell; every other non-empty mapped cell is a sample
    assert result.rejection_counts() == {"timestamp missing or unparseable": 12}
    assert set(result.rejected["record"].str.split(",").str[0]) == {"row 4"}
    assert all('"_timestamp": "yesterday"' in raw for raw in result.rejected["raw"])
    counts = result.accepted["metric"].value_counts().to_dict()
    assert counts == {
        "gpu_utilization_pct": 5, "gpu_memory_copy_util_pct": 5, "gpu_memory_used_ratio": 5,
        "gpu_power_watts": 5, "gpu_temperature_c": 5, "cpu_utilization_pct": 3, "host_memory_used_ratio": 3,
    }
    util = _metric(result, "gpu_utilization_pct")
    assert util["device"].tolist() == ["0", "1", "0", "0", "1"]
    assert util["value"].tolist() == [95, 93, 96, 97, 94]
    assert util["step"].isna().all()
    assert _metric(result, "gpu_memory_used_ratio")["value"].iloc[0] == pytest.approx(0.815)
    assert _metric(result, "gpu_memory_copy_util_pct")["value"].iloc[0] == 40
    assert _metric(result, "gpu_power_watts")["value"].iloc[0] == pytest.approx(301.2)
    assert _metric(result, "gpu_temperature_c")["value"].iloc[1] == 62
    assert _metric(result, "host_memory_used_ratio")["value"].tolist() == pytest.approx([0.23, 0.235, 0.24])
    assert _metric(result, "cpu_utilization_pct")["value"].tolist() == [12.5, 13.0, 14.0]
    # an empty _timestamp falls back to wandb-metadata startedAt + _runtime
    cpu = _metric(result, "cpu_utilization_pct")
    assert cpu["ts"].tolist()[2] == pd.Timestamp("2023-11-14T22:13:20Z") + pd.Timedelta(seconds=70)
    assert cpu["ts"].tolist()[0] == pd.Timestamp(1700000010, unit="s", tz="UTC")


def test_folder_reads_both_files_and_accounts_every_row(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run1")
    result = read_wandb_run(folder)
    history_only = read_wandb_run(folder / "history.csv")
    system_only = read_wandb_run(folder / "system_stats.csv")
    assert len(result.accepted) == len(history_only.accepted) + len(system_only.accepted) == 13 + 31
    assert result.rows_in == len(result.accepted) + len(result.rejected) == 13 + 31 + 12
    # given one CSV, the folder still names the job and the metadata still gives the host
    assert set(system_only.accepted["job_id"]) == {"run1"}
    assert set(system_only.accepted["host"]) == {"a100-node-03"}
    assert set(history_only.accepted["source"]) == {str(folder / "history.csv")}


def test_without_metadata_an_empty_timestamp_is_rejected(tmp_path: Path) -> None:
    result = read_wandb_run(_run(tmp_path / "run1", history=None, metadata=None))
    assert result.rejection_counts() == {"timestamp missing or unparseable": 24}
    assert result.accepted["host"].isna().all()


def test_non_numeric_cell_is_rejected_with_its_value(tmp_path: Path) -> None:
    history = "_runtime,_step,_timestamp,train/global_step,train/loss\n1,0,1700000001,1,2.5\n2,1,1700000002,2,oops\n"
    result = read_wandb_run(_run(tmp_path / "run1", history=history, system=None))
    assert result.rejection_counts() == {"value is not a number": 1}
    assert result.rejected["record"].tolist() == ["row 2, train/loss"]
    assert '"oops"' in result.rejected["raw"].iloc[0]
    assert _metric(result, "training_loss")["value"].tolist() == [2.5]


def test_non_integer_step_is_rejected(tmp_path: Path) -> None:
    history = "_runtime,_step,_timestamp,train/global_step,train/loss\n1,0,1700000001,1,2.5\n2,1,1700000002,1.5,2.4\n"
    result = read_wandb_run(_run(tmp_path / "run1", history=history, system=None))
    assert result.rejection_counts() == {"train/global_step is not an integer step": 1}
    assert len(result.accepted) == 1


def test_step_falls_back_to_wandb_step(tmp_path: Path) -> None:
    history = "_runtime,_step,_timestamp,loss,lr\n1,0,1700000001,2.5,0.001\n2,1,1700000002,2.4,\n"
    result = read_wandb_run(_run(tmp_path / "run1", history=history, system=None))
    assert _metric(result, "training_loss")["step"].tolist() == [0, 1]
    assert _metric(result, "learning_rate")["value"].tolist() == [0.001]


def test_openai_fine_tune_export(tmp_path: Path) -> None:
    history = (
        "_runtime,_step,_timestamp,elapsed_examples,elapsed_tokens,training_loss,training_sequence_accuracy,"
        "training_token_accuracy,validation_loss,validation_sequence_accuracy,validation_token_accuracy\n"
        "0.29,1,1671517289.68,2.0,402.0,2.33,0.0,0.48,1.30,0.5,0.45\n"
        "0.30,2,1671517289.69,4.0,564.0,1.84,0.0,0.41,,,\n"
    )
    result = read_wandb_run(_run(tmp_path / "ft-abc", history=history, system=None))
    assert result.rejected.empty
    assert result.accepted["metric"].value_counts().to_dict() == {
        "training_loss": 2, "val_loss": 1, "domain_accuracy": 1,
    }
    assert _metric(result, "domain_accuracy")["value"].tolist() == [0.5]  # sequence, not token, accuracy
    assert _metric(result, "training_loss")["step"].tolist() == [1, 2]


def test_columns_without_canonical_metric_are_not_rows(tmp_path: Path) -> None:
    history = "_runtime,_step,_timestamp,predictions\n57.5,0,1671517390.6,\"{'_type': 'table-file'}\"\n"
    result = read_wandb_run(_run(tmp_path / "run1", history=history, system=None))
    assert result.rows_in == 0


def test_large_export_is_vectorised(tmp_path: Path) -> None:
    import time

    import numpy as np

    n = 20_000
    columns = {"_timestamp": 1.7e9 + np.arange(n) * 15.0, "cpu": np.full(n, 50.0), "memory": np.full(n, 40.0)}
    for gpu in range(8):
        for field in ("gpu", "memory", "memoryAllocated", "powerWatts", "temp", "powerPercent"):
            columns[f"gpu.{gpu}.{field}"] = np.full(n, 60.0)
    folder = tmp_path / "big"
    folder.mkdir()
    pd.DataFrame(columns).to_csv(folder / "system_stats.csv", index=False)
    started = time.perf_counter()
    result = read_wandb_run(folder)
    elapsed = time.perf_counter() - started
    assert len(result.accepted) == n * (2 + 8 * 5) and result.rejected.empty
    assert elapsed < 20, f"{elapsed:.1f} s for {len(result.accepted)} samples: a per-row loop crept in"


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"_timestamp,cpu\n1700000000,5\n1700000001,5,6,7\n", "not a readable CSV"),
        (b"\xff\xfe\x00\x01garbage\x00\x9c", "not a readable CSV"),
    ],
)
def test_corrupt_csv_is_one_rejected_record(tmp_path: Path, content: bytes, reason: str) -> None:
    folder = _run(tmp_path / "run1", history=None, system=None)
    (folder / "system_stats.csv").write_bytes(content)
    result = read_wandb_run(folder)
    assert result.accepted.empty
    assert len(result.rejected) == 1
    assert reason in result.rejected["reason"].iloc[0]
    assert result.rejected["source"].iloc[0] == str(folder / "system_stats.csv")


def test_corrupt_metadata_is_reported_and_csvs_still_read(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run1", system=None, metadata="{not json")
    result = read_wandb_run(folder)
    assert len(result.accepted) == 13
    assert result.accepted["host"].isna().all()
    assert len(result.rejected) == 1
    assert result.rejected["reason"].iloc[0].startswith("cannot read wandb-metadata.json")


def test_missing_path_and_foreign_folder_are_one_rejected_record(tmp_path: Path) -> None:
    missing = read_wandb_run(tmp_path / "nope")
    assert missing.rejection_counts() == {"file or folder not found": 1}
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    foreign = read_wandb_run(tmp_path / "photos")
    assert len(foreign.rejected) == 1 and foreign.rejected["reason"].iloc[0].startswith("not a W&B run folder")


def test_run_that_logged_nothing_is_empty_not_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "3bchfair"
    folder.mkdir()
    (folder / "config.yaml").write_text("wandb_version: 1\n")
    result = read_wandb_run(folder)
    assert result.rows_in == 0


def test_explicit_job_id_wins(tmp_path: Path) -> None:
    result = read_wandb_run(_run(tmp_path / "run1"), job_id="job-42")
    assert set(result.accepted["job_id"]) == {"job-42"}


# --- real files -------------------------------------------------------------------------------


def _real_run_folders(realdata: Path) -> list[Path]:
    runs = realdata / "runs"
    folders = sorted(p for p in runs.glob("*/runs/*") if p.is_dir())
    # the yc1999 export is a single run laid out at the top of its folder
    folders += sorted(p for p in runs.iterdir() if p.is_dir() and (p / "history.csv").is_file())
    assert len(folders) == 97
    return folders


def test_real_wandb_runs_read_without_rejections(realdata: Path) -> None:
    total = 0
    for folder in _real_run_folders(realdata):
        result = read_wandb_run(folder)
        assert result.rejected.empty, (folder.name, result.rejection_counts())
        assert result.rows_in == len(result.accepted)
        if result.accepted.empty:
            continue
        validate(result.accepted, METRIC_SAMPLES)
        acc = result.accepted
        assert set(acc["job_id"]) == {folder.name}
        assert not acc.duplicated(["job_id", "metric", "ts", "step", "device"]).any(), folder.name
        for name in ("gpu_memory_used_ratio", "host_memory_used_ratio"):
            assert acc.loc[acc["metric"] == name, "value"].between(0, 1.0001).all(), (folder.name, name)

        history = folder / "history.csv"
        if history.is_file():
            raw = pd.read_csv(history)
            loss_column = "train/loss" if "train/loss" in raw else "training_loss"
            expected = int(raw[loss_column].notna().sum()) if loss_column in raw else 0
            assert (acc["metric"] == "training_loss").sum() == expected, folder.name
        total += len(acc)
    assert total > 300_000


def test_real_wandb_runs_match_runs_summary(realdata: Path) -> None:
    """Loss, last step and host agree with the summary the data set was published with."""
    checked = 0
    for summary_path in sorted((realdata / "runs").glob("*/runs_summary.csv")):
        summary = pd.read_csv(summary_path)
        for row in summary.itertuples():
            if pd.isna(row.loss_first):
                continue
            acc = read_wandb_run(summary_path.parent / "runs" / row.run_id).accepted
            loss = acc[acc["metric"] == "training_loss"].sort_values("ts")
            assert loss["value"].iloc[0] == pytest.approx(row.loss_first), row.run_id
            assert loss["value"].iloc[-1] == pytest.approx(row.loss_last), row.run_id
            assert loss["value"].min() == pytest.approx(row.loss_min), row.run_id
            assert acc["step"].max() == row.max_global_step, row.run_id
            assert set(acc["host"]) == {row.host}, row.run_id
            checked += 1
    assert checked >= 40


def test_real_system_stats_of_an_8_gpu_run(realdata: Path) -> None:
    folder = realdata / "runs" / "wandb_stanford_alpaca_8xA100_yc1999"
    result = read_wandb_run(folder / "system_stats.csv")
    acc = result.accepted
    assert result.rejected.empty
    util = acc[acc["metric"] == "gpu_utilization_pct"]
    assert sorted(util["device"].unique()) == [str(i) for i in range(8)]  # gpu.process.4.* not doubled
    raw = pd.read_csv(folder / "system_stats.csv")
    assert len(util) == int(raw[[f"gpu.{i}.gpu" for i in range(8)]].notna().sum().sum())
    assert set(acc["host"]) == {"a100"}
    assert set(acc["job_id"]) == {"wandb_stanford_alpaca_8xA100_yc1999"}
