"""The `ftops` command."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

DEMO_MARKER = "ftops-demo.json"
DEMO_CONFIG = ".ftops/ftops.yaml"  # one of definitions.DEFAULT_CONFIGS: dagster dev finds it too
DEMO_HOME = ".ftops/dagster_home"  # runner.DEFAULT_HOME, kept here so the command starts without Dagster
DEMO_RESET = (
    "A re-run starts from scratch: it deletes the inbox, the warehouse (the action ledger included) "
    f"and, unless DAGSTER_HOME is set, the demo's Dagster instance in {DEMO_HOME} (runs, sensor cursors), "
    "so budget enforcement acts again; stop `dagster dev` first. With DAGSTER_HOME set, that instance "
    "is never touched and must hold no runs."
)


def _print_step(message: str) -> None:
    print(message, flush=True)


def _owned_by_demo(folder: Path) -> bool:
    """A folder the demo may wipe: absent, empty, or written by an earlier demo."""
    return not folder.exists() or not any(folder.iterdir()) or (folder / DEMO_MARKER).exists()


def cmd_demo(args: argparse.Namespace) -> int:
    import dagster as dg

    from ftops.defs.io_manager import read_table
    from ftops.defs.runner import materialize_graph, open_instance
    from ftops.definitions import Settings, build_definitions, settings_from_env
    from ftops.demo_fleet import MIN_JOBS, write_demo_inbox
    from ftops.schemas import ALERTS, BENCHMARK_COMPARISON, BENCHMARK_RECOMMENDATIONS, BUDGET_STATUS
    from ftops.staging import scan_inbox

    if args.jobs < MIN_JOBS or args.days < 1:
        print(f"ftops demo: --jobs must be at least {MIN_JOBS} (one job per injected fault plus healthy ones) "
              "and --days at least 1", file=sys.stderr)
        return 2
    env_settings = settings_from_env()
    inbox = Path(args.inbox or env_settings.inbox)
    warehouse = Path(args.warehouse or env_settings.warehouse)
    # Warehouse, ledger and instance are reset together: a fresh ledger under an instance whose
    # sensors remember the last demo's crossings would never enforce again.
    home = None if os.environ.get("DAGSTER_HOME") else Path(DEMO_HOME)
    for folder in (inbox, warehouse, *([home] if home else [])):
        if not _owned_by_demo(folder):
            print(f"ftops demo: {folder} holds data that the demo did not write; "
                  "pass --inbox/--warehouse to use other folders (or set DAGSTER_HOME for the instance)",
                  file=sys.stderr)
            return 2
    started = time.perf_counter()
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        (home / DEMO_MARKER).write_text(json.dumps({"seed": args.seed}))
    instance = open_instance()
    if instance.get_runs_count() > 0:  # DAGSTER_HOME, or a dagster.yaml that keeps runs elsewhere
        print("ftops demo: the Dagster instance already holds runs, and its sensors would remember them; "
              "unset DAGSTER_HOME or point it to an empty folder", file=sys.stderr)
        return 2
    for folder in (inbox, warehouse):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / DEMO_MARKER).write_text(json.dumps({"seed": args.seed}))
    reset = f"inbox, warehouse and action ledger{'' if home is None else f', Dagster instance {home}'}"
    _print_step(f"      starting from scratch: reset {reset}")

    _print_step(f"[1/4] writing a synthetic fleet: {args.jobs} jobs over {args.days} days (seed {args.seed}) ...")
    t = time.perf_counter()
    manifest = write_demo_inbox(inbox, seed=args.seed, n_jobs=args.jobs, days=args.days)
    counts = ", ".join(f"{k.replace('_', ' ')}: {v:,}" for k, v in manifest.counts.items())
    _print_step(f"      {counts} ({time.perf_counter() - t:.1f} s)")

    config = env_settings.config
    if config is None:  # no policy of the user's: use the demo fleet's budgets and prices
        demo_config = Path(DEMO_CONFIG)
        demo_config.parent.mkdir(parents=True, exist_ok=True)
        demo_config.write_text((inbox / "demo_policy.yaml").read_text())
        config = str(demo_config.resolve())
    else:
        _print_step(f"      using your policy {config} (the demo's budgets are in {inbox / 'demo_policy.yaml'})")
    settings = Settings(inbox=str(inbox.resolve()), warehouse=str(warehouse.resolve()), config=config,
                        reports=env_settings.reports)  # pages where `dagster dev` and `ftops alerts` look
    defs = build_definitions(settings)
    staging = defs.resources["inbox"].staging()
    files = scan_inbox(inbox)
    _print_step(f"[2/4] reading {len(files)} inbox files once (staging) ...")
    t = time.perf_counter()
    live = sys.stdout.isatty()

    def progress(i: int, total: int) -> None:
        if live:
            print(f"\r      {i}/{total} files", end="", flush=True)
        elif i == total or i % max(1, total // 4) == 0:
            print(f"      {i}/{total} files", flush=True)

    staging.stage_files(inbox, files, progress=progress)  # in parallel, one process per core
    print(f"{'' if live else '     '} read in {time.perf_counter() - t:.1f} s", flush=True)

    _print_step("[3/4] materialising the asset graph on the Dagster instance ...")
    results = materialize_graph(
        defs, instance, manifest.start.isoformat(), manifest.end.isoformat(),
        progress=lambda name, seconds: _print_step(f"      {name}: done in {seconds:.1f} s"),
        log_level="WARNING",
        as_of=manifest.end.isoformat(),  # the fleet's "now": liveness and budgets as of the demo's end
        settings=settings, processes=os.cpu_count() or 1,  # shard runs in worker processes, one per core
    )

    _print_step("[4/4] summary")
    jobs, _ = staging.load("jobs")
    samples = sum(m.accepted for m in staging.current("metrics"))
    lines = sum(m.accepted for m in staging.current("billing"))
    rejected = sum(m.rejected for kind in ("jobs", "metrics", "billing", "logs") for m in staging.current(kind))
    runs = f"{len(results)} ({sum(r.dagster_run.tags.get('ftops/shard') is not None for r in results)} of them one shard each)"
    alerts = read_table(settings.warehouse, dg.AssetKey(ALERTS.name))
    serious = alerts[alerts["severity"].isin(["warning", "critical"])] if alerts is not None else alerts
    status = read_table(settings.warehouse, dg.AssetKey(BUDGET_STATUS.name))
    from ftops.costs.budgets import current_periods

    status = current_periods(status) if status is not None else status
    over = status[status["usage_pct"] >= 90] if status is not None else status
    compared = read_table(settings.warehouse, dg.AssetKey(BENCHMARK_COMPARISON.name))
    advice = read_table(settings.warehouse, dg.AssetKey(BENCHMARK_RECOMMENDATIONS.name))
    moves = (advice[advice["kind"] == "move"].sort_values("saving_usd_per_month", ascending=False)
             if advice is not None else None)
    best_move = moves["message"].iloc[0] if moves is not None and not moves.empty else "none"
    print(
        f"      jobs: {len(jobs)} ({', '.join(f'{k} {v}' for k, v in jobs['status'].value_counts().items())})\n"
        f"      metric samples: {samples:,}   billing lines: {lines:,}   rejected rows: {rejected:,}\n"
        f"      injected faults: {len(manifest.faults)} (see {inbox / 'demo_manifest.json'})\n"
        f"      alerts at warning or above: {len(serious)} on {serious['job_id'].nunique()} jobs; "
        f"budgets at 90 % or more: {', '.join(f'{r.budget_category} {r.usage_pct:.0f} %' for r in over.itertuples()) or 'none'}\n"
        f"      configurations compared: {0 if compared is None else len(compared)}; "
        f"moves recommended: {0 if moves is None else len(moves)}, the largest:\n        {best_move}\n"
        f"      Dagster runs: {runs}   total {time.perf_counter() - started:.0f} s\n"
        f"Next: run `dagster dev` in this folder and open http://127.0.0.1:3000 (asset groups ingest, monitoring,\n"
        f"      costs, optimization, prediction, reports, operations; budget_sensor acts on the over-budget\n"
        f"      category in dry run), `ftops report --period {manifest.end:%Y-%m} --open` (the cost report),\n"
        f"      `ftops alerts --firing` (with each job's page), `ftops budget`, `ftops serve-metrics` (for Prometheus),\n"
        f"      `ftops recommend --gpus 8 --gpu-memory-gb 80 --hours 10 --spot`, `ftops check-run PATH`.\n"
        f"      The tables are Parquet files under {warehouse}/.",
        flush=True,
    )
    return 0


def _finite(value, digits: int) -> float | None:
    """A rounded float, or None for a missing or non-finite value (strict JSON has no Infinity)."""
    import math

    import pandas as pd

    if value is None or pd.isna(value) or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def budget_verdict(spend: float | None, limit: float | None, usage_pct: float | None,
                   forecast: float | None) -> str:
    """What a person needs to read first: over budget, heading there, or fine."""
    if spend is None:
        return "spend unknown: a cost is not a finite number (see billing_line_items)"
    if limit is None:
        return "no limit"
    if spend > limit:
        share = f"{usage_pct:.1f} %" if usage_pct is not None else "of a zero budget"
        return f"OVER BUDGET by ${spend - limit:,.2f} ({share})"
    if forecast is not None and forecast > limit:
        return f"forecast to exceed by period end (${forecast:,.2f}, ${forecast - limit:,.2f} over)"
    return "within budget"


def budget_lines(status, ledger):
    """One row per budget category and period: spend, limit, usage, forecast, verdict, crossed thresholds,
    last action."""
    import pandas as pd

    last = {}
    if ledger is not None and not ledger.empty:
        latest = ledger.sort_values("ts").groupby("budget_category").tail(1)
        last = {r.budget_category: f"{r.action} {r.job_id} {r.status} ({r.mode}, {r.ts:%Y-%m-%d %H:%M})"
                for r in latest.itertuples()}
    rows = []
    for r in status.itertuples():
        category = r.budget_category if isinstance(r.budget_category, str) else "(no category)"
        spend, limit = _finite(r.spend_usd, 2), _finite(r.limit_usd, 2)
        usage, forecast = _finite(r.usage_pct, 1), _finite(r.forecast_period_end_usd, 2)
        held = _finite(getattr(r, "suspicious_usd", None), 2) or 0.0  # tables written before it existed
        verdict = budget_verdict(spend, limit, usage, forecast)
        if held:
            verdict += (f"; ${held:,.2f} held as suspicious, not counted until confirmed "
                        "(ftops.yaml ingest.confirmed_line_items)")
        rows.append({
            "budget_category": category,
            "period": r.period_key,
            "spend_usd": spend,
            "limit_usd": limit,
            "usage_pct": usage,
            "forecast_period_end_usd": forecast,
            "over_budget_usd": None if spend is None or limit is None else round(max(spend - limit, 0.0), 2),
            "forecast_over_budget": bool(limit is not None and forecast is not None and forecast > limit),
            "suspicious_usd": held,
            "verdict": verdict,
            "thresholds_crossed": json.loads(r.thresholds_crossed),
            "mode": None if pd.isna(r.mode) else r.mode,
            "last_action": last.get(r.budget_category),
        })
    return rows


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def cmd_budget(args: argparse.Namespace) -> int:
    import dagster as dg

    from ftops.actions.ledger_store import LedgerStore
    from ftops.defs.io_manager import read_table
    from ftops.definitions import ledger_folder, settings_from_env
    from ftops.schemas import BUDGET_STATUS

    settings = settings_from_env()
    try:
        status = read_table(settings.warehouse, dg.AssetKey(BUDGET_STATUS.name))
        ledger = LedgerStore(ledger_folder(settings)).load() if status is not None else None
    # a corrupt Parquet file (ArrowInvalid is a ValueError), an unknown fsspec scheme, a missing driver
    except (OSError, ValueError, ImportError) as exc:
        print(f"ftops budget: cannot read the budget status in {settings.warehouse}: {_one_line(exc)}",
              file=sys.stderr)
        return 2
    if status is None:
        print(f"ftops budget: no budget_status in {settings.warehouse} yet; materialise it "
              "(ftops demo, or the costs group in dagster dev)", file=sys.stderr)
        return 2
    from ftops.costs.budgets import current_periods

    rows = budget_lines(status if args.history else current_periods(status), ledger)
    if args.json:
        print(json.dumps(rows, indent=2, allow_nan=False))
        return 0
    from tabulate import tabulate

    def money(value):
        return "-" if value is None else f"{value:,.2f}"

    table = [[r["budget_category"], r["period"], money(r["spend_usd"]), money(r["limit_usd"]),
              "-" if r["usage_pct"] is None else f"{r['usage_pct']:.1f}%",
              money(r["forecast_period_end_usd"]), r["verdict"],
              ", ".join(f"{t:g}%" for t in r["thresholds_crossed"]) or "-", r["mode"] or "-",
              r["last_action"] or "-"] for r in rows]
    print(tabulate(table, headers=["category", "period", "spend USD", "limit USD", "used", "forecast USD",
                                   "verdict", "crossed", "mode", "last action"], disable_numparse=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftops", description="Operations for fine-tuning fleets.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="write a synthetic fleet into a fresh inbox and materialise the graph",
                          description="Write a synthetic fleet into a fresh inbox and materialise the graph. "
                          + DEMO_RESET)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--jobs", type=int, default=40)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--inbox", help="inbox folder (default: FTOPS_INBOX or .ftops/inbox)")
    demo.add_argument("--warehouse", help="warehouse folder (default: FTOPS_WAREHOUSE or .ftops/warehouse)")
    demo.set_defaults(func=cmd_demo)

    budget = sub.add_parser("budget", help="budget status per category from the warehouse")
    budget.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    budget.add_argument("--history", action="store_true",
                        help="every period with spend, not only the current one (newest first)")
    budget.set_defaults(func=cmd_budget)

    from ftops.catalog_cli import add_catalog_parser
    from ftops.recommend_cli import add_recommend_parser
    from ftops.risk_cli import add_risk_parser

    add_recommend_parser(sub)
    add_catalog_parser(sub)
    add_risk_parser(sub)
    from ftops.report_cli import add_report_parser
    add_report_parser(sub)
    from ftops.alerts_cli import add_alerts_parser
    add_alerts_parser(sub)
    from ftops.agent import add_agent_parser

    add_agent_parser(sub)
    from ftops.serve_metrics_cli import add_serve_metrics_parser
    add_serve_metrics_parser(sub)
    from ftops.check_run import add_check_run_parser
    add_check_run_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader (e.g. `| head`) has gone: point stdout at devnull so the exit flush stays quiet
        # (the recipe of Python's signal module documentation)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
