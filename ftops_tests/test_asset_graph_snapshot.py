"""Snapshot of the code location's names: every asset (with its group), asset check, job, sensor and schedule.

Renaming any of them breaks saved runs, schedules, alert routes and people's bookmarks in the Dagster
UI, so a rename must be a visible, reviewed change. The expected names are in
`asset_graph_snapshot.txt` beside this file. After an intended change, rewrite it with

    FTOPS_UPDATE_SNAPSHOT=1 python -m pytest ftops_tests/test_asset_graph_snapshot.py

and commit the file with the change (its diff is the review). CI refuses the update variable, so a
snapshot can only change through a commit.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from ftops.definitions import Settings, build_definitions

SNAPSHOT = Path(__file__).with_name("asset_graph_snapshot.txt")
UPDATE_VARIABLE = "FTOPS_UPDATE_SNAPSHOT"
HEADER = f"# Names in the ftops code location; regenerate with {UPDATE_VARIABLE}=1 (see test_asset_graph_snapshot.py)\n"


def graph_names(tmp_path: Path) -> list[str]:
    defs = build_definitions(Settings(str(tmp_path / "inbox"), str(tmp_path / "wh"), None))
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    lines = [f"asset {key.to_user_string()} group={graph.get(key).group_name}" for key in graph.get_all_asset_keys()]
    lines += [f"check {c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys]
    # __ASSET_JOB is Dagster's implicit job, not one of ours
    lines += [f"job {job.name}" for job in repo.get_all_jobs() if not job.name.startswith("__")]
    lines += [f"sensor {sensor.name}" for sensor in repo.sensor_defs]
    lines += [f"schedule {schedule.name}" for schedule in repo.schedule_defs]
    return sorted(lines)


def test_names_match_the_snapshot(tmp_path: Path) -> None:
    actual = graph_names(tmp_path)
    if os.environ.get(UPDATE_VARIABLE) == "1":
        if os.environ.get("CI"):
            pytest.fail(f"{UPDATE_VARIABLE}=1 is for a developer's checkout; CI must compare, not rewrite")
        SNAPSHOT.write_text(HEADER + "".join(f"{line}\n" for line in actual))
    expected = [line for line in SNAPSHOT.read_text().splitlines() if line and not line.startswith("#")]
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(expected, actual, "expected (snapshot file)", "actual (definitions)",
                                              lineterm=""))
        pytest.fail(
            f"The code location's names differ from {SNAPSHOT.name}:\n{diff}\n\n"
            f"If the change is intended, run: {UPDATE_VARIABLE}=1 python -m pytest ftops_tests/{Path(__file__).name} "
            "and commit the snapshot file with it.",
            pytrace=False,
        )


def test_snapshot_covers_every_kind_of_name(tmp_path: Path) -> None:
    # an empty or truncated snapshot would compare equal to a broken graph_names
    kinds = {line.split(" ", 1)[0] for line in graph_names(tmp_path)}
    assert kinds == {"asset", "check", "job", "sensor", "schedule"}
