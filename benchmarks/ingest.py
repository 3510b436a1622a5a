"""Ingest benchmark: ftops' metric-export reader against a bare `pyarrow.csv.read_csv` of the same file.

    python benchmarks/ingest.py                    # 10 million samples, best of 3
    python benchmarks/ingest.py --rows 1000000 --repeats 1

The export is synthetic but shaped like the real thing: ~40 fine-tuning jobs logging every 10 s,
training metrics with a step (some under common aliases: `loss`, `lr`), per-GPU metrics for 8
devices, host metrics, ISO-8601 timestamps with milliseconds and `Z`. It is generated once, with
numpy and pyarrow (no per-row Python), and cached under benchmarks/.data/ (git-ignored).

Each run is a fresh subprocess, bare and ftops interleaved, so that peak RSS (ru_maxrss from
wait4) is that reader's alone (tracemalloc cannot see Arrow's allocations) and neither inherits the
other's warm heap. The reported time is the best run, measured inside the subprocess around the
read call only (interpreter start and imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / ".data"
REPO_ROOT = Path(__file__).resolve().parents[1]

N_JOBS = 40
DEVICES = 8
TICK_SECONDS = 10


def _tick_template() -> tuple[list[str], list[str | None], list[bool]]:
    """Samples one job emits per tick: (metric name as written, device, has a step)."""
    metrics: list[str] = []
    devices: list[str | None] = []
    has_step: list[bool] = []
    for name in ("loss", "lr", "grad_norm", "samples_per_second", "tokens_per_second", "epoch"):
        metrics.append(name)
        devices.append(None)
        has_step.append(True)
    for name in ("gpu_utilization_pct", "gpu_memory_used_ratio", "gpu_power_watts", "gpu_temperature_c"):
        for d in range(DEVICES):
            metrics.append(name)
            devices.append(str(d))
            has_step.append(False)
    for name in ("cpu_usage_percent", "host_memory_used_ratio"):
        metrics.append(name)
        devices.append(None)
        has_step.append(False)
    return metrics, devices, has_step


def build_export(rows: int, path: Path) -> Path:
    """Write a long-format CSV export of `rows` samples (vectorised; cached by path)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(20240501)
    names, devices, has_step = _tick_template()
    per_tick = len(names)
    ticks = -(-rows // per_tick)
    tick = np.arange(ticks, dtype=np.int64)
    job = tick % N_JOBS  # jobs interleave, as a fleet-wide export does
    tick_in_job = tick // N_JOBS

    slot = np.tile(np.arange(per_tick, dtype=np.int32), ticks)[:rows]
    job_r = np.repeat(job, per_tick)[:rows]
    tick_r = np.repeat(tick_in_job, per_tick)[:rows]

    start_ms = np.int64(1714521600000) + rng.integers(0, 86_400_000, N_JOBS)  # 2024-05-01 + up to 1 day
    ts_ms = start_ms[job_r] + tick_r * TICK_SECONDS * 1000 + rng.integers(0, 999, rows)
    ts = pc.strftime(pa.array(ts_ms.astype("datetime64[ms]")), format="%Y-%m-%dT%H:%M:%SZ")

    job_names = np.array([f"ft-{m}-{t}-{i:03d}" for i, (m, t) in enumerate(
        zip(np.resize(["llama3-8b", "mistral-7b", "qwen2-7b", "gemma-2b"], N_JOBS),
            np.resize(["lora", "qlora", "full", "dpo", "lora"], N_JOBS)))], dtype=object)
    hosts = np.array([f"gpu-node-{i:02d}.cluster.local" for i in range(N_JOBS)], dtype=object)

    progress = tick_r / max(int(tick_in_job.max()), 1)
    values_by_name = {
        "loss": 2.5 * np.exp(-3 * progress) + 0.3 + rng.normal(0, 0.05, rows),
        "lr": 2e-4 * (1 - progress) + 1e-6,
        "grad_norm": np.abs(rng.normal(3, 1.5, rows)),
        "samples_per_second": rng.normal(48, 4, rows),
        "tokens_per_second": rng.normal(48 * 2048, 8000, rows),
        "epoch": progress * 3,
        "gpu_utilization_pct": np.clip(rng.normal(85, 8, rows), 0, 100),
        "gpu_memory_used_ratio": np.clip(rng.normal(0.8, 0.05, rows), 0, 1),
        "gpu_power_watts": rng.normal(520, 40, rows),
        "gpu_temperature_c": rng.normal(68, 5, rows),
        "cpu_usage_percent": np.clip(rng.normal(60, 10, rows), 0, 100),
        "host_memory_used_ratio": np.clip(rng.normal(0.6, 0.05, rows), 0, 1),
    }
    names_arr = np.array(names, dtype=object)
    value = np.empty(rows)
    slot_name = names_arr[slot]
    for name, series in values_by_name.items():
        mask = slot_name == name
        value[mask] = series[mask]
    value = np.round(value, 6)

    step_mask = np.array(has_step)[slot]
    step = pa.array(tick_r + 1, mask=~step_mask)
    dev = np.array(devices, dtype=object)[slot]
    table = pa.table({
        "ts": ts,
        "job_id": pa.array(job_names[job_r]),
        "metric": pa.array(slot_name),
        "value": pa.array(value),
        "step": step,
        "device": pa.array(dev),
        "host": pa.array(hosts[job_r]),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # a plain header line, as exporters write it (Arrow would quote the names)
    with open(tmp, "wb") as f:
        f.write((",".join(table.column_names) + "\n").encode())
        pa_csv.write_csv(table, f, write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    tmp.replace(path)
    return path


def _worker(reader: str, path: Path, repeats: int) -> None:
    """Run one reader `repeats` times in this process; print its timings as JSON."""
    import resource

    if reader == "bare":
        import pyarrow.csv as pa_csv

        def run() -> int:
            return pa_csv.read_csv(path).num_rows
    else:
        from ftops.readers.metric_export import read_metric_export

        def run() -> int:
            result = read_metric_export(path)
            if len(result.rejected):
                raise SystemExit(f"unexpected rejections: {result.rejection_counts()}")
            return len(result.accepted)

    def cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
        return usage.ru_utime + usage.ru_stime

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu = [], []
    rows = 0
    for _ in range(repeats):
        c0, t0 = cpu_seconds(), time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - t0)
        cpu.append(cpu_seconds() - c0)
    print(json.dumps({"reader": reader, "times": times, "cpu": cpu, "rows": rows,
                      "rss_after_import_kib": rss_before}))


def _measure(reader: str, path: Path, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", reader, "--file", str(path), "--repeats", str(repeats)]
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{reader} worker failed with exit code {proc.returncode}")
    result = json.loads(out)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def _prefault(n_bytes: int) -> None:
    """Touch `n_bytes` of memory once in a throw-away process.

    On a VM whose memory the host backs lazily (Firecracker, ballooned guests) the first touch of a
    guest page costs ~2 s per GiB, later touches ~0.06 s: without this, whichever reader first
    reaches a new memory high-water mark pays the host's cost and the comparison measures the VM.
    """
    code = f"import numpy as np; a = np.ones({n_bytes // 8}, dtype=np.float64); a[::512] += 1"
    subprocess.run([sys.executable, "-c", code], check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="samples in the export (default 10M)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per reader; the best is reported")
    parser.add_argument(
        "--no-prefault", dest="prefault", action="store_false",
        help="skip touching memory once before timing (see _prefault)",
    )
    parser.add_argument("--worker", choices=["bare", "ftops"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        _worker(args.worker, args.file, args.repeats)
        return

    path = DATA_DIR / f"metrics_long_{args.rows}.csv"
    if not path.exists():
        t0 = time.perf_counter()
        build_export(args.rows, path)
        print(f"built {path.name} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
    print(f"file: {path.name}, {path.stat().st_size / 2**20:.0f} MiB, {args.rows:,} samples, "
          f"best of {args.repeats}, {os.cpu_count()} CPUs")

    prefault_bytes = min(4 * path.stat().st_size, 8 << 30) if args.prefault else 0
    if prefault_bytes:
        _prefault(prefault_bytes)
    # interleaved, one fresh process per run: neither reader inherits the other's warm heap
    runs: dict[str, list[dict]] = {"bare": [], "ftops": []}
    for _ in range(args.repeats):
        for reader in ("bare", "ftops"):
            runs[reader].append(_measure(reader, path, 1))
    results = [
        {
            "reader": reader,
            "times": [t for r in rs for t in r["times"]],
            "cpu": [t for r in rs for t in r["cpu"]],
            "rows": rs[0]["rows"],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
        }
        for reader, rs in runs.items()
    ]
    bare, bare_median = min(results[0]["times"]), statistics.median(results[0]["times"])
    bare_cpu = min(results[0]["cpu"])
    header = (
        f"| {'reader':<30} | {'best s':>6} | {'median s':>8} | {'rows/s (best)':>13} | {'CPU s':>5} "
        f"| {'peak RSS MiB':>12} | {'best vs bare':>12} | {'median vs bare':>14} | {'CPU vs bare':>11} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    labels = {"bare": "pyarrow.csv.read_csv (bare)", "ftops": "ftops read_metric_export"}
    for r in results:
        best, median, best_cpu = min(r["times"]), statistics.median(r["times"]), min(r["cpu"])
        print(f"| {labels[r['reader']]:<30} | {best:6.2f} | {median:8.2f} | {r['rows'] / best:13,.0f} "
              f"| {best_cpu:5.2f} | {r['peak_rss_mib']:12,.0f} | {best / bare:11.2f}x "
              f"| {median / bare_median:13.2f}x | {best_cpu / bare_cpu:10.2f}x |")
    for r in results:
        print(f"{labels[r['reader']]}: wall " + ", ".join(f"{t:.2f}" for t in r["times"])
              + " s; CPU " + ", ".join(f"{t:.2f}" for t in r["cpu"]) + " s")


if __name__ == "__main__":
    main()
