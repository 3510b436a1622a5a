"""The files a fleet writes, in the formats people produce: long-format JSONL from the node agent and
the training callback, a wide CSV log, a Hugging Face `trainer_state.json`, and the job registry."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftops.demo_fleet.plan import PlannedJob
from ftops.demo_fleet.signals import ResourceSignals, TrainingSignals
from ftops.demo_fleet.times import MS_PER_DAY, MS_PER_S, ms_text, ms_to_iso

# the labels the real writers put on their rows (ftops.integrations.hf.SOURCE, ftops.agent.SOURCE), so
# demo rows read like theirs; not imported from there: hf imports transformers when it is installed
TRAINER_SOURCE = "hf_callback"
AGENT_SOURCE = "agent"


def _format_values(values: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """JSON number text: shortest repr of the rounded value; NaN/Inf as Python's json writes them."""
    out = values.astype(str).astype(object)
    is_lr = metric == "learning_rate"
    if is_lr.any():
        out[is_lr] = np.char.mod("%.6g", values[is_lr]).astype(object)
    out[np.isnan(values)] = "NaN"
    out[np.isposinf(values)] = "Infinity"
    out[np.isneginf(values)] = "-Infinity"
    return out


def _jsonl_lines(ts_text: np.ndarray, job_id: str, metric: np.ndarray, values: np.ndarray,
                 step: np.ndarray, device: np.ndarray, host: str, source: str) -> np.ndarray:
    """Long-format JSON objects, built by array concatenation (no per-sample Python)."""
    step_txt = np.where(step >= 0, step.astype(str), "null").astype(object)
    dev_txt = np.where(device >= 0, np.char.add(np.char.add('"', device.astype(str)), '"'), "null").astype(object)
    return (
        '{"ts":"' + ts_text.astype(object)
        + f'","job_id":"{job_id}","metric":"' + metric.astype(object)
        + '","value":' + _format_values(values, metric)
        + ',"step":' + step_txt
        + ',"device":' + dev_txt
        + f',"host":"{host}","source":"{source}"}}'
    )


def _training_long(tr: TrainingSignals) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    names = list(tr.values)
    n = len(tr.steps)
    ts = np.repeat(tr.log_ms, len(names))
    metric = np.tile(np.array(names, dtype=object), n)
    values = np.stack([tr.values[k] for k in names], axis=1).reshape(-1)
    step = np.repeat(tr.steps, len(names))
    e_names = list(tr.eval_values)
    ne = len(tr.eval_steps)
    ts = np.concatenate([ts, np.repeat(tr.eval_ms, len(e_names))])
    metric = np.concatenate([metric, np.tile(np.array(e_names, dtype=object), ne)])
    values = np.concatenate([values, np.stack([tr.eval_values[k] for k in e_names], axis=1).reshape(-1)
                             if ne else np.zeros(0)])
    step = np.concatenate([step, np.repeat(tr.eval_steps, len(e_names))])
    order = np.argsort(ts, kind="stable")
    return ts[order], metric[order], values[order], step[order]


def _resource_long(res: ResourceSignals) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = len(res.ts_ms)
    parts_ts, parts_metric, parts_val, parts_dev = [], [], [], []
    for name, arr in res.gpu.items():
        g = arr.shape[1]
        parts_ts.append(np.repeat(res.ts_ms, g))
        parts_metric.append(np.full(n * g, name, dtype=object))
        parts_val.append(arr.reshape(-1))
        parts_dev.append(np.tile(np.arange(g), n))
    for name, arr in res.host.items():
        parts_ts.append(res.ts_ms)
        parts_metric.append(np.full(n, name, dtype=object))
        parts_val.append(arr)
        parts_dev.append(np.full(n, -1))
    nh = len(res.heartbeat_ms)
    parts_ts.append(res.heartbeat_ms)
    parts_metric.append(np.full(nh, "heartbeat", dtype=object))
    parts_val.append(np.ones(nh))
    parts_dev.append(np.full(nh, -1))
    ts = np.concatenate(parts_ts)
    order = np.argsort(ts, kind="stable")
    return ts[order], np.concatenate(parts_metric)[order], np.concatenate(parts_val)[order], \
        np.concatenate(parts_dev)[order]


def _write_lines(path: Path, lines: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        if len(lines):
            fh.write("\n".join(lines.tolist()))
            fh.write("\n")


def write_trainer_jsonl(path: Path, job: PlannedJob, tr: TrainingSignals) -> int:
    ts, metric, values, step = _training_long(tr)
    lines = _jsonl_lines(ms_to_iso(ts, "ms"), job.job_id, metric, values, step,
                         np.full(len(ts), -1), job.host, TRAINER_SOURCE)
    _write_lines(path, lines)
    return len(lines)


def write_agent_jsonl(folder: Path, job: PlannedJob, res: ResourceSignals) -> tuple[int, int]:
    ts, metric, values, device = _resource_long(res)
    lines = _jsonl_lines(ms_to_iso(ts, "s"), job.job_id, metric, values, np.full(len(ts), -1),
                         device, job.host, AGENT_SOURCE)
    day = ts // MS_PER_DAY
    files = 0
    for d in np.unique(day):
        stamp = np.datetime_as_string(np.datetime64(int(d), "D")).replace("-", "")
        sel = day == d
        _write_lines(folder / f"agent-{stamp}.jsonl", lines[sel])
        files += 1
    return len(lines), files


def write_wide_csv(path: Path, job: PlannedJob, tr: TrainingSignals) -> int:
    frame = pd.DataFrame({"ts": ms_to_iso(tr.log_ms, "ms"), "job_id": job.job_id, "step": tr.steps})
    for name, values in tr.values.items():
        frame[name] = values
    for name in tr.eval_values:
        frame[name] = np.nan
    at = np.searchsorted(tr.steps, tr.eval_steps)
    for name, values in tr.eval_values.items():
        frame.loc[at, name] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
    return int(frame.drop(columns=["ts", "job_id", "step"]).notna().to_numpy().sum())


def write_trainer_state(path: Path, job: PlannedJob, tr: TrainingSignals) -> int:
    v = tr.values
    log = pd.DataFrame({
        "epoch": v["epoch"], "grad_norm": v["grad_norm"], "learning_rate": v["learning_rate"],
        "loss": v["training_loss"], "step": tr.steps,
    })
    steps_per_epoch = job.total_steps / job.epochs
    ev = pd.DataFrame({
        "epoch": np.round(tr.eval_steps / steps_per_epoch, 4),
        "eval_domain_accuracy": tr.eval_values["domain_accuracy"],
        "eval_loss": tr.eval_values["val_loss"],
        "eval_runtime": round(job.eval_s, 3),
        "eval_samples_per_second": round(job.samples_per_second * 3.0, 3),
        "eval_steps_per_second": round(job.samples_per_second * 3.0 / max(1, job.batch_size), 3),
        "step": tr.eval_steps,
    })
    # the Trainer appends each evaluation right after the logging entry of the same step
    log["_order"] = np.arange(len(log)) * 2.0
    ev["_order"] = np.searchsorted(tr.steps, tr.eval_steps) * 2.0 + 1.0
    entries_frame = pd.concat([log, ev], ignore_index=True).sort_values("_order", kind="stable")
    entries = [
        {k: (int(x) if k == "step" else x) for k, x in rec.items() if k != "_order" and not _is_nan(x)}
        for rec in entries_frame.to_dict(orient="records")
    ]
    global_step = int(tr.steps[-1])
    runtime = float(job.log_rel_s[len(tr.steps) - 1])
    final_epoch = float(np.round(global_step / steps_per_epoch, 4))
    eff_batch = job.batch_size * job.grad_accum * job.instance.gpu_count
    entries.append({
        "epoch": final_epoch,
        "step": global_step,
        "total_flos": float(f"{6 * job.model_params_b * 1e9 * global_step * eff_batch * job.seq_len:.6e}"),
        "train_loss": float(np.round(np.nanmean(v["training_loss"]), 4)),
        "train_runtime": round(runtime, 4),
        "train_samples_per_second": round(global_step * eff_batch / runtime, 3),
        "train_steps_per_second": round(global_step / runtime, 3),
    })
    best = int(np.argmin(tr.eval_values["val_loss"])) if len(tr.eval_steps) else None
    state = {
        "best_global_step": int(tr.eval_steps[best]) if best is not None else None,
        "best_metric": float(tr.eval_values["val_loss"][best]) if best is not None else None,
        "best_model_checkpoint": f"./output/checkpoint-{int(tr.eval_steps[best])}" if best is not None else None,
        "epoch": final_epoch,
        "eval_steps": int(job.eval_every_logs * job.logging_steps),
        "global_step": global_step,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": entries,
        "logging_steps": job.logging_steps,
        "max_steps": job.total_steps,
        "num_input_tokens_seen": 0,
        "num_train_epochs": job.epochs,
        "save_steps": int(job.eval_every_logs * job.logging_steps),
        "stateful_callbacks": {"TrainerControl": {"args": {
            "should_epoch_stop": False, "should_evaluate": False, "should_log": False,
            "should_save": True, "should_training_stop": global_step >= job.total_steps}, "attributes": {}}},
        "total_flos": entries[-1]["total_flos"],
        "train_batch_size": job.batch_size,
        "trial_name": None,
        "trial_params": None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # the Trainer writes the file at its last step; readers anchor step times on the mtime
    mtime = (job.t0_ms + runtime * MS_PER_S) / MS_PER_S
    os.utime(path, (mtime, mtime))
    # samples a reader gets: 4 per log entry, 2 per evaluation, train_samples_per_second once
    return 4 * len(tr.steps) + 2 * len(tr.eval_steps) + 1


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


_JOB_COLUMNS = (
    "job_id", "name", "technique", "domain", "base_model", "model_params_b", "dataset_samples", "seq_len",
    "batch_size", "grad_accum", "epochs", "gpu_type", "gpu_count", "instance_type", "cloud", "region",
    "pricing", "budget_category", "critical", "status", "submitted_at", "started_at", "ended_at",
    "exit_reason", "total_steps",
)


def jobs_frame(jobs: list[PlannedJob]) -> pd.DataFrame:
    rows = [{
        "job_id": j.job_id, "name": j.name, "technique": j.technique, "domain": j.domain,
        "base_model": j.base_model, "model_params_b": j.model_params_b, "dataset_samples": j.dataset_samples,
        "seq_len": j.seq_len, "batch_size": j.batch_size, "grad_accum": j.grad_accum, "epochs": float(j.epochs),
        "gpu_type": j.instance.gpu_type, "gpu_count": j.instance.gpu_count, "instance_type": j.instance.name,
        "cloud": "aws", "region": j.region, "pricing": j.pricing, "budget_category": j.budget_category,
        "critical": j.critical, "status": j.status, "submitted_at": ms_text(j.submitted_ms),
        "started_at": ms_text(j.started_ms), "ended_at": ms_text(j.ended_ms), "exit_reason": j.exit_reason,
        "total_steps": j.total_steps,
    } for j in jobs]
    frame = pd.DataFrame(rows, columns=list(_JOB_COLUMNS))
    for col in ("dataset_samples", "seq_len", "batch_size", "grad_accum", "gpu_count", "total_steps"):
        frame[col] = frame[col].astype("Int64")
    return frame
