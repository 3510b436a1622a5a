"""The cost report's numbers on a small fleet, its pages and tables, and the Dagster assets that write it."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ftops.defs.io_manager import PartitionedParquetIOManager, write_table
from ftops.defs.partitions import FleetPartitions, configured
from ftops.defs.reports import closed_period_key, cost_report, weekly_cost_report
from ftops.defs.resources import PolicyResource, ReportsResource
from ftops.reports.cost_figures import cost_report_tables
from ftops.reports.cost_report import write_cost_report
from ftops.reports.periods import parse_period, previous_period
from ftops.schemas import BILLING_LINE_ITEMS, JOB_COSTS, JOBS
from ftops_tests.test_costs.frames import ts
from ftops_tests.test_reports import fleet

NOVEMBER = parse_period("2026-11")


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    costs, bills = fleet.costs_and_bills()
    return cost_report_tables(NOVEMBER, costs, fleet.jobs(), fleet.AS_OF, budget_status=fleet.budget_status_rows(),
                              budgets=fleet.BUDGETS, line_items=bills)


def _spend(start: str, end: str) -> pd.DataFrame:
    costs, _ = fleet.costs_and_bills()
    inside = (costs["period_start"] >= ts(start)) & (costs["period_start"] < ts(end)) & ~costs["suspicious"]
    return costs[inside]


def test_periods_parse_months_and_iso_weeks() -> None:
    week = parse_period("2026-W47")
    assert (week.period, week.start, week.end) == ("week", ts("2026-11-16"), ts("2026-11-23"))
    assert previous_period(NOVEMBER).key == "2026-10" and previous_period(week).key == "2026-W46"
    assert parse_period("2027-01").start == ts("2027-01-01")
    for bad in ("2026-13", "2026-W54", "November", "2026-11-01"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            parse_period(bad)
    assert closed_period_key(ts("2026-12-01T02:00"), "month") == "2026-11"
    assert closed_period_key(ts("2026-11-23T02:00"), "week") == "2026-11-16"


def test_total_and_change_equal_the_job_costs_of_each_period(tables) -> None:
    summary = tables["summary"].iloc[0]
    november, october = _spend("2026-11-01", "2026-12-01"), _spend("2026-10-01", "2026-11-01")
    assert summary["total_usd"] == pytest.approx(november["cost_usd"].sum())
    assert summary["previous_total_usd"] == pytest.approx(october["cost_usd"].sum())
    assert summary["change_usd"] == pytest.approx(november["cost_usd"].sum() - october["cost_usd"].sum())
    assert summary["change_pct"] == pytest.approx((november["cost_usd"].sum() / october["cost_usd"].sum() - 1) * 100)
    assert summary["held_usd"] == 90_000.0  # the suspicious line is shown apart, never in the total
    assert summary["estimated_usd"] == 40.0 and not summary["closed"]


def test_spend_by_technique_domain_team_and_the_unattributed_bucket(tables) -> None:
    november = _spend("2026-11-01", "2026-12-01")
    technique = fleet.jobs().set_index("job_id")["technique"]
    expected = november.groupby(november["job_id"].map(technique).fillna("unattributed"))["cost_usd"].sum()
    got = tables["by_technique"].set_index("technique")["cost_usd"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False, check_index_type=False)
    assert tables["by_technique"]["share_pct"].sum() == pytest.approx(100.0)
    for key in ("domain", "budget_category", "team"):
        assert tables[f"by_{key}"]["cost_usd"].sum() == pytest.approx(november["cost_usd"].sum())
    team = tables["by_team"].groupby("team")["cost_usd"].sum()
    # j-full-1's estimate has no bill line: it takes the team its billed lines are tagged with
    assert team["search"] == pytest.approx(november[november["job_id"].isin(["j-lora-1", "j-full-1"])]["cost_usd"].sum())
    unattributed = november[november["job_id"].isna()]["cost_usd"].sum()
    assert tables["summary"].iloc[0]["unattributed_usd"] == unattributed == 200.0
    assert tables["unattributed"]["cost_usd"].sum() == unattributed
    assert tables["top_jobs"]["job_id"].tolist()[0] == "j-full-1"
    assert tables["daily"]["cost_usd"].sum() == pytest.approx(november["cost_usd"].sum())


def test_cost_per_thousand_samples_and_million_tokens(tables) -> None:
    row = tables["by_technique"].set_index("technique").loc["lora"]
    # j-lora-1: $4,608 for 2M samples in all, $2,592 of it in November; j-lora-2 ($2,496, 0.5M) all in November
    lora1_samples = 2_592 / (4_608 / 2_000_000)
    assert row["samples_processed"] == pytest.approx(lora1_samples + 500_000)
    assert row["usd_per_1k_samples"] == pytest.approx((2_592 + 2_496) / (lora1_samples + 500_000) * 1e3)
    tokens = lora1_samples * 2048 + 500_000 * 1024
    assert row["usd_per_million_tokens"] == pytest.approx((2_592 + 2_496) / tokens * 1e6)
    # the running full fine-tune has no known progress: no sample count, no unit cost
    assert math.isnan(tables["by_technique"].set_index("technique").loc["full", "usd_per_1k_samples"])


def test_budgets_with_thresholds_forecast_and_burn_down(tables) -> None:
    budgets = tables["budgets"].set_index("budget_category")
    assert "weekly-ops" not in budgets.index  # a weekly budget is not a month's
    research = budgets.loc["research"]
    assert research["limit_usd"] == 20_000 and research["alert_thresholds_pct"] == "[50.0, 80.0, 90.0]"
    assert research["spend_usd"] == pytest.approx(_spend("2026-11-01", "2026-12-01").query(
        "budget_category == 'research'")["cost_usd"].sum())
    # budget_status expects $500 more for research by the end of November
    assert research["forecast_period_end_usd"] == pytest.approx(research["spend_usd"] + 500.0)
    assert research["forecast_basis"] == "budget_status" and budgets.loc["product", "forecast_basis"] == "average rate"
    assert tables["summary"].iloc[0]["forecast_period_end_usd"] == pytest.approx(
        budgets["forecast_period_end_usd"].sum())
    burn = tables["burn_down"]
    research_points = burn[(burn["budget_category"] == "research") & (burn["kind"] == "actual")]
    assert research_points["cumulative_usd"].is_monotonic_increasing
    assert research_points["cumulative_usd"].iloc[-1] == pytest.approx(research["spend_usd"])
    assert research_points["at"].max() == fleet.AS_OF
    forecast = burn[(burn["budget_category"] == "research") & (burn["kind"] == "forecast")]
    assert forecast["at"].tolist() == [NOVEMBER.end]


def test_savings_from_the_optimisation_tables() -> None:
    from ftops.reports.cost_figures import savings
    from ftops_tests.test_costs.frames import table
    from ftops.schemas import BENCHMARK_RECOMMENDATIONS, INSTANCE_RECOMMENDATIONS, SPOT_PLANS

    recs = table([{"job_id": "a", "rank": 1, "worth_switching": True, "current_cost_usd": 100.0,
                   "expected_cost_usd": 60.0, "instance_type": "g6", "pricing": "spot"},
                  {"job_id": "a", "rank": 2, "worth_switching": True, "current_cost_usd": 100.0,
                   "expected_cost_usd": 70.0},
                  {"job_id": "b", "rank": 1, "worth_switching": False, "current_cost_usd": 100.0,
                   "expected_cost_usd": 95.0}], INSTANCE_RECOMMENDATIONS)
    plans = table([{"job_id": "c", "change": True, "pricing": "spot", "on_demand_cost_usd": 50.0,
                    "expected_cost_usd": 30.0, "checkpoint_interval_minutes": 20.0}], SPOT_PLANS)
    bench = table([{"kind": "move", "technique": "lora", "saving_usd_per_month": 300.0, "message": "m"},
                   {"kind": "calibrate", "message": "c"}], BENCHMARK_RECOMMENDATIONS)
    found = savings(recs, plans, bench)
    assert sorted(zip(found["source"], found["saving_usd"], found["per"])) == [
        ("benchmark_recommendations", 300.0, "month"), ("instance_recommendations", 40.0, "job run"),
        ("spot_plans", 20.0, "job run")]


def test_pages_and_tables_are_written(tables, tmp_path: Path) -> None:
    files = write_cost_report(tables, tmp_path / "2026-11")
    page = files.index.read_text()
    assert page.count("Plotly.newPlot") >= 8 and page.count("<script type=\"text/javascript\">/**") <= 1
    assert "Cost report 2026-11" in page and "burn_down.html" in page and "Cost per 1,000 samples" in page
    assert "Cost (USD per 1,000 samples)" in page and "#88CCEE".lower() in page.lower()  # lora's colour
    assert files.burn_down.read_text().count("Plotly.newPlot") == len(tables["budgets"])
    for name, path in files.tables.items():
        pd.testing.assert_frame_equal(pd.read_parquet(path), tables[name].reset_index(drop=True), check_dtype=False)
    assert "**Cost 2026-11**" in files.markdown and "| lora" in files.markdown


def test_a_period_without_spend_is_a_page_that_says_so(tmp_path: Path) -> None:
    empty = cost_report_tables(parse_period("2026-W47"), JOB_COSTS.empty(), JOBS.empty(), ts("2027-01-01"))
    assert empty["summary"].iloc[0]["total_usd"] == 0 and math.isnan(empty["summary"].iloc[0]["change_pct"])
    files = write_cost_report(empty, tmp_path)
    assert "No spend in this period." in files.index.read_text()
    assert "No budget and no spend in this period." in files.burn_down.read_text()


def _warehouse(base: Path) -> None:
    costs, bills = fleet.costs_and_bills()
    write_table(costs, str(base), dg.AssetKey("job_costs"))
    write_table(fleet.jobs(), str(base), dg.AssetKey("job_registry"))
    write_table(fleet.budget_status_rows(), str(base), dg.AssetKey("budget_status"))
    for day, part in bills.groupby(bills["charge_period_start"].dt.strftime("%Y-%m-%d")):
        write_table(part, str(base), dg.AssetKey("billing_line_items"), day)


@pytest.mark.parametrize("asset, partition, folder", [(cost_report, "2026-11", "2026-11"),
                                                      (weekly_cost_report, "2026-11-16", "2026-W47")])
def test_the_assets_write_the_report_and_link_it(tmp_path: Path, asset, partition: str, folder: str) -> None:
    partitions = FleetPartitions("2026-10-01", 1)
    _warehouse(tmp_path / "warehouse")
    upstream = [dg.AssetSpec(n) for n in ("job_costs", "job_registry", "budget_status", "instance_recommendations",
                                          "spot_plans", "benchmark_recommendations")]
    upstream.append(dg.AssetSpec(BILLING_LINE_ITEMS.name, partitions_def=partitions.daily))
    result = dg.materialize(
        [*configured([asset], partitions), *upstream], selection=[asset.key], partition_key=partition,
        resources={"io_manager": PartitionedParquetIOManager(base_path=str(tmp_path / "warehouse")),
                   "reports": ReportsResource(folder=str(tmp_path / "reports")), "policy": PolicyResource()},
        run_config={"ops": {asset.op.name: {"config": {"as_of": "2026-11-20T12:00:00+00:00"}}}},
    )
    assert result.success
    metadata = result.asset_materializations_for_node(asset.op.name)[0].metadata
    index = tmp_path / "reports" / "cost" / folder / "index.html"
    assert metadata["report"].value == str(index) and index.is_file()
    assert metadata["report_url"].value == index.as_uri()
    assert Path(metadata["burn_down"].value).is_file()
    assert f"**Cost {folder}**" in metadata["summary"].value
    written = pd.read_parquet(tmp_path / "warehouse" / asset.key.path[-1] / f"{partition}.parquet")
    assert {"index.html", "burn_down.html", "summary.parquet", "by_technique.parquet"} <= set(written["file"])
    if folder == "2026-W47":  # a week's spend: the days of that week only
        expected = _spend("2026-11-16", "2026-11-23")["cost_usd"].sum()
        assert metadata["total_usd"].value == pytest.approx(round(expected, 2))


def _tick(schedule, at: str, tmp_path, start: str = "2026-10-01"):
    from ftops.defs.resources import PolicyResource

    config = tmp_path / "ftops.yaml"
    config.write_text(f"partitions:\n  start: '{start}'\n")
    context = dg.build_schedule_context(scheduled_execution_time=ts(at).to_pydatetime(),
                                        resources={"policy": PolicyResource(config_path=str(config))})
    return schedule(context)


def test_schedules_build_the_period_that_just_closed(tmp_path) -> None:
    from ftops.defs.reports import monthly_cost_report_schedule, weekly_cost_report_schedule

    month = _tick(monthly_cost_report_schedule, "2026-12-01T02:00", tmp_path)
    week = _tick(weekly_cost_report_schedule, "2026-11-23T02:00", tmp_path)
    assert (month.partition_key, week.partition_key) == ("2026-11", "2026-11-16")


def test_the_first_tick_skips_a_period_older_than_the_fleet(tmp_path) -> None:
    from ftops.defs.reports import monthly_cost_report_schedule, weekly_cost_report_schedule

    # the fleet starts on 2026-11-18: October has no partition, the week of 11-09 neither
    month = _tick(monthly_cost_report_schedule, "2026-11-01T02:00", tmp_path, start="2026-11-18")
    week = _tick(weekly_cost_report_schedule, "2026-11-16T02:00", tmp_path, start="2026-11-18")
    assert isinstance(month, dg.SkipReason) and "2026-10" in month.skip_message
    assert isinstance(week, dg.SkipReason)
    # the month holding the start has a partition (from its first day): it is built when it closes
    assert _tick(monthly_cost_report_schedule, "2026-12-01T02:00", tmp_path, start="2026-11-18").partition_key == "2026-11"
