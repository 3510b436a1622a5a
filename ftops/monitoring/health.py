"""`run_health`: per job, metric and time window, the rollups a person reads first."""

from __future__ import annotations

import pandas as pd

from ftops.schemas import RUN_HEALTH, validate


def run_health(samples: pd.DataFrame, window_minutes: int = 60,
               domain_accuracy_target: float | None = None) -> pd.DataFrame:
    """Roll `metric_samples` up per job, metric and window (all devices of a job together).

    With `domain_accuracy_target`, domain_accuracy rows say whether the window reached it.
    """
    if samples.empty:
        return RUN_HEALTH.empty()
    values = samples["value"].astype("float64")
    finite = values.where(values.abs() != float("inf"))
    frame = pd.DataFrame({
        "job_id": samples["job_id"].astype("string"),
        "metric": samples["metric"].astype("string"),
        "window_start": samples["ts"].dt.floor(f"{window_minutes}min"),
        "ts": samples["ts"],
        "finite": finite,
        "non_finite": finite.isna().astype("int64"),
        "step": samples["step"].astype("Float64"),
        "device": samples["device"].astype("string"),
    }).sort_values("ts", kind="stable")
    grouped = frame.groupby(["job_id", "metric", "window_start"], sort=True, observed=True)
    out = grouped.agg(
        samples=("ts", "size"),
        non_finite=("non_finite", "sum"),
        mean=("finite", "mean"),
        min=("finite", "min"),
        max=("finite", "max"),
        last=("finite", "last"),
        last_ts=("ts", "max"),
        max_step=("step", "max"),
        devices=("device", "nunique"),
    ).reset_index()
    # rows are in time order, so the first row at each window's highest step is when it was reached
    stepped = frame[frame["step"].notna()]
    top = stepped["step"] == stepped.groupby(["job_id", "metric", "window_start"], observed=True)["step"].transform("max")
    first_top = stepped[top.to_numpy(dtype=bool)].groupby(["job_id", "metric", "window_start"], observed=True)["ts"].min()
    out["max_step_ts"] = first_top.reindex(pd.MultiIndex.from_frame(out[["job_id", "metric", "window_start"]])).to_numpy()
    out["window_minutes"] = window_minutes
    accuracy = (out["metric"] == "domain_accuracy").to_numpy(dtype=bool)
    reached = pd.Series(pd.NA, index=out.index, dtype="boolean")
    if domain_accuracy_target is not None:
        reached[accuracy] = (out.loc[accuracy, "max"] >= domain_accuracy_target).to_numpy()
    out["target_reached"] = reached
    return validate(out, RUN_HEALTH)
