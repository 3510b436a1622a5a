"""Delivery bookkeeping: routing, nothing lost while a notifier is down, nothing sent twice."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ftops.actions.delivery import DeliveryReport, deliver, route
from ftops.actions.notifiers import AlertMessage, NotifierError
from ftops.actions.notifiers_http import WebhookNotifier
from ftops.policy import Route, policy_from_dict
from ftops.schemas import ALERT_DELIVERIES, ALERTS, validate
from ftops_tests.services import free_port, recording_http_server

T0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")


def _row(alert_id: str, *, severity: str = "critical", category: str = "training", state: str = "firing",
         rule: str = "loss_non_finite", resolved_at: pd.Timestamp | None = None) -> dict:
    return {"alert_id": alert_id, "job_id": f"job-{alert_id}", "rule": rule, "device": None, "category": category,
            "severity": severity, "state": state, "started_at": T0, "last_seen_at": T0 + pd.Timedelta("5min"),
            "resolved_at": resolved_at if state == "resolved" else None, "value": float("nan"),
            "threshold": None, "message": f"{rule} on job-{alert_id}"}


def _alerts(*rows: dict) -> pd.DataFrame:
    return validate(pd.DataFrame(list(rows)), ALERTS)


class Recorder:
    """An in-memory notifier: what it was sent, batch by batch; `down` makes it fail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[list[AlertMessage]] = []
        self.down = False

    def send(self, alerts: list[AlertMessage]) -> None:
        if self.down:
            raise NotifierError(f"notifier {self.name!r}: down for the test")
        self.batches.append(list(alerts))

    def sent(self) -> list[tuple[str, str]]:
        return [(a.alert_id, a.state) for batch in self.batches for a in batch]


ROUTES = (
    Route("critical", ("log", "webhook")),
    Route("warning", ("log",)),
    Route("warning", ("slack",), category="cost"),
)


@pytest.mark.parametrize(("severity", "category", "expected"), [
    ("critical", "training", ("log", "webhook")),
    ("warning", "resource", ("log",)),
    ("warning", "cost", ("log", "slack")),
    ("info", "quality", ()),
])
def test_route_by_severity_and_category(severity: str, category: str, expected: tuple[str, ...]) -> None:
    assert route(_row("a", severity=severity, category=category), ROUTES) == expected


def test_route_reads_ftops_yaml_routes() -> None:
    policy = policy_from_dict({"routes": [
        {"severity": "critical", "notifiers": ["slack", "alertmanager"]},
        {"severity": "critical", "category": "cost", "notifiers": ["webhook", "slack"]},
    ]})
    assert route(_row("a", category="cost"), policy.routes) == ("slack", "alertmanager", "webhook")
    assert route(_row("a", category="training"), policy.routes) == ("slack", "alertmanager")


def test_deliver_routes_batches_per_notifier_and_reports() -> None:
    notifiers = {n: Recorder(n) for n in ("log", "webhook", "slack")}
    alerts = _alerts(_row("c1"), _row("c2"), _row("w1", severity="warning", category="cost", rule="cost_per_hour_high"),
                     _row("i1", severity="info", category="quality", rule="domain_accuracy_target_reached"))
    table, report = deliver(alerts, None, ROUTES, notifiers, T0)
    assert notifiers["webhook"].batches == [notifiers["webhook"].batches[0]]  # one batch
    assert notifiers["webhook"].sent() == [("c1", "firing"), ("c2", "firing")]
    assert notifiers["log"].sent() == [("c1", "firing"), ("c2", "firing"), ("w1", "firing")]
    assert notifiers["slack"].sent() == [("w1", "firing")]
    assert report == DeliveryReport(sent={"log": 3, "webhook": 2, "slack": 1}, pending={}, errors=())
    assert report.ok and "log: 3" in report.summary()
    assert list(table.columns) == ALERT_DELIVERIES.column_names
    assert len(table) == 6 and set(table["status"]) == {"delivered"} and "i1" not in set(table["alert_id"])
    assert validate(table, ALERT_DELIVERIES).equals(table)


def test_notifier_down_keeps_alerts_pending_until_it_is_back() -> None:
    alerts = _alerts(_row("c1"), _row("c2"))
    log = Recorder("log")
    down = WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", timeout_seconds=2, max_retries=0)

    table, report = deliver(alerts, None, ROUTES, {"log": log, "webhook": down}, T0)
    assert report.sent == {"log": 2} and report.pending == {"webhook": 2} and not report.ok
    (error,) = report.errors
    assert "notifier 'webhook'" in error and "Connection" in error and "(2 alert(s) pending)" in error
    hook = table[table["notifier"] == "webhook"]
    assert list(hook["status"]) == ["pending", "pending"] and list(hook["attempts"]) == [1, 1]
    assert hook["last_error"].str.contains("ConnectionError").all() and hook["delivered_at"].isna().all()
    assert "still pending, retried on the next run (webhook: 2)" in report.summary()
    assert report.as_metadata()["notifications_pending"] == 2

    with recording_http_server() as server:
        up = WebhookNotifier(f"{server.url}/hook", secret="k")
        t1 = T0 + pd.Timedelta("10min")
        table, report = deliver(alerts, table, ROUTES, {"log": log, "webhook": up}, t1)
        assert report.sent == {"webhook": 2} and report.pending == {} and report.errors == ()
        (request,) = server.requests
        assert [a["alert_id"] for a in json.loads(request.body)["alerts"]] == ["c1", "c2"]
        hook = table[table["notifier"] == "webhook"]
        assert list(hook["status"]) == ["delivered"] * 2 and list(hook["attempts"]) == [2, 2]
        assert (hook["delivered_at"] == t1).all() and hook["last_error"].isna().all()

        again, report = deliver(alerts, table, ROUTES, {"log": log, "webhook": up}, t1 + pd.Timedelta("10min"))
        assert report.sent == {} and report.pending == {} and len(server.requests) == 1
        assert again.equals(table)
    assert log.sent() == [("c1", "firing"), ("c2", "firing")]  # the log got them once, on the first call


def test_resolution_is_a_new_delivery() -> None:
    notifiers = {"log": Recorder("log"), "webhook": Recorder("webhook")}
    table, _ = deliver(_alerts(_row("c1")), None, ROUTES, notifiers, T0)
    resolved = _alerts(_row("c1", state="resolved", resolved_at=T0 + pd.Timedelta("1h")))
    table, report = deliver(resolved, table, ROUTES, notifiers, T0 + pd.Timedelta("1h"))
    assert report.sent == {"log": 1, "webhook": 1}
    assert notifiers["webhook"].sent() == [("c1", "firing"), ("c1", "resolved")]
    assert notifiers["webhook"].batches[1][0].resolved_at == (T0 + pd.Timedelta("1h")).to_pydatetime()
    keys = set(table[["alert_id", "state", "notifier"]].itertuples(index=False, name=None))
    assert keys == {("c1", s, n) for s in ("firing", "resolved") for n in ("log", "webhook")}
    _, report = deliver(resolved, table, ROUTES, notifiers, T0 + pd.Timedelta("2h"))
    assert report.sent == {}


def test_resolved_before_firing_was_delivered_sends_only_the_resolution() -> None:
    hook = Recorder("webhook")
    hook.down = True
    table, _ = deliver(_alerts(_row("c1")), None, ROUTES, {"log": Recorder("log"), "webhook": hook}, T0)
    hook.down = False
    resolved = _alerts(_row("c1", state="resolved", resolved_at=T0 + pd.Timedelta("1h")))
    table, report = deliver(resolved, table, ROUTES, {"log": Recorder("log"), "webhook": hook}, T0 + pd.Timedelta("1h"))
    assert hook.sent() == [("c1", "resolved")] and report.pending == {}
    firing = table[(table["notifier"] == "webhook") & (table["state"] == "firing")].iloc[0]
    assert firing["status"] == "superseded" and "no longer firing" in firing["last_error"]
    assert "down for the test" in firing["last_error"]


def test_reopened_alert_is_sent_again() -> None:
    hook = Recorder("webhook")
    notifiers = {"log": Recorder("log"), "webhook": hook}
    firing, resolved = _alerts(_row("c1")), _alerts(_row("c1", state="resolved", resolved_at=T0 + pd.Timedelta("1h")))
    table, _ = deliver(firing, None, ROUTES, notifiers, T0)
    table, _ = deliver(resolved, table, ROUTES, notifiers, T0 + pd.Timedelta("1h"))
    table, _ = deliver(firing, table, ROUTES, notifiers, T0 + pd.Timedelta("2h"))  # late data re-opened it
    table, _ = deliver(firing, table, ROUTES, notifiers, T0 + pd.Timedelta("3h"))
    table, _ = deliver(resolved, table, ROUTES, notifiers, T0 + pd.Timedelta("4h"))
    assert hook.sent() == [("c1", "firing"), ("c1", "resolved"), ("c1", "firing"), ("c1", "resolved")]


def test_routed_but_unconfigured_notifier_stays_pending_with_a_clear_error() -> None:
    table, report = deliver(_alerts(_row("c1")), None, ROUTES, {"log": Recorder("log")}, T0)
    assert report.pending == {"webhook": 1}
    assert report.errors == ("notifier 'webhook' is named by a route but not configured (configured: log)"
                             " (1 alert(s) pending)",)
    hook = Recorder("webhook")
    table, report = deliver(_alerts(_row("c1")), table, ROUTES, {"log": Recorder("log"), "webhook": hook}, T0)
    assert hook.sent() == [("c1", "firing")] and report.ok


def test_a_broken_notifier_does_not_cost_the_others_their_bookkeeping() -> None:
    class Broken:
        name = "webhook"

        def send(self, alerts: list[AlertMessage]) -> None:
            raise KeyError("bug")

    log = Recorder("log")
    table, report = deliver(_alerts(_row("c1")), None, ROUTES, {"log": log, "webhook": Broken()}, T0)
    assert report.sent == {"log": 1} and report.pending == {"webhook": 1}
    assert "failed unexpectedly: KeyError" in report.errors[0]


def test_pending_delivery_of_a_route_removed_is_superseded_not_nagging_forever() -> None:
    hook = Recorder("webhook")
    hook.down = True
    table, _ = deliver(_alerts(_row("c1")), None, ROUTES, {"log": Recorder("log"), "webhook": hook}, T0)
    table, report = deliver(_alerts(_row("c1")), table, (Route("critical", ("log",)),), {"log": Recorder("log")}, T0)
    assert report.pending == {} and report.sent == {}
    row = table[table["notifier"] == "webhook"].iloc[0]
    assert row["status"] == "superseded" and "route no longer leads to 'webhook'" in row["last_error"]


def test_empty_inputs() -> None:
    table, report = deliver(ALERTS.empty(), ALERT_DELIVERIES.empty(), ROUTES, {}, T0)
    assert table.empty and list(table.columns) == ALERT_DELIVERIES.column_names and report.ok
