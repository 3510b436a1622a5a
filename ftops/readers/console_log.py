"""Console logs -> `console_tails`: the last lines each job printed, where the cause of a failure is.

Three sources, one row per job each:

- a log file in the inbox's `logs/` folder (`logs/<job_id>.log`, any text, optionally compressed:
  `.gz`, `.bz2`, `.xz`, `.zst`, `.zip`). The job id is the file name without its suffixes
  (`ft-7.log.gz` -> `ft-7`); given `job_id` wins.
- a W&B run's `output.log` (its console, beside `history.csv`): the job id is the run folder's,
  `wandb.run_job_id`, the id the run's samples and job row have.
- a tracker export's `runs_console_tail.csv` (columns `run_id` or `job_id`, `console_tail`,
  optionally `exit_code`, `run_dir`): one row per run. A run id is the id of the run's folder in the
  same export where there is one (`<export>/runs/<id>/`, `<export>/<id>/`, or W&B's
  `run-YYYYMMDD_HHMMSS-<id>`), so the tail meets the job row `wandb_job` made from that folder.

Fields. `tail`: the last TAIL_LINES lines, "\\n"-joined, after what a terminal would show: colour and
cursor escape codes removed, a line redrawn with carriage returns (progress bars) kept in its last
state, each line cut to MAX_LINE_CHARS. `lines`: the log's line count (for a tracker export, which holds
only a tail, the lines of that tail). `ts`: the last timestamp in the tail (ISO 8601 date and time, a
naive one taken as UTC) when it is plausible (after 2000, not after the file's modification time plus
a day of clock and time-zone skew), else the file's modification time. `exit_code`: from the tracker
export's `exit_code` column; a plain log has none (job_failures reads "exit code N" lines itself).

Accounting (readers.base): a log file is one record and gives one row; a console tail table's
records are its CSV rows (readers.records counts them), each an accepted row or a rejection (no run
id; an exit code that is not a whole number). A file that is not text (binary, UTF-16, mostly
undecodable bytes) is one rejected record saying so. Large logs are streamed: one pass counting
lines, keeping only the last MAX_TAIL_BYTES.
"""

from __future__ import annotations

import os
import re
from collections import deque
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ftops.readers.base import ReaderError, ReadResult, rejected_file, rejected_rows
from ftops.readers.formats import COMPRESSION_SUFFIXES, DECOMPRESSION_ERRORS, open_decompressed, utf8_problem
from ftops.readers.records import count_records
from ftops.readers.sniff import not_text_reason
from ftops.readers.tabular import Columns, add_reason, bad_line_rejects, no_reason, parse_integers, read_tabular
from ftops.readers.wandb import run_job_id
from ftops.schemas import CONSOLE_TAILS, utc_timestamp, validate

TABLE = CONSOLE_TAILS.name
TAIL_LINES = 200
MAX_LINE_CHARS = 2000  # a CUDA OOM message is ~600 characters; a minified JSON dump is not a log line
WANDB_OUTPUT = "output.log"
CONSOLE_TAIL_TABLE = "runs_console_tail.csv"
# bytes kept from the end of a log: 200 lines of MAX_LINE_CHARS with room for redrawn progress bars
MAX_TAIL_BYTES = 4 << 20
_BLOCK = 1 << 20
# a log with a few stray bytes (a cut multi-byte character, a Latin-1 path) is still a log
MAX_UNDECODABLE_RATIO = 0.01
EARLIEST_LOG_TS = pd.Timestamp("2000-01-01", tz="UTC")
CLOCK_SKEW = pd.Timedelta(days=1)

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_REDRAWN = re.compile(r"[^\n]*\r(?=[^\n\r])")  # everything up to a line's last carriage return
_TIMESTAMP = r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)(?!\d)"
_LONG_LINE = re.compile(rf"(?m)^([^\n]{{{MAX_LINE_CHARS}}})[^\n]+")
_LAST_TIMESTAMP = re.compile(r"\A(?s:.*)" + _TIMESTAMP)
_RUN_FOLDER = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-([A-Za-z0-9]+)$")


def is_console_tail_table(path: str | os.PathLike) -> bool:
    """A tracker's per-run console tail table (`runs_console_tail.csv`), rather than a log."""
    return _without_compression(PurePosixPath(str(path)).name.lower()) == CONSOLE_TAIL_TABLE


def count_console_records(path: str | os.PathLike) -> int | None:
    """Records of a console input, from its bytes: a tail table's CSV rows; a log is one record."""
    if is_console_tail_table(path):
        return count_records(str(path))
    return 1 if Path(path).is_file() else None


def job_id_for_log(path: str | os.PathLike) -> str:
    """The job a log file belongs to: a W&B `output.log`'s run folder, else the name without suffixes."""
    p = Path(path)
    name = _without_compression(p.name)
    if name.lower() == WANDB_OUTPUT:
        return run_job_id(p.parent)
    stem = PurePosixPath(name).stem
    return stem or name


def read_console_log(path: str | os.PathLike, job_id: str | None = None, *,
                     tail_lines: int = TAIL_LINES) -> ReadResult:
    """The console tail row(s) of a log file or a console tail table (see the module doc). Never raises
    for bad input: an unreadable or binary file is one rejected record with the reason."""
    source = str(path)
    p = Path(path)
    if not p.is_file():
        return _refuse(source, "file not found")
    try:
        if is_console_tail_table(p):
            return _read_tail_table(p, source, tail_lines)
        return _read_log(p, source, job_id, tail_lines)
    except ReaderError as exc:
        return _refuse(source, str(exc))
    except (OSError, ValueError, *DECOMPRESSION_ERRORS) as exc:
        return _refuse(source, f"cannot read the log: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------
# a log file


def _read_log(p: Path, source: str, job_id: str | None, tail_lines: int) -> ReadResult:
    if not p.name.lower().endswith(COMPRESSION_SUFFIXES):
        reason = not_text_reason(p)
        if reason is not None:
            raise ReaderError(reason.replace("a text table", "a text log"))
    data, newlines, starts_at_file_start, ends_with_newline = _last_bytes(p)
    if starts_at_file_start and b"\x00" in data[:65536]:
        raise ReaderError("the file is binary, not a text log (NUL bytes)")
    if not starts_at_file_start:
        data = data[data.find(b"\n") + 1:]  # the first kept line is cut: start at a whole line
    text = _decode(data)
    lines = newlines + (1 if data and not ends_with_newline else 0)
    tail = _normalise(pd.Series([text], dtype="string"), tail_lines)
    mtime = pd.Timestamp(p.stat().st_mtime, unit="s", tz="UTC")
    row = pd.DataFrame({
        "job_id": [job_id or job_id_for_log(p)],
        "ts": _log_time(tail, mtime),
        "tail": tail.where(tail != "", pd.NA),
        "lines": [lines],
        "exit_code": [pd.NA],
        "source": [source],
    })
    return ReadResult(TABLE, validate(row, CONSOLE_TAILS))


def _last_bytes(p: Path) -> tuple[bytes, int, bool, bool]:
    """(the last MAX_TAIL_BYTES or so of the file's data, its newline count, whether those bytes start
    the file, whether the data ends with a newline), in one streamed pass."""
    kept: deque[bytes] = deque()
    size = 0
    newlines = 0
    dropped = False
    last = b""
    with open_decompressed(p) as fh:
        while True:
            block = fh.read(_BLOCK)
            if not block:
                break
            newlines += block.count(b"\n")
            last = block
            kept.append(block)
            size += len(block)
            while size - len(kept[0]) >= MAX_TAIL_BYTES:
                size -= len(kept.popleft())
                dropped = True
    data = b"".join(kept)
    if len(data) > MAX_TAIL_BYTES:
        data = data[-MAX_TAIL_BYTES:]
        dropped = True
    return data, newlines, not dropped, last.endswith(b"\n")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        if text.count("\ufffd") > MAX_UNDECODABLE_RATIO * max(len(text), 1):
            raise ReaderError(utf8_problem(data) or "not UTF-8 text") from None
        return text


# ---------------------------------------------------------------------------------------------
# a tracker's console tail table


def _read_tail_table(p: Path, source: str, tail_lines: int) -> ReadResult:
    raw = read_tabular(p)
    columns = Columns(raw.frame)
    ids = columns.get("job_id", "run_id")
    text = columns.get("console_tail", "tail")
    if ids is None or text is None:
        raise ReaderError(f"not a console tail table: needs a run_id (or job_id) and a console_tail column; "
                          f"got {list(raw.frame.columns)}")
    frame = raw.frame
    index = frame.index
    run_id = ids.astype("string").str.strip().replace("", pd.NA)
    if columns.has("job_id"):
        job = run_id
    else:
        run_dir = columns.get("run_dir")
        job = _run_folder_ids(p.parent, run_id,
                              None if run_dir is None else run_dir.astype("string").str.strip())
    exit_code, bad_exit = parse_integers(columns.get("exit_code"), index)
    reason = add_reason(no_reason(index), job.isna().to_numpy(), "no run_id (or job_id)")
    reason = add_reason(reason, bad_exit.to_numpy(), "exit_code is not a whole number")
    bad = reason.notna().to_numpy()
    tail = _normalise(text.astype("string"), tail_lines)
    mtime = pd.Timestamp(p.stat().st_mtime, unit="s", tz="UTC")
    rows = pd.DataFrame({
        "job_id": job,
        "ts": _log_time(tail, mtime),
        "tail": tail.where(tail != "", pd.NA),
        "lines": (tail.str.count("\n") + 1).where(tail.fillna("") != "", 0).astype("Int64"),
        "exit_code": exit_code,
        "source": source,
    }, index=index)
    rejected = rejected_rows(frame[bad], reason[bad], source=source, table=TABLE, record=raw.record[bad])
    bad_lines = bad_line_rejects(raw, source, TABLE)
    accepted = validate(rows[~bad], CONSOLE_TAILS)
    return ReadResult(TABLE, accepted, pd.concat([rejected, bad_lines], ignore_index=True))


def _run_folder_ids(export: Path, run_id: pd.Series, run_dir: pd.Series | None) -> pd.Series:
    """The job id of each run: its folder's name in the export where one exists, else the run id."""
    names: set[str] = set()
    for folder in (export, export / "runs"):
        if folder.is_dir():
            names.update(child.name for child in folder.iterdir() if child.is_dir())
    by_run_id = {m.group(1): name for name in names if (m := _RUN_FOLDER.match(name))}
    by_run_id.update({name: name for name in names})  # a folder named after the run id itself wins
    job = run_id.map(by_run_id).astype("string")
    if run_dir is not None:
        job = run_dir.where(run_dir.isin(names), job).astype("string")
    return job.fillna(run_id)


# ---------------------------------------------------------------------------------------------
# shared


def _normalise(text: pd.Series, tail_lines: int) -> pd.Series:
    """What a terminal shows of each text, its last `tail_lines` lines, each cut to MAX_LINE_CHARS."""
    # object dtype: Python's `re` (Arrow strings use RE2, which has no look-ahead)
    text = text.astype(object).str.replace("\r\n", "\n", regex=False)
    text = text.str.replace(_ANSI, "", regex=True).str.replace(_REDRAWN, "", regex=True)
    text = text.str.replace("\r", "", regex=False).str.rstrip("\n")
    # a line longer than MAX_LINE_CHARS keeps its start (an error message starts with its type)
    text = text.str.replace(_LONG_LINE, r"\1", regex=True)
    return text.str.split("\n").str[-tail_lines:].str.join("\n").astype("string")


def _log_time(tail: pd.Series, mtime: pd.Timestamp) -> pd.Series:
    """The last plausible timestamp of each tail (see the module doc), else the file's modification time."""
    found = tail.astype(object).str.extract(_LAST_TIMESTAMP, expand=False).str.replace(",", ".", regex=False)
    ts = pd.to_datetime(found, utc=True, errors="coerce", format="ISO8601")
    plausible = (ts >= EARLIEST_LOG_TS) & (ts <= mtime + CLOCK_SKEW)
    return ts.where(plausible.to_numpy(dtype=bool, na_value=False), mtime).astype("datetime64[ns, UTC]")


def _without_compression(name: str) -> str:
    lower = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _refuse(source: str, reason: str) -> ReadResult:
    return ReadResult(TABLE, CONSOLE_TAILS.empty(), rejected_file(source, TABLE, reason))


__all__ = ["CONSOLE_TAIL_TABLE", "TAIL_LINES", "WANDB_OUTPUT", "count_console_records", "is_console_tail_table",
           "job_id_for_log", "read_console_log"]
