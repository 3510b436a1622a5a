"""Hugging Face Trainer `trainer_state.json` -> `metric_samples`.

The Trainer writes `log_history`, a list of dicts: one per logging step (`loss`, `learning_rate`,
`grad_norm`, `epoch`), one per evaluation (`eval_loss`, `eval_accuracy`, `eval_runtime`, ...) and a
final summary entry (`train_runtime`, `train_samples_per_second`, `train_loss`, ...). Every entry
has the `step` it was logged at.

Accounting: one row is one (log entry, canonical metric) pair. Keys without a canonical metric
(`eval_runtime`, `total_flos`, ROUGE, DPO `rewards/*`, `logits/*`, ...) are not rows at all:
they are simply not metrics ftops tracks (see `unmapped_keys`).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ftops.readers.base import ReadResult, combine, rejected_file, rejected_rows
from ftops.readers.samples import finish_samples
from ftops.schemas import METRIC_SAMPLES, METRICS, utc_timestamp

TABLE = METRIC_SAMPLES.name

# The Trainer's key vocabulary is fixed, so the map is explicit rather than the shared alias table:
# there `train_loss` means a per-step loss, here it is the summary entry's run average and must not
# count as a training_loss sample.
TRAINER_STATE_KEYS: dict[str, str] = {
    **{m: m for m in METRICS},
    "loss": "training_loss",
    "eval_loss": "val_loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "epoch": "epoch",
    "train_samples_per_second": "samples_per_second",
    "samples_per_second": "samples_per_second",
    "train_tokens_per_second": "tokens_per_second",
    "tokens_per_second": "tokens_per_second",
    # Task accuracy on the evaluation set. Per-subset keys (eval_<name>_accuracy) are left out:
    # several subsets at one step would be several domain_accuracy values for one sample key.
    # Token accuracies (eval_mean_token_accuracy) measure next-token prediction, not the task,
    # and sit near 0.5-0.7 on healthy runs, so they would trip the 0.85 quality rule.
    "eval_accuracy": "domain_accuracy",
    "eval_domain_accuracy": "domain_accuracy",
}
# not samples of anything; listing them as "unmapped" would only be noise
_STRUCTURAL_KEYS = {"step"}

_JOB_SUFFIX = re.compile(r"_{0,2}trainer_state$")
_CONTAINER_DIR = re.compile(r"^(checkpoint-\d+|output)$")


def default_job_id(path: str | Path) -> str:
    """The job a trainer_state file belongs to, from its path.

    `<job>/trainer_state.json` -> `<job>`; `<job>/checkpoint-N/trainer_state.json` and
    `<job>/output/trainer_state.json` -> `<job>`; `<job>__trainer_state.json` -> `<job>`.
    """
    p = Path(path)
    if p.name == "trainer_state.json":
        parent = p.parent
        if _CONTAINER_DIR.match(parent.name) and parent.parent.name:
            parent = parent.parent
        if parent.name:
            return parent.name
        return p.stem
    return _JOB_SUFFIX.sub("", p.stem) or p.stem


def _load(path: Path) -> tuple[dict | None, str | None]:
    """The parsed file or the reason it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "file not found"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read file: {exc}"
    try:
        # NaN/Infinity stay text so a NaN loss is told apart from an absent key after the frame
        # is built; finish_samples turns the text back into the float.
        state = json.loads(text, parse_constant=str)
    except (json.JSONDecodeError, RecursionError) as exc:
        return None, f"not valid JSON: {exc}"
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        return None, "not a trainer_state.json: no log_history list"
    return state, None


def unmapped_keys(path: str | Path) -> dict[str, int]:
    """How often each log_history key without a canonical metric occurs (for logging, not accounting)."""
    state, _ = _load(Path(path))
    if state is None:
        return {}
    counts: dict[str, int] = {}
    for entry in state["log_history"]:
        if isinstance(entry, dict):
            for key in entry:
                if key not in TRAINER_STATE_KEYS and key not in _STRUCTURAL_KEYS:
                    counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def read_trainer_state(
    path: str | Path, job_id: str | None = None, started_at: pd.Timestamp | None = None
) -> ReadResult:
    """Read a Hugging Face `trainer_state.json` into `metric_samples`.

    Metrics: `loss` -> training_loss, `eval_loss` -> val_loss, `learning_rate`, `grad_norm`,
    `epoch`, `train_samples_per_second` -> samples_per_second, `train_tokens_per_second` ->
    tokens_per_second, `eval_accuracy` -> domain_accuracy (see TRAINER_STATE_KEYS). A NaN or
    infinite value (JSON `NaN`/`Infinity` or the strings "NaN"/"Infinity") is accepted as that
    value: a diverged loss is what monitoring must see.

    Timestamps: the file has no wall clock, so `ts = anchor + step * seconds_per_step`, where
    `seconds_per_step = train_runtime / global_step` when a log entry carries `train_runtime`
    (else 1.0), and `anchor = started_at` when given, else the file's modification time minus
    the run's duration (`global_step * seconds_per_step`): the Trainer writes the file at its
    last step.

    `step` is the entry's step. `job_id` defaults to `default_job_id(path)`. A value the Trainer
    repeats at one step (`epoch` in the training, evaluation and summary entries of that step)
    is one sample; different values for one metric at one step are rejected. An entry without
    an integer step is one rejected row (its time cannot be derived). An unreadable file, one
    that is not JSON or one without a `log_history` list is one rejected record, never an
    exception.
    """
    p = Path(path)
    source = str(path)
    state, problem = _load(p)
    if state is None:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(source, TABLE, problem or "unreadable"))
    job = job_id if job_id is not None else default_job_id(p)
    entries = state["log_history"]
    if not entries:
        return ReadResult(TABLE, METRIC_SAMPLES.empty())

    positions = pd.Series(range(len(entries)))
    is_obj = pd.Series([isinstance(e, dict) for e in entries], dtype=bool)
    parts: list[ReadResult] = []
    refused_entries = 0  # entries rejected as a whole, counted where they are refused
    if not is_obj.all():
        raw = pd.DataFrame({"entry": [json.dumps(entries[i], default=str) for i in positions[~is_obj]]},
                           index=positions[~is_obj].to_numpy())
        parts.append(ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_rows(
            raw, "log entry is not a JSON object", source=source, table=TABLE,
            record=pd.Series([f"log_history[{i}]" for i in raw.index], index=raw.index))))
        refused_entries += len(raw)

    wide = pd.DataFrame([entries[i] for i in positions[is_obj]], index=positions[is_obj].to_numpy())
    step_raw = wide["step"] if "step" in wide else pd.Series(np.nan, index=wide.index)
    step = pd.to_numeric(step_raw, errors="coerce")
    good_step = step.notna() & np.isfinite(step) & (step % 1 == 0)

    # timing from the whole file, so that it does not depend on which entries were refused
    global_step = pd.to_numeric(pd.Series([state.get("global_step")]), errors="coerce").iloc[0]
    if not (pd.notna(global_step) and global_step > 0):
        global_step = float(step[good_step].max()) if good_step.any() else 0.0
    runtime = (pd.to_numeric(wide["train_runtime"], errors="coerce").max()
               if "train_runtime" in wide else np.nan)

    if not good_step.all():
        raw = wide[~good_step]
        reason = np.where(step_raw[~good_step].isna(), "log entry has no step", "log entry step is not an integer")
        parts.append(ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_rows(
            raw, pd.Series(reason, index=raw.index), source=source, table=TABLE,
            record=pd.Series([f"log_history[{i}]" for i in raw.index], index=raw.index))))
        refused_entries += len(raw)
        wide, step = wide[good_step], step[good_step]

    mapped = [k for k in wide.columns if k in TRAINER_STATE_KEYS and k not in _STRUCTURAL_KEYS]
    if wide.empty or not mapped:
        parts.append(ReadResult(TABLE, METRIC_SAMPLES.empty()))
        return combine(METRIC_SAMPLES, parts).with_records(refused_entries + len(wide), len(wide))

    seconds_per_step = float(runtime / global_step) if pd.notna(runtime) and runtime > 0 and global_step > 0 else 1.0
    if started_at is not None:
        anchor = utc_timestamp(started_at)
    else:
        mtime = pd.Timestamp(datetime.fromtimestamp(p.stat().st_mtime, tz=timezone.utc))
        anchor = mtime - pd.Timedelta(seconds=float(global_step) * seconds_per_step)

    frame = wide[mapped].copy()
    frame["_entry"] = frame.index
    frame["step"] = step.astype("int64")
    long = frame.melt(id_vars=["_entry", "step"], var_name="key", value_name="value")
    # absent keys and JSON null are NA; a NaN loss is still the text "NaN" here, so it stays
    long = long[long["value"].notna()]
    long = long.sort_values(["_entry", "key"], kind="stable").reset_index(drop=True)
    long["metric"] = long["key"].map(TRAINER_STATE_KEYS)

    # The Trainer repeats epoch in the training, evaluation and summary entries of one step: one
    # sample key, so finish_samples counts the repeats as duplicates and rejects differing values.
    entries_with_rows = long["_entry"].unique()
    long["ts"] = anchor + pd.to_timedelta(long["step"].astype("float64") * seconds_per_step, unit="s")
    long["job_id"] = job
    long["source"] = source
    parts.append(finish_samples(long[["ts", "job_id", "metric", "value", "step", "key", "source"]],
                                source=source, record=_records(long)))
    # an entry is accounted for when it gave a sample or a rejection; one holding only keys ftops
    # does not track (eval_runtime, total_flos, ...) is skipped on purpose and counted
    skipped = len(set(wide.index) - set(entries_with_rows))
    seen = refused_entries + len(entries_with_rows)
    return combine(METRIC_SAMPLES, parts).with_records(seen + skipped, skipped)


def _records(long: pd.DataFrame) -> pd.Series:
    return "log_history[" + long["_entry"].astype(str) + "]." + long["key"].astype(str)
