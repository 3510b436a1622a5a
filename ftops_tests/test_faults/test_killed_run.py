"""A materialisation killed with SIGKILL in the middle of a write leaves every table readable, at its
previous version or its new complete one, and a re-run stores exactly what a clean run stores.

The child process pauses inside the chosen table's write, after half of its Parquet bytes reached the
temporary file: a kill there is the worst case for atomicity (a torn file), and waiting for that point,
rather than for a wall-clock delay, makes the kill land in the same place on a loaded machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ftops_tests.conftest import REPO_ROOT
from ftops_tests.test_faults.fleet import END, demo_fleet, table_files, warehouse_hashes

CHILD = """
import io, os, sys, time
from pathlib import Path
import dagster as dg
import pandas as pd
from ftops.defs.runner import materialize_graph
from ftops.definitions import Settings, build_definitions

inbox, policy, warehouse, start, end = sys.argv[1:6]
pause_in = os.environ.get("PAUSE_IN_WRITE")  # the temporary file's name, up to its random part
if pause_in:
    real_to_parquet = pd.DataFrame.to_parquet
    def to_parquet(self, path, *args, **kwargs):
        name = str(getattr(path, "name", path))
        if name.endswith(".tmp") and name.startswith(pause_in):
            buffer = io.BytesIO()
            real_to_parquet(self, buffer, *args, **kwargs)
            data = buffer.getvalue()
            path.write(data[: len(data) // 2])
            path.flush()
            Path(os.environ["PAUSED_MARKER"]).write_text(name)
            time.sleep(600)
        return real_to_parquet(self, path, *args, **kwargs)
    pd.DataFrame.to_parquet = to_parquet
defs = build_definitions(Settings(inbox, warehouse, policy))
with dg.DagsterInstance.get() as instance:
    materialize_graph(defs, instance, start, end, as_of=end, log_level="ERROR")
"""


def _materialise(fleet, warehouse: Path, home: Path, **env) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FTOPS_"))}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(fleet.inbox), str(fleet.policy), str(warehouse), *fleet.span()],
        cwd=REPO_ROOT, env=child_env | {"DAGSTER_HOME": str(home)} | env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _run_to_end(fleet, warehouse: Path, home: Path) -> None:
    proc = _materialise(fleet, warehouse, home)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]


def _kill_inside_write(fleet, warehouse: Path, home: Path, table: str, tmp_path: Path) -> str:
    marker = tmp_path / "paused"
    target = warehouse / table
    proc = _materialise(fleet, warehouse, home, PAUSE_IN_WRITE=str(target.with_name(f".{target.name}.")),
                        PAUSED_MARKER=str(marker))
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before writing {table}: {proc.stdout.read()[-4000:]}")
            assert time.monotonic() < deadline, f"the run never reached the write of {table}"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return marker.read_text()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Yesterday's export of the fleet materialised; then today's export (one more day) overwrites the
    same files, and a clean run over a copy of yesterday's warehouse gives today's expected tables (a
    copy, since alerts carry their history forward)."""
    folder = tmp_path_factory.mktemp("history")
    yesterday = demo_fleet(folder / "fleet", days=1, end=END - pd.Timedelta(days=1))
    _run_to_end(yesterday, folder / "warehouse", folder / "dagster_home")
    shutil.copytree(folder / "warehouse", folder / "clean")
    today = demo_fleet(folder / "fleet", days=1)
    _run_to_end(today, folder / "clean", folder / "clean_home")
    return today, folder, warehouse_hashes(folder / "warehouse"), warehouse_hashes(folder / "clean")


# one shard-day of the samples (every shard of the 16-job fleet holds 4 jobs) and a job-level table
@pytest.mark.parametrize("table", ["metric_samples/2026-03-01/0-of-4.parquet", "alerts.parquet"])
def test_a_run_killed_inside_a_write_leaves_tables_whole_and_a_rerun_matches_a_clean_run(tmp_path, history, table):
    today, folder, previous, expected = history
    warehouse, home = tmp_path / "warehouse", tmp_path / "dagster_home"
    shutil.copytree(folder / "warehouse", warehouse)
    shutil.copytree(folder / "dagster_home", home)
    assert table in previous and expected[table] != previous[table]  # else a torn or mixed table could pass

    torn = _kill_inside_write(today, warehouse, home, table, tmp_path)
    assert Path(torn).exists() and Path(torn).parent == (warehouse / table).parent  # the kill hit mid-write
    for path in table_files(warehouse):
        pd.read_parquet(path)  # every table file is a whole Parquet file
    after_kill = warehouse_hashes(warehouse)
    assert after_kill[table] == previous[table]
    mixed = {k: v for k, v in after_kill.items() if v not in (previous.get(k), expected.get(k))}
    assert mixed == {}, f"tables neither at their previous nor at their new version: {sorted(mixed)}"
    assert set(previous) <= set(after_kill)

    _run_to_end(today, warehouse, home)
    rerun = warehouse_hashes(warehouse)
    differ = sorted(k for k in expected.keys() | rerun.keys() if expected.get(k) != rerun.get(k))
    assert differ == [], f"after the re-run these tables differ from a clean run's: {differ}"
