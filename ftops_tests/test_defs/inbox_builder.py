"""A small, realistic inbox written by tests: two jobs, a metric export that spans midnight, a FOCUS bill."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

FOCUS_HEADER = (
    "BilledCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,EffectiveCost,ListCost,ProviderName,"
    "ServiceName,ResourceId,SkuId,PricingCategory,ConsumedQuantity,ConsumedUnit,RegionId,ChargeCategory,"
    "ChargeDescription,Tags"
)


def write_jobs(inbox: Path) -> Path:
    path = inbox / "jobs" / "jobs.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "job_id,name,technique,domain,base_model,gpu_type,gpu_count,instance_type,pricing,budget_category,"
        "critical,status,submitted_at,started_at,total_steps\n"
        "ft-001,medqa-lora,lora,medical,llama-3-8b,A100-80GB,8,p4d.24xlarge,spot,research,false,running,"
        "2026-11-20T21:00:00Z,2026-11-20T22:00:00Z,2000\n"
        "ft-002,legal-full,full,legal,mistral-7b,H100-80GB,8,p5.48xlarge,on_demand,product,true,succeeded,"
        "2026-11-20T20:00:00Z,2026-11-20T20:30:00Z,1000\n"
    )
    return path


def write_metrics(inbox: Path, job_id: str = "ft-001", rows: int = 240, bad_lines: int = 1) -> Path:
    """A long JSONL export: loss, lr and GPU util every minute from 22:00 to 02:00 (two days)."""
    path = inbox / "metrics" / job_id / "export.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = pd.date_range("2026-11-20T22:00:00Z", periods=rows, freq="min")
    steps = np.arange(rows) * 10
    lines = []
    for metric, values in (
        ("training_loss", 2.2 * np.exp(-steps / 2000) + 0.3),
        ("learning_rate", np.full(rows, 2e-4)),
        ("gpu_utilization_pct", np.full(rows, 88.0)),
    ):
        lines += [
            json.dumps({"ts": t.isoformat().replace("+00:00", "Z"), "job_id": job_id, "metric": metric,
                        "value": float(v), "step": int(s), "device": "0" if metric.startswith("gpu") else None,
                        "host": "node-a", "source": "agent"})
            for t, v, s in zip(ts, values, steps)
        ]
    lines += ['{"ts": "2026-11-20T23:00:00Z", "job_id": ' for _ in range(bad_lines)]  # truncated lines
    path.write_text("\n".join(lines) + "\n")
    return path


def write_bill(inbox: Path, name: str = "focus-2026-11-20.csv", hours: int = 4) -> Path:
    path = inbox / "billing" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [FOCUS_HEADER]
    for h in range(hours):
        start = pd.Timestamp("2026-11-20T22:00:00Z") + pd.Timedelta(hours=h)
        end = start + pd.Timedelta(hours=1)
        tags = json.dumps({"job_id": "ft-001", "budget_category": "research"}).replace('"', '""')
        rows.append(
            f'12.5,USD,{start:%Y-%m-%d %H:%M:%S},{end:%Y-%m-%d %H:%M:%S},12.5,32.77,AWS,Amazon Elastic Compute Cloud,'
            f'i-0abc{h},SKU1,Dynamic,1,Hrs,us-east-1,Usage,p4d.24xlarge spot usage,"{tags}"'
        )
    path.write_text("\n".join(rows) + "\n")
    return path


def touch_later(path: Path, seconds: int = 60) -> None:
    """Give a rewritten file a later modification time, as a real rewrite would."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 10**9))
