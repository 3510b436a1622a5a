"""Time partitions of the ingest tables.

Daily, by measurement: a busy fleet (40 jobs, 2-4 million samples a day) makes ~30-60 MiB
Parquet files a day, small enough to rebuild in seconds and large enough that a week is seven
files, not 168. Backfills run as a single run over the whole range.
"""

from __future__ import annotations

import warnings

import dagster as dg
import pandas as pd

# Single-run backfills are the point of these partitions; the API is marked beta in Dagster 1.13.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

from ftops.defs.resources import PARTITIONS_START

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)


def partition_range(min_ts: str, max_ts: str) -> tuple[str, str] | None:
    """The first and last existing daily partition keys covering [min_ts, max_ts]."""
    keys = daily_partitions.get_partition_keys()
    first = max(pd.Timestamp(min_ts).strftime("%Y-%m-%d"), keys[0])
    last = min(pd.Timestamp(max_ts).strftime("%Y-%m-%d"), keys[-1])
    if first > last:
        return None
    return first, last
