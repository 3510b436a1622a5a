"""The same code runs with the Dagster instance on a real PostgreSQL server (dagster-postgres).

`.ci/run` starts PostgreSQL and sets FTOPS_TEST_POSTGRES_URL; in CI this test must run, not skip.
"""

import os
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest
import yaml

from ftops.defs.runner import materialize_graph
from ftops.definitions import Settings, build_definitions
from ftops_tests.conftest import REPO_ROOT
from ftops_tests.test_defs.inbox_builder import write_bill, write_jobs, write_metrics

pytestmark = pytest.mark.integration


@pytest.fixture
def postgres_env(monkeypatch):
    url = os.environ.get("FTOPS_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("FTOPS_TEST_POSTGRES_URL is not set: .ci/run must start PostgreSQL")
        pytest.skip("FTOPS_TEST_POSTGRES_URL not set (a PostgreSQL server is needed; .ci/run starts one)")
    parsed = urlparse(url)
    for name, value in {
        "FTOPS_PG_USER": parsed.username, "FTOPS_PG_PASSWORD": parsed.password or "",
        "FTOPS_PG_HOST": parsed.hostname, "FTOPS_PG_PORT": str(parsed.port or 5432),
        "FTOPS_PG_DB": parsed.path.lstrip("/"),
    }.items():
        monkeypatch.setenv(name, value)


def test_ingest_on_a_postgres_instance_with_the_documented_config(tmp_path, postgres_env):
    config = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.postgres.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert "deploy/dagster.postgres.yaml" in (REPO_ROOT / "README.md").read_text()
    inbox = tmp_path / "inbox"
    write_jobs(inbox), write_metrics(inbox), write_bill(inbox)
    defs = build_definitions(Settings(str(inbox), str(tmp_path / "warehouse"), None))
    with dg.instance_for_test(overrides=config) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        results = materialize_graph(defs, instance, "2026-11-20T22:00:00Z", "2026-11-21T02:00:00Z",
                                     as_of="2026-11-21T02:00:00Z")
        run_ids = {r.dagster_run.run_id for r in results}
        stored = {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(run_ids=list(run_ids)))}
        assert stored == run_ids
        event = instance.get_latest_materialization_event(dg.AssetKey("metric_samples"))
        assert event.run_id in run_ids
        assert list((tmp_path / "warehouse" / "metric_samples" / "2026-11-21").glob("*-of-*.parquet"))
