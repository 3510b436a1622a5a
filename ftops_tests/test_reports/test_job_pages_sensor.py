"""`job_pages_alert_sensor`: an alert that fires or resolves without new samples of its job (a
heartbeat_lost on a silent job) rebuilds the last job_pages partition the job has a page in, once."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ftops.defs.io_manager import write_table
from ftops.defs.pages import job_pages_alert_sensor
from ftops.defs.partitions import shard_day_key
from ftops.defs.resources import PolicyResource, WarehouseResource
from ftops.schemas import ALERTS, validate
from ftops.sharding import Shard, shard_of
from ftops_tests.test_reports.test_alerts_cli import _alert

SHARDS = 4


def _pages(days: list[str], job_id: str) -> pd.DataFrame:
    return pd.DataFrame({"day": [pd.Timestamp(d, tz="UTC") for d in days], "job_id": job_id,
                         "page": f"jobs/{job_id}.html", "samples": 10, "alerts": 0, "firing": 0}).astype(
        {"job_id": "string", "page": "string"})


@pytest.fixture
def tick(tmp_path: Path):
    warehouse = str(tmp_path / "wh")
    config = tmp_path / "ftops.yaml"
    config.write_text(f"partitions:\n  start: '2024-04-01'\n  shards: {SHARDS}\n")
    shard = Shard(shard_of("silent", SHARDS), SHARDS).key
    for day in ("2024-05-01", "2024-05-02"):  # the silent job's pages, its last samples on 05-02
        write_table(_pages([day], "silent"), warehouse, dg.AssetKey("job_pages"), shard_day_key(day, shard))
    resources = {"warehouse": WarehouseResource(base_path=warehouse),
                 "policy": PolicyResource(config_path=str(config))}

    def evaluate(alerts: list[dict], cursor: str | None) -> dg.SensorResult:
        table = validate(pd.DataFrame(alerts), ALERTS) if alerts else ALERTS.empty()
        write_table(table, warehouse, dg.AssetKey(ALERTS.name))
        with dg.instance_for_test() as instance:
            return job_pages_alert_sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                  resources=resources))

    return evaluate, shard


def test_a_new_alert_of_a_silent_job_rebuilds_its_last_page_partition_once(tick):
    evaluate, shard = tick
    before = [_alert("silent", "gpu_underutilized", "warning", 0)]
    first = evaluate(before, None)
    assert not first.run_requests  # the pages were built with these alerts
    assert not evaluate(before, first.cursor).run_requests

    lost = before + [_alert("silent", "heartbeat_lost", "critical", 30)]
    fired = evaluate(lost, first.cursor)
    (request,) = fired.run_requests
    assert request.partition_key == shard_day_key("2024-05-02", shard)
    assert request.tags["ftops/jobs"] == "silent"
    assert not evaluate(lost, fired.cursor).run_requests  # seen: not again

    # resolving it changes the page again; a firing alert seen again later does not
    resolved = before + [_alert("silent", "heartbeat_lost", "critical", 30, state="resolved")]
    (again,) = evaluate(resolved, fired.cursor).run_requests
    assert again.partition_key == request.partition_key and again.run_key != request.run_key


def test_alerts_of_a_job_without_a_page_request_nothing(tick):
    evaluate, _ = tick
    first = evaluate([], None)
    result = evaluate([_alert("never-sampled", "heartbeat_lost", "critical", 1)], first.cursor)
    assert not result.run_requests
    assert "none has a page yet" in result.skip_reason.skip_message
