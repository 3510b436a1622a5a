"""Staging: every record of every file accounted for, rows outside the partitions refused, stale .tmp removed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from upath import UPath

import ftops.readers.metric_export as metric_export
from ftops.readers.inbox import classify, metric_format
from ftops.readers.metric_export import read_metric_export
from ftops.staging import Staging, _stage_in_worker, newest_wins, remove_stale_tmp, scan_inbox

CORPUS = Path(__file__).parent / "fixtures" / "bad_inputs"
NOW = pd.Timestamp("2026-11-21T00:00:00Z")
EARLIEST = pd.Timestamp("2023-01-01", tz="UTC")
FILE_TIME = pd.Timestamp("2026-11-20T12:00:00Z").timestamp()  # readers date mtime-anchored rows from it


def _inbox(tmp_path: Path, source: Path = CORPUS) -> Path:
    inbox = tmp_path / "inbox"
    shutil.copytree(source, inbox)
    for path in inbox.rglob("*"):
        os.utime(path, (FILE_TIME, FILE_TIME))  # mtime-anchored timestamps must not follow the wall clock
    return inbox


def _staging(tmp_path: Path) -> Staging:
    return Staging(tmp_path / "warehouse", earliest=EARLIEST, now=NOW)


def test_bad_input_corpus_every_record_is_accepted_rejected_or_counted(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    staging = _staging(tmp_path)
    files = staging.stage_inbox(inbox)
    assert len(files) >= 50
    for f in files:
        assert f.balanced, f
        if not f.file_rejected:
            assert f.records_in == f.records_out, f
        # what the staged copies hold is what the manifest says: nothing lost on the way to disk
        accepted, rejected, _ = staging._paths(f.kind, f.identity)
        assert len(pd.read_parquet(accepted)) == f.accepted and len(pd.read_parquet(rejected)) == f.rejected, f
    rejected, _ = staging.load_rejected()
    reasons = set(rejected["reason"])
    for expected in ("value missing", "timestamp missing or unparseable", "unknown metric"):
        assert any(r.startswith(expected) for r in reasons), expected
    assert any("in the future" in r for r in reasons)
    assert any("outside its physical range" in r for r in reasons)
    assert any(r.startswith("conflicting value for one sample") for r in reasons)
    assert any(r.startswith("not UTF-8 text (byte 0x") for r in reasons)
    in_tables = sum(len(newest_wins(staging.load(k)[0], list(t)).table)
                    for k, t in (("metrics", ["job_id", "metric", "ts", "step", "device", "host"]),
                                 ("billing", ["line_item_id"]), ("jobs", ["job_id"])))
    print(f"\ncorpus: files={len(files)} records_in={sum(f.records_in or 0 for f in files)} "
          f"accepted={sum(f.accepted for f in files)} rejected={sum(f.rejected for f in files)} "
          f"duplicates={sum(f.duplicates for f in files)} skipped={sum(f.skipped for f in files)} "
          f"whole_files_rejected={sum(f.file_rejected for f in files)} in_tables={in_tables}")


def test_a_reader_that_silently_drops_a_row_unbalances_its_file(tmp_path: Path, monkeypatch) -> None:
    inbox = tmp_path / "inbox" / "metrics"
    inbox.mkdir(parents=True)
    (inbox / "m.csv").write_text("ts,job_id,metric,value\n" + "".join(
        f"2026-11-20T10:0{i}:00Z,j,training_loss,{i}\n" for i in range(5)))
    real = metric_export._read_csv

    def lossy(*args, **kwargs):
        pieces, refused = real(*args, **kwargs)
        table, lines = pieces[0]
        return [(table.slice(0, table.num_rows - 1), lines[:-1])], refused

    monkeypatch.setattr(metric_export, "_read_csv", lossy)
    (staged,) = _staging(tmp_path).stage_inbox(tmp_path / "inbox")
    assert staged.records_in == 5 and staged.records_out == 4 and not staged.balanced


def test_wide_export_row_lost_in_the_melt_unbalances_its_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "w.csv"
    path.write_text("ts,job_id,loss,gpu_util\n2026-11-20T10:00:00Z,j,1.0,50\n2026-11-20T10:01:00Z,j,0.9,51\n")
    assert read_metric_export(path).records_accounted == 2
    real = metric_export._to_long

    def lossy(*args, **kwargs):
        long, refused, skipped = real(*args, **kwargs)
        return long[long.index != long.index[-1]], refused, skipped

    monkeypatch.setattr(metric_export, "_to_long", lossy)
    assert read_metric_export(path).records_accounted == 1


def test_rows_in_the_future_or_before_the_partitions_are_rejected_with_the_reason(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox" / "metrics"
    inbox.mkdir(parents=True)
    (inbox / "m.jsonl").write_text(
        '{"ts": "2026-11-20T10:00:00Z", "job_id": "j", "metric": "training_loss", "value": 1}\n'
        '{"ts": "2026-11-21T23:00:00Z", "job_id": "j", "metric": "training_loss", "value": 1}\n'  # within 24 h
        '{"ts": "2099-01-01T00:00:00Z", "job_id": "j", "metric": "training_loss", "value": 1}\n'
        '{"ts": "2001-01-01T00:00:00Z", "job_id": "j", "metric": "training_loss", "value": 1}\n')
    staging = _staging(tmp_path)
    (staged,) = staging.stage_inbox(tmp_path / "inbox")
    assert (staged.accepted, staged.rejected) == (2, 2) and staged.balanced
    reasons = sorted(staging.load_rejected()[0]["reason"])
    assert reasons[0].startswith("ts before the first partition (2023-01-01)")
    assert reasons[1] == "ts in the future: later than now + 24 h (2026-11-22T00:00:00+00:00)"
    assert staged.max_ts == "2026-11-21T23:00:00+00:00"


def test_job_times_before_the_partitions_or_in_the_future_are_rejected_when_staged(tmp_path: Path) -> None:
    """Staging gives the jobs reader its floor (the partitions' start) and its pinned now."""
    jobs = tmp_path / "inbox" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "jobs.csv").write_text("job_id,status,started_at\n"
                                   "ok,running,2026-11-20T08:00:00Z\n"
                                   "old,running,2022-06-01T00:00:00Z\n"
                                   "later,running,2026-11-25T00:00:00Z\n")
    staging = _staging(tmp_path)
    (staged,) = staging.stage_inbox(tmp_path / "inbox")
    assert (staged.accepted, staged.rejected) == (1, 2) and staged.balanced
    reasons = " | ".join(sorted(staging.load_rejected()[0]["reason"]))
    assert "2023-01-01" in reasons and "future" in reasons, reasons


def test_job_rejections_staged_under_the_old_contract_name_load_as_job_registry(tmp_path: Path) -> None:
    jobs = tmp_path / "inbox" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "jobs.csv").write_text("job_id,status\nok,running\n,running\n")
    staging = _staging(tmp_path)
    (staged,) = staging.stage_inbox(tmp_path / "inbox")
    assert staging.load_rejected()[0]["table"].tolist() == ["job_registry"]
    path = staging._paths(staged.kind, staged.identity)[1]
    old = pd.read_parquet(path).assign(table="jobs")  # what staging wrote before the rename
    old.to_parquet(path, index=False)
    assert staging.load_rejected()[0]["table"].tolist() == ["job_registry"]


def test_stale_tmp_files_are_removed_and_fresh_ones_left_to_their_writer(tmp_path: Path) -> None:
    folder = tmp_path / "warehouse" / "_staging" / "metrics"
    folder.mkdir(parents=True)
    stale, fresh, data = folder / ".a.parquet.1.tmp", folder / ".b.parquet.2.tmp", folder / "a.parquet"
    for p in (stale, fresh, data):
        p.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(data, (two_hours_ago, two_hours_ago))
    (tmp_path / "inbox").mkdir()
    _staging(tmp_path).stage_inbox(tmp_path / "inbox")
    assert not stale.exists() and fresh.exists() and data.exists()
    assert remove_stale_tmp(folder, grace_seconds=0, now=pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1)) == [
        fresh.name]


def test_newest_file_wins_and_counts_duplicates_apart_from_superseded_rows() -> None:
    df = pd.DataFrame({"k": ["a", "a", "b", "b", "c"], "v": [1.0, 1.0, 2.0, 3.0, float("nan")],
                       "source": ["old", "new", "old", "new", "new"]})
    resolved = newest_wins(df, ["k"])
    assert resolved.table.to_dict("list")["v"][:2] == [1.0, 3.0]
    assert (resolved.duplicates, resolved.superseded) == (1, 1)
    assert len(df) == len(resolved.table) + resolved.duplicates + resolved.superseded


@pytest.mark.parametrize("name", ["m.tsv", "m.csv.gz", "m.jsonl.gz", "m.ndjson.bz2", "m.csv.zip", "m.parquet"])
def test_inbox_takes_every_suffix_the_metric_reader_reads(name: str) -> None:
    assert classify(f"metrics/job/{name}") == "metrics"
    assert metric_format(name) == "metric_export"


def test_latin1_jsonl_is_one_rejection_saying_it_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes('{"ts": "2026-11-20T10:00:00Z", "job_id": "jé", "metric": "loss", "value": 1}\n'.encode("latin-1") * 3)
    result = read_metric_export(path)
    assert result.whole_file_rejected and len(result.rejected) == 1
    assert result.rejected["reason"].iloc[0] == "not UTF-8 text (byte 0xe9 at offset 43); write the file as UTF-8"


# --- parallel staging: the serial path's results, with files staged in worker processes ---------------------

def _parallel(tmp_path: Path, name: str, workers: int = 2) -> Staging:
    # parallel_min_bytes=0: the corpus is small, and would otherwise (rightly) stay serial
    return Staging(tmp_path / name, earliest=EARLIEST, now=NOW, workers=workers, parallel_min_bytes=0)


def _staged_content(staging: Staging, files) -> list[tuple]:
    """Each manifest but its wall-clock staged_at, with the bytes of its two staged Parquet files."""
    out = []
    for f in files:
        manifest = {k: v for k, v in f.__dict__.items() if k != "staged_at"}
        accepted, rejected, _ = staging._paths(f.kind, f.identity)
        out.append((manifest, accepted.read_bytes(), rejected.read_bytes()))
    return out


def _no_tmp_left(staging: Staging) -> None:
    assert not [p.name for p in staging.root.rglob("*.tmp")]


def test_parallel_staging_gives_the_serial_manifests_staged_rows_and_rejections(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    serial = Staging(tmp_path / "serial", earliest=EARLIEST, now=NOW, workers=1)
    parallel = _parallel(tmp_path, "parallel")
    seen: list[tuple[int, int]] = []
    serial_files = serial.stage_inbox(inbox)
    parallel_files = parallel.stage_inbox(inbox, progress=lambda done, total: seen.append((done, total)))
    assert [f.relpath for f in parallel_files] == [f.relpath for f in serial_files]  # the inbox's order
    assert _staged_content(parallel, parallel_files) == _staged_content(serial, serial_files)
    assert sum(f.file_rejected for f in parallel_files) >= 5  # the corpus' bad files are in the comparison
    pd.testing.assert_frame_equal(parallel.load_rejected()[0], serial.load_rejected()[0])
    assert seen == [(i, len(serial_files)) for i in range(1, len(serial_files) + 1)]
    _no_tmp_left(parallel)
    # staged files are read back, not staged again
    assert parallel.stage_files(inbox, scan_inbox(inbox)) == parallel_files
    assert parallel.stage_inbox(inbox) == []


def test_small_batches_process_local_stores_and_one_worker_stay_serial(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    files = scan_inbox(inbox)
    staging = Staging(tmp_path / "w", workers=4)  # the default minimum: the corpus is far below it
    assert staging._pool_size(UPath(inbox), files, None) == 1
    assert staging._pool_size(UPath(inbox), files, 1) == 1
    eager = _parallel(tmp_path, "w", workers=4)
    assert eager._pool_size(UPath(inbox), files, None) == 4
    assert eager._pool_size(UPath(inbox), files[:1], None) == 1
    assert eager._pool_size(UPath(inbox), files, 1) == 1
    assert _parallel(tmp_path, "w")._pool_size(UPath("memory://inbox"), files, None) == 1


def _small_inbox(tmp_path: Path) -> Path:
    """A few files of the corpus, good and bad, of every kind (worker processes take seconds to start)."""
    source = tmp_path / "source"
    for name in ("metrics/corrupt.parquet", "metrics/long.csv.gz", "metrics/long-conflict.jsonl",
                 "metrics/wide.parquet", "metrics/run-ts1/trainer_state.json", "jobs/jobs-bad-rows.csv",
                 *[f"billing/{p.name}" for p in sorted((CORPUS / "billing").iterdir())[:2]]):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / name, source / name)
    return _inbox(tmp_path, source)


def _dies_on_corrupt_parquet(config, inbox, file):
    """A worker task whose process dies on one file, as a crash in native code would."""
    if file.relpath.endswith("corrupt.parquet"):
        os._exit(3)
    return _stage_in_worker(config, inbox, file)


def test_a_file_that_kills_its_worker_process_is_rejected_and_the_others_are_staged(tmp_path: Path) -> None:
    inbox = _small_inbox(tmp_path)
    serial = Staging(tmp_path / "serial", earliest=EARLIEST, now=NOW, workers=1)
    expected = {f.relpath: f for f in serial.stage_inbox(inbox)}
    parallel = _parallel(tmp_path, "parallel")
    files = scan_inbox(inbox)
    out: dict[int, object] = {}
    parallel._stage_in_pool(UPath(inbox), list(enumerate(files)), 2, out.__setitem__, task=_dies_on_corrupt_parquet)
    staged = [out[i] for i in range(len(files))]
    dead = [f for f in staged if f.relpath.endswith("corrupt.parquet")]
    assert len(dead) == 1 and dead[0].file_rejected and dead[0].balanced and dead[0].accepted == 0
    reasons = parallel.load_rejected()[0].query("source == @dead[0].relpath")["reason"].tolist()
    assert reasons == ["the process reading this file died (killed, out of memory, or a crash in native code)"]
    others = [f for f in staged if f is not dead[0]]
    assert _staged_content(parallel, others) == _staged_content(serial, [expected[f.relpath] for f in others])
    _no_tmp_left(parallel)


def _store_refuses_billing(config, inbox, file):
    if file.kind == "billing":
        raise PermissionError("the store refused the write")
    return _stage_in_worker(config, inbox, file)


def test_a_worker_error_that_is_not_the_files_is_raised_after_every_other_file_is_staged(tmp_path: Path) -> None:
    inbox = _small_inbox(tmp_path)
    parallel = _parallel(tmp_path, "parallel")
    files = scan_inbox(inbox)
    out: dict[int, object] = {}
    with pytest.raises(RuntimeError, match="every other file is staged") as info:
        parallel._stage_in_pool(UPath(inbox), list(enumerate(files)), 2, out.__setitem__, task=_store_refuses_billing)
    assert isinstance(info.value.__cause__, PermissionError)
    assert sorted(f.relpath for f in out.values()) == sorted(f.relpath for f in files if f.kind != "billing")
    assert not any(parallel.is_staged(f) for f in files if f.kind == "billing")  # tried again next time


def test_a_reader_that_raises_is_a_rejection_of_its_file_not_an_error(tmp_path: Path, monkeypatch) -> None:
    inbox = tmp_path / "inbox" / "metrics"
    inbox.mkdir(parents=True)
    (inbox / "a.csv").write_text("ts,job_id,metric,value\n2026-11-20T10:00:00Z,j,training_loss,1\n")
    (tmp_path / "inbox" / "jobs").mkdir()
    (tmp_path / "inbox" / "jobs" / "jobs.csv").write_text("job_id,status\nj,running\n")

    def broken(path):
        raise KeyError("a reader bug")

    monkeypatch.setattr(metric_export, "read_metric_export", broken)
    staging = _staging(tmp_path)
    jobs, metrics = sorted(staging.stage_inbox(tmp_path / "inbox"), key=lambda f: f.relpath)
    assert metrics.file_rejected and metrics.balanced and (jobs.accepted, jobs.rejected) == (1, 0)
    assert staging.load_rejected()[0]["reason"].tolist() == [
        "the reader failed on this file: KeyError: 'a reader bug'"]


def test_a_remote_inbox_is_staged_in_parallel_through_its_url(tmp_path: Path) -> None:
    """Workers get the inbox as a URL string (and its storage options) and copy files through fsspec."""
    inbox = _small_inbox(tmp_path)
    # the trainer_state reader writes the path it read (here a temporary copy) into rejections' raw text
    shutil.rmtree(inbox / "metrics" / "run-ts1")
    serial = Staging(tmp_path / "serial", earliest=EARLIEST, now=NOW, workers=1)
    expected = serial.stage_inbox(inbox)
    remote = UPath(f"simplecache::file://{inbox.as_posix()}")  # not a local path: the fsspec copy branch
    assert remote.protocol not in ("", "file", "local")
    parallel = _parallel(tmp_path, "parallel")
    assert parallel._pool_size(remote, scan_inbox(remote), None) == 2
    staged = parallel.stage_inbox(remote)
    assert _staged_content(parallel, staged) == _staged_content(serial, expected)
