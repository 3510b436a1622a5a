"""Reading stored tables in tests: partitioned assets whatever their partitions (days, shard-days)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_partitions(warehouse: Path, asset: str, day: str | None = None) -> pd.DataFrame:
    """Every stored partition of `asset` (only those of `day` when given), concatenated.

    Daily assets are stored as `<asset>/<day>.parquet`, shard-day assets as `<asset>/<day>/<shard>.parquet`.
    """
    folder = Path(warehouse) / asset
    if day is None:
        paths = sorted(folder.glob("*.parquet")) + sorted(folder.glob("*/*.parquet"))
    else:
        paths = sorted(folder.glob(f"{day}.parquet")) + sorted(folder.glob(f"{day}/*.parquet"))
    frames = [pd.read_parquet(p) for p in paths]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stored_days(warehouse: Path, asset: str) -> list[str]:
    """The days with at least one stored partition file."""
    folder = Path(warehouse) / asset
    return sorted({p.stem for p in folder.glob("*.parquet")} | {p.name for p in folder.iterdir() if p.is_dir()})
