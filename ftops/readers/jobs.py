"""Job registry exports (CSV, JSONL, Parquet) -> the `jobs` contract, with rejected rows and reasons.

Registries are written by schedulers, spreadsheets and scripts, so the reader forgives spelling
(column aliases, "On-Demand", "QLoRA", "completed") but never guesses a value: anything outside a
closed vocabulary, an unparseable timestamp or a non-integer count refuses the row with a reason
naming the field. Validation is a handful of vectorised masks over the whole file.

Duplicate job_id in one file: the registry appends a row per state change, so the *last* valid
row is the job's state; earlier valid rows are rejected as superseded. A later row that is itself
invalid does not supersede an earlier valid one: one typo must not make a known job disappear.

Impossible times are refused, because every cost estimate is running time × price: a start in
1970 (an epoch 0 written for "unknown") once became half a million estimated job-hours. A time
before `earliest` (the first partition), an end before the start, a start before the submission
and a time later than `now` plus a tolerance are rejected with the field named.

A file that is not a job registry at all (UTF-16 or binary bytes, a table without a job_id
column) is one rejected record saying what is wrong with the file, not a rejection per garbage row.
"""

from __future__ import annotations

import json
import os
import re

import pandas as pd

from ftops.readers.base import ReaderError, ReadResult, rejected_file, rejected_rows
from ftops.readers.sniff import not_text_reason
from ftops.readers.tabular import (
    RawTable,
    add_reason,
    bad_line_rejects,
    file_kind,
    no_reason,
    parse_booleans,
    parse_integers,
    parse_numbers,
    parse_timestamps,
    read_tabular,
    text_or_null,
)
from ftops.schemas import (
    EXIT_REASONS, JOB_STATUSES, JOBS, PRICING, REJECTED_RECORDS, TECHNIQUES, utc_timestamp, validate,
)

TABLE = JOBS.name
DUPLICATE_REASON = "duplicate job_id in file (superseded by a later row)"
# When no partition start is given: no fine-tuning job ran before this, while epoch-0 "unknown"
# times (1970) are common in hand-made exports.
DEFAULT_EARLIEST = pd.Timestamp("2010-01-01", tz="UTC")
DEFAULT_FUTURE_TOLERANCE_HOURS = 24.0

# column aliases seen in scheduler and tracker exports -> contract column
_COLUMN_ALIASES: dict[str, str] = {
    "id": "job_id", "jobid": "job_id", "job": "job_id", "run_id": "job_id",
    "job_name": "name", "run_name": "name",
    "method": "technique", "finetune_method": "technique", "peft_method": "technique",
    "model": "base_model", "base_model_name": "base_model", "model_name": "base_model",
    "params_b": "model_params_b", "model_size_b": "model_params_b", "model_params": "model_params_b",
    "num_samples": "dataset_samples", "dataset_size": "dataset_samples", "train_samples": "dataset_samples",
    "max_seq_len": "seq_len", "sequence_length": "seq_len", "max_seq_length": "seq_len",
    "per_device_batch_size": "batch_size", "micro_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum", "grad_accum_steps": "grad_accum",
    "num_epochs": "epochs", "num_train_epochs": "epochs",
    "gpu": "gpu_type", "gpu_model": "gpu_type", "accelerator": "gpu_type",
    "gpus": "gpu_count", "num_gpus": "gpu_count", "n_gpus": "gpu_count",
    "instance": "instance_type", "machine_type": "instance_type", "vm_size": "instance_type",
    "provider": "cloud", "cloud_provider": "cloud",
    "pricing_model": "pricing", "capacity_type": "pricing", "market": "pricing",
    "budget": "budget_category", "cost_center": "budget_category", "budget_tag": "budget_category",
    "is_critical": "critical", "priority_critical": "critical",
    "state": "status", "job_status": "status",
    "created_at": "submitted_at", "submit_time": "submitted_at", "queued_at": "submitted_at",
    "start_time": "started_at", "start": "started_at",
    "end_time": "ended_at", "finished_at": "ended_at", "completed_at": "ended_at", "end": "ended_at",
    "failure_reason": "exit_reason", "error_type": "exit_reason", "failure": "exit_reason",
    "max_steps": "total_steps", "steps": "total_steps",
}

# vocabulary spellings -> contract value; keys are normalised by _vocab_key
_TECHNIQUE = {
    **{t: t for t in TECHNIQUES},
    "lora": "lora", "peft_lora": "lora",
    "q_lora": "qlora", "qlora_4bit": "qlora", "lora_4bit": "qlora",
    "full_finetune": "full", "full_fine_tune": "full", "full_finetuning": "full", "full_fine_tuning": "full",
    "fullft": "full", "full_ft": "full", "fft": "full", "full_parameter": "full",
    "prefix_tuning": "prefix", "prefixtuning": "prefix",
    "dpo_training": "dpo",
    "ia3": "other", "adalora": "other", "dora": "other", "prompt_tuning": "other", "p_tuning": "other",
    "orpo": "other", "kto": "other", "ppo": "other", "rlhf": "other",
}
_STATUS = {
    **{s: s for s in JOB_STATUSES},
    "queued": "pending", "submitted": "pending", "waiting": "pending", "created": "pending", "scheduled": "pending",
    "in_progress": "running", "started": "running", "active": "running", "training": "running",
    "success": "succeeded", "successful": "succeeded", "completed": "succeeded", "complete": "succeeded",
    "done": "succeeded", "finished": "succeeded", "succeed": "succeeded",
    "failure": "failed", "error": "failed", "errored": "failed", "crashed": "failed", "fail": "failed",
    "canceled": "cancelled", "killed": "cancelled", "aborted": "cancelled", "cancel": "cancelled",
    "pre_empted": "preempted", "evicted": "preempted", "spot_interrupted": "preempted",
}
_PRICING = {
    **{p: p for p in PRICING},
    "ondemand": "on_demand", "od": "on_demand", "standard": "on_demand", "regular": "on_demand",
    "spot_instance": "spot", "preemptible": "spot", "low_priority": "spot", "lowpriority": "spot",
}
_EXIT_REASON = {
    **{e: e for e in EXIT_REASONS},
    "out_of_memory": "oom", "cuda_oom": "oom", "outofmemory": "oom", "cuda_out_of_memory": "oom",
    "oomkilled": "oom", "oom_killed": "oom", "oom_error": "oom",
    "preemption": "preempted", "spot_interruption": "preempted", "evicted": "preempted", "pre_empted": "preempted",
    "nan": "nan_loss", "loss_nan": "nan_loss", "nan_inf": "nan_loss", "diverged": "nan_loss", "divergence": "nan_loss",
    "hung": "hang", "stalled": "hang", "timeout": "hang", "nccl_timeout": "hang",
    "error": "code_error", "exception": "code_error", "runtime_error": "code_error", "bug": "code_error",
    "hardware_failure": "node_failure", "node_failed": "node_failure", "gpu_failure": "node_failure",
    "xid": "node_failure", "ecc_error": "node_failure", "node_lost": "node_failure",
}
_VOCABULARIES = {
    "technique": (_TECHNIQUE, TECHNIQUES),
    "status": (_STATUS, JOB_STATUSES),
    "pricing": (_PRICING, PRICING),
    "exit_reason": (_EXIT_REASON, EXIT_REASONS),
}
_INT_COLUMNS = ("dataset_samples", "seq_len", "batch_size", "grad_accum", "gpu_count", "total_steps")
_FLOAT_COLUMNS = ("model_params_b", "epochs")
_TS_COLUMNS = ("submitted_at", "started_at", "ended_at")
_TEXT_COLUMNS = ("name", "domain", "base_model", "gpu_type", "instance_type", "budget_category")
_LOWER_TEXT_COLUMNS = ("cloud", "region")


def _column_key(name: str) -> str:
    return re.sub(r"[\s\-./]+", "_", str(name).strip().lower())


def _vocab_key(values: pd.Series) -> pd.Series:
    return values.str.lower().str.replace(r"[\s\-./]+", "_", regex=True).str.strip("_")


def _canonical_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename columns to the contract; a contract name present in the file wins over its aliases."""
    contract = set(JOBS.column_names)
    renamed: dict[str, str] = {}
    taken: set[str] = set()
    keys = {col: _column_key(col) for col in frame.columns}
    for col, key in keys.items():
        if key in contract and key not in taken:
            renamed[col] = key
            taken.add(key)
    for col, key in keys.items():
        if col in renamed:
            continue
        target = _COLUMN_ALIASES.get(key)
        if target is not None and target not in taken:
            renamed[col] = target
            taken.add(target)
    return frame[list(renamed)].rename(columns=renamed)


def _read_jsonl(path: str | os.PathLike) -> RawTable:
    """JSON Lines, one object per line. A malformed line is reported, not fatal."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise ReaderError(
            f"the file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): "
            "export or save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise ReaderError(f"cannot read file: {type(exc).__name__}: {exc}") from exc

    # A registry has thousands of jobs, not millions of samples: per-line json.loads is fine here.
    def parse(line: str) -> object:
        try:
            return json.loads(line)
        except ValueError as exc:
            return exc

    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    parsed = [(i, parse(line), line) for i, line in numbered]
    good = [(i, obj) for i, obj, _ in parsed if isinstance(obj, dict)]
    bad = [
        (str(i), f"malformed JSON line: {obj}" if isinstance(obj, ValueError) else "JSON line is not an object", line)
        for i, obj, line in parsed
        if not isinstance(obj, dict)
    ]
    frame = pd.DataFrame.from_records([obj for _, obj in good]) if good else pd.DataFrame()
    # nested values stay as JSON text so the rejected `raw` keeps them readable
    for col in frame.columns:
        if frame[col].map(lambda v: isinstance(v, (dict, list))).any():
            frame[col] = frame[col].map(lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
    record = pd.Series([str(i) for i, _ in good], index=frame.index, dtype=object)
    return RawTable(frame, record, bad)


def _load(path: str | os.PathLike) -> RawTable:
    kind = file_kind(path)
    if kind in ("csv", "jsonl"):
        try:
            problem = not_text_reason(path)
        except OSError as exc:
            raise ReaderError(f"cannot read file: {type(exc).__name__}: {exc}") from exc
        if problem is not None:
            raise ReaderError(f"not a job registry: {problem}")
    if kind == "jsonl":
        return _read_jsonl(path)
    if kind in ("csv", "parquet"):
        return read_tabular(path)
    raise ReaderError("unsupported job registry file type: expected .csv, .jsonl/.ndjson or .parquet")


def read_jobs(
    path: str | os.PathLike,
    *,
    earliest: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
    future_tolerance_hours: float = DEFAULT_FUTURE_TOLERANCE_HOURS,
) -> ReadResult:
    """Read one job registry export into `jobs` rows plus rejected rows with reasons.

    Never raises for bad input: an unreadable, unsupported or non-registry file becomes one
    rejected record. `record` of a rejected row is the 1-based data row (CSV/Parquet) or line
    number (JSONL). Times before `earliest` (the partitions' start; DEFAULT_EARLIEST when None)
    are rejected, and so are times later than `now` + `future_tolerance_hours` when `now` is
    given (a reader has no clock of its own).
    """
    source = str(path)

    def refuse(reason: str) -> ReadResult:
        return ReadResult(TABLE, JOBS.empty(), rejected_file(source, TABLE, reason))

    try:
        table = _load(path)
    except ReaderError as exc:
        return refuse(str(exc))

    line_rejects = bad_line_rejects(table, source, TABLE)
    raw = table.frame
    frame = _canonical_columns(raw)
    if len(raw.columns) and "job_id" not in frame.columns:
        shown = ", ".join(map(str, raw.columns[:12])) + (", …" if len(raw.columns) > 12 else "")
        return refuse(
            f"not a job registry: no job_id column (nor an alias such as id, job, run_id); columns: {shown or 'none'}"
        )
    index = frame.index
    out: dict[str, pd.Series] = {}
    reason = no_reason(index)

    job_id = text_or_null(frame.get("job_id"), index)
    reason = add_reason(reason, job_id.isna(), "missing job_id")
    out["job_id"] = job_id

    for col in _TEXT_COLUMNS:
        out[col] = text_or_null(frame.get(col), index)
    for col in _LOWER_TEXT_COLUMNS:
        out[col] = text_or_null(frame.get(col), index).str.lower()

    for col, (mapping, allowed) in _VOCABULARIES.items():
        text = text_or_null(frame.get(col), index)
        canonical = _vocab_key(text).map(mapping).astype("string")
        bad = text.notna() & canonical.isna()
        reason = add_reason(reason, bad, f"{col} not one of {list(allowed)}")
        out[col] = canonical

    for col in _INT_COLUMNS:
        values, bad = parse_integers(frame.get(col), index)
        negative = values.notna() & (values < 0)
        reason = add_reason(reason, bad, f"{col} is not a whole number")
        reason = add_reason(reason, negative.fillna(False), f"{col} is negative")
        out[col] = values

    params, bad = _parse_model_params(frame.get("model_params_b"), index)
    reason = add_reason(reason, bad, "model_params_b is not a number")
    out["model_params_b"] = params
    epochs, bad = parse_numbers(frame.get("epochs"), index)
    reason = add_reason(reason, bad, "epochs is not a number")
    out["epochs"] = epochs

    critical, bad = parse_booleans(frame.get("critical"), index)
    reason = add_reason(reason, bad, "critical is not a boolean (true/false/1/0/yes/no)")
    out["critical"] = critical

    for col in _TS_COLUMNS:
        values, bad = parse_timestamps(frame.get(col), index)
        reason = add_reason(reason, bad, f"{col} is not a timestamp")
        out[col] = values
    reason = _impossible_times(reason, out, earliest, now, future_tolerance_hours)

    valid = reason.isna()
    # a valid row that is not the last valid row of its job_id has been superseded
    superseded = valid & ~_last_valid(job_id, valid)
    reason = add_reason(reason, superseded, DUPLICATE_REASON)
    bad_rows = reason.notna().to_numpy()

    accepted = validate(pd.DataFrame(out, index=index)[~bad_rows], JOBS)
    rejected = rejected_rows(raw[bad_rows], reason[bad_rows], source=source, table=TABLE, record=table.record[bad_rows])
    parts = [r for r in (rejected, line_rejects) if not r.empty]
    rejected = pd.concat(parts, ignore_index=True) if parts else REJECTED_RECORDS.empty()
    return ReadResult(TABLE, accepted, rejected)


def _impossible_times(reason: pd.Series, out: dict[str, pd.Series], earliest: pd.Timestamp | None,
                      now: pd.Timestamp | None, future_tolerance_hours: float) -> pd.Series:
    """Add a reason for every time before `earliest`, after now + tolerance, or out of order."""
    floor = utc_timestamp(DEFAULT_EARLIEST if earliest is None else earliest)
    ceiling = None if now is None else utc_timestamp(now) + pd.Timedelta(hours=future_tolerance_hours)
    for col in _TS_COLUMNS:
        values = out[col]
        reason = add_reason(reason, (values < floor).fillna(False),
                            f"{col} before {floor:%Y-%m-%d}, the earliest time kept: not a real job time")
        if ceiling is not None:
            reason = add_reason(reason, (values > ceiling).fillna(False),
                                f"{col} in the future (later than now + {future_tolerance_hours:g} h)")
    # comparisons with a missing time are False: an unknown time is not out of order
    for earlier, later in (("submitted_at", "started_at"), ("started_at", "ended_at"), ("submitted_at", "ended_at")):
        reason = add_reason(reason, (out[later] < out[earlier]).fillna(False), f"{later} before {earlier}")
    return reason


def _last_valid(job_id: pd.Series, valid: pd.Series) -> pd.Series:
    """True on the last valid row of each job_id."""
    candidates = job_id.where(valid)
    last = candidates.notna() & ~candidates.duplicated(keep="last")
    return last.fillna(False).astype(bool)


_SIZE_SUFFIX = {"k": 1e-6, "m": 1e-3, "b": 1.0, "t": 1e3}


def _parse_model_params(values: pd.Series | None, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """Billions of parameters; also reads model-card spellings such as "7B", "1.5b", "350M"."""
    number, bad = parse_numbers(values, index)
    if values is None or not bad.any():
        return number, bad
    text = text_or_null(values, index)[bad]
    parts = text.str.extract(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMbBtT])\s*$")
    scaled = pd.to_numeric(parts[0], errors="coerce") * parts[1].str.lower().map(_SIZE_SUFFIX).astype("float64")
    ok = scaled.notna()
    number.loc[scaled.index[ok]] = scaled[ok].astype("float64")
    bad = bad.copy()
    bad.loc[scaled.index[ok]] = False
    return number, bad
