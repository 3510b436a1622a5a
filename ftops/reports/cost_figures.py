"""The numbers of the cost report for one period: plain tables, the same ones the page draws and stores.

Spend is what budgets count: billed + estimated cost of the `job_costs` rows whose period starts in the
report period, without the lines held as suspicious (shown apart as `held_usd`). Unpriced estimates
(no catalogue price) count as zero and their hours are reported. Rows with no job are the unattributed
bucket; their technique is "unattributed". Jobs billed under a tag the registry does not know have
technique "unknown".

Cost per 1,000 samples (per million tokens) of a technique is its period spend on jobs whose samples
are known over the samples those jobs processed in the period, taking a job's samples in the period as
its period spend over its cost per sample (lifetime cost / samples processed, from `job_cost_summary`).

The forecast to period end (open periods only) is the spend so far, plus what `budget_status` expects
the rest of the period to add for each category it has a row of this period for, plus, for spend of
categories without such a row, the period's average hourly rate so far continued to its end.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ftops.costs.periods import PeriodWindow
from ftops.costs.summary import job_cost_summary
from ftops.costs.budgets import ladder_levels
from ftops.policy import BudgetPolicy
from ftops.reports.periods import previous_period

HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)
UNATTRIBUTED, UNKNOWN, NONE = "unattributed", "unknown", "(none)"
JOB_ATTRIBUTES = ("name", "technique", "domain", "base_model", "model_params_b", "gpu_type", "gpu_count",
                  "instance_type", "pricing")
CONFIGURATION = ("technique", "base_model", "gpu_type", "gpu_count", "instance_type", "pricing")


def _in_window(costs: pd.DataFrame, window: PeriodWindow) -> pd.Series:
    starts = costs["period_start"]
    return (starts >= window.start) & (starts < window.end)


def _held(costs: pd.DataFrame) -> pd.Series:
    return costs["suspicious"].astype("boolean").fillna(False).astype(bool)


def period_rows(job_costs: pd.DataFrame, jobs: pd.DataFrame, window: PeriodWindow) -> pd.DataFrame:
    """The period's spend rows (held lines left out) with their job's attributes and a `team` column."""
    rows = job_costs[(_in_window(job_costs, window) & ~_held(job_costs)).to_numpy()].copy()
    rows["cost_usd"] = pd.to_numeric(rows["cost_usd"], errors="coerce").astype("float64")
    registry = jobs.drop_duplicates("job_id").set_index("job_id")
    registry.index = registry.index.astype("string")
    keys = rows["job_id"].astype("string")
    for column in JOB_ATTRIBUTES:
        values = registry[column] if column in registry else pd.Series(index=registry.index, dtype="object")
        rows[column] = values.reindex(keys).to_numpy()
    known = keys.isin(registry.index).to_numpy()
    technique = rows["technique"].astype("string").fillna(UNKNOWN)
    technique[~known] = UNKNOWN
    technique[rows["job_id"].isna().to_numpy()] = UNATTRIBUTED
    rows["technique"] = technique.to_numpy()
    rows["budget_category"] = rows["budget_category"].astype("string").fillna(NONE)
    rows["domain"] = rows["domain"].astype("string").fillna(NONE)
    rows["day"] = rows["period_start"].dt.floor("D")
    return rows.reset_index(drop=True)


def teams(job_costs: pd.DataFrame, line_items: pd.DataFrame | None, tag_key: str) -> pd.Series:
    """Per job_costs row: the value of tag `tag_key` on its bill line; estimates take their job's
    (the value most of its tagged lines carry); null where nothing says."""
    empty = pd.Series(pd.NA, index=job_costs.index, dtype="string")
    if line_items is None or line_items.empty or "tags" not in line_items or job_costs.empty:
        return empty
    tags = line_items.dropna(subset=["tags"]).drop_duplicates("line_item_id")
    values = pd.Series([_tag(t, tag_key) for t in tags["tags"].to_numpy()], index=tags["line_item_id"].astype("string"),
                       dtype="string")  # one parse per bill line, not per sample
    team = values.reindex(job_costs["line_item_id"].astype("string")).set_axis(job_costs.index)
    tagged = pd.DataFrame({"job_id": job_costs["job_id"].astype("string"), "team": team}).dropna()
    if tagged.empty:
        return team
    by_job = tagged.groupby("job_id")["team"].agg(lambda s: s.value_counts().index[0])
    return team.fillna(pd.Series(by_job.reindex(job_costs["job_id"].astype("string")).to_numpy(),
                                 index=job_costs.index, dtype="string"))


def _tag(text: object, key: str) -> str | None:
    try:
        value = json.loads(text).get(key) if isinstance(text, str) else None
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def _by(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """Spend per `key` value and technique (long form: one colour per technique on the chart)."""
    if rows.empty:
        return pd.DataFrame({key: pd.Series(dtype="string"), "technique": pd.Series(dtype="string"),
                             "cost_usd": pd.Series(dtype="float64"), "jobs": pd.Series(dtype="int64")})
    out = rows.groupby([key, "technique"], dropna=False).agg(cost_usd=("cost_usd", "sum"),
                                                           jobs=("job_id", "nunique")).reset_index()
    return out.sort_values(["cost_usd"], ascending=False, ignore_index=True)


def _technique_table(rows: pd.DataFrame, per_job: pd.DataFrame, total: float) -> pd.DataFrame:
    grouped = rows.groupby("technique").agg(cost_usd=("cost_usd", "sum"), jobs=("job_id", "nunique"))
    spend = rows.dropna(subset=["job_id"]).groupby(rows["job_id"].astype("string"))["cost_usd"].sum()
    unit = per_job.set_index("job_id").reindex(spend.index)
    samples = spend / unit["cost_per_sample_usd"].where(unit["cost_per_sample_usd"] > 0)
    tokens = spend / unit["cost_per_token_usd"].where(unit["cost_per_token_usd"] > 0)
    technique = rows.dropna(subset=["job_id"]).groupby(rows["job_id"].astype("string"))["technique"].first()
    jobs = pd.DataFrame({"technique": technique, "spend": spend, "samples": samples, "tokens": tokens})
    with_samples = jobs.dropna(subset=["samples"]).groupby("technique")[["spend", "samples"]].sum()
    with_tokens = jobs.dropna(subset=["tokens"]).groupby("technique")[["spend", "tokens"]].sum()
    out = grouped.join(with_samples.rename(columns={"spend": "spend_with_samples"}))
    out = out.join(with_tokens.rename(columns={"spend": "spend_with_tokens"}))
    out["share_pct"] = out["cost_usd"] / total * 100 if total else np.nan
    out["samples_processed"] = out["samples"]
    out["tokens_processed"] = out["tokens"]
    out["usd_per_1k_samples"] = out["spend_with_samples"] / out["samples"].where(out["samples"] > 0) * 1e3
    out["usd_per_million_tokens"] = out["spend_with_tokens"] / out["tokens"].where(out["tokens"] > 0) * 1e6
    columns = ["technique", "cost_usd", "share_pct", "jobs", "samples_processed", "usd_per_1k_samples",
               "tokens_processed", "usd_per_million_tokens"]
    out = out.reset_index()
    return out[columns].astype({"technique": "string"}).sort_values("cost_usd", ascending=False, ignore_index=True)


def _daily(rows: pd.DataFrame, window: PeriodWindow) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame({"day": pd.Series(dtype="datetime64[ns, UTC]"), "technique": pd.Series(dtype="string"),
                             "cost_usd": pd.Series(dtype="float64")})
    return rows.groupby(["day", "technique"]).agg(cost_usd=("cost_usd", "sum")).reset_index()


def _top_jobs(rows: pd.DataFrame, total: float, top: int) -> pd.DataFrame:
    attributed = rows.dropna(subset=["job_id"])
    columns = ["job_id", "name", "technique", "domain", "budget_category", "team", "base_model", "gpu_type",
               "gpu_count", "pricing"]
    out = attributed.groupby("job_id").agg(
        **{c: (c, "first") for c in columns if c != "job_id"}, cost_usd=("cost_usd", "sum"),
        estimated_usd=("estimated_cost", "sum"),
    ).reset_index()
    out["share_pct"] = out["cost_usd"] / total * 100 if total else np.nan
    return out.sort_values("cost_usd", ascending=False, ignore_index=True).head(top)


def _top_configurations(rows: pd.DataFrame, total: float, top: int) -> pd.DataFrame:
    attributed = rows.dropna(subset=["job_id"])
    out = attributed.groupby(list(CONFIGURATION), dropna=False).agg(
        cost_usd=("cost_usd", "sum"), jobs=("job_id", "nunique")).reset_index()
    out["share_pct"] = out["cost_usd"] / total * 100 if total else np.nan
    return out.sort_values("cost_usd", ascending=False, ignore_index=True).head(top)


def _unattributed(rows: pd.DataFrame) -> pd.DataFrame:
    columns = ["provider", "service_name", "resource_id", "budget_category"]
    bucket = rows[rows["job_id"].isna().to_numpy()]
    out = bucket.groupby(columns, dropna=False).agg(cost_usd=("cost_usd", "sum"), lines=("cost_usd", "size"))
    return out.reset_index().sort_values("cost_usd", ascending=False, ignore_index=True)


def _period_status(budget_status: pd.DataFrame | None, window: PeriodWindow) -> pd.DataFrame:
    """budget_status rows of this period (a table without `period_key` holds the current period only)."""
    if budget_status is None or budget_status.empty:
        return pd.DataFrame()
    status = budget_status
    if "period_key" in status:
        status = status[status["period_key"].astype("string").eq(window.key).fillna(False).to_numpy()]
    out = status.copy()
    out["budget_category"] = out["budget_category"].astype("string").fillna(NONE)
    return out.drop_duplicates("budget_category", keep="last").set_index("budget_category")


def _budgets(rows: pd.DataFrame, status: pd.DataFrame, budgets: dict[str, BudgetPolicy], window: PeriodWindow,
             as_of: pd.Timestamp) -> pd.DataFrame:
    """Per category: spend, limit and thresholds of a budget of this period's kind, forecast."""
    spend = rows.groupby("budget_category")["cost_usd"].sum()
    mine = {name: p for name, p in budgets.items() if p.period == window.period}
    names = sorted(set(spend.index) | set(mine) | set(status.index))
    records = []
    elapsed = max(min(as_of, window.end) - window.start, pd.Timedelta(0)) / HOUR
    left = max(window.end - max(as_of, window.start), pd.Timedelta(0)) / HOUR
    for name in names:
        policy = mine.get(name)
        spent = float(spend.get(name, 0.0))
        if name in status.index and pd.notna(status.at[name, "forecast_period_end_usd"]):
            forecast, basis = spent + max(float(status.at[name, "forecast_period_end_usd"])
                                          - float(status.at[name, "spend_usd"]), 0.0), "budget_status"
        else:
            forecast, basis = spent + (spent / elapsed * left if elapsed > 0 else 0.0), "average rate"
        limit = policy.limit_usd if policy else None
        records.append({
            "budget_category": name, "limit_usd": limit, "mode": policy.mode if policy else None,
            "spend_usd": spent, "usage_pct": spent / limit * 100 if limit else None,
            "remaining_usd": limit - spent if limit is not None else None,
            "forecast_period_end_usd": forecast, "forecast_usage_pct": forecast / limit * 100 if limit else None,
            "forecast_basis": basis if left > 0 else "closed",
            "alert_thresholds_pct": json.dumps(sorted(policy.alert_thresholds_pct)) if policy else "[]",
            "ladder_levels_pct": json.dumps(ladder_levels(policy.ladder)) if policy else "{}",
            "thresholds_crossed": json.dumps([t for t in sorted(policy.alert_thresholds_pct)
                                              if spent / limit * 100 >= t]) if policy and limit else "[]",
        })
    columns = ["budget_category", "limit_usd", "mode", "spend_usd", "usage_pct", "remaining_usd",
               "forecast_period_end_usd", "forecast_usage_pct", "forecast_basis", "alert_thresholds_pct",
               "ladder_levels_pct", "thresholds_crossed"]
    out = pd.DataFrame.from_records(records, columns=columns)
    return out.astype({"limit_usd": "float64", "usage_pct": "float64", "remaining_usd": "float64",
                       "forecast_usage_pct": "float64"})


def _burn_down(rows: pd.DataFrame, budget_table: pd.DataFrame, window: PeriodWindow,
               as_of: pd.Timestamp) -> pd.DataFrame:
    """Per category: cumulative spend at the end of each day up to as_of, then the forecast at period end."""
    last = min(as_of, window.end)
    ends = pd.date_range(window.start + DAY, window.end, freq="D")
    ends = ends[ends - DAY < last]  # days that have begun
    if len(ends) == 0 or budget_table.empty:
        return pd.DataFrame({"budget_category": pd.Series(dtype="string"), "at": pd.Series(dtype="datetime64[ns, UTC]"),
                             "cumulative_usd": pd.Series(dtype="float64"), "kind": pd.Series(dtype="string"),
                             "limit_usd": pd.Series(dtype="float64")})
    daily = rows.groupby(["budget_category", "day"])["cost_usd"].sum().unstack("budget_category")
    daily = daily.reindex(ends - DAY).fillna(0.0).reindex(columns=budget_table["budget_category"], fill_value=0.0)
    actual = daily.cumsum().set_axis(ends.where(ends <= last, last)).stack().rename("cumulative_usd").reset_index()
    actual.columns = ["at", "budget_category", "cumulative_usd"]
    actual["kind"] = "actual"
    frames = [actual]
    if as_of < window.end:
        forecast = budget_table[["budget_category", "forecast_period_end_usd"]].rename(
            columns={"forecast_period_end_usd": "cumulative_usd"})
        frames.append(forecast.assign(at=window.end, kind="forecast"))
    out = pd.concat(frames, ignore_index=True)
    out = out.merge(budget_table[["budget_category", "limit_usd"]], on="budget_category", how="left")
    return out[["budget_category", "at", "cumulative_usd", "kind", "limit_usd"]].astype(
        {"budget_category": "string", "kind": "string"})


def savings(instance_recommendations: pd.DataFrame | None, spot_plans: pd.DataFrame | None,
            benchmark_recommendations: pd.DataFrame | None) -> pd.DataFrame:
    """What the optimisation tables found: one row per proposal with its saving and what it is per."""
    frames = []
    recs = instance_recommendations
    if recs is not None and not recs.empty:
        best = recs[(pd.to_numeric(recs["rank"], errors="coerce") == 1)
                    & recs["worth_switching"].astype("boolean").fillna(False).astype(bool)]
        frames.append(pd.DataFrame({
            "source": "instance_recommendations", "job_id": best["job_id"],
            "proposal": ("move from " + best["current_instance_type"].astype("string").fillna("?") + " ("
                         + best["current_pricing"].astype("string").fillna("?") + ") to "
                         + best["instance_type"].astype("string").fillna("?") + " ("
                         + best["pricing"].astype("string").fillna("?") + ")"),
            "saving_usd": best["current_cost_usd"] - best["expected_cost_usd"], "per": "job run"}))
    plans = spot_plans
    if plans is not None and not plans.empty:
        moving = plans[plans["change"].astype("boolean").fillna(False).astype(bool)]
        frames.append(pd.DataFrame({
            "source": "spot_plans", "job_id": moving["job_id"],
            "proposal": ("run on " + moving["pricing"].astype("string").fillna("?") + " with checkpoints every "
                         + moving["checkpoint_interval_minutes"].round(0).astype("string").fillna("?") + " min"),
            "saving_usd": moving["on_demand_cost_usd"] - moving["expected_cost_usd"], "per": "job run"}))
    bench = benchmark_recommendations
    if bench is not None and not bench.empty:
        moves = bench[bench["kind"].astype("string").eq("move").fillna(False).to_numpy()]
        frames.append(pd.DataFrame({
            "source": "benchmark_recommendations", "job_id": moves["from_job_ids"],
            "proposal": ("move " + moves["technique"].astype("string").fillna("?") + " "
                         + moves["model_size"].astype("string").fillna("") + " from "
                         + moves["from_configuration"].astype("string").fillna("?") + " to "
                         + moves["to_configuration"].astype("string").fillna("?")),
            "saving_usd": moves["saving_usd_per_month"], "per": "month"}))
    columns = ["source", "job_id", "proposal", "saving_usd", "per"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c == "saving_usd" else "string") for c in columns})
    out = pd.concat(frames, ignore_index=True)[columns]
    out["saving_usd"] = pd.to_numeric(out["saving_usd"], errors="coerce").astype("float64")
    out = out[out["saving_usd"] > 0]
    return out.astype({c: "string" for c in columns if c != "saving_usd"}).sort_values(
        "saving_usd", ascending=False, ignore_index=True)


def cost_report_tables(
    window: PeriodWindow,
    job_costs: pd.DataFrame,
    jobs: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    budget_status: pd.DataFrame | None = None,
    budgets: dict[str, BudgetPolicy] | None = None,
    line_items: pd.DataFrame | None = None,
    progress: pd.DataFrame | None = None,
    instance_recommendations: pd.DataFrame | None = None,
    spot_plans: pd.DataFrame | None = None,
    benchmark_recommendations: pd.DataFrame | None = None,
    tag_key: str = "team",
    top: int = 15,
) -> dict[str, pd.DataFrame]:
    """Every table of the report for `window`, evaluated as of `as_of` (contract frames in)."""
    costs = job_costs.copy()
    costs["team"] = teams(costs, line_items, tag_key).fillna("(untagged)")
    rows = period_rows(costs, jobs, window)
    rows["estimated_cost"] = rows["cost_usd"].where(rows["estimated"].astype(bool), 0.0)
    previous = period_rows(costs, jobs, previous_period(window))
    held = costs[(_in_window(costs, window) & _held(costs)).to_numpy()]
    total = float(rows["cost_usd"].sum())
    before = float(previous["cost_usd"].sum())

    status = _period_status(budget_status, window)
    budget_table = _budgets(rows, status, budgets or {}, window, as_of)
    forecast = float(budget_table["forecast_period_end_usd"].sum()) if not budget_table.empty else total
    per_job = job_cost_summary(job_costs, jobs, progress, now=as_of)[["job_id", "cost_per_sample_usd",
                                                                      "cost_per_token_usd"]]
    unattributed = rows["job_id"].isna()
    summary = pd.DataFrame([{
        "period": window.period, "period_key": window.key, "period_start": window.start, "period_end": window.end,
        "as_of": as_of, "closed": bool(as_of >= window.end), "total_usd": total,
        "billed_usd": float(rows.loc[~rows["estimated"].astype(bool), "cost_usd"].sum()),
        "estimated_usd": float(rows["estimated_cost"].sum()),
        "unattributed_usd": float(rows.loc[unattributed, "cost_usd"].sum()),
        "held_usd": float(pd.to_numeric(held["cost_usd"], errors="coerce").sum()),
        "unpriced_hours": float(rows.loc[rows["cost_usd"].isna(), "running_hours"].sum()),
        "previous_period_key": previous_period(window).key, "previous_total_usd": before,
        "change_usd": total - before, "change_pct": (total - before) / before * 100 if before else np.nan,
        "forecast_period_end_usd": forecast, "jobs": int(rows["job_id"].nunique()),
    }])
    return {
        "summary": summary,
        "by_technique": _technique_table(rows, per_job, total),
        "by_domain": _by(rows, "domain"),
        "by_budget_category": _by(rows, "budget_category"),
        "by_team": _by(rows, "team"),
        "daily": _daily(rows, window),
        "top_jobs": _top_jobs(rows, total, top),
        "top_configurations": _top_configurations(rows, total, top),
        "budgets": budget_table,
        "burn_down": _burn_down(rows, budget_table, window, as_of),
        "unattributed": _unattributed(rows),
        "savings": savings(instance_recommendations, spot_plans, benchmark_recommendations),
    }
