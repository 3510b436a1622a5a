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

Parallel staging: `stage_files`/`stage_inbox` stage files in worker processes (`workers`, default
the machine's cores; 1 keeps the serial path). Each worker stages whole files (read, staged Parquet,
manifest) and sends back only the manifest, so the results are the serial path's: the same
manifests (but `staged_at`, the wall-clock time of staging), the same staged rows, the same
rejections, returned in the order of the files given. Small batches (under `parallel_min_bytes`)
and stores only this process can see (`memory://`) stay serial. A reader error is a rejection of
that file on either path; a worker process that dies (a crash in native code, the OOM killer) is
found by re-running the files it may have held one at a time, and the file that kills its process
again is rejected with that reason, while every other file is staged as usual.

Shards: metric rows are loaded for one job shard at a time (ftops.sharding). A manifest lists the
file's job ids, so a shard reads only the files that hold its jobs, and only the rows of its jobs
(a filter pushed into the Parquet read); an ingested marker is kept per shard.

Works on any fsspec URL through UPath (a local folder by default, `s3://…` the same way).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from ftops.readers.base import ReadResult, rejected_file, rejected_rows
from ftops.readers.inbox import KINDS, InboxFile, classify, reader_for
from ftops.readers.records import count_records
from ftops.schemas import JOBS, REJECTED_RECORDS, to_utc
from ftops.sharding import Shard, all_shards, shard_of

# A `.tmp` older than this belongs to a killed run; younger ones may be a concurrent writer's.
STALE_TMP_SECONDS = 3600.0

# Below this many bytes of new files (about 2 s of serial staging on one core) stay serial: a pool
# gains little there, and a process's first pool also starts the fork server (about 2 s once per
# process, see worker_context; later pools about 0.05 s); measured with benchmarks/staging.py.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024

# Imported once in the fork server, so that workers start with them (see worker_context).
# Dagster and the asset modules too: defs.runner starts shard runs from the same fork server.
_PRELOAD = ["ftops.staging", "ftops.readers.metric_export", "ftops.readers.jobs", "ftops.readers.billing",
            "ftops.readers.trainer_state", "ftops.readers.wandb", "ftops.readers.prometheus_text",
            "ftops.readers.records", "ftops.readers.console_log", "dagster", "ftops.defs.ingest",
            "ftops.defs.monitoring", "ftops.defs.costs"]

# Stores whose files only this process can see: a worker would find nothing there.
_PROCESS_LOCAL_PROTOCOLS = ("memory",)

# The column that places a row of each kind in time (and so in a partition). None: the kind's table is
# unpartitioned, its rows are never cut by the partitions' time range (console tails of 2023 runs are
# still those runs' causes of failure).
TIME_COLUMNS: dict[str, str | None] = {"jobs": None, "metrics": "ts", "billing": "charge_period_start",
                                       "logs": None}
# Kinds whose table is partitioned by job shard as well as by day.
SHARDED_KINDS = ("metrics",)


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
    # metrics: the distinct job ids of the accepted rows, so a shard reads only the files that hold
    # its jobs; None in manifests staged before shards existed (such a file is read by every shard)
    job_ids: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, text: str) -> "StagedFile":
        data = json.loads(text)
        if data.get("job_ids") is not None:
            data["job_ids"] = tuple(data["job_ids"])
        return cls(**data)

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


def _write_parquet_atomic(df: pd.DataFrame, target: UPath, tag: str = "") -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{tag}{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as fh:
        df.to_parquet(fh, index=False)
    tmp.rename(target)


def _write_text_atomic(text: str, target: UPath, tag: str = "") -> None:
    tmp = target.with_name(f".{target.name}.{tag}{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    tmp.rename(target)


def _read_local(inbox: UPath, file: InboxFile, read) -> tuple[ReadResult, int | None]:
    """Run a reader on a local copy when the inbox is remote (readers read local files).

    Also counts the file's records from its bytes, apart from the reader.
    """
    source = inbox / file.relpath
    if _is_local(source):
        return _read_or_refuse(read, str(source), file), _count_records(file.kind, str(source))
    with tempfile.TemporaryDirectory(prefix="ftops-stage-") as tmp:
        local = Path(tmp) / file.relpath  # keep folders: readers derive job ids from them
        local.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as src, local.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        os.utime(local, ns=(file.mtime_ns, file.mtime_ns))  # readers date rows without a time by the file's
        return _read_or_refuse(read, str(local), file), _count_records(file.kind, str(local))


def _count_records(kind: str, path: str) -> int | None:
    """Records of an inbox file from its bytes; a console log is one record whatever its name."""
    if kind == "logs":
        from ftops.readers.console_log import count_console_records

        return count_console_records(path)
    return count_records(path)


def _read_or_refuse(read, local: str, file: InboxFile) -> ReadResult:
    """The reader's result, or one rejection for the whole file when the reader raised.

    Readers turn every error they know into rejections; this catches the rest (a reader bug), so one
    file can never stop the others being staged, in a worker process or here.
    """
    try:
        return read(local)
    except Exception as exc:  # noqa: BLE001 - any escape from a reader is that file's problem
        return _refused(file, f"the reader failed on this file: {type(exc).__name__}: {exc}")


def _refused(file: InboxFile, reason: str) -> ReadResult:
    table = KINDS[file.kind]
    return ReadResult(table.name, table.empty(), rejected_file(file.relpath, table.name, reason))


def worker_context() -> multiprocessing.context.BaseContext:
    """How staging starts worker processes: forked from a fork server that has staging imported.

    Never a plain fork (callers such as Dagster's daemon and code server run threads). The fork
    server starts once per process (about as long as importing pandas and pyarrow) and then gives
    every pool its workers in milliseconds, with the readers already imported; where there is no
    fork server (Windows) workers are spawned and import them each time.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)  # only read when this process starts its fork server
    return context


def _path_ref(path: UPath) -> tuple[str, dict]:
    """A UPath as plain values a worker process can rebuild it from."""
    return str(path), dict(getattr(path, "storage_options", {}) or {})


def _stage_in_worker(config: dict, inbox: tuple[str, dict], file: InboxFile) -> StagedFile:
    """Stage one file in a worker process; only its manifest goes back."""
    (warehouse, options), settings = config["warehouse"], {k: v for k, v in config.items() if k != "warehouse"}
    staging = Staging(UPath(warehouse, **options), **settings)
    return staging.stage(UPath(inbox[0], **inbox[1]), file)


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
                 now: pd.Timestamp | None = None, future_tolerance_hours: float = 24.0,
                 workers: int | None = None, parallel_min_bytes: int = PARALLEL_MIN_BYTES,
                 tmp_tag: str = "", shards: int = 1) -> None:
        self.warehouse = UPath(warehouse)
        self.root = self.warehouse / "_staging"
        self.workers = workers  # processes that stage files at once; None: os.cpu_count(); 1: serial
        self.parallel_min_bytes = parallel_min_bytes  # smaller batches of new files stay serial
        self._tmp_tag = tmp_tag  # in this writer's .tmp names, so its leftovers can be found
        self.earliest = earliest
        self.job_tag_key = job_tag_key
        self.budget_tag_key = budget_tag_key
        self.now = now  # None: the wall clock when a file is staged
        self.future_tolerance_hours = future_tolerance_hours
        self.shards = shards  # job shards of the sharded kinds (the `partitions.shards` setting)

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

    def _ingested_marker(self, staged: StagedFile, shard: Shard | None = None) -> UPath:
        suffix = f".{shard.key}" if shard is not None else ""
        return self.root / staged.kind / f"{staged.identity}{suffix}.ingested"

    def mark_ingested(self, files: list[StagedFile], shard: Shard | None = None) -> None:
        """Remember that every row of these files (of this shard's jobs) is in the tables, so the
        sensor need not ask again."""
        for staged in files:
            self._ingested_marker(staged, shard).touch()

    def shards_of(self, staged: StagedFile) -> list[Shard]:
        """The shards holding rows of this file: those of its jobs (all, when the manifest predates job ids)."""
        if staged.kind not in SHARDED_KINDS:
            return []
        if staged.job_ids is None:
            return all_shards(self.shards)
        return [Shard(i, self.shards) for i in sorted({shard_of(j, self.shards) for j in staged.job_ids})]

    def is_ingested(self, staged: StagedFile) -> bool:
        if staged.kind not in SHARDED_KINDS:
            return self._ingested_marker(staged).exists()
        return all(self._ingested_marker(staged, s).exists() for s in self.shards_of(staged))

    def covered_by(self, files: list[StagedFile], start: pd.Timestamp, end: pd.Timestamp) -> list[StagedFile]:
        """The files whose rows all fall in [start, end), or that have no rows to place."""
        return [
            m for m in files
            if m.min_ts is None or (pd.Timestamp(m.min_ts) >= start and pd.Timestamp(m.max_ts) < end)
        ]

    def stage(self, inbox: str | UPath, file: InboxFile) -> StagedFile:
        """Read `file` once and keep its accepted and rejected rows; a no-op when already staged."""
        manifest_path = self._paths(file.kind, file.identity)[2]
        if manifest_path.exists():
            return StagedFile.from_json(manifest_path.read_text())
        read = lambda local: reader_for(  # noqa: E731
            file.kind, local, job_tag_key=self.job_tag_key, budget_tag_key=self.budget_tag_key,
            earliest=self.earliest, now=self._now(), future_tolerance_hours=self.future_tolerance_hours,
        )()
        result, records_in = _read_local(UPath(inbox), file, read)
        return self._keep(file, result, records_in)

    def _keep(self, file: InboxFile, result: ReadResult, records_in: int | None) -> StagedFile:
        """Write the staged copies of a read file, manifest last."""
        accepted_path, rejected_path, manifest_path = self._paths(file.kind, file.identity)
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
            job_ids=(tuple(sorted(accepted["job_id"].dropna().unique().tolist()))
                     if file.kind in SHARDED_KINDS and "job_id" in accepted.columns else None),
        )
        _write_parquet_atomic(accepted, accepted_path, self._tmp_tag)
        _write_parquet_atomic(rejected, rejected_path, self._tmp_tag)
        _write_text_atomic(json.dumps(asdict(staged)), manifest_path, self._tmp_tag)
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

    def stage_inbox(self, inbox: str | UPath, workers: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[StagedFile]:
        """Stage every inbox file not staged yet (in parallel, see `stage_files`); returns the newly staged ones.

        First removes the `.tmp` files a killed run left under the staging folder.
        """
        remove_stale_tmp(self.root)  # file ages are wall-clock ages, whatever `now` the data is judged at
        files = [f for f in scan_inbox(inbox) if not self.is_staged(f)]
        return self.stage_files(inbox, files, workers=workers, progress=progress)

    def stage_files(self, inbox: str | UPath, files: list[InboxFile], workers: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[StagedFile]:
        """Stage `files` (those staged already are read back), in their order, with up to `workers` processes.

        `workers` overrides the staging's (None: its own, else os.cpu_count()). `progress(done, total)`
        is called here, in this process, as files finish. A batch smaller than `parallel_min_bytes`,
        a single file, a process-local store or a daemonic process (which may not start children)
        stays in this process.
        """
        inbox = UPath(inbox)
        total = len(files)
        out: dict[int, StagedFile] = {}

        def done(i: int, staged: StagedFile) -> None:
            out[i] = staged
            if progress is not None:
                progress(len(out), total)

        todo = []
        for i, f in enumerate(files):
            manifest = self._paths(f.kind, f.identity)[2]
            if manifest.exists():
                done(i, StagedFile.from_json(manifest.read_text()))
            else:
                todo.append((i, f))
        n = self._pool_size(inbox, [f for _, f in todo], workers)
        if n <= 1:
            for i, f in todo:
                done(i, self.stage(inbox, f))
        else:
            self._stage_in_pool(inbox, todo, n, done)
        return [out[i] for i in range(total)]

    def _pool_size(self, inbox: UPath, files: list[InboxFile], workers: int | None) -> int:
        wanted = workers or self.workers or os.cpu_count() or 1
        if wanted <= 1 or len(files) < 2 or sum(f.size for f in files) < self.parallel_min_bytes:
            return 1
        if any(getattr(p, "protocol", "") in _PROCESS_LOCAL_PROTOCOLS for p in (inbox, self.root)):
            return 1
        if multiprocessing.current_process().daemon:
            return 1
        return min(wanted, len(files))

    def _worker_config(self, tag: str) -> dict:
        return {
            "warehouse": _path_ref(self.warehouse), "earliest": self.earliest, "job_tag_key": self.job_tag_key,
            "budget_tag_key": self.budget_tag_key, "now": self.now,
            "future_tolerance_hours": self.future_tolerance_hours, "workers": 1, "tmp_tag": tag,
        }

    def _stage_in_pool(self, inbox: UPath, todo: list[tuple[int, InboxFile]], workers: int,
                       done: Callable[[int, StagedFile], None],
                       task: Callable[[dict, tuple[str, dict], InboxFile], StagedFile] = _stage_in_worker) -> None:
        """Stage `todo` in worker processes; `task` is what a worker runs (tests swap it).

        An error a worker raises (the store refused a write: not the file's fault) is raised here
        once every other file is staged. When a worker process dies, the pool stops; files staged
        meanwhile have their manifests, and the dead one is among the first `workers` files left
        (workers take files in order), so those are staged again one process each: a file that kills
        its process again is rejected with that reason. The rest go on in a new pool.
        """
        ref = _path_ref(inbox)
        context = worker_context()
        failed: dict[int, BaseException] = {}
        finished: set[int] = set()

        def mark(i: int, staged: StagedFile) -> None:
            finished.add(i)
            done(i, staged)

        def run(batch: list[tuple[int, InboxFile]], size: int) -> list[tuple[int, InboxFile]] | None:
            """Stage `batch` in a pool of `size`; returns the files left when the pool broke, or None
            when no worker process could start at all (then nothing is any file's fault)."""
            tag = f"w{uuid.uuid4().hex[:8]}-"
            config = self._worker_config(tag)
            with ProcessPoolExecutor(max_workers=size, mp_context=context) as pool:
                try:
                    pool.submit(os.getpid).result()
                except BrokenProcessPool:
                    return None
                futures = {}
                for i, f in batch:
                    try:
                        futures[pool.submit(task, config, ref, f)] = (i, f)
                    except BrokenProcessPool:  # a worker died already: the rest go to the next round
                        break
                for future in as_completed(futures):
                    i, f = futures[future]
                    try:
                        mark(i, future.result())
                    except BrokenProcessPool:
                        pass
                    except Exception as exc:  # noqa: BLE001 - raised below, after the other files
                        failed[i] = exc
                        finished.add(i)
            left = []
            for i, f in batch:
                if i in finished:
                    continue
                if self.is_staged(f):  # finished while the pool was breaking
                    mark(i, StagedFile.from_json(self._paths(f.kind, f.identity)[2].read_text()))
                else:
                    left.append((i, f))
            if left:  # the pool's processes are gone: what they were writing is garbage now
                for tmp in self.root.rglob(f".*.{tag}*.tmp"):
                    tmp.unlink(missing_ok=True)
            return left

        pending = todo
        while pending:
            left = run(pending, min(workers, len(pending)))
            if left is None:  # processes cannot start here: stage in this process
                for i, f in pending:
                    mark(i, self.stage(inbox, f))
                break
            suspects, pending = left[:workers], left[workers:]
            for i, f in suspects:
                alone = run([(i, f)], 1)
                if alone is None:
                    mark(i, self.stage(inbox, f))
                elif alone:
                    mark(i, self._keep(f, _refused(f, "the process reading this file died (killed, out of "
                                                      "memory, or a crash in native code)"), None))
        if failed:
            first = min(failed)
            relpath = dict(todo)[first].relpath
            raise RuntimeError(f"staging {relpath} failed ({len(failed)} file(s) failed; every other file "
                               f"is staged): {failed[first]}") from failed[first]

    def manifests(self, kind: str | None = None) -> list[StagedFile]:
        kinds = [kind] if kind else list(KINDS)
        out = []
        for k in kinds:
            folder = self.root / k
            if folder.exists():
                out.extend(StagedFile.from_json(p.read_text()) for p in folder.glob("*.json"))
        return out

    def current(self, kind: str) -> list[StagedFile]:
        """The newest staged version of every inbox path of `kind`, oldest file first."""
        latest: dict[str, StagedFile] = {}
        for m in self.manifests(kind):
            seen = latest.get(m.relpath)
            if seen is None or (m.mtime_ns, m.staged_at) > (seen.mtime_ns, seen.staged_at):
                latest[m.relpath] = m
        return sorted(latest.values(), key=lambda m: (m.mtime_ns, m.relpath))

    def load(self, kind: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
             shard: Shard | None = None) -> tuple[pd.DataFrame, list[StagedFile]]:
        """Accepted rows of the current files of `kind` with time in [start, end) (and of the jobs of
        `shard`), and the files that may hold such rows."""
        time_column = TIME_COLUMNS[kind]
        table = KINDS[kind]
        files = self.current(kind)
        if time_column and start is not None and end is not None:
            files = [
                m for m in files
                if m.min_ts is not None and pd.Timestamp(m.min_ts) < end and pd.Timestamp(m.max_ts) >= start
            ]
        filters = []
        if time_column and start is not None and end is not None:
            filters = [(time_column, ">=", start), (time_column, "<", end)]
        # the shard's jobs in each file; None: no shard, or a manifest without job ids (rows are filtered)
        jobs_of = {m.identity: shard.select(m.job_ids) for m in files if shard is not None and m.job_ids is not None}
        if shard is not None:
            files = [m for m in files if jobs_of.get(m.identity, True)]
        frames = []
        for m in files:
            path = self._paths(kind, m.identity)[0]
            jobs = jobs_of.get(m.identity)
            only = [("job_id", "in", jobs)] if jobs and len(jobs) < len(m.job_ids) else []
            arrow = pq.read_table(path.path, filesystem=path.fs, filters=(filters + only) or None)
            if shard is not None and jobs is None and arrow.num_rows:
                arrow = arrow.filter(pa.array(shard.holds(arrow.column("job_id").to_pandas())))
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
