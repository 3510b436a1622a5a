"""Materialising a partition twice, or backfilling a range over existing partitions, stores the same tables.

The inbox sensor and the automation sensor both re-request partitions that already exist (a late file,
a retried run, a backfill a person starts from the UI); a re-run that double counts or drops rows would
change a table that nothing new was read for.
"""

import dagster as dg

from ftops.defs.runner import materialize_graph
from ftops.defs.sensors import RANGE_END, RANGE_START
from ftops.definitions import build_definitions
from ftops_tests.test_faults.fleet import demo_fleet, warehouse_hashes

PARTITIONED_JOBS = ("metric_ingest", "billing_ingest", "monitoring_update")
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def test_rerunning_partitions_and_backfilling_over_them_changes_no_table(tmp_path):
    fleet = demo_fleet(tmp_path)
    warehouse = tmp_path / "warehouse"
    defs = build_definitions(fleet.settings(warehouse))
    with dg.instance_for_test() as instance:
        materialize_graph(defs, instance, *fleet.span(), as_of=fleet.end, log_level="ERROR")
        first = warehouse_hashes(warehouse)
        days = sorted(k.split("/")[1].removesuffix(".parquet") for k in first if k.startswith("metric_samples/"))
        assert len(days) == 3 and first  # two days of fleet cross three calendar days

        # each partition again, on its own
        for day in days:
            for name in PARTITIONED_JOBS:
                defs.resolve_job_def(name).execute_in_process(instance=instance, partition_key=day, run_config=QUIET)
        assert _changed(first, warehouse_hashes(warehouse)) == []

        # a single-run backfill of a range over partitions that already exist
        tags = {RANGE_START: days[1], RANGE_END: days[-1]}
        for name in PARTITIONED_JOBS:
            defs.resolve_job_def(name).execute_in_process(instance=instance, tags=tags, run_config=QUIET)
        assert _changed(first, warehouse_hashes(warehouse)) == []

        # the whole graph again, with the stateful alerts reading their own previous table
        materialize_graph(defs, instance, *fleet.span(), as_of=fleet.end, log_level="ERROR")
        assert _changed(first, warehouse_hashes(warehouse)) == []
