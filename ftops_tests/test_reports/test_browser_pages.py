"""Job and benchmark pages in a real browser (headless Chromium): they load from a file with no console
error, every chart renders, and a screenshot is written. Skips without Chromium (fails on CI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ftops.reports.benchmark_page import benchmark_page
from ftops.reports.job_page import job_figures, job_page
from ftops.schemas import ALERTS, METRIC_SAMPLES, validate
from ftops_tests.browser import load_page, screenshot
from ftops_tests.test_reports.test_benchmark_page import comparison, recommendations

T0 = pd.Timestamp("2024-04-02 06:00", tz="UTC")


def _job() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Two hours of a 4-GPU LoRA run logging every chart's metrics, with a loss spike, an idle GPU and a
    cost alert, and its hourly costs."""
    ts = pd.date_range(T0, periods=240, freq="30s")
    steps = np.arange(240)
    loss = 2.5 * np.exp(-steps / 80) + 0.6
    loss[150] = 6.0
    job = [("training_loss", loss, None), ("val_loss", np.where(steps % 40 == 0, loss + 0.1, np.nan), None),
           ("learning_rate", 2e-4 * np.minimum(1, steps / 20), None), ("grad_norm", 1 + 0.2 * np.sin(steps), None),
           ("samples_per_second", np.full(240, 11.5), None), ("tokens_per_second", np.full(240, 23_000.0), None)]
    gpus = [(m, v, str(d)) for d in range(4) for m, v in (
        ("gpu_utilization_pct", np.full(240, 15.0 if d == 3 else 92.0)),
        ("gpu_memory_used_ratio", np.full(240, 0.81)), ("gpu_memory_copy_util_pct", np.full(240, 40.0)))]
    frames = [pd.DataFrame({"ts": ts, "job_id": "lora/7b run", "metric": m, "value": v, "step": steps, "device": d,
                            "host": "node-1", "source": "test"}) for m, v, d in job + gpus]
    samples = pd.concat(frames, ignore_index=True)
    samples = validate(samples[samples["value"].notna()].reset_index(drop=True), METRIC_SAMPLES)

    def alert(rule, category, severity, at, device=None):
        return {"alert_id": rule, "job_id": "lora/7b run", "rule": rule, "device": device, "category": category,
                "severity": severity, "state": "firing", "started_at": at, "last_seen_at": at, "resolved_at": None,
                "value": 1.0, "threshold": 1.0, "message": f"{rule} fired"}

    alerts = validate(pd.DataFrame([
        alert("loss_spike", "training", "critical", ts[150]),
        alert("gpu_underutilized", "resource", "warning", ts[20], device="3"),
        alert("cost_per_hour_high", "cost", "info", T0 + pd.Timedelta(hours=1)),
    ]), ALERTS)
    costs = pd.DataFrame({"job_id": "lora/7b run", "period_start": [T0, T0 + pd.Timedelta(hours=1)],
                          "period_end": [T0 + pd.Timedelta(hours=1), T0 + pd.Timedelta(hours=2)],
                          "cost_usd": [4.1, 4.1], "estimated": [True, True], "suspicious": [False, False]})
    return samples, alerts, costs


def _rendered(page_file: Path, charts: int, tmp_path: Path) -> None:
    loaded = load_page(page_file, tmp_path)
    assert loaded.console_errors == []
    assert loaded.count("js-plotly-plot") >= charts  # plotly.js drew every chart
    assert loaded.count('class="main-svg"') >= charts
    png = screenshot(page_file, tmp_path / f"{page_file.stem}.png")
    assert png.stat().st_size > 10_000


def test_job_page_with_alerts_renders_every_chart(tmp_path: Path) -> None:
    samples, alerts, costs = _job()
    charts = len(job_figures(samples, alerts, costs))
    assert charts == 8  # loss, learning rate, gradient norm, samples/s, tokens/s, GPU util, GPU memory, cost
    page = job_page("lora/7b run", samples, alerts, costs, {"name": "lora 7b", "technique": "lora"})
    _rendered(page.write(tmp_path / "jobs" / "job.html"), charts, tmp_path)


def test_benchmark_page_renders_every_chart(tmp_path: Path) -> None:
    page = benchmark_page(comparison(), recommendations())
    _rendered(page.write(tmp_path / "benchmark" / "index.html"), 2, tmp_path)
