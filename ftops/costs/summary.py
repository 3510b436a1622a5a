"""Per-job cost figures: total, billed, estimated, per hour, per sample, per token.

Samples processed: a succeeded job has seen dataset_samples × epochs; a running or stopped job
that share of it given by its progress (steps done / total steps). Only when the dataset size
is unknown are samples counted from steps × micro-batch × grad_accum × gpu_count, which assumes
data parallelism with batch_size per device. Tokens are samples × seq_len: an upper bound,
since padding is counted as if it were text.
"""

from __future__ import annotations

import pandas as pd

from ftops.costs.progress import progress_fraction
from ftops.costs.usage import running_intervals

HOUR = pd.Timedelta(hours=1)


def _positive(values: pd.Series) -> pd.Series:
    values = pd.to_numeric(values, errors="coerce").astype("float64")
    return values.where(values > 0)


def job_cost_summary(
    job_costs: pd.DataFrame,
    jobs: pd.DataFrame,
    progress: pd.DataFrame | None = None,
    now: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per job (registry jobs and jobs known only from bill tags) with its cost figures.

    progress: optional job_id, steps_done (see `progress_from_metrics`); now: the time running
    jobs are measured to (default: the latest period end in job_costs).
    """
    # lines held as suspicious would top the cost drivers with amounts nobody has confirmed
    held = job_costs["suspicious"].astype(bool) if "suspicious" in job_costs else False
    attributed = job_costs[job_costs["job_id"].notna() & ~held]
    cost = attributed["cost_usd"]
    estimated = attributed["estimated"].astype(bool)
    by_job = pd.DataFrame(
        {
            "job_id": attributed["job_id"],
            "billed": cost.where(~estimated, 0.0),
            "estimate": cost.where(estimated, 0.0),
            "unpriced_hours": attributed["running_hours"].where(estimated & cost.isna(), 0.0),
        }
    ).groupby("job_id").sum(min_count=1)

    registry = jobs.drop_duplicates("job_id").set_index("job_id")
    registry.index = registry.index.astype("string")
    job_ids = registry.index.union(by_job.index.astype("string"))
    registry = registry.reindex(job_ids)
    by_job = by_job.reindex(job_ids)

    if now is None:
        latest = job_costs["period_end"].max() if not job_costs.empty else pd.NaT
        now = latest if pd.notna(latest) else pd.Timestamp.now(tz="UTC")
    intervals = running_intervals(jobs, now).set_index("job_id")
    running_hours = ((intervals["run_end"] - intervals["started_at"]) / HOUR).groupby(level=0).sum()
    running_hours = running_hours.reindex(job_ids)

    billed = by_job["billed"].fillna(0.0)
    estimate = by_job["estimate"].fillna(0.0)
    total = billed + estimate

    fraction = progress_fraction(jobs, progress).reindex(job_ids)
    planned_samples = _positive(registry["dataset_samples"]) * _positive(registry["epochs"])
    samples = planned_samples * fraction
    if progress is not None and not progress.empty:
        steps = progress.groupby("job_id")["steps_done"].max().astype("float64")
        steps.index = steps.index.astype("string")
        per_step = (
            _positive(registry["batch_size"])
            * _positive(registry["grad_accum"]).fillna(1.0)
            * _positive(registry["gpu_count"]).fillna(1.0)
        )
        samples = samples.fillna(steps.reindex(job_ids) * per_step)
    samples = samples.where(samples > 0)
    tokens = samples * _positive(registry["seq_len"])

    return pd.DataFrame(
        {
            "job_id": job_ids,
            "budget_category": registry["budget_category"].astype("string").to_numpy(),
            "status": registry["status"].astype("string").to_numpy(),
            "total_cost_usd": total.to_numpy(),
            "billed_cost_usd": billed.to_numpy(),
            "estimated_cost_usd": estimate.to_numpy(),
            "unpriced_hours": by_job["unpriced_hours"].fillna(0.0).to_numpy(),
            "running_hours": running_hours.to_numpy(),
            "cost_per_hour_usd": (total / running_hours.where(running_hours > 0)).to_numpy(),
            "progress": fraction.to_numpy(),
            "samples_processed": samples.to_numpy(),
            "cost_per_sample_usd": (total / samples).to_numpy(),
            "tokens_processed": tokens.to_numpy(),
            "cost_per_token_usd": (total / tokens).to_numpy(),
        }
    ).astype({"job_id": "string", "running_hours": "float64", "progress": "float64"})

