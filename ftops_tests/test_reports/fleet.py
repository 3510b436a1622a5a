"""A small fleet for report tests: jobs of three techniques, a month of hourly costs, budgets, bill tags."""

from __future__ import annotations

import json

import pandas as pd

from ftops.policy import BudgetPolicy
from ftops.schemas import BILLING_LINE_ITEMS, BUDGET_STATUS, JOB_COSTS, JOBS
from ftops_tests.test_costs.frames import table, ts

# November 2026, with the last week of October before it (the previous period of the first week)
PERIOD_START, PERIOD_END = ts("2026-11-01"), ts("2026-12-01")
AS_OF = ts("2026-11-20T12:00")
BUDGETS = {"research": BudgetPolicy(limit_usd=20_000.0), "product": BudgetPolicy(limit_usd=5_000.0, mode="enforce"),
           "weekly-ops": BudgetPolicy(limit_usd=500.0, period="week")}

# job_id, technique, domain, budget, team, $/h, start, end, samples (dataset x epochs), seq_len
_JOBS = [
    ("j-lora-1", "lora", "code", "research", "search", 12.0, "2026-10-25", "2026-11-10", 2_000_000, 2048),
    ("j-lora-2", "lora", "legal", "product", "assist", 8.0, "2026-11-05", "2026-11-18", 500_000, 1024),
    ("j-full-1", "full", "code", "research", "search", 40.0, "2026-11-12", "2026-11-20T12:00", 1_000_000, 4096),
    ("j-dpo-1", "dpo", "chat", "product", "assist", 6.0, "2026-10-28", "2026-11-03", 100_000, 1024),
]


def jobs() -> pd.DataFrame:
    rows = [{"job_id": j, "name": f"{j} run", "technique": t, "domain": d, "budget_category": b, "base_model": "llama-8b",
             "model_params_b": 8.0, "gpu_type": "H100", "gpu_count": 8, "instance_type": "p5.48xlarge",
             "pricing": "on_demand", "cloud": "aws", "region": "us-east-1",
             "status": "succeeded" if ts(end) < AS_OF else "running", "dataset_samples": samples, "epochs": 1.0,
             "seq_len": seq, "total_steps": 1000, "started_at": ts(start), "ended_at": ts(end) if ts(end) < AS_OF else None}
            for j, t, d, b, _team, _rate, start, end, samples, seq in _JOBS]
    return table(rows, JOBS)


def costs_and_bills() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hourly billed rows (tagged with team), plus an unattributed line per day and one held line."""
    cost_rows, bill_rows = [], []
    for j, _t, _d, budget, team, rate, start, end, _s, _q in _JOBS:
        hours = pd.date_range(ts(start), min(ts(end), AS_OF), freq="h", inclusive="left")
        ids = [f"{j}-{i}" for i in range(len(hours))]
        cost_rows.append(pd.DataFrame({"job_id": j, "budget_category": budget, "period_start": hours,
                                       "period_end": hours + pd.Timedelta(hours=1), "cost_usd": rate,
                                       "estimated": False, "attribution": "tag", "line_item_id": ids,
                                       "provider": "AWS", "suspicious": False}))
        bill_rows.append(pd.DataFrame({"line_item_id": ids, "charge_period_start": hours, "billed_cost": rate,
                                       "currency": "USD", "source": "test", "job_id": j,
                                       "tags": json.dumps({"job_id": j, "team": team})}))
    days = pd.date_range(ts("2026-10-25"), AS_OF.floor("D"), freq="D")
    cost_rows.append(pd.DataFrame({"job_id": None, "budget_category": None, "period_start": days,
                                   "period_end": days + pd.Timedelta(hours=1), "cost_usd": 10.0, "estimated": False,
                                   "attribution": "unattributed", "provider": "AWS", "service_name": "S3",
                                   "resource_id": "bucket-1", "suspicious": False}))
    cost_rows.append(pd.DataFrame({"job_id": ["j-full-1"], "budget_category": ["research"],
                                   "period_start": [ts("2026-11-15")], "cost_usd": [90_000.0], "estimated": [False],
                                   "attribution": ["tag"], "suspicious": [True]}))
    # an estimate for the running job's last hours, no bill yet
    cost_rows.append(pd.DataFrame({"job_id": ["j-full-1"], "budget_category": ["research"],
                                   "period_start": [AS_OF - pd.Timedelta(hours=1)], "cost_usd": [40.0],
                                   "estimated": [True], "attribution": ["estimate"], "running_hours": [1.0],
                                   "suspicious": [False]}))
    costs = pd.concat(cost_rows, ignore_index=True)
    bills = pd.concat(bill_rows, ignore_index=True)
    return table(costs.to_dict("records"), JOB_COSTS), table(bills.to_dict("records"), BILLING_LINE_ITEMS)


def budget_status_rows() -> pd.DataFrame:
    """budget_status as the lead's asset writes it for the current month (a forecast above spend)."""
    return table([{"budget_category": "research", "period": "month", "period_key": "2026-11",
                   "period_start": PERIOD_START, "period_end": PERIOD_END, "current": True, "as_of": AS_OF,
                   "spend_usd": 1000.0, "billed_usd": 1000.0, "estimated_usd": 0.0, "suspicious_usd": 0.0,
                   "burn_rate_usd_per_hour": 40.0, "forecast_period_end_usd": 1500.0, "forecast_next_24h_usd": 960.0,
                   "thresholds_crossed": "[]", "ladder_levels_reached": "[]", "running_jobs": 1}], BUDGET_STATUS)
