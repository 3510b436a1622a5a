"""End to end: `ftops demo` in a fresh folder, then `dagster dev` from the same folder shows its runs.

Runs the real commands as a newcomer would (no DAGSTER_HOME: the folder's dagster.yaml decides the
instance), with a small fleet so the test stays quick.
"""

import os
import subprocess

import pandas as pd
import pytest

from ftops.defs.jobs import GRAPH_STEPS
from ftops_tests.browser import screenshot
from ftops_tests.conftest import REPO_ROOT
from ftops_tests.dagster_dev import BIN, DagsterDev, project_folder, rendered_dom

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FTOPS_"))}
    return project_folder(tmp_path), env


def test_demo_then_dagster_dev_shows_the_demo_runs(project):
    folder, env = project
    demo = subprocess.run(
        [str(BIN / "ftops"), "demo", "--jobs", "16", "--days", "2", "--seed", "3"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "jobs: 16" in demo.stdout and "rejected rows: 0" in demo.stdout
    warehouse = folder / ".ftops" / "warehouse"
    days = sorted({p.parent.name for p in (warehouse / "metric_samples").glob("*/*.parquet")})
    assert len(days) >= 2
    samples = pd.concat(pd.read_parquet(p) for p in (warehouse / "metric_samples").glob("*/*.parquet"))
    assert samples["job_id"].nunique() >= 5 and samples["value"].notna().any()
    assert (folder / ".ftops" / "dagster_home" / "storage").is_dir()
    assert (folder / ".ftops" / "ftops.yaml").exists()  # the demo's budgets, found by dagster dev too

    with DagsterDev(folder, env | {"FTOPS_SENSOR_INTERVAL_SECONDS": "5"}) as dev:
        demo_jobs = {name for name, _ in GRAPH_STEPS}
        demo_runs = [r for r in dev.runs() if r["jobName"] in demo_jobs]
        assert {r["jobName"] for r in demo_runs} == demo_jobs
        assert all(r["status"] == "SUCCESS" for r in demo_runs)
        nodes = dev.query("{ assetNodes { assetKey { path } groupName isPartitioned } }")["assetNodes"]
        groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
        assert groups["metric_samples"] == "ingest" and groups["alerts"] == "monitoring"
        assert groups["budget_status"] == "costs" and groups["action_ledger"] == "operations"

        # Two partition dimensions, starting on the fleet's first day: every partition is filled.
        parts = dev.query('{ assetNodes(assetKeys: [{path: ["metric_samples"]}]) { partitionDefinition { '
                          'dimensionTypes { name } } partitionStats { numMaterialized numPartitions } } }'
                          )["assetNodes"][0]
        assert [d["name"] for d in parts["partitionDefinition"]["dimensionTypes"]] == ["day", "shard"]
        stats = parts["partitionStats"]
        assert stats["numPartitions"] > 0 and stats["numMaterialized"] == stats["numPartitions"], stats

        # A real browser shows the asset catalogue with every group's assets.
        dom = rendered_dom(f"http://127.0.0.1:{dev.port}/assets", folder)
        for asset in ("metric_samples", "billing_line_items", "alerts", "budget_status", "action_ledger",
                      "cost_report", "job_pages"):
            assert asset in dom, f"{asset} not rendered in the Dagster UI's asset catalogue"

        # ... and the asset graph: FTOPS_UPDATE_SCREENSHOTS=1 refreshes the README's picture of it.
        update = os.environ.get("FTOPS_UPDATE_SCREENSHOTS") == "1"
        out = REPO_ROOT / "docs" / "images" / "asset_graph.png" if update else folder / "asset_graph.png"
        png = screenshot(f"http://127.0.0.1:{dev.port}/asset-groups", out, window=(1800, 1100), budget_ms=20000)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 30_000

        # The demo's over-budget category: budget_sensor launches enforcement (dry run) by itself.
        enforcement = dev.wait_for(
            lambda: [r for r in dev.runs() if r["jobName"] == "budget_enforcement" and r["status"] == "SUCCESS"],
            "a budget_enforcement run launched by budget_sensor", timeout_s=180)
        tags = {t["key"]: t["value"] for t in enforcement[0]["tags"]}
        assert tags["dagster/sensor_name"] == "budget_sensor" and tags["ftops/mode"] == "dry_run"

        # The inbox sensor ticks, but every demo file is already in the tables: it launches nothing.
        query = ('{ sensorOrError(sensorSelector: {repositoryLocationName: "ftops", repositoryName: '
                 '"__repository__", sensorName: "inbox_sensor"}) { ... on Sensor { sensorState { status '
                 'ticks(limit: 5) { status runIds } } } } }')
        ticks = dev.wait_for(
            lambda: [t for t in dev.query(query)["sensorOrError"]["sensorState"]["ticks"]
                     if t["status"] in ("SKIPPED", "SUCCESS", "FAILURE")],
            "an inbox_sensor tick", timeout_s=120)
        assert all(t["status"] == "SKIPPED" and not t["runIds"] for t in ticks), ticks
        assert not [r for r in dev.runs() if r["jobName"] in ("metric_ingest", "billing_ingest")
                    and r not in demo_runs]
