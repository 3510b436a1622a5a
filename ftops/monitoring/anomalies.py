"""`detect_anomalies`: every §1.1 rule over `metric_samples`, consecutive firing samples merged.

One anomaly is one detection window: consecutive firing samples of the same job, rule and device
(a gap longer than `merge_gap_minutes` or a non-firing sample in between starts a new one). Its
value, threshold and context are those of its worst sample; its severity is the highest reached.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.catalog import RULES, setting
from ftops.monitoring.hits import empty_hits
from ftops.monitoring.messages import format_messages
from ftops.monitoring.rules_cost import cost_hits
from ftops.monitoring.rules_quality import asof, convergence_hits, domain_accuracy_hits, val_loss_hits
from ftops.monitoring.rules_resource import (
    cpu_hits,
    gpu_memory_capacity_hits,
    gpu_memory_copy_hits,
    gpu_utilization_hits,
    host_memory_hits,
)
from ftops.monitoring.rules_training import (
    learning_rate_hits,
    loss_rising_hits,
    not_learning_hits,
    throughput_degraded,
    throughput_hits,
)
from ftops.monitoring.series import NS_PER_MINUTE, MetricFrame, split_by_metric
from ftops.monitoring.spikes import grad_norm_hits, loss_spike_hits, non_finite_hits
from ftops.policy import MonitoringPolicy
from ftops.schemas import ANOMALIES, SEVERITIES, validate


def _epoch_of(loss: MetricFrame, frames: dict[str, MetricFrame], jobs: pd.DataFrame | None) -> np.ndarray:
    """Epoch of each loss sample: the job's epoch metric, else step / total_steps x epochs from jobs."""
    epoch = frames.get("epoch")
    out = asof(loss, epoch, epoch.value) if epoch is not None else np.full(len(loss), np.nan)
    if jobs is not None and not jobs.empty and {"job_id", "total_steps", "epochs"} <= set(jobs.columns):
        spec = jobs.drop_duplicates("job_id").set_index(jobs["job_id"].astype("string").drop_duplicates())
        names = pd.Index(loss.job_names.astype(str))
        total = pd.to_numeric(spec["total_steps"], errors="coerce").astype(float).reindex(names).to_numpy()[loss.job]
        epochs = pd.to_numeric(spec["epochs"], errors="coerce").astype(float).reindex(names).to_numpy()[loss.job]
        with np.errstate(invalid="ignore", divide="ignore"):
            derived = np.where(total > 0, loss.step / total * epochs, np.nan)
        out = np.where(np.isnan(out), derived, out)
    return out


# the metrics some rule reads; others (power, temperature, tokens/s, heartbeats) are not split out
_READ_METRICS = frozenset({
    "training_loss", "epoch", "learning_rate", "grad_norm", "samples_per_second", "gpu_utilization_pct",
    "gpu_memory_copy_util_pct", "gpu_memory_used_ratio", "cpu_utilization_pct", "host_memory_used_ratio",
    "val_loss", "domain_accuracy", "cost_per_hour_usd", "gpu_temperature_c",
})


def detect_hits(samples: pd.DataFrame, jobs: pd.DataFrame | None, policy: MonitoringPolicy) -> tuple[
        pd.DataFrame, np.ndarray, np.ndarray]:
    """All firing samples of all rules, with the job and device name arrays their codes index."""
    frames = split_by_metric(samples, _READ_METRICS)
    gap = policy.merge_gap_minutes
    parts: list[pd.DataFrame] = []
    loss = frames.get("training_loss")
    if loss is not None:
        parts.append(non_finite_hits(loss, "loss_non_finite"))
        parts.append(loss_rising_hits(loss, policy.loss, setting(policy, "loss.trend_min_giveback_ratio") or 0.0))
        parts.extend(loss_spike_hits(loss, policy.loss, setting(policy, "loss.plausible_max")))
        parts.append(not_learning_hits(loss, int(setting(policy, "loss.not_learning_min_samples")),
                                       setting(policy, "loss.not_learning_min_improvement_ratio")))
        parts.append(convergence_hits(loss, _epoch_of(loss, frames, jobs), policy.convergence))
    if (f := frames.get("learning_rate")) is not None:
        parts.append(learning_rate_hits(f, policy.learning_rate))
    if (f := frames.get("grad_norm")) is not None:
        parts.append(non_finite_hits(f, "grad_norm_non_finite"))
        parts.extend(grad_norm_hits(f, policy.grad_norm))
    degraded = None
    if (f := frames.get("samples_per_second")) is not None:
        parts.append(throughput_hits(f, policy.throughput))
        sps, slow, _ = throughput_degraded(f, policy.throughput)
        degraded = (sps, slow)
    if (f := frames.get("gpu_utilization_pct")) is not None:
        parts.extend(gpu_utilization_hits(f, policy.gpu_utilization, gap, frames.get("gpu_temperature_c"),
                                          setting(policy, "gpu_utilization.throttle_temperature_c"), degraded))
    if (f := frames.get("gpu_memory_copy_util_pct")) is not None:
        parts.append(gpu_memory_copy_hits(f, policy.gpu_memory, gap))
    if (f := frames.get("gpu_memory_used_ratio")) is not None:
        parts.append(gpu_memory_capacity_hits(f, policy.gpu_memory, gap))
    if (f := frames.get("cpu_utilization_pct")) is not None:
        parts.append(cpu_hits(f, policy.cpu, gap))
    if (f := frames.get("host_memory_used_ratio")) is not None:
        parts.append(host_memory_hits(f, policy.host_memory, gap))
    if (f := frames.get("val_loss")) is not None:
        parts.append(non_finite_hits(f, "val_loss_non_finite"))
        parts.extend(val_loss_hits(f, loss, policy.validation))
    if (f := frames.get("domain_accuracy")) is not None:
        parts.extend(domain_accuracy_hits(f, policy.domain_accuracy))
    if (f := frames.get("cost_per_hour_usd")) is not None:
        parts.extend(cost_hits(f, frames.get("samples_per_second"), policy.cost))
    any_frame = next(iter(frames.values()), None)
    parts = [p for p in parts if len(p)]
    hits = pd.concat(parts, ignore_index=True) if parts else empty_hits()
    if any_frame is None:
        return hits, np.array([], dtype=object), np.array([], dtype=object)
    return hits, any_frame.job_names, any_frame.device_names


def merge_hits(hits: pd.DataFrame, job_names: np.ndarray, device_names: np.ndarray,
               merge_gap_minutes: float) -> pd.DataFrame:
    """Consecutive firing samples of one job, rule and device -> one anomaly row (ANOMALIES)."""
    if hits.empty:
        return ANOMALIES.empty()
    rule_codes, rule_names = pd.factorize(hits["rule"])
    h = hits.assign(_rule=rule_codes)
    h = h.sort_values(["_rule", "job", "device", "seq"], kind="stable").reset_index(drop=True)
    r, job, dev, seq, ts = (h[c].to_numpy() for c in ("_rule", "job", "device", "seq", "ts"))
    new = np.r_[True, (r[1:] != r[:-1]) | (job[1:] != job[:-1]) | (dev[1:] != dev[:-1])
                | (seq[1:] != seq[:-1] + 1) | (np.diff(ts) > merge_gap_minutes * NS_PER_MINUTE)]
    run = np.cumsum(new) - 1
    h["_run"] = run
    # worst sample: highest severity first, then the rule's own badness, then the earliest
    order = np.lexsort((-seq, h["badness"].to_numpy(), h["severity"].to_numpy(), run))
    worst = h.iloc[order].groupby("_run", sort=True).tail(1).set_index("_run").sort_index()
    grouped = h.groupby("_run", sort=True)
    first = grouped.head(1).set_index("_run").sort_index()
    last = grouped.tail(1).set_index("_run").sort_index()
    rules = pd.Series(rule_names[worst["_rule"].to_numpy()])
    device = pd.Series(device_names[worst["device"].to_numpy()], dtype="string")
    out = pd.DataFrame({
        "job_id": pd.Series(job_names[worst["job"].to_numpy()], dtype="string"),
        "rule": rules,
        "category": rules.map(lambda x: RULES[x].category),
        "severity": pd.Series(np.asarray(SEVERITIES)[grouped["severity"].max().to_numpy()]),
        "metric": rules.map(lambda x: RULES[x].metric),
        "device": device.where(device != "", pd.NA),
        "first_ts": pd.to_datetime(first["ts"].to_numpy(), utc=True),
        "last_ts": pd.to_datetime(last["ts"].to_numpy(), utc=True),
        "first_step": first["step"].to_numpy(),
        "last_step": last["step"].to_numpy(),
        "worst_ts": pd.to_datetime(worst["ts"].to_numpy(), utc=True),
        "worst_step": worst["step"].to_numpy(),
        "n_samples": grouped.size().to_numpy(),
        "value": worst["value"].to_numpy(),
        "threshold": worst["threshold"].to_numpy(),
        "reference": worst["ref"].to_numpy(),
        "score": worst["score"].to_numpy(),
        "window": worst["window"].to_numpy(),
        "ongoing": grouped["last_in_series"].any().to_numpy(),
    })
    out["message"] = format_messages(out)
    out = out.sort_values(["job_id", "first_ts", "rule"], kind="stable").reset_index(drop=True)
    return validate(out, ANOMALIES)


def detect_anomalies(samples: pd.DataFrame, jobs: pd.DataFrame | None = None,
                     policy: MonitoringPolicy | None = None) -> pd.DataFrame:
    """Run every monitoring rule over `metric_samples`; one row per detection window (ANOMALIES).

    `jobs` (the jobs table) is optional; it supplies epochs for convergence when the samples carry
    no `epoch` metric. Rules and their settings: docs/architecture.md §5 and `MonitoringPolicy`.
    """
    policy = policy or MonitoringPolicy()
    hits, job_names, device_names = detect_hits(samples, jobs, policy)
    return merge_hits(hits, job_names, device_names, policy.merge_gap_minutes)


def detect_anomalies_by_day(samples: pd.DataFrame, days: list[tuple[pd.Timestamp, pd.Timestamp]],
                            jobs: pd.DataFrame | None = None, policy: MonitoringPolicy | None = None,
                            context: pd.Timedelta = pd.Timedelta(days=1)) -> pd.DataFrame:
    """The anomalies of each day [start, end) in `days`, each computed the same way whatever else
    is in `samples`: from the samples of that day and the `context` before it, keeping only the
    firing samples inside the day.

    So a backfill of a range and one run per day store the same rows, and every firing sample is in
    exactly one day's rows: an episode that crosses midnight is one row per day (the alerts chain
    them into one incident), never a row whose tail is in no day.
    """
    policy = policy or MonitoringPolicy()
    if samples.empty:
        return ANOMALIES.empty()
    ts = pd.to_datetime(samples["ts"], utc=True)
    parts = []
    for start, end in days:
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        scope = ((ts >= start - context) & (ts < end)).to_numpy()
        if not scope.any():
            continue
        hits, job_names, device_names = detect_hits(samples[scope], jobs, policy)
        hit_ts = hits["ts"].to_numpy(dtype="int64") if len(hits) else np.zeros(0, np.int64)
        own = (hit_ts >= start.value) & (hit_ts < end.value)
        found = merge_hits(hits[own].reset_index(drop=True), job_names, device_names, policy.merge_gap_minutes)
        if len(found):
            parts.append(found)
    if not parts:
        return ANOMALIES.empty()
    out = pd.concat(parts, ignore_index=True).sort_values(["job_id", "first_ts", "rule"], kind="stable")
    return validate(out.reset_index(drop=True), ANOMALIES)
