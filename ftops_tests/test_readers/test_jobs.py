from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ftops.readers.jobs import DUPLICATE_REASON, read_jobs
from ftops.schemas import JOBS, validate

CSV = """\
job_id,name,technique,domain,base_model,model_params_b,dataset_samples,seq_len,batch_size,grad_accum,epochs,gpu_type,gpu_count,instance_type,cloud,region,pricing,budget_category,critical,status,submitted_at,started_at,ended_at,exit_reason,total_steps
ft-001,legal-qa,QLoRA,legal,meta-llama/Llama-2-7b-hf,7,52000,2048,4,8,3,A10G,1,g5.4xlarge,AWS,us-east-1,On-Demand,research,yes,completed,2024-09-01T08:00:00Z,2024-09-01T08:05:00Z,2024-09-01T14:00:00Z,,4875
ft-002,med-summ,LoRA,medical,mistralai/Mistral-7B-v0.1,7B,120000,4096,2,16,2,A100-80GB,8,p4d.24xlarge,aws,us-west-2,spot,production,0,Running,2024-09-02 09:00:00,2024-09-02 09:30:00,,,
ft-003,code-dpo,DPO,code,codellama/CodeLlama-13b-hf,13,30000,2048,1,32,1,H100,8,p5.48xlarge,aws,us-east-1,on_demand,research,TRUE,failed,1725267600,1725271200,1725274800,CUDA OOM,
,orphan,lora,legal,x,7,10,512,1,1,1,A10G,1,g5.xlarge,aws,us-east-1,spot,research,no,pending,2024-09-03T00:00:00Z,,,,
ft-004,bad-technique,magic-tuning,legal,x,7,10,512,1,1,1,A10G,1,g5.xlarge,aws,us-east-1,spot,research,no,pending,2024-09-03T00:00:00Z,,,,
ft-005,bad-count,full,legal,x,7,10,512,1.5,1,1,A10G,two,g5.xlarge,aws,us-east-1,spot,research,no,pending,not-a-date,,,,
ft-006,bad-vocab,prefix-tuning,legal,x,7,10,512,1,1,1,A10G,1,g5.xlarge,aws,us-east-1,reserved,research,maybe,exploded,2024-09-03T00:00:00Z,,,kaboom,
ft-002,med-summ,LoRA,medical,mistralai/Mistral-7B-v0.1,7B,120000,4096,2,16,2,A100-80GB,8,p4d.24xlarge,aws,us-west-2,spot,production,0,preempted,2024-09-02 09:00:00,2024-09-02 09:30:00,2024-09-02 12:00:00,Spot interruption,
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _reasons(result) -> dict[str, str]:
    """record -> reason of every rejected row."""
    return dict(zip(result.rejected["record"], result.rejected["reason"]))


def test_csv_normalises_vocabularies_and_types(tmp_path):
    result = read_jobs(_write(tmp_path, "jobs.csv", CSV))
    jobs = result.accepted.set_index("job_id")

    assert sorted(jobs.index) == ["ft-001", "ft-002", "ft-003"]
    assert jobs.loc["ft-001", "technique"] == "qlora"
    assert jobs.loc["ft-001", "pricing"] == "on_demand"
    assert jobs.loc["ft-001", "status"] == "succeeded"
    assert bool(jobs.loc["ft-001", "critical"]) is True
    assert jobs.loc["ft-001", "cloud"] == "aws"
    assert jobs.loc["ft-002", "model_params_b"] == 7.0  # "7B"
    assert jobs.loc["ft-003", "exit_reason"] == "oom"  # "CUDA OOM"
    assert jobs.loc["ft-003", "technique"] == "dpo"
    # epoch seconds and naive strings both become UTC
    assert jobs.loc["ft-003", "submitted_at"] == pd.Timestamp("2024-09-02T09:00:00Z")
    assert jobs.loc["ft-001", "started_at"] == pd.Timestamp("2024-09-01T08:05:00Z")
    assert jobs.loc["ft-001", "total_steps"] == 4875
    assert pd.isna(jobs.loc["ft-002", "total_steps"])
    # the accepted frame already satisfies the contract
    validate(result.accepted, JOBS)


def test_duplicate_job_id_keeps_the_last_row(tmp_path):
    result = read_jobs(_write(tmp_path, "jobs.csv", CSV))
    jobs = result.accepted.set_index("job_id")
    assert jobs.loc["ft-002", "status"] == "preempted"
    assert jobs.loc["ft-002", "exit_reason"] == "preempted"
    assert _reasons(result)["2"] == DUPLICATE_REASON


def test_an_invalid_later_row_does_not_supersede_a_valid_one(tmp_path):
    text = "job_id,status\nj1,running\nj1,succeeded\nj1,complted\n"
    result = read_jobs(_write(tmp_path, "jobs.csv", text))
    assert result.accepted[["job_id", "status"]].values.tolist() == [["j1", "succeeded"]]
    assert _reasons(result) == {
        "1": DUPLICATE_REASON,
        "3": "status not one of ['pending', 'running', 'succeeded', 'failed', 'cancelled', 'preempted']",
    }


def test_ragged_csv_line_is_rejected_not_shifted(tmp_path):
    result = read_jobs(_write(tmp_path, "jobs.csv", "job_id,status\nj1,running\nj2,running,extra\nj3,failed\n"))
    assert result.accepted["job_id"].tolist() == ["j1", "j3"]
    assert result.rejected["reason"].tolist() == ["malformed CSV line: 3 fields where the header has 2"]
    assert json.loads(result.rejected["raw"].iloc[0]) == ["j2", "running", "extra"]


def test_rejections_name_the_field(tmp_path):
    result = read_jobs(_write(tmp_path, "jobs.csv", CSV))
    reasons = _reasons(result)
    assert reasons["4"] == "missing job_id"
    assert reasons["5"].startswith("technique not one of")
    assert reasons["6"] == (
        "batch_size is not a whole number; gpu_count is not a whole number; submitted_at is not a timestamp"
    )
    assert reasons["7"] == (
        "status not one of ['pending', 'running', 'succeeded', 'failed', 'cancelled', 'preempted']; "
        "pricing not one of ['on_demand', 'spot']; "
        "exit_reason not one of ['oom', 'preempted', 'nan_loss', 'hang', 'code_error', 'node_failure']; "
        "critical is not a boolean (true/false/1/0/yes/no)"
    )
    # the refused row is kept whole
    assert json.loads(result.rejected.set_index("record").loc["5", "raw"])["technique"] == "magic-tuning"
    assert result.rows_in == 8 == len(result.accepted) + len(result.rejected)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("true", True), ("False", False), ("1", True), ("0", False), ("YES", True), ("no", False), ("", None),
    ],
)
def test_critical_parses_common_spellings(tmp_path, raw, expected):
    path = _write(tmp_path, "jobs.csv", f"job_id,critical\nj1,{raw}\n")
    result = read_jobs(path)
    value = result.accepted["critical"].iloc[0]
    assert (pd.isna(value) if expected is None else bool(value) is expected)


@pytest.mark.parametrize(
    "column, raw, expected",
    [
        ("technique", "Q-LoRA", "qlora"),
        ("technique", "full fine-tune", "full"),
        ("technique", "Prefix-Tuning", "prefix"),
        ("technique", "IA3", "other"),
        ("status", "COMPLETED", "succeeded"),
        ("status", "canceled", "cancelled"),
        ("status", "queued", "pending"),
        ("pricing", "on-demand", "on_demand"),
        ("pricing", "Preemptible", "spot"),
        ("exit_reason", "out of memory", "oom"),
        ("exit_reason", "NaN loss", "nan_loss"),
        ("exit_reason", "node-failure", "node_failure"),
    ],
)
def test_vocabulary_spellings(tmp_path, column, raw, expected):
    result = read_jobs(_write(tmp_path, "jobs.csv", f"job_id,{column}\nj1,{raw}\n"))
    assert result.rejected.empty
    assert result.accepted[column].iloc[0] == expected


def test_column_aliases(tmp_path):
    text = "id,method,state,num_gpus,start_time,gradient_accumulation_steps\nj9,LoRA,done,4,2024-09-01T00:00:00Z,8\n"
    row = read_jobs(_write(tmp_path, "jobs.csv", text)).accepted.iloc[0]
    assert (row["job_id"], row["technique"], row["status"], row["gpu_count"], row["grad_accum"]) == (
        "j9", "lora", "succeeded", 4, 8,
    )
    assert row["started_at"] == pd.Timestamp("2024-09-01T00:00:00Z")


def test_jsonl_with_malformed_lines(tmp_path):
    lines = [
        json.dumps({"job_id": "ft-101", "technique": "LoRA", "status": "running", "gpu_count": 2, "critical": True,
                    "submitted_at": "2024-09-01T00:00:00Z", "resources": {"gpu_type": "A10G"}}),
        '{"job_id": "ft-102", "status": ',  # truncated write
        "",
        "[1, 2, 3]",
        json.dumps({"job_id": "ft-103", "status": "Finished", "gpu_count": 2.5}),
        json.dumps({"job_id": "ft-104", "status": "Queued", "submitted_at": 1725148800000}),
    ]
    result = read_jobs(_write(tmp_path, "jobs.jsonl", "\n".join(lines) + "\n"))

    assert sorted(result.accepted["job_id"]) == ["ft-101", "ft-104"]
    reasons = _reasons(result)
    assert reasons["2"].startswith("malformed JSON line")
    assert reasons["4"] == "JSON line is not an object"
    assert reasons["5"] == "gpu_count is not a whole number"
    assert result.rejected.set_index("record").loc["2", "raw"] == lines[1]
    # epoch milliseconds
    ft104 = result.accepted.set_index("job_id").loc["ft-104"]
    assert ft104["submitted_at"] == pd.Timestamp("2024-09-01T00:00:00Z")
    assert result.rows_in == 5  # five non-blank lines
    validate(result.accepted, JOBS)


def test_parquet_with_native_types(tmp_path):
    frame = pd.DataFrame(
        {
            "job_id": ["p1", "p2", "p3"],
            "technique": ["LoRA", "full", "qlora"],
            "gpu_count": [1, 8, 2],
            "model_params_b": [7.0, 70.0, 13.0],
            "critical": [True, False, True],
            "status": ["succeeded", "running", "bogus"],
            "submitted_at": pd.to_datetime(["2024-09-01 00:00", "2024-09-02 00:00", "2024-09-03 00:00"]),
            "started_at": pd.to_datetime(["2024-09-01 01:00", None, None], utc=True),
        }
    )
    path = tmp_path / "jobs.parquet"
    frame.to_parquet(path)
    result = read_jobs(path)
    assert list(result.accepted["job_id"]) == ["p1", "p2"]
    assert result.accepted["submitted_at"].iloc[0] == pd.Timestamp("2024-09-01T00:00:00Z")
    assert result.accepted["critical"].tolist() == [True, False]
    assert result.rejection_counts() == {
        "status not one of ['pending', 'running', 'succeeded', 'failed', 'cancelled', 'preempted']": 1
    }
    assert result.rejected["record"].tolist() == ["3"]


@pytest.mark.parametrize("name, content", [("missing.csv", None), ("jobs.xlsx", "x"), ("empty.csv", "")])
def test_unreadable_file_is_one_rejected_record(tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = read_jobs(path)
    assert result.accepted.empty
    assert len(result.rejected) == 1 and result.rows_in == 1
    assert result.rejected["source"].iloc[0] == str(path)
    assert result.rejected["table"].iloc[0] == "job_registry"


def test_header_only_file_reads_nothing(tmp_path):
    result = read_jobs(_write(tmp_path, "jobs.csv", "job_id,status\n"))
    assert result.rows_in == 0
    assert list(result.accepted.columns) == JOBS.column_names


# ---- impossible times ---------------------------------------------------------------------------

NOW = pd.Timestamp("2026-11-21T12:00:00Z")
FLOOR = pd.Timestamp("2023-01-01T00:00:00Z")
TIMES = """\
job_id,status,submitted_at,started_at,ended_at
ok,succeeded,2026-11-20T08:00:00Z,2026-11-20T08:05:00Z,2026-11-20T14:00:00Z
epoch,running,1970-01-01T00:00:00Z,1970-01-01T00:00:00Z,
epoch-seconds,running,,0,
before-floor,succeeded,2022-12-31T23:00:00Z,2022-12-31T23:30:00Z,2023-01-01T02:00:00Z
ends-first,succeeded,2026-11-20T08:00:00Z,2026-11-20T10:00:00Z,2026-11-20T09:00:00Z
starts-first,running,2026-11-20T10:00:00Z,2026-11-20T09:00:00Z,
far-future,running,2026-11-21T00:00:00Z,2099-01-01T00:00:00Z,
skewed,running,2026-11-21T11:00:00Z,2026-11-21T13:00:00Z,
"""


def test_impossible_job_times_are_rejected_naming_the_field(tmp_path):
    result = read_jobs(_write(tmp_path, "jobs.csv", TIMES), earliest=FLOOR, now=NOW)
    # a clock one hour ahead of `now` is within the 24 h tolerance
    assert sorted(result.accepted["job_id"]) == ["ok", "skewed"]
    reasons = _reasons(result)
    floor = "before 2023-01-01, the earliest time kept: not a real job time"
    assert reasons["2"] == f"submitted_at {floor}; started_at {floor}"
    assert reasons["3"] == f"started_at {floor}"
    assert reasons["4"] == f"submitted_at {floor}; started_at {floor}"
    assert reasons["5"] == "ended_at before started_at"
    assert reasons["6"] == "started_at before submitted_at"
    assert reasons["7"] == "started_at in the future (later than now + 24 h)"
    assert result.rows_in == 8


def test_job_times_default_floor_and_future_tolerance(tmp_path):
    path = _write(tmp_path, "jobs.csv", TIMES)
    # without a partition start the epoch is still refused; without `now` nothing is "in the future"
    accepted = set(read_jobs(path).accepted["job_id"])
    assert accepted == {"ok", "before-floor", "far-future", "skewed"}
    tight = set(read_jobs(path, earliest=FLOOR, now=NOW, future_tolerance_hours=0.5).accepted["job_id"])
    assert tight == {"ok"}


def test_an_impossible_later_row_does_not_supersede_a_valid_one(tmp_path):
    text = "job_id,status,started_at\nj1,running,2026-11-20T08:00:00Z\nj1,running,1970-01-01T00:00:00Z\n"
    result = read_jobs(_write(tmp_path, "jobs.csv", text), earliest=FLOOR, now=NOW)
    assert result.accepted["started_at"].tolist() == [pd.Timestamp("2026-11-20T08:00:00Z")]


# ---- files that are not a registry ----------------------------------------------------------------


def _utf16(tmp_path: Path, name: str, bom: bool) -> Path:
    text = "job_id,status\n" + "".join(f"j{i},running\n" for i in range(140))
    path = tmp_path / name
    path.write_bytes(text.encode("utf-16" if bom else "utf-16-le"))
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: _utf16(p, "jobs.csv", bom=True), "UTF-16 text (byte-order mark FF FE), not UTF-8"),
        (lambda p: _utf16(p, "jobs.csv", bom=False), "UTF-16 text without a byte-order mark"),
        (lambda p: _utf16(p, "jobs.jsonl", bom=True), "UTF-16 text (byte-order mark FF FE), not UTF-8"),
        (lambda p: _write_bytes(p, "jobs.csv", bytes(range(256)) * 40), "binary, not a text table"),
        (lambda p: _write_bytes(p, "jobs.csv", b"PK\x03\x04" + bytes(200)), "ZIP archive (an Excel .xlsx"),
        (lambda p: _write_bytes(p, "jobs.jsonl", '{"job_id": "caf\u00e9"}\n'.encode("latin-1")),
         "not UTF-8 text (byte 0xe9 at offset 15)"),
        (lambda p: _write(p, "jobs.csv", "name,colour\n" + "x,red\n" * 141), "no job_id column"),
        (lambda p: _write(p, "jobs.jsonl", '{"name": "x"}\n' * 141), "no job_id column"),
    ],
)
def test_a_file_that_is_not_a_registry_is_one_rejection_saying_why(tmp_path, make, expected):
    path = make(tmp_path)
    result = read_jobs(path)
    assert result.accepted.empty
    assert len(result.rejected) == 1, result.rejection_counts()
    reason = result.rejected["reason"].iloc[0]
    assert expected in reason, reason


def test_latin1_csv_is_still_read(tmp_path):
    path = _write_bytes(tmp_path, "jobs.csv", "job_id,name\nj1,caf\u00e9\n".encode("latin-1"))
    assert read_jobs(path).accepted["name"].tolist() == ["caf\u00e9"]


def _write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path
