"""Read the warehouse without Dagster: the Parquet layout `defs/io_manager.py` writes, nothing more.

Layout (see the IO manager): `<base>/<table>.parquet` for an unpartitioned table, `<base>/<table>/<day>.parquet`
for a daily one and `<base>/<table>/<day>/<shard>.parquet` for a shard-day one. Files are written
under a hidden temporary name and renamed into place, so a visible `.parquet` file is always a
complete, successful write, and its modification time is when that write finished.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pyarrow.parquet as pq
from upath import UPath


def _is_table_file(path: UPath) -> bool:
    return path.name.endswith(".parquet") and not path.name.startswith(".")


def _mtime(info: dict) -> float | None:
    """Unix seconds of a file's last modification from an fsspec `info` dict (local, S3, GCS, Azure)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        try:
            return pd.Timestamp(value).timestamp()
        except (ValueError, TypeError):
            continue
    return None


class WarehouseReader:
    """Tables of one warehouse (a folder or any fsspec URL), read as the IO manager stored them."""

    def __init__(self, base_path: str) -> None:
        self.base_path = str(base_path)
        self.root = UPath(self.base_path)

    def exists(self) -> bool:
        return self.root.exists()

    def _single_file(self, name: str) -> UPath:
        return self.root / f"{name}.parquet"

    def _read(self, path: UPath) -> pd.DataFrame:
        return pq.read_table(path.path, filesystem=path.fs).to_pandas()

    def table(self, name: str) -> pd.DataFrame | None:
        """An unpartitioned table, or None when it was never materialised."""
        path = self._single_file(name)
        return self._read(path) if path.exists() else None

    def days(self, name: str) -> list[str]:
        """The day keys of a partitioned table that hold at least one file, oldest first."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        days = set()
        for child in folder.iterdir():
            if child.name.startswith("."):
                continue
            if child.is_dir():
                if any(_is_table_file(p) for p in child.iterdir()):
                    days.add(child.name)
            elif _is_table_file(child):
                days.add(child.name[: -len(".parquet")])
        return sorted(days)

    def day(self, name: str, day: str) -> pd.DataFrame:
        """Every shard of one day of a partitioned table (no rows when none is stored)."""
        folder = self.root / name
        files = [folder / f"{day}.parquet"] if (folder / f"{day}.parquet").exists() else []
        if (folder / day).is_dir():
            files += sorted((p for p in (folder / day).iterdir() if _is_table_file(p)), key=lambda p: p.name)
        frames = [f for f in (self._read(p) for p in files) if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def last_written(self, name: str) -> float | None:
        """Unix seconds of the newest stored file of a table (any partition), or None when none is stored."""
        single = self._single_file(name)
        times = []
        if single.exists():
            times.append(_mtime(single.fs.info(single.path)))
        folder = self.root / name
        if folder.is_dir():
            found = folder.fs.find(folder.path, detail=True)
            times += [_mtime(info) for path, info in found.items()
                      if path.endswith(".parquet") and not path.rsplit("/", 1)[-1].startswith(".")]
        times = [t for t in times if t is not None]
        return max(times) if times else None
