"""Every contract and vocabulary is defined once, in schemas.py, and the rest of the code uses that one."""

from __future__ import annotations

import typing

import pytest

from ftops import plans, policy, schemas
from ftops.monitoring import catalog

ALL_TABLES = {
    "metric_samples", "job_registry", "billing_line_items", "rejected_records", "run_health", "anomalies",
    "alerts", "alert_deliveries", "job_costs", "budget_status", "action_ledger",
    "instance_catalog", "benchmark_comparison", "benchmark_recommendations", "instance_recommendations",
    "spot_plans", "node_activity", "scaling_advice", "job_failures", "console_tails", "job_risk", "schedule_plan",
}


def test_every_table_is_registered_under_its_name():
    assert set(schemas.TABLES) == ALL_TABLES
    assert all(name == table.name for name, table in schemas.TABLES.items())


def test_the_job_registry_contract_is_named_after_its_asset():
    assert schemas.JOBS.name == "job_registry"


@pytest.mark.parametrize("name", sorted(ALL_TABLES))
def test_empty_table_has_the_contract_columns_in_order(name):
    table = schemas.TABLES[name]
    assert list(table.empty().columns) == table.column_names


def test_policy_types_are_the_schema_vocabularies():
    hints = typing.get_type_hints(policy.BudgetPolicy)
    assert typing.get_args(hints["mode"]) == schemas.MODES
    assert typing.get_args(hints["period"]) == schemas.PERIODS
    route = typing.get_type_hints(policy.Route)
    assert typing.get_args(route["severity"]) == schemas.SEVERITIES
    assert route["category"] == schemas.Category | None
    assert typing.get_args(schemas.Category) == schemas.CATEGORIES


def test_planned_action_mode_is_the_ledger_mode():
    assert typing.get_args(typing.get_type_hints(plans.PlannedAction)["mode"]) == schemas.MODES


def test_rule_catalogue_is_the_rule_vocabulary():
    assert tuple(catalog.RULES) == schemas.RULE_NAMES
    assert {r.category for r in catalog.RULES.values()} <= set(schemas.CATEGORIES)


@pytest.mark.parametrize(("table", "column", "vocabulary"), [
    ("anomalies", "rule", schemas.RULE_NAMES),
    ("anomalies", "category", schemas.CATEGORIES),
    ("anomalies", "severity", schemas.SEVERITIES),
    ("alerts", "rule", schemas.RULE_NAMES),
    ("alerts", "category", schemas.CATEGORIES),
    ("alerts", "severity", schemas.SEVERITIES),
    ("alerts", "state", schemas.ALERT_STATES),
    ("alert_deliveries", "state", schemas.ALERT_STATES),
    ("alert_deliveries", "status", schemas.DELIVERY_STATUSES),
    ("job_costs", "attribution", schemas.ATTRIBUTIONS),
    ("budget_status", "period", schemas.PERIODS),
    ("budget_status", "mode", schemas.MODES),
    ("action_ledger", "trigger", schemas.TRIGGERS),
    ("action_ledger", "mode", schemas.MODES),
    ("action_ledger", "status", schemas.ACTION_STATUSES),
])
def test_closed_columns_use_the_one_vocabulary(table, column, vocabulary):
    allowed = {c.name: c.allowed for c in schemas.TABLES[table].columns}[column]
    assert allowed is vocabulary
