"""`ftops alerts`: what is firing, worst first, with each job's page; exit 2 when the warehouse can't be read."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ftops.cli import main
from ftops.defs.io_manager import write_table
from ftops.reports.job_page import job_page_name
from ftops.schemas import ALERTS, validate

T0 = pd.Timestamp("2024-05-01 08:00", tz="UTC")


def _alert(job_id: str, rule: str, severity: str, hours: float, state: str = "firing", value: float = 1.0) -> dict:
    started = T0 + pd.Timedelta(hours=hours)
    return {"alert_id": f"{job_id}:{rule}", "job_id": job_id, "rule": rule, "device": "0" if rule.startswith("gpu")
            else None, "category": "resource" if rule.startswith("gpu") else "training", "severity": severity,
            "state": state, "started_at": started, "last_seen_at": started + pd.Timedelta(minutes=30),
            "resolved_at": started + pd.Timedelta(hours=1) if state == "resolved" else None, "value": value,
            "threshold": 2.0, "message": f"{rule} on {job_id}"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    wh, reports = tmp_path / "wh", tmp_path / "reports"
    for name in ("FTOPS_LEDGER", "FTOPS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FTOPS_WAREHOUSE", str(wh))
    monkeypatch.setenv("FTOPS_REPORTS", str(reports))
    alerts = pd.DataFrame([
        _alert("a", "gpu_underutilized", "warning", 0),
        _alert("team/b 2", "loss_spike", "critical", 3, value=float("nan")),
        _alert("c", "loss_rising", "critical", 1),
        _alert("a", "cpu_high", "info", -1),
        _alert("c", "grad_norm_spike", "critical", -2, state="resolved"),
    ])
    write_table(validate(alerts, ALERTS), str(wh), dg.AssetKey(ALERTS.name))
    page = reports / "jobs" / job_page_name("team/b 2")
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>")
    return wh, page


def test_firing_json_is_worst_first_with_the_job_page(env, capsys) -> None:
    _, page = env
    assert main(["alerts", "--firing", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["job_id"], r["rule"]) for r in rows] == [
        ("c", "loss_rising"), ("team/b 2", "loss_spike"), ("a", "gpu_underutilized"), ("a", "cpu_high")]
    assert set(rows[0]) >= {"alert_id", "job_id", "rule", "category", "severity", "state", "device", "started_at",
                            "last_seen_at", "resolved_at", "value", "threshold", "message", "page"}
    assert rows[0]["started_at"] == "2024-05-01T09:00:00+00:00" and rows[0]["resolved_at"] is None
    assert rows[1]["page"] == page.resolve().as_uri() and rows[1]["value"] is None  # NaN is null: strict JSON
    assert rows[0]["page"] is None  # never built: no link to a missing file
    assert rows[2]["device"] == "0"


def test_without_firing_resolved_alerts_come_last(env, capsys) -> None:
    assert main(["alerts", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["state"] for r in rows] == ["firing"] * 4 + ["resolved"]


def test_table_names_the_page_or_says_there_is_none(env, capsys) -> None:
    _, page = env
    assert main(["alerts", "--firing"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "critical" in lines[2] and "loss_rising" in lines[2] and "(no page yet)" in lines[2]
    assert page.resolve().as_uri() in lines[3]
    assert out.rstrip().endswith("4 firing, 0 resolved")


def test_nothing_firing_is_exit_0(tmp_path, monkeypatch, capsys) -> None:
    wh = tmp_path / "wh"
    monkeypatch.setenv("FTOPS_WAREHOUSE", str(wh))
    write_table(validate(pd.DataFrame([_alert("a", "cpu_high", "info", 0, state="resolved")]), ALERTS), str(wh),
                dg.AssetKey(ALERTS.name))
    assert main(["alerts", "--firing"]) == 0
    assert capsys.readouterr().out.strip() == "no alert is firing"
    assert main(["alerts", "--firing", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_no_alerts_table_and_a_corrupt_one_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    wh = tmp_path / "wh"
    monkeypatch.setenv("FTOPS_WAREHOUSE", str(wh))
    assert main(["alerts"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ftops alerts: no alerts table in {wh} yet") and err.count("\n") == 1
    (wh).mkdir()
    (wh / "alerts.parquet").write_bytes(b"PAR1 this is not parquet")
    assert main(["alerts", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ftops alerts: cannot read the alerts in {wh}: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_unknown_warehouse_scheme_is_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setenv("FTOPS_WAREHOUSE", "nosuchscheme://bucket/ftops")
    assert main(["alerts", "--firing"]) == 2
    assert capsys.readouterr().err.startswith("ftops alerts: cannot read the alerts in nosuchscheme://bucket/ftops: ")
