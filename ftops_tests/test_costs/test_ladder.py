from __future__ import annotations

import pytest

from ftops.costs import plan_actions
from ftops.costs.ladder import action_key, explain_nothing_planned, halved_batch
from ftops.plans import append, applied_keys, ledger_rows, mark
from ftops.policy import BudgetPolicy, LadderPolicy

from .frames import jobs, ts

FLEET = jobs(
    {"job_id": "od", "pricing": "on_demand", "batch_size": 8, "grad_accum": 2},
    {"job_id": "spot", "pricing": "spot", "batch_size": 5, "grad_accum": 1},
    {"job_id": "vip", "pricing": "on_demand", "batch_size": 1, "critical": True},
    {"job_id": "idle", "pricing": "on_demand", "status": "succeeded"},
    {"job_id": "other", "pricing": "on_demand", "budget_category": "prod"},
)
POLICY = BudgetPolicy(limit_usd=100.0)


def plan(usage, policy=POLICY, applied=frozenset(), period="2024-09", category="research"):
    row = {"budget_category": category, "usage_pct": usage}
    return [(a.job_id, a.action) for a in plan_actions(row, FLEET, policy, period, set(applied))]


@pytest.mark.parametrize(
    "usage, expected",
    [
        (89.9, []),
        (90.0, [("od", "switch_to_spot"), ("vip", "switch_to_spot")]),
        (95.0, [("od", "switch_to_spot"), ("vip", "switch_to_spot"), ("od", "reduce_batch_size"),
                ("spot", "reduce_batch_size")]),
        # non-critical running jobs are terminated and get nothing less; the critical one is kept
        (98.0, [("vip", "switch_to_spot"), ("od", "terminate"), ("spot", "terminate")]),
    ],
)
def test_ladder_steps_by_usage(usage, expected):
    assert plan(usage) == expected


def test_each_step_once_per_period_and_category():
    first = plan_actions({"budget_category": "research", "usage_pct": 91.0}, FLEET, POLICY, "2024-09", set())
    keys = {a.action_id for a in first}
    assert plan(93.0, applied=keys) == []
    assert len(plan(93.0, applied=keys, period="2024-10")) == 2  # a new period starts afresh
    assert plan(96.0, applied=keys) == [("od", "reduce_batch_size"), ("spot", "reduce_batch_size")]
    assert plan(95.0, category="prod") == [("other", "switch_to_spot")]


def test_idempotency_key_depends_on_job_action_level_category_and_period():
    base = action_key("j", "terminate", "budget", 98.0, "research", "2024-09")
    assert base == action_key("j", "terminate", "budget", 98, "research", "2024-09")
    for changed in (("k", "terminate", "budget", 98.0, "research", "2024-09"),
                    ("j", "switch_to_spot", "budget", 98.0, "research", "2024-09"),
                    ("j", "terminate", "budget", 95.0, "research", "2024-09"),
                    ("j", "terminate", "budget", 98.0, "prod", "2024-09"),
                    ("j", "terminate", "budget", 98.0, "research", "2024-10")):
        assert action_key(*changed) != base


@pytest.mark.parametrize("mode", ["dry_run", "enforce"])
def test_modes_carry_through_and_off_plans_nothing(mode):
    actions = plan_actions({"budget_category": "research", "usage_pct": 99.0}, FLEET,
                           BudgetPolicy(limit_usd=100.0, mode=mode), "2024-09", set())
    assert actions and {a.mode for a in actions} == {mode}
    assert plan(99.0, policy=BudgetPolicy(limit_usd=100.0, mode="off")) == []


def test_disabled_steps_are_skipped():
    policy = BudgetPolicy(limit_usd=100.0, ladder=LadderPolicy(switch_to_spot_pct=None, terminate_non_critical_pct=None))
    assert plan(99.0, policy=policy) == [("od", "reduce_batch_size"), ("spot", "reduce_batch_size")]


def test_no_usage_plans_nothing():
    assert plan(float("nan")) == [] and plan(None) == []


@pytest.mark.parametrize(
    "micro, accum, new_micro, new_accum",
    [(8, 1, 4, 2), (8, 2, 4, 4), (6, 1, 3, 2), (5, 1, 1, 5), (7, 4, 2, 14), (9, 2, 3, 6), (3, 3, 1, 9), (2, 1, 1, 2)],
)
def test_halving_keeps_the_effective_batch(micro, accum, new_micro, new_accum):
    halved = halved_batch(micro, accum)
    assert (halved["micro_batch_size"], halved["grad_accum"]) == (new_micro, new_accum)
    assert new_micro <= micro // 2 and new_micro * new_accum == micro * accum == halved["effective_batch_size"]


def test_a_micro_batch_of_one_cannot_be_halved():
    assert halved_batch(1, 8) is None


def test_reduce_batch_params():
    actions = plan_actions({"budget_category": "research", "usage_pct": 96.0}, FLEET, POLICY, "2024-09", set())
    params = {a.job_id: a.params for a in actions if a.action == "reduce_batch_size"}
    assert params["od"]["micro_batch_size"] == 4 and params["od"]["grad_accum"] == 4
    assert "vip" not in params  # micro-batch 1: nothing to halve


def test_ledger_records_once_marks_and_tells_the_ladder_what_to_skip():
    now = ts("2024-09-10 12:00")
    actions = plan_actions({"budget_category": "research", "usage_pct": 99.0}, FLEET, POLICY, "2024-09", set())
    ledger = ledger_rows(actions, ts=now)
    assert list(ledger["status"].unique()) == ["planned"] and ledger["action_id"].is_unique
    assert len(append(ledger, ledger_rows(actions, ts=now))) == len(ledger)  # same keys: nothing added

    first, second = actions[0].action_id, actions[1].action_id
    ledger = mark(ledger, first, "applied", "control file written", ts=now)
    ledger = mark(ledger, second, "failed", "webhook timed out", ts=now)
    assert ledger.set_index("action_id").loc[first, "detail"] == "control file written"
    keys = applied_keys(ledger)
    assert first in keys and second not in keys  # a failed action may be tried again
    again = plan_actions({"budget_category": "research", "usage_pct": 99.0}, FLEET, POLICY, "2024-09", keys)
    assert [a.action_id for a in again] == [second]
    with pytest.raises(KeyError):
        mark(ledger, "nope", "applied")
    with pytest.raises(ValueError, match="allowed"):
        mark(ledger, first, "done")


def explain(usage, level, policy=POLICY, applied=frozenset(), fleet=FLEET, category="research"):
    row = {"budget_category": category, "usage_pct": usage}
    return explain_nothing_planned(row, fleet, policy, "2024-09", set(applied), level)


def test_a_step_that_plans_nothing_says_why():
    two = jobs({"job_id": "a", "pricing": "on_demand", "batch_size": 8},
               {"job_id": "b", "pricing": "on_demand", "batch_size": 4})
    # usage jumped past 98 %: the 90 % and 95 % runs plan nothing because both jobs will be terminated
    assert [a for a in plan_actions({"budget_category": "research", "usage_pct": 99.0}, two, POLICY, "2024-09", set())
            if a.level_pct == 90.0] == []
    assert explain(99.0, 90.0, fleet=two) == "both running jobs (a, b) are already planned for termination at 98 %"
    assert explain(99.0, 98.0, policy=BudgetPolicy(limit_usd=100.0, mode="off")) == (
        "mode is off: this budget alerts and never acts")
    assert explain(85.0, 80.0) == ("80 % is an alert threshold, not a ladder step "
                                   "(switch_to_spot at 90 %, reduce_batch_size at 95 %, terminate at 98 %)")
    assert explain(99.0, 98.0, category="nobody") == "no running jobs in budget 'nobody'"
    vip = jobs({"job_id": "vip", "pricing": "spot", "batch_size": 1, "critical": True})
    assert explain(99.0, 98.0, fleet=vip) == "the running job (vip): marked critical"
    assert explain(91.0, 90.0, fleet=vip) == "the running job (vip): not on demand (spot)"
    keys = {a.action_id for a in plan_actions({"budget_category": "research", "usage_pct": 91.0}, two, POLICY,
                                              "2024-09", set())}
    assert explain(91.0, 90.0, fleet=two, applied=keys) == (
        "both running jobs (a, b): switch_to_spot already recorded this period")
