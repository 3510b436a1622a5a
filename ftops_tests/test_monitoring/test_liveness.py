"""job_preempted and heartbeat_lost: the registry against each job's last signs of life, at an
injected evaluation time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.alerts import update_alerts
from ftops.monitoring.health import run_health
from ftops.monitoring.liveness import (
    liveness_anomalies,
    signs_of_life_from_run_health,
    signs_of_life_from_samples,
)

from .helpers import T0, series

NOW = T0 + pd.Timedelta("3h")


def _jobs(*rows: dict) -> pd.DataFrame:
    base = {"status": "running", "exit_reason": None, "started_at": T0, "ended_at": pd.NaT}
    return pd.DataFrame([{**base, **r} for r in rows])


def _fleet() -> pd.DataFrame:
    alive = series("heartbeat", np.ones(180), job="alive", steps=[None] * 180)
    # heartbeats stop after 60 min; the trainer's steps stopped earlier
    hung = pd.concat([series("heartbeat", np.ones(60), job="hung", steps=[None] * 60),
                      series("training_loss", np.linspace(2, 1, 40), job="hung")], ignore_index=True)
    # no heartbeat metric at all, but steps advance until the end
    stepping = series("training_loss", np.linspace(2, 1, 180), job="stepping")
    return pd.concat([alive, hung, stepping], ignore_index=True)


def test_heartbeat_lost_only_for_a_running_job_gone_silent():
    samples = _fleet()
    jobs = _jobs({"job_id": "alive"}, {"job_id": "hung"}, {"job_id": "stepping"},
                 {"job_id": "done", "status": "succeeded"}, {"job_id": "queued", "status": "pending",
                                                              "started_at": pd.NaT})
    for signs in (signs_of_life_from_samples(samples), signs_of_life_from_run_health(run_health(samples))):
        an = liveness_anomalies(jobs, signs, NOW)
        assert list(an["job_id"]) == ["hung"] and list(an["rule"]) == ["heartbeat_lost"], an["message"].tolist()
        row = an.iloc[0]
        assert row["severity"] == "critical" and row["ongoing"]
        # last heartbeat 08:59 + 15 min timeout
        assert row["first_ts"] == T0 + pd.Timedelta("59min") + pd.Timedelta("15min")
        assert "while the registry says running" in row["message"]


def test_heartbeat_judged_at_the_injected_time_and_never_past_the_newest_data():
    samples = _fleet()
    jobs = _jobs({"job_id": "hung"}, {"job_id": "alive"})
    signs = signs_of_life_from_samples(samples)
    # an hour after the hung job's last heartbeat, not yet
    assert liveness_anomalies(jobs, signs, T0 + pd.Timedelta("70min")).empty
    # the inbox lags (nothing newer than 10:59 from any job): a day later is judged at 10:59 as well
    late = liveness_anomalies(jobs, signs, NOW + pd.Timedelta("1D"))
    assert list(late["job_id"]) == ["hung"]
    assert late["last_ts"].iloc[0] == T0 + pd.Timedelta("179min")


def test_preempted_by_status_or_exit_reason_is_one_alert_that_stays_one():
    ended = T0 + pd.Timedelta("2h")
    jobs = _jobs({"job_id": "spot-a", "status": "preempted", "exit_reason": "preempted", "ended_at": ended},
                 {"job_id": "spot-b", "status": "failed", "exit_reason": "preempted", "ended_at": ended},
                 {"job_id": "oom", "status": "failed", "exit_reason": "oom", "ended_at": ended})
    an = liveness_anomalies(jobs, signs_of_life_from_samples(_fleet()), NOW)
    assert sorted(an["job_id"]) == ["spot-a", "spot-b"] and set(an["rule"]) == {"job_preempted"}
    assert (an["first_ts"] == ended).all() and (an["severity"] == "warning").all()
    alerts = update_alerts(None, an, NOW, pd.Timedelta("30min"))
    again = update_alerts(alerts, liveness_anomalies(jobs, None, NOW + pd.Timedelta("1h")),
                          NOW + pd.Timedelta("1h"), pd.Timedelta("30min"))
    assert list(again["alert_id"]) == list(alerts["alert_id"])
