"""The public FOCUS 1.0 sample (1000 anonymised AWS lines, September 2024) through costs and budgets.

None of its lines carries an ftops job tag, so every line must come out unattributed, with its
provider and service, and the totals must equal the bill: nothing vanishes, nothing is invented.
"""

from __future__ import annotations

import pandas as pd
import pytest

from ftops.costs import attribute_costs, budget_status, job_hours
from ftops.policy import BudgetPolicy
from ftops.readers.billing import read_billing
from ftops.schemas import JOBS

from .frames import ts

SAMPLE = "billing/focus_1.0_sample_1000_anonymized_real.csv"
NOW = ts("2024-09-30 23:59:59")


@pytest.fixture(scope="module")
def focus_lines(realdata) -> pd.DataFrame:
    result = read_billing(realdata / SAMPLE)
    assert len(result.accepted) > 0
    return result.accepted


def test_untagged_real_bill_is_all_unattributed_and_nothing_vanishes(focus_lines):
    registry = JOBS.empty()
    costs = attribute_costs(focus_lines, registry, job_hours(registry, NOW), {}, NOW)
    assert len(costs) == len(focus_lines)
    assert costs["job_id"].isna().all() and (costs["attribution"] == "unattributed").all()
    assert not costs["estimated"].any()
    assert costs["cost_usd"].sum() == pytest.approx(focus_lines["billed_cost"].sum())
    assert (costs["cost_usd"] < 0).sum() == (focus_lines["billed_cost"] < 0).sum()  # credits kept
    assert costs["provider"].notna().all() and costs["service_name"].notna().all()

    status = budget_status(costs, registry, {"research": BudgetPolicy(limit_usd=100.0)}, NOW)
    by_category = status.set_index(status["budget_category"].fillna("<none>"))
    assert by_category.loc["research", "spend_usd"] == 0.0
    assert pd.isna(by_category.loc["<none>", "limit_usd"])
    assert by_category.loc["<none>", "spend_usd"] == pytest.approx(focus_lines["billed_cost"].sum())
    assert by_category.loc["<none>", "forecast_period_end_usd"] >= by_category.loc["<none>", "spend_usd"] - 1e-9
