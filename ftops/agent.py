"""Training-node sampler behind `ftops agent`: NVML + host metrics -> inbox exports and /metrics.

Every tick the agent reads each GPU through NVML and the host through psutil, appends the samples in
the canonical long format (docs/architecture.md §4 `metric_samples`) to a JSONL export under
`<inbox>/metrics/<job_id>/`, and publishes the latest values on a Prometheus `/metrics` endpoint.

The open export is named `*.jsonl.part` and renamed to `*.jsonl` when it is rotated or the agent stops,
so the inbox scanner (which ignores `.part`) never reads a half-written file.

NVML is injected (`Agent(nvml=...)`) so tests can pass a fake module; on a machine without an NVIDIA
driver the agent says so once and keeps sampling the host, because a CPU-only node (or a laptop) still
needs heartbeats and host metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterable

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge

from ftops.pathparts import safe_path_part

logger = logging.getLogger(__name__)

SOURCE = "agent"
DEFAULT_INTERVAL_SECONDS = 10.0
DEFAULT_ROTATE_SECONDS = 300.0
DEFAULT_ROTATE_BYTES = 8 * 1024 * 1024
DEFAULT_PORT = 9400
DEFAULT_LISTEN = "127.0.0.1"  # /metrics tells anyone who can reach it what runs where: opt in to more
PROMETHEUS_LABELS = ("job_id", "host", "device")

# Canonical metrics (schemas.METRIC_UNITS) this agent can emit, in the order they appear in a tick.
GPU_METRICS = (
    "gpu_utilization_pct",
    "gpu_memory_copy_util_pct",
    "gpu_memory_used_ratio",
    "gpu_power_watts",
    "gpu_temperature_c",
)
HOST_METRICS = ("cpu_utilization_pct", "host_memory_used_ratio")
AGENT_METRICS = GPU_METRICS + HOST_METRICS + ("heartbeat",)

_DEFAULT_NVML: Any = object()  # sentinel: "import pynvml", distinct from an explicit None (no NVML)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_ts(ts: datetime) -> str:
    """ISO-8601 UTC with a `Z` suffix, millisecond precision (what the metric readers parse)."""
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


@dataclass
class _OpenExport:
    part_path: Path
    final_path: Path
    handle: Any
    opened_at: datetime
    bytes_written: int = 0


class RotatingExportWriter:
    """Appends JSON lines to `<directory>/<prefix>-<start>.jsonl.part`, renamed to `.jsonl` on rotation.

    A file is closed after the tick that makes it reach `rotate_seconds` of age or `rotate_bytes` of size;
    the next write opens a new one. Only whole ticks go into a file, so every closed file is complete.
    """

    def __init__(
        self,
        directory: Path,
        prefix: str,
        *,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        rotate_bytes: int = DEFAULT_ROTATE_BYTES,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if rotate_seconds <= 0:
            raise ValueError(f"rotate_seconds must be > 0, got {rotate_seconds}")
        if rotate_bytes <= 0:
            raise ValueError(f"rotate_bytes must be > 0, got {rotate_bytes}")
        self.directory = Path(directory)
        self.prefix = prefix
        self.rotate_seconds = float(rotate_seconds)
        self.rotate_bytes = int(rotate_bytes)
        self._clock = clock
        self._open: _OpenExport | None = None
        self.closed_files: list[Path] = []

    @property
    def current_part(self) -> Path | None:
        return self._open.part_path if self._open else None

    def recover_stale_parts(self, min_age_seconds: float) -> list[Path]:
        """Finish `.part` files this prefix left behind when a previous agent was killed (SIGKILL, OOM).

        Their samples are the minutes before a node failure, the ones failure analysis needs most; a
        torn last line is cut off so the recovered file holds only whole records. A file modified in the
        last `min_age_seconds` may belong to an agent that is still running (it flushes every tick), so
        it is left alone.
        """
        recovered: list[Path] = []
        if not self.directory.is_dir():
            return recovered
        now = time.time()
        for part in sorted(self.directory.glob(f"{self.prefix}-*.jsonl.part")):
            if self._open is not None and part == self._open.part_path:
                continue
            try:
                if now - part.stat().st_mtime < min_age_seconds:
                    continue
                data = part.read_bytes()
                complete = data[: data.rfind(b"\n") + 1]
                if not complete:
                    part.unlink()
                    continue
                if len(complete) != len(data):
                    part.write_bytes(complete)
                final = part.with_name(part.name[: -len(".part")])
                os.replace(part, final)
                recovered.append(final)
            except OSError as exc:
                logger.warning("could not recover stale export %s: %s", part.name, exc)
        if recovered:
            logger.info("recovered %d unfinished export(s) from a previous agent", len(recovered))
        return recovered

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in records)
        if not lines:
            return
        export = self._open or self._open_new()
        data = lines.encode("utf-8")
        export.handle.write(data)
        # flushed every tick: a reader of the closed file and a post-mortem of the .part both see it all
        export.handle.flush()
        export.bytes_written += len(data)
        age = (self._clock() - export.opened_at).total_seconds()
        if export.bytes_written >= self.rotate_bytes or age >= self.rotate_seconds:
            self.close()

    def close(self) -> Path | None:
        """Close and publish the open file (rename `.part` -> `.jsonl`); returns its final path."""
        export, self._open = self._open, None
        if export is None:
            return None
        export.handle.close()
        try:
            os.replace(export.part_path, export.final_path)
        except FileNotFoundError:
            # someone else (an operator, a second agent's recovery) already moved it; nothing is lost
            logger.warning("export %s vanished before it could be closed", export.part_path.name)
            return None
        self.closed_files.append(export.final_path)
        return export.final_path

    def _open_new(self) -> _OpenExport:
        self.directory.mkdir(parents=True, exist_ok=True)
        opened_at = self._clock()
        stamp = opened_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S") + f".{opened_at.microsecond // 1000:03d}Z"
        base = f"{self.prefix}-{stamp}"
        suffix, n = "", 1
        # two rotations in one millisecond (tiny rotate_bytes, a frozen test clock) must not overwrite
        while (self.directory / f"{base}{suffix}.jsonl").exists() or (
            self.directory / f"{base}{suffix}.jsonl.part"
        ).exists():
            suffix, n = f"-{n}", n + 1
        final = self.directory / f"{base}{suffix}.jsonl"
        part = final.with_name(final.name + ".part")
        handle = open(part, "xb")
        self._open = _OpenExport(part, final, handle, opened_at)
        return self._open


class Agent:
    """Samples GPUs (NVML) and the host (psutil) every `interval_seconds`; see the module docstring.

    Everything arrives as arguments: the inbox folder, the job id, the NVML module (`nvml=None` turns GPU
    sampling off; the default imports `pynvml`) and the clock. `port=0` serves no /metrics.
    """

    def __init__(
        self,
        inbox: str | os.PathLike[str],
        *,
        job_id: str | None = None,
        host: str | None = None,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        rotate_seconds: float = DEFAULT_ROTATE_SECONDS,
        rotate_bytes: int = DEFAULT_ROTATE_BYTES,
        port: int = 0,
        listen: str = DEFAULT_LISTEN,
        nvml: Any = _DEFAULT_NVML,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be > 0, got {interval_seconds}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535 (0 disables /metrics), got {port}")
        self.host = host or socket.gethostname()
        self.job_id = job_id or self.host
        self.interval_seconds = float(interval_seconds)
        self.port = int(port)
        self.listen = listen
        self._clock = clock
        self.writer = RotatingExportWriter(
            Path(inbox) / "metrics" / safe_path_part(self.job_id),
            f"agent-{safe_path_part(self.host)}",
            rotate_seconds=rotate_seconds,
            rotate_bytes=rotate_bytes,
            clock=clock,
        )
        self._stop = threading.Event()
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._closed = False
        self._reported_failures: set[tuple[str, str]] = set()
        self._published: set[tuple[str, str]] = set()

        self._nvml = _import_pynvml() if nvml is _DEFAULT_NVML else nvml
        self._nvml_error: type[BaseException] = getattr(self._nvml, "NVMLError", Exception)
        self._gpu_handles: list[tuple[str, Any]] = []
        self.nvml_available = self._init_nvml(
            "pynvml is not installed" if nvml is _DEFAULT_NVML else "disabled by the caller"
        )

        # psutil's first non-blocking cpu_percent() is a meaningless 0.0; prime it so tick 1 is real
        psutil.cpu_percent(interval=None)

        self.registry = CollectorRegistry(auto_describe=True)
        self._gauges = {
            metric: Gauge(f"ftops_{metric}", f"latest {metric} sampled by the ftops agent", PROMETHEUS_LABELS,
                          registry=self.registry)
            for metric in AGENT_METRICS
        }
        self._samples_total = Counter(
            "ftops_agent_samples", "samples written by the ftops agent", registry=self.registry
        )
        self._nvml_gauge = Gauge(
            "ftops_agent_nvml_available", "1 when NVML answered at start-up, 0 when sampling the host only",
            registry=self.registry,
        )
        self._nvml_gauge.set(1 if self.nvml_available else 0)
        self._last_tick_gauge = Gauge(
            "ftops_agent_last_sample_timestamp_seconds", "Unix time of the agent's latest tick",
            registry=self.registry,
        )

    # -- NVML ---------------------------------------------------------------------------------------

    def _init_nvml(self, why_missing: str) -> bool:
        if self._nvml is None:
            logger.warning("NVML not available (%s): sampling host CPU and memory only", why_missing)
            return False
        try:
            self._nvml.nvmlInit()
        except self._nvml_error as exc:
            logger.warning("NVML not available (%s: %s): sampling host CPU and memory only",
                           type(exc).__name__, exc)
            return False
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
            handles = [(str(i), self._nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        except self._nvml_error as exc:
            logger.warning("NVML not available (listing GPUs failed: %s: %s): sampling host CPU and memory only",
                           type(exc).__name__, exc)
            self._shutdown_nvml()
            return False
        self._gpu_handles = handles
        logger.info("NVML available: sampling %d GPU(s) and the host", count)
        return True

    def _shutdown_nvml(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml_error as exc:
            logger.debug("nvmlShutdown failed: %s", exc)

    def _gpu_readings(self, handle: Any) -> Iterable[tuple[tuple[str, ...], Callable[[], tuple[float, ...]]]]:
        """NVML calls per GPU, each with the metrics it yields; one failing call skips only its metrics."""
        nvml = self._nvml

        def utilization() -> tuple[float, float]:
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            # `.memory` is the memory *bandwidth* (copy engine) busy %, not capacity: see §3 names
            return float(rates.gpu), float(rates.memory)

        def memory_ratio() -> tuple[float]:
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            return (float(info.used) / float(info.total) if info.total else math.nan,)

        return (
            (("gpu_utilization_pct", "gpu_memory_copy_util_pct"), utilization),
            (("gpu_memory_used_ratio",), memory_ratio),
            (("gpu_power_watts",), lambda: (nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,)),  # NVML gives mW
            (("gpu_temperature_c",),
             lambda: (float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),)),
        )

    def _read_failed(self, device: str, metric: str, exc: BaseException) -> None:
        # a GPU without a power sensor fails every tick: say it once, not 8640 times a day
        key = (device, metric)
        if key in self._reported_failures:
            logger.debug("GPU %s: %s unavailable this tick: %s", device, metric, exc)
            return
        self._reported_failures.add(key)
        logger.warning("GPU %s: cannot read %s (%s: %s); skipping it while it fails",
                       device, metric, type(exc).__name__, exc)

    # -- sampling -----------------------------------------------------------------------------------

    def collect(self) -> list[dict[str, Any]]:
        """Read every metric once and return the samples; writes and publishes nothing."""
        ts = format_ts(self._clock())
        values: list[tuple[str, float, str | None]] = []
        for device, handle in self._gpu_handles:
            for metrics, read in self._gpu_readings(handle):
                try:
                    values.extend((metric, value, device) for metric, value in zip(metrics, read()))
                except self._nvml_error as exc:
                    self._read_failed(device, " and ".join(metrics), exc)
        values.append(("cpu_utilization_pct", float(psutil.cpu_percent(interval=None)), None))
        # percent = (total - available) / total: the memory a new process can no longer get,
        # unlike `.used`, which ignores reclaimable page cache differently per platform
        values.append(("host_memory_used_ratio", float(psutil.virtual_memory().percent) / 100.0, None))
        values.append(("heartbeat", 1.0, None))
        return [
            {"ts": ts, "job_id": self.job_id, "metric": metric, "value": value, "step": None,
             "device": device, "host": self.host, "source": SOURCE}
            for metric, value, device in values
            if math.isfinite(value)  # JSON has no NaN; a missing sample says the same thing honestly
        ]

    def sample_once(self) -> list[dict[str, Any]]:
        """One tick: collect, append to the export (flushed), update /metrics; returns the samples."""
        if self._closed:
            raise RuntimeError("agent is closed")
        samples = self.collect()
        self.writer.write(samples)
        self._publish(samples)
        return samples

    def _publish(self, samples: list[dict[str, Any]]) -> None:
        current: set[tuple[str, str]] = set()
        for s in samples:
            device = s["device"] or ""  # Prometheus labels cannot be null
            self._gauges[s["metric"]].labels(self.job_id, self.host, device).set(s["value"])
            current.add((s["metric"], device))
        # a GPU metric that failed this tick must disappear, not keep serving its last value as current
        for metric, device in self._published - current:
            try:
                self._gauges[metric].remove(self.job_id, self.host, device)
            except KeyError:
                pass
        self._published = current
        self._samples_total.inc(len(samples))
        self._last_tick_gauge.set(time.time())

    # -- serving and the loop -----------------------------------------------------------------------

    def start_server(self) -> int | None:
        """Serve /metrics on `listen:port` in a daemon thread; returns the bound port (None if disabled)."""
        if self.port == 0:
            return None
        if self._server is None:
            from prometheus_client import start_http_server

            self._server, self._server_thread = start_http_server(self.port, addr=self.listen, registry=self.registry)
            logger.info("serving /metrics on http://%s:%d/metrics", self.listen, self.port)
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Ask `run` to finish after the current tick (safe from another thread or a signal handler)."""
        self._stop.set()

    def run(self, iterations: int | None = None) -> None:
        """Tick every `interval_seconds` until `iterations` ticks, `stop()`, SIGTERM or Ctrl-C; then close.

        Ticks keep a fixed rate (a slow NVML call does not push every later sample back); a tick that
        overruns a whole interval is skipped rather than run back to back.
        """
        restore = self._install_sigterm()
        try:
            self.writer.recover_stale_parts(min_age_seconds=3 * self.interval_seconds + 10)
            self.start_server()
            done = 0
            next_tick = time.monotonic()
            while not self._stop.is_set() and (iterations is None or done < iterations):
                self.sample_once()
                done += 1
                if iterations is not None and done >= iterations:
                    break
                next_tick += self.interval_seconds
                now = time.monotonic()
                if next_tick < now:
                    next_tick = now + (self.interval_seconds - (now - next_tick) % self.interval_seconds)
                self._stop.wait(next_tick - now)
        except KeyboardInterrupt:
            logger.info("interrupted: closing the current export")
        finally:
            restore()
            self.close()

    def _install_sigterm(self) -> Callable[[], None]:
        # signal handlers can only be set from the main thread; a threaded run (tests, embedding) uses stop()
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            logger.info("SIGTERM: finishing the current tick and closing the export")
            self.stop()

        signal.signal(signal.SIGTERM, on_sigterm)
        return lambda: signal.signal(signal.SIGTERM, previous)

    def close(self) -> None:
        """Publish the open export, stop /metrics and release NVML. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        final = self.writer.close()
        if final is not None:
            logger.info("closed export %s", final.name)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.nvml_available:
            self._shutdown_nvml()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- CLI glue (the only place that reads the environment) ---------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535 (0 disables /metrics), got {text}")
    return value


def configure_agent_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--inbox", help="inbox folder; exports go to <inbox>/metrics/<job-id>/ "
                        "(default: $FTOPS_INBOX, required if that is unset)")
    parser.add_argument("--job-id", help="job id stamped on every sample (default: the host name)")
    parser.add_argument("--host", help="host name stamped on every sample (default: this machine's)")
    parser.add_argument("--interval", type=_positive_float, default=DEFAULT_INTERVAL_SECONDS,
                        help="seconds between samples (default: %(default)s)")
    parser.add_argument("--rotate-seconds", type=_positive_float, default=DEFAULT_ROTATE_SECONDS,
                        help="close an export after this many seconds (default: %(default)s)")
    parser.add_argument("--rotate-bytes", type=_positive_int, default=DEFAULT_ROTATE_BYTES,
                        help="close an export once it reaches this size (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help="port for Prometheus /metrics; 0 disables it (default: %(default)s)")
    parser.add_argument("--listen", default=DEFAULT_LISTEN,
                        help="address to serve /metrics on (default: %(default)s, this machine only; "
                        "0.0.0.0 lets a Prometheus on another host scrape it)")
    parser.add_argument("--iterations", type=_positive_int, default=None,
                        help="stop after this many samples (default: run until SIGTERM/Ctrl-C)")
    parser.set_defaults(func=run_agent)
    return parser


def add_agent_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `agent` subcommand on an argparse subparsers object; `func` runs it."""
    parser = subparsers.add_parser(
        "agent",
        help="sample GPUs (NVML) and the host on a training node",
        description="Sample GPUs through NVML and the host through psutil, write rotating metric exports "
                    "into the inbox and serve the latest values on /metrics for Prometheus.",
    )
    return configure_agent_parser(parser)


def run_agent(args: argparse.Namespace) -> int:
    """Run the agent from parsed `ftops agent` arguments; returns the process exit code."""
    inbox = args.inbox or os.environ.get("FTOPS_INBOX")
    if not inbox:
        print("ftops agent: --inbox is required (or set FTOPS_INBOX)", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        agent = Agent(
            inbox,
            job_id=args.job_id,
            host=args.host,
            interval_seconds=args.interval,
            rotate_seconds=args.rotate_seconds,
            rotate_bytes=args.rotate_bytes,
            port=args.port,
            listen=args.listen,
        )
    except (ValueError, OSError) as exc:
        print(f"ftops agent: {exc}", file=sys.stderr)
        return 2
    try:
        agent.run(iterations=args.iterations)
    except OSError as exc:  # port in use, inbox not writable
        print(f"ftops agent: {exc}", file=sys.stderr)
        agent.close()
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ftops.agent ...`: the same options as `ftops agent`."""
    parser = configure_agent_parser(argparse.ArgumentParser(prog="ftops agent"))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
