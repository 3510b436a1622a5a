from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring import detect_anomalies, update_alerts
from ftops.schemas import ALERTS

from .helpers import T0, series

RESOLVE = pd.Timedelta("5min")


def _grad(n_before: int, spike_at: int | None, n: int = 100, seed: int = 1) -> pd.DataFrame:
    g = 2.0 * (1 + 0.05 * np.random.default_rng(seed).standard_normal(n))
    if spike_at is not None:
        g[spike_at] = 80.0
    return series("grad_norm", g[:n_before])


def test_fire_rerun_resolve_fire_again():
    live = _grad(62, spike_at=60)  # the explosion is at the job's latest-but-one sample
    now = live["ts"].iloc[-1]
    a1 = update_alerts(None, detect_anomalies(live), now, RESOLVE)
    assert list(a1["state"]) == ["firing"] and list(a1["severity"]) == ["critical"]
    assert list(a1.columns) == ALERTS.column_names

    # same data again (re-run of the partition): the same alert, not a second one
    a2 = update_alerts(a1, detect_anomalies(live), now, RESOLVE)
    assert list(a2["alert_id"]) == list(a1["alert_id"]) and list(a2["state"]) == ["firing"]

    # the job moves on healthily; after resolve_after the alert resolves
    more = _grad(100, spike_at=60)
    later = more["ts"].iloc[-1]
    a3 = update_alerts(a2, detect_anomalies(more), later, RESOLVE)
    assert list(a3["alert_id"]) == list(a1["alert_id"])
    assert list(a3["state"]) == ["resolved"] and a3["resolved_at"].iloc[0] == later

    # re-running the resolved evaluation changes nothing, resolved_at included
    a4 = update_alerts(a3, detect_anomalies(more), later + pd.Timedelta("1h"), RESOLVE)
    pd.testing.assert_frame_equal(a4, a3)

    # a new explosion after resolution is a new alert
    g = more.copy()
    g.loc[95, "value"] = 90.0
    a5 = update_alerts(a4, detect_anomalies(g), g["ts"].iloc[-1], RESOLVE)
    assert len(a5) == 2 and a5["alert_id"].nunique() == 2
    new = a5[a5["alert_id"] != a1["alert_id"].iloc[0]].iloc[0]
    assert new["state"] == "firing"


def test_not_seen_in_latest_evaluation_resolves_and_other_jobs_are_left_alone():
    v = np.full(20, 99.5)
    s = series("gpu_utilization_pct", v, every="1min", device="0", steps=[pd.NA] * 20)
    a1 = update_alerts(None, detect_anomalies(s), s["ts"].iloc[-1], RESOLVE)
    assert list(a1["state"]) == ["firing"]
    empty = detect_anomalies(s.iloc[:0])
    kept = update_alerts(a1, empty, s["ts"].iloc[-1] + pd.Timedelta("1h"), RESOLVE, evaluated_jobs=["other"])
    assert list(kept["state"]) == ["firing"]
    gone = update_alerts(a1, empty, s["ts"].iloc[-1] + pd.Timedelta("1h"), RESOLVE)
    assert list(gone["state"]) == ["resolved"]
    # within the hysteresis the alert stays firing
    soon = update_alerts(a1, empty, s["ts"].iloc[-1] + pd.Timedelta("1min"), RESOLVE)
    assert list(soon["state"]) == ["firing"]


def test_next_partition_continues_the_same_alert():
    s = series("cpu_utilization_pct", np.full(60, 97.0), every="1min")
    # each partition's evaluation reads a look-back longer than the rule's 5 min window
    first, second = s.iloc[:30], s.iloc[20:]
    a1 = update_alerts(None, detect_anomalies(first), first["ts"].iloc[-1], RESOLVE)
    a2 = update_alerts(a1, detect_anomalies(second), second["ts"].iloc[-1], RESOLVE)
    assert len(a2) == 1 and a2["alert_id"].iloc[0] == a1["alert_id"].iloc[0]
    assert a2["last_seen_at"].iloc[0] == second["ts"].iloc[-1]
    assert a2["started_at"].iloc[0] == a1["started_at"].iloc[0]


def test_escalation_keeps_the_id():
    warn = series("host_memory_used_ratio", np.full(10, 0.9), every="30s")
    a1 = update_alerts(None, detect_anomalies(warn), warn["ts"].iloc[-1], RESOLVE)
    worse = series("host_memory_used_ratio", np.r_[np.full(10, 0.9), np.full(10, 0.97)], every="30s")
    a2 = update_alerts(a1, detect_anomalies(worse), worse["ts"].iloc[-1], RESOLVE)
    assert list(a2["alert_id"]) == list(a1["alert_id"]) and list(a2["severity"]) == ["critical"]


def test_historic_anomalies_arrive_resolved():
    s = series("learning_rate", np.full(10, 5e-3), start=T0 - pd.Timedelta("30D"))
    s = pd.concat([s, series("learning_rate", np.full(5, 1e-4), start=T0 - pd.Timedelta("29D"))])
    a = update_alerts(None, detect_anomalies(s), T0, RESOLVE)
    assert list(a["state"]) == ["resolved"] and a["resolved_at"].iloc[0] == T0
