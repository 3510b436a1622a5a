"""A seeded synthetic fine-tuning fleet: the inbox that `ftops demo` and the end-to-end tests read.

`write_demo_inbox` writes, for `n_jobs` jobs over the `days` before `end`:

- `jobs/jobs.csv`: the job registry (the `jobs` contract of ftops.schemas);
- `metrics/<job_id>/`: per job, the trainer's log and the node agent's resource samples. Most jobs
  log long-format JSONL (`trainer.jsonl`, `agent-<YYYYMMDD>.jsonl`, rotated daily like an agent
  does); two jobs log a wide CSV (`trainer_log.csv`) and one a Hugging Face `trainer_state.json`,
  because those are the other formats people produce;
- `billing/focus-<YYYY-MM-DD>.csv`: FOCUS 1.0 hourly line items (same columns, order and `NULL`
  convention as the public FOCUS sample data), tagged with job_id / budget_category / team, plus
  untagged storage and networking lines and one credit. Bills lag: the last 12 hours have no lines;
- `demo_manifest.json` and `demo_policy.yaml` at the inbox root (neither is an inbox input).

The curves follow what real fine-tuning runs log: loss falling as a power law with per-step noise
and a drop at each epoch boundary, linear warm-up from ~1e-6 then cosine decay, gradient norms
between ~0.3 and 5 that start high and settle, GPU utilisation 80-95 % while training. Some jobs
carry injected faults (divergence, gradient explosion, idle GPUs, OOM, spot preemption, budget
overrun, overfitting, throughput loss, learning rate out of range); the manifest lists each one
with the alert rule expected to catch it. Healthy jobs stay inside the §4 default rules.

Everything is drawn from `numpy.random.default_rng` streams derived from the seed, job by job, so
the same seed and `end` give byte-identical files. Per-sample work is vectorised; only jobs are
looped over. The default size writes ~2.4 million metric samples (~380 MB) in about 6 s on two
cores; `python -m ftops.demo_fleet <inbox>` prints the counts and the time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ftops.schemas import utc_timestamp
import yaml

MS_PER_S = 1000
MS_PER_H = 3_600_000
MS_PER_DAY = 86_400_000

RESOURCE_INTERVAL_S = 30  # DCGM / W&B system stats cadence
HEARTBEAT_INTERVAL_S = 60
BILL_LAG_HOURS = 12
# Median planned run length. With 30 s resource samples it sets the volume: ~2.4 million samples
# at the defaults (40 jobs, 7 days), which writes in seconds and ingests well within the demo's budget.
DURATION_MEDIAN_H = 15.0  # cloud bills arrive late; the newest hours must be estimated downstream
DEMO_TAG_TEAM = {
    "medical": "health-ai",
    "legal": "legal-ai",
    "finance": "fin-ml",
    "code": "dev-tools",
    "support": "cx-ml",
    "retail": "commerce-ml",
}
DOMAINS = tuple(DEMO_TAG_TEAM)
BUDGET_CATEGORIES = ("research", "product", "experiments")
OVERRUN_CATEGORY = "experiments"
TRAINER_SOURCE = "ftops-callback"
AGENT_SOURCE = "ftops-agent"


@dataclass(frozen=True)
class DemoInstance:
    """One row of the demo price table (not a catalogue: a handful of types to make a fleet from)."""

    name: str
    gpu_type: str
    gpu_count: int
    gpu_memory_gib: int
    vcpus: int
    memory_gib: int
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float
    gpu_tdp_watts: float
    effective_tflops_per_gpu: float  # bf16 at a typical ~35-40 % MFU, to derive plausible throughput


# DEMO price table: public AWS us-east-1 on-demand list prices (Linux, 2025) rounded, and typical
# spot prices of that period. Illustrative only; the bundled catalogue is the reference.
DEMO_INSTANCES: dict[str, DemoInstance] = {
    i.name: i
    for i in (
        DemoInstance("g6.xlarge", "L4", 1, 24, 4, 16, 0.8048, 0.35, 72.0, 30.0),
        DemoInstance("g6.12xlarge", "L4", 4, 24, 48, 192, 4.6016, 1.95, 72.0, 30.0),
        DemoInstance("g5.2xlarge", "A10G", 1, 24, 8, 32, 1.212, 0.49, 300.0, 35.0),
        DemoInstance("g5.12xlarge", "A10G", 4, 24, 48, 192, 5.672, 2.30, 300.0, 35.0),
        DemoInstance("g6e.12xlarge", "L40S", 4, 48, 48, 384, 10.4926, 4.20, 350.0, 100.0),
        DemoInstance("p4d.24xlarge", "A100", 8, 40, 96, 1152, 21.9576, 8.20, 400.0, 110.0),
        DemoInstance("p4de.24xlarge", "A100-80GB", 8, 80, 96, 1152, 27.447, 9.90, 400.0, 120.0),
        DemoInstance("p5.48xlarge", "H100", 8, 80, 192, 2048, 55.04, 19.80, 700.0, 280.0),
    )
}

# (technique, base model, parameters in billions, instance types it is run on)
_CONFIGS: tuple[tuple[str, str, float, tuple[str, ...]], ...] = (
    ("lora", "meta-llama/Llama-3.1-8B-Instruct", 8.0, ("g5.12xlarge", "g6.12xlarge", "g6e.12xlarge", "p4d.24xlarge")),
    ("lora", "mistralai/Mistral-7B-Instruct-v0.3", 7.2, ("g5.12xlarge", "g6e.12xlarge", "p4d.24xlarge")),
    ("lora", "Qwen/Qwen2.5-14B-Instruct", 14.7, ("g6e.12xlarge", "p4d.24xlarge", "p4de.24xlarge")),
    ("lora", "meta-llama/Llama-3.1-70B-Instruct", 70.6, ("p4de.24xlarge", "p5.48xlarge")),
    ("qlora", "meta-llama/Llama-3.1-8B-Instruct", 8.0, ("g6.xlarge", "g5.2xlarge")),
    ("qlora", "google/gemma-2-9b-it", 9.2, ("g6.xlarge", "g5.2xlarge")),
    ("qlora", "Qwen/Qwen2.5-14B-Instruct", 14.7, ("g6.12xlarge", "g5.12xlarge")),
    ("qlora", "meta-llama/Llama-3.1-70B-Instruct", 70.6, ("g6e.12xlarge", "p4d.24xlarge")),
    ("full", "Qwen/Qwen2.5-1.5B-Instruct", 1.5, ("g6e.12xlarge", "p4d.24xlarge")),
    ("full", "microsoft/Phi-3-mini-4k-instruct", 3.8, ("p4d.24xlarge", "p4de.24xlarge")),
    ("full", "meta-llama/Llama-3.1-8B-Instruct", 8.0, ("p4de.24xlarge", "p5.48xlarge")),
    ("dpo", "meta-llama/Llama-3.1-8B-Instruct", 8.0, ("p4d.24xlarge", "g6e.12xlarge")),
    ("dpo", "mistralai/Mistral-7B-Instruct-v0.3", 7.2, ("p4d.24xlarge",)),
    ("prefix", "THUDM/chatglm2-6b", 6.2, ("g5.2xlarge", "g6.xlarge")),
)
_TECHNIQUE_WEIGHTS = {"lora": 0.38, "qlora": 0.25, "full": 0.2, "dpo": 0.1, "prefix": 0.07}
# training FLOPs per token in units of parameters: 6N full; adapters skip weight gradients;
# QLoRA pays for dequantisation; DPO runs policy and reference on chosen and rejected
_FLOPS_PER_TOKEN = {"full": 6.0, "lora": 4.0, "prefix": 4.0, "qlora": 5.0, "dpo": 12.0}
_PEAK_LR = {"lora": (1e-4, 3e-4), "qlora": (1e-4, 2e-4), "full": (1e-5, 3e-5), "dpo": (5e-6, 1e-5),
            "prefix": (3e-4, 8e-4)}

# Fault -> the rule expected to catch it and its category: a monitoring rule (ftops.monitoring.catalog),
# budget_threshold from budget enforcement, job_preempted from the recovery side.
FAULTS: dict[str, tuple[str, str]] = {
    "loss_divergence": ("loss_non_finite", "training"),
    "gradient_explosion": ("grad_norm_explosion", "training"),
    "gpu_underutilized": ("gpu_underutilized", "resource"),
    "oom": ("gpu_memory_capacity_high", "resource"),
    "spot_preemption": ("job_preempted", "resource"),
    "budget_overrun": ("budget_threshold", "cost"),
    "val_overfitting": ("overfitting", "quality"),
    "throughput_degradation": ("throughput_degraded", "training"),
    "lr_out_of_range": ("learning_rate_out_of_range", "training"),
}
# one job per fault, two preemptions
_FAULT_SLOTS = ("loss_divergence", "gradient_explosion", "gpu_underutilized", "oom", "spot_preemption",
                "spot_preemption", "budget_overrun", "val_overfitting", "throughput_degradation",
                "lr_out_of_range")
_TERMINATING = {"loss_divergence", "oom", "spot_preemption", "cancelled"}
MIN_JOBS = 16


@dataclass(frozen=True)
class InjectedFault:
    job_id: str
    fault: str
    expected_rule: str
    category: str
    onset: str  # ISO-8601 UTC: when the fault starts to show in the data
    detail: str


@dataclass(frozen=True)
class DemoManifest:
    seed: int
    n_jobs: int
    days: int
    start: pd.Timestamp
    end: pd.Timestamp
    counts: dict[str, int]
    faults: tuple[InjectedFault, ...]
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "n_jobs": self.n_jobs,
            "days": self.days,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "counts": dict(self.counts),
            "faults": [asdict(f) for f in self.faults],
            "policy": self.policy,
        }


@dataclass
class _Job:
    """Everything needed to write one job: registry fields plus the generator's own parameters."""

    index: int
    fault: str | None = None
    role: str = "healthy"  # healthy | running | pending | cancelled | fault
    fmt: str = "jsonl"  # jsonl | wide_csv | trainer_state
    job_id: str = ""
    name: str = ""
    technique: str = "lora"
    domain: str = "medical"
    base_model: str = ""
    model_params_b: float = 0.0
    instance: DemoInstance = DEMO_INSTANCES["g5.12xlarge"]
    pricing: str = "on_demand"
    budget_category: str = "research"
    critical: bool = False
    seq_len: int = 2048
    batch_size: int = 4
    grad_accum: int = 1
    epochs: int = 1
    total_steps: int = 0
    dataset_samples: int = 0
    samples_per_second: float = 1.0
    token_fill: float = 0.8
    logging_steps: int = 10
    eval_every_logs: int = 10
    peak_lr: float = 1e-4
    region: str = "us-east-1"
    zone: str = "us-east-1a"
    host: str = ""
    resource_id: str = ""
    # timeline, seconds relative to the start of training (t0 = started_at + load time)
    load_s: float = 120.0
    log_rel_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    log_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    eval_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    eval_s: float = 120.0
    stop_idx: int = -1  # last log index written (faults that end the job early)
    end_rel_s: float = 0.0  # job end relative to t0 (natural or fault)
    signal_end_rel_s: float = 0.0  # the last sample of any kind (a reclaimed node goes silent first)
    fault_frac: float = 0.5
    # absolute times, epoch milliseconds
    submitted_ms: int = 0
    started_ms: int | None = None
    ended_ms: int | None = None
    status: str = "pending"
    exit_reason: str | None = None

    @property
    def t0_ms(self) -> int:
        assert self.started_ms is not None
        return self.started_ms + int(self.load_s * MS_PER_S)


# ------------------------------------------------------------------------------------------------
# plan


def _default_end(end: pd.Timestamp | None) -> pd.Timestamp:
    if end is None:
        return pd.Timestamp.now(tz="UTC").floor("h")
    return utc_timestamp(end)


def _job_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # independent streams per job and purpose: changing one job's curve never shifts another's
    return np.random.default_rng([seed, index, stream])


def _plan(seed: int, n_jobs: int, days: int, end: pd.Timestamp) -> list[_Job]:
    if n_jobs < MIN_JOBS:
        raise ValueError(f"n_jobs must be at least {MIN_JOBS} (one job per injected fault plus healthy ones)")
    if days < 1:
        raise ValueError("days must be at least 1")
    rng = np.random.default_rng([seed, 0])
    end_ms = int(end.value // 1_000_000)
    window_ms = days * MS_PER_DAY
    start_ms = end_ms - window_ms

    roles: list[tuple[str, str | None]] = [("fault", f) for f in _FAULT_SLOTS]
    n_pending = max(1, round(0.06 * n_jobs))
    n_running = max(1, round(0.08 * n_jobs))
    roles += [("pending", None)] * n_pending + [("running", None)] * n_running
    if n_jobs >= 20:
        roles.append(("cancelled", None))
    roles += [("healthy", None)] * (n_jobs - len(roles))
    order = rng.permutation(n_jobs)
    jobs = [_Job(index=int(i), role=roles[k][0], fault=roles[k][1]) for k, i in enumerate(order)]
    jobs.sort(key=lambda j: j.index)

    max_duration_h = min(30.0, 0.6 * days * 24)
    for job in jobs:
        _configure(job, seed, max_duration_h)
        _timeline(job, seed)
        _place(job, seed, start_ms, end_ms)

    # Alternative log formats go to healthy jobs, so that no fault hides behind a format; the
    # trainer_state.json one has finished (the Trainer's summary entry carries the run time).
    healthy = [jobs[i] for i in rng.permutation(len(jobs)) if jobs[i].role == "healthy"]
    healthy.sort(key=lambda j: j.status != "succeeded")
    for job, fmt in zip(healthy, ("trainer_state", "wide_csv", "wide_csv")):
        job.fmt = fmt

    # job ids in submission order, as a scheduler would number them
    jobs.sort(key=lambda j: (j.submitted_ms, j.index))
    for k, job in enumerate(jobs, 1):
        job.job_id = f"ft-{k:04d}"
        short = job.base_model.split("/")[-1].lower().replace("-instruct", "").replace("-it", "")
        job.name = f"{job.domain}-{job.technique}-{short}-{k:02d}"
        r = _job_rng(seed, job.index, 9)
        job.host = f"ip-10-{r.integers(0, 4)}-{r.integers(0, 256)}-{r.integers(1, 255)}"
        job.resource_id = "i-0" + "".join(r.choice(list("0123456789abcdef"), 16))
    return jobs


def _configure(job: _Job, seed: int, max_duration_h: float) -> None:
    r = _job_rng(seed, job.index, 1)
    techniques = list(_TECHNIQUE_WEIGHTS)
    weights = np.array([_TECHNIQUE_WEIGHTS[t] for t in techniques])
    technique = techniques[r.choice(len(techniques), p=weights / weights.sum())]
    rows = [c for c in _CONFIGS if c[0] == technique]
    tech, model, params, instances = rows[r.integers(len(rows))]
    instance = instances[r.integers(len(instances))]
    pricing = "spot" if r.random() < 0.35 else "on_demand"
    category = BUDGET_CATEGORIES[r.choice(3, p=[0.4, 0.35, 0.25])]
    seq_len = int(r.choice([1024, 2048, 4096], p=[0.3, 0.45, 0.25]))
    epochs = int(r.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))

    # faults pick the configuration that makes them plausible
    if job.fault == "oom":
        tech, model, params, instance, seq_len = "lora", "meta-llama/Llama-3.1-8B-Instruct", 8.0, "g5.2xlarge", 4096
    elif job.fault == "gpu_underutilized":
        tech, model, params, instance = "lora", "meta-llama/Llama-3.1-8B-Instruct", 8.0, "p4d.24xlarge"
    elif job.fault == "budget_overrun":
        tech, model, params, instance = "full", "meta-llama/Llama-3.1-8B-Instruct", 8.0, "p5.48xlarge"
        pricing, category = "on_demand", OVERRUN_CATEGORY
    elif job.fault == "spot_preemption":
        pricing = "spot"
    elif job.fault == "val_overfitting":
        epochs = 3
    elif job.fault == "lr_out_of_range":
        tech = "lora" if tech not in ("lora", "qlora") else tech
        if tech == "lora" and model not in [c[1] for c in _CONFIGS if c[0] == "lora"]:
            model, params = "meta-llama/Llama-3.1-8B-Instruct", 8.0
    if tech == "dpo":
        epochs = 1
    if instance not in DEMO_INSTANCES:
        instance = "p4d.24xlarge"
    inst = DEMO_INSTANCES[instance]

    job.technique, job.base_model, job.model_params_b = tech, model, params
    job.instance, job.pricing, job.budget_category = inst, pricing, category
    job.domain = DOMAINS[r.integers(len(DOMAINS))]
    job.critical = bool(category == "product" and r.random() < 0.6)
    job.seq_len, job.epochs = seq_len, epochs
    job.region = "us-east-1" if r.random() < 0.7 else "us-west-2"
    job.zone = job.region + str(r.choice(list("abcd")))
    job.token_fill = float(r.uniform(0.65, 0.95))  # packing leaves some padding

    tokens_per_s = inst.effective_tflops_per_gpu * 1e12 * inst.gpu_count / (_FLOPS_PER_TOKEN[tech] * params * 1e9)
    sps = tokens_per_s / (seq_len * job.token_fill) * r.uniform(0.85, 1.15)
    if job.fault == "gpu_underutilized":
        sps *= 0.4  # the data loader, not the GPUs, sets the pace
    job.samples_per_second = float(sps)

    # an optimiser step of a few seconds: micro-batch per device times accumulation
    target_step_s = r.uniform(2.0, 12.0)
    per_device = max(1.0, sps * target_step_s / inst.gpu_count)
    job.batch_size = int(min(16, 2 ** max(0, int(math.log2(per_device)))))
    if job.fault == "oom" or seq_len >= 4096:
        job.batch_size = min(job.batch_size, 2)
    job.grad_accum = max(1, round(per_device / job.batch_size))
    step_s = job.batch_size * job.grad_accum * inst.gpu_count / sps
    job.logging_steps = max(1, round(r.uniform(10, 60) / step_s))

    duration_h = float(np.clip(r.lognormal(math.log(DURATION_MEDIAN_H), 0.55), 1.5, max_duration_h))
    if job.fault == "val_overfitting":
        duration_h = min(max(duration_h, 4.0), max_duration_h)
    elif job.fault == "budget_overrun":
        duration_h = min(duration_h, 0.5 * max_duration_h)  # it must fit before the bills' lag
    job.total_steps = max(20 * job.logging_steps, int(duration_h * 3600 / step_s))
    eff_batch = job.batch_size * job.grad_accum * inst.gpu_count
    job.dataset_samples = int(round(job.total_steps * eff_batch / job.epochs))
    lo, hi = _PEAK_LR[tech]
    job.peak_lr = float(r.uniform(lo, hi))
    if job.fault == "lr_out_of_range":
        job.peak_lr = 5e-3  # a typo'd config: 5e-3 instead of 5e-5
    job.load_s = float(r.uniform(60, 240))
    job.eval_s = float(r.uniform(60, 300))


def _timeline(job: _Job, seed: int) -> None:
    """When each logging step happens, relative to the start of training."""
    r = _job_rng(seed, job.index, 2)
    n_logs = job.total_steps // job.logging_steps
    job.log_steps = np.arange(1, n_logs + 1, dtype=np.int64) * job.logging_steps
    eff_batch = job.batch_size * job.grad_accum * job.instance.gpu_count
    step_s = eff_batch / job.samples_per_second
    dt = job.logging_steps * step_s * np.exp(r.normal(0.0, 0.03, n_logs))
    if job.fault == "throughput_degradation":
        job.fault_frac = float(r.uniform(0.4, 0.6))
        dt = np.where(np.arange(n_logs) >= int(job.fault_frac * n_logs), dt / 0.55, dt)
    n_evals = 20 if job.fault == "val_overfitting" else 10
    job.eval_every_logs = max(1, n_logs // n_evals)
    job.eval_idx = np.arange(job.eval_every_logs - 1, n_logs, job.eval_every_logs, dtype=np.int64)
    evals_before = np.zeros(n_logs)
    evals_before[job.eval_idx[job.eval_idx + 1 < n_logs] + 1] = 1.0
    job.log_rel_s = np.cumsum(dt) + np.cumsum(evals_before) * job.eval_s
    job.stop_idx = n_logs - 1
    natural_end = float(job.log_rel_s[-1] + job.eval_s + r.uniform(60, 180))  # final eval and save

    if job.fault in ("loss_divergence", "oom", "spot_preemption") or job.role == "cancelled":
        job.fault_frac = float(r.uniform(0.35, 0.7) if job.role != "cancelled" else r.uniform(0.2, 0.4))
        job.stop_idx = max(12, int(job.fault_frac * n_logs))
        grace = {"loss_divergence": 20.0, "oom": 8.0, "spot_preemption": r.uniform(5, 25)}
        job.signal_end_rel_s = float(job.log_rel_s[job.stop_idx] + grace.get(job.fault or "", 30.0))
        # the scheduler notices a reclaimed spot node only a few minutes after it went silent
        job.end_rel_s = job.signal_end_rel_s + (r.uniform(90, 300) if job.fault == "spot_preemption" else 0.0)
    else:
        if job.fault == "gradient_explosion":
            job.fault_frac = float(r.uniform(0.3, 0.7))
        job.end_rel_s = job.signal_end_rel_s = natural_end


def _place(job: _Job, seed: int, start_ms: int, end_ms: int) -> None:
    """Put the job on the calendar so that its faults are visible before `end`."""
    r = _job_rng(seed, job.index, 3)
    queue_ms = int(min(r.exponential(25 * 60), 2 * 3600) * MS_PER_S)
    run_ms = int((job.load_s + job.end_rel_s) * MS_PER_S)
    if job.role == "pending":
        job.submitted_ms = end_ms - int(r.uniform(0.2, 4.0) * MS_PER_H)
        job.status = "pending"
        return
    if job.role == "running":
        started = end_ms - int(r.uniform(0.3, 0.85) * run_ms)
    elif job.role in ("fault", "cancelled"):
        # the whole story, end included, is in the data; the expensive job is in the bills too
        lag = (BILL_LAG_HOURS + 1) * MS_PER_H if job.fault == "budget_overrun" else MS_PER_H
        latest = end_ms - run_ms - lag
        earliest = start_ms + queue_ms
        started = int(r.uniform(earliest, max(earliest, latest)))
    else:
        earliest = start_ms + queue_ms
        started = int(r.uniform(earliest, max(earliest, end_ms - 2 * MS_PER_H)))
    started = (started // MS_PER_S) * MS_PER_S
    job.started_ms = started
    job.submitted_ms = max(start_ms, started - queue_ms)
    ended = started + run_ms
    if ended > end_ms:
        job.status, job.ended_ms = "running", None
        return
    job.ended_ms = ended
    job.status, job.exit_reason = {
        "loss_divergence": ("failed", "nan_loss"),
        "oom": ("failed", "oom"),
        "spot_preemption": ("preempted", "preempted"),
    }.get(job.fault or "", ("cancelled", None) if job.role == "cancelled" else ("succeeded", None))


# ------------------------------------------------------------------------------------------------
# metric values


def _iso(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms_to_iso(ms: np.ndarray, unit: str) -> np.ndarray:
    return np.datetime_as_string(np.asarray(ms, dtype="datetime64[ms]"), unit=unit, timezone="UTC")


def _observed_end_ms(job: _Job, end_ms: int) -> int:
    """Until when the job's instance is billed."""
    return min(end_ms, job.ended_ms) if job.ended_ms is not None else end_ms


def _signal_end_ms(job: _Job, end_ms: int) -> int:
    """Until when the job writes samples."""
    return min(end_ms, job.t0_ms + int(job.signal_end_rel_s * MS_PER_S))


def _smooth_loss(x_steps: np.ndarray, job: _Job, l0: float, l_inf: float, alpha: float) -> np.ndarray:
    scale = max(1.0, 0.02 * job.total_steps)
    return l_inf + (l0 - l_inf) * (1.0 + x_steps / scale) ** (-alpha)


def _ar1(r: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """An AR(1) series of length n, vectorised through its moving-average form (phi**k weights)."""
    if n == 0:
        return np.zeros(0)
    shocks = r.normal(0.0, sd, n)
    # x_t = sum_k phi^k e_{t-k}: a causal convolution, truncated where phi^k is negligible
    kernel = phi ** np.arange(min(n, int(np.ceil(np.log(1e-4) / np.log(phi)))))
    return np.convolve(shocks, kernel)[:n]


@dataclass
class _Training:
    """Trainer-side samples of one job (per logging step and per evaluation)."""

    log_ms: np.ndarray
    steps: np.ndarray
    values: dict[str, np.ndarray]  # training_loss, learning_rate, grad_norm, samples/tokens_per_second, epoch
    eval_ms: np.ndarray
    eval_steps: np.ndarray
    eval_values: dict[str, np.ndarray]  # val_loss, domain_accuracy
    fault_onset_ms: int | None = None


def _training(job: _Job, seed: int, end_ms: int) -> _Training:
    r = _job_rng(seed, job.index, 4)
    n_all = len(job.log_steps)
    s = job.log_steps.astype(np.float64)
    total = float(job.total_steps)
    x = s / total

    lr_floor = 1e-6  # warm-up starts here and decay stops here: the range rule's lower bound
    warm = max(1.0, round(0.03 * total))
    min_lr = max(0.1 * job.peak_lr, lr_floor)
    cos = min_lr + 0.5 * (job.peak_lr - min_lr) * (1 + np.cos(np.pi * np.clip((s - warm) / (total - warm), 0, 1)))
    lr = np.where(s < warm, lr_floor + (job.peak_lr - lr_floor) * s / warm, cos)

    if job.technique == "dpo":
        l0, l_inf, drop = math.log(2.0), r.uniform(0.25, 0.45), 0.03
    else:
        l0, l_inf, drop = r.uniform(1.6, 2.6), r.uniform(0.7, 1.2), r.uniform(0.05, 0.1)
    if job.fault == "val_overfitting":
        drop = 0.15  # memorising the training set epoch after epoch
    alpha = r.uniform(0.5, 0.8)
    steps_per_epoch = total / job.epochs
    epoch = s / steps_per_epoch
    smooth = _smooth_loss(s, job, l0, l_inf, alpha)
    loss = smooth * (1 - drop * np.floor(np.minimum(epoch, job.epochs - 1e-9)))
    loss = loss * np.exp(r.normal(0.0, r.uniform(0.025, 0.04), n_all))

    g_level = r.uniform(0.4, 2.5)
    # Real runs wander slowly (an AR(1) walk in log space) around a level that settles after the
    # first few percent. Per-step noise is bounded (±2.3 sd) so that no healthy step is an outlier
    # against its own recent window, which is what the explosion rule tests.
    wander = _ar1(r, n_all, phi=0.995, sd=0.01)
    jitter = np.clip(r.normal(0.0, 0.07, n_all), -0.16, 0.16)
    grad = g_level * (1 + 1.5 * np.exp(-s / max(1.0, 0.03 * total))) * np.exp(wander + jitter)

    sps = job.samples_per_second * np.exp(r.normal(0.0, 0.02, n_all))
    onset_idx: int | None = None
    if job.fault == "throughput_degradation":
        onset_idx = int(job.fault_frac * n_all)
        sps = np.where(np.arange(n_all) >= onset_idx, sps * 0.55, sps)
    tps = sps * job.seq_len * job.token_fill * np.exp(r.normal(0.0, 0.01, n_all))

    last = job.stop_idx
    if job.fault == "loss_divergence":
        # loss and gradient norm climb for a while, then the loss is NaN and the trainer stops
        n_ramp = int(min(40, max(8, last // 4)))
        ramp_start = last - 2 - n_ramp
        k = np.clip((np.arange(n_all) - ramp_start) / n_ramp, 0.0, 1.2)
        rising = np.arange(n_all) >= ramp_start
        loss = np.where(rising, loss * np.exp(1.6 * k**2), loss)
        grad = np.where(rising, grad * np.exp(3.0 * k**2), grad)
        nan_idx = np.arange(last - 2, last + 1)
        loss[nan_idx] = np.nan
        grad[nan_idx] = np.nan
        onset_idx = ramp_start
    elif job.fault == "gradient_explosion":
        onset_idx = int(job.fault_frac * n_all)
        spike = slice(onset_idx, onset_idx + 3)
        running_level = np.median(grad[max(0, onset_idx - 50):onset_idx])
        grad[spike] = running_level * r.uniform(50, 100, 3)
        loss[spike] = loss[spike] * np.array([1.25, 1.35, 1.12])
    elif job.fault == "lr_out_of_range":
        onset_idx = int(np.argmax(lr > 1e-3))
        loss = loss * np.exp(r.normal(0.0, 0.03, n_all))  # a too-high rate trains, noisily

    epoch_r = np.round(epoch, 4)
    values = {
        "training_loss": np.round(loss, 4),
        "learning_rate": lr,
        "grad_norm": np.round(grad, 4),
        "samples_per_second": np.round(sps, 3),
        "tokens_per_second": np.round(tps, 1),
        "epoch": epoch_r,
    }

    # evaluation: the smooth curve without the epoch drops (memorisation does not generalise)
    val_gap = r.uniform(1.03, 1.1)
    e_idx = job.eval_idx
    e_s = s[e_idx]
    val_smooth = _smooth_loss(e_s, job, l0, l_inf, alpha) * val_gap
    val = val_smooth.copy()
    if job.fault == "val_overfitting":
        turn = 0.4
        onset_idx = int(e_idx[np.argmax(x[e_idx] >= turn)])
        val = val * (1 + 0.7 * np.clip(x[e_idx] - turn, 0, None))
    val = val * np.exp(r.normal(0.0, 0.008, len(e_idx)))
    v_first = _smooth_loss(e_s[:1], job, l0, l_inf, alpha)[0] * val_gap if len(e_idx) else 1.0
    v_last = _smooth_loss(np.array([total]), job, l0, l_inf, alpha)[0] * val_gap
    # accuracy tracks the validation loss: from ~0.86 at the first evaluation to 0.91-0.95
    a0, a1 = r.uniform(0.862, 0.878), r.uniform(0.91, 0.95)
    norm = np.clip((val - v_last) / max(1e-9, v_first - v_last), -0.1, 1.0)
    acc = np.clip(a1 - (a1 - a0) * norm + r.normal(0.0, 0.002, len(e_idx)), 0.0, 0.99)
    eval_values = {"val_loss": np.round(val, 4), "domain_accuracy": np.round(acc, 4)}

    t0 = job.t0_ms
    log_ms = t0 + np.round(job.log_rel_s * MS_PER_S).astype(np.int64)
    eval_ms = log_ms[e_idx] + int(job.eval_s * MS_PER_S)
    obs_end = _signal_end_ms(job, end_ms)
    keep = (np.arange(n_all) <= last) & (log_ms <= obs_end)
    e_keep = (e_idx <= last) & (eval_ms <= obs_end)
    onset_ms = None
    if onset_idx is not None:
        onset_ms = int(log_ms[onset_idx])
    return _Training(
        log_ms=log_ms[keep],
        steps=job.log_steps[keep],
        values={k: v[keep] for k, v in values.items()},
        eval_ms=eval_ms[e_keep],
        eval_steps=job.log_steps[e_idx][e_keep],
        eval_values={k: v[e_keep] for k, v in eval_values.items()},
        fault_onset_ms=onset_ms,
    )


@dataclass
class _Resources:
    ts_ms: np.ndarray  # per tick
    gpu: dict[str, np.ndarray]  # metric -> (ticks, gpus)
    host: dict[str, np.ndarray]  # metric -> (ticks,)
    heartbeat_ms: np.ndarray
    fault_onset_ms: int | None = None


def _resources(job: _Job, seed: int, end_ms: int) -> _Resources:
    r = _job_rng(seed, job.index, 5)
    inst = job.instance
    g = inst.gpu_count
    obs_end = _signal_end_ms(job, end_ms)
    t0 = job.t0_ms
    ticks = np.arange(t0, obs_end + 1, RESOURCE_INTERVAL_S * MS_PER_S, dtype=np.int64)
    ticks = (ticks // MS_PER_S) * MS_PER_S
    n = len(ticks)
    assert job.started_ms is not None
    hb = np.arange(job.started_ms + HEARTBEAT_INTERVAL_S * MS_PER_S, obs_end + 1,
                   HEARTBEAT_INTERVAL_S * MS_PER_S, dtype=np.int64)

    util_mean = r.uniform(84, 92)
    util_sd = 2.5
    util_lo, util_hi = 0.0, 97.5
    cpu_mean, cpu_hi = r.uniform(55, 75), 88.0
    if job.fault == "gpu_underutilized":
        util_mean, util_sd, util_lo, util_hi = r.uniform(34, 41), 4.0, 28.0, 47.0
        cpu_mean, cpu_hi = r.uniform(91, 95), 99.5  # the data loader is what is busy
    dev_off = r.normal(0.0, 1.2, g)
    base = np.full((n, 1), util_mean) + dev_off[None, :]
    onset_ms: int | None = None
    if job.fault == "throughput_degradation":
        t_deg = t0 + int(job.log_rel_s[int(job.fault_frac * len(job.log_rel_s))] * MS_PER_S)
        base = np.where((ticks >= t_deg)[:, None], base - 10.0, base)
    util = np.clip(base + r.normal(0.0, util_sd, (n, g)), util_lo, util_hi)

    mem_base = r.uniform(0.55, 0.86)
    mem = mem_base + 0.01 * r.normal(0.0, 1.0, g)[None, :] + r.normal(0.0, 0.004, (n, g))
    if job.fault == "oom":
        mem_base = 0.86
        # activation memory creeps up (fragmentation, longer packed batches) until allocation fails
        t_fail = job.t0_ms + int(job.log_rel_s[job.stop_idx] * MS_PER_S)
        t_ramp = t0 + int(0.65 * (t_fail - t0))
        k = np.clip((ticks - t_ramp) / max(1, t_fail - t_ramp), 0.0, 1.0)[:, None]
        mem = mem_base - 0.004 * np.arange(g)[None, :] + (0.992 - mem_base) * k**1.5 + r.normal(0.0, 0.002, (n, g))
        onset_ms = int(t_ramp)
    mem = np.clip(mem, 0.05, 0.995)

    copy_util = np.clip(r.uniform(30, 60) * util / 90.0 + r.normal(0.0, 3.0, (n, g)), 0.0, 85.0)
    power = np.minimum(inst.gpu_tdp_watts * (0.28 + 0.62 * util / 100.0) * np.exp(r.normal(0.0, 0.03, (n, g))),
                       inst.gpu_tdp_watts)
    temp = 38.0 + 0.33 * util + r.normal(0.0, 2.0, g)[None, :] + r.normal(0.0, 0.7, (n, g))
    cpu = np.clip(cpu_mean + r.normal(0.0, 4.0, n), 1.0, cpu_hi)
    host_mem = np.clip(r.uniform(0.25, 0.6) + r.normal(0.0, 0.01, n), 0.05, 0.8)
    return _Resources(
        ts_ms=ticks,
        gpu={
            "gpu_utilization_pct": np.round(util, 1),
            "gpu_memory_copy_util_pct": np.round(copy_util, 1),
            "gpu_memory_used_ratio": np.round(mem, 4),
            "gpu_power_watts": np.round(power, 1),
            "gpu_temperature_c": np.round(temp, 1),
        },
        host={"cpu_utilization_pct": np.round(cpu, 1), "host_memory_used_ratio": np.round(host_mem, 4)},
        heartbeat_ms=hb,
        fault_onset_ms=onset_ms,
    )


# ------------------------------------------------------------------------------------------------
# writers


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


def _training_long(tr: _Training) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def _resource_long(res: _Resources) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def _write_trainer_jsonl(path: Path, job: _Job, tr: _Training) -> int:
    ts, metric, values, step = _training_long(tr)
    lines = _jsonl_lines(_ms_to_iso(ts, "ms"), job.job_id, metric, values, step,
                         np.full(len(ts), -1), job.host, TRAINER_SOURCE)
    _write_lines(path, lines)
    return len(lines)


def _write_agent_jsonl(folder: Path, job: _Job, res: _Resources) -> tuple[int, int]:
    ts, metric, values, device = _resource_long(res)
    lines = _jsonl_lines(_ms_to_iso(ts, "s"), job.job_id, metric, values, np.full(len(ts), -1),
                         device, job.host, AGENT_SOURCE)
    day = ts // MS_PER_DAY
    files = 0
    for d in np.unique(day):
        stamp = np.datetime_as_string(np.datetime64(int(d), "D")).replace("-", "")
        sel = day == d
        _write_lines(folder / f"agent-{stamp}.jsonl", lines[sel])
        files += 1
    return len(lines), files


def _write_wide_csv(path: Path, job: _Job, tr: _Training) -> int:
    frame = pd.DataFrame({"ts": _ms_to_iso(tr.log_ms, "ms"), "job_id": job.job_id, "step": tr.steps})
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


def _write_trainer_state(path: Path, job: _Job, tr: _Training) -> int:
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


# ------------------------------------------------------------------------------------------------
# jobs and billing


_JOB_COLUMNS = (
    "job_id", "name", "technique", "domain", "base_model", "model_params_b", "dataset_samples", "seq_len",
    "batch_size", "grad_accum", "epochs", "gpu_type", "gpu_count", "instance_type", "cloud", "region",
    "pricing", "budget_category", "critical", "status", "submitted_at", "started_at", "ended_at",
    "exit_reason", "total_steps",
)


def _ms_text(ms: int | None) -> str | None:
    if ms is None:
        return None
    return str(np.datetime_as_string(np.datetime64(int(ms), "ms"), unit="s", timezone="UTC"))


def _jobs_frame(jobs: list[_Job]) -> pd.DataFrame:
    rows = [{
        "job_id": j.job_id, "name": j.name, "technique": j.technique, "domain": j.domain,
        "base_model": j.base_model, "model_params_b": j.model_params_b, "dataset_samples": j.dataset_samples,
        "seq_len": j.seq_len, "batch_size": j.batch_size, "grad_accum": j.grad_accum, "epochs": float(j.epochs),
        "gpu_type": j.instance.gpu_type, "gpu_count": j.instance.gpu_count, "instance_type": j.instance.name,
        "cloud": "aws", "region": j.region, "pricing": j.pricing, "budget_category": j.budget_category,
        "critical": j.critical, "status": j.status, "submitted_at": _ms_text(j.submitted_ms),
        "started_at": _ms_text(j.started_ms), "ended_at": _ms_text(j.ended_ms), "exit_reason": j.exit_reason,
        "total_steps": j.total_steps,
    } for j in jobs]
    frame = pd.DataFrame(rows, columns=list(_JOB_COLUMNS))
    for col in ("dataset_samples", "seq_len", "batch_size", "grad_accum", "gpu_count", "total_steps"):
        frame[col] = frame[col].astype("Int64")
    return frame


FOCUS_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
    "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
    "ServiceCategory", "Id", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)
_NUMERIC_FOCUS = {"BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
                  "ListCost", "PricingQuantity", "Id"}
_REGION_NAMES = {"us-east-1": "US East (N. Virginia)", "us-west-2": "US West (Oregon)"}
_SUB_ACCOUNTS = {"research": ("310000000001", "ml-research"), "product": ("310000000002", "ml-product"),
                 "experiments": ("310000000003", "ml-sandbox"), None: ("310000000000", "platform-shared")}


def _fake_code(text: pd.Series, length: int) -> pd.Series:
    """Stable AWS-looking SKU codes derived from text (not real SKUs)."""
    alphabet = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ23456789"))
    # 12 characters of 5 bits per 64-bit hash
    hashes = [pd.util.hash_pandas_object(text + f"~{k}", index=False).to_numpy() for k in range(length // 12 + 1)]
    chars = [alphabet[(hashes[i // 12] >> np.uint64(5 * (i % 12))) % np.uint64(32)] for i in range(length)]
    return pd.Series(["".join(c) for c in zip(*chars)], index=text.index) if len(text) else text


def _job_cost_lines(jobs: list[_Job], seed: int, end_ms: int) -> pd.DataFrame:
    """Hourly compute usage of every job instance, billed or not yet (for budgets)."""
    frames = []
    for job in jobs:
        if job.started_ms is None:
            continue
        stop = _observed_end_ms(job, end_ms)
        first = (job.started_ms // MS_PER_H) * MS_PER_H
        hours = np.arange(first, stop, MS_PER_H, dtype=np.int64)
        if not len(hours):
            continue
        used_h = (np.minimum(hours + MS_PER_H, stop) - np.maximum(hours, job.started_ms)) / MS_PER_H
        inst = job.instance
        r = _job_rng(seed, job.index, 6)
        if job.pricing == "spot":
            # the spot market moves hour by hour around its typical level
            unit = np.round(inst.spot_usd_per_hour * np.clip(np.exp(r.normal(0, 0.08, len(hours))), 0.8, 1.25), 4)
        else:
            unit = np.full(len(hours), inst.on_demand_usd_per_hour)
        frames.append(pd.DataFrame({
            "hour_ms": hours, "quantity": np.round(used_h, 6), "unit_price": unit,
            "list_unit_price": inst.on_demand_usd_per_hour, "job_id": job.job_id,
            "budget_category": job.budget_category, "team": DEMO_TAG_TEAM[job.domain],
            "instance_type": inst.name, "pricing": job.pricing, "region": job.region, "zone": job.zone,
            "resource_id": job.resource_id,
        }))
    lines = pd.concat(frames, ignore_index=True)
    lines["cost"] = np.round(lines["quantity"] * lines["unit_price"], 8)
    return lines


def _focus_frame(usage: pd.DataFrame, start_ms: int, cutoff_ms: int, seed: int) -> pd.DataFrame:
    """FOCUS 1.0 rows: billed job usage, daily shared storage/networking, one credit."""
    usage = usage[usage["hour_ms"] < cutoff_ms]
    spot = usage["pricing"] == "spot"
    hour = pd.to_datetime(usage["hour_ms"], unit="ms")
    tags = ('{"budget_category": "' + usage["budget_category"] + '", "job_id": "' + usage["job_id"]
            + '", "team": "' + usage["team"] + '"}')
    unit_txt = usage["unit_price"].map("{:.4f}".format)
    desc = np.where(spot, "$" + unit_txt + " per Spot Linux " + usage["instance_type"] + " Instance Hour",
                    "$" + usage["list_unit_price"].map("{:.4f}".format) + " per On Demand Linux "
                    + usage["instance_type"] + " Instance Hour")
    sub = usage["budget_category"].map(lambda c: _SUB_ACCOUNTS[c])
    jobs = pd.DataFrame({
        "AvailabilityZone": usage["zone"], "BilledCost": usage["cost"],
        "ChargeCategory": "Usage", "ChargeDescription": desc, "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": hour, "ChargePeriodEnd": hour + pd.Timedelta(hours=1),
        "ConsumedQuantity": usage["quantity"], "ConsumedUnit": "Hours",
        "ContractedCost": np.round(usage["quantity"] * usage["list_unit_price"], 8),
        "ContractedUnitPrice": usage["list_unit_price"], "EffectiveCost": usage["cost"],
        "ListCost": np.round(usage["quantity"] * usage["list_unit_price"], 8),
        "ListUnitPrice": usage["list_unit_price"].map("{:g}".format),
        "PricingCategory": np.where(spot, "Dynamic", "Standard"), "PricingQuantity": usage["quantity"],
        "PricingUnit": "Hours", "RegionId": usage["region"], "RegionName": usage["region"].map(_REGION_NAMES),
        "ResourceId": usage["resource_id"], "ResourceType": "instance", "ServiceCategory": "Compute",
        "ServiceName": "Amazon Elastic Compute Cloud",
        "SkuKey": usage["instance_type"] + "|" + usage["pricing"] + "|" + usage["region"],
        "SubAccountId": sub.str[0], "SubAccountName": sub.str[1], "Tags": tags,
    })

    r = np.random.default_rng([seed, 0, 7])
    days = np.arange(start_ms // MS_PER_DAY * MS_PER_DAY, cutoff_ms - MS_PER_DAY + 1, MS_PER_DAY, dtype=np.int64)
    day = pd.to_datetime(days, unit="ms")
    n = len(days)
    gb_month = np.round(r.uniform(38000, 42000, n) / 30.0, 6)  # checkpoints and datasets, per day
    nat_gb = np.round(r.uniform(300, 900, n), 6)
    shared_acct = _SUB_ACCOUNTS[None]
    storage = pd.DataFrame({
        "AvailabilityZone": None, "BilledCost": np.round(gb_month * 0.023, 8), "ChargeCategory": "Usage",
        "ChargeDescription": "$0.023 per GB - first 50 TB / month of storage used", "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": day, "ChargePeriodEnd": day + pd.Timedelta(days=1),
        "ConsumedQuantity": gb_month, "ConsumedUnit": "GB-Mo", "ContractedCost": np.round(gb_month * 0.023, 8),
        "ContractedUnitPrice": 0.023, "EffectiveCost": np.round(gb_month * 0.023, 8),
        "ListCost": np.round(gb_month * 0.023, 8), "ListUnitPrice": "0.023", "PricingCategory": "Standard",
        "PricingQuantity": gb_month, "PricingUnit": "GB-Mo", "RegionId": "us-east-1",
        "RegionName": _REGION_NAMES["us-east-1"], "ResourceId": "ftops-demo-checkpoints",
        "ResourceType": "bucket", "ServiceCategory": "Storage", "ServiceName": "Amazon Simple Storage Service",
        "SkuKey": "s3-standard", "SubAccountId": shared_acct[0], "SubAccountName": shared_acct[1], "Tags": None,
    })
    network = pd.DataFrame({
        "AvailabilityZone": None, "BilledCost": np.round(nat_gb * 0.045, 8), "ChargeCategory": "Usage",
        "ChargeDescription": "$0.045 per GB Data Processed by NAT Gateways", "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": day, "ChargePeriodEnd": day + pd.Timedelta(days=1),
        "ConsumedQuantity": nat_gb, "ConsumedUnit": "GB", "ContractedCost": np.round(nat_gb * 0.045, 8),
        "ContractedUnitPrice": 0.045, "EffectiveCost": np.round(nat_gb * 0.045, 8),
        "ListCost": np.round(nat_gb * 0.045, 8), "ListUnitPrice": "0.045", "PricingCategory": "Standard",
        "PricingQuantity": nat_gb, "PricingUnit": "GB", "RegionId": "us-east-1",
        "RegionName": _REGION_NAMES["us-east-1"], "ResourceId": "nat-0ftopsdemo0000001",
        "ResourceType": "natgateway", "ServiceCategory": "Networking",
        "ServiceName": "Amazon Virtual Private Cloud", "SkuKey": "nat-gateway-bytes",
        "SubAccountId": shared_acct[0], "SubAccountName": shared_acct[1], "Tags": None,
    })
    parts = [jobs, storage, network]
    if n:
        credit_day = day[min(n - 1, n // 2)]
        amount = -round(float(r.uniform(150, 300)), 2)
        parts.append(pd.DataFrame({
            "AvailabilityZone": [None], "BilledCost": [amount], "ChargeCategory": ["Credit"],
            "ChargeDescription": ["AWS Promotional Credits (research grant)"], "ChargeFrequency": ["One-Time"],
            "ChargePeriodStart": [credit_day], "ChargePeriodEnd": [credit_day + pd.Timedelta(hours=1)],
            "ConsumedQuantity": [None], "ConsumedUnit": [None], "ContractedCost": [amount],
            "ContractedUnitPrice": [None], "EffectiveCost": [amount], "ListCost": [amount], "ListUnitPrice": [None],
            "PricingCategory": ["Other"], "PricingQuantity": [0.0], "PricingUnit": ["Hours"],
            "RegionId": ["us-east-1"], "RegionName": [_REGION_NAMES["us-east-1"]], "ResourceId": [None],
            "ResourceType": [None], "ServiceCategory": ["Compute"], "ServiceName": ["Amazon Elastic Compute Cloud"],
            "SkuKey": ["credit"], "SubAccountId": [shared_acct[0]], "SubAccountName": [shared_acct[1]],
            "Tags": [None],
        }))
    focus = pd.concat([p for p in parts if len(p)], ignore_index=True)
    month = focus["ChargePeriodStart"].dt.to_period("M")
    focus["BillingPeriodStart"] = month.dt.start_time
    focus["BillingPeriodEnd"] = (month + 1).dt.start_time
    focus["BillingAccountId"] = "210987654321"
    focus["BillingAccountName"] = "ftops-demo"
    focus["BillingCurrency"] = "USD"
    focus["InvoiceIssuerName"] = "Amazon Web Services, Inc."
    focus["ProviderName"] = "AWS"
    focus["PublisherName"] = "Amazon Web Services, Inc."
    for col in ("ChargeClass", "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
                "CommitmentDiscountStatus", "CommitmentDiscountType", "ResourceName"):
        focus[col] = None
    focus["SkuId"] = _fake_code(focus["SkuKey"], 16)
    focus["SkuPriceId"] = np.where(focus["ChargeCategory"] == "Credit", None,
                                   focus["SkuId"] + "." + _fake_code(focus["SkuKey"] + "#rate", 10))
    # a line item id that is stable across re-deliveries of the same charge
    key = (focus["ResourceId"].fillna("") + "|" + focus["ChargeCategory"] + "|" + focus["SkuKey"] + "|"
           + focus["ChargePeriodStart"].astype("int64").astype(str))
    focus["Id"] = (pd.util.hash_pandas_object(key, index=False).to_numpy() % np.uint64(10**12)).astype(np.int64)
    focus = focus.sort_values(["ChargePeriodStart", "ServiceName", "ResourceId", "Id"], kind="stable",
                              na_position="last").reset_index(drop=True)
    return focus[list(FOCUS_COLUMNS)]


def _focus_csv_text(frame: pd.DataFrame) -> str:
    """CSV as the FOCUS sample writes it: quoted text, bare numbers, bare NULL for nulls."""
    cols = []
    for name in FOCUS_COLUMNS:
        s = frame[name]
        if pd.api.types.is_datetime64_any_dtype(s):
            text = '"' + s.dt.strftime("%Y-%m-%d %H:%M:%S") + '"'
        elif name == "Id":
            text = s.astype(str)
        elif name in _NUMERIC_FOCUS:
            num = pd.to_numeric(s, errors="coerce")
            text = num.map(lambda v: f"{v:.11f}") if name != "ConsumedQuantity" else num.map(lambda v: f"{v:.9f}")
        else:
            text = '"' + s.astype(object).where(s.notna(), "").astype(str).str.replace('"', '""') + '"'
        cols.append(text.where(s.notna(), "NULL"))
    header = ",".join(f'"{c}"' for c in FOCUS_COLUMNS)
    body = pd.concat(cols, axis=1).agg(",".join, axis=1) if len(frame) else pd.Series(dtype=str)
    return header + "\n" + "".join(line + "\n" for line in body)


# ------------------------------------------------------------------------------------------------
# policy


def _budget_limits(usage: pd.DataFrame, end: pd.Timestamp, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Monthly limits: the overrun category just past its limit, the others comfortably below."""
    r = np.random.default_rng([seed, 0, 8])
    month_start_ms = int(end.tz_convert("UTC").tz_localize(None).to_period("M").start_time.value // 1_000_000)
    in_month = usage[usage["hour_ms"] >= month_start_ms]
    spend = in_month.groupby("budget_category")["cost"].sum()
    days = max(1.0, (usage["hour_ms"].max() - usage["hour_ms"].min()) / MS_PER_DAY) if len(usage) else 1.0
    daily = usage.groupby("budget_category")["cost"].sum() / days
    limits, usage_pct = {}, {}
    for cat in BUDGET_CATEGORIES:
        s = float(spend.get(cat, 0.0))
        target = 1.06 if cat == OVERRUN_CATEGORY else float(r.uniform(0.35, 0.7))
        if s > 0:
            limit = max(50.0, math.floor(s / target / 10.0) * 10.0)
        else:
            # a month that has just begun: one day's burn, so the forecast still tells the story
            limit = max(50.0, math.floor(float(daily.get(cat, 0.0)) / 10.0) * 10.0)
        limits[cat] = limit
        usage_pct[cat] = round(100.0 * s / limit, 1)
    return limits, usage_pct


def _policy_dict(limits: dict[str, float]) -> dict[str, Any]:
    return {
        "budgets": {cat: {"limit_usd": limit, "period": "month", "mode": "dry_run"} for cat, limit in limits.items()},
        "prices": {
            name: {"on_demand_usd_per_hour": inst.on_demand_usd_per_hour, "spot_usd_per_hour": inst.spot_usd_per_hour}
            for name, inst in DEMO_INSTANCES.items()
        },
        # 8-GPU on-demand H100 nodes cost ~55 USD/h: the demo's per-job cost alert targets those, not
        # every A100 node (the spec's 10 USD/h would fire on all of them)
        "monitoring": {"cost": {"max_usd_per_hour": 30.0}},
    }


def demo_policy(seed: int = 7, n_jobs: int = 40, days: int = 7, end: pd.Timestamp | None = None) -> dict[str, Any]:
    """The `ftops.yaml` content matching `write_demo_inbox` with the same arguments (no files written)."""
    end = _default_end(end)
    jobs = _plan(seed, n_jobs, days, end)
    usage = _job_cost_lines(jobs, seed, int(end.value // 1_000_000))
    limits, _ = _budget_limits(usage, end, seed)
    return _policy_dict(limits)


# ------------------------------------------------------------------------------------------------
# entry point


def write_demo_inbox(inbox: Path, seed: int = 7, n_jobs: int = 40, days: int = 7,
                     end: pd.Timestamp | None = None) -> DemoManifest:
    """Write a synthetic fleet into `inbox` (jobs/, metrics/, billing/) and return its manifest.

    `end` defaults to now rounded down to the hour (UTC); pass it for reproducible bytes. Existing
    files of an earlier demo with the same names are overwritten; other files are left alone.
    """
    inbox = Path(inbox)
    end = _default_end(end)
    end_ms = int(end.value // 1_000_000)
    start_ms = end_ms - days * MS_PER_DAY
    jobs = _plan(seed, n_jobs, days, end)

    counts = {"jobs": len(jobs), "metric_files": 0, "metric_samples": 0, "metric_samples_jsonl": 0,
              "metric_samples_wide_csv": 0, "metric_samples_trainer_state": 0, "billing_files": 0,
              "billing_lines": 0}
    faults: list[InjectedFault] = []
    for job in jobs:
        if job.started_ms is None:
            continue
        folder = inbox / "metrics" / job.job_id
        tr = _training(job, seed, end_ms)
        res = _resources(job, seed, end_ms)
        if job.fmt == "trainer_state":
            n = _write_trainer_state(folder / "trainer_state.json", job, tr)
            counts["metric_samples_trainer_state"] += n
        elif job.fmt == "wide_csv":
            n = _write_wide_csv(folder / "trainer_log.csv", job, tr)
            counts["metric_samples_wide_csv"] += n
        else:
            n = _write_trainer_jsonl(folder / "trainer.jsonl", job, tr)
            counts["metric_samples_jsonl"] += n
        n_res, n_files = _write_agent_jsonl(folder, job, res)
        counts["metric_samples_jsonl"] += n_res
        counts["metric_files"] += 1 + n_files
        counts["metric_samples"] += n + n_res
        if job.fault:
            faults.append(_fault_record(job, tr, res))

    frame = _jobs_frame(jobs)
    (inbox / "jobs").mkdir(parents=True, exist_ok=True)
    frame.to_csv(inbox / "jobs" / "jobs.csv", index=False, lineterminator="\n")

    usage = _job_cost_lines(jobs, seed, end_ms)
    cutoff_ms = (end_ms // MS_PER_H) * MS_PER_H - BILL_LAG_HOURS * MS_PER_H
    focus = _focus_frame(usage, start_ms, cutoff_ms, seed)
    (inbox / "billing").mkdir(parents=True, exist_ok=True)
    for day, part in focus.groupby(focus["ChargePeriodStart"].dt.strftime("%Y-%m-%d"), sort=True):
        (inbox / "billing" / f"focus-{day}.csv").write_text(_focus_csv_text(part), encoding="utf-8")
        counts["billing_files"] += 1
    counts["billing_lines"] = len(focus)

    limits, usage_pct = _budget_limits(usage, end, seed)
    policy = _policy_dict(limits)
    overrun = next(f for f in faults if f.fault == "budget_overrun")
    faults = [
        InjectedFault(f.job_id, f.fault, f.expected_rule, f.category, f.onset,
                      f"{f.detail}; month-to-date spend of {OVERRUN_CATEGORY} is "
                      f"{usage_pct[OVERRUN_CATEGORY]} % of its limit (billed + not yet billed)")
        if f is overrun else f
        for f in faults
    ]
    faults.sort(key=lambda f: (f.job_id, f.fault))
    manifest = DemoManifest(
        seed=seed, n_jobs=n_jobs, days=days, start=pd.Timestamp(start_ms, unit="ms", tz="UTC"), end=end,
        counts=counts, faults=tuple(faults), policy=policy,
    )
    (inbox / "demo_manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    (inbox / "demo_policy.yaml").write_text(
        "# ftops policy for the synthetic demo fleet (written by ftops.demo_fleet)\n"
        + yaml.safe_dump(policy, sort_keys=True), encoding="utf-8")
    return manifest


def _fault_record(job: _Job, tr: _Training, res: _Resources) -> InjectedFault:
    rule, category = FAULTS[job.fault or ""]
    onset = tr.fault_onset_ms or res.fault_onset_ms
    if onset is None:
        onset = job.ended_ms if job.fault == "spot_preemption" and job.ended_ms else job.started_ms
    details = {
        "loss_divergence": "training loss rises for a few dozen logging steps, then NaN; job failed (nan_loss)",
        "gradient_explosion": "grad_norm 50-100x its running level for 3 logging steps, then back to normal",
        "gpu_underutilized": "GPU utilisation ~30-45 % for the whole run (data loader bound, CPU ~93 %)",
        "oom": "gpu_memory_used_ratio climbs to ~0.99, then the job fails (oom)",
        "spot_preemption": "spot instance reclaimed: samples and heartbeats stop, job preempted",
        "budget_overrun": f"8x H100 on-demand full fine-tune charged to {job.budget_category}",
        "val_overfitting": "val_loss rises after ~40 % of training while training loss keeps falling",
        "throughput_degradation": "samples_per_second drops to ~0.55x its early steady state",
        "lr_out_of_range": f"peak learning rate {job.peak_lr:g} (warm-up crosses 1e-3 early)",
    }
    return InjectedFault(job.job_id, job.fault or "", rule, category, _ms_text(int(onset)) or "",
                         details[job.fault or ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic ftops demo fleet into an inbox folder.")
    parser.add_argument("inbox", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--end", help="ISO-8601 end of the window (default: now, rounded down to the hour)")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    manifest = write_demo_inbox(args.inbox, seed=args.seed, n_jobs=args.jobs, days=args.days,
                                end=pd.Timestamp(args.end) if args.end else None)
    print(json.dumps(manifest.counts, indent=2))
    print(f"{len(manifest.faults)} injected faults; written in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
