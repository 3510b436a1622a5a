"""`ftops check-run`: the monitoring detectors on one run's logs, outside Dagster.

For a person triaging a run: point it at a `trainer_state.json`, a W&B run folder (or its
`history.csv` / `system_stats.csv`), a metric JSONL/CSV export, a folder of exports (a restarted
job leaves one per start under `<inbox>/metrics/<job_id>/`) or a whole inbox, and it prints what
the asset graph's `anomalies` asset would say about it, with the same policy (`--config ftops.yaml`).
A folder stands for the metric files the inbox would read in it, recursively (see `folder_files`).

Exit codes: 0 when the check ran, whether it found alerts or not (alerts are the output, not a
failure); 2 when an input cannot be read at all or the policy file is invalid, with one line per
reason on stderr. Rejected rows inside a readable file do not fail the check: they are counted in
the footer (on stderr with --json), because a triage tool that refuses a run over one malformed
line is less useful than one that says how much it skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ftops.json_output import json_value
from ftops.policy import MonitoringPolicy, Policy, PolicyError, load_policy
from ftops.readers.base import ReadResult
from ftops.schemas import ANOMALIES, METRIC_SAMPLES, REJECTED_RECORDS, utc_timestamp

PROG = "ftops check-run"
SEVERITY_ORDER: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
# the keys every --json object carries, in this order, before the remaining anomaly columns
JSON_KEYS: tuple[str, ...] = (
    "job_id", "rule", "severity", "category", "metric", "device", "first_step", "first_ts",
    "last_step", "last_ts", "value", "threshold", "message",
)
_TABLE_HEADERS = ("job", "rule", "severity", "first step/ts", "value", "threshold", "message")
_WANDB_CSVS = ("history.csv", "system_stats.csv")
_MAX_REASON = 400  # a parser error can quote a whole header; the line must stay readable
_MIN_MESSAGE_WIDTH = 20  # below this a cut message says nothing; let the line wrap


@dataclass(frozen=True)
class CheckInput:
    """What the paths held: the samples to check, the paths that could not be read, rejected rows."""

    samples: pd.DataFrame
    problems: list[str]  # "<path>: <reason>", one per unreadable input
    rejected: pd.DataFrame  # REJECTED_RECORDS rows that did not make an input unreadable
    files_read: int = 0  # files and W&B run folders read, after folders were expanded


def _is_trainer_state(path: Path) -> bool:
    # Checkpoints are often copied out under other names (state.json, run3.json); the content says
    # what it is. A metric export is JSON Lines or a list, never one object with a log_history.
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return text.lstrip().startswith("{") and '"log_history"' in text


def _is_wandb_run(folder: Path) -> bool:
    # the W&B reader's own test: one file W&B writes into every run folder, even a run that logged nothing
    from ftops.readers.wandb import RUN_FILES

    return any((folder / name).is_file() for name in RUN_FILES)


def folder_files(folder: Path) -> list[Path]:
    """The metric files an inbox or a folder of exports stands for, recursively, in path order.

    An inbox (a folder with `metrics/` in it) stands for what is under `metrics/`. Left out, as the
    inbox leaves them out: hidden files, files still being written (`.part`, `.tmp`), files that
    travel with exports but hold no samples, and types no metric reader reads.
    """
    from ftops.readers.inbox import classify, metric_format

    root = folder / "metrics" if (folder / "metrics").is_dir() else folder
    files = []
    for path in sorted(root.rglob("*")):
        relpath = path.relative_to(root).as_posix()
        if (path.is_file() and classify(f"metrics/{relpath}") == "metrics"
                and metric_format(relpath) != "unsupported"):
            files.append(path)
    return files


def _read_one(path: Path) -> ReadResult:
    """Read one input path with the reader the inbox would use for it."""
    from ftops.readers.inbox import metric_format, reader_for

    if path.is_dir():
        from ftops.readers.wandb import read_wandb_run

        return read_wandb_run(path)
    if metric_format(str(path)) == "metric_export" and path.suffix.lower() == ".json" and _is_trainer_state(path):
        from ftops.readers.trainer_state import read_trainer_state

        return read_trainer_state(path)
    return reader_for("metrics", str(path))()


def _fatal_rejections(result: ReadResult) -> pd.DataFrame:
    """Whole-file rejections that mean the input could not be read.

    A corrupt wandb-metadata.json only costs the host name and start-time fallback (the W&B
    reader still reads the CSVs), so it is reported with the row rejections instead.
    """
    from ftops.readers.wandb import METADATA

    rej = result.rejected
    whole = rej["record"].isna()
    companion = rej["source"].astype(str).str.endswith(METADATA)
    return rej[whole & ~companion]


def _reason(raw: str | Path, source: str, reason: str) -> str:
    # inside a run folder, say which of its files failed
    named = reason if Path(source) == Path(raw) else f"{Path(source).name}: {reason}"
    named = _one_line(named)
    return named if len(named) <= _MAX_REASON else named[: _MAX_REASON - 1] + "…"


def _inputs(paths: Sequence[str | Path], problems: list[str]) -> list[tuple[str | Path, Path]]:
    """(name to report, path to read) per input: W&B run folders and files as given, other folders expanded."""
    inputs: list[tuple[str | Path, Path]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(f"{raw}: file or folder not found")
        elif path.is_file() or _is_wandb_run(path):
            inputs.append((raw, path))
        elif files := folder_files(path):
            inputs.extend((file, file) for file in files)
        else:
            problems.append(f"{raw}: no metric files in this folder (expected a W&B run folder, an inbox with "
                            "metrics/, or a folder of trainer_state.json, metric exports or Prometheus text files)")
    return inputs


def read_paths(paths: Sequence[str | Path]) -> CheckInput:
    """Read every path into one `metric_samples` table; never raises for bad input."""
    samples: list[pd.DataFrame] = []
    rejected: list[pd.DataFrame] = []
    problems: list[str] = []
    seen: set[Path] = set()
    inputs = _inputs(paths, problems)
    # a run folder reads its own CSVs: given as well, they would double every sample
    runs = {path.resolve() for _, path in inputs if path.is_dir()}
    for raw, path in inputs:
        key = path.resolve()
        if key in seen or (path.is_file() and key.parent in runs and key.name in _WANDB_CSVS):
            continue
        seen.add(key)
        result = _read_one(path)
        fatal = _fatal_rejections(result)
        if not fatal.empty:
            reasons = "; ".join(dict.fromkeys(_reason(raw, src, why) for src, why in
                                              zip(fatal["source"].astype(str), fatal["reason"].astype(str))))
            problems.append(f"{raw}: {reasons}")
            continue
        if not result.accepted.empty:
            samples.append(result.accepted)
        if not result.rejected.empty:
            rejected.append(result.rejected)
    return CheckInput(
        pd.concat(samples, ignore_index=True) if samples else METRIC_SAMPLES.empty(),
        problems,
        pd.concat(rejected, ignore_index=True) if rejected else REJECTED_RECORDS.empty(),
        len(seen),
    )


def _monitoring(policy: Policy | MonitoringPolicy | None) -> MonitoringPolicy:
    if policy is None:
        return MonitoringPolicy()
    return policy.monitoring if isinstance(policy, Policy) else policy


def _severity_rank(severity: pd.Series) -> pd.Series:
    # astype: on an empty string column, map() keeps the string dtype and comparisons would fail
    return severity.astype(object).map(SEVERITY_ORDER).astype("int64")


def detect(samples: pd.DataFrame, policy: Policy | MonitoringPolicy | None = None,
           jobs: pd.DataFrame | None = None, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """The anomalies of `samples`, most severe first (ANOMALIES columns).

    With a job registry (`jobs`), the liveness rules run too (job_preempted, heartbeat_lost), judged
    at `as_of`: by default the newest sample, so an old export is not judged by today's clock.
    """
    # imported here so `ftops --help` and the other subcommands do not pay for the detectors
    from ftops.monitoring.anomalies import detect_anomalies
    from ftops.monitoring.liveness import liveness_anomalies, signs_of_life_from_samples

    parts = [detect_anomalies(samples, policy=_monitoring(policy))] if not samples.empty else []
    if jobs is not None and not jobs.empty:
        now = as_of if as_of is not None else (samples["ts"].max() if not samples.empty else None)
        if now is not None and not pd.isna(now):
            parts.append(liveness_anomalies(jobs, signs_of_life_from_samples(samples), now, _monitoring(policy)))
    parts = [p for p in parts if len(p)]
    if not parts:
        return ANOMALIES.empty()
    anomalies = pd.concat(parts, ignore_index=True)
    rank = _severity_rank(anomalies["severity"])
    return (anomalies.assign(_rank=-rank)
            .sort_values(["_rank", "job_id", "first_ts", "rule"], kind="stable")
            .drop(columns="_rank").reset_index(drop=True))


def check_paths(paths: Sequence[str | Path], policy: Policy | MonitoringPolicy | None = None,
                jobs: pd.DataFrame | None = None, as_of: pd.Timestamp | None = None
                ) -> tuple[pd.DataFrame, list[str]]:
    """Anomalies of the runs at `paths` and the paths that could not be read ("<path>: <reason>").

    Samples of all readable paths are checked together, so a W&B run's history.csv and
    system_stats.csv given separately are one run (their job_id is the run folder's name).
    """
    found = read_paths(paths)
    return detect(found.samples, policy, jobs, as_of), found.problems


# --- output ---------------------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def anomalies_to_records(anomalies: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready objects: JSON_KEYS first, then the other anomaly columns; nulls for missing values."""
    order = [c for c in JSON_KEYS if c in anomalies.columns]
    order += [c for c in anomalies.columns if c not in order]
    records = anomalies[order].astype(object).to_dict(orient="records")
    return [{k: json_value(v) for k, v in r.items()} for r in records]


def _fmt_number(x: Any) -> str:
    if x is None or pd.isna(x):
        return "-"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def _fmt_when(row: Any) -> str:
    if pd.notna(row.first_step):
        return f"step {int(row.first_step)}"
    return pd.Timestamp(row.first_ts).strftime("%Y-%m-%d %H:%M:%S")


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _output_width() -> int | None:
    """The terminal's width, or None when stdout goes to a file or pipe (nothing to fit, keep it all)."""
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return shutil.get_terminal_size((120, 24)).columns
    return None


def format_table(anomalies: pd.DataFrame, width: int | None = None) -> str:
    """A plain-text table of the anomalies; with `width`, the message column is cut to fit it."""
    from tabulate import tabulate

    rows = []
    for r in anomalies.itertuples(index=False):
        job = str(r.job_id) + (f" gpu{r.device}" if isinstance(r.device, str) and r.device else "")
        message = _one_line(r.message)
        # the message repeats the job id that has its own column
        prefix = f"{r.job_id}: "
        message = message[len(prefix):] if message.startswith(prefix) else message
        rows.append([job, r.rule, r.severity, _fmt_when(r), _fmt_number(r.value), _fmt_number(r.threshold), message])
    if not rows:
        return ""
    if width is not None:
        # tabulate's "simple" format pads each header by 2 and puts 2 spaces between columns
        fixed = sum(max(len(h) + 2, *(len(str(row[i])) for row in rows)) + 2
                    for i, h in enumerate(_TABLE_HEADERS[:-1]))
        room = max(width - fixed, _MIN_MESSAGE_WIDTH)
        for row in rows:
            row[-1] = _truncate(row[-1], room)
    return tabulate(rows, headers=_TABLE_HEADERS, tablefmt="simple", disable_numparse=True)


def _rejection_note(rejected: pd.DataFrame) -> str | None:
    if rejected.empty:
        return None
    counts = rejected["reason"].astype(str).map(_one_line).value_counts()
    top = "; ".join(f"{n}× {reason}" for reason, n in counts.head(3).items())
    more = f"; {len(counts) - 3} other reasons" if len(counts) > 3 else ""
    return f"{len(rejected)} rows rejected while reading ({top}{more})"


def _summary(anomalies: pd.DataFrame, samples: pd.DataFrame, n_paths: int, n_files: int | None = None) -> str:
    counts = anomalies["severity"].value_counts()
    by = ", ".join(f"{int(counts[s])} {s}" for s in ("critical", "warning", "info") if s in counts)
    jobs = samples["job_id"].nunique() if not samples.empty else 0
    alerts = f"{len(anomalies)} alert{'s' if len(anomalies) != 1 else ''}" + (f" ({by})" if by else "")
    # a folder is several files: say how many were read, so a missing one shows
    files = "" if n_files is None or n_files == n_paths else f"{n_files} file{'s' if n_files != 1 else ''} in "
    return (f"{alerts} in {len(samples):,} samples of {jobs} job{'s' if jobs != 1 else ''} "
            f"from {files}{n_paths} path{'s' if n_paths != 1 else ''}")


# --- command --------------------------------------------------------------------------------------

def add_check_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `check-run` subcommand on an argparse subparsers object; `func` runs it."""
    parser = subparsers.add_parser(
        "check-run",
        help="run the monitoring detectors on one run's logs and print the alerts",
        description="Run the monitoring detectors on run logs outside Dagster. PATH is a trainer_state.json, "
                    "a W&B run folder or its history.csv/system_stats.csv, a metric JSONL/CSV/Parquet "
                    "export, a folder of such files (read recursively) or an inbox; samples of all paths are "
                    "checked together. Exit 0 when the check ran (alerts or not), 2 when an input or the "
                    "policy cannot be read.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="run file, W&B run folder, folder of metric exports or inbox")
    parser.add_argument("--json", action="store_true", help="print a JSON list of alert objects instead of a table")
    parser.add_argument("--config", metavar="FTOPS_YAML", help="policy file (default: the built-in thresholds)")
    parser.add_argument("--min-severity", choices=tuple(SEVERITY_ORDER), default="info",
                        help="leave out alerts below this severity (default: info)")
    parser.add_argument("--jobs", metavar="JOBS_FILE",
                        help="a job registry export (CSV/JSONL/Parquet): adds job_preempted and heartbeat_lost")
    parser.add_argument("--as-of", metavar="ISO_TIME",
                        help="judge liveness at this UTC time (default: the newest sample)")
    parser.set_defaults(func=run_check)
    return parser


def _read_registry(path: str) -> pd.DataFrame:
    """The job registry in `path`; ValueError naming the file when none of it can be used."""
    from ftops.readers.jobs import read_jobs

    result = read_jobs(path)
    if result.accepted.empty:
        reasons = ", ".join(sorted(set(result.rejected["reason"].astype(str))))[:300] or "no jobs in it"
        raise ValueError(f"--jobs {path}: {reasons}")
    return result.accepted


def run_check(args: argparse.Namespace) -> int:
    """Run `ftops check-run` from parsed arguments; returns the process exit code."""
    try:
        policy = load_policy(args.config)
    except PolicyError as exc:
        print(f"{PROG}: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    try:
        jobs = _read_registry(args.jobs) if args.jobs else None
        as_of = utc_timestamp(args.as_of) if args.as_of else None
    except ValueError as exc:
        print(f"{PROG}: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    found = read_paths(args.paths)
    if found.problems:
        # no partial report: a triager who misses the one unreadable file would trust a clean result
        for problem in found.problems:
            print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    anomalies = detect(found.samples, policy, jobs, as_of)
    keep = _severity_rank(anomalies["severity"]) >= SEVERITY_ORDER[args.min_severity]
    anomalies = anomalies[keep].reset_index(drop=True)
    note = _rejection_note(found.rejected)
    if args.json:
        print(json.dumps(anomalies_to_records(anomalies), indent=2, allow_nan=False))
        if note:
            print(f"{PROG}: {note}", file=sys.stderr)
        return 0
    table = format_table(anomalies, _output_width())
    if table:
        print(table)
        print()
    print(_summary(anomalies, found.samples, len(args.paths), found.files_read)
          + ("" if args.min_severity == "info" else f" at or above {args.min_severity}"))
    if found.samples.empty:
        print("no metric samples found: nothing to check")
    if note:
        print(note)
    return 0
