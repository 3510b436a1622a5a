"""Alerts out: the notifier interface, the message every notifier receives, and the log notifier.

A notifier delivers a batch of alert transitions (an alert that fires, or one that resolves) to one
destination. It either delivers the whole batch or raises `NotifierError`; the bookkeeping of what
was delivered, and the retries, live in `ftops.actions.delivery`, so a notifier stays a thin client.
HTTP notifiers are in `notifiers_http` (webhook, Alertmanager), Slack in `notifiers_slack`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

import pandas as pd
from ftops.schemas import utc_timestamp


class NotifierError(RuntimeError):
    """A batch could not be delivered; the message names the notifier and what went wrong."""


@dataclass(frozen=True)
class AlertMessage:
    """One alert transition as notifiers see it: a row of the `alerts` table (ALERTS) in its current state."""

    alert_id: str
    job_id: str
    rule: str
    category: str
    severity: str
    state: str  # firing | resolved
    message: str
    value: float | None
    threshold: float | None
    started_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None = None
    device: str | None = None  # one GPU of eight can be the problem; part of the alert's identity

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | pd.Series) -> AlertMessage:
        return cls(
            alert_id=str(row["alert_id"]),
            job_id=str(row["job_id"]),
            rule=str(row["rule"]),
            category=str(row["category"]),
            severity=str(row["severity"]),
            state=str(row["state"]),
            message=str(row["message"]),
            value=_opt_float(row.get("value")),
            threshold=_opt_float(row.get("threshold")),
            started_at=_ts(row["started_at"]),
            last_seen_at=_ts(row["last_seen_at"]),
            resolved_at=_opt_ts(row.get("resolved_at")),
            device=_opt_str(row.get("device")),
        )

    @property
    def firing(self) -> bool:
        return self.state == "firing"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: ISO 8601 UTC timestamps, missing numbers as null."""
        return {
            "alert_id": self.alert_id,
            "job_id": self.job_id,
            "rule": self.rule,
            "device": self.device,
            "category": self.category,
            "severity": self.severity,
            "state": self.state,
            "message": self.message,
            # JSON has no Inf (an exploding loss is one); the message still says what was seen
            "value": _finite_or_none(self.value),
            "threshold": _finite_or_none(self.threshold),
            "started_at": self.started_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }

    def summary(self) -> str:
        """One line for logs and chat: state, severity, job, rule, message, value against threshold."""
        device = f" device {self.device}" if self.device else ""
        numbers = ""
        if self.value is not None:
            numbers = f" (value {self.value:.4g}"
            numbers += f", threshold {self.threshold:.4g})" if self.threshold is not None else ")"
        when = (f"resolved at {self.resolved_at.isoformat()}" if not self.firing and self.resolved_at
                else f"since {self.started_at.isoformat()}")
        return (f"{self.state.upper()} [{self.severity}] job {self.job_id}{device} {self.rule}: "
                f"{self.message}{numbers}, {when} (alert {self.alert_id})")


def messages_from_alerts(alerts: pd.DataFrame) -> list[AlertMessage]:
    """Every row of an `alerts` table as an AlertMessage, in table order."""
    return [AlertMessage.from_row(row) for row in alerts.to_dict("records")]


@runtime_checkable
class Notifier(Protocol):
    """A destination for alerts. `send` delivers the whole batch or raises NotifierError."""

    name: str

    def send(self, alerts: list[AlertMessage]) -> None: ...


class _Log(Protocol):
    # both logging.Logger and Dagster's context.log have these
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class LogNotifier:
    """The default notifier: one log line per alert (warning while firing, info once resolved)."""

    name = "log"

    def __init__(self, logger: _Log, name: str = "log") -> None:
        self.logger = logger
        self.name = name

    def send(self, alerts: list[AlertMessage]) -> None:
        for alert in alerts:
            line = f"ftops alert {alert.summary()}"
            if alert.firing:
                self.logger.warning(line)
            else:
                self.logger.info(line)


def _missing(x: Any) -> bool:
    if x is None or x is pd.NA or x is pd.NaT:
        return True
    return isinstance(x, float) and math.isnan(x)


def _opt_float(x: Any) -> float | None:
    return None if _missing(x) else float(x)


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _opt_str(x: Any) -> str | None:
    return None if _missing(x) or str(x) == "" else str(x)


def _ts(x: Any) -> datetime:
    # datetime holds microseconds; cut the nanoseconds explicitly rather than have pandas warn
    return utc_timestamp(x).floor("us").to_pydatetime().astimezone(timezone.utc)


def _opt_ts(x: Any) -> datetime | None:
    return None if _missing(x) else _ts(x)
