"""materialize_graph: shard runs in worker processes store exactly what runs in this process store."""

import dagster as dg
import pytest

from ftops.defs.jobs import GRAPH_STEPS
from ftops.defs.runner import materialize_graph
from ftops.definitions import build_definitions
from ftops_tests.test_faults.fleet import demo_fleet, warehouse_hashes


def test_shard_runs_in_worker_processes_store_the_same_tables(tmp_path):
    fleet = demo_fleet(tmp_path, n_jobs=16, days=1)
    hashes = {}
    for processes in (1, 2):
        warehouse = tmp_path / f"warehouse-{processes}"
        settings = fleet.settings(warehouse)
        with dg.instance_for_test() as instance:
            results = materialize_graph(build_definitions(settings), instance, *fleet.span(), as_of=fleet.end,
                                        log_level="ERROR", settings=settings, processes=processes)
            assert all(r.success for r in results)
            shard_runs = [r for r in results if r.dagster_run.tags.get("ftops/shard")]
            shard_steps = sum(cut == "shard_days" for _, cut in GRAPH_STEPS)  # one run per shard each
            assert len(shard_runs) == shard_steps * len({r.dagster_run.tags["ftops/shard"] for r in shard_runs}) > 2
            # every run is recorded on the instance, whichever process executed it
            assert {r.dagster_run.run_id for r in results} == {r.run_id for r in instance.get_runs()}
        hashes[processes] = warehouse_hashes(warehouse)
    assert hashes[1] and hashes[1] == hashes[2]


def test_a_failing_shard_run_in_a_worker_fails_the_graph_with_its_error(tmp_path):
    fleet = demo_fleet(tmp_path, n_jobs=16, days=1)
    warehouse = tmp_path / "warehouse"
    settings = fleet.settings(warehouse)
    defs = build_definitions(settings)
    defs.resources["inbox"].staging().stage_inbox(fleet.inbox)
    staged = sorted((warehouse / "_staging" / "metrics").glob("*[0-9a-f].parquet"))
    staged[0].write_bytes(b"not parquet")  # one shard's input is damaged after staging
    with dg.instance_for_test() as instance, pytest.raises(Exception, match="Parquet|parquet"):
        materialize_graph(defs, instance, *fleet.span(), as_of=fleet.end, log_level="ERROR",
                          settings=settings, processes=2)
