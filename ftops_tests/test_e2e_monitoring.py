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
def graph_run(tmp_path_factory):
    """The demo fleet materialised once: its manifest, alerts, folder and each asset's latest metadata."""
    root = tmp_path_factory.mktemp("fleet")
    manifest = write_demo_inbox(root / "inbox", seed=7, n_jobs=40, days=7, end=END)
    config = root / "ftops.yaml"
    config.write_text((root / "inbox" / "demo_policy.yaml").read_text())
    defs = build_definitions(Settings(str(root / "inbox"), str(root / "warehouse"), str(config)))
    with dg.instance_for_test() as instance:
        results = materialize_graph(defs, instance, manifest.start.isoformat(), manifest.end.isoformat(),
                                     as_of=END.isoformat())
        assert all(r.success for r in results)
        metadata = {}
        for key in defs.resolve_asset_graph().get_all_asset_keys():
            event = instance.get_latest_materialization_event(key)
            if event is not None:
                metadata[key.to_user_string()] = dict(event.asset_materialization.metadata)
    alerts = pd.read_parquet(root / "warehouse" / "alerts.parquet")
    return manifest, alerts, root, metadata


@pytest.fixture(scope="module")
def fleet(graph_run):
    manifest, alerts, root, _ = graph_run
    return manifest, alerts, root


# Fitted models are stored with joblib, not as tables: their metadata is their evaluation.
MODELS = {"failure_risk_model", "resource_model"}
# The benchmark page is a file, not a table: its metadata links it and previews the best configurations.
NOT_TABLES = {*MODELS, "benchmark_report"}


def test_every_table_asset_says_how_many_rows_and_shows_its_most_useful_ones(graph_run):
    """The Dagster UI answers "what is wrong now" from an asset's page: its row count and a Markdown
    preview (firing alerts, budgets at risk, top cost drivers) without opening a file."""
    *_, metadata = graph_run
    assert len(metadata) >= 25, sorted(metadata)
    missing = {}
    for asset, entries in metadata.items():
        if asset in MODELS:
            continue
        problems = []
        if asset not in NOT_TABLES and not isinstance(entries.get("rows"), dg.IntMetadataValue):
            problems.append("no rows count")
        if not any(isinstance(v, dg.MarkdownMetadataValue) for v in entries.values()):
            problems.append("no Markdown preview")
        if problems:
            missing[asset] = problems
    assert not missing, missing
    assert metadata["alerts"]["firing"].value > 0 and "|" in metadata["alerts"]["firing_alerts"].value
    assert "|" in metadata["budget_status"]["status"].value
    assert "|" in metadata["job_costs"]["top_jobs"].value


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
