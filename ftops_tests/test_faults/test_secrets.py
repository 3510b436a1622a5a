"""Secrets used by a run never reach its logs, its run config, its asset metadata or the event log.

The alert path runs with a webhook secret read from the variable NotifiersResource names, a Slack
token through dg.EnvVar and the instance on PostgreSQL with its password from FTOPS_PG_PASSWORD;
notifiers that fail first (their errors are logged and stored) and then succeed. Then every stored
event, the run config and tags, every table and everything printed are searched for the secrets.
"""

from __future__ import annotations

import json
import secrets

import dagster as dg
import pandas as pd
import pytest
import yaml
from dagster._serdes import serialize_value

from ftops.actions.notifiers_http import SIGNATURE_HEADER
from ftops.defs.notifiers import NotifiersResource
from ftops.defs.runner import materialize_graph
from ftops.definitions import build_definitions, settings_from_env
from ftops_tests.conftest import REPO_ROOT
from ftops_tests.services import recording_http_server, scratch_postgres
from ftops_tests.test_faults.fleet import demo_fleet

pytestmark = pytest.mark.integration

ROUTES = "\nroutes:\n" + "".join(
    f"  - severity: {s}\n    notifiers: [log, webhook, slack]\n" for s in ("critical", "warning"))


def _leaks(text: str, secret_values: dict[str, str]) -> list[str]:
    return [name for name, value in secret_values.items() if value in text]


def test_secrets_stay_out_of_logs_run_config_metadata_and_the_event_log(tmp_path, monkeypatch, capfd, caplog):
    fleet = demo_fleet(tmp_path, days=1)
    fleet.policy.write_text(fleet.policy.read_text() + ROUTES)
    webhook_secret = "whsec-" + secrets.token_hex(16)
    slack_token = "xoxb-" + secrets.token_hex(16)
    with scratch_postgres() as pg, recording_http_server() as server:
        secret_values = {"webhook secret": webhook_secret, "Slack token": slack_token,
                         "database password": pg.password}
        env = pg.env | {
            "FTOPS_INBOX": str(fleet.inbox), "FTOPS_WAREHOUSE": str(tmp_path / "warehouse"),
            "FTOPS_CONFIG": str(fleet.policy), "FTOPS_WEBHOOK_URL": f"{server.url}/hook",
            "FTOPS_WEBHOOK_SECRET_ENV": "FTOPS_TEST_WEBHOOK_SECRET", "FTOPS_TEST_WEBHOOK_SECRET": webhook_secret,
            "SLACK_BOT_TOKEN": slack_token, "FTOPS_SLACK_CHANNEL": "#ft-alerts",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        defs = build_definitions(settings_from_env())
        production = defs.resources["notifiers"]
        assert isinstance(production.slack_token, dg.EnvVar)  # the token is wired as the code location wires it
        # the same notifiers, with Slack's API served by the local receiver (no network here)
        notifiers = NotifiersResource(
            webhook_url=production.webhook_url, webhook_secret_env=production.webhook_secret_env,
            slack_token=dg.EnvVar("SLACK_BOT_TOKEN"), slack_channel=production.slack_channel,
            slack_base_url=f"{server.url}/api", timeout_seconds=2, max_retries=0)
        defs = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=defs.jobs,
                              sensors=defs.sensors, schedules=defs.schedules,
                              resources={**defs.resources, "notifiers": notifiers})
        config = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.postgres.yaml").read_text())
        with dg.instance_for_test(overrides=config) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            server.status = 500  # both notifiers fail first: their errors are logged and stored
            results = materialize_graph(defs, instance, *fleet.span(), as_of=fleet.end, log_level="DEBUG")
            server.status = 200
            results.append(defs.resolve_job_def("alerts_update").execute_in_process(
                instance=instance, run_config={"ops": {"alerts": {"config": {"as_of": fleet.end}}}}))

            # the secrets were really used: the webhook was signed and Slack got the token
            hooks = [r for r in server.requests if r.path == "/hook"]
            slack = [r for r in server.requests if r.path.startswith("/api")]
            assert hooks and slack, "no notification reached the receiver"
            assert all(r.headers.get(SIGNATURE_HEADER, "").startswith("sha256=") for r in hooks)
            assert all(r.headers.get("Authorization") == f"Bearer {slack_token}" for r in slack)
            deliveries = pd.read_parquet(tmp_path / "warehouse" / "alert_deliveries.parquet")
            assert set(deliveries["status"]) == {"delivered"} and deliveries["last_error"].isna().all()
            assert (deliveries["attempts"] >= 2).any()  # the failed attempts came first

            found = {}
            for result in results:
                run = instance.get_run_by_id(result.dagster_run.run_id)
                found[f"run config of {run.job_name}"] = json.dumps(run.run_config, default=str)
                found[f"tags of {run.job_name}"] = json.dumps(run.tags)
                found[f"event log of {run.job_name}"] = "\n".join(
                    serialize_value(entry) for entry in instance.all_logs(run.run_id))
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("alert_deliveries")), limit=100).records
            assert records
            found["materialisation records"] = "\n".join(serialize_value(r.event_log_entry) for r in records)
            failed_run = next(r for r in results if r.dagster_run.job_name == "alerts_update")
            errors = [e for e in instance.all_logs(failed_run.dagster_run.run_id)
                      if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
            assert any("500" in serialize_value(e) for e in errors)  # the failures' errors are in the event log
        captured = capfd.readouterr()
        found["stdout and stderr"] = captured.out + captured.err
        found["python log records"] = "\n".join(r.getMessage() for r in caplog.records)
        for path in sorted((tmp_path / "warehouse").rglob("*.parquet")):
            found[str(path.relative_to(tmp_path))] = pd.read_parquet(path).to_csv(index=False)
    leaks = {where: _leaks(text, secret_values) for where, text in found.items()}
    assert {where: names for where, names in leaks.items() if names} == {}
    assert "ERROR" in found["stdout and stderr"] or "WARNING" in found["stdout and stderr"]
