"""The Prometheus pull is part of the code location and lands real series in the inbox."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from ftops.definitions import Settings, build_definitions
from ftops.defs.resources import InboxResource
from ftops_tests.services import free_port, start_prometheus, stop_process_group, wait_for


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings(str(tmp_path / "inbox"), str(tmp_path / "wh"), None, env=tuple(sorted(env.items())))


def test_pull_is_registered_and_runs_only_where_configured(tmp_path: Path) -> None:
    quiet = build_definitions(_settings(tmp_path))
    assert quiet.resolve_job_def("prometheus_pull") is not None
    schedule = quiet.resolve_schedule_def("prometheus_pull_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    configured = build_definitions(_settings(tmp_path, FTOPS_PROMETHEUS_URL="http://prometheus:9090"))
    schedule = configured.resolve_schedule_def("prometheus_pull_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_schedule_pulls_the_window_ending_at_its_tick(tmp_path: Path) -> None:
    schedule = build_definitions(_settings(tmp_path)).resolve_schedule_def("prometheus_pull_schedule")
    tick = pd.Timestamp("2025-06-01 12:15", tz="UTC")
    # both as context managers, closed in order: a context left open keeps the instance's
    # definitions-state storage current after the instance is gone, and later definitions loads fail
    with dg.instance_for_test() as instance, dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick.to_pydatetime()) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.run_config == {"ops": {"pull_prometheus": {"config": {"end": tick.isoformat()}}}}
    assert request.run_key == tick.isoformat()  # a tick evaluated twice is one run


@pytest.fixture
def prometheus(tmp_path: Path):
    """A real Prometheus scraping DCGM-named gauges of two GPUs of job-42."""
    registry = CollectorRegistry()
    labels = ["gpu", "UUID", "Hostname", "pod"]
    util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels, registry=registry)
    util.labels("0", "GPU-aaaa", "node-a", "job-42").set(30.0)
    util.labels("1", "GPU-bbbb", "node-a", "job-42").set(70.0)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    url, proc = start_prometheus(tmp_path, [f"127.0.0.1:{port}"])
    try:
        yield url
    finally:
        stop_process_group(proc)
        server.shutdown()
        server.server_close()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_pull_job_lands_real_prometheus_series_in_the_inbox(tmp_path: Path, prometheus: str) -> None:
    def scraped() -> bool:
        answer = requests.get(f"{prometheus}/api/v1/query", params={"query": "DCGM_FI_DEV_GPU_UTIL"}, timeout=5)
        return len(answer.json()["data"]["result"]) == 2

    wait_for(scraped, timeout_s=30, what="the first scrape of the DCGM target")
    settings = _settings(tmp_path, FTOPS_PROMETHEUS_URL=prometheus)
    job = build_definitions(settings).resolve_job_def("prometheus_pull")
    end = pd.Timestamp.now(tz="UTC").ceil("s") + pd.Timedelta(seconds=1)
    config = {"ops": {"pull_prometheus": {"config": {"end": end.isoformat(), "lookback_minutes": 1,
                                                     "step_seconds": 1.0}}}}
    result = job.execute_in_process(run_config=config, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [export] = (tmp_path / "inbox" / "metrics" / "prometheus").iterdir()
    assert export.name == f"prometheus-{end:%Y%m%dT%H%M%SZ}.parquet"

    # The export is an ordinary inbox input: staging reads it into metric_samples rows.
    inbox = InboxResource(inbox_path=settings.inbox, warehouse_path=settings.warehouse)
    staging = inbox.staging()
    staging.stage_inbox(settings.inbox)
    samples, files = staging.load("metrics", end - pd.Timedelta(minutes=2), end + pd.Timedelta(minutes=1))
    assert [f.relpath for f in files] == ["metrics/prometheus/" + export.name]
    assert all(f.rejected == 0 for f in files)
    assert set(samples["metric"]) == {"gpu_utilization_pct"}
    assert set(samples["job_id"]) == {"job-42"}
    assert set(samples.groupby("device")["value"].first().items()) == {("0", 30.0), ("1", 70.0)}
