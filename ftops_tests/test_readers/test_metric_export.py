from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ftops.readers.metric_export import describe_export, read_metric_export
from ftops.schemas import METRIC_SAMPLES, REJECTED_RECORDS, validate

LONG_CSV = """ts,job_id,metric,value,step,device,host
2024-05-01T12:00:00Z,ft-llama-7b-lora-001,loss,2.4512,10,,gpu-node-01
2024-05-01T12:00:00Z,ft-llama-7b-lora-001,lr,0.0002,10,,gpu-node-01
2024-05-01T12:00:05.250Z,ft-llama-7b-lora-001,DCGM_FI_DEV_GPU_UTIL,87,,0,gpu-node-01
2024-05-01T12:00:05.250Z,ft-llama-7b-lora-001,gpu_utilization_pct,91.5,,1,gpu-node-01
2024-05-01T14:00:10+02:00,ft-llama-7b-lora-001,eval_loss,2.61,10,,gpu-node-01
2024-05-01T12:00:15Z,ft-llama-7b-lora-001,cpu_usage_percent,55.0,,,gpu-node-01
"""


def _check_accounting(result, expected_rows_in: int) -> None:
    assert result.rows_in == len(result.accepted) + len(result.rejected) == expected_rows_in
    validate(result.accepted, METRIC_SAMPLES)  # raises on any contract break
    validate(result.rejected, REJECTED_RECORDS)
    assert list(result.accepted.dtypes.astype(str)) == list(METRIC_SAMPLES.empty().dtypes.astype(str))


def test_long_csv_with_aliases(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(LONG_CSV)
    result = read_metric_export(path)
    _check_accounting(result, 6)
    acc = result.accepted
    assert list(acc["metric"]) == [
        "training_loss", "learning_rate", "gpu_utilization_pct", "gpu_utilization_pct", "val_loss",
        "cpu_utilization_pct",
    ]
    assert acc["job_id"].unique().tolist() == ["ft-llama-7b-lora-001"]
    assert acc["value"].tolist() == [2.4512, 0.0002, 87.0, 91.5, 2.61, 55.0]
    assert acc["step"].tolist() == [10, 10, pd.NA, pd.NA, 10, pd.NA]
    assert acc["device"].tolist() == [pd.NA, pd.NA, "0", "1", pd.NA, pd.NA]
    assert acc["ts"].iloc[2] == pd.Timestamp("2024-05-01T12:00:05.250Z")
    assert acc["ts"].iloc[4] == pd.Timestamp("2024-05-01T12:00:10Z")  # offset converted to UTC
    assert (acc["source"] == str(path)).all()
    assert describe_export(path).shape == "long"


def test_long_csv_column_aliases_and_job_from_metrics_folder(tmp_path: Path) -> None:
    folder = tmp_path / "inbox" / "metrics" / "ft-mistral-dpo-007"
    folder.mkdir(parents=True)
    path = folder / "gpu.csv"
    path.write_text(
        "timestamp,name,value,gpu,hostname\n"
        "2024-05-01T12:00:00Z,utilization.gpu,77,0,node-a\n"
        "2024-05-01T12:00:00Z,gpu_memory_used_ratio,0.81,0,node-a\n"
    )
    result = read_metric_export(path)
    _check_accounting(result, 2)
    assert set(result.accepted["job_id"]) == {"ft-mistral-dpo-007"}
    assert result.accepted["metric"].tolist() == ["gpu_utilization_pct", "gpu_memory_used_ratio"]
    assert result.accepted["host"].tolist() == ["node-a", "node-a"]
    assert result.accepted["device"].tolist() == ["0", "0"]


def test_job_id_argument_and_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "ft-llama-3.1-8b.csv"  # only format/compression suffixes are dropped
    path.write_text("ts,metric,value\n2024-05-01T12:00:00Z,loss,1.0\n")
    assert read_metric_export(path).accepted["job_id"].tolist() == ["ft-llama-3.1-8b"]
    assert read_metric_export(path, job_id="job-x").accepted["job_id"].tolist() == ["job-x"]


def test_long_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    rows = [
        {"ts": "2024-05-01T12:00:00Z", "job_id": "j1", "metric": "train/loss", "value": 1.25, "step": 1},
        {"ts": "2024-05-01T12:00:01Z", "job_id": "j1", "metric": "grad_norm", "value": 3.5, "step": 1},
        {"ts": "2024-05-01T12:00:02Z", "job_id": "j1", "metric": "gpu_temp", "value": 64, "device": 3},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = read_metric_export(path)
    _check_accounting(result, 3)
    acc = result.accepted
    assert acc["metric"].tolist() == ["training_loss", "grad_norm", "gpu_temperature_c"]
    assert acc["device"].tolist() == [pd.NA, pd.NA, "3"]
    assert acc["step"].tolist() == [1, 1, pd.NA]


def test_wide_csv_melts_and_reports_ignored_columns(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(
        "time,job_id,step,train/loss,learning_rate,eval_loss,notes\n"
        "2024-05-01T12:00:00Z,j1,10,2.5,0.0002,,warmup\n"
        "2024-05-01T12:01:00Z,j1,20,2.1,0.00019,2.4,\n"
        "2024-05-01T12:02:00Z,j1,30,nan,0.00018,,diverged?\n"
    )
    desc = describe_export(path)
    assert desc.shape == "wide"
    assert desc.ignored_columns == ("notes",)
    assert desc.metric_columns == {
        "train/loss": "training_loss", "learning_rate": "learning_rate", "eval_loss": "val_loss",
    }
    result = read_metric_export(path)
    # 3 loss + 3 lr + 1 eval: a blank cell is "not logged", not a sample
    _check_accounting(result, 7)
    acc = result.accepted.sort_values(["metric", "ts"])
    assert acc.groupby("metric").size().to_dict() == {"learning_rate": 3, "training_loss": 3, "val_loss": 1}
    loss = acc[acc["metric"] == "training_loss"]
    assert loss["step"].tolist() == [10, 20, 30]
    assert math.isnan(loss["value"].iloc[2])  # NaN loss is a signal, kept


def test_wide_jsonl_epoch_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "job-w" / "system.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(
        '{"timestamp": 1714564800000, "gpu_util": 90, "gpu_power_watts": 410.5}\n'
        '{"timestamp": 1714564810000, "gpu_util": 93}\n'
    )
    result = read_metric_export(path)
    _check_accounting(result, 3)
    assert set(result.accepted["job_id"]) == {"job-w"}
    assert result.accepted["ts"].min() == pd.Timestamp("2024-05-01T12:00:00Z")


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("1714564800", "2024-05-01T12:00:00Z"),  # seconds
        ("1714564800.5", "2024-05-01T12:00:00.5Z"),
        ("1714564800123", "2024-05-01T12:00:00.123Z"),  # milliseconds, told apart by magnitude
        ("2024-05-01 12:00:00", "2024-05-01T12:00:00Z"),  # no zone means UTC
        ("2024-05-01T08:00:00-04:00", "2024-05-01T12:00:00Z"),
    ],
)
def test_timestamp_spellings(tmp_path: Path, ts: str, expected: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(f"ts,job_id,metric,value\n{ts},j,loss,1\n")
    result = read_metric_export(path)
    _check_accounting(result, 1)
    assert result.accepted["ts"].iloc[0] == pd.Timestamp(expected)


def test_mixed_epoch_units_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("ts,job_id,metric,value\n1714564800,j,loss,1\n1714564800000,k,loss,2\n")
    result = read_metric_export(path)
    assert result.accepted["ts"].tolist() == [pd.Timestamp("2024-05-01T12:00:00Z")] * 2


def test_nan_and_inf_accepted_bad_value_rejected_with_reason(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "ts,job_id,metric,value\n"
        "2024-05-01T12:00:00Z,j,loss,NaN\n"
        "2024-05-01T12:00:01Z,j,loss,nan\n"
        "2024-05-01T12:00:02Z,j,loss,inf\n"
        "2024-05-01T12:00:03Z,j,loss,not-a-number\n"
        "2024-05-01T12:00:04Z,j,loss,1.5\n"
    )
    result = read_metric_export(path)
    _check_accounting(result, 5)
    values = result.accepted["value"].tolist()
    assert math.isnan(values[0]) and math.isnan(values[1]) and values[2] == math.inf and values[3] == 1.5
    assert result.rejection_counts() == {"value is not a number": 1}
    bad = result.rejected.iloc[0]
    assert bad["record"] == "5"  # line number: header is line 1
    assert json.loads(bad["raw"])["value"] == "not-a-number"
    assert bad["source"] == str(path)


def test_unknown_metric_and_bad_timestamp_rejected(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "ts,job_id,metric,value,step\n"
        "2024-05-01T12:00:00Z,j,loss,1,1\n"
        "2024-05-01T12:00:00Z,j,my_custom_thing,1,1\n"
        "yesterday,j,loss,1,2\n"
        "2024-05-01T12:00:00Z,j,loss,1,2.5\n"
        "2024-05-01T12:00:00Z,,loss,1,3\n"
    )
    result = read_metric_export(path)
    _check_accounting(result, 5)
    assert result.rejection_counts() == {
        "unknown metric (not a canonical name or known alias)": 1,
        "timestamp missing or unparseable": 1,
        "step is not an integer": 1,
        "missing job_id": 1,
    }
    assert sorted(result.rejected["record"]) == ["3", "4", "5", "6"]


def test_malformed_jsonl_line_rejected_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    good = [
        json.dumps({
            "ts": f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}Z", "job_id": "j", "metric": "loss",
            "value": 1.0 + i, "step": i,
        })
        for i in range(300)
    ]
    truncated = '{"ts": "2024-05-01T13:00:00Z", "job_id": "j", "metric": "loss", "value": 1.0'
    lines = good[:150] + [truncated] + good[150:]
    lines.insert(10, '{"ts": "2024-05-01T13:00:00Z", "job_id": "j", "metric": "loss", "value": NaN}')
    lines.insert(20, '{"ts": "2024-05-01T13:00:00Z", "job_id": "j", "metric": "loss", "value": "oops"}')
    path.write_text("\n".join(lines) + "\n")
    result = read_metric_export(path)
    _check_accounting(result, 303)
    assert len(result.accepted) == 301  # 300 good + the NaN one
    counts = result.rejection_counts()
    assert counts.pop("value is not a number") == 1
    [(reason, n)] = counts.items()
    assert reason.startswith("malformed JSON line") and n == 1
    records = dict(zip(result.rejected["reason"], result.rejected["record"]))
    assert records["value is not a number"] == "21"
    assert records[reason] == "153"
    # rows Arrow read come first, the few parsed line by line after them
    assert sorted(result.accepted["step"].dropna().astype(int)) == list(range(300))


def test_malformed_csv_row_rejected_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "ts,job_id,metric,value\n"
        "2024-05-01T12:00:00Z,j,loss,1\n"
        "2024-05-01T12:00:01Z,j,loss\n"
        "2024-05-01T12:00:02Z,j,loss,3,extra\n"
        "2024-05-01T12:00:03Z,j,loss,bad\n"
        "2024-05-01T12:00:04Z,j,loss,5\n"
    )
    result = read_metric_export(path)
    _check_accounting(result, 5)
    assert result.accepted["value"].tolist() == [1.0, 5.0]
    records = sorted(zip(result.rejected["record"], result.rejected["reason"]))
    assert records[0][0] == "3" and records[0][1].startswith("malformed CSV row")
    assert records[1][0] == "4" and records[1][1].startswith("malformed CSV row")
    assert records[2] == ("5", "value is not a number")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.parquet", b"PAR1 this is not parquet"),
        ("binary.jsonl", b"\x00\x01\x02garbage\xff\xfe"),
        ("empty.csv", b""),
        ("nonsense.csv", b"a,b,c\n1,2,3\n"),
        ("export.xlsx", b"PK\x03\x04"),
        ("broken.csv.gz", b"not gzip at all"),
    ],
)
def test_unreadable_file_is_one_rejected_record(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = read_metric_export(path)
    _check_accounting(result, 1)
    assert result.accepted.empty
    assert result.rejected["source"].tolist() == [str(path)]
    assert result.rejected["record"].isna().all()


def test_missing_file_is_one_rejected_record(tmp_path: Path) -> None:
    result = read_metric_export(tmp_path / "nope.csv")
    _check_accounting(result, 1)
    assert result.rejected["reason"].iloc[0] == "file not found"


def test_parquet_and_gzip(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "ts": pd.to_datetime(["2024-05-01T12:00:00Z", "2024-05-01T12:00:10Z"]),
        "job_id": ["j", "j"], "metric": ["samples_per_second", "tokens_per_second"], "value": [48.0, 98000.0],
        "step": [5, 5],
    })
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "m.parquet")
    result = read_metric_export(tmp_path / "m.parquet")
    _check_accounting(result, 2)
    assert result.accepted["metric"].tolist() == ["samples_per_second", "tokens_per_second"]

    gz = tmp_path / "m.csv.gz"
    gz.write_bytes(gzip.compress(LONG_CSV.encode()))
    _check_accounting(read_metric_export(gz), 6)


def test_accounting_invariant_on_a_larger_mixed_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 5000
    values = rng.normal(1, 0.1, n).round(4).astype(str).astype(object)
    values[rng.choice(n, 25, replace=False)] = "garbage"
    metrics = rng.choice(["loss", "lr", "gpu_util", "unknown_metric"], n, p=[0.4, 0.3, 0.29, 0.01])
    frame = pd.DataFrame({
        "ts": pd.date_range("2024-05-01", periods=n, freq="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "job_id": rng.choice(["a", "b", "c"], n), "metric": metrics, "value": values,
    })
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    result = read_metric_export(path)
    _check_accounting(result, n)
    expected_bad = ((values == "garbage") | (metrics == "unknown_metric")).sum()
    assert len(result.rejected) == expected_bad
