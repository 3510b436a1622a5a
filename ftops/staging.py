"""Read each inbox file once and keep what it held, so partitions can be rebuilt at any time.

Staging turns an inbox file into three objects under `<warehouse>/_staging/<kind>/`:
`<identity>.parquet` (accepted rows), `<identity>.rejected.parquet` (rejected rows with their
reason) and `<identity>.json` (the manifest: counts and time range). The manifest is written
last, so a file is staged completely or not at all. Partition assets read the staged rows of the
current version of every file (the newest identity per inbox path) for their time window, which
is why re-running a partition replaces it and never counts a file twice.

Accounting: the manifest keeps the file's records counted from its bytes (`records_in`,
readers.records), what the reader accounted for (`records_out`: accepted rows, rejected rows and
identical repeats, or for wide formats the records that gave a sample or a rejection plus those
skipped on purpose; see readers.base) and whether the reader refused the file as a whole. A file
is balanced when the two counts agree, or when the whole file was refused with its reason.

Time: rows before the first partition or later than `now` + `future_tolerance_hours` would land
in no partition; they are rejected here with that reason, so they are in `rejected_records`.
`now` is injectable (tests and backfills pin it).

Works on any fsspec URL through UPath (a local folder by default, `s3://…` the same way).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

from ftops.readers.base import ReadResult, rejected_rows
from ftops.readers.inbox import KINDS, InboxFile, classify, reader_for
from ftops.readers.records import count_records
from ftops.schemas import JOBS, REJECTED_RECORDS, to_utc

# A `.tmp` older than this belongs to a killed run; younger ones may be a concurrent writer's.
STALE_TMP_SECONDS = 3600.0

# The column that places a row of each kind in time (and so in a partition).
TIME_COLUMNS: dict[str, str | None] = {"jobs": None, "metrics": "ts", "billing": "charge_period_start"}


@dataclass(frozen=True)
class StagedFile:
    identity: str
    kind: str
    relpath: str
    size: int
    mtime_ns: int
    rows_in: int  # accepted + rejected rows (what the staged copies hold)
    accepted: int
    rejected: int
    min_ts: str | None
    max_ts: str | None
    staged_at: str
    records_in: int | None = None  # counted from the file's bytes; None: the file could not be counted
    records_out: int | None = None  # what the reader accounted for (see the module docstring)
    duplicates: int = 0  # identical repeats inside the file, dropped by the reader and counted
    skipped: int = 0  # records holding nothing ftops tracks
    file_rejected: bool = False  # the reader refused the whole file; its one rejection says why

    @property
    def balanced(self) -> bool:
        if self.file_rejected:
            return self.accepted == 0 and self.rejected >= 1
        return self.records_in is not None and self.records_in == self.records_out


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def scan_inbox(inbox: str | UPath) -> list[InboxFile]:
    """Every input file in the inbox, oldest first (by modification time, then path)."""
    root = UPath(inbox)
    if not root.exists():
        return []
    files = []
    for path in root.rglob("*"):
        relpath = path.relative_to(root).as_posix()
        kind = classify(relpath)
        if kind is None or not path.is_file():
            continue
        stat = path.stat()
        files.append(InboxFile(kind, relpath, int(stat.st_size), int(stat.st_mtime * 1e9)))
    return sorted(files, key=lambda f: (f.mtime_ns, f.relpath))


def remove_stale_tmp(folder: UPath, *, now: pd.Timestamp | None = None, grace_seconds: float = STALE_TMP_SECONDS,
                     recursive: bool = True) -> list[str]:
    """Delete `.<name>.<uuid>.tmp` files a killed run left in `folder`; returns their names.

    Only files older than the grace period go, so a writer still renaming its file is left alone.
    """
    if not folder.exists():
        return []
    cutoff = (now or pd.Timestamp.now(tz="UTC")).timestamp() - grace_seconds
    removed = []
    for path in (folder.rglob if recursive else folder.glob)(".*.tmp"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
        except (OSError, AttributeError):  # gone meanwhile, or a store without mtimes: leave it
            continue
    return removed


def _write_parquet_atomic(df: pd.DataFrame, target: UPath) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as fh:
        df.to_parquet(fh, index=False)
    tmp.rename(target)


def _write_text_atomic(text: str, target: UPath) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    tmp.rename(target)


def _read_local(inbox: UPath, file: InboxFile, read) -> tuple[ReadResult, int | None]:
    """Run a reader on a local copy when the inbox is remote (readers read local files).

    Also counts the file's records from its bytes, apart from the reader.
    """
    source = inbox / file.relpath
    if _is_local(source):
        return read(str(source)), count_records(str(source))
    with tempfile.TemporaryDirectory(prefix="ftops-stage-") as tmp:
        local = Path(tmp) / file.relpath  # keep folders: readers derive job ids from them
        local.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as src, local.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return read(str(local)), count_records(str(local))


@dataclass(frozen=True)
class KeyResolution:
    """Rows of several files reduced to one per key: the newest file wins."""

    table: pd.DataFrame
    duplicates: int  # overridden rows identical to the row that won (the same data delivered again)
    superseded: int  # overridden rows with other values (a later file restated them: not an error)


def newest_wins(df: pd.DataFrame, key: list[str], ignore: tuple[str, ...] = ("source",)) -> KeyResolution:
    """Keep the last row of each key (`df` holds files oldest first) and count what it overrode.

    An overridden row is a duplicate when every column but `ignore` equals the winner's (NaN
    equals NaN), else a superseded conflict. Both are counted here, where they are dropped, so
    `len(df) == len(table) + duplicates + superseded`.
    """
    overridden = df.duplicated(key, keep="last").to_numpy()
    if not overridden.any():
        return KeyResolution(df.reset_index(drop=True), 0, 0)
    involved = np.flatnonzero(df.duplicated(key, keep=False).to_numpy())
    sub = df.iloc[involved]
    group = sub.groupby(key, dropna=False, sort=False).ngroup().to_numpy()
    winner = pd.Series(involved).groupby(group).transform("max").to_numpy()
    compare = [c for c in df.columns if c not in ignore]
    digest = pd.util.hash_pandas_object(sub[compare], index=False).to_numpy()
    same = digest == digest[np.searchsorted(involved, winner)]
    lost = involved != winner
    return KeyResolution(
        df[~overridden].reset_index(drop=True), int((lost & same).sum()), int((lost & ~same).sum())
    )


class Staging:
    """The staged copies of inbox files under `<warehouse>/_staging`."""

    def __init__(self, warehouse: str | UPath, earliest: pd.Timestamp | None = None,
                 job_tag_key: str = "job_id", budget_tag_key: str = "budget_category",
                 now: pd.Timestamp | None = None, future_tolerance_hours: float = 24.0) -> None:
        self.root = UPath(warehouse) / "_staging"
        self.earliest = earliest
        self.job_tag_key = job_tag_key
        self.budget_tag_key = budget_tag_key
        self.now = now  # None: the wall clock when a file is staged
        self.future_tolerance_hours = future_tolerance_hours

    def at(self, now: pd.Timestamp | None, future_tolerance_hours: float | None = None) -> "Staging":
        """The same staging with `now` pinned (and the future tolerance, when given)."""
        self.now = now
        if future_tolerance_hours is not None:
            self.future_tolerance_hours = future_tolerance_hours
        return self

    def _now(self) -> pd.Timestamp:
        return self.now if self.now is not None else pd.Timestamp.now(tz="UTC")

    def _paths(self, kind: str, identity: str) -> tuple[UPath, UPath, UPath]:
        folder = self.root / kind
        return folder / f"{identity}.parquet", folder / f"{identity}.rejected.parquet", folder / f"{identity}.json"

    def is_staged(self, file: InboxFile) -> bool:
        return self._paths(file.kind, file.identity)[2].exists()

    def _ingested_marker(self, staged: StagedFile) -> UPath:
        return self.root / staged.kind / f"{staged.identity}.ingested"

    def mark_ingested(self, files: list[StagedFile]) -> None:
        """Remember that every row of these files is in the tables (the sensor need not ask again)."""
        for staged in files:
            self._ingested_marker(staged).touch()

    def is_ingested(self, staged: StagedFile) -> bool:
        return self._ingested_marker(staged).exists()

    def covered_by(self, files: list[StagedFile], start: pd.Timestamp, end: pd.Timestamp) -> list[StagedFile]:
        """The files whose rows all fall in [start, end), or that have no rows to place."""
        return [
            m for m in files
            if m.min_ts is None or (pd.Timestamp(m.min_ts) >= start and pd.Timestamp(m.max_ts) < end)
        ]

    def stage(self, inbox: str | UPath, file: InboxFile) -> StagedFile:
        """Read `file` once and keep its accepted and rejected rows; a no-op when already staged."""
        accepted_path, rejected_path, manifest_path = self._paths(file.kind, file.identity)
        if manifest_path.exists():
            return StagedFile(**json.loads(manifest_path.read_text()))
        read = lambda local: reader_for(  # noqa: E731
            file.kind, local, job_tag_key=self.job_tag_key, budget_tag_key=self.budget_tag_key,
            earliest=self.earliest, now=self._now(), future_tolerance_hours=self.future_tolerance_hours,
        )()
        result, records_in = _read_local(UPath(inbox), file, read)
        accepted, rejected = result.accepted, result.rejected
        # Provenance is the inbox path, whatever local path the reader saw.
        if "source" in accepted.columns:
            accepted = accepted.assign(source=pd.Series(file.relpath, index=accepted.index, dtype="string"))
        rejected = rejected.assign(source=pd.Series(file.relpath, index=rejected.index, dtype="string"))
        time_column = TIME_COLUMNS[file.kind]
        now = self._now()
        if time_column and not accepted.empty:
            accepted, outside = self._outside_partitions(accepted, time_column, now, file)
            rejected = pd.concat([rejected, outside], ignore_index=True) if not outside.empty else rejected
        times = accepted[time_column] if time_column and not accepted.empty else None
        staged = StagedFile(
            identity=file.identity,
            kind=file.kind,
            relpath=file.relpath,
            size=file.size,
            mtime_ns=file.mtime_ns,
            rows_in=len(accepted) + len(rejected),
            accepted=len(accepted),
            rejected=len(rejected),
            min_ts=None if times is None else times.min().isoformat(),
            max_ts=None if times is None else times.max().isoformat(),
            staged_at=pd.Timestamp.now(tz="UTC").isoformat(),  # provenance: when it really happened
            records_in=records_in,
            records_out=result.records_accounted,
            duplicates=result.duplicates,
            skipped=result.skipped,
            file_rejected=result.whole_file_rejected,
        )
        _write_parquet_atomic(accepted, accepted_path)
        _write_parquet_atomic(rejected, rejected_path)
        _write_text_atomic(json.dumps(asdict(staged)), manifest_path)
        return staged

    def _outside_partitions(self, accepted: pd.DataFrame, time_column: str, now: pd.Timestamp, file: InboxFile
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rows no partition can hold (before the first, or later than now + tolerance), as rejections."""
        times = accepted[time_column]
        latest = now + pd.Timedelta(hours=self.future_tolerance_hours)
        too_late = (times > latest).to_numpy(dtype=bool, na_value=False)
        too_early = np.zeros(len(accepted), dtype=bool)
        if self.earliest is not None:
            too_early = (times < self.earliest).to_numpy(dtype=bool, na_value=False)
        if not (too_late.any() or too_early.any()):
            return accepted, REJECTED_RECORDS.empty()
        reason = pd.Series(pd.NA, index=accepted.index, dtype="string")
        if self.earliest is not None:
            reason[too_early] = f"{time_column} before the first partition ({self.earliest.date()})"
        reason[too_late] = (
            f"{time_column} in the future: later than now + {self.future_tolerance_hours:g} h "
            f"({latest.isoformat()})"
        )
        out = too_late | too_early
        rejected = rejected_rows(accepted[out], reason[out], source=file.relpath, table=KINDS[file.kind].name)
        return accepted[~out].reset_index(drop=True), rejected

    def stage_inbox(self, inbox: str | UPath) -> list[StagedFile]:
        """Stage every inbox file not staged yet; returns the newly staged ones.

        First removes the `.tmp` files a killed run left under the staging folder.
        """
        remove_stale_tmp(self.root)  # file ages are wall-clock ages, whatever `now` the data is judged at
        return [self.stage(inbox, f) for f in scan_inbox(inbox) if not self.is_staged(f)]

    def manifests(self, kind: str | None = None) -> list[StagedFile]:
        kinds = [kind] if kind else list(KINDS)
        out = []
        for k in kinds:
            folder = self.root / k
            if folder.exists():
                out.extend(StagedFile(**json.loads(p.read_text())) for p in folder.glob("*.json"))
        return out

    def current(self, kind: str) -> list[StagedFile]:
        """The newest staged version of every inbox path of `kind`, oldest file first."""
        latest: dict[str, StagedFile] = {}
        for m in self.manifests(kind):
            seen = latest.get(m.relpath)
            if seen is None or (m.mtime_ns, m.staged_at) > (seen.mtime_ns, seen.staged_at):
                latest[m.relpath] = m
        return sorted(latest.values(), key=lambda m: (m.mtime_ns, m.relpath))

    def load(self, kind: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
             ) -> tuple[pd.DataFrame, list[StagedFile]]:
        """Accepted rows of the current files of `kind` with time in [start, end), and those files."""
        time_column = TIME_COLUMNS[kind]
        table = KINDS[kind]
        files = self.current(kind)
        if time_column and start is not None and end is not None:
            files = [
                m for m in files
                if m.min_ts is not None and pd.Timestamp(m.min_ts) < end and pd.Timestamp(m.max_ts) >= start
            ]
        filters = None
        if time_column and start is not None and end is not None:
            filters = [(time_column, ">=", start), (time_column, "<", end)]
        frames = []
        for m in files:
            path = self._paths(kind, m.identity)[0]
            arrow = pq.read_table(path.path, filesystem=path.fs, filters=filters)
            if arrow.num_rows:
                frames.append(arrow.to_pandas())
        df = pd.concat(frames, ignore_index=True) if frames else table.empty()
        if time_column and not df.empty:
            df[time_column] = to_utc(df[time_column])
        return df, files

    def load_rejected(self) -> tuple[pd.DataFrame, list[StagedFile]]:
        files = [m for kind in KINDS for m in self.current(kind)]
        frames = []
        for m in files:
            path = self._paths(m.kind, m.identity)[1]
            arrow = pq.read_table(path.path, filesystem=path.fs)
            if arrow.num_rows:
                frames.append(arrow.to_pandas())
        df = pd.concat(frames, ignore_index=True) if frames else REJECTED_RECORDS.empty()
        # copies staged while the job registry's contract was still named "jobs" (its inbox folder)
        df["table"] = df["table"].replace({"jobs": JOBS.name})
        return df, files
