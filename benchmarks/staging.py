"""Staging benchmark: ftops staging an inbox, serial and in parallel, against bare pyarrow reads of the same files.

    python benchmarks/staging.py                         # demo fleet of 100 jobs x 1 day, all cores
    python benchmarks/staging.py --jobs 20 --workers 2   # quick
    python benchmarks/staging.py --jobs 1000             # the issue's fleet (about 2,000 files, 6 GB)

The inbox is the synthetic demo fleet (`ftops.demo_fleet.write_demo_inbox`, a fixed seed and end),
written once and cached under benchmarks/.data/ (git-ignored): per job a trainer log (JSONL, a wide
CSV or a trainer_state.json) and agent exports (JSONL) of its GPUs and host, plus the job registry
and a FOCUS bill (CSV).

Rows, all in this one run over the same files (the page cache warmed first by reading every file once):

- bare pyarrow: `pyarrow.json.read_json` (`.jsonl`, and `.json` with newlines in values),
  `pyarrow.csv.read_csv` (`.csv`), `pyarrow.parquet.read_table` (`.parquet`) per file with default
  options, serial and in a process pool of the same size as ftops' (spawned processes, each
  returning only a row count). It is the lower bound, not the same work: ftops also counts the
  records of every file, checks every row, maps to the canonical tables and writes the staged
  Parquet and manifest.
- ftops staging: `Staging.stage_files` with `workers=1` (today's serial path) and with `--workers`
  (default: the cores), each into a fresh warehouse.

Wall times include starting the process pools (both sides spawn theirs). samples/s divides the same
number, the metric samples the inbox holds (accepted by staging), by each row's time. The script
stops unless the parallel run staged exactly what the serial run staged (manifests but their
wall-clock `staged_at`, and the bytes of every staged Parquet file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO_ROOT))

from bare_read import bare_read  # noqa: E402 - benchmarks/, the script's folder
from ftops.staging import Staging, StagedFile, scan_inbox, worker_context  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent / ".data"
END = pd.Timestamp("2026-11-20T00:00:00Z")  # a fixed end: the same bytes every time


def _bare(paths: list[str], workers: int) -> int:
    if workers == 1:
        return sum(bare_read(p) for p in paths)
    with ProcessPoolExecutor(workers, mp_context=worker_context()) as pool:
        return sum(pool.map(bare_read, paths))


def _stage(inbox: Path, files, warehouse: Path, workers: int) -> list[StagedFile]:
    shutil.rmtree(warehouse, ignore_errors=True)
    return Staging(warehouse, now=END, workers=workers).stage_files(inbox, files)


def _fingerprint(warehouse: Path, staged: list[StagedFile]) -> list[tuple]:
    staging = Staging(warehouse)
    out = []
    for f in staged:
        accepted, rejected, _ = staging._paths(f.kind, f.identity)
        digest = hashlib.sha256(accepted.read_bytes() + b"|" + rejected.read_bytes()).hexdigest()
        out.append((json.dumps({k: v for k, v in f.__dict__.items() if k != "staged_at"}, sort_keys=True), digest))
    return out


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _inbox(jobs: int, days: int, seed: int) -> Path:
    inbox = DATA_DIR / f"staging-demo-j{jobs}-d{days}-s{seed}"
    done = inbox / ".complete"
    if not done.exists():
        from ftops.demo_fleet.inbox import write_demo_inbox

        shutil.rmtree(inbox, ignore_errors=True)
        t0 = time.perf_counter()
        write_demo_inbox(inbox, seed=seed, n_jobs=jobs, days=days, end=END)
        done.touch()
        print(f"wrote the demo inbox ({jobs} jobs x {days} day(s)) in {time.perf_counter() - t0:.1f} s", flush=True)
    return inbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the demo fleet (default 100)")
    parser.add_argument("--days", type=int, default=1, help="days of the demo fleet (default 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes of the parallel rows (default: the cores)")
    parser.add_argument("--keep", action="store_true", help="keep the staged warehouses under benchmarks/.data/")
    args = parser.parse_args(argv)

    inbox = _inbox(args.jobs, args.days, args.seed)
    files = scan_inbox(inbox)
    paths = [str(inbox / f.relpath) for f in files]
    size = sum(f.size for f in files)
    for p in paths:  # warm the page cache alike for every row
        Path(p).read_bytes()
    print(f"inbox: {len(files)} files, {size / 2**20:,.0f} MiB; {os.cpu_count()} CPUs; "
          f"parallel rows: {args.workers} processes; load average {_load()}", flush=True)

    t0 = time.perf_counter()  # once per process: the fork server both pools fork their workers from
    with ProcessPoolExecutor(1, mp_context=worker_context()) as pool:
        pool.submit(os.getpid).result()
    print(f"fork server started (once per process, not in the rows below) in {time.perf_counter() - t0:.2f} s")

    rows: list[tuple[str, int, float]] = []

    def timed(label: str, workers: int, fn):
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        rows.append((label, workers, seconds))
        print(f"  {label} ({workers} process{'es' if workers > 1 else ''}): {seconds:.2f} s", flush=True)
        return result

    serial_wh, parallel_wh = DATA_DIR / "staging-warehouse-serial", DATA_DIR / "staging-warehouse-parallel"
    timed("bare pyarrow", 1, lambda: _bare(paths, 1))
    serial = timed("ftops staging", 1, lambda: _stage(inbox, files, serial_wh, 1))
    timed("bare pyarrow", args.workers, lambda: _bare(paths, args.workers))
    parallel = timed("ftops staging", args.workers, lambda: _stage(inbox, files, parallel_wh, args.workers))

    if _fingerprint(parallel_wh, parallel) != _fingerprint(serial_wh, serial):
        sys.exit("parallel staging differs from serial staging")
    samples = sum(f.accepted for f in serial if f.kind == "metrics")
    print(f"load average after the rows: {_load()} (other processes' share of the cores is not ours)")
    if not args.keep:
        shutil.rmtree(serial_wh)
        shutil.rmtree(parallel_wh)

    bare = {w: s for label, w, s in rows if label == "bare pyarrow"}
    print(f"\n{len(files)} files, {size / 2**20:,.0f} MiB, {samples:,} metric samples; parallel staging "
          "staged exactly what serial staging did\n")
    print("| reader | processes | wall s | files/s | samples/s | vs bare pyarrow (same processes) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, workers, seconds in rows:
        print(f"| {label} | {workers} | {seconds:.2f} | {len(files) / seconds:,.1f} | {samples / seconds:,.0f} "
              f"| {seconds / bare[workers]:.2f}x |")
    by = {(label, w): s for label, w, s in rows}
    if args.workers > 1:
        print(f"\nparallel speed-up: ftops {by['ftops staging', 1] / by['ftops staging', args.workers]:.2f}x, "
              f"bare pyarrow {bare[1] / bare[args.workers]:.2f}x")


if __name__ == "__main__":
    main()
