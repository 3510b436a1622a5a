"""Prometheus HTTP API `query_range` responses -> `metric_samples` (pure: no HTTP here).

The HTTP client is `ftops.defs.prometheus.PrometheusResource`; this module only turns the JSON it
receives into rows, with the exporter name mapping and unit conversions of `prometheus_text`, so
a series reads the same from a scrape file and from a server.

A query_range answer (https://prometheus.io/docs/prometheus/latest/querying/api/#range-queries):
    {"status": "success", "data": {"resultType": "matrix",
     "result": [{"metric": {"__name__": ..., labels}, "values": [[unix_ts, "value"], ...]}, ...]}}
or {"status": "error", "errorType": "bad_data", "error": "..."}.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from ftops.readers.base import ReadResult, rejected_rows
from ftops.readers.prometheus_text import JOB_LABELS, TABLE, exporter_samples, is_mapped
from ftops.schemas import METRIC_SAMPLES, REJECTED_RECORDS


def _refused(reason: str, raw: dict[str, Any], *, source: str, record: str) -> ReadResult:
    rejected = rejected_rows(
        pd.DataFrame([{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in raw.items()}]),
        reason, source=source, table=TABLE, record=pd.Series([record]),
    )
    return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected)


def samples_from_query_range(
    payload: dict[str, Any],
    metric: str | None = None,
    job_label: str = "job_id",
    *,
    job_id: str | None = None,
    source: str = "prometheus:query_range",
) -> ReadResult:
    """Convert one `/api/v1/query_range` response into `metric_samples`.

    The metric comes from each series' `__name__` through the exporter mapping of
    `prometheus_text` (DCGM, nvidia_gpu_exporter, ftops_ names, with unit conversion); for an
    expression query, whose series have no name, pass the canonical `metric`, taken as is.
    The job is the `job_label` label, else the workload's pod label, else `job_id`.
    Values "NaN", "+Inf", "-Inf" are accepted. An error answer gives one rejected record naming
    Prometheus' errorType and error; a series ftops cannot map is one rejected record.
    """
    if not isinstance(payload, dict):
        return _refused("response is not a JSON object", {"payload": str(payload)[:2000]},
                        source=source, record="response")
    status = payload.get("status")
    if status == "error":
        reason = f"Prometheus error {payload.get('errorType', 'unknown')}: {payload.get('error', '')}"
        return _refused(reason, {k: payload.get(k) for k in ("status", "errorType", "error")},
                        source=source, record="response")
    data = payload.get("data")
    if status != "success" or not isinstance(data, dict):
        return _refused(f"unexpected response status {status!r} or no data", {"payload": str(payload)[:2000]},
                        source=source, record="response")
    if data.get("resultType") != "matrix":
        return _refused(
            f"expected a matrix result (query_range), got {data.get('resultType')!r}",
            {"resultType": data.get("resultType")}, source=source, record="data",
        )
    result = data.get("result") or []

    # Per-series bookkeeping is a loop over series (a few hundred at most), never over samples.
    label_sets = [s.get("metric") or {} for s in result]
    points = [s.get("values") or [] for s in result]
    series = pd.DataFrame.from_records(label_sets, index=pd.RangeIndex(len(result))).astype("string")
    if "__name__" not in series:
        series["__name__"] = pd.Series(pd.NA, index=series.index, dtype="string")
    n_points = np.fromiter((len(p) for p in points), dtype="int64", count=len(points))
    native_histograms = np.fromiter((bool(s.get("histograms")) for s in result), dtype=bool, count=len(result))

    name = series["__name__"]
    if metric is not None:
        series_reason = pd.Series(pd.NA, index=series.index, dtype="string")
    else:
        series_reason = pd.Series(pd.NA, index=series.index, dtype="string").mask(
            ~is_mapped(name).fillna(False),
            "series is not a metric ftops maps (an expression query needs metric=<canonical name>)",
        )
        series_reason = series_reason.mask(
            name.isna(), "series has no __name__ (expression query): pass metric=<canonical name>"
        )
    series_reason = series_reason.mask(
        native_histograms & (n_points == 0), "native histogram series are not supported"
    )
    refused_series = series_reason.notna().to_numpy()
    rejected_series = rejected_rows(
        pd.DataFrame(
            {"metric": [json.dumps(label_sets[i]) for i in np.flatnonzero(refused_series)],
             "points": n_points[refused_series]}
        ),
        series_reason[refused_series].reset_index(drop=True), source=source, table=TABLE,
        record=pd.Series([f"result[{i}]" for i in np.flatnonzero(refused_series)], dtype="string"),
    )

    kept = np.flatnonzero(~refused_series & (n_points > 0))
    if len(kept) == 0:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_series)
    flat = list(chain.from_iterable(points[i] for i in kept))
    pairs = np.array(flat, dtype=object).reshape(-1, 2) if flat else np.empty((0, 2), dtype=object)
    owner = np.repeat(kept, n_points[kept])
    position = np.arange(len(owner)) - np.repeat(np.cumsum(n_points[kept]) - n_points[kept], n_points[kept])

    unix = pd.to_numeric(pd.Series(pairs[:, 0]), errors="coerce").to_numpy(dtype="float64")
    ts = pd.Series(pd.to_datetime(np.round(unix * 1000), unit="ms", utc=True, errors="coerce"))
    value_text = pd.Series(pairs[:, 1], dtype="string")
    value = pd.to_numeric(value_text, errors="coerce").astype("float64")
    bad_value = value.isna() & ~value_text.str.strip().str.lower().isin(["nan", "+nan", "-nan"]).fillna(False)

    labels = series.iloc[owner].reset_index(drop=True)
    record = pd.Series(
        "result[" + pd.Series(owner).astype(str) + "].values[" + pd.Series(position).astype(str) + "]",
        dtype="string",
    )
    series_json = pd.Series([json.dumps(label_sets[i]) for i in kept], index=kept).loc[owner]
    raw = series_json.reset_index(drop=True) + " @ " + pd.Series(pairs[:, 0]).astype(str) + " = " + value_text

    rejected_values = rejected_rows(
        pd.DataFrame({"sample": raw[bad_value.to_numpy()]}),
        "sample value is not a number", source=source, table=TABLE, record=record[bad_value.to_numpy()],
    )
    good = ~bad_value.to_numpy()
    job_labels = (job_label,) + tuple(label for label in JOB_LABELS if label != job_label)
    result_rows = exporter_samples(
        name.iloc[owner].reset_index(drop=True)[good], value[good], ts[good], labels[good],
        record=record[good], raw=raw[good], source=source, job_id=job_id, job_labels=job_labels,
        metric_override=metric,
    )
    rejected = [r for r in (rejected_series, rejected_values, result_rows.rejected) if not r.empty]
    return ReadResult(
        TABLE, result_rows.accepted, pd.concat(rejected, ignore_index=True) if rejected else REJECTED_RECORDS.empty()
    )
