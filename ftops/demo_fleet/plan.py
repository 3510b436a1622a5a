"""The fleet plan: which jobs exist, how each is configured, when it runs, and which fault it carries.

Every job draws from its own random streams (`job_rng`), so changing one job never shifts another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ftops.demo_fleet.instances import DEMO_INSTANCES, DemoInstance
from ftops.demo_fleet.times import MS_PER_DAY, MS_PER_H, MS_PER_S

BILL_LAG_HOURS = 12  # cloud bills arrive late; the newest hours must be estimated downstream
# Median planned run length. With 30 s resource samples it sets the volume: ~2.4 million samples
# at the defaults (40 jobs, 7 days), which writes in seconds and ingests well within the demo's budget.
DURATION_MEDIAN_H = 15.0
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

# Fault -> the rule expected to catch it and its category: a monitoring rule (ftops.monitoring.catalog;
# job_preempted and heartbeat_lost judge the registry against the last signs of life), or
# budget_threshold from budget enforcement.
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
    "heartbeat_lost": ("heartbeat_lost", "resource"),
    # no monitoring rule sees a crash in the code: job_failures types it from the console tail
    "code_error": ("job_failures", "training"),
}
# one job per fault, two preemptions
_FAULT_SLOTS = ("loss_divergence", "gradient_explosion", "gpu_underutilized", "oom", "spot_preemption",
                "spot_preemption", "budget_overrun", "val_overfitting", "throughput_degradation",
                "lr_out_of_range", "heartbeat_lost")
MIN_JOBS = 16
# Beside the scenario slots, every other finished job may fail the way fleets fail (the Helios trace:
# 15.5 % of jobs), with odds that follow its spec (`_failure_odds`): these faults are drawn, not placed.
SPEC_FAULTS = ("code_error", "oom", "loss_divergence", "spot_preemption")
RERUN_SHARE = 0.35  # healthy jobs that relaunch an earlier job's configuration (a sweep, a re-run)
SPOT_RECLAIMS_PER_HOUR = 0.012  # spot GPU capacity: a 15 h run is reclaimed ~16 % of the time
# a code error: first launch of a configuration, relaunch of one that worked, relaunch after a crash
CODE_ERROR_FRESH, CODE_ERROR_KNOWN, CODE_ERROR_AGAIN = 0.04, 0.005, 0.6
_END_STATES = {
    "loss_divergence": ("failed", "nan_loss"),
    "oom": ("failed", "oom"),
    "spot_preemption": ("preempted", "preempted"),
    "code_error": ("failed", "code_error"),
}


@dataclass
class PlannedJob:
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
    config_of: int = -1  # a re-run: the index of the job whose configuration it launches again
    cause: str = ""  # a drawn fault: what in the spec made it likely
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


def job_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # independent streams per job and purpose: changing one job's curve never shifts another's
    return np.random.default_rng([seed, index, stream])


def plan_fleet(seed: int, n_jobs: int, days: int, end: pd.Timestamp) -> list[PlannedJob]:
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
    jobs = [PlannedJob(index=int(i), role=roles[k][0], fault=roles[k][1]) for k, i in enumerate(order)]
    jobs.sort(key=lambda j: j.index)

    max_duration_h = min(30.0, 0.6 * days * 24)
    healthy_before: list[PlannedJob] = []
    for job in jobs:
        if job.role == "healthy":
            r = job_rng(seed, job.index, 6)
            if healthy_before and r.random() < RERUN_SHARE:
                parent = healthy_before[int(r.integers(len(healthy_before)))]
                job.config_of = parent.config_of if parent.config_of >= 0 else parent.index
            healthy_before.append(job)
        _configure(job, seed, max_duration_h)
        _timeline(job, seed)
        _place(job, seed, start_ms, end_ms)
    _draw_failures(jobs, seed, end_ms)

    # Alternative log formats go to healthy jobs, so that no fault hides behind a format; the
    # trainer_state.json one has finished (the Trainer's summary entry carries the run time).
    healthy = [jobs[i] for i in rng.permutation(len(jobs)) if jobs[i].role == "healthy" and not jobs[i].fault]
    healthy.sort(key=lambda j: j.status != "succeeded")
    for job, fmt in zip(healthy, ("trainer_state", "wide_csv", "wide_csv")):
        job.fmt = fmt

    # job ids in submission order, as a scheduler would number them
    jobs.sort(key=lambda j: (j.submitted_ms, j.index))
    names: dict[int, str] = {}
    for k, job in enumerate(jobs, 1):
        job.job_id = f"ft-{k:04d}"
        short = job.base_model.split("/")[-1].lower().replace("-instruct", "").replace("-it", "")
        # a relaunch keeps its configuration's run name, as a launch script does
        job.name = names.setdefault(_config_id(job), f"{job.domain}-{job.technique}-{short}-{k:02d}")
        r = job_rng(seed, job.index, 9)
        job.host = f"ip-10-{r.integers(0, 4)}-{r.integers(0, 256)}-{r.integers(1, 255)}"
        job.resource_id = "i-0" + "".join(r.choice(list("0123456789abcdef"), 16))
    return jobs


def _config_id(job: PlannedJob) -> int:
    return job.config_of if job.config_of >= 0 else job.index


def _configure(job: PlannedJob, seed: int, max_duration_h: float) -> None:
    # a re-run draws its configuration from the stream of the job it relaunches: the same spec
    r = job_rng(seed, _config_id(job), 1)
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
    if job.config_of >= 0:
        job.peak_lr = float(job_rng(seed, job.index, 6).uniform(lo, hi))  # a sweep varies the rate
    job.load_s = float(r.uniform(60, 240))
    job.eval_s = float(r.uniform(60, 300))


def _timeline(job: PlannedJob, seed: int) -> None:
    """When each logging step happens, relative to the start of training."""
    r = job_rng(seed, job.index, 2)
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

    if job.fault in ("loss_divergence", "oom", "spot_preemption", "heartbeat_lost") or job.role == "cancelled":
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


def _place(job: PlannedJob, seed: int, start_ms: int, end_ms: int) -> None:
    """Put the job on the calendar so that its faults are visible before `end`."""
    r = job_rng(seed, job.index, 3)
    queue_ms = int(min(r.exponential(25 * 60), 2 * 3600) * MS_PER_S)
    run_ms = int((job.load_s + job.end_rel_s) * MS_PER_S)
    if job.role == "pending":
        job.submitted_ms = end_ms - int(r.uniform(0.2, 4.0) * MS_PER_H)
        job.status = "pending"
        return
    if job.role == "running":
        started = end_ms - int(r.uniform(0.3, 0.85) * run_ms)
    elif job.fault == "heartbeat_lost":
        # its node stopped answering some hours before `end` (the run itself would have gone on)
        silent_ms = int(r.uniform(2.0, 6.0) * MS_PER_H)
        started = max(start_ms + queue_ms, end_ms - silent_ms - run_ms)
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
    # nothing tells the scheduler that a node is gone: the registry says running, the bill goes on
    if ended > end_ms or job.fault == "heartbeat_lost":
        job.status, job.ended_ms = "running", None
        return
    job.ended_ms = ended
    job.status, job.exit_reason = _END_STATES.get(
        job.fault or "", ("cancelled", None) if job.role == "cancelled" else ("succeeded", None))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _failure_odds(job: PlannedJob, fresh: bool, crashed_before: bool, run_h: float
                  ) -> dict[str, tuple[float, str]]:
    """Per spec fault: its probability for this job and what raises it (the manifest's wording).

    OOM: 24 GB cards, long sequences, full fine-tuning of 7B+ models and adapters on 14B+ ones leave
    little headroom. Spot reclaims: a constant hazard per hour on spot capacity, so long spot runs are
    hit most. Code errors: mostly the first launch of a configuration (a new dataset, a new script),
    and a relaunch after a crash often crashes again (the fix did not hold).
    NaN loss: a learning rate at the top of the technique's usual range, more so in full fine-tuning.
    """
    small = job.instance.gpu_memory_gib <= 24
    big_full = job.technique == "full" and job.model_params_b >= 7
    big_adapter = job.technique in ("lora", "dpo") and job.model_params_b >= 14
    logit = -7.0 + 4.0 * small + 1.5 * math.log2(job.seq_len / 1024) + 3.0 * big_full + 1.5 * big_adapter
    oom_why = ", ".join(w for w, on in ((f"{job.instance.gpu_memory_gib} GB GPU", small),
                                        (f"seq_len {job.seq_len}", job.seq_len >= 4096),
                                        (f"full fine-tune of {job.model_params_b:g}B", big_full),
                                        (f"{job.model_params_b:g}B adapter", big_adapter)) if on)
    lo, hi = _PEAK_LR[job.technique]
    lr_pos = float(np.clip((job.peak_lr - lo) / (hi - lo), 0.0, 1.0))
    nan_p = (0.001 + 0.02 * lr_pos**2) * (1.5 if job.technique == "full" else 1.0)
    spot_p = 1.0 - math.exp(-SPOT_RECLAIMS_PER_HOUR * run_h) if job.pricing == "spot" else 0.0
    return {
        "code_error": (CODE_ERROR_AGAIN, "relaunch of a configuration that crashed") if crashed_before else
                      (CODE_ERROR_FRESH, "first launch of this configuration") if fresh else
                      (CODE_ERROR_KNOWN, "relaunch of a configuration that ran"),
        "oom": (_sigmoid(logit), oom_why or "no memory risk factor"),
        "loss_divergence": (nan_p, f"peak learning rate {job.peak_lr:.2g} ({lr_pos:.0%} up its usual range)"),
        "spot_preemption": (spot_p, f"{run_h:.0f} h on spot capacity"),
    }


def _draw_failures(jobs: list[PlannedJob], seed: int, end_ms: int) -> None:
    """Let each started healthy job fail the way its spec makes likely; a failure after `end` has not
    happened yet (the job is still running). Own random stream per job: the others are unchanged."""
    launched: dict[int, list[PlannedJob]] = {}
    for job in sorted((j for j in jobs if j.started_ms is not None), key=lambda j: (j.started_ms, j.index)):
        earlier = launched.setdefault(_config_id(job), [])
        ended = [j for j in earlier if j.ended_ms is not None and j.ended_ms < (job.started_ms or 0)]
        last = max(ended, key=lambda j: j.ended_ms or 0) if ended else None
        fresh, crashed = not earlier, last is not None and last.fault == "code_error"
        earlier.append(job)
        if job.role != "healthy":
            continue
        r = job_rng(seed, job.index, 7)
        odds = _failure_odds(job, fresh, crashed, job.end_rel_s / 3600.0)
        draws = r.random(len(SPEC_FAULTS))
        hit = next((f for f, u in zip(SPEC_FAULTS, draws) if u < odds[f][0]), None)
        n_logs = len(job.log_steps)
        # where it stops (log index): code errors at the first steps or the first evaluation's metrics
        # code; reclaims anywhere (constant hazard); OOM and divergence after a while
        at = {"code_error": float(r.choice([r.uniform(0.0, 0.01), (job.eval_idx[0] + 0.5) / n_logs])),
              "spot_preemption": r.uniform(0.02, 0.98), "oom": r.uniform(0.15, 0.7),
              "loss_divergence": r.uniform(0.1, 0.6)}
        if hit is None:
            continue
        stop = int(at[hit] * n_logs)
        stop = min(n_logs - 2, stop if hit == "code_error" else max(12, stop))
        grace = {"loss_divergence": 20.0, "oom": 8.0, "code_error": 4.0}.get(hit, float(r.uniform(5, 25)))
        signal_end = float(job.log_rel_s[stop] + grace)
        end_rel = signal_end + (float(r.uniform(90, 300)) if hit == "spot_preemption" else 0.0)
        assert job.started_ms is not None
        ended = job.started_ms + int((job.load_s + end_rel) * MS_PER_S)
        if ended > end_ms:
            continue  # it would fail after `end`: so far it runs
        job.fault, job.fault_frac, job.cause = hit, float(at[hit]), odds[hit][1]
        job.stop_idx, job.signal_end_rel_s, job.end_rel_s, job.ended_ms = stop, signal_end, end_rel, ended
        job.status, job.exit_reason = _END_STATES[hit]


def observed_end_ms(job: PlannedJob, end_ms: int) -> int:
    """Until when the job's instance is billed."""
    return min(end_ms, job.ended_ms) if job.ended_ms is not None else end_ms


def signal_end_ms(job: PlannedJob, end_ms: int) -> int:
    """Until when the job writes samples."""
    return min(end_ms, job.t0_ms + int(job.signal_end_rel_s * MS_PER_S))
