"""Declarative automation: downstream assets follow ingest, for exactly the partitions that changed."""

import dagster as dg

from ftops.definitions import Settings, build_definitions
from ftops.defs.partitions import shard_day_key
from ftops.defs.sensors import RANGE_END, RANGE_START
from ftops.sharding import Shard, shard_of
from ftops_tests.test_defs.inbox_builder import write_bill, write_jobs, write_metrics

WATCHED = ["run_health", "anomalies", "alerts", "alert_deliveries", "job_costs", "budget_status"]


def _requested(result) -> dict[str, int]:
    return {k: result.get_num_requested(dg.AssetKey(k)) for k in WATCHED}


def _materialize_catalog(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("instance_catalog")])


def test_job_costs_waits_for_the_catalogue_it_prices_with(tmp_path):
    inbox = tmp_path / "inbox"
    write_jobs(inbox)
    defs = build_definitions(Settings(str(inbox), str(tmp_path / "wh"), None))
    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        defs.resolve_job_def("job_registry_ingest").execute_in_process(instance=instance)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.get_num_requested(dg.AssetKey("job_costs")) == 0  # the catalogue is still missing
        _materialize_catalog(defs, instance)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.get_num_requested(dg.AssetKey("job_costs")) == 1


def _partitions(result, key: str) -> set[str]:
    return set(result.get_requested_partitions(dg.AssetKey(key)))


def test_downstream_assets_follow_ingest_partition_by_partition(tmp_path):
    inbox = tmp_path / "inbox"
    write_jobs(inbox)
    defs = build_definitions(Settings(str(inbox), str(tmp_path / "wh"), None))
    days = {RANGE_START: "2026-11-20", RANGE_END: "2026-11-21"}
    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert not any(_requested(result).values())  # nothing ingested yet: nothing to do...
        # ...but the catalogue, which nothing upstream announces; job_costs waits for it to exist
        assert result.get_num_requested(dg.AssetKey("instance_catalog")) == 1
        _materialize_catalog(defs, instance)

        defs.resolve_job_def("job_registry_ingest").execute_in_process(instance=instance)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        # the registry feeds costs; it must not refresh every daily anomalies partition since 2023
        assert _requested(result) == {**dict.fromkeys(WATCHED, 0), "job_costs": 1, "budget_status": 1}
        defs.resolve_job_def("costs_update").execute_in_process(instance=instance)

        write_metrics(inbox)  # ft-001's: one shard, as the inbox sensor would request it
        own = Shard(shard_of("ft-001", 8), 8).key
        shard_days = {RANGE_START: shard_day_key("2026-11-20", own), RANGE_END: shard_day_key("2026-11-21", own)}
        defs.resolve_job_def("metric_ingest").execute_in_process(instance=instance, tags=shard_days)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert _partitions(result, "run_health") == {shard_day_key(d, own) for d in ("2026-11-20", "2026-11-21")}
        # anomalies of a day read the day before (of the same shard) as context
        assert _partitions(result, "anomalies") == {shard_day_key(d, own)
                                                    for d in ("2026-11-20", "2026-11-21", "2026-11-22")}
        assert result.get_num_requested(dg.AssetKey("alerts")) == 0  # waits for anomalies
        defs.resolve_job_def("monitoring_update").execute_in_process(instance=instance, tags=shard_days)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.get_num_requested(dg.AssetKey("alerts")) == 1
        assert result.get_num_requested(dg.AssetKey("budget_status")) == 1  # progress comes from run_health

        write_bill(inbox)
        defs.resolve_job_def("billing_ingest").execute_in_process(instance=instance, tags=days)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.get_num_requested(dg.AssetKey("job_costs")) == 1


def test_an_input_updated_right_after_a_request_is_not_lost(tmp_path):
    """A bill that lands while job_costs runs: seen on the tick after the request, it must still
    trigger job_costs (Dagster's `since` would otherwise let the reset win)."""
    inbox = tmp_path / "inbox"
    write_jobs(inbox)
    defs = build_definitions(Settings(str(inbox), str(tmp_path / "wh"), None))
    days = {RANGE_START: "2026-11-20", RANGE_END: "2026-11-21"}
    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        _materialize_catalog(defs, instance)
        defs.resolve_job_def("job_registry_ingest").execute_in_process(instance=instance)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.get_num_requested(dg.AssetKey("job_costs")) == 1  # its run starts now...
        write_bill(inbox)  # ...and the bill lands before the next tick
        defs.resolve_job_def("billing_ingest").execute_in_process(instance=instance, tags=days)
        requested = 0
        for _ in range(2):
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
            requested += result.get_num_requested(dg.AssetKey("job_costs"))
        assert requested == 1


def test_analytics_follow_their_inputs_at_most_hourly(tmp_path):
    """Benchmarks, recommendations and models refresh once an hour when their inputs changed, so they
    never queue in front of the runs that act on a budget crossing."""
    from datetime import datetime, timezone

    inbox = tmp_path / "inbox"
    write_jobs(inbox)
    defs = build_definitions(Settings(str(inbox), str(tmp_path / "wh"), None))

    def at(hh_mm: str) -> datetime:
        return datetime.fromisoformat(f"2026-11-21T{hh_mm}:00").replace(tzinfo=timezone.utc)

    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=at("10:01"))
        _materialize_catalog(defs, instance)
        defs.resolve_job_def("job_registry_ingest").execute_in_process(instance=instance)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor,
                                                   evaluation_time=at("10:05"))
        assert result.get_num_requested(dg.AssetKey("job_costs")) == 1  # costs follow at once
        for analytic in ("benchmark_comparison", "instance_recommendations", "resource_model", "failure_risk_model"):
            assert result.get_num_requested(dg.AssetKey(analytic)) == 0
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor,
                                                   evaluation_time=at("11:00"))
        assert result.get_num_requested(dg.AssetKey("benchmark_comparison")) == 1
        assert result.get_num_requested(dg.AssetKey("resource_model")) == 1
