"""HTTP notifiers: a generic signed JSON webhook and the Prometheus Alertmanager API v2."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from ftops.actions.http import SIGNATURE_HEADER, HttpFailure, attempts_of, retrying_session, send, sign
from ftops.actions.notifiers import AlertMessage, NotifierError

TIMESTAMP_HEADER = "X-Ftops-Timestamp"


def post_json(session: requests.Session, url: str, body: bytes, *, what: str, timeout_seconds: float,
              headers: dict[str, str] | None = None) -> None:
    """POST `body` as JSON through a retrying session; anything but a 2xx answer raises NotifierError."""
    all_headers = {"Content-Type": "application/json"} | (headers or {})
    try:
        response = send(session, "POST", url, timeout_seconds=timeout_seconds, data=body, headers=all_headers)
    except HttpFailure as exc:
        raise NotifierError(f"{what}: {exc}") from exc
    if response.status_code >= 300:
        raise NotifierError(f"{what}: POST {url} failed after {attempts_of(response)} attempt(s): "
                            f"HTTP {response.status_code}: {response.text.strip()[:300]}")


class WebhookNotifier:
    """POST `{"sent_at": <unix s>, "alerts": [...]}` to any URL, signed when a secret is given.

    With a secret, `X-Ftops-Signature` is the HMAC-SHA256 of the exact body bytes. The body carries
    `sent_at`, equal to `X-Ftops-Timestamp`, so the timestamp is covered by the signature and a
    receiver can refuse replays of old deliveries. Deliveries are at-least-once: a receiver that
    must not act twice de-duplicates on (alert_id, state).
    """

    def __init__(self, url: str, secret: str | None = None, timeout_seconds: float = 5.0,
                 max_retries: int = 2, backoff_seconds: float = 0.5, name: str = "webhook") -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {url!r}")
        self.url = url
        self.secret = secret
        self.timeout_seconds = timeout_seconds
        self.name = name
        self.session = retrying_session(max_retries, backoff_seconds)

    def payload(self, alerts: list[AlertMessage], sent_at: int) -> bytes:
        return json.dumps({"sent_at": sent_at, "alerts": [a.to_json() for a in alerts]},
                          separators=(",", ":"), allow_nan=False).encode()

    def send(self, alerts: list[AlertMessage]) -> None:
        if not alerts:
            return
        sent_at = int(time.time())
        body = self.payload(alerts, sent_at)
        headers = {TIMESTAMP_HEADER: str(sent_at)}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        post_json(self.session, self.url, body, what=f"notifier {self.name!r}",
                  timeout_seconds=self.timeout_seconds, headers=headers)


class AlertmanagerNotifier:
    """Prometheus Alertmanager API v2: `POST <url>/api/v2/alerts`.

    Labels identify the alert inside Alertmanager (alertname = rule, job_id, severity, category,
    alert_id, device when known), so its grouping, silences and inhibition rules work on ftops
    alerts as on Prometheus ones. A firing alert is sent without endsAt (Alertmanager resolves it
    after its `resolve_timeout` unless it is sent again); a resolved one with endsAt = resolved_at.
    """

    def __init__(self, url: str, timeout_seconds: float = 5.0, generator_url: str | None = None,
                 max_retries: int = 2, backoff_seconds: float = 0.5, name: str = "alertmanager") -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"alertmanager url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.generator_url = generator_url
        self.timeout_seconds = timeout_seconds
        self.name = name
        self.session = retrying_session(max_retries, backoff_seconds)

    def payload(self, alerts: list[AlertMessage]) -> list[dict[str, Any]]:
        return [self._alert(a) for a in alerts]

    def _alert(self, a: AlertMessage) -> dict[str, Any]:
        labels = {"alertname": a.rule, "job_id": a.job_id, "severity": a.severity,
                  "category": a.category, "alert_id": a.alert_id}
        if a.device:
            labels["device"] = a.device
        annotations = {"summary": f"{a.rule} on job {a.job_id}", "description": a.message}
        if a.value is not None:
            annotations["value"] = f"{a.value:.6g}"
        if a.threshold is not None:
            annotations["threshold"] = f"{a.threshold:.6g}"
        out: dict[str, Any] = {"labels": labels, "annotations": annotations,
                               "startsAt": a.started_at.isoformat()}
        if not a.firing and a.resolved_at is not None:
            # Alertmanager refuses endsAt before startsAt
            out["endsAt"] = max(a.resolved_at, a.started_at).isoformat()
        if self.generator_url:
            out["generatorURL"] = self.generator_url
        return out

    def send(self, alerts: list[AlertMessage]) -> None:
        if not alerts:
            return
        body = json.dumps(self.payload(alerts)).encode()
        post_json(self.session, f"{self.url}/api/v2/alerts", body, what=f"notifier {self.name!r}",
                  timeout_seconds=self.timeout_seconds)
