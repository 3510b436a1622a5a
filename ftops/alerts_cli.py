"""`ftops alerts`: the alerts in the warehouse, worst first, each with its job page.

Reads the `alerts` table (FTOPS_WAREHOUSE) and lists firing before resolved, then critical > warning >
info, then the longest firing first; `--firing` keeps what is firing now. Each alert names its job's
page (a file:// URL under FTOPS_REPORTS/jobs/) when the page has been built. Exit 0 with the list (an
empty one included); 2 with one line on stderr when the warehouse cannot be read or holds no alerts
table yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from ftops.json_output import json_value

_PROG = "ftops alerts"
_FIELDS = ["alert_id", "job_id", "rule", "category", "severity", "state", "device", "started_at", "last_seen_at",
           "resolved_at", "value", "threshold", "message"]
_MESSAGE_WIDTH = 70


def add_alerts_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `alerts` subcommand on an argparse subparsers object; `func` runs it."""
    parser = subparsers.add_parser(
        "alerts", help="alerts from the warehouse, worst first, with each job's page",
        description="List the alerts in the warehouse (FTOPS_WAREHOUSE): firing before resolved, then by "
                    "severity, then the longest firing first, each with its job page (FTOPS_REPORTS/jobs/). "
                    "Exit 2 with one line on stderr when the warehouse cannot be read.")
    parser.add_argument("--firing", action="store_true", help="only the alerts firing now")
    parser.add_argument("--json", action="store_true", help="a JSON list of alerts instead of a table")
    parser.set_defaults(func=run_alerts)
    return parser


def _one_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return (lines[0] if lines else "")[:400]


def page_url(reports: str, job_id: str) -> str | None:
    """The file:// URL of a job's page, or None when it has not been built."""
    from pathlib import Path

    from ftops.reports.job_page import JOBS_FOLDER, job_page_name

    path = Path(reports, JOBS_FOLDER, job_page_name(job_id))
    return path.resolve().as_uri() if path.is_file() else None


def alert_records(alerts: pd.DataFrame, reports: str, firing_only: bool = False) -> list[dict[str, Any]]:
    """The alerts as JSON-ready dicts, worst first, each with `page` (file:// URL or None)."""
    from ftops.monitoring.alerts import worst_first

    if alerts.empty:
        return []
    if firing_only:
        alerts = alerts[alerts["state"] == "firing"]
    ordered = worst_first(alerts)
    pages = {j: page_url(reports, j) for j in ordered["job_id"].astype(str).unique()}
    records = []
    for row in ordered[[c for c in _FIELDS if c in ordered]].to_dict("records"):
        record = {k: json_value(v) for k, v in row.items()}
        record["page"] = pages[str(row["job_id"])]
        records.append(record)
    return records


def _table(records: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    def when(value: str | None) -> str:
        return "-" if not value else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")

    def message(text: str | None) -> str:
        text = text or ""
        return text if len(text) <= _MESSAGE_WIDTH else text[:_MESSAGE_WIDTH - 1] + "…"

    rows = [[r["severity"], r["state"], r["job_id"], r["rule"], r.get("device") or "-", when(r["started_at"]),
             when(r["last_seen_at"]), message(r["message"]), r["page"] or "(no page yet)"] for r in records]
    return tabulate(rows, headers=["severity", "state", "job", "rule", "device", "fired (UTC)", "last seen",
                                   "message", "job page"], disable_numparse=True)


def run_alerts(args: argparse.Namespace) -> int:
    import dagster as dg

    from ftops.defs.io_manager import read_table
    from ftops.definitions import reports_folder, settings_from_env
    from ftops.schemas import ALERTS

    settings = settings_from_env()
    try:
        alerts = read_table(settings.warehouse, dg.AssetKey(ALERTS.name))
    # a corrupt Parquet file (ArrowInvalid is a ValueError), an unknown fsspec scheme, a missing driver
    except (OSError, ValueError, ImportError) as exc:
        print(f"{_PROG}: cannot read the alerts in {settings.warehouse}: {_one_line(exc)}", file=sys.stderr)
        return 2
    if alerts is None:
        print(f"{_PROG}: no alerts table in {settings.warehouse} yet; materialise it (ftops demo, or the "
              "monitoring group in dagster dev)", file=sys.stderr)
        return 2
    records = alert_records(alerts, reports_folder(settings), firing_only=args.firing)
    if args.json:
        print(json.dumps(records, indent=2, allow_nan=False))
        return 0
    if not records:
        print("no alert is firing" if args.firing else "no alerts")
        return 0
    print(_table(records))
    firing = sum(r["state"] == "firing" for r in records)
    print(f"\n{firing} firing, {len(records) - firing} resolved")
    return 0
