"""The `ftops` command as a person meets it: plain verdicts, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest

from dagster._core.instance.ref import InstanceRef

from ftops.cli import DEMO_HOME, DEMO_MARKER, budget_lines, main
from ftops.defs.jobs import GRAPH_STEPS
from ftops.demo_fleet import MIN_JOBS
from ftops.demo_fleet.policy import DEMO_SHARDS
from ftops.defs.io_manager import write_table


def _status_row(category, spend, limit, forecast, crossed=(50.0, 80.0, 90.0)):
    usage = None if limit is None else (float("inf") if limit == 0 and spend > 0 else spend / limit * 100 if limit else 0.0)
    return {"budget_category": category, "period_key": "2026-11", "spend_usd": spend, "limit_usd": limit,
            "usage_pct": usage, "forecast_period_end_usd": forecast, "thresholds_crossed": json.dumps(list(crossed)),
            "mode": "dry_run"}


def _status(*rows):
    return pd.DataFrame([_status_row(*r) for r in rows])


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    wh = tmp_path / "wh"
    for name in ("FTOPS_LEDGER", "FTOPS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FTOPS_WAREHOUSE", str(wh))
    return wh


def test_over_budget_and_forecast_over_budget_are_said_plainly():
    rows = budget_lines(_status(("research", 1095.0, 1000.0, 1300.0), ("prod", 500.0, 1000.0, 1200.0),
                                ("dev", 100.0, 1000.0, 200.0, ())), None)
    by = {r["budget_category"]: r for r in rows}
    assert by["research"]["verdict"] == "OVER BUDGET by $95.00 (109.5 %)"
    assert by["research"]["over_budget_usd"] == 95.0
    assert by["prod"]["verdict"] == "forecast to exceed by period end ($1,200.00, $200.00 over)"
    assert by["prod"]["forecast_over_budget"] and by["prod"]["over_budget_usd"] == 0.0
    assert by["dev"]["verdict"] == "within budget" and not by["dev"]["forecast_over_budget"]


def test_budget_table_shows_the_verdict(warehouse, capsys):
    write_table(_status(("research", 1095.0, 1000.0, 1300.0)), str(warehouse), dg.AssetKey("budget_status"))
    assert main(["budget"]) == 0
    assert "OVER BUDGET by $95.00 (109.5 %)" in capsys.readouterr().out


def test_budget_shows_the_current_period_and_history_shows_last_months_overrun(warehouse, capsys):
    closed = _status(("research", 1200.0, 1000.0, 1200.0)).assign(period_key="2026-10", current=False)
    now = _status(("research", 100.0, 1000.0, 400.0, ())).assign(current=True)
    write_table(pd.concat([now, closed]), str(warehouse), dg.AssetKey("budget_status"))
    assert main(["budget", "--json"]) == 0
    assert [r["period"] for r in json.loads(capsys.readouterr().out)] == ["2026-11"]
    assert main(["budget", "--json", "--history"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["period"], r["verdict"]) for r in rows] == [
        ("2026-11", "within budget"), ("2026-10", "OVER BUDGET by $200.00 (120.0 %)")]


def test_spend_held_as_suspicious_is_said_with_how_to_confirm_it():
    status = _status(("research", 400.0, 1000.0, 500.0)).assign(suspicious_usd=1e12)
    (row,) = budget_lines(status, None)
    assert row["suspicious_usd"] == 1e12
    assert row["verdict"].startswith("within budget; $1,000,000,000,000.00 held as suspicious")
    assert "ingest.confirmed_line_items" in row["verdict"]


def test_budget_json_is_strict_even_for_infinite_usage(warehouse, capsys):
    # a zero budget with spend is infinitely used; an inf cost row makes spend inf
    write_table(_status(("zero", 12.0, 0.0, 12.0), ("broken", float("inf"), 100.0, float("inf"))),
                str(warehouse), dg.AssetKey("budget_status"))
    assert main(["budget", "--json"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    by = {r["budget_category"]: r for r in rows}
    assert by["zero"]["usage_pct"] is None and by["zero"]["verdict"] == "OVER BUDGET by $12.00 (of a zero budget)"
    assert by["broken"]["spend_usd"] is None and by["broken"]["forecast_period_end_usd"] is None
    assert by["broken"]["verdict"].startswith("spend unknown")


def test_corrupt_budget_status_is_one_line_and_exit_2(warehouse, capsys):
    target = warehouse / "budget_status.parquet"
    write_table(_status(("research", 1.0, 10.0, 1.0)), str(warehouse), dg.AssetKey("budget_status"))
    assert target.exists()
    target.write_bytes(b"PAR1 this is not parquet")
    assert main(["budget"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ftops budget: cannot read the budget status in {warehouse}: ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_warehouse_scheme_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("FTOPS_WAREHOUSE", "nosuchscheme://bucket/ftops")
    monkeypatch.setenv("FTOPS_LEDGER", "unused-ledger")
    assert main(["budget"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ftops budget: cannot read the budget status in nosuchscheme://bucket/ftops: ")
    assert err.count("\n") == 1


def test_closed_pipe_ends_quietly(tmp_path):
    wh = tmp_path / "wh"
    write_table(_status(*[(f"c{i}", 1.0, 10.0, 1.0) for i in range(50)]), str(wh), dg.AssetKey("budget_status"))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as with `| head` on a long output
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTOPS_")} | {"FTOPS_WAREHOUSE": str(wh)}
    try:
        result = subprocess.run([sys.executable, "-m", "ftops.cli", "budget", "--json"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, timeout=300)
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 1



@pytest.fixture
def demo_folder(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith(("FTOPS_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _runs(folder):
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(folder / DEMO_HOME))) as instance:
        return instance.get_runs_count()


def test_a_second_demo_resets_warehouse_ledger_and_instance_together(demo_folder, capsys):
    args = ["demo", "--jobs", str(MIN_JOBS), "--days", "1", "--seed", "3"]
    assert main(args) == 0
    first_runs = _runs(demo_folder)
    # one run per step, and the sample-level steps one per shard of the demo's policy
    assert first_runs == sum(DEMO_SHARDS if cut == "shard_days" else 1 for _, cut in GRAPH_STEPS)
    # what the daemon leaves after the first demo: an enforcement entry in the ledger
    ledger = demo_folder / ".ftops" / "warehouse" / "_ledger"
    ledger.mkdir(parents=True, exist_ok=True)
    (ledger / "stale-from-the-first-demo").write_text("x")

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reset inbox, warehouse and action ledger, Dagster instance .ftops/dagster_home" in out
    # the first demo's runs (and the sensor cursors stored beside them) are gone with its ledger
    assert _runs(demo_folder) == first_runs
    assert not (ledger / "stale-from-the-first-demo").exists()


@dg.asset
def _one_asset() -> None:
    return None


def test_demo_refuses_an_instance_it_does_not_own_that_holds_runs(demo_folder, monkeypatch, capsys):
    home = demo_folder / "elsewhere"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        dg.materialize([_one_asset], instance=instance)
    warehouse = demo_folder / ".ftops" / "warehouse"
    warehouse.mkdir(parents=True)
    (warehouse / DEMO_MARKER).write_text("{}")
    (warehouse / "keep").write_text("x")
    assert main(["demo", "--jobs", str(MIN_JOBS), "--days", "1"]) == 2
    assert "the Dagster instance already holds runs" in capsys.readouterr().err
    assert (warehouse / "keep").exists()  # refused before anything was deleted



def test_the_demo_resets_the_instance_dagster_dev_opens():
    from ftops import cli
    from ftops.defs.runner import DEFAULT_HOME

    assert cli.DEMO_HOME == DEFAULT_HOME
