"""NotifiersResource: configuration -> notifiers, secrets from the environment, clear config errors."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import get_args

import dagster as dg
import pytest

from ftops.actions.notifiers import LogNotifier
from ftops.actions.notifiers_http import SIGNATURE_HEADER, AlertmanagerNotifier, WebhookNotifier
from ftops.actions.notifiers_slack import SlackNotifier
from ftops.defs.notifiers import NotifiersResource
from ftops.policy import NotifierName
from ftops_tests.services import recording_http_server
from ftops_tests.test_actions.test_notifiers import _alert


def test_default_is_the_log_only() -> None:
    notifiers = NotifiersResource().build()
    assert list(notifiers) == ["log"] and isinstance(notifiers["log"], LogNotifier)


def test_all_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTOPS_TEST_WEBHOOK_SECRET", "from-env")
    monkeypatch.setenv("FTOPS_TEST_SLACK_TOKEN", "xoxb-env")
    with recording_http_server() as server:
        resource = NotifiersResource(
            webhook_url=f"{server.url}/hook", webhook_secret_env="FTOPS_TEST_WEBHOOK_SECRET",
            slack_token=dg.EnvVar("FTOPS_TEST_SLACK_TOKEN"), slack_channel="#ft", slack_base_url=f"{server.url}/api",
            alertmanager_url="http://127.0.0.1:9093", timeout_seconds=2)

        @dg.asset
        def sent(notifiers: NotifiersResource) -> list[str]:
            built = notifiers.build()
            built["webhook"].send([_alert()])
            built["slack"].send([_alert()])
            return sorted(built)

        result = dg.materialize([sent], resources={"notifiers": resource})
        # every name a route in ftops.yaml may use is built, and nothing else
        assert result.output_for_node("sent") == sorted(get_args(NotifierName))
        hook, slack = server.requests
    expected = "sha256=" + hmac.new(b"from-env", hook.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hook.headers[SIGNATURE_HEADER], expected)
    assert slack.headers["Authorization"] == "Bearer xoxb-env" and json.loads(slack.body)["channel"] == "#ft"
    built = resource.build()
    assert isinstance(built["webhook"], WebhookNotifier) and isinstance(built["slack"], SlackNotifier)
    assert isinstance(built["alertmanager"], AlertmanagerNotifier) and built["alertmanager"].timeout_seconds == 2


@pytest.mark.parametrize(("config", "problem"), [
    ({"slack_token": "x"}, "slack_channel is not"),
    ({"slack_channel": "#a"}, "slack_token is not"),
    ({"alertmanager_url": "am:9093"}, "alertmanager_url must start with http"),
    ({"webhook_url": "http://h", "webhook_secret_env": "FTOPS_TEST_UNSET_SECRET"}, "FTOPS_TEST_UNSET_SECRET"),
    ({"timeout_seconds": 0}, "timeout_seconds must be > 0"),
])
def test_bad_config_says_what_is_wrong(config: dict, problem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FTOPS_TEST_UNSET_SECRET", raising=False)
    with pytest.raises(dg.DagsterInvalidConfigError, match=problem):
        NotifiersResource(**config).build()
