"""Fleet benchmark: a day of N jobs end to end (staging, ingest, monitoring, alerts, costs, budgets) on a
Dagster instance, against a bare pyarrow read of the same inbox files.

    python benchmarks/fleet.py --jobs 1000                          # the issue's fleet: demo density, 1 day
    python benchmarks/fleet.py --jobs 1000 --density realistic      # 15 s scrapes of every GPU
    python benchmarks/fleet.py --sizes 100,300,1000 --check         # growth series, exit 1 on a missed target
    python benchmarks/fleet.py --jobs 20                            # quick (a minute or two)

Inbox (benchmarks/fleet_data.py, written before anything is timed, by this process): `--density demo`
is exactly what `ftops demo --jobs N --days D` writes (the same generator and seed; `end` pinned to a
fixed midnight, so the bytes never change); `--density realistic` is the same planned fleet (registry,
bills, budgets) with 15 s scrapes of every GPU and a trainer log every ~10 s, as daily Parquet
exports per job. The generator prints the samples and the bytes on disk.

Each fleet is measured in a fresh process of its own (`--measure`, started by this one), so that its
memory is the product's alone (not the generator's heap) and an out-of-memory kill is reported with
the step it happened in and the memory seen until then. Measured:
- bare pyarrow (the baseline): `pyarrow.parquet.read_table` / `pyarrow.csv.read_csv` /
  `pyarrow.json.read_json` of every inbox file, all columns, default options (Arrow's own threads),
  one file after the other, in another fresh process (imports not timed), after every file was read
  once to warm the page cache. A lower bound for reading the inbox, not the same work: every row's
  "vs bare read" is its time over this one's.
- staging: `stage_inbox` of the inbox resource's Staging with `now` pinned to the end of the data,
  what `ftops demo` does before it materialises (otherwise the first asset of job_registry_ingest
  would, and find nothing left to stage). Its worker processes come from a fork server.
- every step of `materialize_graph` (ftops.defs.runner, GRAPH_STEPS: ingest -> monitoring -> alerts
  -> costs and budgets) on a SQLite Dagster instance in the work folder, `as_of` = the end of the
  data; a step's time is what the `progress` callback reports (all its runs).

Memory: a thread of the measured process samples every 50 ms with psutil the RSS of the process and
of every descendant (fork server, staging workers, resource tracker, Dagster's compute-log tails) and
reads each one's kernel high-water mark (VmHWM). "main MiB" of a step is the larger of its highest
sample and the high-water mark, which is reset when each step starts (/proc/self/clear_refs), so a
peak between two samples is not missed. "child MiB" is the highest peak of any single child process
during the step. Rows written: what the step's assets hold in the warehouse after the run, from the
Parquet footers (no data read); for staging, the rows of the staged copies (accepted and rejected).

Targets (`--check` exits 1 when one is missed): every process under 4 GiB peak RSS (both densities);
demo density, one day: end to end (staging + graph) under 300 s (the issue's target at 1000 jobs; a
smaller fleet must meet it too); with `--sizes`: seconds per sample at the largest size at most 1.25x
those at the smallest (no worse than linear growth). A fleet whose process dies misses them all.

`--shards S` writes `partitions: {start: <first day>, shards: S}` into the ftops.yaml. Without it the
fleet policy's shard count stands (the demo policy's, else the product default); `partitions.start`
is the first day of the data whenever this ftops has the `partitions` settings. An ftops without
them runs without (and says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
for _path in (BENCH_DIR, REPO_ROOT):  # run as a script from a checkout: this ftops, then fleet_data
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bare_read import bare_read  # noqa: E402

MIB = 2**20
GIB = 2**30
TARGET_SECONDS = 300.0
TARGET_RSS = 4 * GIB
TARGET_GROWTH = 1.25
SAMPLE_INTERVAL_S = 0.05
STATUS_INTERVAL_S = 1.0


# ---------------------------------------------------------------------------------------------------
# memory (in the measured process)


def _vm_hwm(pid: int | str = "self") -> int:
    """The kernel's peak RSS of a process in bytes; 0 when it is gone (or not Linux)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # 5: reset the peak RSS to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


class MemorySampler:
    """RSS of this process and its descendants every `interval` s, in buckets that `close(name)` ends.

    Every `STATUS_INTERVAL_S` the state so far goes to `status_path` (atomically), for the parent to
    report if this process is killed.
    """

    def __init__(self, status_path: Path | None = None, interval: float = SAMPLE_INTERVAL_S) -> None:
        import psutil

        self._psutil = psutil
        self.interval = interval
        self.status_path = status_path
        self.proc = psutil.Process()
        self.pid = self.proc.pid
        self.cmdline = " ".join(self.proc.cmdline())
        self.lock = threading.Lock()
        self.identity: dict[int, tuple[int, str]] = {}  # child pid -> (parent pid, command line)
        self.peaks: dict[int, int] = {}  # child pid -> its peak over the run
        self.steps: dict[str, dict] = {}  # name -> seconds, main, child, children (a repeated name is merged)
        self.order: list[str] = []
        self.main_peak = 0
        self.hwm_resets = _reset_hwm()
        self._new_bucket()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _new_bucket(self) -> None:
        self.bucket = {"main": 0, "child": 0, "children": set()}

    def _identify(self, child) -> tuple[int, str]:
        try:
            return child.ppid(), " ".join(child.cmdline())
        except self._psutil.Error:
            return -1, ""

    def _role(self, pid: int) -> str:
        ppid, cmd = self.identity.get(pid, (-1, ""))
        if ppid != self.pid and ppid in self.identity and "forkserver" in self.identity[ppid][1]:
            return "worker"  # forked by the fork server (same command line as it)
        if "forkserver" in cmd:
            return "fork server"
        if "resource_tracker" in cmd:
            return "resource tracker"
        if cmd.startswith("tail "):
            return "compute-log tail"  # Dagster's LocalComputeLogManager: two per run
        if "watch_orphans" in cmd:
            return "compute-log watcher"
        return "child: " + cmd[:60]

    def sample(self) -> None:
        try:
            main = self.proc.memory_info().rss
            children = self.proc.children(recursive=True)
        except self._psutil.Error:
            return
        seen = []
        for child in children:
            if child.pid not in self.identity:
                identity = self._identify(child)
                if identity[0] == self.pid and identity[1] == self.cmdline:
                    continue  # forked from this process and not yet exec'ed: its pages are ours
                self.identity[child.pid] = identity
            try:
                rss = child.memory_info().rss
            except self._psutil.Error:
                continue
            seen.append((child, max(rss, _vm_hwm(child.pid))))
        with self.lock:
            self.bucket["main"] = max(self.bucket["main"], main)
            for child, peak in seen:
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), peak)
                self.bucket["child"] = max(self.bucket["child"], peak)
                self.bucket["children"].add(child.pid)

    def _run(self) -> None:
        last_status = time.monotonic()
        while not self._stop.wait(self.interval):
            self.sample()
            if time.monotonic() - last_status >= STATUS_INTERVAL_S:
                self.write_status()
                last_status = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def close(self, name: str, seconds: float) -> dict:
        """End the current bucket as step `name` and start the next; returns the step's figures."""
        self.sample()
        with self.lock:
            main = max(self.bucket["main"], _vm_hwm() if self.hwm_resets else 0)
            if name not in self.steps:
                self.order.append(name)
                self.steps[name] = {"seconds": 0.0, "main": 0, "child": 0, "children": set()}
            step = self.steps[name]
            step["seconds"] += seconds
            step["main"] = max(step["main"], main)
            step["child"] = max(step["child"], self.bucket["child"])
            step["children"] |= self.bucket["children"]
            self.main_peak = max(self.main_peak, main)
            self._new_bucket()
            if self.hwm_resets:
                _reset_hwm()
        self.write_status()
        return step

    def processes(self) -> list[dict]:
        with self.lock:
            return [{"pid": pid, "role": self._role(pid), "peak": peak} for pid, peak in sorted(self.peaks.items())]

    def step_rows(self) -> list[dict]:
        with self.lock:
            return [{"name": n, "seconds": s["seconds"], "main": s["main"], "child": s["child"],
                     "children": len(s["children"])} for n, s in ((n, self.steps[n]) for n in self.order)]

    def write_status(self) -> None:
        if self.status_path is None:
            return
        with self.lock:
            current = {"main": max(self.bucket["main"], _vm_hwm() if self.hwm_resets else 0),
                       "child": self.bucket["child"], "children": len(self.bucket["children"])}
        status = {"steps": self.step_rows(), "current": current, "processes": self.processes(),
                  "main_peak": max(self.main_peak, current["main"])}
        tmp = self.status_path.with_name(self.status_path.name + ".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.status_path)


# ---------------------------------------------------------------------------------------------------
# the baseline: a bare pyarrow read of every inbox file


def _bare_worker(list_file: str) -> None:
    """Read every listed file once; print rows, seconds and peak RSS as JSON."""
    import resource

    import pyarrow.csv  # noqa: F401 - imported before the clock starts
    import pyarrow.json  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    paths = Path(list_file).read_text().splitlines()
    t0 = time.perf_counter()
    rows = sum(bare_read(p) for p in paths)
    seconds = time.perf_counter() - t0
    print(json.dumps({"rows": rows, "seconds": seconds, "files": len(paths),
                      "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def measure_bare(paths: list[str], run_dir: Path) -> dict:
    for p in paths:  # warm the page cache: the baseline and ftops read the same cached bytes
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass
    list_file = run_dir / "bare-read-files.txt"
    list_file.write_text("\n".join(paths) + "\n")
    out = subprocess.run([sys.executable, __file__, "--bare-worker", str(list_file)], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------
# one fleet: written and read bare here, measured in a process of its own


def _partitions_supported() -> bool:
    from ftops.policy import Policy

    return any(f.name == "partitions" for f in dataclasses.fields(Policy))


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def prepare(args: argparse.Namespace, jobs: int, run_dir: Path) -> dict:
    """Write the inbox and ftops.yaml into `run_dir`, measure the bare read; the plan for `--measure`."""
    import pandas as pd
    import yaml

    from fleet_data import write_inbox
    from ftops.policy import load_policy
    from ftops.staging import scan_inbox

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    end = pd.Timestamp(args.end)
    print(f"== {args.density} density, {jobs} jobs x {args.days} day(s), seed {args.seed}, work folder {run_dir}",
          flush=True)
    generated = write_inbox(run_dir / "inbox", args.density, jobs, args.days, seed=args.seed, end=end)
    print(f"   {generated.summary()}", flush=True)

    config = dict(generated.policy)
    if _partitions_supported():
        # the fleet's own partitions settings (the demo policy may carry some), from its first day
        config["partitions"] = {**config.get("partitions", {}), "start": generated.start.strftime("%Y-%m-%d")}
        if args.shards:
            config["partitions"]["shards"] = args.shards
    elif args.shards:
        print(f"   note: this ftops has no `partitions` settings (ftops.policy.Policy): --shards {args.shards} "
              "is not written and the run uses the product's partitions", flush=True)
    (run_dir / "ftops.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    policy = load_policy(str(run_dir / "ftops.yaml"))
    partitions = dataclasses.asdict(policy.partitions) if hasattr(policy, "partitions") else None
    print(f"   partitions in force: {partitions or 'this ftops has no partitions settings'}", flush=True)

    files = scan_inbox(run_dir / "inbox")
    bare = measure_bare([str(run_dir / "inbox" / f.relpath) for f in files], run_dir)
    print(f"   bare pyarrow read of {bare['files']:,} files: {bare['seconds']:.2f} s, {bare['rows']:,} rows",
          flush=True)
    plan = {
        "density": args.density, "jobs": jobs, "days": args.days, "seed": args.seed, "shards": args.shards,
        "start": generated.start.isoformat(), "end": end.isoformat(), "log_level": args.log_level,
        "processes": args.processes,
        "cpus": os.cpu_count(), "partitions": partitions,
        "inbox": {"files": generated.files, "bytes": generated.bytes, "samples_generated": generated.metric_samples,
                  "job_days": generated.job_days_with_samples, "seconds": generated.seconds},
        "bare": bare,
    }
    (run_dir / "plan.json").write_text(json.dumps(plan))
    return plan


def _asset_keys(defs, job_name: str) -> list:
    layer = defs.resolve_job_def(job_name).asset_layer
    keys = getattr(layer, "selected_asset_keys", None) or layer.executable_asset_keys
    return sorted(keys, key=lambda k: k.to_user_string())


def warehouse_rows(warehouse: Path, key) -> int:
    """Rows of an asset's table (every partition file) from the Parquet footers."""
    import pyarrow.parquet as pq

    base = warehouse.joinpath(*key.path)
    single = base.with_name(base.name + ".parquet")
    files = [single] if single.exists() else []
    if base.is_dir():
        files += [p for p in sorted(base.rglob("*.parquet")) if not p.name.startswith(".")]
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files)


def measure(run_dir: Path) -> None:
    """The measured process: staging and every graph step on a fresh instance; writes result.json."""
    import dagster as dg
    import pandas as pd

    from ftops.defs.runner import materialize_graph
    from ftops.definitions import Settings, build_definitions
    from ftops.policy import load_policy

    plan = json.loads((run_dir / "plan.json").read_text())
    inbox, warehouse, home = run_dir / "inbox", run_dir / "warehouse", run_dir / "dagster_home"
    config = run_dir / "ftops.yaml"
    settings = Settings(inbox=str(inbox), warehouse=str(warehouse), config=str(config))
    defs = build_definitions(settings)
    policy = load_policy(str(config))
    home.mkdir(exist_ok=True)
    instance = dg.DagsterInstance.local_temp(tempdir=str(home))
    end = pd.Timestamp(plan["end"])
    # what the ingest assets do first, with the same pinned "now" (AsOfConfig) and tolerance
    staging = defs.resources["inbox"].staging().at(end, policy.ingest.future_tolerance_hours)

    sampler = MemorySampler(run_dir / "status.json")
    sampler.start()
    print(f"   load average before: {_load()}", flush=True)

    def progress(name: str, seconds: float) -> None:
        step = sampler.close(name, seconds)
        child = f"largest child {step['child'] / MIB:,.0f} MiB" if step["children"] else "no child process"
        print(f"   {name}: {seconds:.1f} s, main {step['main'] / MIB:,.0f} MiB, {child}", flush=True)

    t_all = time.perf_counter()
    try:
        staged = staging.stage_inbox(str(inbox))
        progress("staging", time.perf_counter() - t_all)
        materialize_graph(defs, instance, plan["start"], plan["end"], progress=progress,
                          log_level=plan["log_level"], as_of=plan["end"],
                          settings=settings, processes=plan["processes"])
        total = time.perf_counter() - t_all
    finally:
        sampler.stop()
        sampler.write_status()
        instance.dispose()
    print(f"   load average after: {_load()}", flush=True)

    steps = sampler.step_rows()
    for step in steps:
        if step["name"] == "staging":
            step["rows"], step["assets"] = sum(m.rows_in for m in staged), "staged copies of the inbox files"
        else:
            keys = _asset_keys(defs, step["name"])
            step["rows"] = sum(warehouse_rows(warehouse, k) for k in keys)
            step["assets"] = ", ".join(k.to_user_string() for k in keys)
    result = {**plan, "samples": sum(m.accepted for m in staged if m.kind == "metrics"),
              "steps": steps, "total_seconds": total, "main_peak": sampler.main_peak,
              "processes": sampler.processes()}
    (run_dir / "result.json").write_text(json.dumps(result))


def _death(returncode: int) -> str:
    if returncode < 0:
        sig = signal.Signals(-returncode)
        return f"killed by {sig.name}" + (" (out of memory? see dmesg)" if sig == signal.SIGKILL else "")
    return f"exited with code {returncode}"


def run_size(args: argparse.Namespace, jobs: int, workdir: Path) -> dict:
    run_dir = workdir / f"fleet-{args.density}-j{jobs}-d{args.days}"
    plan = prepare(args, jobs, run_dir)
    proc = subprocess.run([sys.executable, __file__, "--measure", str(run_dir)])
    if proc.returncode == 0:
        result = json.loads((run_dir / "result.json").read_text())
    else:  # what the sampler saw until the process died
        status_file = run_dir / "status.json"
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        from ftops.defs.jobs import GRAPH_STEPS

        done = [s["name"] for s in status.get("steps", [])]
        left = [name for name in ["staging"] + [n for n, _ in GRAPH_STEPS] if name not in done]
        current = status.get("current", {"main": 0, "child": 0})
        result = {**plan, "samples": plan["inbox"]["samples_generated"],
                  "steps": [{**s, "rows": None, "assets": ""} for s in status.get("steps", [])],
                  "total_seconds": None, "main_peak": status.get("main_peak", 0),
                  "processes": status.get("processes", []),
                  "failed": f"the measured process {_death(proc.returncode)} during "
                            f"{left[0] if left else 'the wrap-up'}; main RSS had reached "
                            f"{current['main'] / MIB:,.0f} MiB and the largest child {current['child'] / MIB:,.0f} MiB "
                            "in that step"}
        _end_leftovers(status.get("processes", []))
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _end_leftovers(processes: list[dict]) -> None:
    """End the dead process's fork server and workers (they outlive it), by the pids its sampler saw."""
    import psutil

    for p in processes:
        if p["role"] not in ("fork server", "worker", "resource tracker"):
            continue
        try:
            proc = psutil.Process(p["pid"])
            if "multiprocessing" in " ".join(proc.cmdline()):  # still that process, not a reused pid
                proc.kill()
        except psutil.Error:
            pass


# ---------------------------------------------------------------------------------------------------
# reports and targets


def _mib(n: int) -> str:
    return f"{n / MIB:,.0f}"


def peak_rss(result: dict) -> int:
    return max([result["main_peak"]] + [p["peak"] for p in result["processes"]])


def print_run(result: dict) -> None:
    bare, samples, inbox = result["bare"], result["samples"], result["inbox"]
    size = sum(inbox["bytes"].values())
    generated = inbox["samples_generated"]
    staged = "staged" if result["total_seconds"] is not None else "in the inbox"
    partitions = result["partitions"] or "of the product (no partitions settings)"
    print(f"\n{result['density']} density, {result['jobs']} jobs x {result['days']} day(s): "
          f"{sum(inbox['files'].values()):,} inbox files, {size / MIB:,.1f} MiB, {samples:,} metric samples {staged} "
          f"({generated:,} generated; {generated / max(1, inbox['job_days']):,.0f} per job-day with samples, "
          f"{inbox['bytes'].get('metrics', 0) / max(1, generated):.2f} bytes per sample on disk); "
          f"partitions {partitions}; {result['cpus']} CPUs\n")
    print("| step | wall s | vs bare read | samples/s | rows written | main MiB | child MiB | children |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| bare pyarrow read (baseline, 1 process) | {bare['seconds']:.2f} | 1.00x "
          f"| {samples / bare['seconds']:,.0f} | {bare['rows']:,} read | {_mib(bare['peak'])} | - | - |")
    for s in result["steps"]:
        rows = "?" if s["rows"] is None else f"{s['rows']:,}"
        print(f"| {s['name']} | {s['seconds']:.2f} | {s['seconds'] / bare['seconds']:.1f}x "
              f"| {samples / s['seconds']:,.0f} | {rows} | {_mib(s['main'])} "
              f"| {_mib(s['child']) if s['children'] else '-'} | {s['children'] or '-'} |")
    child_peak = max([p["peak"] for p in result["processes"]] or [0])
    total = result["total_seconds"]
    if total is not None:
        print(f"| **total (staging + graph)** | **{total:.2f}** | **{total / bare['seconds']:.1f}x** "
              f"| **{samples / total:,.0f}** | | **{_mib(result['main_peak'])}** | **{_mib(child_peak)}** | |")
    groups: dict[str, list[int]] = {}
    for p in result["processes"]:
        groups.setdefault(p["role"], []).append(p["peak"])
    per_process = "".join(f", {role} {_mib(max(peaks))}" if len(peaks) == 1 else
                          f", {len(peaks)} {role}s up to {_mib(max(peaks))} each"
                          for role, peaks in sorted(groups.items(), key=lambda kv: -max(kv[1])))
    if total is not None:
        print(f"\n{total / max(samples, 1) * 1e6:.2f} s per million samples; total {total:.1f} s; "
              f"peak RSS per process (MiB): main {_mib(result['main_peak'])}{per_process}")
        print("rows written: " + "; ".join(f"{s['name']}: {s['assets']}" for s in result["steps"]))
    else:
        print(f"\nFAILED: {result['failed']}\npeak RSS per process until then (MiB): "
              f"main {_mib(result['main_peak'])}{per_process}")


def print_growth(results: list[dict]) -> None:
    done = [r for r in results if r["total_seconds"] is not None]
    print(f"\ngrowth ({results[0]['density']} density, {results[0]['days']} day(s)):\n")
    print(f"| jobs | samples | total s | s per million samples | peak RSS MiB (any process) | time per sample vs "
          f"{done[0]['jobs'] if done else '-'} jobs |")
    print("|---:|---:|---:|---:|---:|---:|")
    base_per = done[0]["total_seconds"] / max(1, done[0]["samples"]) if done else None
    for r in results:
        if r["total_seconds"] is None:
            print(f"| {r['jobs']:,} | {r['samples']:,} | failed | - | >= {_mib(peak_rss(r))} | - |")
            continue
        per = r["total_seconds"] / max(1, r["samples"])
        print(f"| {r['jobs']:,} | {r['samples']:,} | {r['total_seconds']:.1f} | {per * 1e6:.2f} "
              f"| {_mib(peak_rss(r))} | {per / base_per:.2f}x |")


def missed_targets(results: list[dict]) -> list[str]:
    missed = []
    for r in results:
        label = f"{r['density']} {r['jobs']} jobs x {r['days']} day(s)"
        if r["total_seconds"] is None:
            missed.append(f"{label}: {r['failed']}")
        for name, peak in [("main", r["main_peak"])] + [(f"{p['role']} {p['pid']}", p["peak"]) for p in r["processes"]]:
            if peak >= TARGET_RSS:
                missed.append(f"{label}: {name} peaked at {peak / GIB:.2f} GiB (target < {TARGET_RSS / GIB:.0f} GiB)")
        if (r["density"] == "demo" and r["days"] == 1 and r["total_seconds"] is not None
                and r["total_seconds"] >= TARGET_SECONDS):
            missed.append(f"{label}: end to end {r['total_seconds']:.0f} s (target < {TARGET_SECONDS:.0f} s)")
    if len(results) > 1:
        first, last = results[0], results[-1]
        if first["total_seconds"] is not None and last["total_seconds"] is not None:
            growth = ((last["total_seconds"] / max(1, last["samples"]))
                      / (first["total_seconds"] / max(1, first["samples"])))
            if growth > TARGET_GROWTH:
                missed.append(f"time per sample at {last['jobs']} jobs is {growth:.2f}x that at {first['jobs']} "
                              f"jobs (target <= {TARGET_GROWTH}x)")
    return missed


def report_targets(results: list[dict], check: bool) -> int:
    missed = missed_targets(results)
    rules = [f"every process < {TARGET_RSS / GIB:.0f} GiB peak RSS",
             f"demo density, 1 day: end to end < {TARGET_SECONDS:.0f} s"]
    if len(results) > 1:
        rules.append(f"time per sample at the largest size <= {TARGET_GROWTH}x the smallest")
    print(f"\ntargets ({'; '.join(rules)}): " + ("all met" if not missed else "MISSED:"))
    for m in missed:
        print(f"  - {m}")
    if missed and check:
        print(f"fleet benchmark: {len(missed)} target(s) missed: " + "; ".join(missed), file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes takes job counts like 100,300,1000, got {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("--sizes needs at least one job count")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    from fleet_data import DENSITIES, END

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the fleet (default 1000)")
    parser.add_argument("--sizes", type=_sizes, help="a growth series instead of --jobs, e.g. 100,300,1000")
    parser.add_argument("--days", type=int, default=1, help="days of data (default 1)")
    parser.add_argument("--density", choices=DENSITIES, default="demo",
                        help="demo: what `ftops demo` writes; realistic: 15 s GPU scrapes, Parquet (default demo)")
    parser.add_argument("--shards", type=int, help="job shards per day, written into ftops.yaml partitions.shards "
                        "(default: the fleet policy's, else the product's)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="shard runs at once, each in a fresh worker process, as `ftops demo` runs them "
                             "(default: the cores; 1: every run in the measured process)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--end", default=END.isoformat(), help=f"end of the data (default {END.isoformat()})")
    parser.add_argument("--workdir", type=Path, help="where inbox, warehouse and instance go, one folder per "
                        "fleet (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the inbox, warehouse and instance")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--log-level", default="WARNING",
                        help="Dagster console log level of the runs (default WARNING, as `ftops demo`)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare-worker", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.bare_worker:
        _bare_worker(args.bare_worker)
        return 0
    if args.measure:
        measure(args.measure)
        return 0
    from ftops.demo_fleet import MIN_JOBS

    sizes = args.sizes or [args.jobs]
    if min(sizes) < MIN_JOBS or args.days < 1:
        print(f"fleet benchmark: at least {MIN_JOBS} jobs (the demo fleet's injected faults) and 1 day",
              file=sys.stderr)
        return 2
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="ftops-fleet-")) if own_workdir else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in sizes:
            result = run_size(args, n, workdir)
            print_run(result)
            results.append(result)
            if result["total_seconds"] is None:
                break  # larger fleets would fail as well
    finally:
        if args.keep:
            print(f"kept {workdir}")
        elif own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if len(sizes) > 1:
        print_growth(results)
    return report_targets(results, args.check)


if __name__ == "__main__":
    sys.exit(main())
