"""Pager text for anomalies: what was seen, the threshold and the window, in one sentence.

Built once per anomaly (a handful per job), never per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd


def _n(x: Any) -> str:
    if x is None or pd.isna(x):
        return "NaN"
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 0.01:
        return f"{x:.3g}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}".rstrip("0").rstrip(".")


def _at(r: Any) -> str:
    if pd.notna(r.worst_step):
        return f"at step {int(r.worst_step)}"
    return f"at {pd.Timestamp(r.worst_ts).strftime('%Y-%m-%d %H:%M:%S')} UTC"


def _span(r: Any) -> str:
    if r.n_samples <= 1:
        return ""
    if pd.notna(r.first_step) and pd.notna(r.last_step):
        where = f"steps {int(r.first_step)}-{int(r.last_step)}"
    else:
        where = (f"{pd.Timestamp(r.first_ts).strftime('%H:%M:%S')}-"
                 f"{pd.Timestamp(r.last_ts).strftime('%H:%M:%S')} UTC")
    seconds = (pd.Timestamp(r.last_ts) - pd.Timestamp(r.first_ts)).total_seconds()
    took = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    return f"; {int(r.n_samples)} samples, {where}, {took}"


def _gpu(r: Any) -> str:
    return f" on GPU {r.device}" if isinstance(r.device, str) and r.device else ""


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def _symptom(r: Any) -> str:
    if pd.notna(r.score) and r.score > 0:
        return f" with GPU temperature {_n(r.score)} °C (throttling level {_n(r.reference)} °C)"
    return " while samples/s is degraded"


def _ratio_to(r: Any) -> str:
    return f"{_n(r.value / r.reference)}×" if r.reference and pd.notna(r.reference) else "?×"


_FORMATS: dict[str, Callable[[Any], str]] = {
    "loss_non_finite": lambda r: f"training_loss is {_n(r.value)} {_at(r)} (threshold: any NaN/Inf{_span(r)})",
    "grad_norm_non_finite": lambda r: f"grad_norm is {_n(r.value)} {_at(r)} (threshold: any NaN/Inf{_span(r)})",
    "loss_rising": lambda r: (
        f"training_loss median {_n(r.value)} over the last {r.window.split(' vs')[0]} {_at(r)} is "
        f"{_pct(r.score)} above {_n(r.reference)} in the window before (threshold +{_pct(r.threshold)}; "
        f"{r.window}{_span(r)})"),
    "loss_spike": lambda r: (
        f"training_loss {_n(r.value)} {_at(r)} is {_ratio_to(r)} its recent median {_n(r.reference)} "
        f"(robust z {_n(r.score)} over the {r.window}{_span(r)})"),
    "loss_divergence": lambda r: (
        f"training_loss {_n(r.value)} {_at(r)} stays {_n(r.score)}× "
        f"{'the lowest level it had reached' if 'lowest' in r.window else 'its recent median'} {_n(r.reference)} "
        f"(threshold {_n(r.threshold)}× for {r.window}{_span(r)})"),
    "loss_implausible": lambda r: (
        f"training_loss {_n(r.value)} {_at(r)} is above {_n(r.threshold)}, more than a cross-entropy loss can "
        f"start from (ln of the vocabulary size is 10-12): check the learning rate and the loss "
        f"(set monitoring.loss.plausible_max for other losses{_span(r)})"),
    "not_learning": lambda r: (
        f"training_loss median {_n(r.value)} over the last quarter of the run {_at(r)} is "
        f"{f'only {_pct(r.score)} below' if r.score >= 0 else f'{_pct(-r.score)} above'} "
        f"its starting level {_n(r.reference)} (threshold: at least {_pct(r.threshold)} lower; "
        f"{r.window}): the run is not learning"),
    "val_loss_non_finite": lambda r: f"val_loss is {_n(r.value)} {_at(r)} (threshold: any NaN/Inf{_span(r)})",
    "job_preempted": lambda r: (
        f"the job registry says the job was preempted ({r.window}) at "
        f"{pd.Timestamp(r.first_ts).strftime('%Y-%m-%d %H:%M:%S')} UTC"),
    "heartbeat_lost": lambda r: (
        f"no heartbeat and no step progress for {_n(r.value)} min while the registry says running (timeout "
        f"{_n(r.threshold)} min; last sign of life {r.window})"),
    "learning_rate_out_of_range": lambda r: (
        f"learning_rate {_n(r.value)} {_at(r)} is {'above' if r.value > r.threshold else 'below'} the "
        f"{r.window} (warm-up start and decay end excepted{_span(r)})"),
    "grad_norm_explosion": lambda r: (
        f"grad_norm {_n(r.value)} {_at(r)} is {_ratio_to(r)} its recent median {_n(r.reference)} "
        f"(robust z {_n(r.score)} over the {r.window} and > {_n(r.threshold)}{_span(r)})"),
    "grad_norm_spike": lambda r: (
        f"grad_norm {_n(r.value)} {_at(r)} is {_ratio_to(r)} its recent median {_n(r.reference)} "
        f"(robust z {_n(r.score)} over the {r.window} and > {_n(r.threshold)}) but brief and not huge: "
        f"not an explosion{_span(r)}"),
    "throughput_degraded": lambda r: (
        f"samples_per_second {_n(r.value)} ({r.window}) {_at(r)} is below {_n(r.threshold)} = "
        f"{_n(r.threshold / r.reference if r.reference else float('nan'))} × "
        f"{'the job baseline' if r.score == 1.0 else 'the configured baseline'} {_n(r.reference)}{_span(r)}"),
    "gpu_underutilized": lambda r: (
        f"gpu_utilization_pct{_gpu(r)} below {_n(r.threshold)} % (lowest {_n(r.value)} %, "
        f"threshold {r.window}{_span(r)})"),
    "gpu_overutilized": lambda r: (
        f"gpu_utilization_pct{_gpu(r)} above {_n(r.threshold)} % (highest {_n(r.value)} %, "
        f"threshold {r.window}{_span(r)})"
        + (f"{_symptom(r)}" if r.severity != "info" else ": saturated, as training should be; no throttling "
           "or throughput loss seen")),
    "gpu_memory_copy_util_high": lambda r: (
        f"gpu_memory_copy_util_pct (memory bandwidth){_gpu(r)} at {_n(r.value)} % >= {_n(r.threshold)} % "
        f"({r.severity} threshold, {r.window}{_span(r)})"),
    "gpu_memory_capacity_high": lambda r: (
        f"gpu_memory_used_ratio{_gpu(r)} at {_pct(r.value)} >= {_pct(r.threshold)} "
        f"({r.severity} threshold, {r.window}{_span(r)})"),
    "cpu_high": lambda r: (
        f"cpu_utilization_pct at {_n(r.value)} % > {_n(r.threshold)} % ({r.window}{_span(r)})"),
    "host_memory_high": lambda r: (
        f"host_memory_used_ratio at {_pct(r.value)} >= {_pct(r.threshold)} "
        f"({r.severity} threshold, {r.window}{_span(r)})"),
    "val_loss_stagnation": lambda r: (
        f"best val_loss {_n(r.value)} {_at(r)} improved only {_pct(r.score)} on {_n(r.reference)} over the "
        f"{r.window} (threshold >= {_pct(r.threshold)}{_span(r)})"),
    "overfitting": lambda r: (
        f"val_loss {_n(r.value)} {_at(r)} rose from {_n(r.reference)} over the {r.window} while the "
        f"training loss fell to {_n(r.score)} (threshold: val rise > {_pct(r.threshold)}{_span(r)})"),
    "domain_accuracy_low": lambda r: (
        f"domain_accuracy {_n(r.value)} {_at(r)} is below the minimum {_n(r.threshold)}{_span(r)}"),
    "domain_accuracy_target_reached": lambda r: (
        f"domain_accuracy {_n(r.value)} {_at(r)} reached the target {_n(r.threshold)}{_span(r)}"),
    "slow_convergence": lambda r: (
        f"training loss projected to converge at epoch {_n(r.score)} (seen up to epoch {_n(r.reference)}) "
        f"> expected {_n(r.threshold)} epochs ({r.window})" if pd.notna(r.score) else
        f"training loss still not converging at epoch {_n(r.reference)} > expected {_n(r.threshold)} epochs "
        f"({r.window})"),
    "cost_per_hour_high": lambda r: (
        f"cost_per_hour_usd {_n(r.value)} {_at(r)} is above the limit {_n(r.threshold)} USD/h{_span(r)}"),
    "cost_per_sample_above_benchmark": lambda r: (
        f"cost per sample {_n(r.value)} USD ({_n(r.reference)} USD/h at {_n(r.score)} samples/s) {_at(r)} "
        f"is above the benchmark {_n(r.threshold)} USD{_span(r)}"),
    "cost_per_sample_above_target": lambda r: (
        f"cost per sample {_n(r.value)} USD ({_n(r.reference)} USD/h at {_n(r.score)} samples/s) {_at(r)} "
        f"is above the target {_n(r.threshold)} USD (within the benchmark){_span(r)}"),
}


def format_messages(anomalies: pd.DataFrame) -> list[str]:
    """One message per anomaly row (columns of the anomalies table)."""
    out = []
    for r in anomalies.itertuples(index=False):
        fmt = _FORMATS.get(r.rule)
        text = fmt(r) if fmt else f"{r.rule}: {_n(r.value)} {_at(r)} (threshold {_n(r.threshold)}, {r.window})"
        out.append(f"{r.job_id}: {text}")
    return out
