"""Alert delivery bookkeeping: every alert transition reaches every routed notifier, once.

The `alert_deliveries` table (ALERT_DELIVERIES) has one row per (alert_id, state, notifier). A
transition (an alert firing, or resolving) that a routed notifier has not been told is sent, in
one batch per notifier. A batch that fails stays `pending` with its error and is sent again on
the next call; a delivered row is never sent again, so re-running without change sends nothing.

Status `superseded` marks a pending row that is no longer worth sending: the alert moved to its
other state before this one was delivered (a late "firing" after the incident is over would only
mislead, and the "resolved" message tells the whole story), the route no longer leads to that
notifier, or the alert left the alerts table. An alert that re-opens (resolved -> firing, same id)
is sent again because its notifier was last told the other state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ftops.actions.notifiers import AlertMessage, Notifier, NotifierError
from ftops.policy import Route
from ftops.schemas import ALERT_DELIVERIES, ALERTS, utc_timestamp, validate


@dataclass(frozen=True)
class DeliveryReport:
    """What one `deliver` call did: alerts sent and still pending per notifier, and the errors."""

    sent: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors and not any(self.pending.values())

    def summary(self) -> str:
        sent = ", ".join(f"{n}: {c}" for n, c in sorted(self.sent.items())) or "none"
        text = f"alert notifications sent ({sent})"
        if any(self.pending.values()):
            pending = ", ".join(f"{n}: {c}" for n, c in sorted(self.pending.items()) if c)
            text += f"; still pending, retried on the next run ({pending})"
        if self.errors:
            text += "; errors: " + " | ".join(self.errors)
        return text

    def as_metadata(self) -> dict[str, Any]:
        """Plain values for Dagster asset metadata."""
        return {
            "notifications_sent": sum(self.sent.values()),
            "notifications_pending": sum(self.pending.values()),
            "sent_by_notifier": dict(self.sent),
            "pending_by_notifier": dict(self.pending),
            "notifier_errors": "\n".join(self.errors) or "none",
        }


def route(alert_row: Mapping[str, Any] | pd.Series | AlertMessage, routes: Sequence[Route]) -> tuple[str, ...]:
    """Names of the notifiers for the alert's severity and category (in route order, each once).

    A route without a category matches every category; an alert that no route matches goes nowhere.
    """
    get = (lambda k: getattr(alert_row, k)) if isinstance(alert_row, AlertMessage) else alert_row.__getitem__
    severity, category = str(get("severity")), str(get("category"))
    names: dict[str, None] = {}
    for r in routes:
        if r.severity == severity and (r.category is None or r.category == category):
            names.update(dict.fromkeys(r.notifiers))
    return tuple(names)


def _needs_send(current: dict[str, Any] | None, other: dict[str, Any] | None) -> bool:
    if current is None or current["status"] != "delivered":
        return True
    # re-opened or re-resolved: the notifier was last told the other state
    told_other = other is not None and not pd.isna(other["delivered_at"])
    return told_other and other["delivered_at"] > current["delivered_at"]


def deliver(alerts: pd.DataFrame, deliveries: pd.DataFrame | None, routes: Sequence[Route],
            notifiers: Mapping[str, Notifier], now: Any) -> tuple[pd.DataFrame, DeliveryReport]:
    """Send every undelivered alert transition to its routed notifiers -> (new deliveries, report).

    `alerts` is the alerts table (ALERTS), `deliveries` the previous result of this function
    (ALERT_DELIVERIES; None or empty the first time). A notifier named by a route but absent from
    `notifiers` is an error like a failed send: its alerts stay pending until it is configured.
    """
    now = utc_timestamp(now)
    alerts = validate(alerts, ALERTS) if alerts is not None and len(alerts) else ALERTS.empty()
    previous = (validate(deliveries, ALERT_DELIVERIES) if deliveries is not None and len(deliveries)
                else ALERT_DELIVERIES.empty())
    book: dict[tuple[str, str, str], dict[str, Any]] = {
        (r["alert_id"], r["state"], r["notifier"]): r for r in previous.to_dict("records")}

    batches: dict[str, list[tuple[tuple[str, str, str], AlertMessage]]] = {}
    wanted: set[tuple[str, str, str]] = set()
    for row in alerts.to_dict("records"):
        alert = AlertMessage.from_row(row)
        other_state = "resolved" if alert.firing else "firing"
        for name in route(alert, routes):
            key = (alert.alert_id, alert.state, name)
            wanted.add(key)
            current = book.get(key)
            if not _needs_send(current, book.get((alert.alert_id, other_state, name))):
                continue
            if current is None:
                current = book[key] = {"alert_id": key[0], "state": key[1], "notifier": name, "attempts": 0,
                                       "last_error": None, "last_attempt_at": pd.NaT, "delivered_at": pd.NaT}
            current["status"] = "pending"
            batches.setdefault(name, []).append((key, alert))

    live = set(alerts["alert_id"].astype(str))
    for key, entry in book.items():
        if entry["status"] == "pending" and key not in wanted:
            last = entry["last_error"]
            entry["status"] = "superseded"
            entry["last_error"] = f"not sent: {_why_superseded(key, live)}" + (
                "" if pd.isna(last) else f" (last error: {last})")

    sent: dict[str, int] = {}
    errors: list[str] = []
    for name, batch in batches.items():
        error = _send(name, notifiers.get(name), [alert for _, alert in batch], sorted(notifiers))
        if error is None:
            sent[name] = len(batch)
        else:
            errors.append(f"{error} ({len(batch)} alert(s) pending)")
        for key, _ in batch:
            entry = book[key]
            entry["attempts"] = int(entry["attempts"]) + 1
            entry["last_attempt_at"] = now
            entry["last_error"] = error
            if error is None:
                entry["status"] = "delivered"
                entry["delivered_at"] = now

    out = pd.DataFrame(list(book.values()), columns=ALERT_DELIVERIES.column_names)
    out = validate(out, ALERT_DELIVERIES) if len(out) else ALERT_DELIVERIES.empty()
    out = out.sort_values(["alert_id", "state", "notifier"], kind="stable").reset_index(drop=True)
    still = out.loc[out["status"] == "pending", "notifier"].value_counts()
    pending = {str(n): int(c) for n, c in still.items()}
    return out, DeliveryReport(sent=sent, pending=pending, errors=tuple(errors))


def _why_superseded(key: tuple[str, str, str], live_alert_ids: set[str]) -> str:
    alert_id, state, notifier = key
    if alert_id not in live_alert_ids:
        return "the alert is no longer in the alerts table"
    return f"the alert is no longer {state}, or its route no longer leads to {notifier!r}"


def _send(name: str, notifier: Notifier | None, alerts: list[AlertMessage], configured: list[str]) -> str | None:
    """Send one batch; the error text, or None once delivered."""
    if notifier is None:
        return f"notifier {name!r} is named by a route but not configured (configured: {', '.join(configured) or 'none'})"
    try:
        notifier.send(alerts)
    except NotifierError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken notifier must not cost the other notifiers their bookkeeping
        return f"notifier {name!r} failed unexpectedly: {type(exc).__name__}: {exc}"
    return None
