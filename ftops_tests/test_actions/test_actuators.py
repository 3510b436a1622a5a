"""record, control_file and webhook actuators."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ftops.actions.actuators import (
    SIGNATURE_HEADER,
    Actuator,
    ActuatorError,
    ControlFileActuator,
    RecordActuator,
    WebhookActuator,
    command_payload,
)
from ftops.actions.http import write_atomic
from ftops.costs.ladder import action_key
from ftops.plans import PlannedAction
from ftops_tests.services import recording_http_server


def planned(job_id: str = "ft-1", action: str = "reduce_batch_size", params: dict | None = None,
            level: float = 95.0, period: str = "2025-06") -> PlannedAction:
    if params is None:
        params = {"micro_batch_size": 4, "grad_accum": 8, "effective_batch_size": 32,
                  "previous_micro_batch_size": 8, "previous_grad_accum": 4}
    key = action_key(job_id, action, "budget", level, "research", period)
    return PlannedAction(key, job_id, "research", action, params, level, "enforce", period,
                         reason=f"budget 'research' at 96% >= {level}%")


def test_every_actuator_meets_the_protocol(tmp_path):
    for actuator in (RecordActuator(), ControlFileActuator(tmp_path), WebhookActuator("http://127.0.0.1:9")):
        assert isinstance(actuator, Actuator)
        assert actuator.name in ("record", "control_file", "webhook")


def test_record_changes_nothing(tmp_path):
    assert RecordActuator().apply(planned()) == "recorded (dry run)"


def test_payload_flattens_params_and_refuses_clashes():
    action = planned()
    payload = command_payload(action, issued_at="2025-06-20T14:03:11Z")
    assert payload["micro_batch_size"] == 4 and payload["grad_accum"] == 8
    assert payload["action_id"] == action.action_id and payload["job_id"] == "ft-1"
    assert payload["budget_category"] == "research" and payload["issued_at"] == "2025-06-20T14:03:11Z"
    with pytest.raises(ActuatorError, match="clash"):
        command_payload(planned(params={"job_id": "other"}))


def test_control_file_is_valid_json_written_atomically_and_idempotent(tmp_path):
    actuator = ControlFileActuator(tmp_path / "control")
    action = planned()
    detail = actuator.apply(action)
    path = tmp_path / "control" / "ft-1.json"
    assert "wrote reduce_batch_size" in detail
    document = json.loads(path.read_text())
    assert document["action"] == "reduce_batch_size" and document["action_id"] == action.action_id
    assert (document["micro_batch_size"], document["grad_accum"]) == (4, 8)
    assert document["job_id"] == "ft-1" and document["issued_at"].endswith("Z")
    assert [c["action_id"] for c in document["commands"]] == [action.action_id]
    assert [p.name for p in path.parent.iterdir()] == ["ft-1.json"]  # no temporary file left behind

    before = path.read_bytes()
    stat = path.stat()
    assert "already holds" in actuator.apply(action)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_control_file_keeps_earlier_commands_for_the_same_job(tmp_path):
    actuator = ControlFileActuator(tmp_path)
    spot = planned(action="switch_to_spot", params={"pricing": "spot"}, level=90.0)
    smaller = planned()
    actuator.apply(spot)
    actuator.apply(smaller)
    document = json.loads((tmp_path / "ft-1.json").read_text())
    assert document["action"] == "reduce_batch_size"  # newest at the top level
    assert [c["action"] for c in document["commands"]] == ["switch_to_spot", "reduce_batch_size"]
    assert document["commands"][0]["pricing"] == "spot"
    assert "already holds" in actuator.apply(spot)


def test_control_file_refuses_unsafe_names_and_unreadable_files(tmp_path):
    actuator = ControlFileActuator(tmp_path)
    with pytest.raises(ActuatorError, match="cannot name a control file"):
        actuator.apply(planned(job_id="../etc/passwd"))
    (tmp_path / "ft-1.json").write_text("{half a file")
    with pytest.raises(ActuatorError, match="not readable JSON"):
        actuator.apply(planned())
    assert (tmp_path / "ft-1.json").read_text() == "{half a file"


class _Receiver:
    """A local HTTP endpoint answering with scripted status codes and keeping what it got."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"nope")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_posts_a_signed_command():
    action = planned()
    with _Receiver([200]) as receiver:
        detail = WebhookActuator(receiver.url, secret="s3cret", timeout_seconds=5).apply(action)
    assert detail == "webhook answered 200"
    [(headers, body)] = receiver.requests
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers["Idempotency-Key"] == action.action_id
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["event"] == "ftops.action" and payload["action"] == "reduce_batch_size"
    assert payload["micro_batch_size"] == 4 and payload["action_id"] == action.action_id


def test_webhook_without_secret_sends_no_signature():
    with _Receiver([204]) as receiver:
        WebhookActuator(receiver.url, timeout_seconds=5).apply(planned())
    assert SIGNATURE_HEADER not in receiver.requests[0][0]


def test_webhook_retries_server_errors_but_not_client_errors():
    with _Receiver([503, 200]) as receiver:
        assert WebhookActuator(receiver.url, timeout_seconds=5, backoff_seconds=0.01).apply(planned()).endswith("200")
    assert len(receiver.requests) == 2
    with _Receiver([400, 200]) as receiver:
        with pytest.raises(ActuatorError, match="HTTP 400"):
            WebhookActuator(receiver.url, timeout_seconds=5, backoff_seconds=0.01).apply(planned())
    assert len(receiver.requests) == 1


def test_webhook_unreachable_is_an_actuator_error():
    with _Receiver([]) as receiver:
        url = receiver.url
    with pytest.raises(ActuatorError, match="failed"):
        WebhookActuator(url, timeout_seconds=2, retries=1, backoff_seconds=0.01).apply(planned())
    with pytest.raises(ValueError):
        WebhookActuator("ftp://example.invalid/x")


def test_no_path_of_this_machine_in_command(tmp_path):
    ControlFileActuator(tmp_path).apply(planned())
    assert str(tmp_path) not in Path(tmp_path, "ft-1.json").read_text()


def test_webhook_retries_when_the_receiver_is_busy_and_reports_the_attempts():
    with recording_http_server() as receiver:
        receiver.script = [429, 503]
        assert WebhookActuator(receiver.url, timeout_seconds=5, retries=2, backoff_seconds=0.01).apply(
            planned()).endswith("200")
        assert len(receiver.requests) == 3
        assert len({r.headers["Idempotency-Key"] for r in receiver.requests}) == 1  # the same action each time
        receiver.status = 502
        with pytest.raises(ActuatorError, match=r"failed after 2 attempt\(s\): HTTP 502"):
            WebhookActuator(receiver.url, timeout_seconds=5, retries=1, backoff_seconds=0.01).apply(planned())


def test_atomic_write_keeps_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / "ft-1.json"
    write_atomic(path, b'{"old": true}\n')
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b'{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["ft-1.json"]  # no temporary file left behind
