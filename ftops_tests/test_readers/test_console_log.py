"""Console logs: plain and compressed logs, W&B output.log, console tail tables, bad files, and the inbox kind."""

from __future__ import annotations

import csv
import gzip
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

import ftops.readers.console_log as console_log
from ftops.readers.console_log import count_console_records, job_id_for_log, read_console_log
from ftops.readers.inbox import classify
from ftops.schemas import CONSOLE_TAILS, validate
from ftops.staging import Staging

MTIME = pd.Timestamp("2026-11-21T02:00:00Z")


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    if path.name.endswith(".gz"):
        text = gzip.compress(text)
    path.write_bytes(text)
    os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    return path


def _log(lines: int = 300) -> str:
    body = [f"[2026-11-20 23:{i // 60:02d}:{i % 60:02d},120] INFO step {i} loss 0.5" for i in range(lines)]
    progress = "\r".join(f" {p:3d}%|███       | {p}/100 [00:0{p % 10}<00:10]" for p in range(0, 101, 10))
    return "\n".join([*body, progress, "\x1b[31mtorch.cuda.OutOfMemoryError: CUDA out of memory.\x1b[0m"]) + "\n"


def test_a_log_file_gives_one_row_with_the_last_200_lines(tmp_path):
    path = _write(tmp_path / "logs" / "ft-007.log", _log())
    result = read_console_log(path)
    assert result.rejected.empty and result.records_accounted == 1 == count_console_records(path)
    row = result.accepted.iloc[0]
    assert row["job_id"] == "ft-007" and row["source"] == str(path)
    lines = row["tail"].split("\n")
    assert len(lines) == 200 and row["lines"] == 302
    assert lines[-1] == "torch.cuda.OutOfMemoryError: CUDA out of memory."  # colour codes removed
    assert lines[-2].startswith(" 100%|")  # the progress bar in its last state
    assert lines[0] == "[2026-11-20 23:01:42,120] INFO step 102 loss 0.5"
    assert row["ts"] == pd.Timestamp("2026-11-20T23:04:59.120Z")  # the last timestamp in the tail
    assert pd.isna(row["exit_code"])
    validate(result.accepted, CONSOLE_TAILS)


def test_a_compressed_log_and_a_given_job_id(tmp_path):
    path = _write(tmp_path / "ft-8.log.gz", "starting\nValueError: bad config\n")
    assert job_id_for_log(path) == "ft-8"
    row = read_console_log(path).accepted.iloc[0]
    assert (row["job_id"], row["tail"], row["lines"]) == ("ft-8", "starting\nValueError: bad config", 2)
    assert row["ts"] == MTIME  # no timestamp in the log: the file's modification time
    assert read_console_log(path, job_id="other").accepted.loc[0, "job_id"] == "other"


def test_a_timestamp_after_the_file_was_written_is_not_believed(tmp_path):
    path = _write(tmp_path / "j.log", "2031-01-01T00:00:00Z clock of a broken node\n")
    assert read_console_log(path).accepted.loc[0, "ts"] == MTIME


def test_a_long_log_is_streamed_and_only_its_end_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(console_log, "_BLOCK", 64)
    monkeypatch.setattr(console_log, "MAX_TAIL_BYTES", 1000)
    text = "".join(f"line {i:05d}\n" for i in range(5000)) + "KeyError: 'labels'"  # no final newline
    row = read_console_log(_write(tmp_path / "big.log", text)).accepted.iloc[0]
    tail = row["tail"].split("\n")
    assert row["lines"] == 5001 and tail[-1] == "KeyError: 'labels'"
    assert all(t.startswith("line ") and len(t) == 10 for t in tail[:-1])  # no line cut in half
    assert tail[-2] == "line 04999"


def test_an_empty_log_is_a_job_that_printed_nothing(tmp_path):
    row = read_console_log(_write(tmp_path / "quiet.log", "")).accepted.iloc[0]
    assert pd.isna(row["tail"]) and row["lines"] == 0


@pytest.mark.parametrize(("content", "why"), [
    (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00binary", "binary"),
    ("torch.cuda.OutOfMemoryError".encode("utf-16"), "UTF-16"),
    (bytes(range(128, 256)) * 20, "not UTF-8"),
])
def test_a_file_that_is_not_text_is_one_rejected_record(tmp_path, content, why):
    path = _write(tmp_path / "logs" / "bad.log", content)
    result = read_console_log(path)
    assert result.accepted.empty and len(result.rejected) == 1 and result.whole_file_rejected
    assert why in result.rejected.loc[0, "reason"]
    assert count_console_records(path) == 1


def test_a_wandb_output_log_belongs_to_its_run_folder(tmp_path):
    path = _write(tmp_path / "export" / "runs" / "ab12cd34" / "output.log", "KeyboardInterrupt\n")
    assert read_console_log(path).accepted.loc[0, "job_id"] == "ab12cd34"


def test_a_console_tail_table_gives_one_row_per_run_with_its_folder_id(tmp_path):
    export = tmp_path / "export"
    (export / "runs" / "run-20231102_032820-iqu955sp").mkdir(parents=True)
    (export / "runs" / "v7i3k2p0").mkdir()
    table = pd.DataFrame({
        "run_id": ["iqu955sp", "v7i3k2p0", "zzzz0000", None, "bad1"],
        "exit_code": ["1", "255", None, "0", "one"],
        "first_error_pattern": ["CUDA_OOM", "KeyboardInterrupt", None, None, None],
        "console_tail": ["Traceback (most recent call last):\r\n  File \"t.py\"\ntorch.cuda.OutOfMemoryError: x",
                         "100%|█| 3/3\rKeyboardInterrupt", None, "x", "y"],
    })
    path = export / "runs_console_tail.csv"
    table.to_csv(path, index=False, quoting=csv.QUOTE_ALL)  # a bare carriage return ends a line for pandas
    result = read_console_log(path)
    assert count_console_records(path) == 5 == result.records_accounted
    rows = result.accepted.set_index("job_id")
    assert list(rows.index) == ["run-20231102_032820-iqu955sp", "v7i3k2p0", "zzzz0000"]
    assert rows["exit_code"].tolist() == [1, 255, pd.NA]
    assert rows.loc["v7i3k2p0", "tail"] == "KeyboardInterrupt" and rows.loc["v7i3k2p0", "lines"] == 1
    assert rows.loc["run-20231102_032820-iqu955sp", "lines"] == 3
    assert pd.isna(rows.loc["zzzz0000", "tail"]) and rows.loc["zzzz0000", "lines"] == 0
    assert sorted(result.rejected["reason"]) == ["exit_code is not a whole number", "no run_id (or job_id)"]
    assert sorted(result.rejected["record"]) == ["4", "5"]


def test_a_table_without_the_columns_is_refused_whole(tmp_path):
    path = tmp_path / "runs_console_tail.csv"
    path.write_text("a,b\n1,2\n")
    result = read_console_log(path)
    assert result.whole_file_rejected and "console_tail" in result.rejected.loc[0, "reason"]


# --- the inbox kind ------------------------------------------------------------------------------------

def test_inbox_classifies_console_logs():
    assert classify("logs/ft-1.log") == "logs"
    assert classify("logs/nested/ft-1.txt.gz") == "logs"
    assert classify("metrics/export/runs/ab12/output.log") == "logs"
    assert classify("metrics/export/runs_console_tail.csv") == "logs"
    assert classify("logs/.ft-1.log.part") is None
    assert classify("metrics/export/runs_summary.csv") is None  # still a companion of the job rows
    assert classify("metrics/export/runs/ab12/history.csv") == "metrics"


def test_a_log_in_the_inbox_is_staged_once(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    _write(inbox / "logs" / "ft-003.log", "torch.cuda.OutOfMemoryError: CUDA out of memory.\n")
    staging = Staging(tmp_path / "warehouse", workers=1).at(MTIME)
    staged = staging.stage_inbox(inbox)
    assert [(m.kind, m.relpath, m.accepted, m.rejected, m.balanced) for m in staged] == [
        ("logs", "logs/ft-003.log", 1, 0, True)]
    assert staged[0].min_ts is None  # console tails are not cut into partitions
    df, files = staging.load("logs")
    assert df["job_id"].tolist() == ["ft-003"] and df["source"].tolist() == ["logs/ft-003.log"]

    calls = []
    real = console_log.read_console_log
    monkeypatch.setattr(console_log, "read_console_log", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert staging.stage_inbox(inbox) == []  # unchanged: not read again
    assert calls == []
    path = _write(inbox / "logs" / "ft-003.log", "KeyboardInterrupt\n")
    os.utime(path, (MTIME.timestamp() + 60, MTIME.timestamp() + 60))  # a rewrite is a new version
    assert len(staging.stage_inbox(inbox)) == 1 and len(calls) == 1
    df, files = staging.load("logs")
    assert df["tail"].tolist() == ["KeyboardInterrupt"] and len(files) == 1


def test_a_binary_log_in_the_inbox_is_a_balanced_rejection(tmp_path):
    inbox = tmp_path / "inbox"
    _write(inbox / "logs" / "core.log", b"\x00\x01\x02" * 100)
    staging = Staging(tmp_path / "warehouse", workers=1).at(MTIME)
    (staged,) = staging.stage_inbox(inbox)
    assert (staged.accepted, staged.rejected, staged.file_rejected, staged.balanced) == (0, 1, True, True)
    rejected, _ = staging.load_rejected()
    assert rejected["table"].tolist() == ["console_tails"]


def test_the_real_console_tail_table_stages_balanced(tmp_path, realdata):
    inbox = tmp_path / "inbox"
    target = inbox / "metrics" / "alpaca" / "runs_console_tail.csv"
    target.parent.mkdir(parents=True)
    shutil.copy(realdata / "runs" / "wandb_stanford_alpaca_early" / "runs_console_tail.csv", target)
    (staged,) = Staging(tmp_path / "warehouse", workers=1).at(MTIME).stage_inbox(inbox)
    assert (staged.kind, staged.records_in, staged.records_out, staged.accepted, staged.balanced) == (
        "logs", 82, 82, 82, True)
