"""Small builders for canonical frames in cost tests: only the columns a test cares about."""

from __future__ import annotations

import pandas as pd

from ftops.schemas import BILLING_LINE_ITEMS, JOBS, Table, validate

UTC = "UTC"


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def table(rows: list[dict], contract: Table) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for name in contract.column_names:
        if name not in frame:
            frame[name] = None
    return validate(frame, contract)


def jobs(*rows: dict) -> pd.DataFrame:
    defaults = {"status": "running", "pricing": "on_demand", "gpu_count": 1, "instance_type": "gpu.1x",
                "budget_category": "research", "critical": False}
    return table([{**defaults, **r} for r in rows], JOBS) if rows else JOBS.empty()


_line_ids = iter(range(10**6))


def bill(*rows: dict) -> pd.DataFrame:
    """Hourly line items; `at` is the charge period start (one hour long unless `end` is given)."""
    out = []
    for r in rows:
        r = dict(r)
        start = ts(r.pop("at"))
        end = ts(r.pop("end")) if "end" in r else start + pd.Timedelta(hours=1)
        out.append({"line_item_id": f"L{next(_line_ids)}", "charge_period_start": start, "charge_period_end": end,
                    "currency": "USD", "source": "test", **r})
    return table(out, BILLING_LINE_ITEMS) if out else BILLING_LINE_ITEMS.empty()
