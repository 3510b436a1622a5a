"""One page per job (§1.2): its curves with its alerts marked where they fired, and its cost so far.

This is where a person goes from "an alert fired" to "I see why": every chart shares the time axis
(UTC), and each alert is a dotted vertical line at its `started_at`, labelled with its rule and
severity, plus a marker on the curve of the metric its rule reads (on that alert's GPU when it has
one). Alerts whose metric has no chart here (heartbeat, CPU, host memory, domain accuracy) are
marked on the first chart.

Pages are written to `<reports>/jobs/<job_page_name(job_id)>`; every link to a job page is built
with `job_page_name` / `job_page_href`, so a job id with characters unsafe in a file name (`/`,
spaces, `..`) still gets one stable page.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ftops.monitoring.alerts import worst_first
from ftops.monitoring.catalog import RULES
from ftops.reports.html import SEVERITY_COLORS, Page, styled
from ftops.schemas import ALERTS, METRIC_SAMPLES, SEVERITIES

JOBS_FOLDER = "jobs"
MAX_POINTS_PER_TRACE = 3000  # longer series are averaged over time buckets (the page stays light)
MAX_LABELLED_LINES = 40  # beyond this, alert lines carry no text label (markers keep the hover text)

_SAFE_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,79}")
_UNSAFE = re.compile(r"[^a-z0-9_.-]+")


def job_page_name(job_id: object) -> str:
    """The file name of a job's page: the id itself when it is a safe lower-case name, else a
    readable slug plus a hash of the exact id (stable, distinct for distinct ids, no path parts,
    nothing that differs only by case on a case-insensitive file system)."""
    text = str(job_id)
    if _SAFE_ID.fullmatch(text) and ".." not in text:
        return f"{text}.html"
    slug = _UNSAFE.sub("-", text.lower()).strip("-.")[:60].rstrip("-.") or "job"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}.html"


def job_page_href(job_id: object, depth: int = 1) -> str:
    """A relative link to a job's page from a page `depth` folders below the reports folder
    (1: `<reports>/cost/index.html`, `<reports>/benchmark/index.html`, or another job page)."""
    return "../" * depth + f"{JOBS_FOLDER}/{job_page_name(job_id)}"


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    y_title: str
    metrics: tuple[str, ...]
    per_device: bool = False
    scale: dict[str, float] | None = None  # metric -> factor (ratios shown in %)


CHARTS: tuple[Chart, ...] = (
    Chart("loss", "Training and validation loss", "loss", ("training_loss", "val_loss")),
    Chart("learning_rate", "Learning rate", "learning rate", ("learning_rate",)),
    Chart("grad_norm", "Gradient norm", "gradient norm", ("grad_norm",)),
    Chart("samples", "Throughput", "samples/s", ("samples_per_second",)),
    Chart("tokens", "Token throughput", "tokens/s", ("tokens_per_second",)),
    Chart("gpu_util", "GPU utilisation per device", "utilisation (%)", ("gpu_utilization_pct",), per_device=True),
    Chart("gpu_memory", "GPU memory per device: capacity used and bandwidth use", "%",
          ("gpu_memory_used_ratio", "gpu_memory_copy_util_pct"), per_device=True,
          scale={"gpu_memory_used_ratio": 100.0}),
)
_LABELS = {"training_loss": "training loss", "val_loss": "validation loss", "learning_rate": "learning rate",
           "grad_norm": "gradient norm", "samples_per_second": "samples/s", "tokens_per_second": "tokens/s",
           "gpu_utilization_pct": "utilisation", "gpu_memory_used_ratio": "capacity used",
           "gpu_memory_copy_util_pct": "bandwidth use"}
_CHARTED = {m for c in CHARTS for m in c.metrics}
COST_CHART = "cost"


def _naive_utc(values) -> pd.Series:
    """Timestamps as naive UTC (plotly.js ignores offsets in date strings)."""
    return pd.to_datetime(pd.Series(values), utc=True).dt.tz_localize(None).astype("datetime64[ns]")


def chart_series(samples: pd.DataFrame, chart: Chart) -> pd.DataFrame:
    """The chart's curves: columns series (legend name), metric, device, ts (naive UTC), value;
    non-finite values become gaps, long series are averaged over time buckets."""
    rows = samples[samples["metric"].isin(chart.metrics)]
    if rows.empty:
        return pd.DataFrame(columns=["series", "metric", "device", "ts", "value"])
    device = (rows["device"].astype("string").fillna("") if chart.per_device and "device" in rows
              else pd.Series("", index=rows.index, dtype="string"))
    metric = rows["metric"].astype("string")
    factor = metric.map(chart.scale or {}).astype("float64").fillna(1.0)
    value = pd.to_numeric(rows["value"], errors="coerce").astype("float64") * factor
    label = metric.map(_LABELS).fillna(metric)
    many = len(chart.metrics) > 1
    series = (("GPU " + device + (" " + label if many else "")).where(device != "", label))
    out = pd.DataFrame({"series": series.to_numpy(), "metric": metric.to_numpy(), "device": device.to_numpy(),
                        "ts": _naive_utc(rows["ts"]).to_numpy(),
                        "value": value.where(np.isfinite(value)).to_numpy()})
    return _thin(out.sort_values(["series", "ts"], kind="stable").reset_index(drop=True))


def _thin(frame: pd.DataFrame, max_points: int = MAX_POINTS_PER_TRACE) -> pd.DataFrame:
    counts = frame.groupby("series")["ts"].transform("size")
    if (counts <= max_points).all():
        return frame
    first = frame.groupby("series")["ts"].transform("min")
    span = (frame.groupby("series")["ts"].transform("max") - first).dt.total_seconds().clip(lower=1e-9)
    bucket = ((frame["ts"] - first).dt.total_seconds() / span * (max_points - 1)).round().astype("int64")
    bucket = bucket.where(counts > max_points, np.arange(len(frame)))  # short series keep every point
    grouped = frame.assign(_bucket=bucket).groupby(["series", "_bucket"], sort=False)
    return grouped.agg(metric=("metric", "first"), device=("device", "first"), ts=("ts", "min"),
                       value=("value", "mean")).reset_index().drop(columns="_bucket")


def cost_series(costs: pd.DataFrame) -> pd.DataFrame:
    """Cumulative cost of a job over time (ts naive UTC, cost_usd, cumulative_usd, estimated); costs
    held as suspicious are left out (they are not spend until confirmed)."""
    if costs is None or costs.empty:
        return pd.DataFrame(columns=["ts", "cost_usd", "cumulative_usd", "estimated"])
    kept = costs[costs["cost_usd"].notna() & ~costs["suspicious"].fillna(False).astype(bool)]
    end = kept["period_end"].fillna(kept["period_start"]) if "period_end" in kept else kept["period_start"]
    out = pd.DataFrame({"ts": _naive_utc(end).to_numpy(), "cost_usd": kept["cost_usd"].astype("float64").to_numpy(),
                        "estimated": kept["estimated"].fillna(False).astype(bool).to_numpy()})
    out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    out["cumulative_usd"] = out["cost_usd"].cumsum()
    return out


def place_alerts(alerts: pd.DataFrame, charts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Which chart marks each alert, and the curve value at its fired time (NaN when none is near).

    Columns: chart, rule, severity, state, device, ts (naive UTC started_at), y, label, hover.
    """
    if alerts.empty or not charts:
        return pd.DataFrame(columns=["chart", "rule", "severity", "state", "device", "ts", "y", "label", "hover"])
    metric = alerts["rule"].astype("string").map({k: r.metric for k, r in RULES.items()})
    home = {m: c.key for c in CHARTS if c.key in charts for m in c.metrics}
    chart = metric.map(home)
    if COST_CHART in charts:
        chart = chart.where(~alerts["category"].astype("string").eq("cost"), COST_CHART)
    chart = chart.fillna(next(iter(charts)))
    device = (alerts["device"].astype("string").fillna("") if "device" in alerts
              else pd.Series("", index=alerts.index, dtype="string"))
    placed = pd.DataFrame({
        "chart": chart.to_numpy(), "rule": alerts["rule"].astype("string").to_numpy(),
        "severity": alerts["severity"].astype("string").to_numpy(), "state": alerts["state"].astype("string").to_numpy(),
        "device": np.asarray(device, dtype=object), "metric": metric.to_numpy(),
        "ts": _naive_utc(alerts["started_at"]).to_numpy(),
        "message": alerts["message"].astype("string").fillna("").to_numpy(),
    })
    placed["label"] = placed["rule"] + " · " + placed["severity"]
    placed["hover"] = (placed["label"] + " (" + placed["state"] + ")"
                       + placed["device"].map(lambda d: f" GPU {d}" if d else "") + "<br>" + placed["message"])
    placed["y"] = _values_at(placed, charts)
    return placed.drop(columns=["metric", "message"])


def _values_at(placed: pd.DataFrame, charts: dict[str, pd.DataFrame]) -> np.ndarray:
    """The drawn value nearest each alert's time on the curve of its metric (and device)."""
    y = np.full(len(placed), np.nan)
    for key, curves in charts.items():
        mine = np.flatnonzero(placed["chart"].to_numpy() == key)
        if not len(mine) or curves.empty:
            continue
        if key == COST_CHART:
            curve = curves.assign(_k="cost", value=curves["cumulative_usd"])
            want = pd.Series("cost", index=mine)
        else:
            curve = curves.assign(_k=curves["metric"].astype(str) + "|" + curves["device"].astype(str))
            first_metric = curves["metric"].iloc[0]
            sub = placed.iloc[mine]
            metric = sub["metric"].where(sub["metric"].isin(set(curves["metric"])), first_metric)
            dev = sub["device"].where(sub["device"].isin(set(curves["device"])), curves["device"].iloc[0])
            want = pd.Series((metric.astype(str) + "|" + dev.astype(str)).to_numpy(), index=mine)
        left = pd.DataFrame({"_k": want.to_numpy(), "ts": placed["ts"].to_numpy()[mine], "_i": mine})
        right = curve.loc[curve["value"].notna(), ["_k", "ts", "value"]].sort_values("ts")
        if right.empty:
            continue
        joined = pd.merge_asof(left.sort_values("ts"), right, on="ts", by="_k", direction="nearest")
        y[joined["_i"].to_numpy()] = joined["value"].to_numpy(dtype=float)
    return y


def _mark(fig: go.Figure, marks: pd.DataFrame) -> None:
    if marks.empty:
        return
    lines = marks.groupby(["ts", "label", "severity"], sort=True).size().reset_index(name="n")
    shapes, labels = [], []
    for i, line in enumerate(lines.itertuples(index=False)):
        color = SEVERITY_COLORS.get(line.severity, "#888888")
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": line.ts, "x1": line.ts, "y0": 0, "y1": 1,
                       "line": {"color": color, "width": 1.5, "dash": "dot"}})
        if i < MAX_LABELLED_LINES:
            text = line.label + (f" ×{line.n}" if line.n > 1 else "")
            labels.append({"x": line.ts, "xref": "x", "y": 1, "yref": "paper", "text": text, "showarrow": False,
                           "textangle": -90, "xanchor": "right", "yanchor": "top",
                           "font": {"size": 10, "color": color}})
    fig.update_layout(shapes=shapes, annotations=labels)  # one update: plotly validates each call
    for severity in reversed(SEVERITIES):
        rows = marks[marks["severity"] == severity]
        if rows.empty:
            continue
        fig.add_trace(go.Scatter(
            x=rows["ts"], y=rows["y"], mode="markers", name=f"{severity} alerts",
            marker={"color": SEVERITY_COLORS.get(severity), "size": 11, "symbol": "x",
                    "line": {"width": 1, "color": "#222"}},
            hovertext=rows["hover"], hoverinfo="text+x",
        ))


def job_figures(samples: pd.DataFrame, alerts: pd.DataFrame, costs: pd.DataFrame | None = None
                ) -> dict[str, go.Figure]:
    """The job's charts (by Chart.key, and "cost"), each with its alerts marked; charts without data are left out."""
    curves = {c.key: chart_series(samples, c) for c in CHARTS} if not samples.empty else {}
    curves = {k: v for k, v in curves.items() if not v.empty}
    spend = cost_series(costs)
    if not spend.empty:
        curves[COST_CHART] = spend
    marks = place_alerts(alerts, curves)
    figures: dict[str, go.Figure] = {}
    for chart in CHARTS:
        frame = curves.get(chart.key)
        if frame is None:
            continue
        fig = go.Figure([go.Scatter(x=line["ts"], y=line["value"], mode="lines", name=str(name), connectgaps=False)
                         for name, line in frame.groupby("series", sort=True)])
        figures[chart.key] = styled(fig, chart.title, "time (UTC)", chart.y_title)
    if COST_CHART in curves:
        fig = go.Figure(go.Scatter(x=spend["ts"], y=spend["cumulative_usd"], mode="lines", line_shape="hv",
                                   name="cost so far"))
        figures[COST_CHART] = styled(fig, "Cost so far", "time (UTC)", "USD (cumulative)")
    span = pd.concat([frame["ts"] for frame in curves.values()] + [marks["ts"]], ignore_index=True).dropna()
    for key, fig in figures.items():
        _mark(fig, marks[marks["chart"] == key])
        if len(span):  # one time axis for every chart, so an alert lines up with what happened around it
            fig.update_xaxes(range=[span.min(), span.max()])
    return figures


_ALERT_COLUMNS = ["severity", "state", "rule", "device", "started_at", "last_seen_at", "resolved_at", "value",
                  "threshold", "message"]
_JOB_FIELDS = ["name", "status", "technique", "base_model", "model_params_b", "gpu_type", "gpu_count",
               "instance_type", "pricing", "budget_category", "started_at", "ended_at", "exit_reason"]


def _alert_table(alerts: pd.DataFrame) -> pd.DataFrame:
    """The alerts as shown: times to the minute (UTC), none where absent."""
    shown = alerts[[c for c in _ALERT_COLUMNS if c in alerts]].copy()
    for column in ("started_at", "last_seen_at", "resolved_at"):
        if column in shown:
            when = pd.to_datetime(shown[column], utc=True)
            shown[column] = when.dt.strftime("%Y-%m-%d %H:%M").astype(object).where(when.notna(), None)
    return shown.rename(columns={"started_at": "fired (UTC)", "last_seen_at": "last seen", "resolved_at": "resolved"})


def _fmt_number(value: float | None, unit: str = "") -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:,.2f}{unit}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}{unit}"


def _last(samples: pd.DataFrame, metric: str, how: str = "last") -> float | None:
    values = pd.to_numeric(samples.loc[samples["metric"] == metric].sort_values("ts")["value"], errors="coerce")
    values = values[np.isfinite(values)]
    if values.empty:
        return None
    return float(values.iloc[-1] if how == "last" else values.min())


def job_page(job_id: str, samples: pd.DataFrame, alerts: pd.DataFrame, costs: pd.DataFrame | None = None,
             job: dict | None = None) -> Page:
    """The page of one job from its samples (metric_samples rows), its alerts (ALERTS rows), its
    job_costs rows and its job registry row (a dict; None when the registry does not know it)."""
    job = job or {}
    samples = samples if samples is not None and len(samples) else METRIC_SAMPLES.empty()
    alerts = worst_first(alerts if alerts is not None and len(alerts) else ALERTS.empty())
    described = " · ".join(str(job[k]) for k in ("name", "technique", "gpu_type", "status")
                           if job.get(k) is not None and not pd.isna(job[k]))
    page = Page(f"Job {job_id}", described or "not in the job registry")
    spend = cost_series(costs)
    firing = int((alerts["state"] == "firing").sum()) if len(alerts) else 0
    steps = pd.to_numeric(samples["step"], errors="coerce") if "step" in samples else pd.Series(dtype=float)
    page.figures([
        ("samples", f"{len(samples):,}"),
        ("last step", "-" if steps.dropna().empty else f"{int(steps.max()):,}"),
        ("last training loss", _fmt_number(_last(samples, "training_loss"))),
        ("best validation loss", _fmt_number(_last(samples, "val_loss", "min"))),
        ("cost so far (USD)", _fmt_number(float(spend["cost_usd"].sum())) if len(spend) else "-"),
        ("alerts firing / all", f"{firing} / {len(alerts)}"),
    ])
    if len(spend) and spend["estimated"].any():
        page.text(f"Cost includes {spend.loc[spend['estimated'], 'cost_usd'].sum():,.2f} USD estimated from "
                  "running time × catalogue price (no bill yet).", "note")
    if len(samples):
        first, last = pd.to_datetime(samples["ts"], utc=True).agg(["min", "max"])
        page.text(f"Samples from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC. Dotted lines mark "
                  "alerts where they fired (rule · severity); × marks sit on the curve the rule reads.", "note")
    else:
        page.text("No samples yet: curves appear once the job's first metrics are ingested.", "note")

    page.heading("Alerts")
    if alerts.empty:
        page.text("No alerts for this job.")
    else:
        page.table(_alert_table(alerts), max_rows=100)

    figures = job_figures(samples, alerts, costs)
    if figures:
        page.heading("Curves")
        for fig in figures.values():
            page.chart(fig)
    missing = [c.title for c in CHARTS if c.key not in figures and len(samples)]
    if missing:
        page.text("No samples for: " + "; ".join(missing) + ".", "note")
    other = sorted(set(samples["metric"].astype(str)) - _CHARTED) if len(samples) else []
    if other:
        page.text("Also recorded (not charted here): " + ", ".join(other) + ".", "note")

    page.heading("Job")
    fields = {k: job.get(k) for k in _JOB_FIELDS if job.get(k) is not None and not pd.isna(job.get(k))}
    if fields:
        shown = [f"{v.tz_convert('UTC'):%Y-%m-%d %H:%M} UTC" if isinstance(v, pd.Timestamp) and v.tzinfo else str(v)
                 for v in fields.values()]
        page.table(pd.DataFrame({"field": list(fields), "value": shown}))
    else:
        page.text("The job registry has no row for this job yet.")
    return page
