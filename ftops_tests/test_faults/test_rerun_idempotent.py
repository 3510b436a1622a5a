"""Materialising a partition twice, or backfilling a range over existing partitions, stores the same tables.

The inbox sensor and the automation sensor both re-request partitions that already exist (a late file,
a retried run, a backfill a person starts from the UI); a re-run that double counts or drops rows would
change a table that nothing new was read for.
"""

import dagster as dg
import pandas as pd
import yaml

from ftops.defs.partitions import shard_day_key
from ftops.defs.runner import materialize_graph
from ftops.defs.sensors import RANGE_END, RANGE_START
from ftops.definitions import build_definitions
from ftops.sharding import all_shards
from ftops_tests.test_faults.fleet import demo_fleet, frame_hash, warehouse_hashes

SHARDED_JOBS = ("metric_ingest", "monitoring_update")
DAILY_JOBS = ("billing_ingest",)
SAMPLE_LEVEL = ("metric_samples", "run_health", "anomalies")
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
        days = sorted({k.split("/")[1] for k in first if k.startswith("metric_samples/")})
        assert len(days) == 3 and first  # two days of fleet cross three calendar days
        shards = [s.key for s in all_shards(defs.resources["inbox"].shards)]
        assert len(shards) > 1 and all(f"metric_samples/{days[0]}/{s}.parquet" in first for s in shards)

        # each partition again, on its own
        for day in days:
            for name in DAILY_JOBS:
                defs.resolve_job_def(name).execute_in_process(instance=instance, partition_key=day, run_config=QUIET)
            for name in SHARDED_JOBS:
                for shard in shards:
                    defs.resolve_job_def(name).execute_in_process(
                        instance=instance, partition_key=shard_day_key(day, shard), run_config=QUIET)
        assert _changed(first, warehouse_hashes(warehouse)) == []

        # a backfill of a range over partitions that already exist: days of one run, shard by shard
        for name in DAILY_JOBS:
            defs.resolve_job_def(name).execute_in_process(
                instance=instance, tags={RANGE_START: days[1], RANGE_END: days[-1]}, run_config=QUIET)
        for name in SHARDED_JOBS:
            for shard in shards:
                tags = {RANGE_START: shard_day_key(days[1], shard), RANGE_END: shard_day_key(days[-1], shard)}
                defs.resolve_job_def(name).execute_in_process(instance=instance, tags=tags, run_config=QUIET)
        assert _changed(first, warehouse_hashes(warehouse)) == []

        # the whole graph again, with the stateful alerts reading their own previous table
        materialize_graph(defs, instance, *fleet.span(), as_of=fleet.end, log_level="ERROR")
        assert _changed(first, warehouse_hashes(warehouse)) == []


def _content(files) -> str:
    """Hash of the rows of these partition files together, whatever shards hold them."""
    frames = [f for f in map(pd.read_parquet, files) if not f.empty]
    return frame_hash(pd.concat(frames, ignore_index=True))


def test_changing_the_shard_count_loses_and_doubles_nothing(tmp_path):
    """Re-sharding names new partitions (`1-of-3`, not `1-of-4`); after re-materialising, the sample
    tables hold the same rows, and the job-level tables read only the current shards."""
    fleet = demo_fleet(tmp_path, n_jobs=16, days=1)
    warehouse = tmp_path / "warehouse"
    with dg.instance_for_test() as instance:
        materialize_graph(build_definitions(fleet.settings(warehouse)), instance, *fleet.span(),
                          as_of=fleet.end, log_level="ERROR")
        before = {a: _content((warehouse / a).glob("*/*.parquet")) for a in SAMPLE_LEVEL}
        jobs_before = {k: v for k, v in warehouse_hashes(warehouse).items() if "/" not in k}

        policy = yaml.safe_load(fleet.policy.read_text())
        old = policy["partitions"]["shards"]
        policy["partitions"]["shards"] = old - 1
        fleet.policy.write_text(yaml.safe_dump(policy))
        resharded = build_definitions(fleet.settings(warehouse))
        materialize_graph(resharded, instance, *fleet.span(), as_of=fleet.end, log_level="ERROR")

    new_keys = {s.key for s in all_shards(old - 1)}
    for asset in SAMPLE_LEVEL:
        files = list((warehouse / asset).glob("*/*.parquet"))
        assert {p.stem for p in files} == new_keys | {s.key for s in all_shards(old)}  # old files stay
        # what the new definitions read: the current shards' files only
        assert _content(p for p in files if p.stem in new_keys) == before[asset], asset
    after = {k: v for k, v in warehouse_hashes(warehouse).items() if "/" not in k}
    assert _changed(jobs_before, after) == []  # alerts, costs, budgets: nothing lost or counted twice
