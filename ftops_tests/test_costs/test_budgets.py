from __future__ import annotations

import json

import pandas as pd
import pytest

from ftops.costs import attribute_costs, budget_status, job_hours
from ftops.costs.budgets import current_periods
from ftops.costs.periods import period_window
from ftops.policy import BudgetPolicy, InstancePrice, LadderPolicy

from .frames import bill, jobs, ts

PRICES = {"gpu.1x": InstancePrice(on_demand_usd_per_hour=10.0)}


def status(billing, registry, budgets, now, progress=None, *, history=False) -> pd.DataFrame:
    """The current period's rows by category (history=True: every row, by category and period)."""
    job_costs = attribute_costs(billing, registry, job_hours(registry, now), PRICES, now)
    out = budget_status(job_costs, registry, budgets, now, progress)
    if history:
        return out.set_index([out["budget_category"].fillna("<none>"), "period_key"])
    out = current_periods(out)
    return out.set_index(out["budget_category"].fillna("<none>"))


def hourly(start: str, hours: int, cost, **extra) -> list[dict]:
    first = ts(start)
    costs = cost if isinstance(cost, list) else [cost] * hours
    return [{"at": str(first + pd.Timedelta(hours=h)), "billed_cost": c, **extra} for h, c in enumerate(costs)]


def test_constant_spend_extrapolates_at_the_same_rate():
    now = ts("2024-09-11 00:00")
    registry = jobs({"job_id": "a", "started_at": "2024-09-01 00:00"})
    row = status(bill(), registry, {"research": BudgetPolicy(limit_usd=10_000.0)}, now).loc["research"]
    assert row.spend_usd == pytest.approx(2400.0) and row.estimated_usd == pytest.approx(2400.0)
    assert row.burn_rate_usd_per_hour == pytest.approx(10.0)
    assert row.forecast_period_end_usd == pytest.approx(2400.0 + 10.0 * 480)
    assert row.forecast_next_24h_usd == pytest.approx(240.0)
    assert row.usage_pct == pytest.approx(24.0) and row.remaining_usd == pytest.approx(7600.0)
    assert row.period_key == "2024-09" and row.running_jobs == 1


def test_rising_spend_uses_the_last_24_hours_not_the_period_average():
    now = ts("2024-09-03 00:00")
    billing = bill(*hourly("2024-09-01 00:00", 48, [1.0] * 24 + [3.0] * 24, budget_category="ops"))
    row = status(billing, jobs(), {"ops": BudgetPolicy(limit_usd=5000.0)}, now).loc["ops"]
    hours_left = 28 * 24
    assert row.spend_usd == pytest.approx(96.0)
    assert row.burn_rate_usd_per_hour == pytest.approx(3.0)
    assert row.forecast_period_end_usd == pytest.approx(96.0 + 3.0 * hours_left)
    assert row.forecast_period_end_usd > 96.0 + 2.0 * hours_left  # the period average would understate it


def test_burn_rate_early_in_the_period_uses_the_time_since_it_began():
    now = ts("2024-09-01 06:00")
    billing = bill(*hourly("2024-08-31 00:00", 30, 2.0, budget_category="ops"))
    row = status(billing, jobs(), {"ops": BudgetPolicy(limit_usd=5000.0)}, now).loc["ops"]
    assert row.spend_usd == pytest.approx(12.0) and row.burn_rate_usd_per_hour == pytest.approx(2.0)


def test_finished_jobs_contribute_nothing_more():
    now = ts("2024-09-10 12:00")
    registry = jobs({"job_id": "done", "started_at": "2024-09-10 08:00", "ended_at": "2024-09-10 11:00",
                     "status": "succeeded"})
    billing = bill(*hourly("2024-09-10 08:00", 3, 10.0, job_id="done"))
    row = status(billing, registry, {"research": BudgetPolicy(limit_usd=100.0)}, now).loc["research"]
    assert row.spend_usd == pytest.approx(30.0) and row.burn_rate_usd_per_hour > 0
    assert row.forecast_period_end_usd == pytest.approx(30.0)
    assert row.forecast_next_24h_usd == 0.0


def test_a_running_job_costs_no_more_than_its_progress_says_is_left():
    now = ts("2024-09-10 10:00")
    registry = jobs({"job_id": "a", "started_at": "2024-09-10 00:00", "total_steps": 1000})
    progress = pd.DataFrame({"job_id": ["a"], "steps_done": [900]})
    row = status(bill(), registry, {"research": BudgetPolicy(limit_usd=1000.0)}, now, progress).loc["research"]
    assert row.spend_usd == pytest.approx(100.0)
    assert row.forecast_period_end_usd == pytest.approx(100.0 + 100.0 * 0.1 / 0.9)
    assert row.forecast_next_24h_usd == pytest.approx(100.0 * 0.1 / 0.9)
    without_progress = status(bill(), registry, {"research": BudgetPolicy(limit_usd=1000.0)}, now).loc["research"]
    assert without_progress.forecast_next_24h_usd == pytest.approx(240.0)


def test_thresholds_ladder_levels_and_categories_without_budget():
    now = ts("2024-09-10 12:00")
    billing = bill(
        {"at": "2024-09-05 00:00", "billed_cost": 85.0, "budget_category": "research"},
        {"at": "2024-09-05 00:00", "billed_cost": 96.0, "budget_category": "prod"},
        {"at": "2024-09-05 00:00", "billed_cost": 7.0, "budget_category": "unbudgeted"},
        {"at": "2024-09-05 00:00", "billed_cost": 1.5},
    )
    budgets = {
        "research": BudgetPolicy(limit_usd=100.0),
        "prod": BudgetPolicy(limit_usd=100.0, alert_thresholds_pct=(75.0,), ladder=LadderPolicy(halve_batch_pct=None)),
        "idle": BudgetPolicy(limit_usd=50.0),
    }
    out = status(billing, jobs(), budgets, now)
    assert json.loads(out.loc["research", "thresholds_crossed"]) == [50.0, 80.0]
    assert out.loc["research", "highest_threshold_pct"] == 80.0
    assert json.loads(out.loc["research", "ladder_levels_reached"]) == []
    assert json.loads(out.loc["prod", "thresholds_crossed"]) == [75.0]
    assert json.loads(out.loc["prod", "ladder_levels_reached"]) == [90.0]  # 95 disabled, 98 not reached
    assert out.loc["idle", "spend_usd"] == 0.0 and out.loc["idle", "usage_pct"] == 0.0
    assert pd.isna(out.loc["unbudgeted", "limit_usd"]) and out.loc["unbudgeted", "spend_usd"] == 7.0
    assert pd.isna(out.loc["<none>", "budget_category"]) and out.loc["<none>", "spend_usd"] == 1.5
    assert out["spend_usd"].sum() == pytest.approx(85.0 + 96.0 + 7.0 + 1.5)


def test_weekly_budgets_count_only_this_week():
    now = ts("2024-09-11 12:00")  # a Wednesday, ISO week 37
    billing = bill({"at": "2024-09-08 12:00", "billed_cost": 50.0, "budget_category": "ops"},
                   {"at": "2024-09-09 12:00", "billed_cost": 20.0, "budget_category": "ops"})
    row = status(billing, jobs(), {"ops": BudgetPolicy(limit_usd=100.0, period="week")}, now).loc["ops"]
    assert (row.period, row.period_key, row.spend_usd) == ("week", "2024-W37", 20.0)
    assert row.period_start == ts("2024-09-09") and row.period_end == ts("2024-09-16")


@pytest.mark.parametrize(
    "period, key, start, end",
    [
        ("month", "2024-12", "2024-12-01", "2025-01-01"),
        ("week", "2025-W01", "2024-12-30", "2025-01-06"),
        ("day", "2024-12-31", "2024-12-31", "2025-01-01"),
    ],
)
def test_period_windows(period, key, start, end):
    window = period_window(ts("2024-12-31 23:59"), period)
    assert (window.key, window.start, window.end) == (key, ts(start), ts(end))


def test_suspicious_lines_are_shown_apart_and_reach_no_threshold_or_ladder_level():
    now = ts("2024-09-10 12:00")
    billing = bill({"at": "2024-09-10 10:00", "billed_cost": 1e12, "budget_category": "research"},
                   {"at": "2024-09-10 10:00", "billed_cost": 30.0, "budget_category": "research"},
                   {"at": "2024-09-10 10:00", "billed_cost": 2e12, "budget_category": "held-only"})
    budgets = {"research": BudgetPolicy(limit_usd=100.0)}

    def run(confirmed=()):
        job_costs = attribute_costs(billing, jobs(), job_hours(jobs(), now), PRICES, now,
                                    max_line_item_cost_usd=1e5, confirmed_line_items=confirmed)
        out = budget_status(job_costs, jobs(), budgets, now)
        return out.set_index(out["budget_category"].fillna("<none>"))

    held = run()
    row = held.loc["research"]
    assert row.spend_usd == pytest.approx(30.0) and row.billed_usd == pytest.approx(30.0)
    assert row.suspicious_usd == pytest.approx(1e12)
    assert row.usage_pct == pytest.approx(30.0) and json.loads(row.ladder_levels_reached) == []
    assert row.forecast_period_end_usd < 1e6 and row.burn_rate_usd_per_hour < 1e3
    assert held.loc["held-only", "suspicious_usd"] == pytest.approx(2e12) and held.loc["held-only", "spend_usd"] == 0
    assert (held["suspicious_usd"] >= 0).all()
    # once a person confirms the line it is ordinary spend
    confirmed = run(confirmed=(billing["line_item_id"].iloc[0],)).loc["research"]
    assert confirmed.spend_usd == pytest.approx(1e12 + 30.0) and confirmed.suspicious_usd == 0.0
    assert json.loads(confirmed.ladder_levels_reached) == [90.0, 95.0, 98.0]


def test_last_months_overrun_keeps_its_own_row_after_the_month_has_ended():
    """On 2 October the September overrun is still there, closed and final; October starts afresh."""
    now = ts("2024-10-02 06:00")
    budgets = {"ops": BudgetPolicy(limit_usd=100.0, alert_thresholds_pct=(50.0, 90.0, 100.0))}
    billing = bill(*hourly("2024-09-29 00:00", 48, 3.0, budget_category="ops"),  # 144 USD in September
                   *hourly("2024-10-01 00:00", 30, 1.0, budget_category="ops"))  # 30 USD in October
    rows = status(billing, jobs(), budgets, now, history=True)
    assert list(rows.index) == [("ops", "2024-10"), ("ops", "2024-09")]  # newest first
    september, october = rows.loc[("ops", "2024-09")], rows.loc[("ops", "2024-10")]
    assert not september.current and october.current
    assert september.spend_usd == pytest.approx(144.0) and september.usage_pct == pytest.approx(144.0)
    assert json.loads(september.thresholds_crossed) == [50, 90, 100]
    assert september.forecast_period_end_usd == pytest.approx(144.0) and september.forecast_next_24h_usd == 0.0
    assert september.period_start == ts("2024-09-01") and september.period_end == ts("2024-10-01")
    assert october.spend_usd == pytest.approx(30.0) and json.loads(october.thresholds_crossed) == []


def test_a_category_without_a_budget_gets_rows_only_for_periods_with_spend():
    now = ts("2024-10-02 06:00")
    billing = bill(*hourly("2024-09-30 20:00", 2, 5.0, budget_category="adhoc"))
    rows = status(billing, jobs(), {}, now, history=True)
    assert list(rows.index) == [("adhoc", "2024-09")]
    assert status(billing, jobs(), {}, now).empty  # nothing spent this month
