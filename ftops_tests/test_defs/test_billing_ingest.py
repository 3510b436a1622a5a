"""Bills and job times through the readers, the ingest assets and the cost assets (issue 7).

Repeated and copied bills never add spend, impossible job times never become estimated cost, and
an implausible line is held out of the budget instead of driving the enforcement ladder.
"""

import json
import shutil

import dagster as dg
import pandas as pd
import pytest

from ftops.policy import PartitionsPolicy
from ftops.defs.runner import materialize_graph
from ftops.definitions import Settings, build_definitions
from ftops_tests.test_defs.inbox_builder import FOCUS_HEADER, write_bill, write_jobs

AS_OF = "2026-11-21T03:00:00Z"
LINE_USD = 12.5  # each of write_bill's hourly lines


def _checks(results: list[dg.ExecuteInProcessResult]) -> dict[tuple[str, str], bool]:
    return {
        (e.asset_check_evaluation_data.asset_key.to_user_string(), e.asset_check_evaluation_data.check_name):
            e.asset_check_evaluation_data.passed
        for r in results for e in r.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


@pytest.fixture
def project(tmp_path):
    inbox = tmp_path / "inbox"
    jobs = write_jobs(inbox)
    # a job the registry says started at the epoch ("unknown" written as 0)
    jobs.write_text(jobs.read_text() + "ft-epoch,old,lora,legal,x,A10G,1,g5.xlarge,on_demand,research,false,"
                    "running,1970-01-01T00:00:00Z,1970-01-01T00:00:00Z,100\n")
    bill = write_bill(inbox, name="focus-2026-11-20.csv", hours=5)
    header, *lines = bill.read_text().splitlines()
    assert header == FOCUS_HEADER
    # the export glitch: every line written twice
    bill.write_text("\n".join([header, *lines, *lines]) + "\n")
    odd = inbox / "billing" / "focus-odd.csv"
    base = lines[0].replace("i-0abc0", "i-0odd")
    odd.write_text("\n".join([header, base.replace("12.5,USD", "inf,USD", 1),
                              base.replace("12.5,USD", "1000000000000,USD", 1)]) + "\n")
    config = tmp_path / "ftops.yaml"
    config.write_text("budgets:\n  research:\n    limit_usd: 1000\n"
                      "ingest:\n  max_line_item_cost_usd: 100000\n")
    defs = build_definitions(Settings(str(inbox), str(tmp_path / "warehouse"), str(config)))
    return inbox, tmp_path / "warehouse", defs


def _tables(warehouse):
    bill = pd.concat(pd.read_parquet(p) for p in (warehouse / "billing_line_items").glob("*.parquet"))
    return (bill, pd.read_parquet(warehouse / "job_registry.parquet"), pd.read_parquet(warehouse / "job_costs.parquet"),
            pd.read_parquet(warehouse / "budget_status.parquet"), pd.read_parquet(warehouse / "rejected_records.parquet"))


def test_repeated_and_copied_bills_count_once_and_impossible_values_are_refused(project):
    inbox, warehouse, defs = project
    with dg.instance_for_test() as instance:
        results = materialize_graph(defs, instance, "2026-11-20T22:00:00Z", AS_OF, as_of=AS_OF)
        assert all(r.success for r in results)
        ours = {k: v for k, v in _checks(results).items() if k[0] in ("billing_line_items", "job_costs")}
        assert len(ours) >= 5 and all(ours.values()), ours
        bill, registry, costs, status, rejected = _tables(warehouse)

        usage_lines = bill[bill["resource_id"].str.startswith("i-0abc")]
        assert len(usage_lines) == 5 and usage_lines["billed_cost"].sum() == pytest.approx(5 * LINE_USD)
        assert usage_lines["line_item_id"].is_unique
        assert not rejected["source"].eq("billing/focus-2026-11-20.csv").any()  # repeats are duplicates
        assert any(r.startswith("non-finite billed_cost") for r in rejected["reason"])

        # the epoch job is refused by the reader and costs nothing
        assert "ft-epoch" not in set(registry["job_id"])
        epoch = rejected[rejected["raw"].str.contains("ft-epoch", na=False)]
        assert len(epoch) == 1 and "before" in epoch["reason"].iloc[0]
        assert (costs["period_start"] >= pd.Timestamp(PartitionsPolicy.start, tz="UTC")).all()

        # the 1e12 line is kept and flagged, shown apart, and reaches no threshold or ladder level
        held = costs[costs["suspicious"]]
        assert held["cost_usd"].tolist() == [1e12]
        research = status.set_index("budget_category").loc["research"]
        assert research["suspicious_usd"] == pytest.approx(1e12)
        assert research["spend_usd"] < 1000 and json.loads(research["ladder_levels_reached"]) == []
        spend_before = research["spend_usd"]

        # the same bill delivered again under another name changes nothing
        shutil.copy(inbox / "billing" / "focus-2026-11-20.csv", inbox / "billing" / "focus-2026-11-20-copy.csv")
        results = materialize_graph(defs, instance, "2026-11-20T22:00:00Z", AS_OF, as_of=AS_OF)
        ours = {k: v for k, v in _checks(results).items() if k[0] in ("billing_line_items", "job_costs")}
        assert len(ours) >= 5 and all(ours.values()), ours
        bill, _, costs, status, _ = _tables(warehouse)
        assert len(bill[bill["resource_id"].str.startswith("i-0abc")]) == 5
        assert status.set_index("budget_category").loc["research", "spend_usd"] == pytest.approx(spend_before)
