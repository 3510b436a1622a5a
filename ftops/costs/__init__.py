"""Costs (§2.2, §2.3): bills attributed to jobs, estimates, budgets, forecasts, enforcement ladder."""

from ftops.costs.attribution import CurrencyMismatchError, attribute_costs
from ftops.costs.budgets import budget_status
from ftops.costs.ladder import plan_actions
from ftops.costs.progress import progress_from_metrics
from ftops.costs.summary import job_cost_summary
from ftops.costs.usage import job_hours

__all__ = [
    "CurrencyMismatchError", "attribute_costs", "budget_status", "job_cost_summary", "job_hours", "plan_actions",
    "progress_from_metrics",
]
