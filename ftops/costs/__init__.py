"""Costs (§2.2, §2.3): bills attributed to jobs, estimates, budgets, forecasts, enforcement ladder."""

from ftops.costs.attribution import JOB_COSTS, CurrencyMismatchError, attribute_costs
from ftops.costs.budgets import BUDGET_STATUS, budget_status
from ftops.costs.ladder import PlannedAction, plan_actions
from ftops.costs.ledger import ACTION_LEDGER, applied_keys, ledger_rows, mark
from ftops.costs.progress import progress_from_metrics
from ftops.costs.summary import job_cost_summary
from ftops.costs.usage import job_hours

__all__ = [
    "ACTION_LEDGER", "BUDGET_STATUS", "JOB_COSTS", "CurrencyMismatchError", "PlannedAction", "applied_keys",
    "attribute_costs", "budget_status", "job_cost_summary", "job_hours", "ledger_rows", "mark", "plan_actions",
    "progress_from_metrics",
]
