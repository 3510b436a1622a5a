"""`budget_status`: per budget category and period, spend against the limit and where it is heading.

The period in progress is marked `current`; every earlier period with cost rows keeps its own row
(final spend, thresholds it crossed), so reports show trends and last month's overrun stays visible.

Spend is billed + estimated cost of the rows whose period starts inside the budget period.
Burn rate is the spend of the last 24 hours (or since the period began, if that is shorter) per
hour. The forecast extrapolates only what is still running:
- a finished job costs nothing more, even though its last hours are in the burn window;
- a running job goes on at its own recent rate (its spend in the window over the hours it ran in
  it) but, when its progress is known, for no more than its remaining cost:
  cost so far × (1 − progress) / progress;
- spend of no registered job (unattributed lines, unknown jobs) goes on at its recent rate;
- credits lower spend but are not extrapolated: a one-off refund says nothing about the hours ahead.

Lines held as suspicious in `job_costs` (beyond the sanity bound, not confirmed) are shown as
`suspicious_usd` and left out of everything else here: spend, usage, forecasts, thresholds and
ladder levels, so an implausible line cannot switch, shrink or terminate jobs on its own.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ftops.costs.periods import PeriodWindow, period_window
from ftops.costs.progress import progress_fraction
from ftops.costs.usage import TERMINAL_STATUSES
from ftops.policy import BudgetPolicy, LadderPolicy
from ftops.schemas import BUDGET_STATUS, utc_timestamp, validate

HOUR = pd.Timedelta(hours=1)
BURN_WINDOW = pd.Timedelta(hours=24)
DEFAULT_PERIOD = "month"

def _usage_pct(spend: float, limit: float | None) -> float | None:
    if limit is None:
        return None
    if limit <= 0:
        # a zero budget allows nothing: any spend is over every threshold
        return float("inf") if spend > 0 else 0.0
    return spend / limit * 100


def ladder_levels(ladder: LadderPolicy) -> dict[str, float]:
    """Enabled ladder steps and their level (pct), lowest first."""
    steps = {
        "switch_to_spot": ladder.switch_to_spot_pct,
        "reduce_batch_size": ladder.halve_batch_pct,
        "terminate": ladder.terminate_non_critical_pct,
    }
    return dict(sorted(((a, float(p)) for a, p in steps.items() if p is not None), key=lambda kv: kv[1]))


class _Fleet:
    """What the forecast needs to know about jobs, looked up by job_id."""

    def __init__(self, jobs: pd.DataFrame, costs: pd.DataFrame, progress: pd.DataFrame | None):
        registry = jobs.drop_duplicates("job_id").set_index("job_id")
        registry.index = registry.index.astype("string")
        self.status = registry["status"].astype("string")
        self.started_at = registry["started_at"]
        self.category = registry["budget_category"].astype("string")
        self.fraction = progress_fraction(jobs, progress)
        attributed = costs[costs["job_id"].notna()]
        self.cost_so_far = attributed.groupby("job_id")["cost_usd"].sum()

    def extrapolate(self, window_rows: pd.DataFrame, window_start: pd.Timestamp, now: pd.Timestamp,
                    hours_ahead: float) -> float:
        """Spend expected over the next `hours_ahead` hours from what is still running."""
        window_hours = (now - window_start) / HOUR
        if window_hours <= 0 or hours_ahead <= 0:
            return 0.0
        rows = window_rows[window_rows["cost_usd"] > 0]
        job = rows["job_id"].astype("string")
        registered = job.isin(self.status.index).fillna(False).astype(bool)
        other_rate = rows.loc[~registered.to_numpy(), "cost_usd"].sum() / window_hours

        per_job = rows[registered.to_numpy()].groupby("job_id")["cost_usd"].sum()
        status = self.status.reindex(per_job.index)
        # pending jobs have not started; terminal ones have stopped: neither goes on costing
        running = ~status.isin(TERMINAL_STATUSES + ("pending",)).fillna(False).astype(bool)
        per_job = per_job[running]
        started = self.started_at.reindex(per_job.index)
        ran_from = started.where(started.notna() & (started > window_start), window_start)
        hours_ran = ((now - ran_from) / HOUR).clip(lower=1 / 60)
        rate = per_job / hours_ran
        ahead = rate * hours_ahead
        p = self.fraction.reindex(per_job.index)
        remaining = self.cost_so_far.reindex(per_job.index).fillna(0.0) * (1 - p) / p.where(p > 0)
        ahead = ahead.where(remaining.isna(), np.minimum(ahead, remaining.clip(lower=0.0)))
        return float(ahead.sum() + other_rate * hours_ahead)


def _category_names(costs: pd.DataFrame, budgets: dict[str, BudgetPolicy]) -> list[str | None]:
    spent = costs["budget_category"].astype("string")
    extra = sorted(set(spent.dropna()) - set(budgets))
    names: list[str | None] = [*budgets, *extra]
    if spent.isna().any():
        names.append(None)
    return names


def _windows(period_starts: pd.Series, period: str, now: pd.Timestamp) -> list[PeriodWindow]:
    """The current period, then every earlier period with a cost row in it, newest first."""
    current = period_window(now, period)
    past = period_starts[period_starts < current.start].drop_duplicates()
    earlier = {w.key: w for w in (period_window(ts, period) for ts in past)}
    return [current, *sorted(earlier.values(), key=lambda w: w.start, reverse=True)]


def budget_status(
    job_cost_rows: pd.DataFrame,
    jobs: pd.DataFrame,
    budgets: dict[str, BudgetPolicy],
    now: pd.Timestamp,
    progress: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per budget category and period, `current` marking the period that contains `now`.

    Every configured budget has a current row; a category with spend and no budget gets rows too
    (limit null); spend with no category at all is a null category. Earlier periods keep their own
    row for as long as they have cost rows, so last month's overrun is still there on the 1st: a
    closed period's spend is final, its forecast is that spend and nothing runs in it any more.

    job_cost_rows: `job_costs`; progress: optional job_id, steps_done for the forecast.
    """
    now = utc_timestamp(now)
    held = job_cost_rows["suspicious"].astype(bool).to_numpy()
    costs = job_cost_rows[~held]
    fleet = _Fleet(jobs, costs, progress)
    category = job_cost_rows["budget_category"].astype("string")
    in_spend = pd.Series(~held, index=job_cost_rows.index)
    records = []
    for name in _category_names(job_cost_rows, budgets):
        policy = budgets.get(name) if name is not None else None
        mine = category.isna() if name is None else category.eq(name).fillna(False)
        windows = _windows(job_cost_rows.loc[mine.to_numpy(), "period_start"],
                           policy.period if policy else DEFAULT_PERIOD, now)
        for window in windows:
            in_window = mine & (job_cost_rows["period_start"] >= window.start) & (
                job_cost_rows["period_start"] < window.end)
            if policy is None and not in_window.any():
                continue  # no budget and nothing spent: no row
            records.append(_period_row(name, policy, window, now, job_cost_rows, in_window, in_spend, fleet))
    if not records:
        return BUDGET_STATUS.empty()
    return validate(pd.DataFrame.from_records(records), BUDGET_STATUS)


def _period_row(name: str | None, policy: BudgetPolicy | None, window: PeriodWindow, now: pd.Timestamp,
                job_cost_rows: pd.DataFrame, in_window: pd.Series, in_spend: pd.Series, fleet: _Fleet) -> dict:
    current = window.start <= now < window.end
    rows = job_cost_rows[(in_window & in_spend).to_numpy()]
    suspicious = float(job_cost_rows.loc[(in_window & ~in_spend).to_numpy(), "cost_usd"].sum())
    estimated = rows["estimated"].astype(bool)
    spend = float(rows["cost_usd"].sum())
    if current:
        burn_start = max(now - BURN_WINDOW, window.start)
        burn_hours = (now - burn_start) / HOUR
        burn_rows = rows[(rows["period_start"] >= burn_start) & (rows["period_start"] < now)]
        burn = float(burn_rows["cost_usd"].sum() / burn_hours) if burn_hours > 0 else 0.0
        hours_left = max((window.end - now) / HOUR, 0.0)
        forecast = spend + fleet.extrapolate(burn_rows, burn_start, now, hours_left)
        next_24h = fleet.extrapolate(burn_rows, burn_start, now, BURN_WINDOW / HOUR)
        running = fleet.status.eq("running").fillna(False) & (
            fleet.category.isna() if name is None else fleet.category.eq(name).fillna(False)
        )
        running_jobs = int(running.sum())
    else:  # a closed period: its spend is final, its burn rate the average over the period
        burn = spend / ((window.end - window.start) / HOUR)
        forecast, next_24h, running_jobs = spend, 0.0, 0

    limit = policy.limit_usd if policy else None
    usage = _usage_pct(spend, limit)
    thresholds = sorted(policy.alert_thresholds_pct) if policy else []
    crossed = [t for t in thresholds if usage is not None and usage >= t]
    levels = sorted(ladder_levels(policy.ladder).values()) if policy else []
    reached = [lvl for lvl in levels if usage is not None and usage >= lvl]
    return {
        "budget_category": name,
        "period": window.period,
        "period_key": window.key,
        "period_start": window.start,
        "period_end": window.end,
        "current": current,
        "as_of": now,
        "limit_usd": limit,
        "mode": policy.mode if policy else None,
        "spend_usd": spend,
        "billed_usd": float(rows.loc[~estimated.to_numpy(), "cost_usd"].sum()),
        "estimated_usd": float(rows.loc[estimated.to_numpy(), "cost_usd"].sum()),
        "suspicious_usd": suspicious,
        "usage_pct": usage,
        "remaining_usd": limit - spend if limit is not None else None,
        "burn_rate_usd_per_hour": burn,
        "forecast_period_end_usd": forecast,
        "forecast_usage_pct": _usage_pct(forecast, limit),
        "forecast_next_24h_usd": next_24h,
        "thresholds_crossed": json.dumps(crossed),
        "highest_threshold_pct": crossed[-1] if crossed else None,
        "ladder_levels_reached": json.dumps(reached),
        "highest_ladder_pct": reached[-1] if reached else None,
        "running_jobs": running_jobs,
    }


def current_periods(status: pd.DataFrame) -> pd.DataFrame:
    """The rows of the period in progress (tables written before `current` existed held only those)."""
    if "current" not in status.columns:
        return status
    return status[status["current"].astype(bool).to_numpy()]
