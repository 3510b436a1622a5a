"""How far each job has got: steps done over total steps.

Progress feeds the forecast (a job near its end will not cost a whole period more) and cost per
sample of running jobs. Steps done come from metric samples (the highest logged step) or from
any frame with job_id and steps_done.
"""

from __future__ import annotations

import pandas as pd


def progress_from_metrics(metric_samples: pd.DataFrame) -> pd.DataFrame:
    """job_id, steps_done: the highest step each job has logged in `metric_samples`."""
    steps = metric_samples.dropna(subset=["step"])
    if steps.empty:
        return pd.DataFrame({"job_id": pd.Series(dtype="string"), "steps_done": pd.Series(dtype="Int64")})
    done = steps.groupby("job_id", observed=True)["step"].max()
    return pd.DataFrame({"job_id": done.index.astype("string"), "steps_done": done.astype("Int64").to_numpy()})


def progress_fraction(jobs: pd.DataFrame, progress: pd.DataFrame | None) -> pd.Series:
    """Per job_id: steps_done / total_steps in [0, 1]; null where either is unknown.

    A succeeded job is complete whatever its last logged step was (logging stops before the end).
    """
    registry = jobs.drop_duplicates("job_id").set_index("job_id")
    fraction = pd.Series(float("nan"), index=registry.index.astype("string"), dtype="float64")
    if progress is not None and not progress.empty:
        done = progress.groupby("job_id")["steps_done"].max().astype("float64")
        total = pd.to_numeric(registry["total_steps"], errors="coerce").astype("float64")
        total = total.where(total > 0)
        fraction = (done.reindex(registry.index) / total).clip(0.0, 1.0)
        fraction.index = fraction.index.astype("string")
    succeeded = registry["status"].astype("string").eq("succeeded").fillna(False).to_numpy()
    fraction[succeeded] = 1.0
    return fraction
