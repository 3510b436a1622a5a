"""What each job logs: the trainer's curves per logging step and evaluation, and the node's resource
samples per tick, with each planned fault written into them. Vectorised per job, no per-sample Python."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ftops.demo_fleet.plan import PlannedJob, job_rng, signal_end_ms
from ftops.demo_fleet.times import MS_PER_S

RESOURCE_INTERVAL_S = 30  # DCGM / W&B system stats cadence
HEARTBEAT_INTERVAL_S = 60


def _smooth_loss(x_steps: np.ndarray, job: PlannedJob, l0: float, l_inf: float, alpha: float) -> np.ndarray:
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
class TrainingSignals:
    """Trainer-side samples of one job (per logging step and per evaluation)."""

    log_ms: np.ndarray
    steps: np.ndarray
    values: dict[str, np.ndarray]  # training_loss, learning_rate, grad_norm, samples/tokens_per_second, epoch
    eval_ms: np.ndarray
    eval_steps: np.ndarray
    eval_values: dict[str, np.ndarray]  # val_loss, domain_accuracy
    fault_onset_ms: int | None = None


def training_signals(job: PlannedJob, seed: int, end_ms: int) -> TrainingSignals:
    r = job_rng(seed, job.index, 4)
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
    obs_end = signal_end_ms(job, end_ms)
    keep = (np.arange(n_all) <= last) & (log_ms <= obs_end)
    e_keep = (e_idx <= last) & (eval_ms <= obs_end)
    onset_ms = None
    if onset_idx is not None:
        onset_ms = int(log_ms[onset_idx])
    return TrainingSignals(
        log_ms=log_ms[keep],
        steps=job.log_steps[keep],
        values={k: v[keep] for k, v in values.items()},
        eval_ms=eval_ms[e_keep],
        eval_steps=job.log_steps[e_idx][e_keep],
        eval_values={k: v[e_keep] for k, v in eval_values.items()},
        fault_onset_ms=onset_ms,
    )


@dataclass
class ResourceSignals:
    ts_ms: np.ndarray  # per tick
    gpu: dict[str, np.ndarray]  # metric -> (ticks, gpus)
    host: dict[str, np.ndarray]  # metric -> (ticks,)
    heartbeat_ms: np.ndarray
    fault_onset_ms: int | None = None


def resource_signals(job: PlannedJob, seed: int, end_ms: int) -> ResourceSignals:
    r = job_rng(seed, job.index, 5)
    inst = job.instance
    g = inst.gpu_count
    obs_end = signal_end_ms(job, end_ms)
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
        # (at least 20 minutes of it, so that the sustained-memory rule can see it before the failure)
        t_ramp = max(t0, min(t0 + int(0.65 * (t_fail - t0)), t_fail - 20 * 60 * MS_PER_S))
        k = np.clip((ticks - t_ramp) / max(1, t_fail - t_ramp), 0.0, 1.0)[:, None]
        mem = mem_base - 0.004 * np.arange(g)[None, :] + (0.992 - mem_base) * k**1.5 + r.normal(0.0, 0.002, (n, g))
        onset_ms = int(t_ramp)
    elif job.fault == "heartbeat_lost":
        onset_ms = int(obs_end)  # its last sign of life
    mem = np.clip(mem, 0.05, 0.995)

    copy_util = np.clip(r.uniform(30, 60) * util / 90.0 + r.normal(0.0, 3.0, (n, g)), 0.0, 85.0)
    power = np.minimum(inst.gpu_tdp_watts * (0.28 + 0.62 * util / 100.0) * np.exp(r.normal(0.0, 0.03, (n, g))),
                       inst.gpu_tdp_watts)
    temp = 38.0 + 0.33 * util + r.normal(0.0, 2.0, g)[None, :] + r.normal(0.0, 0.7, (n, g))
    cpu = np.clip(cpu_mean + r.normal(0.0, 4.0, n), 1.0, cpu_hi)
    host_mem = np.clip(r.uniform(0.25, 0.6) + r.normal(0.0, 0.01, n), 0.05, 0.8)
    return ResourceSignals(
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
