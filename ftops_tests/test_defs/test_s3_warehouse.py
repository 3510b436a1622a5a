"""The warehouse on object storage (FTOPS_WAREHOUSE=s3://bucket/prefix), end to end, against a real S3 server.

The server is moto in server mode on a free local port (not moto's in-process mock: staging's worker
processes must reach the store over HTTP, as they would reach a real bucket). s3fs finds it the way a
deployment configures an S3-compatible store: the standard AWS environment variables
(AWS_ENDPOINT_URL, which botocore honours, and the credentials); worker processes inherit them.

1. write_table/read_table round-trip on s3 (a partitioned and an unpartitioned key), no `.tmp` left.
2. The whole graph with the warehouse on s3 gives the tables a local warehouse gives for the same inbox.
3. Staging in worker processes writing to s3 gives the manifests serial staging gives.
"""

from __future__ import annotations

import logging
import multiprocessing.forkserver
import os
import socket
import uuid
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

pytest.importorskip("moto.server", reason="moto[server] not installed: pip install -e '.[test]'")
pytest.importorskip("s3fs", reason="s3fs not installed: pip install -e '.[test]'")

import boto3  # noqa: E402  (moto[server] brings it)
import s3fs  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

import ftops.staging as staging_module  # noqa: E402
from ftops.definitions import Settings, build_definitions  # noqa: E402
from ftops.defs.io_manager import read_table, write_table  # noqa: E402
from ftops.defs.runner import materialize_graph  # noqa: E402
from ftops.staging import Staging  # noqa: E402
from ftops_tests.test_defs.inbox_builder import write_bill, write_jobs, write_metrics  # noqa: E402

BUCKET = "ftops-test"
MIN_TS, MAX_TS, AS_OF = "2026-11-20T22:00:00Z", "2026-11-21T02:00:00Z", "2026-11-21T02:00:00Z"
NOW = pd.Timestamp(AS_OF)
EARLIEST = pd.Timestamp("2023-01-01", tz="UTC")
COMPARED = ("job_registry", "alerts", "budget_status")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _restart_fork_server() -> None:
    """Stop this process's fork server (if any), so that the next pool's starts with today's environment.

    Staging's workers are forked from a fork server that is started once per process (ftops.staging.
    worker_context) and keeps the environment it was started with; one started by an earlier test,
    before AWS_ENDPOINT_URL was set, would give workers that cannot find the server.
    """
    multiprocessing.forkserver._forkserver._stop()


def _clear_s3fs() -> None:
    s3fs.S3FileSystem.clear_instance_cache()  # an instance made before the endpoint was set keeps none


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free port with the bucket made; AWS_* environment pointing at it."""
    port = _free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("AWS_")]:  # a developer's profile, region, ...
            mp.delenv(name)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        _clear_s3fs()
        _restart_fork_server()
        try:
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            yield s3fs.S3FileSystem()
        finally:
            _clear_s3fs()
            _restart_fork_server()  # its workers would look for a server that is gone
            server.stop()


def _prefix() -> str:
    return f"{BUCKET}/{uuid.uuid4().hex[:12]}"


def _find(fs: s3fs.S3FileSystem, prefix: str) -> list[str]:
    fs.invalidate_cache()
    return fs.find(prefix)


def _inbox(root: Path) -> Path:
    """inbox_builder's inbox, with a second export: ft-002's GPUs idle at 20 % (a gpu_underutilized alert)."""
    write_jobs(root)
    write_metrics(root)
    idle = write_metrics(root, job_id="ft-002", rows=180, bad_lines=0)
    lines = idle.read_text().splitlines()
    idle.write_text("".join(
        (line.replace('"value": 88.0', '"value": 20.0') if "gpu_utilization_pct" in line else line) + "\n"
        for line in lines))
    write_bill(root)
    return root


def _frame(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its columns and rows in one order, for comparing tables written by two runs."""
    df = df[sorted(df.columns)]
    return df.sort_values(list(df.columns), ignore_index=True, na_position="first")


# --- 1. the IO manager's read and write ------------------------------------------------------------

def test_write_and_read_tables_round_trip_on_s3_without_leftovers(s3):
    base = f"s3://{_prefix()}/wh"
    df = pd.DataFrame({
        "job_id": pd.Series(["ft-001", "ft-002", None], dtype="string"),
        "value": [1.5, float("nan"), 3.0],
        "ts": pd.to_datetime(["2026-11-20T22:00:00Z", "2026-11-20T23:00:00Z", "2026-11-20T23:59:59Z"], utc=True),
    })
    key = dg.AssetKey("job_registry")
    partitioned = dg.AssetKey("billing_line_items")  # daily: `<asset>/<day>.parquet`
    assert read_table(base, key) is None  # never written

    write_table(df, base, key)
    write_table(df.iloc[:2], base, partitioned, "2026-11-20")
    write_table(df.iloc[2:], base, partitioned, "2026-11-21")

    pd.testing.assert_frame_equal(read_table(base, key), df)
    pd.testing.assert_frame_equal(read_table(base, partitioned, "2026-11-20"), df.iloc[:2])
    pd.testing.assert_frame_equal(read_table(base, partitioned, "2026-11-21"), df.iloc[2:].reset_index(drop=True))
    assert read_table(base, partitioned, "2026-11-22") is None

    write_table(df.iloc[:1], base, key)  # a rewrite replaces the table
    pd.testing.assert_frame_equal(read_table(base, key), df.iloc[:1])

    objects = _find(s3, base.removeprefix("s3://"))
    assert objects, "nothing was written to the bucket"
    assert all(o.endswith(".parquet") for o in objects), objects
    assert not [o for o in objects if o.endswith(".tmp")], objects  # written under a temporary name, renamed


# --- 2. the whole graph ----------------------------------------------------------------------------

# Partitions from shortly before the fixture's days, two shards a day (the `<day>/<shard>` layout is
# exercised). From the default start (2023-01-01, 8 shards) the unpartitioned `alerts` reads its
# all-partitions input `anomalies` by probing every shard-day that ever existed, two requests each
# on s3 (about 23,000 requests, minutes against any S3); see the report on io_manager.load_input.
POLICY = "partitions:\n  start: '2026-11-15'\n  shards: 2\n"


def _run_graph(inbox: Path, warehouse: str, config: Path, ledger: Path) -> None:
    # the ledger needs a real file system; by default an s3 warehouse's would be .ftops/ledger in the cwd
    defs = build_definitions(Settings(str(inbox), warehouse, str(config), ledger=str(ledger)))
    results = materialize_graph(defs, dg.DagsterInstance.ephemeral(), MIN_TS, MAX_TS, as_of=AS_OF)
    assert results and all(r.success for r in results)


def test_the_whole_graph_on_s3_gives_the_tables_of_a_local_warehouse(s3, tmp_path):
    inbox = _inbox(tmp_path / "inbox")
    remote = f"s3://{_prefix()}/warehouse"
    local = tmp_path / "warehouse"
    config = tmp_path / "ftops.yaml"
    config.write_text(POLICY)
    _run_graph(inbox, remote, config, tmp_path / "ledger-s3")
    _run_graph(inbox, str(local), config, tmp_path / "ledger-local")

    tables = {name: read_table(remote, dg.AssetKey(name)) for name in COMPARED}
    for name, df in tables.items():
        assert df is not None, f"{name} is not in the s3 warehouse"
        expected = read_table(str(local), dg.AssetKey(name))
        assert expected is not None, name
        pd.testing.assert_frame_equal(_frame(df), _frame(expected), obj=name)

    jobs = tables["job_registry"]
    assert sorted(jobs["job_id"]) == ["ft-001", "ft-002"]
    budget = tables["budget_status"]
    assert not budget.empty
    assert budget["billed_usd"].sum() > 0 and budget["spend_usd"].sum() > 0  # the bill: 4 h at $12.50
    research = budget[budget["budget_category"] == "research"]
    assert not research.empty and (research["billed_usd"] > 0).any()
    alerts = tables["alerts"]
    assert set(alerts["job_id"]) <= set(jobs["job_id"])
    idle = alerts[(alerts["job_id"] == "ft-002") & (alerts["rule"] == "gpu_underutilized")]
    assert len(idle) >= 1, alerts[["job_id", "rule"]]

    # metric_samples, whatever its partition files are called: every row, read back from s3
    remote_files = [f for f in _find(s3, f"{remote.removeprefix('s3://')}/metric_samples")
                    if f.endswith(".parquet") and not Path(f).name.startswith(".")]
    local_files = [p for p in local.glob("metric_samples/**/*.parquet") if not p.name.startswith(".")]
    assert remote_files and len(remote_files) == len(local_files)
    remote_rows = sum(len(pd.read_parquet(f"s3://{f}")) for f in remote_files)
    local_rows = sum(len(pd.read_parquet(p)) for p in local_files)
    assert remote_rows == local_rows == 240 * 3 + 180 * 3  # both exports, three metrics a minute
    assert not [o for o in _find(s3, remote.removeprefix("s3://")) if o.endswith(".tmp")]


# --- 3. staging in worker processes ----------------------------------------------------------------

def _recording_task(config: dict, inbox: tuple[str, dict], file) -> object:
    """Stage in a worker as usual, and leave the worker's pid in the bucket (proof it ran there)."""
    staged = staging_module._stage_in_worker(config, inbox, file)
    warehouse, options = config["warehouse"]
    (UPath(warehouse, **options).parent / "workers" / str(os.getpid())).write_text(file.relpath)
    return staged


def _comparable(manifest) -> dict:
    return {k: v for k, v in asdict(manifest).items() if k != "staged_at"}  # wall clock of staging


def test_parallel_staging_into_s3_gives_the_serial_manifests(s3, tmp_path, monkeypatch):
    inbox = _inbox(tmp_path / "inbox")
    parallel_root, serial_root = _prefix(), _prefix()
    parallel = Staging(f"s3://{parallel_root}/warehouse", earliest=EARLIEST, now=NOW, workers=2,
                       parallel_min_bytes=0)
    serial = Staging(f"s3://{serial_root}/warehouse", earliest=EARLIEST, now=NOW, workers=1)

    pools = []
    original = Staging._stage_in_pool

    def spy(self, inbox_path, todo, workers, done, task=None):
        pools.append(workers)
        return original(self, inbox_path, todo, workers, done, task=_recording_task)

    monkeypatch.setattr(Staging, "_stage_in_pool", spy)
    staged_parallel = parallel.stage_inbox(inbox)
    assert pools == [2], "staging did not use worker processes"
    staged_serial = serial.stage_inbox(inbox)
    assert pools == [2], "serial staging used a pool"

    worker_pids = {Path(p).name for p in _find(s3, f"{parallel_root}/workers")}
    assert worker_pids and str(os.getpid()) not in worker_pids  # the files were staged in other processes

    assert len(staged_parallel) == len(staged_serial) == 4  # jobs, two metric exports, the bill
    assert [_comparable(m) for m in staged_parallel] == [_comparable(m) for m in staged_serial]
    # what is in the bucket, read back (not what the workers said)
    s3.invalidate_cache()
    on_s3 = sorted((_comparable(m) for m in parallel.manifests()), key=lambda m: m["relpath"])
    assert on_s3 == sorted((_comparable(m) for m in serial.manifests()), key=lambda m: m["relpath"])
    assert len(on_s3) == 4 and all(m["accepted"] > 0 for m in on_s3)
    assert sum(m["rejected"] for m in on_s3) == 1  # the truncated line of ft-001's export
    for kind in {m["kind"] for m in on_s3}:  # the staged rows, read back from s3 as the assets read them
        assert len(parallel.load(kind)[0]) == sum(m["accepted"] for m in on_s3 if m["kind"] == kind)
    assert len(parallel.load_rejected()[0]) == 1
    objects = _find(s3, parallel_root)
    assert not [o for o in objects if o.endswith(".tmp")], objects
    assert all(parallel.is_staged(f) for f in staging_module.scan_inbox(inbox))
    assert parallel.stage_inbox(inbox) == []  # all staged: nothing to do again
