"""Resource rules (§1.1): GPU utilisation, GPU memory (bandwidth and capacity), CPU, host memory.

Resource metrics are sampled every few seconds and dip for ordinary reasons (evaluation, a
checkpoint write, the data loader), so each rule fires only when its condition holds for a
sustained window, never on single samples.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.hits import CRITICAL, INFO, WARNING, make_hits
from ftops.monitoring.series import NS_PER_MINUTE, MetricFrame, sustained
from ftops.policy import CpuPolicy, GpuMemoryPolicy, GpuUtilizationPolicy, HostMemoryPolicy


def sustained_threshold_hits(frame: MetricFrame, rule: str, warning: float, critical: float | None,
                             window_minutes: float, max_gap_minutes: float, low: bool = False,
                             strict: bool = False) -> pd.DataFrame:
    """Samples beyond `warning` (and `critical`) for at least `window_minutes` in a row.

    `low` flips the comparison (under-utilisation); `strict` uses > / < instead of >= / <=.
    Critical needs the critical condition itself to be sustained, so one peak inside a warning
    stretch does not escalate it.
    """
    v = frame.value
    window_ns = int(window_minutes * NS_PER_MINUTE)
    gap_ns = int(max_gap_minutes * NS_PER_MINUTE)

    def beyond(limit: float) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            if low:
                return v < limit if strict else v <= limit
            return v > limit if strict else v >= limit

    warn = sustained(beyond(warning), frame.group, frame.ts, window_ns, gap_ns)
    severity: int | np.ndarray = WARNING
    threshold: float | np.ndarray = warning
    if critical is not None:
        crit = sustained(beyond(critical), frame.group, frame.ts, window_ns, gap_ns)
        severity = np.where(crit, CRITICAL, WARNING)
        threshold = np.where(crit, critical, warning)
    text = f"sustained {window_minutes:g} min"
    return make_hits(frame, rule, warn, severity, threshold, text, badness=-v if low else v)


def _latest_before(target: MetricFrame, source: MetricFrame, values: np.ndarray, by_device: bool) -> np.ndarray:
    """For each target row, `values` of the latest source row of the same job (and device) at or
    before its ts. Frames of one split share job and device codes."""
    keys = ["job", "device"] if by_device else ["job"]
    left = pd.DataFrame({"job": target.job, "device": target.device, "ts": target.ts,
                         "_row": np.arange(len(target))})
    right = pd.DataFrame({"job": source.job, "device": source.device, "ts": source.ts, "_v": values})
    right = right[np.isfinite(right["_v"].to_numpy())]
    out = np.full(len(target), np.nan)
    if left.empty or right.empty:
        return out
    merged = pd.merge_asof(left.sort_values("ts", kind="stable"), right[keys + ["ts", "_v"]].sort_values(
        "ts", kind="stable"), on="ts", by=keys, direction="backward")
    out[merged["_row"].to_numpy()] = merged["_v"].to_numpy()
    return out


def gpu_utilization_hits(frame: MetricFrame, policy: GpuUtilizationPolicy, gap: float,
                         temperature: MetricFrame | None = None, throttle_c: float | None = None,
                         degraded: tuple[MetricFrame, np.ndarray] | None = None) -> list[pd.DataFrame]:
    """gpu_underutilized (warning) and gpu_overutilized, sustained.

    Saturation is what training should do: healthy W&B runs sit at 99-100 % for hours. It is info,
    and a warning only with a symptom on the same GPU at the time: its temperature at the
    throttling level, or the job's samples/s degraded (`degraded`: finite samples/s and its mask).
    """
    over = sustained_threshold_hits(frame, "gpu_overutilized", policy.over_pct, None, policy.window_minutes,
                                    gap, strict=True)
    if len(over):
        rows = over["seq"].to_numpy()
        hot = np.zeros(len(rows), dtype=bool)
        temp = np.full(len(rows), np.nan)
        if temperature is not None and throttle_c is not None and len(temperature):
            temp = _latest_before(frame, temperature, temperature.value, by_device=True)[rows]
            hot = temp >= throttle_c
        slow = np.zeros(len(rows), dtype=bool)
        if degraded is not None and len(degraded[0]):
            slow = _latest_before(frame, degraded[0], degraded[1].astype(float), by_device=False)[rows] == 1.0
        over["severity"] = np.where(hot | slow, WARNING, INFO).astype(np.int8)
        over["score"] = np.where(hot, temp, np.nan)
        over["ref"] = np.nan if throttle_c is None else throttle_c
    return [
        sustained_threshold_hits(frame, "gpu_underutilized", policy.under_pct, None, policy.window_minutes,
                                 gap, low=True, strict=True),
        over,
    ]


def gpu_memory_copy_hits(frame: MetricFrame, policy: GpuMemoryPolicy, gap: float) -> pd.DataFrame:
    return sustained_threshold_hits(frame, "gpu_memory_copy_util_high", policy.copy_util_warning_pct,
                                    policy.copy_util_critical_pct, policy.window_minutes, gap)


def gpu_memory_capacity_hits(frame: MetricFrame, policy: GpuMemoryPolicy, gap: float) -> pd.DataFrame:
    """Capacity used above the warning (and critical) ratio for `used_ratio_window_minutes`.

    Defaults differ from the spec on purpose (see GpuMemoryPolicy): a full caching allocator is
    normal. A critical level alone (no warning) still fires; neither set switches the rule off.
    """
    warning, critical = policy.used_ratio_warning, policy.used_ratio_critical
    if warning is None:
        warning, critical = critical, None
    if warning is None:
        return make_hits(frame, "gpu_memory_capacity_high", np.zeros(len(frame), bool), WARNING, np.nan,
                         "switched off")
    hits = sustained_threshold_hits(frame, "gpu_memory_capacity_high", warning, critical,
                                    policy.used_ratio_window_minutes, gap)
    if policy.used_ratio_warning is None:
        hits["severity"] = np.int8(CRITICAL)
    return hits


def cpu_hits(frame: MetricFrame, policy: CpuPolicy, gap: float) -> pd.DataFrame:
    return sustained_threshold_hits(frame, "cpu_high", policy.alert_pct, None, policy.window_minutes, gap,
                                    strict=True)


def host_memory_hits(frame: MetricFrame, policy: HostMemoryPolicy, gap: float) -> pd.DataFrame:
    return sustained_threshold_hits(frame, "host_memory_high", policy.warning_ratio, policy.critical_ratio,
                                    policy.window_minutes, gap)
