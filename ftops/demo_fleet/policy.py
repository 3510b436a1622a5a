"""The demo's `ftops.yaml`: monthly budgets sized so that one category is just over its limit, and
the demo's instance prices."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ftops.demo_fleet.billing import job_cost_lines
from ftops.demo_fleet.instances import DEMO_INSTANCES
from ftops.demo_fleet.plan import BUDGET_CATEGORIES, OVERRUN_CATEGORY, plan_fleet
from ftops.demo_fleet.times import MS_PER_DAY, default_end


def budget_limits(usage: pd.DataFrame, end: pd.Timestamp, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Monthly limits: the overrun category just past its limit, the others comfortably below."""
    r = np.random.default_rng([seed, 0, 8])
    month_start_ms = int(end.tz_convert("UTC").tz_localize(None).to_period("M").start_time.value // 1_000_000)
    in_month = usage[usage["hour_ms"] >= month_start_ms]
    spend = in_month.groupby("budget_category")["cost"].sum()
    days = max(1.0, (usage["hour_ms"].max() - usage["hour_ms"].min()) / MS_PER_DAY) if len(usage) else 1.0
    daily = usage.groupby("budget_category")["cost"].sum() / days
    limits, usage_pct = {}, {}
    for cat in BUDGET_CATEGORIES:
        s = float(spend.get(cat, 0.0))
        target = 1.06 if cat == OVERRUN_CATEGORY else float(r.uniform(0.35, 0.7))
        if s > 0:
            limit = max(50.0, math.floor(s / target / 10.0) * 10.0)
        else:
            # a month that has just begun: one day's burn, so the forecast still tells the story
            limit = max(50.0, math.floor(float(daily.get(cat, 0.0)) / 10.0) * 10.0)
        limits[cat] = limit
        usage_pct[cat] = round(100.0 * s / limit, 1)
    return limits, usage_pct


# A few shards, so the UI shows both partition dimensions without many tiny runs for 40 jobs.
DEMO_SHARDS = 4


def policy_dict(limits: dict[str, float], first_day: str) -> dict[str, Any]:
    return {
        # the partitions start on the fleet's first day (not years before it)
        "partitions": {"start": first_day, "shards": DEMO_SHARDS},
        "budgets": {cat: {"limit_usd": limit, "period": "month", "mode": "dry_run"} for cat, limit in limits.items()},
        "prices": {
            name: {"on_demand_usd_per_hour": inst.on_demand_usd_per_hour, "spot_usd_per_hour": inst.spot_usd_per_hour}
            for name, inst in DEMO_INSTANCES.items()
        },
        # 8-GPU on-demand H100 nodes cost ~55 USD/h: the demo's per-job cost alert targets those, not
        # every A100 node (the spec's 10 USD/h would fire on all of them)
        "monitoring": {"cost": {"max_usd_per_hour": 30.0}},
    }


def demo_policy(seed: int = 7, n_jobs: int = 40, days: int = 7, end: pd.Timestamp | None = None) -> dict[str, Any]:
    """The `ftops.yaml` content matching `write_demo_inbox` with the same arguments (no files written)."""
    end = default_end(end)
    jobs = plan_fleet(seed, n_jobs, days, end)
    usage = job_cost_lines(jobs, seed, int(end.value // 1_000_000))
    limits, _ = budget_limits(usage, end, seed)
    return policy_dict(limits, (end - pd.Timedelta(days=days)).strftime("%Y-%m-%d"))
