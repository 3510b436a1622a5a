"""PostgreSQL restarts while the sensors tick: a tick that cannot reach the instance fails with a clear
error, the next one recovers, and over the whole sequence every run request is made exactly once.

The ticks go through Dagster's own sensor daemon code (`execute_sensor_iteration`) on an in-process code
location, so run-key de-duplication, tick records and cursors live in PostgreSQL exactly as they do
under `dagster dev` or the daemon; runs are only queued (QueuedRunCoordinator), never launched.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import traceback
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration

import ftops.staging
from ftops.defs.resources import InboxResource
from ftops_tests.conftest import REPO_ROOT
from ftops_tests.services import scratch_postgres
from ftops_tests.test_defs.inbox_builder import write_bill, write_jobs, write_metrics

pytestmark = pytest.mark.integration

QUEUED = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
T0 = datetime.datetime(2026, 11, 21, 3, 0, tzinfo=datetime.timezone.utc)

# What lands in the inbox before each tick (the last ticks find nothing new).
WRITERS = [
    lambda inbox: (write_jobs(inbox), write_metrics(inbox, "ft-001")),
    lambda inbox: write_bill(inbox),
    lambda inbox: write_metrics(inbox, "ft-002", rows=120),
    lambda inbox: write_metrics(inbox, "ft-003", rows=90),
    lambda inbox: None,
    lambda inbox: None,
]
# Ticks 2 and 3 fail below; undisturbed, those ticks simply do not happen, so tick 4 batches the
# files of arrivals 2 and 3 together in both sequences and the run keys can be compared one to one.
FAILING_TICKS = (2, 3)


class Arrivals:
    """Each arrival written once, then copied with its mtime into each inbox: a file's identity
    includes its mtime, so both sequences must see the very same files."""

    def __init__(self, folder: Path) -> None:
        self.folders = []
        for n, write in enumerate(WRITERS):
            self.folders.append(folder / str(n))
            self.folders[-1].mkdir(parents=True)
            write(self.folders[-1])

    def land(self, n: int, inbox: Path) -> None:
        shutil.copytree(self.folders[n], inbox, dirs_exist_ok=True, copy_function=shutil.copy2)


def _location(tmp_path: Path, inbox: Path, warehouse: Path) -> InProcessWorkspaceLoadTarget:
    tmp_path.mkdir(parents=True, exist_ok=True)
    module = tmp_path / "location.py"
    module.write_text("from ftops.definitions import Settings, build_definitions\n"
                      f"defs = build_definitions(Settings({str(inbox)!r}, {str(warehouse)!r}, None))\n")
    origin = LoadableTargetOrigin(python_file=str(module), attribute="defs", working_directory=str(REPO_ROOT))
    return InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin, location_name="ftops"))


def _tick(context, n: int) -> None:
    with freeze_time(T0 + datetime.timedelta(minutes=5 * n)):  # every tick is past the sensors' interval
        list(execute_sensor_iteration(context, logging.getLogger("ftops.test.sensors"), None, None))


def _requested(instance: dg.DagsterInstance) -> Counter:
    return Counter(r.tags["dagster/run_key"] for r in instance.get_runs()
                   if r.tags.get("dagster/sensor_name") == "inbox_sensor")


def _inbox_state(instance: dg.DagsterInstance):
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    return next(s for s in states if s.origin.instigator_name == "inbox_sensor")


def _newest_staged(warehouse: Path) -> str:
    staging = InboxResource(inbox_path="-", warehouse_path=str(warehouse)).staging()
    return max(m.staged_at for m in staging.manifests())


def _undisturbed(tmp_path: Path, arrivals: Arrivals) -> dict[int, Counter]:
    """The run keys requested after each tick of the same sequence on SQLite, without faults."""
    inbox, warehouse = tmp_path / "inbox", tmp_path / "warehouse"
    after = {}
    with dg.instance_for_test(overrides=QUEUED) as instance, \
            create_test_daemon_workspace_context(_location(tmp_path, inbox, warehouse), instance) as context:
        for n in range(len(WRITERS)):
            arrivals.land(n, inbox)
            if n not in FAILING_TICKS:
                _tick(context, n)
                after[n] = _requested(instance)
    return after


def test_ticks_fail_clearly_while_postgres_is_down_and_lose_or_double_no_run_request(tmp_path, monkeypatch, caplog):
    arrivals = Arrivals(tmp_path / "arrivals")
    expected = _undisturbed(tmp_path / "undisturbed", arrivals)
    assert len(expected[5]) >= 5 and set(expected[5].values()) == {1}  # jobs, metrics x3, billing, rejected
    with scratch_postgres() as pg:
        for name, value in pg.env.items():
            monkeypatch.setenv(name, value)
        config = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.postgres.yaml").read_text()) | QUEUED
        inbox, warehouse = tmp_path / "pg" / "inbox", tmp_path / "pg" / "warehouse"
        with dg.instance_for_test(overrides=config) as instance, \
                create_test_daemon_workspace_context(_location(tmp_path / "pg", inbox, warehouse),
                                                     instance) as context:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            arrivals.land(0, inbox)
            _tick(context, 0)
            assert _requested(instance) == expected[0]

            pg.restart()  # between ticks: the next one just reconnects
            arrivals.land(1, inbox)
            _tick(context, 1)
            assert _requested(instance) == expected[1]

            # down for a whole tick: it fails, naming the database it could not reach
            arrivals.land(2, inbox)
            pg.stop()
            try:
                with pytest.raises(Exception) as down:
                    _tick(context, 2)
            finally:
                pg.start()
            # dagster-postgres retries, then gives up; the chained cause names the server and the refusal
            chain = "".join(traceback.format_exception(down.value))
            assert "too many retries for db connection" in chain.lower(), chain
            assert f'"{pg.host}", port {pg.port} failed: Connection refused' in chain, chain
            assert _requested(instance) == expected[1]

            # down in the middle of a tick: the sensor has evaluated, the daemon cannot store its result
            arrivals.land(3, inbox)
            stage_inbox = ftops.staging.Staging.stage_inbox

            def stage_then_lose_the_database(self, *args, **kwargs):
                staged = stage_inbox(self, *args, **kwargs)
                pg.stop()
                return staged

            monkeypatch.setattr(ftops.staging.Staging, "stage_inbox", stage_then_lose_the_database)
            caplog.clear()
            raised = None
            try:
                _tick(context, 3)
            except Exception as exc:  # where the daemon's next query falls decides: raised, or caught and logged
                raised = exc
            finally:
                monkeypatch.setattr(ftops.staging.Staging, "stage_inbox", stage_inbox)
                pg.start()
            if raised is None:
                caught = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
                assert caught, [r.getMessage() for r in caplog.records]
                chain = "".join(traceback.format_exception(*caught[0].exc_info))
            else:
                chain = "".join(traceback.format_exception(raised))
            assert f'"{pg.host}", port {pg.port} failed: Connection refused' in chain, chain

            for n in (4, 5):  # recovery, then a tick with nothing new
                arrivals.land(n, inbox)
                _tick(context, n)
                assert _requested(instance) == expected[n]  # the same run keys, each exactly once
            state = _inbox_state(instance)
            assert state.instigator_data.cursor == _newest_staged(warehouse)
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
            assert ticks[0].status == TickStatus.SKIPPED  # the last tick found nothing new
