"""Spot plans against hand-computed values: Young/Daly, Daly's expected wall time, the price cap, MTBI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ftops.optimize.spot import (
    budget_usd_per_hour,
    expected_spot_run,
    max_spot_price,
    mtbi_for,
    mtbi_table,
    plan_pricing,
    young_daly_interval_hours,
)
from ftops.policy import SpotPolicy

NOW = pd.Timestamp("2026-03-01T00:00:00Z")


def test_young_daly_interval():
    assert young_daly_interval_hours(0.1, 20.0) == pytest.approx(2.0)  # sqrt(2 x 0.1 x 20)
    assert young_daly_interval_hours(2 / 60, 20.0) == pytest.approx(math.sqrt(2 * 2 / 60 * 20))
    assert young_daly_interval_hours(0.0, 20.0) == 0.0
    with pytest.raises(ValueError):
        young_daly_interval_hours(0.1, 0.0)


def test_daly_wall_time_closed_form():
    # W=10, C=0.1, M=20, tau=2, R=0.5: wall = 10 (1 + 0.05) / (1 - (1 + 0.5)/20) = 10.5 / 0.925
    run = expected_spot_run(10.0, 20.0, 0.1, 0.5)
    assert run.interval_hours == pytest.approx(2.0)
    assert run.wall_hours == pytest.approx(10.5 / 0.925)
    assert run.interruptions == pytest.approx(10.5 / 0.925 / 20.0)
    assert run.overhead_hours == pytest.approx(10.5 / 0.925 - 10.0)
    # it satisfies the implicit equation wall = W (1 + C/tau) + (wall/M)(tau/2 + R)
    assert run.wall_hours == pytest.approx(10.0 * 1.05 + run.wall_hours / 20.0 * (1.0 + 0.5))
    # a given interval
    assert expected_spot_run(10.0, 20.0, 0.1, 0.5, interval_hours=1.0).wall_hours == pytest.approx(
        10.0 * 1.1 / (1 - 1.0 / 20.0))
    # interruptions faster than a restart plus half an interval: never finishes
    assert math.isinf(expected_spot_run(10.0, 0.5, 0.1, 0.5).wall_hours)


def test_budget_and_max_spot_price():
    assert budget_usd_per_hour(2700.0, 100.0) == pytest.approx(27.0)
    assert budget_usd_per_hour(-50.0, 100.0) == 0.0  # overspent: nothing left per hour
    with pytest.raises(ValueError):
        budget_usd_per_hour(100.0, 0.0)
    assert max_spot_price(27.0, 0.7) == pytest.approx(18.9)


def candidates(spot: float | None, *, od: float = 20.0, hours: float = 10.0, instances: int = 1,
               cloud: str = "aws", region: str = "us-east-1", gpu: str = "H100") -> pd.DataFrame:
    return pd.DataFrame({
        "cloud": [cloud], "region": [region], "instance_type": ["p5.48xlarge"], "gpu_model": [gpu],
        "gpu_count": [8], "instances": [instances], "on_demand_usd_per_hour": [od],
        "spot_usd_per_hour": [np.nan if spot is None else spot], "expected_hours": [hours],
    })


POLICY = SpotPolicy(checkpoint_minutes=6.0, restart_minutes=30.0, default_mtbi_hours=20.0)
# C = 0.1 h, R = 0.5 h, M = 20 h -> tau = 2 h, wall = 10.5 / 0.925 for 10 h of work
WALL = 10.5 / 0.925


def test_spot_plan_numbers_and_reason():
    p = plan_pricing(candidates(8.0), spot_policy=POLICY, budget_usd_per_hour=27.0).iloc[0]
    assert p["pricing"] == "spot"
    assert p["max_spot_usd_per_hour"] == pytest.approx(18.9)
    assert p["checkpoint_interval_minutes"] == pytest.approx(120.0)
    assert p["expected_hours"] == pytest.approx(WALL)
    assert p["expected_cost_usd"] == pytest.approx(WALL * 8.0)
    assert p["on_demand_cost_usd"] == pytest.approx(200.0)
    assert p["mtbi_hours"] == 20.0 and p["mtbi_basis"] == "configured"
    assert p["reason"] == ("spot 8.00 USD/h is under the max 0.7 × 27.0 = 18.9 USD/h; with 1 interruption per 20 h "
                           "(configured) and a 120-min Young/Daly checkpoint interval it costs 90.81 USD in 11 h vs "
                           "200 USD in 10 h on demand")


def test_break_even_spot_price():
    # spot cost = wall x s, on demand = W x od: equal at s* = od x W / wall
    s_star = 20.0 * 10.0 / WALL
    below = plan_pricing(candidates(s_star * 0.99), spot_policy=POLICY).iloc[0]
    above = plan_pricing(candidates(s_star * 1.01), spot_policy=POLICY).iloc[0]
    assert below["pricing"] == "spot"
    assert above["pricing"] == "on_demand"
    assert above["expected_cost_usd"] == pytest.approx(200.0)
    assert above["spot_expected_cost_usd"] == pytest.approx(WALL * s_star * 1.01)
    assert "it would cost" in above["reason"] and above["reason"].endswith(": on demand")
    assert math.isnan(above["checkpoint_interval_minutes"])


def test_over_the_cap_critical_no_offer_and_not_considered_run_on_demand():
    over = plan_pricing(candidates(19.0), spot_policy=POLICY, budget_usd_per_hour=27.0).iloc[0]
    assert over["pricing"] == "on_demand"
    assert over["reason"] == "spot 19.0 USD/h is above the max 0.7 × 27.0 = 18.9 USD/h: on demand"
    crit = plan_pricing(candidates(1.0), spot_policy=POLICY, critical=True).iloc[0]
    assert crit["pricing"] == "on_demand" and crit["reason"].startswith("critical job")
    none = plan_pricing(candidates(None), spot_policy=POLICY).iloc[0]
    assert none["pricing"] == "on_demand" and none["reason"].startswith("no spot offer")
    assert math.isnan(none["spot_expected_cost_usd"])
    off = plan_pricing(candidates(1.0), spot_policy=POLICY, consider_spot=False).iloc[0]
    assert off["pricing"] == "on_demand" and off["reason"].startswith("on demand (spot not considered)")


def test_cap_compares_what_the_whole_job_pays_and_mtbi_shrinks_with_instances():
    # two instances at 8 USD/h = 16 USD/h, under 18.9; their MTBI is 20 / 2 = 10 h
    p = plan_pricing(candidates(8.0, instances=2), spot_policy=POLICY, budget_usd_per_hour=27.0).iloc[0]
    tau = math.sqrt(2 * 0.1 * 10.0)
    wall = 10.0 * (1 + 0.1 / tau) / (1 - (tau / 2 + 0.5) / 10.0)
    assert p["pricing"] == "spot"
    assert p["expected_cost_usd"] == pytest.approx(wall * 16.0)
    assert p["on_demand_cost_usd"] == pytest.approx(400.0)
    three = plan_pricing(candidates(8.0, instances=3), spot_policy=POLICY, budget_usd_per_hour=27.0).iloc[0]
    assert three["pricing"] == "on_demand" and "above the max" in three["reason"]


def test_plan_is_vectorised_with_per_row_budget_and_critical_and_sorted():
    frame = pd.concat([candidates(8.0), candidates(8.0, od=15.0), candidates(2.0, od=30.0)], ignore_index=True)
    frame["instance_type"] = ["a", "b", "c"]
    p = plan_pricing(frame, spot_policy=POLICY, budget_usd_per_hour=pd.Series([27.0, 27.0, np.nan]),
                     critical=pd.Series([False, True, False]))
    assert list(p["instance_type"]) == ["c", "a", "b"]
    assert list(p["pricing"]) == ["spot", "spot", "on_demand"]
    assert p["expected_cost_usd"].is_monotonic_increasing
    assert p.loc[0, "reason"].startswith("spot 2.00 USD/h (no budget cap); with")


def jobs(rows: list[dict]) -> pd.DataFrame:
    base = {"pricing": "spot", "cloud": "aws", "region": "us-east-1", "gpu_type": "NVIDIA H100 80GB HBM3",
            "status": "succeeded", "exit_reason": None, "ended_at": pd.NaT}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    for col in ("started_at", "ended_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def test_mtbi_learnt_after_enough_preemptions_else_configured():
    t0 = NOW - pd.Timedelta(hours=100)
    fleet = jobs([
        # three preemptions over 30 spot hours on aws/us-east-1/H100 -> 10 h
        {"job_id": "a", "started_at": t0, "ended_at": t0 + pd.Timedelta(hours=10), "status": "preempted",
         "exit_reason": "preempted"},
        {"job_id": "b", "started_at": t0, "ended_at": t0 + pd.Timedelta(hours=5), "status": "failed",
         "exit_reason": "preempted"},
        {"job_id": "c", "started_at": t0, "ended_at": t0 + pd.Timedelta(hours=5), "status": "preempted"},
        # still running since 10 h ago: 10 spot hours, no preemption (H100 total 30 h)
        {"job_id": "d", "started_at": NOW - pd.Timedelta(hours=10), "status": "running"},
        # on demand hours do not count
        {"job_id": "e", "started_at": t0, "ended_at": NOW, "pricing": "on_demand", "status": "preempted"},
        # two preemptions on L4 in another region: not enough to learn
        {"job_id": "f", "started_at": t0, "ended_at": t0 + pd.Timedelta(hours=1), "status": "preempted",
         "gpu_type": "L4", "region": "eu-west-1"},
        {"job_id": "g", "started_at": t0, "ended_at": t0 + pd.Timedelta(hours=1), "status": "preempted",
         "gpu_type": "L4", "region": "eu-west-1"},
        # starts after now: ignored
        {"job_id": "h", "started_at": NOW + pd.Timedelta(hours=1), "status": "preempted"},
    ])
    policy = SpotPolicy(mtbi_hours={"aws": 30.0}, min_preemptions_to_learn=3)
    t = mtbi_table(fleet, policy, NOW).set_index(["cloud", "region", "gpu_model"])
    h100 = t.loc[("aws", "us-east-1", "H100")]
    assert h100["spot_hours"] == pytest.approx(30.0)
    assert h100["preemptions"] == 3
    assert h100["learnt_mtbi_hours"] == pytest.approx(10.0)
    assert h100["basis"] == "learnt" and h100["mtbi_hours"] == pytest.approx(10.0)
    l4 = t.loc[("aws", "eu-west-1", "L4")]
    assert l4["preemptions"] == 2 and l4["basis"] == "configured" and l4["mtbi_hours"] == 30.0
    table = t.reset_index()
    assert mtbi_for("aws", "us-east-1", "H100", table, policy) == (pytest.approx(10.0), "learnt")
    assert mtbi_for("AWS", "us-east-1", "H100", table, policy) == (pytest.approx(10.0), "learnt")
    assert mtbi_for("aws", "eu-west-1", "L4", table, policy) == (30.0, "configured")
    # a plan picks the learnt MTBI up
    p = plan_pricing(candidates(1.0), spot_policy=policy, mtbi=table).iloc[0]
    assert p["mtbi_hours"] == pytest.approx(10.0) and p["mtbi_basis"] == "learnt"
    # the rule holds for the threshold: with 4 needed, H100 falls back to the configured value
    t4 = mtbi_table(fleet, SpotPolicy(mtbi_hours={"aws": 30.0}, min_preemptions_to_learn=4), NOW)
    assert set(t4["basis"]) == {"configured"}


def test_most_specific_mtbi_key_wins():
    policy = SpotPolicy(mtbi_hours={"aws": 30.0, "aws/us-east-1": 12.0, "aws/us-east-1/H100": 6.0, "gcp": 50.0},
                        default_mtbi_hours=20.0)
    assert mtbi_for("aws", "us-east-1", "H100", None, policy) == (6.0, "configured")
    assert mtbi_for("aws", "us-east-1", "L4", None, policy) == (12.0, "configured")
    assert mtbi_for("aws", "eu-west-1", "H100", None, policy) == (30.0, "configured")
    assert mtbi_for("gcp", "us-central1", "H100", None, policy) == (50.0, "configured")
    assert mtbi_for("azure", "eastus", "H100", None, policy) == (20.0, "configured")


def test_empty_registry_gives_an_empty_table():
    t = mtbi_table(jobs([{"job_id": "x", "started_at": NOW}]).iloc[:0], SpotPolicy(), NOW)
    assert t.empty and "mtbi_hours" in t.columns
