"""Shared last step of every metric reader: long rows -> validated `metric_samples` + rejections."""

from __future__ import annotations

import pandas as pd

from ftops.readers.base import ReadResult, rejected_rows
from ftops.schemas import METRIC_SAMPLES, METRICS, to_utc

_SAMPLE_COLUMNS = METRIC_SAMPLES.column_names


def finish_samples(long: pd.DataFrame, *, source: str, record: pd.Series | None = None) -> ReadResult:
    """Split long-format rows into accepted `metric_samples` and rejected rows with a reason.

    `long` has at least ts, job_id, metric, value (already mapped to canonical metric names) and
    optionally step, device, host, source. NaN and ±Inf values are accepted: a NaN loss is a
    signal the monitoring rules need. A value that is not a number at all is rejected.
    Vectorised: one pass of masks, no per-row Python.
    """
    n = len(long)
    ts = to_utc(long["ts"]) if n else pd.Series(dtype="datetime64[ns, UTC]")
    raw_value = long["value"]
    value = pd.to_numeric(raw_value, errors="coerce").astype("float64")
    if raw_value.dtype == object or pd.api.types.is_string_dtype(raw_value.dtype):
        text = raw_value.astype("string").str.strip().str.lower()
        not_a_number = value.isna() & raw_value.notna() & ~text.isin(["nan", "", "none", "null"])
    else:
        not_a_number = pd.Series(False, index=long.index)
    job_id = long["job_id"].astype("string")
    metric = long["metric"].astype("string")

    reason = pd.Series(pd.NA, index=long.index, dtype="string")
    reason = reason.mask(not_a_number, "value is not a number")
    reason = reason.mask(~metric.isin(METRICS), "unknown metric (not a canonical name or known alias)")
    reason = reason.mask(metric.isna(), "missing metric name")
    reason = reason.mask(job_id.isna() | (job_id.str.strip() == ""), "missing job_id")
    reason = reason.mask(ts.isna(), "timestamp missing or unparseable")
    bad = reason.notna().to_numpy()

    out = pd.DataFrame(
        {
            "ts": ts,
            "job_id": job_id,
            "metric": metric,
            "value": value,
            "step": pd.to_numeric(long["step"], errors="coerce").astype("Int64") if "step" in long else pd.NA,
            "device": long["device"].astype("string") if "device" in long else pd.NA,
            "host": long["host"].astype("string") if "host" in long else pd.NA,
            "source": long["source"].astype("string") if "source" in long else source,
        },
        index=long.index,
    )
    for name in ("step", "device", "host"):
        if name not in long:
            out[name] = out[name].astype("Int64" if name == "step" else "string")
    out["source"] = out["source"].astype("string")
    accepted = out[~bad].reset_index(drop=True)[_SAMPLE_COLUMNS]
    rejected = rejected_rows(
        long[bad], reason[bad], source=source, table="metric_samples",
        record=None if record is None else record[bad],
    )
    return ReadResult("metric_samples", accepted, rejected)
