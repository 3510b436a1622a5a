"""AlertmanagerNotifier against a real Prometheus Alertmanager (API v2): fire, then resolve."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from ftops.actions.notifiers import AlertMessage, NotifierError
from ftops.actions.notifiers_http import AlertmanagerNotifier
from ftops_tests.services import free_port, start_alertmanager, stop_process_group, wait_for


def _alert(state: str, started: datetime, resolved: datetime | None = None) -> AlertMessage:
    return AlertMessage(
        alert_id="a1b2c3d4e5f60718", job_id="job-42", rule="loss_non_finite", category="training",
        severity="critical", state=state, message="training loss is NaN at step 120", value=None,
        threshold=None, started_at=started, last_seen_at=started + timedelta(minutes=1),
        resolved_at=resolved, device=None)


def _ours(url: str) -> list[dict]:
    # default filters: active, silenced, inhibited and unprocessed alerts; resolved ones are left out
    response = requests.get(f"{url}/api/v2/alerts", params={"filter": 'alert_id="a1b2c3d4e5f60718"'}, timeout=5)
    response.raise_for_status()
    return response.json()


@pytest.mark.integration
def test_alertmanager_receives_firing_then_resolved(tmp_path: Path) -> None:
    url, proc = start_alertmanager(tmp_path)
    try:
        notifier = AlertmanagerNotifier(url, timeout_seconds=5, generator_url="http://dagster.example/assets/alerts")
        started = datetime.now(timezone.utc) - timedelta(minutes=10)

        notifier.send([_alert("firing", started)])
        shown = wait_for(lambda: [a for a in _ours(url) if a["status"]["state"] == "active"],
                         timeout_s=20, what="the firing alert to be active in Alertmanager")
        assert len(shown) == 1
        labels = shown[0]["labels"]
        assert labels == {"alertname": "loss_non_finite", "job_id": "job-42", "severity": "critical",
                          "category": "training", "alert_id": "a1b2c3d4e5f60718"}
        assert shown[0]["annotations"]["description"] == "training loss is NaN at step 120"
        assert shown[0]["generatorURL"] == "http://dagster.example/assets/alerts"
        # no endsAt sent: Alertmanager keeps it firing until its resolve_timeout, well in the future
        ends = datetime.fromisoformat(shown[0]["endsAt"].replace("Z", "+00:00"))
        assert ends > datetime.now(timezone.utc)

        notifier.send([_alert("resolved", started, resolved=datetime.now(timezone.utc) - timedelta(seconds=5))])
        wait_for(lambda: all(a["status"]["state"] != "active" for a in _ours(url)) or None,
                 timeout_s=20, what="the alert to be resolved in Alertmanager")
        assert _ours(url) == []  # API v2 lists no resolved alert
    finally:
        stop_process_group(proc)


def test_alertmanager_down_raises_notifier_error() -> None:
    notifier = AlertmanagerNotifier(f"http://127.0.0.1:{free_port()}", timeout_seconds=2, max_retries=1,
                                    backoff_seconds=0.01)
    started = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    with pytest.raises(NotifierError, match=r"notifier 'alertmanager': POST http://127\.0\.0\.1:\d+/api/v2/alerts "
                                            r"failed after 2 attempt\(s\)"):
        notifier.send([_alert("firing", started)])


def test_alertmanager_payload_shape() -> None:
    started = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    resolved = AlertMessage(
        alert_id="x", job_id="j", rule="gpu_memory_capacity_high", category="resource", severity="warning",
        state="resolved", message="memory 0.93 > 0.9", value=0.93, threshold=0.9, started_at=started,
        last_seen_at=started, resolved_at=started + timedelta(hours=1), device="3")
    (body,) = AlertmanagerNotifier("http://am:9093/").payload([resolved])
    assert body["labels"]["device"] == "3"
    assert body["annotations"]["value"] == "0.93" and body["annotations"]["threshold"] == "0.9"
    assert body["startsAt"] == "2024-05-01T12:00:00+00:00"
    assert body["endsAt"] == "2024-05-01T13:00:00+00:00"
    assert "generatorURL" not in body
