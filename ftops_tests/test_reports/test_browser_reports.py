"""The cost report and the burn-down page in a real browser (Debian's headless Chromium), from a file:
no console errors, every chart drawn, a screenshot written.

FTOPS_UPDATE_SCREENSHOTS=1 writes the cost report's screenshot to docs/images/cost_report.png (the
README shows it); otherwise it goes to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ftops.reports.cost_figures import cost_report_tables
from ftops.reports.cost_report import write_cost_report
from ftops.reports.periods import parse_period
from ftops_tests.browser import load_page, screenshot
from ftops_tests.conftest import REPO_ROOT
from ftops_tests.test_reports import fleet

pytestmark = pytest.mark.integration
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    costs, bills = fleet.costs_and_bills()
    tables = cost_report_tables(parse_period("2026-11"), costs, fleet.jobs(), fleet.AS_OF,
                                budget_status=fleet.budget_status_rows(), budgets=fleet.BUDGETS, line_items=bills)
    return write_cost_report(tables, tmp_path_factory.mktemp("reports") / "cost" / "2026-11")


def _charts(html: str) -> int:
    return html.count("Plotly.newPlot(")


@pytest.mark.parametrize("page", ["index", "burn_down"])
def test_page_loads_without_console_errors_and_draws_every_chart(report, page: str, tmp_path: Path) -> None:
    path = report.index if page == "index" else report.burn_down
    loaded = load_page(path, tmp_path)
    assert loaded.console_errors == []
    expected = _charts(path.read_text())
    assert expected >= (8 if page == "index" else 2)
    # plotly draws each chart into a plot container holding its SVG layers; an error leaves it empty
    assert len(re.findall(r'class="plot-container plotly"', loaded.dom)) == expected
    assert len(re.findall(r'<svg class="main-svg"', loaded.dom)) >= expected
    assert loaded.count('class="xtitle"') >= expected and loaded.count('class="ytitle"') >= expected
    # the rendered y axis titles carry their unit
    assert re.search(r'class="ytitle"[^>]*>[^<]*\(USD', loaded.dom)


def test_screenshot_of_the_cost_report(report, tmp_path: Path) -> None:
    update = os.environ.get("FTOPS_UPDATE_SCREENSHOTS") == "1"
    out = REPO_ROOT / "docs" / "images" / "cost_report.png" if update else tmp_path / "cost_report.png"
    png = screenshot(report.index, out, window=(1400, 3000))
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 50_000
    burn = screenshot(report.burn_down, tmp_path / "burn_down.png", window=(1400, 2000))
    assert burn.read_bytes()[:8] == PNG_MAGIC
