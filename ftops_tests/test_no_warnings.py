"""A newcomer sees no warnings from our own code: building the code location, and alert messages."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pandas as pd

from ftops.actions.notifiers import AlertMessage
from ftops.definitions import Settings, build_definitions


def test_building_the_definitions_warns_nothing(tmp_path):
    # Dagster builds the repository lazily: resolving it is what `dagster dev` and the demo do
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        defs = build_definitions(Settings(str(tmp_path / "inbox"), str(tmp_path / "wh"), None))
        repo = defs.get_repository_def()
        repo.get_sensor_def("budget_sensor")
        defs.resolve_asset_graph()


def test_importing_and_building_in_a_fresh_interpreter_warns_nothing(tmp_path):
    # import-time warnings are raised once per process, so only a fresh interpreter sees them
    code = (
        "import sys; from ftops.definitions import Settings, build_definitions; "
        "build_definitions(Settings(sys.argv[1], sys.argv[2], None)).get_repository_def(); "
        "import ftops.cli, ftops.agent, ftops.check_run"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", code, str(tmp_path / "i"), str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_alert_times_with_nanoseconds_convert_without_a_warning():
    row = {"alert_id": "a", "job_id": "j", "rule": "loss_spike", "category": "training", "severity": "warning",
           "state": "firing", "message": "m", "value": 1.0, "threshold": 2.0,
           "started_at": pd.Timestamp("2026-11-20T10:00:00.123456789Z"),
           "last_seen_at": pd.Timestamp("2026-11-20T10:05:00.000000001Z"), "resolved_at": None}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        message = AlertMessage.from_row(row)
    assert message.started_at.isoformat() == "2026-11-20T10:00:00.123456+00:00"
