"""Hourly running time of jobs: the usage that is costed while no bill covers it yet.

A job's running interval is started_at → ended_at, or → `now` while it runs. It is cut at hour
boundaries so an estimate for one job-hour can later be replaced by the bill for that hour.
Nothing is costed before `earliest` (the partitions' start): no table holds those hours, and a
start time of 1970 once turned into half a million invented job-hours.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from ftops.schemas import utc_timestamp

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled", "preempted")

USAGE_COLUMNS = (
    "job_id", "hour_start", "period_start", "period_end", "hours", "gpu_count", "instances",
    "instance_type", "pricing", "budget_category", "cloud", "region",
)


def running_intervals(jobs: pd.DataFrame, now: pd.Timestamp, earliest: pd.Timestamp | None = None) -> pd.DataFrame:
    """job_id, started_at, run_end for every job that has run (run_end = ended_at, or now while running).

    A job in a terminal status without ended_at is left out: when it stopped is unknown, and
    costing it up to `now` would invent hours; its bills still count when they arrive. With
    `earliest`, intervals start no earlier than it (a job that ended before it has none).
    """
    now = utc_timestamp(now)
    status = jobs["status"].astype("string")
    started = jobs["started_at"]
    if earliest is not None:
        started = started.clip(lower=utc_timestamp(earliest))
    ended = jobs["ended_at"]
    terminal = status.isin(TERMINAL_STATUSES).fillna(False).astype(bool)
    pending = status.eq("pending").fillna(False).astype(bool)
    run_end = ended.fillna(now).clip(upper=now)
    known = started.notna() & ~pending & (ended.notna() | ~terminal) & (started < run_end)
    return pd.DataFrame(
        {"job_id": jobs["job_id"][known].astype("string"), "started_at": started[known], "run_end": run_end[known]}
    ).reset_index(drop=True).astype({"started_at": "datetime64[ns, UTC]", "run_end": "datetime64[ns, UTC]"})


def job_hours(
    jobs: pd.DataFrame, now: pd.Timestamp, gpus_per_instance: Mapping[str, int] | None = None,
    earliest: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per job and clock hour it ran: the part of the hour it ran (period_start/end, hours).

    `instances` is how many instances the job occupies: ceil(gpu_count / GPUs per instance) when
    `gpus_per_instance` knows the instance type (`ftops.optimize.catalog.gpus_per_instance` of the
    instance catalogue), else 1 (the catalogue price is per instance-hour).
    No hour before `earliest` is produced.
    """
    intervals = running_intervals(jobs, now, earliest)
    spec = jobs.drop_duplicates("job_id").set_index("job_id")
    if intervals.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in USAGE_COLUMNS}).pipe(_typed)
    # naive UTC datetime64 arrays: numpy arithmetic without per-row Timestamp objects
    start = intervals["started_at"].dt.tz_localize(None).to_numpy()
    end = intervals["run_end"].dt.tz_localize(None).to_numpy()
    first_hour = start.astype("datetime64[h]").astype("datetime64[ns]")
    n_hours = np.ceil((end - first_hour) / np.timedelta64(1, "h")).astype("int64")
    row = np.repeat(np.arange(len(intervals)), n_hours)
    offset = np.arange(len(row)) - np.repeat(np.cumsum(n_hours) - n_hours, n_hours)
    hour_start = first_hour[row] + offset * np.timedelta64(1, "h")
    period_start = np.maximum(hour_start, start[row])
    period_end = np.minimum(hour_start + np.timedelta64(1, "h"), end[row])
    job_id = intervals["job_id"].to_numpy()[row]

    def attr(name: str) -> np.ndarray:
        if name not in spec.columns:
            return np.full(len(row), pd.NA, dtype=object)
        return spec[name].reindex(job_id).to_numpy()

    gpu_count = pd.to_numeric(pd.Series(attr("gpu_count")), errors="coerce")
    instance_type = pd.Series(attr("instance_type"), dtype="string")
    per_instance = instance_type.map(dict(gpus_per_instance or {})).astype("float64")
    instances = np.ceil(gpu_count.fillna(1) / per_instance).where(per_instance.notna() & gpu_count.notna(), 1.0)
    out = pd.DataFrame(
        {
            "job_id": job_id,
            "hour_start": hour_start,
            "period_start": period_start,
            "period_end": period_end,
            "hours": (period_end - period_start) / np.timedelta64(1, "h"),
            "gpu_count": gpu_count,
            "instances": instances.clip(lower=1),
            "instance_type": instance_type,
            "pricing": attr("pricing"),
            "budget_category": attr("budget_category"),
            "cloud": attr("cloud"),
            "region": attr("region"),  # the catalogue price is per cloud, region and instance type
        }
    )
    return _typed(out[out["hours"] > 0].reset_index(drop=True))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    ts = {c: "datetime64[ns, UTC]" for c in ("hour_start", "period_start", "period_end")}
    strings = {c: "string" for c in ("job_id", "instance_type", "pricing", "budget_category", "cloud", "region")}
    floats = {c: "float64" for c in ("hours", "gpu_count", "instances")}
    for column, dtype in ts.items():
        values = frame[column]
        if not isinstance(values.dtype, pd.DatetimeTZDtype):
            values = pd.to_datetime(values, utc=True)
        frame[column] = values.astype(dtype)
    return frame.astype({**strings, **floats})
