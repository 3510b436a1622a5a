"""Notifiers resource: which alert destinations are configured, built into ftops.actions notifiers.

Secrets stay out of run config: the Slack token comes through `dg.EnvVar`, and the webhook secret
is read here from the environment variable that `webhook_secret_env` names (actions/ never reads
the environment).
"""

import math
import os
from typing import Any

import dagster as dg
from dagster_slack import SlackResource

from ftops.actions.notifiers import LogNotifier, Notifier
from ftops.actions.notifiers_http import AlertmanagerNotifier, WebhookNotifier
from ftops.actions.notifiers_slack import SlackNotifier


class NotifiersResource(dg.ConfigurableResource):
    """Alert destinations: the log always; a webhook, Slack and Alertmanager when configured.

    Routes in `ftops.yaml` name them "log", "webhook", "slack" and "alertmanager".
    """

    webhook_url: str | None = None
    webhook_secret_env: str | None = None  # NAME of the environment variable holding the HMAC secret
    slack_token: str | None = None  # wire it with dg.EnvVar("SLACK_BOT_TOKEN")
    slack_channel: str | None = None
    slack_base_url: str | None = None  # another Slack API root (a proxy, or a test server)
    alertmanager_url: str | None = None
    alertmanager_generator_url: str | None = None  # link back from Alertmanager, e.g. the Dagster UI
    timeout_seconds: float = 5.0
    max_retries: int = 2

    def build(self, logger: Any = None) -> dict[str, Notifier]:
        """The configured notifiers by name; `logger` (e.g. context.log) feeds the log notifier."""
        self._check()
        notifiers: dict[str, Notifier] = {"log": LogNotifier(logger or dg.get_dagster_logger())}
        if self.webhook_url:
            notifiers["webhook"] = WebhookNotifier(self.webhook_url, secret=self._webhook_secret(),
                                                   timeout_seconds=self.timeout_seconds,
                                                   max_retries=self.max_retries)
        if self.slack_token:
            client = SlackResource(token=self.slack_token).get_client()
            if self.slack_base_url:
                # WebClient joins method names onto the base URL, which needs its trailing slash
                client.base_url = self.slack_base_url.rstrip("/") + "/"
            client.timeout = max(1, math.ceil(self.timeout_seconds))
            notifiers["slack"] = SlackNotifier(client, self.slack_channel or "")
        if self.alertmanager_url:
            notifiers["alertmanager"] = AlertmanagerNotifier(self.alertmanager_url,
                                                             timeout_seconds=self.timeout_seconds,
                                                             generator_url=self.alertmanager_generator_url,
                                                             max_retries=self.max_retries)
        return notifiers

    def _check(self) -> None:
        problems = []
        if self.slack_token and not self.slack_channel:
            problems.append("slack_token is set but slack_channel is not (e.g. '#ft-alerts')")
        if self.slack_channel and not self.slack_token:
            problems.append("slack_channel is set but slack_token is not (wire it with dg.EnvVar)")
        if self.webhook_secret_env and not self.webhook_url:
            problems.append("webhook_secret_env is set but webhook_url is not")
        for key in ("webhook_url", "slack_base_url", "alertmanager_url"):
            value = getattr(self, key)
            if value and not value.startswith(("http://", "https://")):
                problems.append(f"{key} must start with http:// or https://, got {value!r}")
        if not self.timeout_seconds > 0:
            problems.append(f"timeout_seconds must be > 0, got {self.timeout_seconds}")
        if self.max_retries < 0:
            problems.append(f"max_retries must be >= 0, got {self.max_retries}")
        if problems:
            raise dg.DagsterInvalidConfigError("NotifiersResource: " + "; ".join(problems), [], None)

    def _webhook_secret(self) -> str | None:
        if not self.webhook_secret_env:
            return None
        secret = os.environ.get(self.webhook_secret_env)
        if not secret:
            # sending unsigned when a signature was asked for would let receivers accept forgeries
            raise dg.DagsterInvalidConfigError(
                f"NotifiersResource: webhook_secret_env names {self.webhook_secret_env!r}, "
                "but that environment variable is not set or empty", [], None)
        return secret
