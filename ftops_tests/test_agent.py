"""`ftops agent`: NVML sampling (fake NVML), the real no-driver path, rotation, /metrics and the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from prometheus_client import generate_latest

from ftops.agent import Agent, RotatingExportWriter, add_agent_parser, main
from ftops.readers.samples import finish_samples
from ftops.schemas import METRIC_SAMPLES, METRICS, validate

REPO_ROOT = Path(__file__).resolve().parents[1]

LONG_KEYS = {"ts", "job_id", "metric", "value", "step", "device", "host", "source"}
GPU_METRICS = {
    "gpu_utilization_pct",
    "gpu_memory_copy_util_pct",
    "gpu_memory_used_ratio",
    "gpu_power_watts",
    "gpu_temperature_c",
}


class FakeNVMLError(Exception):
    pass


class FakeNVMLErrorNotSupported(FakeNVMLError):
    pass


class FakeNVML:
    """Stands in for the `pynvml` module: same function names, error classes and constants."""

    NVMLError = FakeNVMLError
    NVMLError_NotSupported = FakeNVMLErrorNotSupported
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: list[dict], fail: set[tuple[int, str]] = frozenset()) -> None:
        self.gpus = gpus
        self.fail = set(fail)
        self.init_calls = 0
        self.shutdown_calls = 0

    def _check(self, index: int, name: str) -> dict:
        if (index, name) in self.fail:
            raise FakeNVMLErrorNotSupported("Not Supported")
        return self.gpus[index]

    def nvmlInit(self) -> None:
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        g = self._check(handle, "utilization")
        return SimpleNamespace(gpu=g["util"], memory=g["mem_util"])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        g = self._check(handle, "memory")
        return SimpleNamespace(total=g["total"], used=g["used"], free=g["total"] - g["used"])

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._check(handle, "power")["power_mw"]

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._check(handle, "temperature")["temp"]


GIB = 1024**3
# two H100 80GB: one busy training, one idle; GPU 1 has no readable power sensor
TWO_GPUS = [
    {"util": 93, "mem_util": 41, "total": 80 * GIB, "used": 61 * GIB, "power_mw": 612_345, "temp": 71},
    {"util": 0, "mem_util": 0, "total": 80 * GIB, "used": 512 * 1024**2, "power_mw": 69_000, "temp": 33},
]


class FrozenClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _by_key(samples: list[dict]) -> dict[tuple[str, str | None], float]:
    return {(s["metric"], s["device"]): s["value"] for s in samples}


def test_nvml_samples_every_gpu_with_canonical_names_and_units(tmp_path: Path, caplog) -> None:
    nvml = FakeNVML(TWO_GPUS, fail={(1, "power")})
    with caplog.at_level(logging.WARNING, logger="ftops.agent"):
        with Agent(tmp_path, job_id="j1", host="node-a", nvml=nvml) as agent:
            assert agent.nvml_available
            first = agent.sample_once()
            second = agent.sample_once()
    assert nvml.init_calls == 1 and nvml.shutdown_calls == 1

    got = _by_key(first)
    assert got[("gpu_utilization_pct", "0")] == 93.0
    assert got[("gpu_memory_copy_util_pct", "0")] == 41.0  # bandwidth, not capacity
    assert got[("gpu_memory_used_ratio", "0")] == pytest.approx(61 / 80)
    assert got[("gpu_power_watts", "0")] == pytest.approx(612.345)  # mW -> W
    assert got[("gpu_temperature_c", "0")] == 71.0
    assert got[("gpu_utilization_pct", "1")] == 0.0
    assert got[("gpu_memory_used_ratio", "1")] == pytest.approx(0.5 / 80)
    assert got[("gpu_temperature_c", "1")] == 33.0
    # the failing reading is skipped for that GPU only; everything else still arrives
    assert ("gpu_power_watts", "1") not in got
    assert {m for m, d in got if d == "0"} == GPU_METRICS
    assert {m for m, d in got if d == "1"} == GPU_METRICS - {"gpu_power_watts"}
    assert {m for m, d in got if d is None} == {"cpu_utilization_pct", "host_memory_used_ratio", "heartbeat"}
    assert got[("heartbeat", None)] == 1.0
    assert 0.0 <= got[("host_memory_used_ratio", None)] <= 1.0
    assert 0.0 <= got[("cpu_utilization_pct", None)] <= 100.0

    for s in first:
        assert set(s) == LONG_KEYS
        assert s["metric"] in METRICS
        assert (s["job_id"], s["host"], s["source"], s["step"]) == ("j1", "node-a", "agent", None)
        assert s["ts"].endswith("Z") and s["ts"] == first[0]["ts"]
    # a sensor that always fails is reported once, not on every tick
    power_warnings = [r for r in caplog.records if "gpu_power_watts" in r.getMessage()]
    assert len(power_warnings) == 1 and "GPU 1" in power_warnings[0].getMessage()
    assert len(second) == len(first)


def test_nvml_failing_at_init_falls_back_to_host(tmp_path: Path, caplog) -> None:
    class BrokenNVML(FakeNVML):
        def nvmlInit(self) -> None:
            raise FakeNVMLError("Driver Not Loaded")

    with caplog.at_level(logging.WARNING, logger="ftops.agent"):
        with Agent(tmp_path, job_id="j1", nvml=BrokenNVML(TWO_GPUS)) as agent:
            samples = agent.sample_once()
    assert not agent.nvml_available
    assert {s["metric"] for s in samples} == {"cpu_utilization_pct", "host_memory_used_ratio", "heartbeat"}
    assert any("Driver Not Loaded" in r.getMessage() for r in caplog.records)


@pytest.mark.ci_may_skip("a CI machine with an NVIDIA driver has no no-driver path to test")
def test_no_driver_for_real_says_so_once_and_samples_the_host(tmp_path: Path, caplog) -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has a working NVIDIA driver; the no-GPU path is covered by the fake")

    with caplog.at_level(logging.INFO, logger="ftops.agent"):
        agent = Agent(tmp_path, job_id="cpu-job", host="laptop", interval_seconds=0.1)  # the real pynvml
        agent.run(iterations=3)

    assert not agent.nvml_available
    said = [r for r in caplog.records if "NVML not available" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "sampling host CPU and memory only" in said[0].getMessage()
    assert "NVMLError" in said[0].getMessage()  # names what went wrong (library not found, driver not loaded)

    files = list((tmp_path / "metrics" / "cpu-job").glob("*.jsonl"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.part"))
    rows = _read_lines(files[0])
    assert len(rows) == 9
    assert {r["metric"] for r in rows} == {"cpu_utilization_pct", "host_memory_used_ratio", "heartbeat"}
    assert all(r["device"] is None and r["host"] == "laptop" for r in rows)
    ratio = [r["value"] for r in rows if r["metric"] == "host_memory_used_ratio"]
    assert all(0.0 < v < 1.0 for v in ratio)  # a running machine uses some memory, never all of it


def test_rotation_publishes_whole_jsonl_files_and_keeps_the_open_one_as_part(tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc))
    agent = Agent(tmp_path, job_id="job/../7", host="gpu-node-3", nvml=FakeNVML(TWO_GPUS),
                  rotate_seconds=30, clock=clock)
    folder = tmp_path / "metrics" / "job_.._7"  # a job id never escapes the inbox

    agent.sample_once()
    parts = list(folder.glob("*.jsonl.part"))
    assert len(parts) == 1 and not list(folder.glob("*.jsonl"))
    # flushed every tick: the open file already holds the whole first tick
    assert len(_read_lines(parts[0])) == 13
    assert parts[0].name.startswith("agent-gpu-node-3-20250301T120000.000Z")

    for _ in range(3):  # ticks at +10s, +20s, +30s: the +30s tick reaches rotate_seconds
        clock.advance(10)
        agent.sample_once()
    done = sorted(folder.glob("*.jsonl"))
    assert [p.name for p in done] == ["agent-gpu-node-3-20250301T120000.000Z.jsonl"]
    assert not list(folder.glob("*.part"))

    clock.advance(10)
    agent.sample_once()
    assert len(list(folder.glob("*.jsonl.part"))) == 1
    agent.close()  # closing publishes the open file too
    done = sorted(folder.glob("*.jsonl"))
    assert [p.name for p in done] == [
        "agent-gpu-node-3-20250301T120000.000Z.jsonl",
        "agent-gpu-node-3-20250301T120040.000Z.jsonl",
    ]
    assert not list(folder.glob("*.part"))

    rows = [row for p in done for row in _read_lines(p)]
    assert len(rows) == 5 * 13
    for row in rows:
        assert set(row) == LONG_KEYS and row["job_id"] == "job/../7"
        assert datetime.fromisoformat(row["ts"].replace("Z", "+00:00")).tzinfo is not None
    # the files satisfy the metric_samples contract end to end
    result = finish_samples(pd.DataFrame(rows), source="agent-export")
    assert result.rejected.empty and len(result.accepted) == len(rows)
    table = validate(result.accepted, METRIC_SAMPLES)
    assert table["ts"].min() == pd.Timestamp("2025-03-01T12:00:00Z")
    assert table.loc[table["metric"] == "gpu_power_watts", "value"].max() == pytest.approx(612.345)


def test_rotation_by_size_never_splits_a_tick(tmp_path: Path) -> None:
    clock = FrozenClock(datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc))
    writer = RotatingExportWriter(tmp_path, "agent-h", rotate_bytes=1, clock=clock)
    for tick in range(3):
        writer.write([{"tick": tick, "i": i} for i in range(4)])
    assert writer.current_part is None
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 3  # same millisecond three times: distinct names, nothing overwritten
    assert sorted(len(_read_lines(f)) for f in files) == [4, 4, 4]


def test_stale_part_from_a_killed_agent_is_recovered_without_its_torn_line(tmp_path: Path) -> None:
    folder = tmp_path / "metrics" / "j1"
    folder.mkdir(parents=True)
    stale = folder / "agent-h-20250101T000000.000Z.jsonl.part"
    whole = json.dumps({"ts": "2025-01-01T00:00:00.000Z", "job_id": "j1", "metric": "heartbeat", "value": 1.0,
                        "step": None, "device": None, "host": "h", "source": "agent"})
    stale.write_text(whole + "\n" + whole[:20])
    old = time.time() - 3600
    os.utime(stale, (old, old))

    Agent(tmp_path, job_id="j1", host="h", nvml=None).run(iterations=1)

    recovered = folder / "agent-h-20250101T000000.000Z.jsonl"
    assert recovered.exists() and _read_lines(recovered) == [json.loads(whole)]
    assert len(list(folder.glob("*.jsonl"))) == 2 and not list(folder.glob("*.part"))


def test_metrics_endpoint_serves_the_latest_samples(tmp_path: Path) -> None:
    port = _free_port()
    agent = Agent(tmp_path, job_id="j1", host="h", interval_seconds=0.1, port=port, listen="127.0.0.1",
                  nvml=None)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    body = response.read().decode()
                if 'ftops_cpu_utilization_pct{device="",host="h",job_id="j1"}' in body:
                    break
            except OSError:
                pass
            time.sleep(0.1)
    finally:
        agent.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    lines = body.splitlines()
    assert any(l.startswith('ftops_cpu_utilization_pct{device="",host="h",job_id="j1"} ') for l in lines), body
    assert any(l.startswith('ftops_host_memory_used_ratio{device="",host="h",job_id="j1"} ') for l in lines)
    assert "ftops_agent_nvml_available 0.0" in lines
    samples_total = [l for l in lines if l.startswith("ftops_agent_samples_total ")]
    assert samples_total and float(samples_total[0].split()[1]) >= 3
    # stopping closes the file and the server
    assert list((tmp_path / "metrics" / "j1").glob("*.jsonl")) and not list(tmp_path.rglob("*.part"))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_metrics_drop_a_gpu_series_that_stops_answering(tmp_path: Path) -> None:
    nvml = FakeNVML(TWO_GPUS)
    agent = Agent(tmp_path, job_id="j1", host="h", nvml=nvml)
    agent.sample_once()
    series = 'ftops_gpu_temperature_c{device="1",host="h",job_id="j1"}'
    assert series + " 33.0" in generate_latest(agent.registry).decode()
    nvml.fail.add((1, "temperature"))
    agent.sample_once()
    text = generate_latest(agent.registry).decode()
    assert series not in text  # no stale value served as if current
    assert 'ftops_gpu_temperature_c{device="0",host="h",job_id="j1"} 71.0' in text
    assert "ftops_agent_nvml_available 1.0" in text
    agent.close()


def test_agent_subcommand_end_to_end(tmp_path: Path, monkeypatch) -> None:
    parser = argparse.ArgumentParser(prog="ftops")
    add_agent_parser(parser.add_subparsers(dest="command", required=True))

    monkeypatch.delenv("FTOPS_INBOX", raising=False)
    args = parser.parse_args(["agent", "--iterations", "1", "--port", "0"])
    assert args.func(args) == 2  # no inbox anywhere: a clear refusal, not a crash

    monkeypatch.setenv("FTOPS_INBOX", str(tmp_path))
    args = parser.parse_args(
        ["agent", "--job-id", "ft-42", "--iterations", "2", "--interval", "0.2", "--port", "0"]
    )
    assert (args.interval, args.rotate_seconds, args.listen) == (0.2, 300.0, "127.0.0.1")
    assert args.func(args) == 0

    files = list((tmp_path / "metrics" / "ft-42").glob("agent-*.jsonl"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.part"))
    rows = _read_lines(files[0])
    assert {r["job_id"] for r in rows} == {"ft-42"}
    assert sum(r["metric"] == "heartbeat" for r in rows) == 2

    with pytest.raises(SystemExit):
        parser.parse_args(["agent", "--interval", "0"])


def test_python_dash_m_entry_point_with_explicit_inbox(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FTOPS_INBOX", raising=False)
    rc = main(["--inbox", str(tmp_path), "--iterations", "2", "--interval", "0.2", "--port", "0"])
    assert rc == 0
    files = list((tmp_path / "metrics").glob("*/agent-*.jsonl"))
    assert len(files) == 1
    rows = _read_lines(files[0])
    assert len(rows) >= 6
    assert all(r["job_id"] == r["host"] == socket.gethostname() for r in rows)  # job id defaults to the host


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_agent_cleanly_and_publishes_the_open_file(tmp_path: Path, stop_signal: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("FTOPS_INBOX", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "ftops.agent", "--inbox", str(tmp_path), "--job-id", "j1",
         "--interval", "0.2", "--port", "0"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    folder = tmp_path / "metrics" / "j1"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(folder.glob("*.jsonl.part")):
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.05)
        assert list(folder.glob("*.jsonl.part")), "the agent never opened an export"
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert not list(folder.glob("*.part"))
    files = list(folder.glob("*.jsonl"))
    assert len(files) == 1 and _read_lines(files[0])
    assert output.count("NVML not available") <= 1


def test_metrics_listen_on_loopback_unless_asked():
    from ftops.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["agent"]).listen == "127.0.0.1"
    assert parser.parse_args(["agent", "--listen", "0.0.0.0"]).listen == "0.0.0.0"
    agent_help = parser._subparsers._group_actions[0].choices["agent"].format_help()
    assert "default: 127.0.0.1" in agent_help and "0.0.0.0 lets a Prometheus on another host" in " ".join(agent_help.split())
