"""Weights & Biases run exports -> `metric_samples`.

A run folder holds `history.csv` (what the training script logged: one row per `wandb.log` call,
one column per key), `system_stats.csv` (what the W&B agent sampled every 10-30 s: GPU, CPU and
memory) and `wandb-metadata.json` (host, start time, GPU model). Both CSVs are wide; they are
melted to long rows in one vectorised step each.

Accounting: one row is one non-empty cell of a column that maps to a canonical metric. Empty
cells are samples the run did not log (W&B writes one row per `log` call with the union of all
keys), not rejections; columns without a canonical metric (`train/total_flos`, `network.recv`,
`gpu.N.powerPercent`, ...) are not rows at all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ftops.readers.aliases import canonical_metric_name
from ftops.readers.base import ReadResult, combine, rejected_file, rejected_rows
from ftops.readers.samples import finish_samples
from ftops.schemas import METRIC_SAMPLES

TABLE = METRIC_SAMPLES.name
HISTORY = "history.csv"
SYSTEM_STATS = "system_stats.csv"
METADATA = "wandb-metadata.json"
# files W&B writes into every run folder; one of them makes a folder a run even when it logged nothing
RUN_FILES = (HISTORY, SYSTEM_STATS, METADATA, "wandb-summary.json", "config.yaml")

# history.csv keys that the shared alias table does not know, or knows with another meaning
HISTORY_KEYS: dict[str, str | None] = {
    # the Hugging Face callback logs the Trainer's end-of-run summary with a train/ prefix: a run
    # average throughput is still a throughput sample (at the last step); train/train_loss is a run
    # average of the loss and would double count training_loss
    "train/train_samples_per_second": "samples_per_second",
    "train/train_tokens_per_second": "tokens_per_second",
    "train/train_loss": None,
    # OpenAI fine-tune exports (`openai wandb sync`): sequence accuracy is the exact-match task
    # accuracy (a classification fine-tune's accuracy). Token accuracies are next-token statistics
    # (about 0.5 on healthy runs) and would trip the 0.85 domain-accuracy rule; training-side
    # accuracies are not evaluation.
    "validation_sequence_accuracy": "domain_accuracy",
    "validation_token_accuracy": None,
    "training_token_accuracy": None,
    "training_sequence_accuracy": None,
    # W&B's own bookkeeping
    "_step": None,
    "_runtime": None,
    "_timestamp": None,
}

# system_stats.csv: (metric, scale). Recent W&B versions prefix system metrics with "system.".
_GPU_STAT = re.compile(r"^(?:system\.)?gpu\.(\d+)\.(gpu|memory|memoryAllocated|powerWatts|temp)$")
_GPU_FIELDS: dict[str, tuple[str, float]] = {
    "gpu": ("gpu_utilization_pct", 1.0),
    # W&B's gpu.N.memory is NVML utilization.memory: memory *bandwidth* busy %, not capacity
    "memory": ("gpu_memory_copy_util_pct", 1.0),
    "memoryAllocated": ("gpu_memory_used_ratio", 0.01),
    "powerWatts": ("gpu_power_watts", 1.0),
    "temp": ("gpu_temperature_c", 1.0),
}
_HOST_STATS: dict[str, tuple[str, float]] = {
    "cpu": ("cpu_utilization_pct", 1.0),
    "system.cpu": ("cpu_utilization_pct", 1.0),
    "memory": ("host_memory_used_ratio", 0.01),
    "system.memory": ("host_memory_used_ratio", 0.01),
    "memory_percent": ("host_memory_used_ratio", 0.01),
    "system.memory_percent": ("host_memory_used_ratio", 0.01),
}
# gpu.process.N.* repeats gpu.N.* for the GPU the process used: reading both would double count

# per-row context the samples need besides their value columns
_ROW_COLUMNS = {"_timestamp", "_runtime", "_step", "train/global_step"}


def _history_target(column: str) -> tuple[str, float, str | None] | None:
    if column in HISTORY_KEYS:
        metric = HISTORY_KEYS[column]
        return None if metric is None else (metric, 1.0, None)
    metric = canonical_metric_name(column)
    return None if metric is None else (metric, 1.0, None)


def _system_target(column: str) -> tuple[str, float, str | None] | None:
    match = _GPU_STAT.match(column)
    if match:
        metric, scale = _GPU_FIELDS[match.group(2)]
        return metric, scale, match.group(1)
    if column in _HOST_STATS:
        metric, scale = _HOST_STATS[column]
        return metric, scale, None
    return None


def read_metadata(run_dir: str | Path) -> tuple[dict, str | None]:
    """`wandb-metadata.json` of a run folder ({} when absent) and, when it is corrupt, why."""
    path = Path(run_dir) / METADATA
    if not path.is_file():
        return {}, None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"cannot read {METADATA}: {exc}"
    if not isinstance(meta, dict):
        return {}, f"{METADATA} is not a JSON object"
    return meta, None


def run_job_id(run_dir: str | Path) -> str:
    """The job id of a run folder's rows when the caller names none: the folder's name.

    One definition for every reader of a run folder (samples here, the job row in wandb_job), so
    a run's samples and its job registry row always share the id.
    """
    return Path(run_dir).resolve().name


def _started_at(meta: dict) -> pd.Timestamp | None:
    # W&B writes startedAt as naive ISO text in UTC
    ts = pd.to_datetime(pd.Series([meta.get("startedAt")]), utc=True, errors="coerce", format="mixed").iloc[0]
    return None if pd.isna(ts) else ts


def _timestamps(frame: pd.DataFrame, anchor: pd.Timestamp | None) -> pd.Series:
    """Row time: `_timestamp` (epoch seconds); where it is empty, W&B start time + `_runtime`.

    Text that is neither epoch seconds nor a date gives NaT, which finish_samples rejects.
    """
    index = frame.index
    raw = frame["_timestamp"] if "_timestamp" in frame else pd.Series(np.nan, index=index)
    seconds = pd.to_numeric(raw, errors="coerce")
    ts = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
    text = raw.notna() & seconds.isna()
    if text.any():
        ts[text] = pd.to_datetime(raw[text].astype(str), utc=True, errors="coerce", format="mixed")
    if anchor is not None and "_runtime" in frame:
        empty = raw.isna()
        if empty.any():
            runtime = pd.to_numeric(frame.loc[empty, "_runtime"], errors="coerce")
            ts[empty] = anchor + pd.to_timedelta(runtime, unit="s")
    return ts.astype("datetime64[ns, UTC]")


def _kind(path: Path, columns: pd.Index) -> str:
    name = path.name.lower()
    if name.startswith("system"):
        return "system"
    if name.startswith("history"):
        return "history"
    return "history" if "_step" in columns else "system"


def _read_csv(path: Path, *, job_id: str, host: str | None, anchor: pd.Timestamp | None) -> ReadResult:
    source = str(path)
    try:
        # only empty cells are missing: a logged "NaN" loss must stay a (NaN) sample. No usecols:
        # with it the parser silently drops the extra fields of a malformed row.
        wide = pd.read_csv(path, keep_default_na=False, na_values=[""], low_memory=False)
    except FileNotFoundError:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(source, TABLE, "file not found"))
    except pd.errors.EmptyDataError:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(source, TABLE, "empty file (no header)"))
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(source, TABLE, f"not a readable CSV: {exc}"))

    wide.columns = [str(c).strip() for c in wide.columns]
    target = _system_target if _kind(path, wide.columns) == "system" else _history_target
    targets = {c: t for c in wide.columns if (t := target(c)) is not None}
    if not targets or wide.empty:
        # no column ftops tracks: every row is skipped on purpose
        return ReadResult(TABLE, METRIC_SAMPLES.empty()).with_records(len(wide), len(wide))
    wide = wide[[c for c in wide.columns if c in targets or c in _ROW_COLUMNS]]
    # a row that logged none of the tracked keys (only eval_runtime, say) is skipped, and counted
    skipped = int((~wide[list(targets)].notna().any(axis=1)).sum())

    ts = _timestamps(wide, anchor)
    step_column = "train/global_step" if "train/global_step" in wide else "_step" if "_step" in wide else None
    step = (pd.to_numeric(wide[step_column], errors="coerce") if step_column
            else pd.Series(np.nan, index=wide.index))
    value_columns = list(targets)
    # data row number, 1-based (not a line number: a quoted cell may span lines)
    ids = pd.DataFrame({"_row": wide.index + 1, "_ts": ts, "_step": step})
    if "_timestamp" in wide:
        ids["_timestamp"] = wide["_timestamp"]
    long = pd.concat([ids, wide[value_columns]], axis=1).melt(
        id_vars=list(ids.columns), value_vars=value_columns, var_name="column", value_name="value")
    long = long[long["value"].notna()].reset_index(drop=True)
    rows_seen = int(long["_row"].nunique())
    if long.empty:
        return ReadResult(TABLE, METRIC_SAMPLES.empty()).with_records(skipped, skipped)

    spec = pd.DataFrame.from_dict(targets, orient="index", columns=["metric", "scale", "device"])
    column = long["column"].astype("category")
    metric = column.map(spec["metric"]).astype(str)
    scale = column.map(spec["scale"]).astype("float64")
    device = column.map(spec["device"].fillna("")).astype(str).replace("", pd.NA)

    value = long["value"]
    if pd.api.types.is_numeric_dtype(value):
        value = value.astype("float64") * scale
    else:
        number = pd.to_numeric(value, errors="coerce")
        # keep non-numbers as text so finish_samples rejects them with the value visible
        value = (number * scale).astype(object).where(number.notna(), value)

    step = long["_step"]
    bad_step = step.notna() & ((step % 1 != 0) | ~np.isfinite(step))
    parts: list[ReadResult] = []
    record = "row " + long["_row"].astype(str) + ", " + long["column"].astype(str)
    if bad_step.any():
        parts.append(ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_rows(
            long.loc[bad_step, ["_row", "column", "value", "_step"]], f"{step_column} is not an integer step",
            source=source, table=TABLE, record=record[bad_step])))
    keep = ~bad_step
    frame = pd.DataFrame({
        "ts": long["_ts"], "job_id": job_id, "metric": metric, "value": value, "step": step,
        "device": device, "host": host, "source": source, "column": long["column"],
    })
    if "_timestamp" in long:
        frame["_timestamp"] = long["_timestamp"]
    parts.append(finish_samples(frame[keep].reset_index(drop=True), source=source,
                                record=record[keep].reset_index(drop=True)))
    return combine(METRIC_SAMPLES, parts).with_records(rows_seen + skipped, skipped)


def read_wandb_run(path: str | Path, job_id: str | None = None) -> ReadResult:
    """Read a W&B run folder, or one of its `history.csv` / `system_stats.csv`, into `metric_samples`.

    history.csv: `ts` from `_timestamp` (epoch seconds), `step` from `train/global_step` (the
    Trainer's step) or else W&B's `_step`. `train/loss` -> training_loss, `eval/loss` ->
    val_loss, `train/learning_rate`, `train/grad_norm`, `train/epoch`, `eval/accuracy` ->
    domain_accuracy, `train/train_samples_per_second` -> samples_per_second, any name of the
    shared alias table, and the OpenAI fine-tune columns `training_loss`, `validation_loss`,
    `validation_sequence_accuracy` (see HISTORY_KEYS for what is left out and why).

    system_stats.csv: `gpu.N.gpu` -> gpu_utilization_pct, `gpu.N.memory` (memory bandwidth busy
    %) -> gpu_memory_copy_util_pct, `gpu.N.memoryAllocated` % -> gpu_memory_used_ratio (/100),
    `gpu.N.powerWatts` -> gpu_power_watts, `gpu.N.temp` -> gpu_temperature_c, all with device
    "N"; `cpu` -> cpu_utilization_pct, `memory` % -> host_memory_used_ratio (/100).

    `host` comes from wandb-metadata.json; its `startedAt` + `_runtime` stands in for an empty
    `_timestamp`. `job_id` defaults to the run folder's name (the CSV's folder when a file is
    given). Given a folder, both CSVs are read; given one CSV, only that one (the inbox hands
    each file over on its own). A missing or unreadable file, or a folder without any W&B file,
    is one rejected record, never an exception; a corrupt wandb-metadata.json is one rejected
    record and the CSVs are still read.
    """
    p = Path(path)
    if p.is_dir():
        run_dir = p
        if not any((p / name).is_file() for name in RUN_FILES):
            return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(
                str(path), TABLE, f"not a W&B run folder: none of {', '.join(RUN_FILES)}"))
        files = [p / name for name in (HISTORY, SYSTEM_STATS) if (p / name).is_file()]
    elif p.is_file():
        run_dir, files = p.parent, [p]
    else:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(str(path), TABLE, "file or folder not found"))

    job = job_id if job_id is not None else run_job_id(run_dir)
    meta, problem = read_metadata(run_dir)
    host = meta.get("host")
    host = str(host) if host not in (None, "") else None
    anchor = _started_at(meta)
    parts = [_read_csv(f, job_id=job, host=host, anchor=anchor) for f in files]
    # the CSVs' records; a corrupt wandb-metadata.json below is a rejection but no CSV record
    records = sum(r.records_accounted for r in parts)
    skipped = sum(r.skipped for r in parts)
    if problem is not None:
        parts.append(ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(str(run_dir / METADATA), TABLE, problem)))
    if not parts:
        return ReadResult(TABLE, METRIC_SAMPLES.empty())
    return combine(METRIC_SAMPLES, parts).with_records(records, skipped)
