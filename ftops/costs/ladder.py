"""The budget enforcement ladder (§2.2): which actions a category's usage calls for, on which jobs.

Default steps: 90 % switch on-demand running jobs to spot, 95 % halve the micro-batch (keeping
the effective batch with gradient accumulation), 98 % terminate non-critical running jobs. Each
step is planned once per job, budget category and period: its idempotency key is in
`already_applied` after the first time. A job about to be terminated gets no lesser step.
A job counts as critical only when marked so; an unmarked job is not protected from termination.
Planning has no side effects; actuators carry the actions out and the ledger records them.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping

import pandas as pd

from ftops.costs.budgets import ladder_levels
from ftops.plans import Action, PlannedAction
from ftops.policy import BudgetPolicy

TRIGGER = "budget"


def action_key(job_id: str, action: str, trigger: str, level_pct: float, budget_category: str, period_key: str) -> str:
    """Stable idempotency key: the same step for the same job in the same budget period is one action."""
    text = json.dumps([job_id, action, trigger, float(level_pct), budget_category, period_key])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def halved_batch(micro_batch_size: int, grad_accum: int = 1) -> dict[str, int] | None:
    """A micro-batch at most half as large with the same effective batch, or None when it is 1.

    The new micro-batch is the largest divisor of the effective batch not above half the old one,
    so the effective batch stays exact for odd sizes too (5 × 1 → 1 × 5; 6 × 1 → 3 × 2; 7 × 4 → 2 × 14).
    """
    micro = int(micro_batch_size)
    accum = max(int(grad_accum), 1)
    if micro <= 1:
        return None
    effective = micro * accum
    new_micro = max(d for d in range(1, micro // 2 + 1) if effective % d == 0)
    return {"micro_batch_size": new_micro, "grad_accum": effective // new_micro, "effective_batch_size": effective,
            "previous_micro_batch_size": micro, "previous_grad_accum": accum}


def _int_or(value: Any, default: int | None) -> int | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return default
    return int(value)


def plan_actions(
    status_row: Mapping[str, Any] | pd.Series,
    jobs: pd.DataFrame,
    policy: BudgetPolicy,
    period_key: str,
    already_applied: set[str],
) -> list[PlannedAction]:
    """Actions the category's usage calls for and that were not applied yet this period.

    status_row: one `budget_status` row (budget_category, usage_pct); jobs: the `jobs` table.
    Mode `off` plans nothing; `dry_run` and `enforce` plan the same actions with their mode.
    """
    if policy.mode == "off":
        return []
    usage = status_row["usage_pct"]
    if usage is None or usage is pd.NA or math.isnan(float(usage)):
        return []
    usage = float(usage)
    category = str(status_row["budget_category"])
    reached = {action: level for action, level in ladder_levels(policy.ladder).items() if usage >= level}
    if not reached:
        return []

    in_category = jobs["budget_category"].astype("string").eq(category).fillna(False)
    running = jobs["status"].astype("string").eq("running").fillna(False)
    mine = jobs[(in_category & running).to_numpy()].drop_duplicates("job_id").sort_values("job_id")
    critical = mine["critical"].astype("boolean").fillna(False).astype(bool)
    to_terminate = set(mine.loc[~critical.to_numpy(), "job_id"]) if "terminate" in reached else set()

    planned: list[PlannedAction] = []

    def plan(job_id: str, action: Action, params: dict[str, Any]) -> None:
        level = reached[action]
        key = action_key(job_id, action, TRIGGER, level, category, period_key)
        if key in already_applied:
            return
        reason = f"budget {category!r} at {usage:.1f}% of {policy.limit_usd:g} USD ({period_key}) >= {level:g}%"
        planned.append(PlannedAction(key, job_id, category, action, params, level, policy.mode, period_key,
                                     reason=reason))

    for job in mine.itertuples(index=False):  # a handful of running jobs per category, not metric data
        job_id = str(job.job_id)
        if job_id in to_terminate:
            plan(job_id, "terminate", {"reason": "budget_exceeded"})
            continue
        if "switch_to_spot" in reached and getattr(job, "pricing", None) == "on_demand":
            plan(job_id, "switch_to_spot", {"pricing": "spot"})
        if "reduce_batch_size" in reached:
            micro = _int_or(getattr(job, "batch_size", None), None)
            halved = halved_batch(micro, _int_or(getattr(job, "grad_accum", None), 1)) if micro else None
            if halved is not None:
                plan(job_id, "reduce_batch_size", halved)
    order = {"switch_to_spot": 0, "reduce_batch_size": 1, "terminate": 2}
    return sorted(planned, key=lambda a: (a.level_pct, order[a.action], a.job_id))


def _percent(level: float) -> str:
    return f"{level:g} %"


def explain_nothing_planned(
    status_row: Mapping[str, Any] | pd.Series,
    jobs: pd.DataFrame,
    policy: BudgetPolicy,
    period_key: str,
    already_applied: set[str],
    level_pct: float,
) -> str:
    """Why a crossing of `level_pct` plans no action, in words a person can check.

    Mirrors `plan_actions`: an enforcement run that does nothing must say which rule held it back.
    """
    if policy.mode == "off":
        return "mode is off: this budget alerts and never acts"
    usage = status_row["usage_pct"]
    if usage is None or usage is pd.NA or math.isnan(float(usage)):
        return "usage is unknown (the budget has no limit or no spend)"
    usage = float(usage)
    category = str(status_row["budget_category"])
    levels = ladder_levels(policy.ladder)
    steps = [action for action, level in levels.items() if level == float(level_pct)]
    if not steps:
        ladder = ", ".join(f"{a} at {_percent(lvl)}" for a, lvl in levels.items()) or "no ladder steps"
        return f"{_percent(level_pct)} is an alert threshold, not a ladder step ({ladder})"
    in_category = jobs["budget_category"].astype("string").eq(category).fillna(False)
    running = jobs["status"].astype("string").eq("running").fillna(False)
    mine = jobs[(in_category & running).to_numpy()].drop_duplicates("job_id").sort_values("job_id")
    if mine.empty:
        return f"no running jobs in budget {category!r}"
    terminate_level = levels.get("terminate")
    terminating = terminate_level is not None and usage >= terminate_level
    critical = dict(zip(mine["job_id"].astype(str), mine["critical"].astype("boolean").fillna(False).astype(bool)))

    why: dict[str, list[str]] = {}
    for job in mine.itertuples(index=False):
        job_id = str(job.job_id)
        if terminating and not critical[job_id] and "terminate" not in steps:
            reason = f"already planned for termination at {_percent(terminate_level)}"
        else:
            reasons = []
            for action in steps:
                if action_key(job_id, action, TRIGGER, levels[action], category, period_key) in already_applied:
                    reasons.append(f"{action} already recorded this period")
                elif action == "terminate":
                    reasons.append("marked critical")
                elif action == "switch_to_spot":
                    reasons.append(f"not on demand ({getattr(job, 'pricing', None) or 'pricing unknown'})")
                else:
                    reasons.append("micro-batch unknown or already 1")
            reason = "; ".join(reasons)
        why.setdefault(reason, []).append(job_id)
    n = len(mine)
    subject = "the running job" if n == 1 else ("both running jobs" if n == 2 else f"all {n} running jobs")
    if len(why) == 1:
        (reason, ids), = why.items()
        return f"{subject} ({', '.join(ids)}) {'is' if n == 1 else 'are'} {reason}" if reason.startswith(
            "already planned") else f"{subject} ({', '.join(ids)}): {reason}"
    return "; ".join(f"{', '.join(ids)}: {reason}" for reason, ids in why.items())
