"""`ftops report`: the report of a pinned period from a warehouse, pointed to, opened, or refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ftops import cli
from ftops_tests.test_reports import fleet
from ftops_tests.test_reports.test_cost_report import _warehouse


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no ftops.yaml of the checkout
    (tmp_path / "ftops.yaml").write_text("budgets:\n  research:\n    limit_usd: 20000\n")
    for name, value in (("FTOPS_WAREHOUSE", "warehouse"), ("FTOPS_REPORTS", "reports"),
                        ("FTOPS_CONFIG", "ftops.yaml")):
        monkeypatch.setenv(name, str(tmp_path / value))
    return tmp_path


def test_writes_the_report_of_a_month_and_prints_its_path(env: Path, capsys, monkeypatch) -> None:
    _warehouse(env / "warehouse")
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    assert cli.main(["report", "--period", "2026-11", "--as-of", "2026-11-20T12:00", "--open"]) == 0
    page = env / "reports" / "cost" / "2026-11" / "index.html"
    assert capsys.readouterr().out.strip() == str(page)
    assert opened == [page.as_uri()]
    summary = pd.read_parquet(page.parent / "summary.parquet").iloc[0]
    costs, _ = fleet.costs_and_bills()
    november = costs[(costs["period_start"] >= fleet.PERIOD_START) & (costs["period_start"] < fleet.PERIOD_END)
                     & ~costs["suspicious"]]
    assert summary["total_usd"] == pytest.approx(november["cost_usd"].sum())
    budgets = pd.read_parquet(page.parent / "budgets.parquet").set_index("budget_category")
    assert budgets.loc["research", "limit_usd"] == 20_000  # the budgets of FTOPS_CONFIG
    assert (page.parent / "burn_down.html").is_file()


def test_an_iso_week_and_a_closed_period(env: Path, capsys) -> None:
    _warehouse(env / "warehouse")
    assert cli.main(["report", "--period", "2026-W44", "--as-of", "2026-12-15"]) == 0
    folder = env / "reports" / "cost" / "2026-W44"
    summary = pd.read_parquet(folder / "summary.parquet").iloc[0]
    assert bool(summary["closed"]) and summary["previous_period_key"] == "2026-W43"
    assert "forecast" not in pd.read_parquet(folder / "burn_down.parquet")["kind"].tolist()


def test_points_to_an_earlier_report_or_refuses(env: Path, capsys) -> None:
    assert cli.main(["report", "--period", "2026-11"]) == 2
    assert "no job_costs yet" in capsys.readouterr().err
    earlier = env / "reports" / "cost" / "2026-11" / "index.html"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("<html></html>")
    assert cli.main(["report", "--period", "2026-11"]) == 0
    assert capsys.readouterr().out.strip() == str(earlier)
    assert cli.main(["report", "--period", "2026-13"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err


def test_a_corrupt_table_is_one_line_and_exit_2(env: Path, capsys) -> None:
    _warehouse(env / "warehouse")
    (env / "warehouse" / "job_costs.parquet").write_bytes(b"not parquet")
    assert cli.main(["report", "--period", "2026-11", "--as-of", "2026-11-20T12:00"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftops report: cannot write the report of 2026-11:") and "\n" not in err
