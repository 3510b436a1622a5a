"""The demo fleet end to end through the asset graph: every injected fault raises the alert it
should, and healthy jobs raise nothing at warning or above."""

import dagster as dg
import pandas as pd
import pytest

from ftops.definitions import Settings, build_definitions
from ftops.defs.runner import materialize_graph
from ftops.demo_fleet import write_demo_inbox
from ftops.monitoring.catalog import RULES

END = pd.Timestamp("2026-11-20T10:00:00Z")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    manifest = write_demo_inbox(root / "inbox", seed=7, n_jobs=40, days=7, end=END)
    config = root / "ftops.yaml"
    config.write_text((root / "inbox" / "demo_policy.yaml").read_text())
    defs = build_definitions(Settings(str(root / "inbox"), str(root / "warehouse"), str(config)))
    with dg.instance_for_test() as instance:
        results = materialize_graph(defs, instance, manifest.start.isoformat(), manifest.end.isoformat(),
                                     as_of=END.isoformat())
        assert all(r.success for r in results)
    alerts = pd.read_parquet(root / "warehouse" / "alerts.parquet")
    return manifest, alerts, root


def test_each_injected_fault_raises_its_alert(fleet):
    manifest, alerts, _ = fleet
    monitored = [f for f in manifest.faults if f.expected_rule in RULES]
    assert len(monitored) >= 6
    # the liveness faults are judged at the as_of the fleet was materialised with, not the wall clock
    assert {"job_preempted", "heartbeat_lost"} <= {f.expected_rule for f in monitored}
    missing = [(f.job_id, f.fault, f.expected_rule) for f in monitored
               if not ((alerts["job_id"] == f.job_id) & (alerts["rule"] == f.expected_rule)).any()]
    assert not missing, missing


def test_healthy_jobs_raise_nothing_at_warning_or_above(fleet):
    manifest, alerts, _ = fleet
    faulty = {f.job_id for f in manifest.faults}
    noisy = alerts[~alerts["job_id"].isin(faulty) & alerts["severity"].isin(["warning", "critical"])]
    assert noisy.empty, noisy[["job_id", "rule", "severity", "message"]].to_string()


def test_budget_overrun_shows_in_budget_status(fleet):
    manifest, _, root = fleet
    overrun = next(f for f in manifest.faults if f.fault == "budget_overrun")
    status = pd.read_parquet(root / "warehouse" / "budget_status.parquet")
    jobs = pd.read_parquet(root / "warehouse" / "job_registry.parquet")
    category = jobs.loc[jobs["job_id"] == overrun.job_id, "budget_category"].item()
    row = status[status["budget_category"] == category].iloc[0]
    assert row["usage_pct"] >= 90 and "90.0" in row["thresholds_crossed"]
