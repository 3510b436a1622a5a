"""Shared fixtures, and the rule that a test skipped on CI is a failure.

A skip is fine on a developer's machine (no Prometheus installed, no ../shared/realdata beside the
checkout), but on CI it would hide a test that never ran, so when the environment variable `CI` is
set (as CI services do: `CI=true`) every skip, `importorskip` and `skipif` becomes a failure that
says why. A test that may legitimately skip on some CI machines says so with
`@pytest.mark.ci_may_skip("why")`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# FTOPS_REALDATA points elsewhere (a data set kept outside the checkout's parent)
REALDATA = Path(os.environ.get("FTOPS_REALDATA") or REPO_ROOT.parent / "shared" / "realdata")
CI_MAY_SKIP = "ci_may_skip"


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str, what: str = "test") -> NoReturn:
    """Skip the test on a developer machine; fail it on CI, where it must run."""
    if on_ci():
        pytest.fail(f"{reason}. CI must run this {what} (CI is set).", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{CI_MAY_SKIP}(reason): this test may skip on CI too, for the reason given")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_skip_on_ci(report: pytest.TestReport | pytest.CollectReport, allowed: bool) -> None:
    if report.skipped and on_ci() and not allowed and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where every test must run: {_skip_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _fail_skip_on_ci(outcome.get_result(), item.get_closest_marker(CI_MAY_SKIP) is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    # a module-level importorskip skips at collection, before any test item exists
    outcome = yield
    _fail_skip_on_ci(outcome.get_result(), False)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real public data set; absent in a user's clone, so tests that need it skip (fail on CI)."""
    if not REALDATA.is_dir():
        skip_or_fail(f"{REALDATA} is absent (../shared/realdata is only beside developer and CI checkouts; "
                     "FTOPS_REALDATA names another folder)")
    return REALDATA
