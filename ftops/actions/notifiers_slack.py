"""Slack notifier: one `chat.postMessage` per batch through a `slack_sdk.WebClient`.

The client comes from dagster-slack (`SlackResource(token=...).get_client()`), so the token is
configured once, the Dagster way; this module only formats and posts.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from ftops.actions.notifiers import AlertMessage, NotifierError

# Slack refuses a message with more than 50 blocks; one header block + one block per alert
MAX_ALERTS_PER_MESSAGE = 45
_MAX_SECTION_CHARS = 2900  # a section's text is limited to 3000 characters


def _escape(text: str) -> str:
    # Slack mrkdwn treats these three as control characters
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alert_line(alert: AlertMessage) -> str:
    """One alert in Slack mrkdwn: 🔥 firing / ✅ resolved, severity, job, rule, message, numbers."""
    icon, word = ("🔥", "FIRING") if alert.firing else ("✅", "RESOLVED")
    device = f" (device {_escape(alert.device)})" if alert.device else ""
    numbers = ""
    if alert.value is not None:
        numbers = f" — value {alert.value:.4g}"
        numbers += f", threshold {alert.threshold:.4g}" if alert.threshold is not None else ""
    when = (f"resolved {alert.resolved_at:%Y-%m-%d %H:%M} UTC" if not alert.firing and alert.resolved_at
            else f"since {alert.started_at:%Y-%m-%d %H:%M} UTC")
    line = (f"{icon} *{word}* [{alert.severity}] job `{_escape(alert.job_id)}`{device} "
            f"*{_escape(alert.rule)}* ({alert.category}): {_escape(alert.message)}{numbers} · {when}")
    return line[:_MAX_SECTION_CHARS]


def message(alerts: list[AlertMessage]) -> tuple[str, list[dict[str, Any]]]:
    """(text, blocks) of one Slack message; `text` is the fallback shown in notifications."""
    firing = sum(a.firing for a in alerts)
    title = f"ftops: {firing} firing, {len(alerts) - firing} resolved"
    lines = [alert_line(a) for a in alerts]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": line}} for line in lines]
    return "\n".join([title, *lines]), blocks


class SlackNotifier:
    """Post alerts to one Slack channel; batches above 45 alerts are split over several messages.

    If a later message of a split batch fails, the whole batch stays pending and the earlier
    messages are posted again on the retry: delivery is at-least-once, never lost.
    """

    def __init__(self, client: WebClient, channel: str, name: str = "slack") -> None:
        if not channel:
            raise ValueError("slack notifier needs a channel (e.g. '#ft-alerts' or a channel id)")
        self.client = client
        self.channel = channel
        self.name = name

    def send(self, alerts: list[AlertMessage]) -> None:
        for start in range(0, len(alerts), MAX_ALERTS_PER_MESSAGE):
            text, blocks = message(alerts[start:start + MAX_ALERTS_PER_MESSAGE])
            try:
                self.client.chat_postMessage(channel=self.channel, text=text, blocks=blocks)
            except SlackApiError as exc:
                error = exc.response.get("error", "unknown error") if exc.response is not None else str(exc)
                raise NotifierError(f"notifier {self.name!r}: Slack refused chat.postMessage to "
                                    f"{self.channel}: {error}") from exc
            except (SlackClientError, OSError) as exc:  # URLError, timeouts, connection refused
                raise NotifierError(f"notifier {self.name!r}: cannot reach Slack at {self.client.base_url}: "
                                    f"{type(exc).__name__}: {exc}") from exc
