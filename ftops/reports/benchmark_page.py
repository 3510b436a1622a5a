"""The benchmark comparison as a page (§2.1, §2.3): performance per dollar of every measured
configuration, the best of each group, and the recommendations with the runs behind them.

Page at `<reports>/benchmark/index.html`; runs link to their job pages (`../jobs/...`).
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go

from ftops.reports.html import Page, styled, technique_color
from ftops.reports.job_page import job_page_href

BENCHMARK_FOLDER = "benchmark"
MAX_RUN_LINKS = 25  # per recommendation side; the rest are counted

# (x: cost per unit, y: throughput, unit label) of each scatter, when the comparison has the numbers
_SCATTERS = (
    ("usd_per_million_tokens", "tokens_per_second", "USD per 1M tokens", "tokens/s"),
    ("usd_per_1k_samples", "samples_per_second", "USD per 1k samples", "samples/s"),
)
_BEST_COLUMNS = ["technique", "configuration", "jobs", "samples_per_second", "tokens_per_second", "usd_per_hour",
                 "usd_per_1k_samples", "usd_per_million_tokens", "price_basis"]
_ALL_COLUMNS = ["technique", "configuration", "rank_in_group", "jobs", "samples_per_second", "tokens_per_second",
                "gpu_utilization_pct", "usd_per_hour", "usd_per_1k_samples", "usd_per_million_tokens"]
_HEADERS = {"rank_in_group": "rank", "samples_per_second": "samples/s", "tokens_per_second": "tokens/s",
            "gpu_utilization_pct": "GPU util %", "usd_per_hour": "USD/h", "usd_per_1k_samples": "USD/1k samples",
            "usd_per_million_tokens": "USD/1M tokens", "price_basis": "price basis", "jobs": "runs"}


def _shown(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[[c for c in columns if c in frame]].rename(columns=_HEADERS)


def scatter(comparison: pd.DataFrame, x: str, y: str, x_title: str, y_title: str) -> go.Figure | None:
    """Throughput against cost per unit, one colour per technique; the best of each group is a star."""
    rows = comparison[comparison[x].notna() & comparison[y].notna()] if x in comparison and y in comparison else None
    if rows is None or rows.empty:
        return None
    fig = go.Figure()
    technique = rows["technique"].astype("string").fillna("unknown")
    best = rows["best_in_group"].fillna(False).astype(bool)
    for name in sorted(technique.unique()):
        mine = rows[technique == name]
        star = best[technique == name]
        fig.add_trace(go.Scatter(
            x=mine[x], y=mine[y], mode="markers", name=str(name),
            marker={"color": technique_color(name), "size": star.map({True: 16, False: 10}).tolist(),
                    "symbol": star.map({True: "star", False: "circle"}).tolist(),
                    "line": {"width": 1, "color": "#333"}},
            hovertext=(mine["configuration"].astype(str) + "<br>" + mine["jobs"].astype(str) + " run(s)"
                       + star.map({True: "<br>best in its group", False: ""})),
            hoverinfo="text+x+y",
        ))
    fig = styled(fig, f"Performance per dollar: {y_title} against {x_title} (star: best in its group)",
                 x_title, y_title)
    fig.update_layout(hovermode="closest")
    return fig


def _run_links(job_ids: object) -> str:
    ids = [j for j in str(job_ids).split(",") if j] if isinstance(job_ids, str) else []
    if not ids:
        return "none named"
    links = ", ".join(f"<a href='{html.escape(job_page_href(j))}'>{html.escape(j)}</a>" for j in ids[:MAX_RUN_LINKS])
    more = f" and {len(ids) - MAX_RUN_LINKS} more" if len(ids) > MAX_RUN_LINKS else ""
    return links + more


def _pct(value: object) -> str:
    return "" if value is None or pd.isna(value) else f"{value:+.0f}%"


def _recommendation_items(recommendations: pd.DataFrame) -> str:
    items = []
    ranked = recommendations.sort_values("saving_usd_per_month", ascending=False, na_position="last", kind="stable")
    for rec in ranked.to_dict("records"):
        facts = [f"cost {_pct(rec.get('cost_change_pct'))}" if _pct(rec.get("cost_change_pct")) else "",
                 f"time {_pct(rec.get('time_change_pct'))}" if _pct(rec.get("time_change_pct")) else "",
                 (f"saves {rec['saving_usd_per_month']:,.0f} USD/month"
                  if rec.get("saving_usd_per_month") is not None and not pd.isna(rec["saving_usd_per_month"]) else "")]
        facts_text = " · ".join(f for f in facts if f)
        if rec.get("kind") == "move":
            runs = (f"<br>runs on {html.escape(str(rec.get('from_configuration') or '-'))}: "
                    f"{_run_links(rec.get('from_job_ids'))}"
                    f"<br>runs on {html.escape(str(rec.get('to_configuration') or '-'))}: "
                    f"{_run_links(rec.get('to_job_ids'))}")
        else:
            runs = f"<br>runs behind it: {_run_links(rec.get('job_ids'))}"
        items.append(f"<li><b>{html.escape(str(rec.get('kind')))}</b> {html.escape(str(rec.get('message') or ''))}"
                     + (f" <span class='note'>({html.escape(facts_text)})</span>" if facts_text else "")
                     + runs + "</li>")
    return "<ul>" + "".join(items) + "</ul>"


def benchmark_page(comparison: pd.DataFrame, recommendations: pd.DataFrame | None = None) -> Page:
    """The page from benchmark_comparison and benchmark_recommendations rows."""
    recommendations = recommendations if recommendations is not None else pd.DataFrame()
    page = Page("Benchmark: performance per dollar",
                "Observed throughput of each configuration (technique, model size, GPUs, micro-batch, sequence "
                "length, precision, pricing) against what it costs per unit of work.")
    savings = (recommendations["saving_usd_per_month"].sum()
               if "saving_usd_per_month" in recommendations and len(recommendations) else 0.0)
    page.figures([
        ("configurations", f"{len(comparison):,}"),
        ("runs measured", f"{int(comparison['jobs'].sum()):,}" if len(comparison) else "0"),
        ("recommendations", f"{len(recommendations):,}"),
        ("possible saving (USD/month)", f"{savings:,.0f}"),
    ])
    if comparison.empty:
        page.text("No configuration measured yet: the comparison needs finished or long-running jobs with "
                  "throughput samples and a price.")
    for x, y, x_title, y_title in _SCATTERS:
        fig = scatter(comparison, x, y, x_title, y_title) if len(comparison) else None
        if fig is not None:
            page.chart(fig)

    page.heading("Best configuration of each group")
    if len(comparison):
        best = comparison[comparison["best_in_group"].fillna(False).astype(bool)]
        best = best.sort_values(["technique", "model_params_b"], na_position="last", kind="stable")
        page.table(_shown(best, _BEST_COLUMNS), max_rows=100)
    else:
        page.text("none yet")

    page.heading("Recommendations")
    if recommendations.empty:
        page.text("No recommendation: no cheaper measured configuration for the same work, and nothing to calibrate.")
    else:
        page.raw(_recommendation_items(recommendations))

    page.heading("Every configuration")
    if len(comparison):
        ordered = comparison.sort_values(["technique", "model_params_b", "rank_in_group"], na_position="last",
                                         kind="stable")
        page.table(_shown(ordered, _ALL_COLUMNS), max_rows=200)
        page.heading("Runs behind each configuration")
        page.raw("<ul>" + "".join(
            f"<li>{html.escape(str(r['configuration']))}: {_run_links(r['job_ids'])}</li>"
            for r in ordered[["configuration", "job_ids"]].head(200).to_dict("records")) + "</ul>")
    else:
        page.text("none yet")
    return page
