"""Partitions: days from the configured start and, for the sample-level assets, job shards of each day.

`metric_samples`, `run_health` and `anomalies` are partitioned by `day` x `shard` (a
MultiPartitionsDefinition): one run holds one shard-day, so memory follows the size of a shard, not
of the fleet. Their backfill policy puts one shard-day in each run, so a backfill of a range fans out
into runs that the run queue (dagster.yaml) or the Kubernetes run launcher spread out.
`billing_line_items` is partitioned by day alone: a day of bills is small.

The start date and the shard count come from ftops.yaml (`partitions:`). The asset decorators use
placeholders; `configured` swaps in the configured definitions when the code location is built, and
the inbox resource carries the same two settings for staging and the sensor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import dagster as dg
import pandas as pd

from ftops.policy import PartitionsPolicy
from ftops.sharding import Shard, all_shards

# Backfill policies are marked beta in Dagster 1.13.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
# The mapping that keeps an input on its shard (and reads the previous day) is beta in Dagster 1.13.
warnings.filterwarnings("ignore", message="Class `MultiPartitionMapping`", category=dg.BetaWarning)

DAY, SHARD = "day", "shard"


@dataclass(frozen=True)
class FleetPartitions:
    start: str
    shards: int

    @classmethod
    def from_policy(cls, policy: PartitionsPolicy) -> "FleetPartitions":
        return cls(policy.start, policy.shards)

    @cached_property
    def daily(self) -> dg.DailyPartitionsDefinition:
        return dg.DailyPartitionsDefinition(start_date=self.start, end_offset=1)

    @cached_property
    def shard_days(self) -> dg.MultiPartitionsDefinition:
        return dg.MultiPartitionsDefinition({
            DAY: self.daily,
            SHARD: dg.StaticPartitionsDefinition([s.key for s in all_shards(self.shards)]),
        })

    @cached_property
    def monthly(self) -> dg.MonthlyPartitionsDefinition:
        """Calendar months from the one holding the start, keyed `2026-11`; the month in progress too."""
        first = self.earliest.replace(day=1).to_pydatetime()
        return dg.MonthlyPartitionsDefinition(start_date=first, fmt="%Y-%m", end_offset=1)

    @cached_property
    def weekly(self) -> dg.WeeklyPartitionsDefinition:
        """ISO weeks (Monday to Sunday) from the one holding the start, keyed by their Monday; the week in
        progress too."""
        monday = (self.earliest - pd.Timedelta(days=self.earliest.weekday())).to_pydatetime()
        return dg.WeeklyPartitionsDefinition(start_date=monday, day_offset=1, end_offset=1)

    @property
    def earliest(self) -> pd.Timestamp:
        return pd.Timestamp(self.start, tz="UTC")

    def day_range(self, min_ts: str, max_ts: str) -> tuple[str, str] | None:
        """The first and last existing day keys covering [min_ts, max_ts]."""
        keys = self.daily.get_partition_keys()
        if not keys:
            return None
        first = max(pd.Timestamp(min_ts).strftime("%Y-%m-%d"), keys[0])
        last = min(pd.Timestamp(max_ts).strftime("%Y-%m-%d"), keys[-1])
        return (first, last) if first <= last else None

    def shard_day_range(self, days: tuple[str, str], shard: Shard) -> tuple[str, str]:
        """Range tags for one shard over a range of days (Dagster takes the product of the dimensions)."""
        return (shard_day_key(days[0], shard.key), shard_day_key(days[1], shard.key))


def shard_day_key(day: str, shard: str) -> str:
    return str(dg.MultiPartitionKey({DAY: day, SHARD: shard}))


# Placeholders for the decorators; `configured` replaces them.
_PLACEHOLDER = FleetPartitions(PartitionsPolicy.start, 1)
daily_partitions = _PLACEHOLDER.daily
shard_day_partitions = _PLACEHOLDER.shard_days
monthly_partitions = _PLACEHOLDER.monthly
weekly_partitions = _PLACEHOLDER.weekly


# One shard-day per run: a backfill of a range fans out by shard (and day); see the module docstring.
ONE_SHARD_DAY_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


def configured(assets: list, partitions: FleetPartitions) -> list:
    """The assets with the placeholder partitions replaced by the configured ones."""
    swap = {id(daily_partitions): partitions.daily, id(shard_day_partitions): partitions.shard_days,
            id(monthly_partitions): partitions.monthly, id(weekly_partitions): partitions.weekly}

    def replace(spec: dg.AssetSpec) -> dg.AssetSpec:
        new = swap.get(id(spec.partitions_def))
        return spec if new is None else spec.replace_attributes(partitions_def=new)

    return [a.map_asset_specs(replace) if isinstance(a, dg.AssetsDefinition) else a for a in assets]


# Sample-level inputs keep their shard; `days_back` days before are read as context.
def same_shard(days_back: int = 0) -> dg.MultiPartitionMapping:
    return dg.MultiPartitionMapping({
        DAY: dg.DimensionPartitionMapping(DAY, dg.TimeWindowPartitionMapping(start_offset=-days_back)),
        SHARD: dg.DimensionPartitionMapping(SHARD, dg.IdentityPartitionMapping()),
    })


def split_key(key: str) -> tuple[str, str]:
    """(day, shard) of a shard-day key; Dagster joins the dimensions in name order: `2026-11-20|3-of-8`."""
    day, shard = str(key).split("|")
    return day, shard


def shard_of_run(context: dg.AssetExecutionContext) -> Shard:
    """The one shard a run of a sample-level asset covers (a run spans days of one shard)."""
    names = {split_key(k)[1] for k in context.partition_keys}
    if len(names) != 1:
        raise dg.DagsterInvariantViolationError(
            f"a run of a sample-level asset covers one shard (a range of days of it); got {sorted(names)}")
    return Shard.parse(names.pop())


def days_of_run(context: dg.AssetExecutionContext) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The [start, end) of each day a run of a sample-level asset covers."""
    days = sorted({split_key(k)[0] for k in context.partition_keys})
    return [(pd.Timestamp(d, tz="UTC"), pd.Timestamp(d, tz="UTC") + pd.Timedelta(days=1)) for d in days]
