"""The run queue of dagster.yaml and deploy/, and the Kubernetes values in deploy/helm/.

Dagster loads the instance files and validates their run coordinator against its own schema; the
Helm values are checked structurally (`helm` is not available to the tests), with the run queue
the chart renders from them validated by Dagster too. Each test asserts the values the comments and
deploy/helm/README.md document, so changing a number without its reasoning fails here.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.run_coordinator.queued_run_coordinator import RunQueueConfig
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import BACKFILL_ID_TAG, SENSOR_NAME_TAG
from dagster._serdes import ConfigurableClassData
from dagster._utils.tags import TagConcurrencyLimitsCounter

from ftops_tests.conftest import REPO_ROOT

LOCAL = REPO_ROOT / "dagster.yaml"
POSTGRES = REPO_ROOT / "deploy" / "dagster.postgres.yaml"
HELM = REPO_ROOT / "deploy" / "helm" / "values.yaml"
HELM_README = REPO_ROOT / "deploy" / "helm" / "README.md"
GiB = 2**30


def _queue_of(instance_ref: InstanceRef) -> RunQueueConfig:
    coordinator = instance_ref.run_coordinator  # rehydrating validates its config against the class's schema
    assert isinstance(coordinator, QueuedRunCoordinator), type(coordinator)
    return coordinator.get_run_queue_config()


def _backfill_limit(tag_limits) -> int:
    """The limit on all backfill runs together: one entry for the tag, with no value (any backfill)."""
    entries = [t for t in tag_limits or [] if t["key"] == BACKFILL_ID_TAG]
    assert len(entries) == 1, tag_limits
    assert entries[0].get("value") is None, "a value would limit one backfill, not all backfills together"
    return entries[0]["limit"]


def _first_launched(most: int, tag_limits, queued: list[dict[str, str]]) -> list[dict[str, str]]:
    """The runs an idle queue launches first: in queue order, skipping those a tag limit holds back
    (as the daemon does; a held-back run does not block the runs queued after it), up to `most`."""
    counter = TagConcurrencyLimitsCounter(list(tag_limits), [])
    launched = []
    for n, tags in enumerate(queued):
        run = DagsterRun(job_name="metric_ingest", run_id=f"run-{n}", tags=tags)
        if len(launched) < most and not counter.is_blocked(run):
            counter.update_counters_with_launched_item(run)
            launched.append(tags)
    return launched


# 200 shard-day runs of two backfills queued first, then the runs of two sensors
BACKFILL_RUNS = [{BACKFILL_ID_TAG: f"bf{n % 2}"} for n in range(200)]
SENSOR_RUNS = [{SENSOR_NAME_TAG: "inbox_sensor"}, {SENSOR_NAME_TAG: "budget_sensor"}]


def _bytes(quantity: str) -> float:
    """A Kubernetes quantity ("4Gi", "512Mi", "1", "500m") as a number (bytes for memory)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": GiB, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(quantity))
    assert match and match[2] in ("", *units), quantity
    return float(match[1]) * units.get(match[2], 1)


# --- the instance files ----------------------------------------------------------------------------


def test_local_instance_queues_two_runs_and_keeps_one_from_backfills(tmp_path, monkeypatch):
    # the reference `ftops demo` (ftops.defs.runner.open_instance) and `dagster dev` build in a folder
    # holding dagster.yaml, without creating its SQLite storage (seconds; test_e2e_demo does that)
    monkeypatch.chdir(tmp_path)  # the file's storage paths are relative to the folder
    shutil.copy(LOCAL, tmp_path / "dagster.yaml")
    queue = _queue_of(InstanceRef.from_dir(str(tmp_path / ".ftops" / "dagster_home"), config_dir=str(tmp_path)))
    assert queue.max_concurrent_runs == 2  # min(2 cores, (10 GiB - 2 GiB) / 4 GiB per run)
    assert _backfill_limit(queue.tag_concurrency_limits) == 1  # one slot always left to sensor runs
    # behind 200 backfill runs, a sensor run still starts at once; a backfill alone gets 1 slot
    most, limits = queue.max_concurrent_runs, queue.tag_concurrency_limits
    assert _first_launched(most, limits, BACKFILL_RUNS + SENSOR_RUNS) == [BACKFILL_RUNS[0], SENSOR_RUNS[0]]
    assert len(_first_launched(most, limits, BACKFILL_RUNS)) == 1
    # the per-run budget behind the 2 is the run pods' memory limit on Kubernetes
    comments = re.sub(r"\n\s*#\s*", " ", LOCAL.read_text())
    assert "budgeted 4 GiB, the memory limit run pods get in deploy/helm/values.yaml" in comments
    assert _helm_run_resources()["limits"]["memory"] == "4Gi"


def test_postgres_instance_config_validates_without_a_server(tmp_path):
    # InstanceRef validates the whole file against Dagster's instance schema and keeps the storage
    # as class data: no connection is made (FTOPS_PG_* need not even be set)
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(POSTGRES.parent), config_filename=POSTGRES.name)
    assert (ref.storage_data.module_name, ref.storage_data.class_name) == ("dagster_postgres", "DagsterPostgresStorage")
    storage = yaml.safe_load(ref.storage_data.config_yaml)["postgres_db"]
    assert storage["password"] == {"env": "FTOPS_PG_PASSWORD"} and storage["scheme"] == "postgresql+psycopg2"
    queue = _queue_of(ref)
    local = _queue_of(InstanceRef.from_dir(str(tmp_path), config_dir=str(LOCAL.parent)))
    # "as in the repository's dagster.yaml": the same queue on the same kind of machine
    assert (queue.max_concurrent_runs, _backfill_limit(queue.tag_concurrency_limits)) == (2, 1)
    assert queue.tag_concurrency_limits == local.tag_concurrency_limits


def test_a_malformed_run_queue_is_refused(tmp_path):
    # the checks above can fail: a tag limit without its `limit` does not pass Dagster's schema
    config = yaml.safe_load(LOCAL.read_text())
    config["run_coordinator"]["config"]["tag_concurrency_limits"] = [{"key": BACKFILL_ID_TAG}]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    ref = InstanceRef.from_dir(str(tmp_path))
    with pytest.raises(DagsterInvalidConfigError, match="limit"):
        ref.run_coordinator


# --- the Helm values -------------------------------------------------------------------------------


def _helm() -> dict:
    return yaml.safe_load(HELM.read_text())


def _helm_run_resources() -> dict:
    launcher = _helm()["runLauncher"]["config"]["k8sRunLauncher"]
    return launcher["runK8sConfig"]["containerConfig"]["resources"]


def _helm_queue() -> dict:
    coordinator = _helm()["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    return coordinator["config"]["queuedRunCoordinator"]


def test_helm_runs_each_run_as_a_job_of_the_ftops_code_location():
    values = _helm()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    user_code = values["dagster-user-deployments"]
    assert user_code["enabled"] is True and user_code["enableSubchart"] is True
    [deployment] = user_code["deployments"]
    tool = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", tool["module_name"]] == ["-m", "ftops.definitions"]
    assert importlib.util.find_spec(tool["module_name"]) is not None
    assert deployment["name"] == tool["code_location_name"]  # the location's name in the UI

    env = deployment["env"]
    for name in ("FTOPS_WAREHOUSE", "FTOPS_INBOX"):
        url = urlparse(env[name])
        assert url.scheme == "s3" and url.netloc and url.path.strip("/"), (name, env[name])
    # FTOPS_CONFIG is a file of a ConfigMap mounted read-only into the code server (and so into runs)
    config = Path(env["FTOPS_CONFIG"])
    [mount] = [m for m in deployment["volumeMounts"] if config.parent == Path(m["mountPath"])]
    [volume] = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    assert mount.get("readOnly") is True and volume["configMap"]["name"] and config.name == "ftops.yaml"

    # runs get the code server's env, secret and volume; so the code server must not carry
    # `resources`, which would override the run pods' sizing (README.md)
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert "resources" not in deployment
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    secrets = {s["name"] for s in deployment["envSecrets"]}
    assert secrets and secrets <= {s["name"] for s in launcher["envSecrets"]}

    postgres = values["postgresql"]
    assert postgres["enabled"] is False and postgres["postgresqlHost"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] and not postgres["postgresqlPassword"]
    documented = yaml.safe_load(POSTGRES.read_text())["storage"]["postgres"]["postgres_db"]["scheme"]
    assert postgres["postgresqlScheme"] == documented


def test_helm_run_pods_are_sized_for_one_shard_day():
    resources = _helm_run_resources()
    assert _bytes(resources["limits"]["memory"]) == 4 * GiB
    assert _bytes(resources["requests"]["memory"]) == 2 * GiB
    assert _bytes(resources["requests"]["cpu"]) == 1
    assert "cpu" not in resources["limits"]  # throttling protects no memory (the comment says why)


def test_helm_run_queue_fills_the_run_pool_and_keeps_slots_from_backfills():
    queue = _helm_queue()
    # the chart renders a missing maxConcurrentRuns as -1 (no limit): it must be a real number
    most = queue["maxConcurrentRuns"]
    backfills = _backfill_limit(queue["tagConcurrencyLimits"])
    assert isinstance(most, int) and most >= 2
    assert 1 <= backfills < most  # the rule of dagster.yaml: backfills get all slots but the reserved ones
    assert most - backfills == 2  # ingest and budget_enforcement both start at once
    launched = _first_launched(most, queue["tagConcurrencyLimits"], BACKFILL_RUNS + SENSOR_RUNS)
    assert launched == BACKFILL_RUNS[:backfills] + SENSOR_RUNS

    # what the chart writes into dagster.yaml (templates/helpers/instance/_run-coordinator.tpl),
    # rehydrated as Dagster does: it validates against QueuedRunCoordinator's schema
    rendered = {"max_concurrent_runs": most, "tag_concurrency_limits": queue["tagConcurrencyLimits"]}
    data = ConfigurableClassData("dagster._core.run_coordinator", "QueuedRunCoordinator", yaml.safe_dump(rendered))
    coordinator = data.rehydrate(as_type=QueuedRunCoordinator)
    assert coordinator.get_run_queue_config().max_concurrent_runs == most

    # sized on the memory LIMIT: maxConcurrentRuns x limit = the run pool README.md assumes
    readme = HELM_README.read_text()
    pool_gib = int(re.search(r"assumes a (\d+) GiB run pool", readme)[1])
    assert most * _bytes(_helm_run_resources()["limits"]["memory"]) == pool_gib * GiB
    assert f"at most {most} runs at once, of which backfill runs may hold {backfills}" in readme
