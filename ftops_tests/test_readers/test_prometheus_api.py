from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from ftops.defs.prometheus import PrometheusQueryError, PrometheusResource
from ftops.readers.prometheus_api import samples_from_query_range
from ftops.schemas import METRIC_SAMPLES, REJECTED_RECORDS, validate
from ftops_tests.services import free_port, start_prometheus, stop_process_group, wait_for

T = 1_714_564_800  # 2024-05-01 12:00:00 UTC


def _series(labels: dict, values: list) -> dict:
    return {"metric": labels, "values": values}


def _matrix(*series: dict) -> dict:
    return {"status": "success", "data": {"resultType": "matrix", "result": list(series)}}


DCGM = {"gpu": "0", "UUID": "GPU-6d5c", "Hostname": "node-a", "pod": "job-42", "namespace": "ml",
        "instance": "10.0.0.7:9400", "job": "dcgm-exporter"}


def _check_contract(result) -> None:
    pd.testing.assert_frame_equal(result.accepted, validate(result.accepted, METRIC_SAMPLES))
    pd.testing.assert_frame_equal(result.rejected, validate(result.rejected, REJECTED_RECORDS))


def test_dcgm_matrix_with_special_values() -> None:
    payload = _matrix(
        _series({"__name__": "DCGM_FI_DEV_GPU_UTIL", **DCGM},
                [[T, "87"], [T + 15, "NaN"], [T + 30, "+Inf"], [T + 45.5, "12.5"]]),
        _series({"__name__": "DCGM_FI_DEV_GPU_UTIL", **DCGM, "gpu": "1", "UUID": "GPU-77aa"}, [[T, "3"]]),
        _series({"__name__": "DCGM_FI_DEV_FB_USED", **DCGM}, [[T, "4096"], [T + 15, "8192"]]),
        _series({"__name__": "DCGM_FI_DEV_FB_FREE", **DCGM}, [[T, "12288"], [T + 15, "8192"]]),
        _series({"__name__": "DCGM_FI_DEV_POWER_USAGE", **DCGM}, [[T, "68.244"]]),
    )
    result = samples_from_query_range(payload, source="test")
    _check_contract(result)
    # NaN/Inf utilisation is no signal (unlike a NaN loss): refused with the reason, not stored
    assert result.rejected["reason"].str.startswith("value is not finite").sum() == 2
    acc = result.accepted
    util0 = acc[(acc["metric"] == "gpu_utilization_pct") & (acc["device"] == "0")]
    assert util0["ts"].tolist() == [pd.Timestamp(T + s, unit="s", tz="UTC") for s in (0, 45.5)]
    values = util0["value"].to_numpy()
    assert values[0] == 87 and values[1] == 12.5
    ratio = acc[acc["metric"] == "gpu_memory_used_ratio"]["value"].tolist()
    assert ratio == [0.25, 0.5]
    assert set(acc["job_id"]) == {"job-42"}  # the pod label
    assert set(acc["host"]) == {"node-a"}  # Hostname wins over instance
    assert set(acc["device"]) == {"0", "1"}
    assert len(acc) == 2 + 1 + 2 + 1


def test_nvidia_smi_series_and_custom_job_label() -> None:
    labels = {"uuid": "GPU-0000", "instance": "gpu-host-3:9835", "training_job": "ft-7"}
    payload = _matrix(
        _series({"__name__": "nvidia_smi_utilization_gpu_ratio", **labels}, [[T, "0.93"]]),
        _series({"__name__": "nvidia_smi_memory_used_bytes", **labels}, [[T, "2e10"]]),
        _series({"__name__": "nvidia_smi_memory_total_bytes", **labels}, [[T, "8e10"]]),
        _series({"__name__": "nvidia_smi_index", **labels}, [[T, "2"]]),
    )
    result = samples_from_query_range(payload, job_label="training_job")
    got = result.accepted.set_index("metric")
    assert got.loc["gpu_utilization_pct", "value"] == pytest.approx(93.0)
    assert got.loc["gpu_memory_used_ratio", "value"] == 0.25
    assert set(result.accepted["device"]) == {"2"}  # index looked up from nvidia_smi_index
    assert set(result.accepted["host"]) == {"gpu-host-3"}  # instance without its port
    assert set(result.accepted["job_id"]) == {"ft-7"}
    assert result.rejected.empty


def test_expression_query_needs_metric_override() -> None:
    payload = _matrix(_series({"job_id": "job-1", "gpu": "0"}, [[T, "71.5"], [T + 60, "72"]]))
    refused = samples_from_query_range(payload)
    assert refused.accepted.empty
    assert refused.rejected["reason"].iloc[0].startswith("series has no __name__")
    assert refused.rejected["record"].iloc[0] == "result[0]"
    result = samples_from_query_range(payload, metric="gpu_utilization_pct")
    assert result.accepted[["metric", "value", "device", "job_id"]].values.tolist() == [
        ["gpu_utilization_pct", 71.5, "0", "job-1"], ["gpu_utilization_pct", 72.0, "0", "job-1"]
    ]
    wrong = samples_from_query_range(payload, metric="gpu_util")
    assert wrong.accepted.empty and len(wrong.rejected) == 2
    assert set(wrong.rejected["reason"]) == {"unknown metric (not a canonical name or known alias)"}


def test_ftops_names_unmapped_series_and_bad_values() -> None:
    payload = _matrix(
        _series({"__name__": "ftops_training_loss", "job_id": "job-3"}, [[T, "1.25"], [T + 1, "oops"]]),
        _series({"__name__": "up", "instance": "x:1"}, [[T, "1"]]),
        _series({"__name__": "DCGM_FI_DEV_GPU_TEMP", "gpu": "0"}, [[T, "50"]]),  # no job anywhere
    )
    result = samples_from_query_range(payload)
    _check_contract(result)
    assert result.accepted[["metric", "value", "job_id"]].values.tolist() == [["training_loss", 1.25, "job-3"]]
    assert dict(zip(result.rejected["record"], result.rejected["reason"])) == {
        "result[1]": "series is not a metric ftops maps (an expression query needs metric=<canonical name>)",
        "result[0].values[1]": "sample value is not a number",
        "result[2].values[0]": "missing job_id",
    }
    with_default = samples_from_query_range(payload, job_id="job-default")
    assert "job-default" in set(with_default.accepted["job_id"])


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query": 1:5: parse error'},
         'Prometheus error bad_data: invalid parameter "query": 1:5: parse error'),
        ({"status": "error", "errorType": "execution", "error": "query processing would load too many samples"},
         "Prometheus error execution: query processing would load too many samples"),
        ({"status": "success", "data": {"resultType": "vector", "result": []}},
         "expected a matrix result (query_range), got 'vector'"),
    ],
)
def test_error_payloads_become_one_rejection(payload: dict, reason: str) -> None:
    result = samples_from_query_range(payload, source="http://prom/api/v1/query_range?query=x")
    _check_contract(result)
    assert result.accepted.empty
    assert result.rejected["reason"].tolist() == [reason]
    assert result.rows_in == 1


def test_empty_matrix() -> None:
    result = samples_from_query_range(_matrix())
    assert result.rows_in == 0


# --- the HTTP resource against a stub server (retry, no-retry, chunking, timeouts) -----------

class _Stub:
    """A tiny HTTP server answering from a script of (status, body) and recording every request."""

    def __init__(self, answers: list[tuple[int, object]]) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, list[str]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 — http.server's name
                stub.requests.append(parse_qs(urlparse(self.path).query))
                status, body = stub.answers.pop(0) if len(stub.answers) > 1 else stub.answers[0]
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    servers: list[_Stub] = []

    def make(answers: list[tuple[int, object]]) -> _Stub:
        servers.append(_Stub(answers))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


UTIL_OK = _matrix(_series({"__name__": "DCGM_FI_DEV_GPU_UTIL", **DCGM}, [[T, "55"]]))


def test_resource_retries_5xx_then_succeeds(stub) -> None:
    server = stub([(503, {"status": "error", "errorType": "unavailable", "error": "busy"}), (502, "bad gateway"),
                   (200, UTIL_OK)])
    resource = PrometheusResource(url=server.url, backoff_seconds=0.01, max_retries=3)
    result = resource.query_range("DCGM_FI_DEV_GPU_UTIL", T, T + 60, 15)
    assert len(server.requests) == 3
    assert result.accepted["value"].tolist() == [55.0]
    assert result.accepted["source"].iloc[0].startswith(server.url + "/api/v1/query_range?query=")


def test_resource_5xx_exhausts_retries(stub) -> None:
    server = stub([(500, {"status": "error", "errorType": "internal", "error": "disk on fire"})])
    resource = PrometheusResource(url=server.url, backoff_seconds=0.01, max_retries=2)
    with pytest.raises(PrometheusQueryError, match=r"failed after 3 attempt\(s\): HTTP 500: disk on fire") as info:
        resource.query_range("up", T, T + 60, 15)
    assert server.url in str(info.value)
    assert len(server.requests) == 3


def test_resource_4xx_error_payload_not_retried(stub) -> None:
    server = stub([(400, {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"})])
    resource = PrometheusResource(url=server.url, backoff_seconds=0.01, max_points_per_request=10)
    result = resource.query_range("rate(", T, T + 1000, 1)  # would be 101 chunks
    assert len(server.requests) == 1
    assert result.accepted.empty
    assert result.rejected["reason"].tolist() == ["Prometheus error bad_data: parse error at char 4"]


def test_resource_4xx_without_payload_raises(stub) -> None:
    server = stub([(404, "404 page not found")])
    resource = PrometheusResource(url=server.url + "/wrong-prefix", backoff_seconds=0.01)
    with pytest.raises(PrometheusQueryError, match="HTTP 404"):
        resource.query_range("up", T, T + 60, 15)
    assert len(server.requests) == 1


def test_resource_splits_long_ranges(stub) -> None:
    server = stub([(200, _matrix())])
    resource = PrometheusResource(url=server.url)
    step = 15.0
    end = T + step * 25_000  # 25,001 points on the step grid
    resource.query_range("up", T, end, step)
    windows = [(float(r["start"][0]), float(r["end"][0])) for r in server.requests]
    assert len(windows) == 3
    assert windows[0][0] == T and windows[-1][1] == end
    for (s0, e0), (s1, _) in zip(windows, windows[1:]):
        assert s1 - e0 == step  # consecutive, on the grid, no overlap and no gap
    for s, e in windows:
        assert (e - s) / step + 1 <= 11_000
        assert (e - s) / step <= 11_000  # Prometheus' own check


def test_resource_unreachable_fails_within_budget() -> None:
    port = free_port()  # nothing listens there
    resource = PrometheusResource(url=f"http://127.0.0.1:{port}", timeout_seconds=0.5, max_retries=2,
                                  backoff_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(PrometheusQueryError, match=rf"127\.0\.0\.1:{port}.*3 attempt.*connection failed"):
        resource.query_range("up", T, T + 60, 15)
    assert time.monotonic() - started < 0.5 * 3 + 0.05 + 0.1 + 1.0


def test_resource_silent_server_times_out_within_budget() -> None:
    # A listening socket that never accepts: the connection is queued, the answer never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        resource = PrometheusResource(url=url, timeout_seconds=0.3, max_retries=1, backoff_seconds=0.05)
        started = time.monotonic()
        with pytest.raises(PrometheusQueryError, match="after 2 attempt.*timed out after 0.3 s"):
            resource.query_range("up", T, T + 60, 15)
        elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 0.3 * 2 + 0.05 + 1.0


@pytest.mark.parametrize(
    "config, message",
    [
        ({"url": "prometheus:9090"}, "url must start with http:// or https://"),
        ({"url": "http://p", "timeout_seconds": 0}, "timeout_seconds must be > 0"),
        ({"url": "http://p", "max_retries": -1}, "max_retries must be >= 0"),
        ({"url": "http://p", "max_points_per_request": 20_000}, "max_points_per_request must be in 2..11000"),
    ],
)
def test_resource_config_is_validated(config: dict, message: str) -> None:
    with pytest.raises(Exception, match=message):
        PrometheusResource(**config)


def test_resource_rejects_bad_arguments() -> None:
    resource = PrometheusResource(url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="before start"):
        resource.query_range("up", T + 10, T, 1)
    with pytest.raises(ValueError, match="step_seconds"):
        resource.query_range("up", T, T + 10, 0)


# --- a real Prometheus server ----------------------------------------------------------------

def test_missing_binary_skips_locally_and_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from ftops_tests.services import require_binary

    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="`prometheus` is not on PATH"):
        require_binary("prometheus", "test")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run this integration test"):
        require_binary("prometheus", "test")


@pytest.fixture
def dcgm_target():
    """A prometheus_client endpoint exposing DCGM-named gauges the test can change."""
    registry = CollectorRegistry()
    labels = ["gpu", "UUID", "Hostname", "pod"]
    util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", labels, registry=registry)
    fb_used = Gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", labels, registry=registry)
    fb_free = Gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", labels, registry=registry)
    gpus = {"0": ("GPU-aaaa", 30.0), "1": ("GPU-bbbb", 70.0)}
    for gpu, (uuid, value) in gpus.items():
        util.labels(gpu, uuid, "node-a", "job-42").set(value)
        fb_used.labels(gpu, uuid, "node-a", "job-42").set(1024)
        fb_free.labels(gpu, uuid, "node-a", "job-42").set(3072)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}", util
    server.shutdown()
    server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path, dcgm_target):
    target, util = dcgm_target
    url, proc = start_prometheus(tmp_path, [target])
    try:
        yield url, util
    finally:
        stop_process_group(proc)


def _instant(url: str, query: str) -> list:
    answer = requests.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()
    return answer["data"]["result"]


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_query_range_against_real_prometheus(prometheus) -> None:
    url, util = prometheus
    started = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=2)
    wait_for(lambda: _instant(url, "DCGM_FI_DEV_GPU_UTIL"), timeout_s=30, what="first scrape of the target")
    util.labels("0", "GPU-aaaa", "node-a", "job-42").set(45.0)
    wait_for(lambda: any(r["value"][1] == "45" for r in _instant(url, 'DCGM_FI_DEV_GPU_UTIL{gpu="0"}')),
             timeout_s=30, what="the changed value to be scraped")
    # A grid point after the scrape that saw 45 (evaluating slightly in the future is allowed).
    end = pd.Timestamp.now(tz="UTC").ceil("s") + pd.Timedelta(seconds=1)

    resource = PrometheusResource(url=url, timeout_seconds=5, max_retries=1)
    result = resource.query_range("DCGM_FI_DEV_GPU_UTIL", started, end, 1.0)
    _check_contract(result)
    assert result.rejected.empty, result.rejection_counts()
    acc = result.accepted
    assert set(acc["metric"]) == {"gpu_utilization_pct"}
    assert set(acc["device"]) == {"0", "1"}
    assert set(acc["job_id"]) == {"job-42"}
    assert set(acc["host"]) == {"node-a"}
    gpu0 = acc[acc["device"] == "0"].sort_values("ts")
    assert set(gpu0["value"]) == {30.0, 45.0}
    assert gpu0["value"].iloc[-1] == 45.0  # the change shows up, in time order
    assert set(acc.loc[acc["device"] == "1", "value"]) == {70.0}
    assert acc["ts"].between(started, end).all()

    # Split into 3-point requests on the same grid: the same samples, none twice.
    chunked = PrometheusResource(url=url, max_points_per_request=3).query_range(
        "DCGM_FI_DEV_GPU_UTIL", started, end, 1.0
    )
    key = ["device", "ts"]
    pd.testing.assert_frame_equal(
        chunked.accepted.sort_values(key).reset_index(drop=True)[key + ["value"]],
        acc.sort_values(key).reset_index(drop=True)[key + ["value"]],
    )

    ratio = resource.query_range('{__name__=~"DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_FB_FREE"}', started, end, 1.0)
    assert set(ratio.accepted["metric"]) == {"gpu_memory_used_ratio"}
    assert set(ratio.accepted["value"]) == {0.25}

    expression = resource.query_range(
        "max by (gpu, pod) (DCGM_FI_DEV_GPU_UTIL)", started, end, 1.0, metric="gpu_utilization_pct"
    )
    assert set(expression.accepted["device"]) == {"0", "1"}
    assert set(expression.accepted["job_id"]) == {"job-42"}

    bad = resource.query_range("rate(", started, end, 1.0)
    assert bad.accepted.empty
    assert bad.rejected["reason"].iloc[0].startswith("Prometheus error bad_data")
