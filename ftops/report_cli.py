"""`ftops report`: write the cost report of a month or ISO week from the warehouse, and print its path.

`--period 2026-11` (a month) or `--period 2026-W47` (an ISO week); default: the month in progress by
the clock. The report is computed from the stored tables (job_costs, job_registry, budget_status,
billing_line_items, the optimisation tables) as the `cost_report` asset computes it, and written to
FTOPS_REPORTS/cost/<period>/. When the warehouse holds no job_costs yet, the report built earlier is
pointed to if there is one. `--open` opens it in the default browser. Exit 2 with one line on stderr
when the period cannot be read or there is nothing to report from.
"""

from __future__ import annotations

import argparse
import sys
import webbrowser
from pathlib import Path
from typing import Any

import pandas as pd

from ftops.reports.cost_report import INDEX

_TABLES = ("job_costs", "job_registry", "budget_status", "billing_line_items", "instance_recommendations",
           "spot_plans", "benchmark_recommendations")


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `report` subcommand on an argparse subparsers object; `func` runs it."""
    parser = subparsers.add_parser(
        "report", help="write the cost report of a month or ISO week and print its path",
        description="Write the cost report (HTML page, budget burn-down page, Parquet tables) of a period from "
                    "the warehouse into FTOPS_REPORTS/cost/<period>/ and print the page's path.",
    )
    parser.add_argument("--period", metavar="KEY", help="2026-11 (month) or 2026-W47 (ISO week); default: this month")
    parser.add_argument("--as-of", metavar="TS", help="evaluate as of this ISO-8601 time (UTC; default: now)")
    parser.add_argument("--open", action="store_true", help="open the report in the default browser")
    parser.set_defaults(func=run_report)
    return parser


def _billing(warehouse: str, window) -> pd.DataFrame | None:
    """The bill lines of the period's days (daily partitions)."""
    from ftops.defs.io_manager import read_table

    import dagster as dg

    days = pd.date_range(window.start, window.end, freq="D", inclusive="left")
    frames = [read_table(warehouse, dg.AssetKey("billing_line_items"), f"{d:%Y-%m-%d}") for d in days]
    frames = [f for f in frames if f is not None and not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else None


def write_period_report(warehouse: str, reports: str, config: str | None, period: str,
                        as_of: pd.Timestamp) -> Path | None:
    """Write the report of `period` from the tables in `warehouse`; None when job_costs was never built."""
    import dagster as dg

    from ftops.defs.io_manager import read_table
    from ftops.policy import load_policy
    from ftops.reports.cost_figures import cost_report_tables
    from ftops.reports.cost_report import write_cost_report
    from ftops.reports.periods import parse_period
    from ftops.schemas import TABLES, validate

    window = parse_period(period)
    stored = {name: read_table(warehouse, dg.AssetKey(name)) for name in _TABLES if name != "billing_line_items"}
    if stored["job_costs"] is None:
        return None
    stored["billing_line_items"] = _billing(warehouse, window)

    def table(name: str) -> pd.DataFrame | None:
        frame = stored[name]
        return None if frame is None or frame.empty else validate(frame, TABLES[name])

    jobs = table("job_registry")
    figures = cost_report_tables(
        window, table("job_costs") if not stored["job_costs"].empty else TABLES["job_costs"].empty(),
        jobs if jobs is not None else TABLES["job_registry"].empty(), as_of,
        budget_status=table("budget_status"), budgets=load_policy(config).budgets,
        line_items=table("billing_line_items"), instance_recommendations=table("instance_recommendations"),
        spot_plans=table("spot_plans"), benchmark_recommendations=table("benchmark_recommendations"),
    )
    return write_cost_report(figures, Path(reports) / "cost" / window.key).index


def run_report(args: argparse.Namespace) -> int:
    from ftops.costs.periods import period_window
    from ftops.definitions import reports_folder, settings_from_env  # lazily: it imports Dagster
    from ftops.reports.periods import parse_period
    from ftops.schemas import utc_timestamp

    try:
        as_of = utc_timestamp(args.as_of) if args.as_of else pd.Timestamp.now(tz="UTC")
        period = args.period or period_window(as_of, "month").key
        key = parse_period(period).key
    except ValueError as exc:
        print(f"ftops report: {exc}", file=sys.stderr)
        return 2
    settings = settings_from_env()
    reports = reports_folder(settings)
    try:
        page = write_period_report(settings.warehouse, reports, settings.config, key, as_of)
    # a corrupt Parquet file (ArrowInvalid is a ValueError), a bad ftops.yaml, an unwritable folder
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        print(f"ftops report: cannot write the report of {key}: {type(exc).__name__}: {first[0] if first else ''}",
              file=sys.stderr)
        return 2
    if page is None:
        earlier = Path(reports) / "cost" / key / INDEX
        if not earlier.is_file():
            print(f"ftops report: the warehouse {settings.warehouse} has no job_costs yet and no report of {key} "
                  "was built before; run the pipeline first (ftops demo, or dagster dev)", file=sys.stderr)
            return 2
        print("the warehouse has no job_costs; the report built earlier:", file=sys.stderr)
        page = earlier
    print(page)
    if args.open:
        webbrowser.open(page.resolve().as_uri())
    return 0
