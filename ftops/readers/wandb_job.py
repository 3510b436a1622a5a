"""A Weights & Biases run folder -> one `job_registry` row (the job itself, not its samples).

`wandb.read_wandb_run` turns a run's CSVs into samples; the job (hardware, model, hyper-parameters,
start, end, outcome) lives in the files around them:

- `wandb-metadata.json`: `gpu` (NVML name), `gpu_count`, `os` (kernel string, names the cloud on
  cloud images), `startedAt` (naive ISO, UTC), `args` (the training script's command line),
  `program`, `heartbeatAt`.
- `config.yaml`: what the script passed to `wandb.config` (for the Hugging Face Trainer: the model
  config and the resolved TrainingArguments), each key as `{desc, value}`.
- `wandb-summary.json`: the last logged values, `_runtime` and `_wandb.runtime` (seconds).
- `history.csv`: the largest `train/global_step` (or the summary's, when larger) is the run's step count.
- `runs_summary.csv` / `runs_console_tail.csv` in the run's folder or up to two folders above
  (an export of many runs keeps one per export: export/runs/<id>/): the process exit code and the first error
  pattern of the console tail, per run id.

The job id is `wandb.run_job_id` (the run folder's name), exactly the id `read_wandb_run` gives the
folder's samples, so samples and job meet.

Heuristics (each says why):

- technique. Evidence of an adapter: a config/argument key naming LoRA or PEFT (`lora_r`,
  `lora_rank`, `lora_alpha`, `use_lora`, `peft_config`, ...) whose value is not false/empty, or
  the word `lora`/`qlora`/`peft` in an argument value or the program's file name (`train_lora.py`,
  `--finetuning_type lora`). The base model path is left out of that search: a model merged from
  a LoRA run ("...-lora-merged") is trained in full. Evidence of 4-bit weights: `load_in_4bit`
  (also nested in `quantization_config`) or `use_4bit` true, a bit-width key (`bits`,
  `quantization_bit`, `quant_bits`, ...) equal to 4, or the word `qlora`. 4-bit weights cannot be
  trained directly, so 4-bit implies an adapter: qlora. Adapter without 4-bit: lora. A set
  `pre_seq_len` (ChatGLM P-Tuning v2) or the words `prefix_tuning`/`p_tuning`: prefix; the word
  `dpo` in the program's name: dpo. Nothing of that: full (a Trainer run without PEFT trains
  every weight).
- model_params_b: the size in the base model's name ("llama-7b", "chatglm2-6b",
  "Llama-2-13b-hf", "opt-350m" -> 7, 6, 13, 0.35); null without one, and null for mixture-of-
  experts names ("8x7b": the name does not give the parameter count).
- seq_len: training-argument names only (`model_max_length`, `max_seq_length`, `max_seq_len`,
  `cutoff_len`, `seq_len`, `max_source_length` + `max_target_length`; `max_length` only from the
  command line). A model config's `seq_length`/`max_position_embeddings` is the model's context
  window and `max_length` in config.yaml is the generation default (20), not what was trained on.
- status, from the nearest exit record of the run:
  exit 0 -> succeeded; exit 255, or any non-zero exit whose console shows a KeyboardInterrupt
  first -> cancelled (a person stopped the run: W&B exits 255 on Ctrl-C); another non-zero exit ->
  failed. Without an exit record (W&B never learnt how the process ended): succeeded when the
  Hugging Face Trainer logged its end-of-training summary (`train/train_runtime`: the training
  loop finished); running when `now` is given and the run's last sign of life (the latest of
  start + runtime, the last history/system sample, the metadata heartbeat) is within
  `stale_after_hours` of it; otherwise failed (the process died without saying how: killed,
  node lost; a run that never logged a history row died at start-up). Without `now` the reader
  has no clock and cannot see a run is alive, so such a run counts as failed.
- exit_reason, for failed runs only, from `first_error_pattern` of the console tail: CUDA_OOM ->
  oom; a Python error of the code itself (KeyError, TypeError, ValueError, AttributeError,
  IndexError, NameError, ImportError, ModuleNotFoundError, AssertionError, SyntaxError) ->
  code_error; RuntimeError -> code_error unless its message names the device, CUDA, NCCL, cuDNN or
  ECC (PyTorch raises RuntimeError for hardware and communication faults too: those stay null,
  as does everything else).
- ended_at: start + the longest runtime W&B recorded (`_runtime`, `_wandb.runtime`) once the run has
  ended; when W&B recorded none, the last sample's time. Null while running.
- cloud: from the kernel string in `os` ("-gcp-" -> gcp, "-aws" -> aws, "azure" -> azure), else null.
- gpu_type: `ftops.optimize.gpus.canonical_gpu_model` of the raw NVML name (memory_gb not passed: the
  W&B name carries the size); a name outside the vocabulary is kept as W&B wrote it.

Accounting: the metadata file is one record and gives one row (accepted, or rejected with the
reason when its times are impossible). A corrupt `wandb-metadata.json` is one rejected record for
the file. A corrupt `config.yaml` or `wandb-summary.json` adds a rejection naming that file while the
row is still built from the rest (its fields stay null); the record count stays one. Missing
companions are no problem: their fields are null.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ftops.optimize.gpus import canonical_gpu_model
from ftops.readers.base import ReadResult, combine, rejected_file, rejected_rows
from ftops.readers.jobs import DEFAULT_FUTURE_TOLERANCE_HOURS, _impossible_times
from ftops.readers.tabular import no_reason
from ftops.readers.wandb import HISTORY, METADATA, RUN_FILES, SYSTEM_STATS, _started_at, read_metadata, run_job_id
from ftops.schemas import JOBS, utc_timestamp, validate

TABLE = JOBS.name
CONFIG = "config.yaml"
SUMMARY = "wandb-summary.json"
RUNS_SUMMARY = "runs_summary.csv"
CONSOLE_TAIL = "runs_console_tail.csv"
# how far above the run folder an export's runs_summary.csv may sit (export/runs/<id>/ is two)
SUMMARY_LEVELS_UP = 2
# a run without an exit record that showed life this recently is still running; W&B samples system
# stats every 10-30 s, and an inbox sync of a live run is minutes old, hours at most
DEFAULT_STALE_AFTER_HOURS = 2.0
# exit code W&B reports when the script was interrupted (Ctrl-C, SIGINT)
INTERRUPTED_EXIT_CODE = 255

# libyaml's loader when PyYAML was built with it: a Trainer's config.yaml is ~700 keys, ~0.2 s in pure Python
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FALSE = {"", "false", "0", "no", "none", "null", "off", "n"}
_TRUE = {"true", "1", "yes", "on", "y"}

_MODEL_KEYS = ("model_name_or_path", "pretrained_model_name_or_path", "base_model", "model_name", "model_path",
               "model_id", "model", "_name_or_path")
_NAME_KEYS = ("run_name", "exp_name", "experiment_name")
# per-device batch, as the registry means it; alpaca-lora's --batch_size is the global one, so it comes last
_BATCH_KEYS = ("per_device_train_batch_size", "micro_batch_size", "per_gpu_train_batch_size",
               "train_micro_batch_size_per_gpu", "batch_size")
_GRAD_ACCUM_KEYS = ("gradient_accumulation_steps", "grad_accum", "gradient_accumulation", "grad_accum_steps")
_EPOCH_KEYS = ("num_train_epochs", "num_epochs", "epochs", "n_epochs")
_SEQ_KEYS = ("model_max_length", "max_seq_length", "max_seq_len", "cutoff_len", "seq_len")
# `max_length` means the training length only when someone typed it on the command line
_SEQ_ARG_ONLY_KEYS = ("max_length",)
_LORA_KEY = re.compile(r"(?:^|_)(?:q?lora|peft)(?:_|$)")
_ADAPTER_WORD = re.compile(r"(?:^|[^a-z])(?:q?lora|peft)(?:[^a-z]|$)")
_QLORA_WORD = re.compile(r"(?:^|[^a-z])qlora(?:[^a-z]|$)")
_PREFIX_WORD = re.compile(r"(?:^|[^a-z])(?:prefix_tuning|prefix-tuning|p_tuning|p-tuning|ptuning)(?:[^a-z]|$)")
_DPO_WORD = re.compile(r"(?:^|[^a-z])dpo(?:[^a-z]|$)")
_FOUR_BIT_FLAGS = ("load_in_4bit", "use_4bit", "4bit")
_BIT_WIDTH_KEYS = ("bits", "quantization_bit", "quantization_bits", "quant_bit", "quant_bits", "q_bits", "wbits",
                   "load_bits")
# the size in a model name: "7b", "13B", "0.5b", "350m", each ending the name or before a separator;
# "4bit" and "8x7b" are not sizes
_SIZE = re.compile(r"(?:^|[^0-9.a-z])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")
_MOE = re.compile(r"\d+x\d+(?:\.\d+)?b(?![a-z0-9])")
_RUN_FOLDER = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-([A-Za-z0-9]+)$")
_CODE_ERRORS = {"KeyError", "TypeError", "ValueError", "AttributeError", "IndexError", "NameError", "ImportError",
                "ModuleNotFoundError", "AssertionError", "SyntaxError"}
_DEVICE_WORDS = re.compile(r"cuda|nccl|cudnn|cublas|ecc|device|illegal memory|gpu", re.IGNORECASE)


def read_wandb_job(metadata_path: str | Path, job_id: str | None = None, *, earliest: pd.Timestamp | None = None,
                   now: pd.Timestamp | None = None,
                   future_tolerance_hours: float = DEFAULT_FUTURE_TOLERANCE_HOURS,
                   stale_after_hours: float = DEFAULT_STALE_AFTER_HOURS) -> ReadResult:
    """One `job_registry` row for the W&B run whose `wandb-metadata.json` (or run folder) is given.

    `job_id` defaults to the id `read_wandb_run` gives the folder's samples. `earliest`, `now` and
    `future_tolerance_hours` bound the row's times as `read_jobs` bounds a registry's; `now` also
    tells a live run (no exit record, recent life) from a dead one (see the module doc). Given a
    run folder without `wandb-metadata.json` (but with another W&B file), the row holds what the other
    files say. Never raises for bad input.
    """
    p = Path(metadata_path)
    source = str(metadata_path)
    if p.is_dir():
        run_dir = p
        if not any((p / name).is_file() for name in RUN_FILES):
            return _refuse(source, f"not a W&B run folder: none of {', '.join(RUN_FILES)}")
    elif p.is_file():
        run_dir = p.parent
    else:
        return _refuse(source, "file or folder not found")

    meta, problem = read_metadata(run_dir)
    if problem is not None:
        return _refuse(str(run_dir / METADATA), problem)
    job = job_id if job_id is not None else run_job_id(run_dir)
    problems: list[ReadResult] = []
    config, trouble = _read_config(run_dir / CONFIG)
    if trouble:
        problems.append(_refuse(str(run_dir / CONFIG), trouble))
    summary, trouble = _read_summary(run_dir / SUMMARY)
    if trouble:
        problems.append(_refuse(str(run_dir / SUMMARY), trouble))

    args = _parse_args(meta.get("args"))
    history = _history(run_dir / HISTORY)
    last_system = _last_timestamp(run_dir / SYSTEM_STATS)
    started = _started_at(meta)
    exit_code, error_pattern, error_text = _exit_record(run_dir, job)

    base_model = _basename(_first(_MODEL_KEYS, args, config))
    runtime_s = _runtime_seconds(summary)
    last_life = _latest(
        started + pd.Timedelta(seconds=runtime_s) if started is not None and runtime_s is not None else None,
        history.last_ts, last_system, _timestamp(meta.get("heartbeatAt")),
    )
    trainer_finished = "train/train_runtime" in summary or history.trainer_finished
    status = _status(exit_code, error_pattern, trainer_finished, last_life, now, stale_after_hours)
    ended = None
    if status != "running":
        ended = (started + pd.Timedelta(seconds=runtime_s) if started is not None and runtime_s is not None
                 else last_life)
    # history.csv may stop short of the summary's last step (a partial export): the larger is the count
    steps = _larger(history.max_step, _integer(summary.get("train/global_step")))

    row: dict[str, Any] = {
        "job_id": job,
        "name": _text(_first(_NAME_KEYS, args, config)),
        "technique": _technique(args, config, meta),
        "base_model": base_model,
        "model_params_b": model_params_b(base_model),
        "seq_len": _seq_len(args, config),
        "batch_size": _integer(_first(_BATCH_KEYS, args, config)),
        "grad_accum": _integer(_first(_GRAD_ACCUM_KEYS, args, config)),
        "epochs": _number(_first(_EPOCH_KEYS, args, config)),
        "gpu_type": _gpu_type(meta.get("gpu")),
        "gpu_count": _integer(meta.get("gpu_count")),
        "cloud": cloud_from_os(meta.get("os")),
        "status": status,
        "started_at": started,
        "ended_at": ended,
        "exit_reason": exit_reason(error_pattern, error_text) if status == "failed" else None,
        "total_steps": steps,
    }
    frame = validate(pd.DataFrame([row]), JOBS)
    out = {c: frame[c] for c in frame.columns}
    reason = _impossible_times(no_reason(frame.index), out, earliest, now, future_tolerance_hours)
    bad = reason.notna().to_numpy()
    rejected = rejected_rows(frame[bad], reason[bad], source=source, table=TABLE,
                             record=pd.Series(["1"] * int(bad.sum()), index=frame.index[bad]))
    result = ReadResult(TABLE, frame[~bad].reset_index(drop=True), rejected)
    # the metadata file is the one record; companion rejections are extra rows, not records
    return combine(JOBS, [result, *problems]).with_records(1)


def model_params_b(name: str | None) -> float | None:
    """Billions of parameters from a model name ("llama-7b" -> 7.0, "opt-350m" -> 0.35), else None."""
    if not name:
        return None
    text = name.lower()
    if _MOE.search(text):
        return None
    sizes = [(float(n), unit) for n, unit in _SIZE.findall(text)]
    billions = [n for n, unit in sizes if unit == "b"]
    if billions:
        return billions[0]
    millions = [n for n, unit in sizes if unit == "m"]
    return millions[0] / 1000.0 if millions else None


def cloud_from_os(os_string: object) -> str | None:
    """The cloud a kernel string names (cloud images ship their own kernel builds), else None."""
    text = _text(os_string)
    if text is None:
        return None
    text = text.lower()
    if "-gcp" in text:
        return "gcp"
    if "-aws" in text:
        return "aws"
    if "azure" in text:
        return "azure"
    return None


def exit_reason(pattern: str | None, error_text: str | None = None) -> str | None:
    """The contract's exit reason for a console's first error pattern (see the module doc), else None."""
    if pattern is None:
        return None
    if pattern == "CUDA_OOM":
        return "oom"
    if pattern in _CODE_ERRORS:
        return "code_error"
    if pattern == "RuntimeError":
        message = _last_line_starting(error_text, "RuntimeError")
        return None if message is None or _DEVICE_WORDS.search(message) else "code_error"
    return None


# ---------------------------------------------------------------------------------------------
# the files around the metadata


class _History:
    """What the job row needs from history.csv: the largest Trainer step, the last time, whether the
    Trainer logged its end-of-training summary."""

    def __init__(self, max_step: int | None = None, last_ts: pd.Timestamp | None = None,
                 trainer_finished: bool = False) -> None:
        self.max_step = max_step
        self.last_ts = last_ts
        self.trainer_finished = trainer_finished


def _history(path: Path) -> _History:
    # unreadable history is read_wandb_run's rejection to report; here it only means "no steps known"
    wanted = {"train/global_step", "_timestamp", "train/train_runtime"}
    try:
        frame = pd.read_csv(path, usecols=lambda c: str(c).strip() in wanted, low_memory=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return _History()
    frame.columns = [str(c).strip() for c in frame.columns]
    step = pd.to_numeric(frame.get("train/global_step", pd.Series(dtype="float64")), errors="coerce")
    step = step[np.isfinite(step)]
    finished = "train/train_runtime" in frame and bool(frame["train/train_runtime"].notna().any())
    return _History(int(step.max()) if len(step) else None,
                    _max_epoch(frame.get("_timestamp")), finished)


def _last_timestamp(path: Path) -> pd.Timestamp | None:
    try:
        frame = pd.read_csv(path, usecols=lambda c: str(c).strip() == "_timestamp", low_memory=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return None
    return _max_epoch(frame.iloc[:, 0]) if frame.shape[1] else None


def _max_epoch(values: pd.Series | None) -> pd.Timestamp | None:
    if values is None or values.empty:
        return None
    ts = pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit="s", utc=True, errors="coerce").max()
    return None if pd.isna(ts) else ts


def _read_config(path: Path) -> tuple[dict, str | None]:
    """config.yaml flattened to key -> value ({} when absent), and why it could not be read."""
    if not path.is_file():
        return {}, None
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return {}, f"cannot read {CONFIG}: {type(exc).__name__}: {exc}"
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        return {}, f"{CONFIG} is not a mapping"
    # W&B stores each key as {desc, value}; a plain key: value file is read as it is
    return {str(k): (v["value"] if isinstance(v, dict) and "value" in v else v)
            for k, v in raw.items() if k not in ("_wandb", "wandb_version")}, None


def _read_summary(path: Path) -> tuple[dict, str | None]:
    if not path.is_file():
        return {}, None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"cannot read {SUMMARY}: {exc}"
    if not isinstance(summary, dict):
        return {}, f"{SUMMARY} is not a JSON object"
    return summary, None


def _runtime_seconds(summary: dict) -> float | None:
    wandb = summary.get("_wandb")
    candidates = [summary.get("_runtime"), wandb.get("runtime") if isinstance(wandb, dict) else None]
    values = [v for v in (_number(c) for c in candidates) if v is not None and v >= 0]
    return max(values) if values else None


def _exit_record(run_dir: Path, job_id: str) -> tuple[int | None, str | None, str | None]:
    """(exit code, first error pattern, console tail) of the run from the nearest export summary."""
    ids = {job_id, run_dir.resolve().name}
    match = _RUN_FOLDER.match(run_dir.resolve().name)
    if match:
        ids.add(match.group(1))
    folder = run_dir.resolve()
    for _ in range(SUMMARY_LEVELS_UP + 1):
        row = _row_for(folder / RUNS_SUMMARY, ids)
        if row is not None:
            exit_code = None
            recorded = _boolean(row.get("exit_record"))
            if recorded is not False:
                exit_code = _integer(row.get("exit_code"))
            console = _row_for(folder / CONSOLE_TAIL, ids)
            pattern = _text(console.get("first_error_pattern")) if console is not None else None
            text = _text(console.get("console_tail")) if console is not None else None
            return exit_code, pattern, text
        if folder.parent == folder:
            break
        folder = folder.parent
    return None, None, None


def _row_for(path: Path, ids: set[str]) -> dict | None:
    """The last row of a per-run CSV whose run_id (or run_dir) is one of `ids`, else None."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return None
    hit = pd.Series(False, index=frame.index)
    for column in ("run_id", "run_dir"):
        if column in frame:
            hit |= frame[column].isin(ids)
    if not hit.any():
        return None
    row = frame[hit].iloc[-1]
    return {k: (None if pd.isna(v) else v) for k, v in row.items()}


# ---------------------------------------------------------------------------------------------
# fields


def _status(exit_code: int | None, pattern: str | None, trainer_finished: bool, last_life: pd.Timestamp | None,
            now: pd.Timestamp | None, stale_after_hours: float) -> str:
    if exit_code is not None:
        if exit_code == 0:
            return "succeeded"
        if exit_code == INTERRUPTED_EXIT_CODE or pattern == "KeyboardInterrupt":
            return "cancelled"
        return "failed"
    if trainer_finished:
        return "succeeded"
    if now is not None and last_life is not None:
        if last_life >= utc_timestamp(now) - pd.Timedelta(hours=stale_after_hours):
            return "running"
    return "failed"


def _parse_args(args: object) -> dict[str, object]:
    """`--key value`, `--key=value` and bare `--flag` (true) as key -> value; keys lower snake case."""
    if not isinstance(args, list):
        return {}
    out: dict[str, object] = {}
    tokens = [str(a) for a in args]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("--") or len(token) == 2:
            continue
        key, sep, value = token[2:].partition("=")
        key = key.strip().lower().replace("-", "_")
        if sep:
            out[key] = value
        elif i < len(tokens) and not tokens[i].startswith("--"):
            out[key] = tokens[i]
            i += 1
        else:
            out[key] = "true"
    return out


def _first(keys: tuple[str, ...], *sources: dict) -> object:
    """The first set value of `keys` (the command line before config.yaml: what the user typed)."""
    for source in sources:
        for key in keys:
            value = source.get(key)
            if isinstance(value, (dict, list)):  # a nested section, not this setting
                continue
            if _text(value) is not None and str(value).strip().lower() not in ("none", "null"):
                return value
    return None


def _seq_len(args: dict, config: dict) -> int | None:
    for source in (args, config):
        value = _integer(_first(_SEQ_KEYS, source))
        if value is not None and value > 0:
            return value
        source_len, target_len = _integer(source.get("max_source_length")), _integer(source.get("max_target_length"))
        if source_len is not None and target_len is not None:
            return source_len + target_len
    value = _integer(_first(_SEQ_ARG_ONLY_KEYS, args))
    return value if value is not None and value > 0 else None


def _technique(args: dict, config: dict, meta: dict) -> str:
    keys = {**_flatten(config), **args}
    program = " ".join(str(meta.get(k) or "") for k in ("program", "codePath")).lower()
    program_name = Path(program.split()[0]).name if program.strip() else ""
    values = " ".join(str(v).lower() for k, v in keys.items() if k not in _MODEL_KEYS and isinstance(v, str))
    words = f"{values} {program}"
    adapter = bool(_ADAPTER_WORD.search(words)) or any(
        _LORA_KEY.search(k) and not _is_false(v) for k, v in keys.items())
    four_bit = bool(_QLORA_WORD.search(words))
    four_bit |= any(k.rsplit(".", 1)[-1] in _FOUR_BIT_FLAGS and _is_true(v) for k, v in keys.items())
    four_bit |= any(k.rsplit(".", 1)[-1] in _BIT_WIDTH_KEYS and _integer(v) == 4 for k, v in keys.items())
    if _DPO_WORD.search(program_name):
        return "dpo"
    prefix_len = _integer(keys.get("pre_seq_len"))
    if (prefix_len is not None and prefix_len > 0) or _PREFIX_WORD.search(words):
        return "prefix"
    if four_bit:
        return "qlora"
    return "lora" if adapter else "full"


def _flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Nested config mappings as dotted keys (quantization_config.load_in_4bit), leaves kept as they are."""
    out: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{str(key).lower()}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _gpu_type(raw: object) -> str | None:
    """The vocabulary name of W&B's NVML GPU name; a name outside the vocabulary is kept as W&B wrote
    it (the registry's gpu_type is free text, and the raw name says more than nothing)."""
    text = _text(raw)
    if text is None:
        return None
    return canonical_gpu_model(text, memory_gb=None) or text


def _basename(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    name = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return name or None


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _integer(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


def _boolean(value: object) -> bool | None:
    text = _text(value)
    if text is None:
        return None
    text = text.lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _is_true(value: object) -> bool:
    return value is True or _boolean(value) is True


def _is_false(value: object) -> bool:
    if isinstance(value, (list, dict)):
        return not value
    return value is False or value is None or (isinstance(value, (int, float)) and value == 0) or (
        isinstance(value, str) and value.strip().lower() in _FALSE)


def _timestamp(value: object) -> pd.Timestamp | None:
    text = _text(value)
    if text is None:
        return None
    ts = pd.to_datetime(pd.Series([text]), utc=True, errors="coerce", format="mixed").iloc[0]
    return None if pd.isna(ts) else ts


def _larger(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _latest(*times: pd.Timestamp | None) -> pd.Timestamp | None:
    known = [t for t in times if t is not None and not pd.isna(t)]
    return max(known) if known else None


def _last_line_starting(text: str | None, prefix: str) -> str | None:
    if not text:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]
    return lines[-1] if lines else None


def _refuse(source: str, reason: str) -> ReadResult:
    return ReadResult(TABLE, JOBS.empty(), rejected_file(source, TABLE, reason))
