"""Read each inbox file once and keep what it held, so partitions can be rebuilt at any time.

Staging turns an inbox file into three objects under `<warehouse>/_staging/<kind>/`:
`<identity>.parquet` (accepted rows), `<identity>.rejected.parquet` (rejected rows with their
reason) and `<identity>.json` (the manifest: counts and time range). The manifest is written
last, so a file is staged completely or not at all. Partition assets read the staged rows of the
current version of every file (the newest identity per inbox path) for their time window, which
is why re-running a partition replaces it and never counts a file twice.

Works on any fsspec URL through UPath (a local folder by default, `s3://…` the same way).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from upath import UPath

from ftops.readers.base import ReadResult, rejected_rows
from ftops.readers.inbox import KINDS, InboxFile, classify, reader_for
from ftops.schemas import REJECTED_RECORDS, to_utc

# The column that places a row of each kind in time (and so in a partition).
TIME_COLUMNS: dict[str, str | None] = {"jobs": None, "metrics": "ts", "billing": "charge_period_start"}


@dataclass(frozen=True)
class StagedFile:
    identity: str
    kind: str
    relpath: str
    size: int
    mtime_ns: int
    rows_in: int
    accepted: int
    rejected: int
    min_ts: str | None
    max_ts: str | None
    staged_at: str

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.rejected


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


def _read_local(inbox: UPath, file: InboxFile, read) -> ReadResult:
    """Run a reader on a local copy when the inbox is remote (readers read local files)."""
    source = inbox / file.relpath
    if _is_local(source):
        return read(str(source))
    with tempfile.TemporaryDirectory(prefix="ftops-stage-") as tmp:
        local = Path(tmp) / file.relpath  # keep folders: readers derive job ids from them
        local.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as src, local.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return read(str(local))


class Staging:
    """The staged copies of inbox files under `<warehouse>/_staging`."""

    def __init__(self, warehouse: str | UPath, earliest: pd.Timestamp | None = None,
                 job_tag_key: str = "job_id", budget_tag_key: str = "budget_category") -> None:
        self.root = UPath(warehouse) / "_staging"
        self.earliest = earliest
        self.job_tag_key = job_tag_key
        self.budget_tag_key = budget_tag_key

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
            file.kind, local, job_tag_key=self.job_tag_key, budget_tag_key=self.budget_tag_key
        )()
        result = _read_local(UPath(inbox), file, read)
        accepted, rejected = result.accepted, result.rejected
        # Provenance is the inbox path, whatever local path the reader saw.
        if "source" in accepted.columns:
            accepted = accepted.assign(source=pd.Series(file.relpath, index=accepted.index, dtype="string"))
        rejected = rejected.assign(source=pd.Series(file.relpath, index=rejected.index, dtype="string"))
        time_column = TIME_COLUMNS[file.kind]
        if time_column and self.earliest is not None and not accepted.empty:
            too_early = (accepted[time_column] < self.earliest).to_numpy()
            if too_early.any():
                early = rejected_rows(
                    accepted[too_early], f"{time_column} before the first partition ({self.earliest.date()})",
                    source=file.relpath, table=KINDS[file.kind].name,
                )
                accepted = accepted[~too_early].reset_index(drop=True)
                rejected = pd.concat([rejected, early], ignore_index=True)
        times = accepted[time_column] if time_column and not accepted.empty else None
        staged = StagedFile(
            identity=file.identity,
            kind=file.kind,
            relpath=file.relpath,
            size=file.size,
            mtime_ns=file.mtime_ns,
            rows_in=result.rows_in,
            accepted=len(accepted),
            rejected=len(rejected),
            min_ts=None if times is None else times.min().isoformat(),
            max_ts=None if times is None else times.max().isoformat(),
            staged_at=pd.Timestamp.now(tz="UTC").isoformat(),
        )
        _write_parquet_atomic(accepted, accepted_path)
        _write_parquet_atomic(rejected, rejected_path)
        _write_text_atomic(json.dumps(asdict(staged)), manifest_path)
        return staged

    def stage_inbox(self, inbox: str | UPath) -> list[StagedFile]:
        """Stage every inbox file not staged yet; returns the newly staged ones."""
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
        return df, files
