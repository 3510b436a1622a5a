"""The inbox: which files are inputs, what kind each one is and which reader reads it.

Layout (docs/architecture.md §2): `jobs/` job registry exports, `metrics/` metric files of every
supported format, `billing/` billing exports, `logs/` console logs (`logs/<job_id>.log`, any text).
A W&B run's `wandb-metadata.json` under `metrics/` is a job registry input (kind "jobs", read by
readers.wandb_job): the run folder's CSVs give its samples, the metadata and the files around it give
its job row. Its `output.log` and an export's `runs_console_tail.csv` are console logs (kind "logs",
read by readers.console_log). Files still being written (`*.part`, `*.tmp`) and
hidden files are not inputs yet. A file's identity is its inbox-relative path, size and
modification time: the same bytes landing again under the same name are the same input, while
a rewritten file is a new version that supersedes the old one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Callable

import pandas as pd

from ftops.readers.base import ReadResult, rejected_file
from ftops.readers.formats import data_format, describe_suffixes
from ftops.schemas import BILLING_LINE_ITEMS, CONSOLE_TAILS, JOBS, METRIC_SAMPLES, Table

KINDS: dict[str, Table] = {"jobs": JOBS, "metrics": METRIC_SAMPLES, "billing": BILLING_LINE_ITEMS,
                           "logs": CONSOLE_TAILS}

# Files that travel with run exports but hold no samples: not inputs, never rejections.
# (wandb_job reads wandb-summary.json, config.yaml and the runs_* files beside a wandb-metadata.json;
# runs_console_tail.csv is read by wandb_job too, and is also an input of kind "logs".)
_COMPANION_FILES = {
    "wandb-summary.json",
    "config.yaml",
    "runs_summary.csv",
    "manifest.csv",
    "demo_manifest.json",
    "readme.md",
}
_IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".crdownload")
WANDB_METADATA = "wandb-metadata.json"
# console logs that travel with metric exports (readers.console_log)
_CONSOLE_FILES = ("output.log", "runs_console_tail.csv")


@dataclass(frozen=True)
class InboxFile:
    kind: str  # jobs | metrics | billing | logs
    relpath: str  # POSIX path relative to the inbox root, e.g. "metrics/job-7/run.jsonl"
    size: int
    mtime_ns: int

    @property
    def identity(self) -> str:
        digest = hashlib.sha1(f"{self.relpath}|{self.size}|{self.mtime_ns}".encode()).hexdigest()
        return digest[:20]


def classify(relpath: str) -> str | None:
    """The kind of an inbox file from its relative path, or None when it is not an input."""
    parts = PurePosixPath(relpath).parts
    name = parts[-1].lower()
    if len(parts) < 2 or parts[0] not in KINDS:
        return None
    if name.startswith(".") or name.endswith(_IN_PROGRESS_SUFFIXES) or name in _COMPANION_FILES:
        return None
    if parts[0] == "metrics" and name == WANDB_METADATA:
        return "jobs"  # a W&B run's job row (hardware, model, outcome), beside its samples
    if parts[0] == "metrics" and name in _CONSOLE_FILES:
        return "logs"  # a W&B run's console, or an export's console tails, beside the samples
    return parts[0]


def metric_format(path: str) -> str:
    """Which metric reader family a metrics file belongs to."""
    name = PurePosixPath(path).name.lower()
    if name.endswith("trainer_state.json"):
        return "trainer_state"
    if name.endswith((".prom", ".metrics")):
        return "prometheus_text"
    if name in ("history.csv", "system_stats.csv"):
        return "wandb"
    if data_format(name) is not None:
        return "metric_export"
    return "unsupported"


def reader_for(kind: str, path: str, *, job_tag_key: str = "job_id", budget_tag_key: str = "budget_category",
               earliest: pd.Timestamp | None = None, now: pd.Timestamp | None = None,
               future_tolerance_hours: float | None = None) -> Callable[[], ReadResult]:
    """A zero-argument callable that reads `path` (a local file) with the right reader.

    `earliest`, `now` and `future_tolerance_hours` bound the job registry's times (metrics and bills
    are bounded by staging, which places their rows in partitions).
    """
    # Imported lazily: each reader family pulls in its own dependencies.
    if kind == "jobs":
        from ftops.readers.jobs import DEFAULT_FUTURE_TOLERANCE_HOURS, read_jobs

        tolerance = DEFAULT_FUTURE_TOLERANCE_HOURS if future_tolerance_hours is None else future_tolerance_hours
        if PurePosixPath(path).name.lower() == WANDB_METADATA:
            from ftops.readers.wandb_job import read_wandb_job

            return lambda: read_wandb_job(path, earliest=earliest, now=now, future_tolerance_hours=tolerance)
        return lambda: read_jobs(path, earliest=earliest, now=now, future_tolerance_hours=tolerance)
    if kind == "logs":
        from ftops.readers.console_log import read_console_log

        return lambda: read_console_log(path)
    if kind == "billing":
        from ftops.readers.billing import read_billing

        return lambda: read_billing(path, job_tag_key=job_tag_key, budget_tag_key=budget_tag_key)
    fmt = metric_format(path)
    if fmt == "trainer_state":
        from ftops.readers.trainer_state import read_trainer_state

        return lambda: read_trainer_state(path)
    if fmt == "prometheus_text":
        from ftops.readers.prometheus_text import read_prometheus_text

        return lambda: read_prometheus_text(path)
    if fmt == "wandb":
        from ftops.readers.wandb import read_wandb_run

        return lambda: read_wandb_run(path)
    if fmt == "metric_export":
        from ftops.readers.metric_export import read_metric_export

        return lambda: read_metric_export(path)
    suffix = PurePosixPath(path).suffix or "(none)"
    return lambda: ReadResult(
        METRIC_SAMPLES.name,
        METRIC_SAMPLES.empty(),
        rejected_file(
            path,
            METRIC_SAMPLES.name,
            f"unsupported metric file type {suffix!r}: expected trainer_state.json, *.prom/*.metrics, "
            f"a W&B history.csv/system_stats.csv or a metric export: {describe_suffixes()}",
        ),
    )
