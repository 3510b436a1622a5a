"""Real external services for integration tests: find, start, wait for and stop them.

Reusable by any test: `free_port()`, `start_prometheus(tmp_path, targets)`, `start_alertmanager(tmp_path)`,
`stop_process_group(proc)`, and `recording_http_server()` (a local receiver for webhooks).
A missing binary skips the test on a developer machine but fails it on CI (`CI` set), where the
service must be installed and the test must really run (`conftest.skip_or_fail`).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar
from urllib.parse import urlparse

import requests

from ftops_tests.conftest import skip_or_fail

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, why: str) -> str:
    """Path of executable `name`; skip the test when it is absent, or fail on CI."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"`{name}` is not on PATH ({why}); install it (Debian: apt-get install {name})",
                     "integration test")
    return path


def wait_for(check: Callable[[], T | None], *, timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError as exc:  # connection refused/reset while the service starts (requests' errors are OSError)
            last_error = exc
        time.sleep(interval_s)
    detail = f" (last error: {last_error})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}{detail}")


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Stop a process started with start_new_session=True and everything it spawned."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _log_tail(log: Path, n: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _start_until_ready(name: str, root: Path, port: int, ready_timeout_s: float,
                       argv: list[str]) -> tuple[str, subprocess.Popen]:
    """Start a Prometheus-family server in its own session, logging to `root/<name>.log`, and
    return (base URL, process) once `/-/ready` answers 200; stop it and raise with the log if not."""
    log = root / f"{name}.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{_log_tail(log)}")
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200

    try:
        wait_for(ready, timeout_s=ready_timeout_s, what=f"{name} at {url}/-/ready")
    except BaseException as exc:
        stop_process_group(proc)
        raise RuntimeError(f"{name} did not become ready ({exc}); log tail:\n{_log_tail(log)}") from exc
    return url, proc


def start_prometheus(
    tmp_path: Path, scrape_targets: Sequence[str], *, scrape_interval_s: float = 1.0, ready_timeout_s: float = 60.0
) -> tuple[str, subprocess.Popen]:
    """Start a real Prometheus scraping `scrape_targets` ("host:port") -> (base URL, process).

    The process runs in its own session so `stop_process_group(proc)` stops all of it; its log is
    `tmp_path/prometheus.log`. Returns once `/-/ready` answers 200.
    """
    binary = require_binary("prometheus", "integration tests run a real Prometheus server")
    port = free_port()
    root = tmp_path / "prometheus"
    root.mkdir(parents=True, exist_ok=True)
    targets = ", ".join(f'"{t}"' for t in scrape_targets)
    interval = f"{int(scrape_interval_s * 1000)}ms"
    config = root / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: ftops-test\n"
        f"    scrape_interval: {interval}\n"
        f"    static_configs:\n      - targets: [{targets}]\n"
    )
    return _start_until_ready("prometheus", root, port, ready_timeout_s, [
        binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ])


def start_alertmanager(tmp_path: Path, *, ready_timeout_s: float = 60.0) -> tuple[str, subprocess.Popen]:
    """Start a real Prometheus Alertmanager (one node, a null receiver) -> (base URL, process).

    Clustering is off (`--cluster.listen-address=`) so parallel tests do not gossip with each
    other; the log is `tmp_path/alertmanager/alertmanager.log`. Returns once `/-/ready` answers 200.
    """
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:  # Debian names it prometheus-alertmanager, upstream tarballs alertmanager
        binary = require_binary("prometheus-alertmanager", "integration tests run a real Alertmanager")
    port = free_port()
    root = tmp_path / "alertmanager"
    root.mkdir(parents=True, exist_ok=True)
    config = root / "alertmanager.yml"
    config.write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    return _start_until_ready("alertmanager", root, port, ready_timeout_s, [
        binary, f"--config.file={config}", f"--storage.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
    ])


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """A local HTTP receiver: what it got (`requests`), and what it answers (`status`, `reply`)."""

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    status: int = 200
    reply: bytes = b'{"ok": true}'
    reply_headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After
    script: list[int] = field(default_factory=list)  # statuses for the next requests, then `status`


@contextlib.contextmanager
def recording_http_server() -> Iterator[RecordingServer]:
    """Serve on 127.0.0.1 in a thread, record every request, answer `status`/`reply` (JSON)."""

    server_state: list[RecordingServer] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            state = server_state[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.requests.append(RecordedRequest(self.command, self.path, dict(self.headers.items()), body))
            self.send_response(state.script.pop(0) if state.script else state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.reply)))
            for name, value in state.reply_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(state.reply)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.append(RecordingServer(url=f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server_state[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- PostgreSQL: the local cluster `.ci/run` starts (FTOPS_TEST_POSTGRES_URL), driven as its superuser


@dataclass(frozen=True)
class ScratchPostgres:
    """A role with a random password and a database it owns, for one test; `env` holds the FTOPS_PG_*
    variables `deploy/dagster.postgres.yaml` reads."""

    user: str
    password: str
    host: str
    port: int
    database: str
    cluster: tuple[str, str]  # (version, name) for pg_ctlcluster

    @property
    def env(self) -> dict[str, str]:
        return {"FTOPS_PG_USER": self.user, "FTOPS_PG_PASSWORD": self.password, "FTOPS_PG_HOST": self.host,
                "FTOPS_PG_PORT": str(self.port), "FTOPS_PG_DB": self.database}

    def restart(self, timeout_s: float = 60.0) -> None:
        """Restart the server (every connection drops), and wait until it accepts connections again."""
        pg_ctlcluster(self.cluster, "restart")
        wait_for(lambda: _pg_ready(self.port), timeout_s=timeout_s, what="PostgreSQL after its restart")

    def stop(self) -> None:
        pg_ctlcluster(self.cluster, "stop")

    def start(self, timeout_s: float = 60.0) -> None:
        pg_ctlcluster(self.cluster, "start")
        wait_for(lambda: _pg_ready(self.port), timeout_s=timeout_s, what="PostgreSQL after its start")


def pg_ctlcluster(cluster: tuple[str, str], action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action], check=True,
                   capture_output=True, text=True, timeout=120)


def _pg_ready(port: int) -> bool:
    return subprocess.run(["su", "postgres", "-c", f"pg_isready -q -p {port}"], timeout=30).returncode == 0


def _psql_as_superuser(port: int, sql: str) -> None:
    done = subprocess.run(["su", "postgres", "-c", f"psql -v ON_ERROR_STOP=1 -qAt -p {port}"], input=sql,
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.strip()}")


@contextlib.contextmanager
def scratch_postgres() -> Iterator[ScratchPostgres]:
    """A fresh role and database on the local cluster, dropped afterwards.

    A database of its own keeps a test's runs, ticks and run keys apart from every other test's (run
    keys are derived from the data, so a shared database would dedupe them across tests); a random
    password is something a scan for leaked secrets can look for without false hits.
    Skips (fails on CI) without FTOPS_TEST_POSTGRES_URL, pg_ctlcluster or root.
    """
    url = os.environ.get("FTOPS_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("FTOPS_TEST_POSTGRES_URL is not set (a PostgreSQL server is needed; .ci/run starts one)")
    for tool in ("pg_ctlcluster", "pg_lsclusters", "su"):
        if shutil.which(tool) is None:
            skip_or_fail(f"`{tool}` is not on PATH (the test drives the local PostgreSQL cluster)")
    if os.geteuid() != 0:
        skip_or_fail("the test must run as root to drive the local PostgreSQL cluster as its superuser")
    parsed = urlparse(url)
    port = parsed.port or 5432
    clusters = [line.split() for line in subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                                                        check=True).stdout.splitlines() if line.strip()]
    cluster = next(((c[0], c[1]) for c in clusters if c[2] == str(port)), None)
    if cluster is None:
        skip_or_fail(f"no local PostgreSQL cluster listens on port {port} (pg_lsclusters)")
    suffix = secrets.token_hex(6)
    scratch = ScratchPostgres(user=f"ftops_t_{suffix}", password=secrets.token_urlsafe(24),
                              host=parsed.hostname or "127.0.0.1", port=port, database=f"ftops_t_{suffix}",
                              cluster=cluster)
    _psql_as_superuser(port, f"CREATE ROLE {scratch.user} LOGIN PASSWORD '{scratch.password}';\n"
                             f"CREATE DATABASE {scratch.database} OWNER {scratch.user};\n")
    try:
        yield scratch
    finally:
        wait_for(lambda: _pg_ready(port), timeout_s=60, what="PostgreSQL before dropping the scratch database")
        _psql_as_superuser(port, f"DROP DATABASE IF EXISTS {scratch.database} WITH (FORCE);\n"
                                 f"DROP ROLE IF EXISTS {scratch.user};\n")
