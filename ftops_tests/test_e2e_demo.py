"""End to end: `ftops demo` in a fresh folder, then `dagster dev` from the same folder shows its runs.

Runs the real commands as a newcomer would (no DAGSTER_HOME: the folder's dagster.yaml decides the
instance), with a small fleet so the test stays quick.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from ftops_tests.conftest import REPO_ROOT
from ftops_tests.services import free_port, stop_process_group

BIN = Path(sys.executable).parent


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def project(tmp_path):
    for name in ("dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FTOPS_"))}
    return tmp_path, env


def test_demo_then_dagster_dev_shows_the_demo_runs(project):
    folder, env = project
    demo = subprocess.run(
        [str(BIN / "ftops"), "demo", "--jobs", "16", "--days", "2", "--seed", "3"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "jobs: 16" in demo.stdout and "rejected rows: 0" in demo.stdout
    warehouse = folder / ".ftops" / "warehouse"
    days = sorted(p.stem for p in (warehouse / "metric_samples").glob("*.parquet"))
    assert len(days) >= 2
    samples = pd.concat(pd.read_parquet(warehouse / "metric_samples" / f"{d}.parquet") for d in days)
    assert samples["job_id"].nunique() >= 5 and samples["value"].notna().any()
    assert (folder / ".ftops" / "dagster_home" / "storage").is_dir()

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        deadline = time.monotonic() + 180
        runs = None
        while time.monotonic() < deadline:
            try:
                runs = _graphql(url, "{ runsOrError { ... on Runs { results { runId jobName status } } } }")
                break
            except OSError:
                time.sleep(2)
        assert runs is not None, "dagster dev did not answer within 180 s"
        results = runs["data"]["runsOrError"]["results"]
        assert {r["jobName"] for r in results} >= {"job_registry_ingest", "metric_ingest", "billing_ingest"}
        assert all(r["status"] == "SUCCESS" for r in results)
        nodes = _graphql(url, "{ assetNodes { assetKey { path } groupName isPartitioned } }")["data"]["assetNodes"]
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert by_key["metric_samples"]["groupName"] == "ingest" and by_key["metric_samples"]["isPartitioned"]

        # The inbox sensor runs in dagster dev; the demo's files are already in the tables, so its
        # ticks launch nothing.
        query = (
            '{ sensorOrError(sensorSelector: {repositoryLocationName: "ftops", repositoryName: "__repository__",'
            ' sensorName: "inbox_sensor"}) { ... on Sensor { sensorState { status ticks(limit: 5) {'
            ' status runIds } } } } }'
        )
        ticks = []
        while time.monotonic() < deadline + 60 and not ticks:
            state = _graphql(url, query)["data"]["sensorOrError"]["sensorState"]
            assert state["status"] == "RUNNING"
            ticks = [t for t in state["ticks"] if t["status"] in ("SKIPPED", "SUCCESS", "FAILURE")]
            time.sleep(2)
        assert ticks, "the inbox sensor did not tick"
        assert all(t["status"] == "SKIPPED" and not t["runIds"] for t in ticks), ticks
    finally:
        stop_process_group(server)
