"""The cost report of a period as files: `index.html`, `burn_down.html` and one Parquet file per table.

Both pages are self-contained (plotly.js embedded): they open offline from the folder, an artifact
store or an e-mail. Every chart keeps one colour per technique, labels its axes with units and shows
values on hover. The tables beside the pages hold the same numbers (`cost_figures.cost_report_tables`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from ftops.reports.html import Page, styled, technique_color

INDEX, BURN_DOWN = "index.html", "burn_down.html"
USD = "%{y:$,.2f}"
LIMIT_COLOR, THRESHOLD_COLOR, LADDER_COLOR, SPEND_COLOR = "#CC3311", "#EE7733", "#AA3377", "#0077BB"


@dataclass(frozen=True)
class ReportFiles:
    index: Path
    burn_down: Path
    tables: dict[str, Path] = field(default_factory=dict)
    markdown: str = ""


def _money(value: float | None) -> str:
    return "-" if value is None or pd.isna(value) else f"${value:,.2f}"


def _pct(value: float | None, signed: bool = False) -> str:
    return "-" if value is None or pd.isna(value) else (f"{value:+.1f}%" if signed else f"{value:.1f}%")


def _stacked_by_technique(frame: pd.DataFrame, key: str, title: str, key_title: str) -> go.Figure:
    """Horizontal bars of spend per `key`, stacked by technique (one colour per technique)."""
    order = frame.groupby(key)["cost_usd"].sum().sort_values().index.tolist()
    fig = go.Figure()
    for technique, part in frame.groupby("technique", sort=True):
        fig.add_bar(y=part[key], x=part["cost_usd"], orientation="h", name=str(technique),
                    marker_color=technique_color(technique), hovertemplate="%{y}: %{x:$,.2f}<extra>%{fullData.name}"
                                                                           "</extra>")
    fig.update_layout(barmode="stack", hovermode="closest")
    fig.update_yaxes(categoryorder="array", categoryarray=order)
    styled(fig, title, "Cost (USD)", key_title)
    return fig.update_layout(hovermode="closest")


def _technique_bars(frame: pd.DataFrame, column: str, title: str, y_title: str, fmt: str = USD) -> go.Figure:
    shown = frame.dropna(subset=[column])
    fig = go.Figure(go.Bar(x=shown["technique"], y=shown[column], marker_color=[technique_color(t) for t in
                                                                                 shown["technique"]],
                           hovertemplate="%{x}: " + fmt + "<extra></extra>"))
    return styled(fig, title, "Technique", y_title).update_layout(hovermode="closest", showlegend=False)


def _daily_chart(daily: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for technique, part in daily.groupby("technique", sort=True):
        fig.add_bar(x=part["day"], y=part["cost_usd"], name=str(technique), marker_color=technique_color(technique),
                    hovertemplate=USD)
    fig.update_layout(barmode="stack")
    return styled(fig, "Daily cost by technique", "Day (UTC)", "Cost (USD per day)")


def _cumulative_chart(daily: pd.DataFrame, summary: pd.Series) -> go.Figure:
    per_day = daily.groupby("day")["cost_usd"].sum().sort_index()
    ends = per_day.index + pd.Timedelta(days=1)
    ends = ends.where(ends <= summary["as_of"], summary["as_of"])
    fig = go.Figure(go.Scatter(x=[summary["period_start"], *ends], y=[0.0, *per_day.cumsum()], mode="lines+markers",
                               name="spend so far", line={"color": SPEND_COLOR}, hovertemplate=USD))
    if not summary["closed"]:
        so_far = float(per_day.sum())
        fig.add_scatter(x=[summary["as_of"], summary["period_end"]], y=[so_far, summary["forecast_period_end_usd"]],
                        mode="lines+markers", name="forecast to period end", hovertemplate=USD,
                        line={"color": SPEND_COLOR, "dash": "dash"})
    return styled(fig, "Cumulative cost and forecast to period end", "Time (UTC)", "Cumulative cost (USD)")


def _burn_down_chart(points: pd.DataFrame, budget: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> go.Figure:
    name = budget["budget_category"]
    actual = points[points["kind"] == "actual"].sort_values("at")
    fig = go.Figure(go.Scatter(x=[start, *actual["at"]], y=[0.0, *actual["cumulative_usd"]], mode="lines+markers",
                               name="cumulative spend", line={"color": SPEND_COLOR}, hovertemplate=USD))
    forecast = points[points["kind"] == "forecast"]
    if not forecast.empty and not actual.empty:
        fig.add_scatter(x=[actual["at"].iloc[-1], end], y=[actual["cumulative_usd"].iloc[-1],
                                                           forecast["cumulative_usd"].iloc[0]],
                        mode="lines+markers", name="forecast", line={"color": SPEND_COLOR, "dash": "dash"},
                        hovertemplate=USD)
    limit = budget["limit_usd"]
    if pd.notna(limit):
        fig.add_scatter(x=[start, end], y=[limit, limit], mode="lines", name=f"limit {_money(limit)}",
                        line={"color": LIMIT_COLOR, "width": 2}, hovertemplate=USD)
        for pct in json.loads(budget["alert_thresholds_pct"]):
            fig.add_scatter(x=[start, end], y=[limit * pct / 100] * 2, mode="lines", name=f"alert {pct:g}%",
                            line={"color": THRESHOLD_COLOR, "dash": "dot", "width": 1}, hovertemplate=USD)
        for step, pct in json.loads(budget["ladder_levels_pct"]).items():
            fig.add_scatter(x=[start, end], y=[limit * pct / 100] * 2, mode="lines",
                            name=f"{step.replace('_', ' ')} {pct:g}%",
                            line={"color": LADDER_COLOR, "dash": "dashdot", "width": 1}, hovertemplate=USD)
    title = f"Budget burn-down: {name}" + ("" if pd.notna(limit) else " (no budget of this period)")
    return styled(fig, title, "Time (UTC)", "Cumulative spend (USD)")


def _budget_rows(budgets: pd.DataFrame) -> pd.DataFrame:
    return budgets[["budget_category", "mode", "limit_usd", "spend_usd", "usage_pct", "forecast_period_end_usd",
                    "forecast_usage_pct", "forecast_basis", "alert_thresholds_pct", "thresholds_crossed"]]


def _burn_down_section(page: Page, tables: dict[str, pd.DataFrame], summary: pd.Series) -> None:
    budgets, points = tables["budgets"], tables["burn_down"]
    if budgets.empty:
        page.text("No budget and no spend in this period.")
        return
    page.table(_budget_rows(budgets))
    for _, budget in budgets.iterrows():  # one chart per category: a handful of rows
        mine = points[points["budget_category"] == budget["budget_category"]]
        page.chart(_burn_down_chart(mine, budget, summary["period_start"], summary["period_end"]))


def _pivot(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.groupby(key).agg(cost_usd=("cost_usd", "sum")).sort_values("cost_usd", ascending=False).reset_index()


def _headline(summary: pd.Series) -> list[tuple[str, str]]:
    change = (f"{_money(summary['change_usd'])} ({_pct(summary['change_pct'], signed=True)}) vs "
              f"{summary['previous_period_key']}")
    items = [("total cost", _money(summary["total_usd"])), ("change", change)]
    if not summary["closed"]:
        items.append(("forecast to period end", _money(summary["forecast_period_end_usd"])))
    items += [("estimated (not billed yet)", _money(summary["estimated_usd"])),
              ("unattributed", _money(summary["unattributed_usd"])),
              ("held as suspicious (not counted)", _money(summary["held_usd"]))]
    return items


def _subtitle(summary: pd.Series) -> str:
    state = "closed" if summary["closed"] else f"in progress, as of {summary['as_of']:%Y-%m-%d %H:%M} UTC"
    return (f"{summary['period_start']:%Y-%m-%d} to {summary['period_end'] - pd.Timedelta(days=1):%Y-%m-%d} "
            f"({state}). Spend is billed + estimated cost; lines held as suspicious are not counted.")


def cost_page(tables: dict[str, pd.DataFrame]) -> Page:
    summary = tables["summary"].iloc[0]
    page = Page(f"Cost report {summary['period_key']}", _subtitle(summary)).figures(_headline(summary))
    page.raw(f"<p><a href='{BURN_DOWN}'>Budget burn-down page</a> · tables beside this page: "
             + ", ".join(f"<a href='{name}.parquet'>{name}</a>" for name in tables) + "</p>")
    if summary["total_usd"] == 0 and tables["daily"].empty:
        page.text("No spend in this period.")
    by_technique = tables["by_technique"]
    page.heading("Cost by technique")
    if not by_technique.empty:
        page.chart(_technique_bars(by_technique, "cost_usd", "Cost by technique", "Cost (USD)"))
    page.table(by_technique)
    page.heading("Daily trend")
    if not tables["daily"].empty:
        page.chart(_daily_chart(tables["daily"]))
        page.chart(_cumulative_chart(tables["daily"], summary))
    else:
        page.text("No spend in this period.")
    for key, title, axis in (("domain", "Cost by domain", "Domain"),
                             ("budget_category", "Cost by budget category", "Budget category"),
                             ("team", "Cost by team (bill tag)", "Team")):
        frame = tables[f"by_{key}"]
        page.heading(title)
        if not frame.empty:
            page.chart(_stacked_by_technique(frame, key, title, axis))
        page.table(_pivot(frame, key))
    page.heading("Top cost drivers: jobs").table(tables["top_jobs"])
    page.heading("Top cost drivers: configurations").table(tables["top_configurations"])
    page.heading("Budget status and burn-down")
    _burn_down_section(page, tables, summary)
    page.heading("Unit cost by technique")
    units = by_technique[by_technique["usd_per_1k_samples"].notna() | by_technique["usd_per_million_tokens"].notna()]
    if units.empty:
        page.text("No job with a known sample count had spend in this period.", css="note")
    else:
        page.chart(_technique_bars(units, "usd_per_1k_samples", "Cost per 1,000 samples",
                                   "Cost (USD per 1,000 samples)"))
        page.chart(_technique_bars(units, "usd_per_million_tokens", "Cost per million tokens",
                                   "Cost (USD per million tokens)"))
        page.text("A job's samples in the period are its period spend over its cost per sample; tokens are "
                  "samples x sequence length (padding counted).", css="note")
    page.heading("Unattributed cost")
    page.text(f"{_money(summary['unattributed_usd'])} of bill lines matched no job.")
    page.table(tables["unattributed"])
    page.heading("Savings found by optimisation")
    saving = tables["savings"]
    if saving.empty:
        page.text("No saving proposed (or the optimisation tables were not built yet).", css="note")
    else:
        totals = saving.groupby(["source", "per"]).agg(saving_usd=("saving_usd", "sum"),
                                                       proposals=("saving_usd", "size")).reset_index()
        page.table(totals).table(saving)
    return page


def burn_down_page(tables: dict[str, pd.DataFrame]) -> Page:
    summary = tables["summary"].iloc[0]
    page = Page(f"Budget burn-down {summary['period_key']}", _subtitle(summary))
    page.raw(f"<p><a href='{INDEX}'>Cost report</a></p>")
    _burn_down_section(page, tables, summary)
    return page


def markdown_summary(tables: dict[str, pd.DataFrame]) -> str:
    summary = tables["summary"].iloc[0]
    lines = [f"**Cost {summary['period_key']}**: {_money(summary['total_usd'])} "
             f"({_pct(summary['change_pct'], signed=True)} vs {summary['previous_period_key']})"]
    if not summary["closed"]:
        lines.append(f"Forecast to period end: {_money(summary['forecast_period_end_usd'])}")
    lines.append(f"Unattributed: {_money(summary['unattributed_usd'])}; held as suspicious: "
                 f"{_money(summary['held_usd'])}")
    lines.append("")
    technique = tables["by_technique"][["technique", "cost_usd", "share_pct", "usd_per_1k_samples"]]
    lines.append(technique.round(2).to_markdown(index=False) if not technique.empty else "No spend in this period.")
    budgets = tables["budgets"]
    if not budgets.empty:
        lines += ["", budgets[["budget_category", "limit_usd", "spend_usd", "usage_pct", "forecast_period_end_usd"]]
                  .round(2).to_markdown(index=False)]
    return "\n".join(lines)


def write_cost_report(tables: dict[str, pd.DataFrame], folder: str | Path) -> ReportFiles:
    """Write the tables, then the two pages (each atomically) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in tables.items():
        path = folder / f"{name}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        paths[name] = path
    burn_down = burn_down_page(tables).write(folder / BURN_DOWN)
    index = cost_page(tables).write(folder / INDEX)
    return ReportFiles(index=index, burn_down=burn_down, tables=paths, markdown=markdown_summary(tables))

