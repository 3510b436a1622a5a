"""Parquet IO manager on UPath: one file per partition, any fsspec URL as the warehouse root.

Layout: `<base_path>/<asset key>/<day>.parquet` for daily assets, `<base_path>/<asset key>/<day>/<shard>.parquet`
for shard-day assets (defs/partitions.py) and `<base_path>/<asset key>.parquet` otherwise. A run over a
range of days (of one shard) returns one DataFrame; the asset's `partition_column` metadata names the
time column that splits it into days, and rows go to the shard of their `job_id`.
Writes go to a temporary name and are renamed into place, so a failed run never leaves a
half-written partition; temporary files older than an hour (a killed run's) are removed when
the next write to their folder starts.
"""

from __future__ import annotations

import uuid

import joblib

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

from ftops.defs.partitions import split_key
from ftops.sharding import Shard, shard_indices
from ftops.staging import remove_stale_tmp


def table_path(base_path: str, key: dg.AssetKey, partition_key: str | None = None) -> UPath:
    """Where an asset's table (or one partition of it) lives in the warehouse."""
    path = UPath(base_path).joinpath(*key.path)
    if partition_key is None:
        return path.with_name(path.name + ".parquet")
    if "|" in str(partition_key):
        day, shard = split_key(partition_key)
        return path / day / f"{shard}.parquet"
    return path / f"{partition_key}.parquet"


def read_table(base_path: str, key: dg.AssetKey, partition_key: str | None = None) -> pd.DataFrame | None:
    """An asset's stored table, or None when it was never materialised."""
    path = table_path(base_path, key, partition_key)
    return _read(path) if path.exists() else None


def stored_partition_keys(base_path: str, key: dg.AssetKey) -> list[str]:
    """The partition keys of an asset that have a stored file (`day` or `day|shard`), sorted; one listing."""
    folder = UPath(base_path).joinpath(*key.path)
    root = folder.path.rstrip("/") + "/"
    keys = []
    for path in _stored_files(folder):
        parts = path[len(root):].removesuffix(".parquet").split("/")
        keys.append("|".join(parts))
    return sorted(keys)


def read_rows(base_path: str, key: dg.AssetKey, partition_keys: list[str] | None = None, *,
              filters: list | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """Rows of an asset's table that match pyarrow `filters` (e.g. `[("job_id", "in", ids)]`), reading
    only `columns`: the whole table when `partition_keys` is None, else those partitions (missing
    ones contribute nothing). Each file is filtered as it is read, so memory follows the matches."""
    paths = ([table_path(base_path, key)] if partition_keys is None
             else [table_path(base_path, key, k) for k in partition_keys])
    frames = [pq.read_table(p.path, filesystem=p.fs, filters=filters, columns=columns).to_pandas()
              for p in paths if p.exists()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=columns or [])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def write_table(df: pd.DataFrame, base_path: str, key: dg.AssetKey, partition_key: str | None = None) -> None:
    """Store a table where the IO manager would (for tables written outside an asset's output)."""
    _write(df, table_path(base_path, key, partition_key))


def _write(df: pd.DataFrame, target: UPath) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # a run killed between write and rename leaves its .tmp behind; nothing else ever removes it
    remove_stale_tmp(target.parent, recursive=False)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as fh:
        df.to_parquet(fh, index=False)
    tmp.rename(target)


def _stored_files(folder: UPath) -> set[str]:
    """The `.path` of every Parquet file under `folder` (one recursive listing; no `.tmp` files)."""
    if not folder.exists():
        return set()
    return {p.path for p in folder.rglob("*.parquet")}


def _read(path: UPath) -> pd.DataFrame:
    return pq.read_table(path.path, filesystem=path.fs).to_pandas()


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores asset DataFrames as Parquet under `base_path` (a folder or an fsspec URL)."""

    base_path: str

    def _file(self, key: dg.AssetKey, partition_key: str | None) -> UPath:
        return table_path(self.base_path, key, partition_key)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | None) -> None:
        if obj is None:
            return
        key = context.asset_key
        if not context.has_asset_partitions:
            _write(obj, self._file(key, None))
            context.add_output_metadata({"path": dg.MetadataValue.path(str(self._file(key, None)))})
            return
        keys = context.asset_partition_keys
        if len(keys) == 1:
            _write(obj, self._file(key, keys[0]))
            return
        column = (context.definition_metadata or {}).get("partition_column")
        if column is None:
            raise dg.DagsterInvariantViolationError(
                f"{key.to_user_string()}: a multi-partition output needs `partition_column` metadata"
            )
        times = obj[column]
        shard_index = None
        for partition_key in keys:
            day = split_key(partition_key)[0] if "|" in str(partition_key) else str(partition_key)
            start = pd.Timestamp(day, tz="UTC")
            mask = ((times >= start) & (times < start + pd.Timedelta(days=1))).to_numpy(dtype=bool, copy=True)
            if "|" in str(partition_key):
                shard = Shard.parse(split_key(partition_key)[1])
                if shard_index is None:
                    shard_index = shard_indices(obj["job_id"], shard.count)
                mask &= shard_index == shard.index
            _write(obj[mask].reset_index(drop=True), self._file(key, partition_key))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key = context.asset_key
        if not context.has_asset_partitions:
            path = self._file(key, None)
            if not path.exists():
                # an input nothing has produced yet (no log has arrived, so console_tails was never
                # materialised): no rows, like a partition that was never materialised
                context.log.warning(f"{key.to_user_string()} has not been materialised yet: read as empty")
                return pd.DataFrame()
            return _read(path)
        # Partitions never materialised (no file) contribute no rows. One listing of the asset's folder
        # says which files exist: an input of every partition (alerts reads all of anomalies) would
        # otherwise ask once per partition that ever existed, one or two requests each on object storage.
        stored = _stored_files(UPath(self.base_path).joinpath(*key.path))
        frames = [_read(p) for k in context.asset_partition_keys if (p := self._file(key, k)).path in stored]
        frames = [f for f in frames if not f.empty]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)


def model_path(base_path: str, key: dg.AssetKey) -> UPath:
    """Where a model asset (a fitted scikit-learn pipeline with what it was evaluated on) lives."""
    path = UPath(base_path).joinpath(*key.path)
    return path.with_name(path.name + ".joblib")


def read_model(base_path: str, key: dg.AssetKey) -> object | None:
    """A stored model, or None when it was never materialised."""
    path = model_path(base_path, key)
    if not path.exists():
        return None
    with path.open("rb") as fh:
        return joblib.load(fh)


class JoblibModelIOManager(dg.ConfigurableIOManager):
    """Stores model assets (any picklable object) with joblib as `<base_path>/<asset key>.joblib`,
    written to a temporary name and renamed into place like the tables. Only unpartitioned assets.
    An asset that returns None stores nothing, and its consumers load None."""

    base_path: str

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            return
        target = model_path(self.base_path, context.asset_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(target.parent, recursive=False)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        with tmp.open("wb") as fh:
            joblib.dump(obj, fh)
        tmp.rename(target)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target))})

    def load_input(self, context: dg.InputContext) -> object | None:
        # None: the model asset had nothing to fit (e.g. no failure yet to learn from) and stored
        # nothing; consumers treat that as "no model" and say so
        return read_model(self.base_path, context.asset_key)
