"""Inboxes for benchmarks/fleet.py: the demo fleet exactly as `ftops demo` writes it, or the same fleet
at a realistic sampling density.

- `demo`: `ftops.demo_fleet.write_demo_inbox` (the function `ftops demo --jobs N --days D` calls) with
  the same seed; only `end` is pinned instead of "now rounded down to the hour", so the bytes are the
  same every time. Trainer logs (JSONL, two wide CSVs, one trainer_state.json) and node-agent JSONL
  at 30 s, the job registry (CSV) and FOCUS bills (CSV).
- `realistic`: the same planned fleet (`plan_fleet`: jobs, instances, timelines, the same registry
  and the same FOCUS bills and budgets, so costs and budgets have their inputs), but the metrics a
  production fleet scrapes: per job and GPU every 15 s the five per-GPU metrics of the vocabulary
  (`gpu_utilization_pct`, `gpu_memory_used_ratio`, `gpu_memory_copy_util_pct` (memory bandwidth),
  `gpu_power_watts`, `gpu_temperature_c`), per node every 15 s `cpu_utilization_pct` and
  `host_memory_used_ratio` and a `heartbeat` every 60 s, and the trainer's `training_loss`,
  `learning_rate`, `grad_norm`, `samples_per_second`, `tokens_per_second` and `epoch` at every
  logging step (every ~10 s of training), `val_loss` and `domain_accuracy` every 30 min. Written as
  long-format Parquet, one file per job per day (`metrics/<job_id>/metrics-<YYYYMMDD>.parquet`, the
  layout of an exporter that rotates daily), rows grouped by series (metric, GPU) in time order as
  a TSDB export writes them. Columns `ts` (timestamp[ms, UTC]), `job_id`, `metric`, `value`,
  `step` (null for resource samples), `device` (the GPU index, null for node samples), `host`,
  `source`: the long layout readers/metric_export.py accepts. Healthy curves only (no injected
  faults in these metrics; the registry still carries the demo's failed and preempted jobs).

Generation is vectorised per job (numpy, then Arrow casts); only jobs and days are looped over.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ftops.demo_fleet.inbox import first_day, write_demo_inbox, write_registry_and_bills
from ftops.demo_fleet.plan import PlannedJob, job_rng, plan_fleet, signal_end_ms
from ftops.demo_fleet.policy import budget_limits, policy_dict
from ftops.demo_fleet.times import MS_PER_DAY, MS_PER_S
from ftops.demo_fleet.writers import AGENT_SOURCE, TRAINER_SOURCE
from ftops.schemas import METRICS

DENSITIES = ("demo", "realistic")
# A fixed end (midnight UTC): a day of data is one daily partition, and the same bytes every time.
END = pd.Timestamp("2026-11-20T00:00:00Z")

SCRAPE_S = 15  # DCGM exporter / node exporter scrape interval
HEARTBEAT_S = 60
LOG_S = 10  # trainer logging: every `logging_steps` steps, about 10 s of training
EVAL_S = 1800
GPU_METRICS = ("gpu_utilization_pct", "gpu_memory_used_ratio", "gpu_memory_copy_util_pct", "gpu_power_watts",
               "gpu_temperature_c")
HOST_METRICS = ("cpu_utilization_pct", "host_memory_used_ratio")
TRAIN_METRICS = ("training_loss", "learning_rate", "grad_norm", "samples_per_second", "tokens_per_second", "epoch")
EVAL_METRICS = ("val_loss", "domain_accuracy")
_NAMES = GPU_METRICS + HOST_METRICS + ("heartbeat",) + TRAIN_METRICS + EVAL_METRICS
assert set(_NAMES) <= set(METRICS), "realistic metrics must be canonical names (schemas.METRICS)"
_CODE = {name: i for i, name in enumerate(_NAMES)}
_METRIC_DICT = pa.array(_NAMES, pa.string())
_SOURCES = pa.array([AGENT_SOURCE, TRAINER_SOURCE], pa.string())
_DEVICES = pa.array([str(d) for d in range(16)], pa.string())


@dataclass
class GeneratedInbox:
    inbox: Path
    density: str
    n_jobs: int
    days: int
    seed: int
    start: pd.Timestamp
    end: pd.Timestamp
    policy: dict  # ftops.yaml content: the fleet's budgets and prices
    metric_samples: int  # as generated (staging may reject a few, e.g. rows later than now + tolerance)
    job_days_with_samples: int  # (job, day) pairs that have at least one sample
    files: dict[str, int] = field(default_factory=dict)  # per inbox kind
    bytes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {self.files.get(k, 0):,} files / {self.bytes.get(k, 0) / 2**20:,.1f} MiB"
                          for k in ("metrics", "jobs", "billing"))
        per_sample = self.bytes.get("metrics", 0) / max(1, self.metric_samples)
        per_job_day = self.metric_samples / max(1, self.n_jobs * self.days)
        return (f"{self.density} inbox: {self.n_jobs} jobs x {self.days} day(s), {self.metric_samples:,} metric "
                f"samples ({per_job_day:,.0f} per job-day, {per_sample:.2f} bytes per sample on disk), "
                f"{self.total_bytes / 2**20:,.1f} MiB on disk ({kinds}); written in {self.seconds:.1f} s")


def write_inbox(inbox: Path, density: str, n_jobs: int, days: int, seed: int = 7,
                end: pd.Timestamp = END) -> GeneratedInbox:
    """Write a fresh inbox of `density` into `inbox` (which must not hold another inbox)."""
    if density not in DENSITIES:
        raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
    inbox = Path(inbox)
    t0 = time.perf_counter()
    out = _write_demo(inbox, n_jobs, days, seed, end) if density == "demo" else \
        _write_realistic(inbox, n_jobs, days, seed, end)
    out.seconds = time.perf_counter() - t0
    for kind in ("metrics", "jobs", "billing"):
        files = [p for p in (inbox / kind).rglob("*") if p.is_file()]
        out.files[kind] = len(files)
        out.bytes[kind] = sum(p.stat().st_size for p in files)
    return out


def _write_demo(inbox: Path, n_jobs: int, days: int, seed: int, end: pd.Timestamp) -> GeneratedInbox:
    manifest = write_demo_inbox(inbox, seed=seed, n_jobs=n_jobs, days=days, end=end)
    policy = yaml.safe_load((inbox / "demo_policy.yaml").read_text())
    job_days = 0
    for folder in (inbox / "metrics").iterdir():  # a job's agent files are rotated daily
        job_days += max(1, len(list(folder.glob("agent-*.jsonl"))))
    return GeneratedInbox(inbox, "demo", n_jobs, days, seed, manifest.start, manifest.end, policy,
                          manifest.counts["metric_samples"], job_days)


def _write_realistic(inbox: Path, n_jobs: int, days: int, seed: int, end: pd.Timestamp) -> GeneratedInbox:
    end_ms = int(end.value // 1_000_000)
    start_ms = end_ms - days * MS_PER_DAY
    jobs = plan_fleet(seed, n_jobs, days, end)
    samples = job_days = 0
    for job in jobs:
        if job.started_ms is None:
            continue
        table = realistic_job_table(job, seed, start_ms, end_ms)
        if table is None:
            continue
        ts_ms = table.column("ts").cast(pa.int64()).to_numpy()
        day = ts_ms // MS_PER_DAY
        folder = inbox / "metrics" / job.job_id
        folder.mkdir(parents=True, exist_ok=True)
        for d in np.unique(day):
            stamp = np.datetime_as_string(np.datetime64(int(d), "D")).replace("-", "")
            part = table.take(pa.array(np.flatnonzero(day == d)))  # keeps the series-major order
            pq.write_table(part, folder / f"metrics-{stamp}.parquet")
            job_days += 1
        samples += table.num_rows
    usage, _, _ = write_registry_and_bills(inbox, jobs, seed, start_ms, end_ms)  # as write_demo_inbox does
    policy = policy_dict(budget_limits(usage, end, seed)[0], first_day(start_ms))
    (inbox / "fleet_data.json").write_text(json.dumps({"density": "realistic", "seed": seed, "n_jobs": n_jobs,
                                                       "days": days, "end": end.isoformat(),
                                                       "metric_samples": samples}) + "\n")
    return GeneratedInbox(inbox, "realistic", n_jobs, days, seed, pd.Timestamp(start_ms, unit="ms", tz="UTC"), end,
                          policy, samples, job_days)


def realistic_job_table(job: PlannedJob, seed: int, start_ms: int, end_ms: int) -> pa.Table | None:
    """All samples of one job in [start_ms, end_ms] as a long Arrow table, grouped by series."""
    r = job_rng(seed, job.index, 21)  # streams 1-9 are the demo's own; 21+ never shift them
    assert job.started_ms is not None
    node_start = max(job.started_ms, start_ms)
    stop = min(signal_end_ms(job, end_ms), end_ms)  # the node goes silent when the job's signals end
    if stop <= node_start:
        return None
    g = job.instance.gpu_count
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, int]] = []

    # --- node exporter / DCGM: one scrape every 15 s at a per-target offset, a few ms of jitter
    offset = int(r.integers(0, SCRAPE_S * MS_PER_S))
    first = node_start + (offset - node_start) % (SCRAPE_S * MS_PER_S)
    ticks = np.arange(first, stop + 1, SCRAPE_S * MS_PER_S, dtype=np.int64)
    ticks = ticks + r.integers(0, 25, len(ticks))
    n = len(ticks)
    if n:
        t0 = job.t0_ms
        training = (ticks >= t0)[:, None]  # model loading before t0: GPUs mostly idle, memory filling
        util_mean = r.uniform(84, 94)
        util = np.where(training, util_mean + r.normal(0, 1.5, g)[None, :] + r.normal(0, 3.0, (n, g)),
                        r.uniform(0, 6, (n, g)))
        util = np.clip(util, 0.0, 100.0)
        mem_level = r.uniform(0.55, 0.93)
        load_frac = np.clip((ticks - node_start) / max(1.0, t0 - node_start), 0.0, 1.0)[:, None]
        mem = np.where(training, mem_level + 0.01 * r.normal(0, 1, g)[None, :] + r.normal(0, 0.004, (n, g)),
                       0.02 + (mem_level - 0.02) * load_frac)
        mem = np.clip(mem, 0.0, 0.999)
        copy = np.clip(r.uniform(30, 60) * util / 90.0 + r.normal(0, 3.0, (n, g)), 0.0, 100.0)
        tdp = job.instance.gpu_tdp_watts
        power = np.minimum(tdp * (0.12 + 0.78 * util / 100.0) * np.exp(r.normal(0, 0.03, (n, g))), tdp)
        temp = 34.0 + 0.35 * util + r.normal(0, 2.0, g)[None, :] + r.normal(0, 0.7, (n, g))
        device = np.repeat(np.arange(g, dtype=np.int32), n)  # series-major: all of GPU 0, then GPU 1, ...
        ts_gpu = np.tile(ticks, g)
        for name, values, digits in (("gpu_utilization_pct", util, 1), ("gpu_memory_used_ratio", mem, 4),
                                     ("gpu_memory_copy_util_pct", copy, 1), ("gpu_power_watts", power, 1),
                                     ("gpu_temperature_c", temp, 1)):
            blocks.append((np.full(n * g, _CODE[name], np.int32), ts_gpu, np.round(values.T.reshape(-1), digits),
                           None, device, 0))
        cpu = np.clip(r.uniform(40, 75) + r.normal(0, 4.0, n), 1.0, 100.0)
        host_mem = np.clip(r.uniform(0.25, 0.6) + r.normal(0, 0.01, n), 0.0, 1.0)
        for name, values, digits in (("cpu_utilization_pct", cpu, 1), ("host_memory_used_ratio", host_mem, 4)):
            blocks.append((np.full(n, _CODE[name], np.int32), ticks, np.round(values, digits), None, None, 0))
    beats = np.arange(node_start + HEARTBEAT_S * MS_PER_S, stop + 1, HEARTBEAT_S * MS_PER_S, dtype=np.int64)
    if len(beats):
        blocks.append((np.full(len(beats), _CODE["heartbeat"], np.int32), beats, np.ones(len(beats)), None, None, 0))

    # --- the trainer: a log entry every `logging_steps` optimiser steps (~10 s), an evaluation every 30 min
    t0 = max(job.t0_ms, start_ms)
    train_end = min(stop, job.t0_ms + int(job.log_rel_s[job.stop_idx] * MS_PER_S))
    eff_batch = job.batch_size * job.grad_accum * job.instance.gpu_count
    step_s = eff_batch / job.samples_per_second
    logging_steps = max(1, round(LOG_S / step_s))
    interval_ms = logging_steps * step_s * MS_PER_S
    k0 = int(math.ceil((t0 - job.t0_ms) / interval_ms))  # the first log at or after the window's start
    k1 = int((train_end - job.t0_ms) // interval_ms)
    if k1 > k0:
        k = np.arange(max(k0, 1), k1 + 1, dtype=np.int64)
        m = len(k)
        log_ms = job.t0_ms + np.round(k * interval_ms).astype(np.int64)
        steps = k * logging_steps
        total = float(max(job.total_steps, int(steps[-1])))
        s = steps.astype(np.float64)
        warm = max(1.0, round(0.03 * total))
        min_lr = max(0.1 * job.peak_lr, 1e-6)
        cos = min_lr + 0.5 * (job.peak_lr - min_lr) * (1 + np.cos(np.pi * np.clip((s - warm) / (total - warm), 0, 1)))
        lr = np.where(s < warm, 1e-6 + (job.peak_lr - 1e-6) * s / warm, cos)
        l0, l_inf, alpha = r.uniform(1.6, 2.6), r.uniform(0.7, 1.2), r.uniform(0.5, 0.8)
        smooth = l_inf + (l0 - l_inf) * (1.0 + s / max(1.0, 0.02 * total)) ** (-alpha)
        loss = smooth * np.exp(np.clip(r.normal(0, 0.03, m), -0.08, 0.08))
        grad = r.uniform(0.4, 2.5) * (1 + 1.5 * np.exp(-s / max(1.0, 0.03 * total))) \
            * np.exp(np.clip(r.normal(0, 0.07, m), -0.16, 0.16))
        sps = job.samples_per_second * np.exp(np.clip(r.normal(0, 0.02, m), -0.05, 0.05))
        tps = sps * job.seq_len * job.token_fill
        epoch = s / (total / job.epochs)
        for name, values in (("training_loss", np.round(loss, 4)), ("learning_rate", lr),
                             ("grad_norm", np.round(grad, 4)), ("samples_per_second", np.round(sps, 3)),
                             ("tokens_per_second", np.round(tps, 1)), ("epoch", np.round(epoch, 4))):
            blocks.append((np.full(m, _CODE[name], np.int32), log_ms, values, steps, None, 1))
        every = max(1, int(EVAL_S * MS_PER_S // interval_ms))
        e = np.flatnonzero(k % every == 0)
        if len(e):
            val = smooth[e] * r.uniform(1.03, 1.1) * np.exp(r.normal(0, 0.008, len(e)))
            acc = np.clip(0.95 - 0.08 * (smooth[e] - l_inf) / max(1e-9, l0 - l_inf) + r.normal(0, 0.002, len(e)),
                          0.0, 0.99)
            for name, values in (("val_loss", np.round(val, 4)), ("domain_accuracy", np.round(acc, 4))):
                blocks.append((np.full(len(e), _CODE[name], np.int32), log_ms[e], values, steps[e], None, 1))
    if not blocks:
        return None

    codes = np.concatenate([b[0] for b in blocks])
    ts = np.concatenate([b[1] for b in blocks])
    values = np.concatenate([b[2] for b in blocks])
    steps_all = np.concatenate([b[3] if b[3] is not None else np.full(len(b[0]), -1, np.int64) for b in blocks])
    devices = np.concatenate([b[4] if b[4] is not None else np.full(len(b[0]), -1, np.int32) for b in blocks])
    sources = np.concatenate([np.full(len(b[0]), b[5], np.int32) for b in blocks])
    total_rows = len(codes)

    def constant(text: str) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(total_rows, np.int32)),
                                              pa.array([text], pa.string())).cast(pa.string())

    return pa.table({
        "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "job_id": constant(job.job_id),
        "metric": pa.DictionaryArray.from_arrays(pa.array(codes), _METRIC_DICT).cast(pa.string()),
        "value": pa.array(values, pa.float64()),
        "step": pa.array(steps_all, pa.int64(), mask=steps_all < 0),
        "device": pa.DictionaryArray.from_arrays(pa.array(devices, mask=devices < 0), _DEVICES).cast(pa.string()),
        "host": constant(job.host),
        "source": pa.DictionaryArray.from_arrays(pa.array(sources), _SOURCES).cast(pa.string()),
    })
