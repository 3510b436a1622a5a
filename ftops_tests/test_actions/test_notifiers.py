"""Notifiers against local receivers: signed webhook, Slack through dagster-slack's client, the log."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from dagster_slack import SlackResource

from ftops.actions.http import sign
from ftops.actions.notifiers import AlertMessage, LogNotifier, Notifier, NotifierError, messages_from_alerts
from ftops.actions.notifiers_http import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookNotifier
from ftops.actions.notifiers_slack import MAX_ALERTS_PER_MESSAGE, SlackNotifier
from ftops_tests.services import free_port, recording_http_server

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def _alert(alert_id: str = "a1", state: str = "firing", **kw: object) -> AlertMessage:
    fields = dict(alert_id=alert_id, job_id="job-7", rule="gpu_memory_capacity_high", category="resource",
                  severity="critical", state=state, message="GPU memory 0.97 of capacity > 0.95", value=0.97,
                  threshold=0.95, started_at=T0, last_seen_at=T0 + timedelta(minutes=5),
                  resolved_at=T0 + timedelta(hours=1) if state == "resolved" else None, device="0")
    fields.update(kw)
    return AlertMessage(**fields)  # type: ignore[arg-type]


def _verifies(body: bytes, header: str, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def test_message_from_alerts_row_handles_missing_values() -> None:
    row = {"alert_id": "a9", "job_id": "j", "rule": "loss_non_finite", "device": pd.NA, "category": "training",
           "severity": "critical", "state": "firing", "started_at": pd.Timestamp("2024-05-01 12:00", tz="UTC"),
           "last_seen_at": pd.Timestamp("2024-05-01 12:05", tz="UTC"), "resolved_at": pd.NaT,
           "value": float("inf"), "threshold": float("nan"), "message": "loss is inf"}
    (m,) = messages_from_alerts(pd.DataFrame([row]))
    assert (m.device, m.resolved_at, m.threshold, m.value) == (None, None, None, float("inf"))
    assert m.started_at == T0 and m.started_at.tzinfo is not None
    as_json = m.to_json()
    assert as_json["value"] is None and as_json["started_at"] == "2024-05-01T12:00:00+00:00"
    json.dumps(as_json, allow_nan=False)


def test_webhook_posts_signed_json() -> None:
    with recording_http_server() as server:
        notifier = WebhookNotifier(f"{server.url}/hooks/ftops", secret="s3cret", timeout_seconds=5)
        assert isinstance(notifier, Notifier)
        notifier.send([_alert("a1"), _alert("a2", state="resolved")])
        (request,) = server.requests
    assert request.method == "POST" and request.path == "/hooks/ftops"
    assert request.headers["Content-Type"] == "application/json"
    payload = json.loads(request.body)
    assert [(a["alert_id"], a["state"]) for a in payload["alerts"]] == [("a1", "firing"), ("a2", "resolved")]
    assert payload["alerts"][0]["value"] == 0.97 and payload["alerts"][0]["device"] == "0"
    assert payload["alerts"][1]["resolved_at"] == "2024-05-01T13:00:00+00:00"
    # the timestamp is inside the signed body, so it cannot be replayed with a fresh header
    assert str(payload["sent_at"]) == request.headers[TIMESTAMP_HEADER]
    signature = request.headers[SIGNATURE_HEADER]
    assert signature.startswith("sha256=")
    assert _verifies(request.body, signature, "s3cret")
    assert not _verifies(request.body, signature, "wrong-secret")
    assert not _verifies(request.body.replace(b"job-7", b"job-8"), signature, "s3cret")


def test_webhook_without_secret_sends_no_signature() -> None:
    with recording_http_server() as server:
        WebhookNotifier(server.url).send([_alert()])
        (request,) = server.requests
    assert SIGNATURE_HEADER not in request.headers and TIMESTAMP_HEADER in request.headers


def test_webhook_retries_server_errors_then_reports() -> None:
    with recording_http_server() as server:
        server.status, server.reply = 503, b'{"error": "maintenance"}'
        notifier = WebhookNotifier(server.url, max_retries=2, backoff_seconds=0.01)
        with pytest.raises(NotifierError, match=r"failed after 3 attempt\(s\): HTTP 503: .*maintenance"):
            notifier.send([_alert()])
        assert len(server.requests) == 3
        server.status = 400  # a client error will not get better by retrying
        with pytest.raises(NotifierError, match=r"after 1 attempt\(s\): HTTP 400"):
            notifier.send([_alert()])
        assert len(server.requests) == 4


def test_webhook_down_raises_notifier_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(NotifierError, match=r"notifier 'webhook': POST .*/hook failed after 1 attempt\(s\): connection failed"):
        WebhookNotifier(url, max_retries=0).send([_alert()])


def _slack_client(url: str):
    client = SlackResource(token="xoxb-test-token").get_client()
    client.base_url = f"{url}/api/"
    return client


def test_slack_posts_one_message_per_batch() -> None:
    with recording_http_server() as server:
        server.reply = b'{"ok": true, "channel": "C123", "ts": "1714564800.000100"}'
        notifier = SlackNotifier(_slack_client(server.url), channel="#ft-alerts")
        notifier.send([_alert("a1"), _alert("a2", state="resolved", message="x < y & z")])
        (request,) = server.requests
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-test-token"
    body = json.loads(request.body)
    assert body["channel"] == "#ft-alerts"
    text = body["text"]
    assert text.startswith("ftops: 1 firing, 1 resolved")
    assert "🔥 *FIRING* [critical] job `job-7`" in text and "GPU memory 0.97 of capacity > 0.95" not in text
    assert "GPU memory 0.97 of capacity &gt; 0.95" in text  # mrkdwn control characters escaped
    assert "✅ *RESOLVED*" in text and "x &lt; y &amp; z" in text
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section"]


def test_slack_splits_large_batches_under_the_block_limit() -> None:
    with recording_http_server() as server:
        notifier = SlackNotifier(_slack_client(server.url), channel="C123")
        notifier.send([_alert(f"a{i}") for i in range(MAX_ALERTS_PER_MESSAGE + 5)])
        bodies = [json.loads(r.body) for r in server.requests]
    assert [len(b["blocks"]) for b in bodies] == [MAX_ALERTS_PER_MESSAGE + 1, 6]


def test_slack_error_becomes_notifier_error() -> None:
    with recording_http_server() as server:
        server.reply = b'{"ok": false, "error": "channel_not_found"}'
        notifier = SlackNotifier(_slack_client(server.url), channel="#nope")
        with pytest.raises(NotifierError, match="Slack refused chat.postMessage to #nope: channel_not_found"):
            notifier.send([_alert()])
    client = _slack_client(f"http://127.0.0.1:{free_port()}")
    client.retry_handlers = []  # the default handler retries once; not needed to see the failure
    with pytest.raises(NotifierError, match="cannot reach Slack"):
        SlackNotifier(client, channel="#x").send([_alert()])


def test_log_notifier_warns_while_firing(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("ftops.test.notifiers")
    with caplog.at_level(logging.INFO, logger=logger.name):
        LogNotifier(logger).send([_alert("a1"), _alert("a2", state="resolved")])
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    assert "FIRING [critical] job job-7 device 0 gpu_memory_capacity_high" in caplog.records[0].getMessage()
    assert "RESOLVED" in caplog.records[1].getMessage() and "resolved at 2024-05-01T13:00:00+00:00" in caplog.text


def test_shared_signer_known_signature() -> None:
    # The receivers' check (docs/control-files.md): HMAC-SHA256 of the raw body, hex, prefixed "sha256=".
    # Expected value from `printf '%s' BODY | openssl dgst -sha256 -hmac s3cret`, independent of ftops.
    body = b'{"sent_at":1714564800,"alerts":[]}'
    assert sign(body, "s3cret") == "sha256=b7818404b95e67952bc6c4cfddac41cbc53d03d3340d92888d4e9eb2b27cf1c6"
    assert WebhookNotifier("http://receiver.example/hook").payload([], sent_at=1714564800) == body


def test_webhook_waits_as_long_as_the_receiver_asks() -> None:
    with recording_http_server() as server:
        server.script, server.reply_headers = [429], {"Retry-After": "1"}
        started = time.monotonic()
        WebhookNotifier(server.url, max_retries=1, backoff_seconds=0.01).send([_alert()])
        elapsed = time.monotonic() - started
    assert len(server.requests) == 2
    assert elapsed >= 1.0  # a retry 10 ms later would only meet the same 429
