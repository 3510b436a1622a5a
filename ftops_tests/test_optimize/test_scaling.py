"""Autoscaling advice: idle nodes released or reused, busy or running ones kept, the rest added."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.optimize.scaling import ADVICE_COLUMNS, node_activity, scaling_advice

NOW = pd.Timestamp("2026-11-20T12:00:00Z")
IDLE_MIN = 30.0
FLOOR = 10.0


def _samples(host: str | None, job: str, start: str, minutes: int, util: float | list[float],
             devices: int = 2, extra_metric_minutes: int = 0) -> pd.DataFrame:
    """GPU utilisation every minute per device from `start`, plus a loss sample per minute."""
    ts = pd.date_range(start, periods=minutes, freq="min", tz="UTC")
    values = np.resize(np.asarray(util, dtype="float64"), minutes)
    frames = [pd.DataFrame({"ts": ts, "job_id": job, "metric": "gpu_utilization_pct", "value": values, "step": pd.NA,
                            "device": str(d), "host": host, "source": "agent"}) for d in range(devices)]
    loss_ts = pd.date_range(start, periods=minutes + extra_metric_minutes, freq="min", tz="UTC")
    frames.append(pd.DataFrame({"ts": loss_ts, "job_id": job, "metric": "training_loss", "value": 1.0,
                                "step": np.arange(len(loss_ts)), "device": None, "host": host, "source": "agent"}))
    return pd.concat(frames, ignore_index=True)


def _nodes(*frames: pd.DataFrame) -> pd.DataFrame:
    day_end = pd.Timestamp("2026-11-21", tz="UTC")
    frames = frames or (_samples("n", "j", "2026-11-20T10:00:00Z", 1, 1.0).iloc[:0],)
    return pd.concat([node_activity(f, day_end, IDLE_MIN) for f in frames], ignore_index=True)


def _jobs(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame({
        "job_id": [r[0] for r in rows], "status": [r[1] for r in rows], "instance_type": [r[2] for r in rows],
        "cloud": "aws", "region": "us-east-1", "pricing": "on_demand",
    })


def _pending(*rows: tuple[str, str, int]) -> pd.DataFrame:
    return pd.DataFrame({
        "job_id": [r[0] for r in rows], "instance_type": [r[1] for r in rows], "cloud": "aws",
        "region": "us-east-1", "instances": [r[2] for r in rows], "pricing": "on_demand",
    })


NO_PENDING = _pending()


def _advice(nodes: pd.DataFrame, jobs: pd.DataFrame, pending: pd.DataFrame = NO_PENDING) -> pd.DataFrame:
    out = scaling_advice(nodes, jobs, pending, idle_gpu_utilization_pct=FLOOR, idle_minutes=IDLE_MIN, now=NOW)
    assert list(out.columns) == list(ADVICE_COLUMNS)
    return out


# an hour of data ending a minute before NOW: busy until 11:15, idle (2%) for the last 45 minutes
IDLE_HOST = _samples("node-a", "ft-1", "2026-11-20T10:59:00Z", 60, [90.0] * 15 + [2.0] * 45)


def test_an_idle_node_of_a_finished_job_is_released() -> None:
    advice = _advice(_nodes(IDLE_HOST), _jobs(("ft-1", "succeeded", "p4d.24xlarge")))

    assert advice[["action", "instance_type", "nodes", "hosts", "job_ids"]].values.tolist() == [
        ["release", "p4d.24xlarge", 1, "node-a", "ft-1"]]
    assert "max GPU 2%" in advice["reason"].iloc[0] and "30 min" in advice["reason"].iloc[0]


def test_an_idle_node_under_a_running_job_is_kept() -> None:
    assert _advice(_nodes(IDLE_HOST), _jobs(("ft-1", "running", "p4d.24xlarge"))).empty
    # a job the registry does not know may be running too
    assert _advice(_nodes(IDLE_HOST), _jobs(("other", "succeeded", "p4d.24xlarge"))).empty


def test_a_busy_node_is_kept() -> None:
    # idle but for one sample of 40% in the window: the max decides, not the mean
    util = [2.0] * 50 + [40.0] + [2.0] * 9
    busy = _samples("node-a", "ft-1", "2026-11-20T10:59:00Z", 60, util)
    assert _advice(_nodes(busy), _jobs(("ft-1", "succeeded", "p4d.24xlarge"))).empty


def test_a_node_with_less_data_than_the_window_is_kept() -> None:
    short = _samples("node-a", "ft-1", "2026-11-20T11:40:00Z", 20, 1.0)  # 20 minutes < 30
    assert _advice(_nodes(short), _jobs(("ft-1", "succeeded", "p4d.24xlarge"))).empty


def test_a_node_silent_for_long_is_not_advised() -> None:
    gone = _samples("node-a", "ft-1", "2026-11-20T08:00:00Z", 60, 1.0)  # last sample 3 h before NOW
    assert _advice(_nodes(gone), _jobs(("ft-1", "succeeded", "p4d.24xlarge"))).empty


def test_reuse_beats_release_and_add() -> None:
    second = _samples("node-b", "ft-2", "2026-11-20T10:59:00Z", 60, 0.0)
    jobs = _jobs(("ft-1", "succeeded", "p4d.24xlarge"), ("ft-2", "failed", "p4d.24xlarge"))
    advice = _advice(_nodes(IDLE_HOST, second), jobs, _pending(("new-1", "p4d.24xlarge", 3)))

    assert advice[["action", "nodes", "hosts", "job_ids"]].fillna("-").values.tolist() == [
        ["reuse", 2, "node-a,node-b", "new-1"],
        ["add", 1, "-", "new-1"],
    ]
    assert "reusing 2 idle" in advice["reason"].iloc[1]


def test_reuse_needs_the_same_type_cloud_region_and_pricing() -> None:
    jobs = _jobs(("ft-1", "succeeded", "p4d.24xlarge"))
    spot = _pending(("new-1", "p4d.24xlarge", 1)).assign(pricing="spot")
    advice = _advice(_nodes(IDLE_HOST), jobs, spot)
    assert advice["action"].tolist() == ["release", "add"]
    other_type = _advice(_nodes(IDLE_HOST), jobs, _pending(("new-1", "p5.48xlarge", 1)))
    assert other_type["action"].tolist() == ["release", "add"]


def test_add_counts_are_grouped_by_type_and_pricing() -> None:
    pending = pd.concat([
        _pending(("a", "p5.48xlarge", 2), ("b", "p5.48xlarge", 1), ("c", "g5.xlarge", 4)),
        _pending(("d", "p5.48xlarge", 1)).assign(pricing="spot"),
        _pending(("e", "g5.xlarge", 0)),  # nothing to place
    ], ignore_index=True)
    advice = _advice(_nodes(), _jobs(), pending)

    assert advice[["action", "instance_type", "pricing", "nodes", "job_ids"]].values.tolist() == [
        ["add", "g5.xlarge", "on_demand", 4, "c"],
        ["add", "p5.48xlarge", "on_demand", 3, "a,b"],
        ["add", "p5.48xlarge", "spot", 1, "d"],
    ]
    assert advice.equals(_advice(_nodes(), _jobs(), pending.iloc[::-1]))  # order of the input does not matter


def test_node_activity_over_two_hosts_and_two_shards() -> None:
    day_end = pd.Timestamp("2026-11-21", tz="UTC")
    # shard 1: ft-1 on node-a (busy, then idle) and ft-3 on node-b; node-a's loss goes on 5 minutes after
    # its GPU samples stop, so the tail is measured back from the later loss sample
    shard1 = pd.concat([
        _samples("node-a", "ft-1", "2026-11-20T10:00:00Z", 60, [95.0] * 30 + [3.0] * 30, devices=2,
                 extra_metric_minutes=5),
        _samples("node-b", "ft-3", "2026-11-20T10:00:00Z", 60, 50.0, devices=4),
        _samples(None, "ft-1", "2026-11-20T10:00:00Z", 5, 99.0),  # no host: dropped
        _samples("node-a", "ft-1", "2026-11-21T00:00:00Z", 5, 99.0),  # next day: left out
    ], ignore_index=True)
    # shard 2: ft-2 ran on node-a until 10:30 only
    shard2 = _samples("node-a", "ft-2", "2026-11-20T10:00:00Z", 30, 80.0, devices=2)

    one = node_activity(shard1, day_end, IDLE_MIN).set_index(["host", "job_id"])
    assert list(one.index) == [("node-a", "ft-1"), ("node-b", "ft-3")]
    a = one.loc[("node-a", "ft-1")]
    assert a["last_ts"] == pd.Timestamp("2026-11-20T11:04:00Z") == a["host_last_ts"]
    assert a["first_gpu_ts"] == pd.Timestamp("2026-11-20T10:00:00Z")
    # tail [10:34, 11:04]: GPU samples 10:34..10:59 on two devices, all at 3%
    assert (a["gpu_samples"], a["gpu_util_max_pct"], a["gpu_util_mean_pct"], a["devices"]) == (52, 3.0, 3.0, 2)
    assert one.loc[("node-b", "ft-3"), "devices"] == 4

    nodes = pd.concat([one.reset_index(), node_activity(shard2, day_end, IDLE_MIN)], ignore_index=True)
    assert sorted(map(tuple, nodes[["host", "job_id"]].to_numpy())) == [
        ("node-a", "ft-1"), ("node-a", "ft-2"), ("node-b", "ft-3")]
    # ft-2 stopped before node-a's window: its 80% says nothing about the window, so node-a is idle
    jobs = _jobs(("ft-1", "succeeded", "p4d.24xlarge"), ("ft-2", "succeeded", "p4d.24xlarge"),
                 ("ft-3", "succeeded", "g5.12xlarge"))
    at = pd.Timestamp("2026-11-20T11:10:00Z")
    advice = scaling_advice(nodes, jobs, NO_PENDING, idle_gpu_utilization_pct=FLOOR, idle_minutes=IDLE_MIN, now=at)
    assert advice[["action", "hosts", "job_ids"]].values.tolist() == [["release", "node-a", "ft-1,ft-2"]]


def test_empty_inputs() -> None:
    empty = node_activity(_samples("n", "j", "2026-11-20T10:00:00Z", 1, 1.0).iloc[:0],
                          pd.Timestamp("2026-11-21", tz="UTC"), IDLE_MIN)
    assert empty.empty
    advice = _advice(empty, _jobs(), NO_PENDING)
    assert advice.empty and advice["nodes"].dtype == "int64"
