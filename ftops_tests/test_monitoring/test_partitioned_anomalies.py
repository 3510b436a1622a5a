"""The `anomalies` asset stores the same rows however its shard-day partitions are grouped into runs."""

import dagster as dg
import numpy as np
import pandas as pd

from ftops.defs.io_manager import PartitionedParquetIOManager, read_table
from ftops.defs.monitoring import anomalies
from ftops.defs.partitions import FleetPartitions, configured, shard_day_key, shard_day_partitions
from ftops.defs.resources import PolicyResource
from ftops.defs.sensors import RANGE_END, RANGE_START
from ftops.sharding import Shard, shard_of

from .helpers import series

DAYS = ["2026-11-20", "2026-11-21"]


def _samples() -> pd.DataFrame:
    # GPU 0 idle from 20:00 on the first day to 05:13 on the second: an episode across midnight
    start = pd.Timestamp("2026-11-20 20:00", tz="UTC")
    n = int((pd.Timestamp("2026-11-21 05:13", tz="UTC") - start) / pd.Timedelta("30s")) + 1
    idle = series("gpu_utilization_pct", np.full(n, 3.0), every="30s", device="0", start=start)
    busy = series("gpu_utilization_pct", np.full(n, 88.0), every="30s", device="1", start=start)
    loss = series("training_loss", np.linspace(2.0, 1.0, 200), every="5min", start=start)
    return pd.concat([idle, busy, loss], ignore_index=True)


SAMPLES = _samples()


PARTITIONS = FleetPartitions("2026-11-01", 2)
SHARD = Shard(shard_of("job-a", 2), 2).key  # the shard of the one job


@dg.asset(name="metric_samples", partitions_def=shard_day_partitions, metadata={"partition_column": "ts"})
def _metric_samples(context: dg.AssetExecutionContext) -> pd.DataFrame:
    window = context.partition_time_window
    return SAMPLES[(SAMPLES["ts"] >= window.start) & (SAMPLES["ts"] < window.end)].reset_index(drop=True)


@dg.asset(name="job_registry")
def _job_registry() -> pd.DataFrame:
    return pd.DataFrame({"job_id": ["job-a"], "status": ["running"]})


def _warehouse(tmp_path, runs: list[list[str]]) -> dict[str, pd.DataFrame]:
    resources = {"io_manager": PartitionedParquetIOManager(base_path=str(tmp_path)), "policy": PolicyResource()}
    samples, found = configured([_metric_samples, anomalies], PARTITIONS)
    key = lambda day: shard_day_key(day, SHARD)  # noqa: E731
    with dg.instance_for_test() as instance:
        assert dg.materialize([_job_registry], instance=instance, resources=resources).success
        for day in ["2026-11-19", *DAYS]:
            assert dg.materialize([samples], partition_key=key(day), instance=instance,
                                  resources=resources).success
        for days in runs:
            tags = {RANGE_START: key(days[0]), RANGE_END: key(days[-1])} if len(days) > 1 else None
            result = dg.materialize([found, samples, _job_registry], selection=[found],
                                    partition_key=key(days[0]) if len(days) == 1 else None, tags=tags,
                                    instance=instance, resources=resources)
            assert result.success
    return {day: read_table(str(tmp_path), dg.AssetKey("anomalies"), key(day)) for day in DAYS}


def test_range_backfill_and_one_run_per_day_store_the_same_anomalies(tmp_path):
    ranged = _warehouse(tmp_path / "range", [DAYS])
    single = _warehouse(tmp_path / "single", [[DAYS[0]], [DAYS[1]]])
    for day in DAYS:
        pd.testing.assert_frame_equal(ranged[day], single[day], obj=day)
    idle = {day: t[t["rule"] == "gpu_underutilized"] for day, t in single.items()}
    # the episode's tail is stored: in the second day's partition, which it reaches until 05:13
    assert len(idle[DAYS[0]]) == 1 and len(idle[DAYS[1]]) == 1
    assert idle[DAYS[0]]["last_ts"].iloc[0] == pd.Timestamp("2026-11-20 23:59:30", tz="UTC")
    assert idle[DAYS[1]]["first_ts"].iloc[0] == pd.Timestamp("2026-11-21 00:00:00", tz="UTC")
    assert idle[DAYS[1]]["last_ts"].iloc[0] == pd.Timestamp("2026-11-21 05:13:00", tz="UTC")
    # every firing sample is in exactly one partition
    assert idle[DAYS[0]]["n_samples"].iloc[0] + idle[DAYS[1]]["n_samples"].iloc[0] == (
        (SAMPLES["device"] == "0").sum() - 10)  # the first 5 min are not yet "sustained"
