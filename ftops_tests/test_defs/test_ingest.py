"""Ingest assets on a temporary instance: partitions, accounting, replacement, de-duplication, sensor."""

import shutil

import dagster as dg
import pandas as pd
import pytest

from ftops.defs.resources import InboxResource
from ftops.defs.runner import materialize_graph
from ftops.defs.sensors import RANGE_END, RANGE_START, inbox_sensor
from ftops.definitions import Settings, build_definitions
from ftops.sharding import Shard, all_shards, shard_of
from ftops_tests.tables import read_partitions
from ftops_tests.test_defs.inbox_builder import touch_later, write_bill, write_jobs, write_metrics


@pytest.fixture
def inbox(tmp_path):
    root = tmp_path / "inbox"
    write_jobs(root)
    write_metrics(root)
    write_bill(root)
    return root


def _defs(tmp_path, inbox):
    return build_definitions(Settings(str(inbox), str(tmp_path / "warehouse"), None))


def _check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_materialize_graph_writes_daily_partitions_and_keeps_rejections(tmp_path, inbox):
    defs = _defs(tmp_path, inbox)
    with dg.instance_for_test() as instance:
        results = materialize_graph(defs, instance, "2026-11-20T22:00:00Z", "2026-11-21T02:00:00Z",
                                     as_of="2026-11-21T02:00:00Z")
        assert all(r.success for r in results)
        for r in results:
            assert all(_check_results(r).values()), _check_results(r)
        materialized = instance.get_materialized_partitions(dg.AssetKey("metric_samples"))
        # every shard of both days (shards without a job are stored empty: known, not missing)
        assert materialized == {f"{day}|{s.key}" for day in ("2026-11-20", "2026-11-21") for s in all_shards(8)}
    warehouse = tmp_path / "warehouse"
    own = Shard(shard_of("ft-001", 8), 8).key  # the only job with metrics
    day1 = pd.read_parquet(warehouse / "metric_samples" / "2026-11-20" / f"{own}.parquet")
    day2 = pd.read_parquet(warehouse / "metric_samples" / "2026-11-21" / f"{own}.parquet")
    assert len(day1) == 120 * 3 and len(day2) == 120 * 3  # 22:00-23:59 and 00:00-01:59
    assert len(read_partitions(warehouse, "metric_samples")) == 2 * 120 * 3  # the other shards are empty
    assert day1["ts"].max() < pd.Timestamp("2026-11-21", tz="UTC") <= day2["ts"].min()
    assert set(day1["source"]) == {"metrics/ft-001/export.jsonl"}
    jobs = pd.read_parquet(warehouse / "job_registry.parquet")
    assert list(jobs["job_id"]) == ["ft-001", "ft-002"]
    bill = pd.read_parquet(warehouse / "billing_line_items" / "2026-11-20.parquet")
    assert len(bill) == 2 and set(bill["job_id"]) == {"ft-001"}
    rejected = pd.read_parquet(warehouse / "rejected_records.parquet")
    assert len(rejected) == 1
    assert rejected.loc[0, "source"] == "metrics/ft-001/export.jsonl"
    assert rejected.loc[0, "reason"]


def test_rerun_replaces_partitions_and_copies_never_double_count(tmp_path, inbox):
    defs = _defs(tmp_path, inbox)
    warehouse = tmp_path / "warehouse"
    with dg.instance_for_test() as instance:
        materialize_graph(defs, instance, "2026-11-20T22:00:00Z", "2026-11-21T02:00:00Z",
                                     as_of="2026-11-21T02:00:00Z")
        # The same bill delivered twice, and the metric export rewritten with fewer rows.
        shutil.copy(inbox / "billing" / "focus-2026-11-20.csv", inbox / "billing" / "focus-2026-11-20-copy.csv")
        path = write_metrics(inbox, rows=60, bad_lines=0)
        touch_later(path)
        results = materialize_graph(defs, instance, "2026-11-20T22:00:00Z", "2026-11-21T02:00:00Z",
                                     as_of="2026-11-21T02:00:00Z")
        billing_checks = _check_results(next(r for r in results if r.dagster_run.job_name == "billing_ingest"))
        assert billing_checks["no_duplicate_line_items"] and billing_checks["row_accounting_balances"]
    day1 = read_partitions(warehouse, "metric_samples", "2026-11-20")
    day2 = read_partitions(warehouse, "metric_samples", "2026-11-21")
    assert len(day1) == 60 * 3 and day2.empty  # the old version of the file no longer counts
    bill = pd.concat(pd.read_parquet(p) for p in (warehouse / "billing_line_items").glob("*.parquet"))
    assert len(bill) == 4 and bill["line_item_id"].is_unique
    rejected = pd.read_parquet(warehouse / "rejected_records.parquet")
    assert rejected.empty  # the rewritten export has no bad line; the old version's rejection is superseded


def test_inbox_sensor_requests_each_file_once(tmp_path, inbox):
    resource = InboxResource(inbox_path=str(inbox), warehouse_path=str(tmp_path / "warehouse"))
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"inbox": resource})
        first = inbox_sensor(context)
        requests = {r.job_name: r for r in first.run_requests}
        assert set(requests) == {"job_registry_ingest", "metric_ingest", "billing_ingest", "rejected_records_refresh"}
        own = Shard(shard_of("ft-001", 8), 8).key  # one run for the one shard with metrics
        assert requests["metric_ingest"].tags[RANGE_START] == f"2026-11-20|{own}"
        assert requests["metric_ingest"].tags[RANGE_END] == f"2026-11-21|{own}"
        assert [r.job_name for r in first.run_requests].count("metric_ingest") == 1
        assert (requests["billing_ingest"].tags[RANGE_START], requests["billing_ingest"].tags[RANGE_END]) == (
            "2026-11-20", "2026-11-21")

        again = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"inbox": resource},
                                                     cursor=first.cursor))
        assert not again.run_requests

        # A daemon restart that lost the cursor re-requests with the same run keys (Dagster skips them).
        restarted = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"inbox": resource}))
        assert {r.run_key for r in restarted.run_requests} == {r.run_key for r in first.run_requests}

        write_bill(inbox, name="focus-2026-11-21.csv", hours=2)
        new = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"inbox": resource},
                                                   cursor=first.cursor))
        assert [r.job_name for r in new.run_requests] == ["billing_ingest"]
        assert new.run_requests[0].run_key != requests["billing_ingest"].run_key


def test_sensor_requests_nothing_for_files_already_in_the_tables(tmp_path, inbox):
    defs = _defs(tmp_path, inbox)
    resource = InboxResource(inbox_path=str(inbox), warehouse_path=str(tmp_path / "warehouse"))
    with dg.instance_for_test() as instance:
        materialize_graph(defs, instance, "2026-11-20T22:00:00Z", "2026-11-21T02:00:00Z",
                                     as_of="2026-11-21T02:00:00Z")
        result = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"inbox": resource}))
        assert not result.run_requests
        write_bill(inbox, name="focus-late.csv", hours=1)
        result = inbox_sensor(dg.build_sensor_context(instance=instance, resources={"inbox": resource}))
        assert [r.job_name for r in result.run_requests] == ["billing_ingest"]


# --- the accounting checks can fail -----------------------------------------------------------------

def _shard_of_ft001(count: int) -> str:
    return Shard(shard_of("ft-001", count), count).key


def _materialize_metrics(tmp_path, inbox) -> dict[str, bool]:
    from ftops.defs.ingest import metric_samples
    from ftops.defs.io_manager import PartitionedParquetIOManager
    from ftops.defs.partitions import FleetPartitions, configured, shard_day_key
    from ftops.defs.resources import PolicyResource

    warehouse = str(tmp_path / "warehouse")
    partitions = FleetPartitions("2026-11-01", 4)
    result = dg.materialize(
        configured([metric_samples], partitions), partition_key=shard_day_key("2026-11-20", _shard_of_ft001(4)),
        resources={"io_manager": PartitionedParquetIOManager(base_path=warehouse),
                   "inbox": InboxResource(inbox_path=str(inbox), warehouse_path=warehouse,
                                          partitions_start=partitions.start, shards=partitions.shards),
                   "policy": PolicyResource()},
        run_config={"ops": {"metric_samples": {"config": {"as_of": "2026-11-21T02:00:00Z"}}}},
    )
    return _check_results(result)


def test_metric_checks_pass_on_a_clean_inbox(tmp_path, inbox):
    assert all(_materialize_metrics(tmp_path, inbox).values())


def test_balance_fails_when_the_asset_loses_rows_on_the_way_to_storage(tmp_path, inbox, monkeypatch):
    import ftops.defs.io_manager as io_manager

    real = io_manager._write
    monkeypatch.setattr(io_manager, "_write", lambda df, target: real(df.iloc[3:], target))
    checks = _materialize_metrics(tmp_path, inbox)
    assert not checks["row_accounting_balances"] and checks["no_duplicate_rows"]


def test_no_duplicate_rows_fails_when_the_stored_table_repeats_a_key(tmp_path, inbox, monkeypatch):
    import ftops.defs.io_manager as io_manager

    real = io_manager._write
    monkeypatch.setattr(io_manager, "_write", lambda df, target: real(pd.concat([df, df.iloc[:1]]), target))
    checks = _materialize_metrics(tmp_path, inbox)
    assert not checks["no_duplicate_rows"]


def test_balance_fails_when_a_reader_silently_drops_a_row(tmp_path, inbox, monkeypatch):
    import ftops.readers.metric_export as metric_export

    real = metric_export._read_jsonl

    def lossy(*args, **kwargs):
        pieces, refused = real(*args, **kwargs)
        table, lines = pieces[0]
        return [(table.slice(1), lines[1:]), *pieces[1:]], refused

    monkeypatch.setattr(metric_export, "_read_jsonl", lossy)
    assert not _materialize_metrics(tmp_path, inbox)["row_accounting_balances"]


def test_contract_valid_fails_on_a_table_outside_its_contract():
    from ftops.defs.checks import contract_check
    from ftops.schemas import METRIC_SAMPLES

    bad = pd.DataFrame({"ts": [pd.Timestamp("2026-11-20", tz="UTC")], "job_id": ["j"], "metric": ["banana"],
                        "value": [1.0], "source": ["x"]})
    assert not contract_check(bad, METRIC_SAMPLES).passed
