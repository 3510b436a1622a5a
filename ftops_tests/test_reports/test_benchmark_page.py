"""The benchmark page: performance per dollar per configuration, one colour per technique, the best of
each group, and recommendations that link the runs behind them to their job pages."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from ftops.defs.io_manager import PartitionedParquetIOManager, write_table
from ftops.defs.pages import benchmark_report
from ftops.defs.resources import ReportsResource
from ftops.reports.benchmark_page import benchmark_page
from ftops.reports.html import technique_color
from ftops.reports.job_page import job_page_href
from ftops.schemas import BENCHMARK_COMPARISON, BENCHMARK_RECOMMENDATIONS, validate


def comparison() -> pd.DataFrame:
    rows = [
        # technique, size, gpus, mb, samples/s, usd/h, jobs, best
        ("full", 7.0, "A100-80GB", 8, 4, 21.0, 32.8, "r1,r2,team/r 3", True),
        ("full", 7.0, "A100-80GB", 8, 2, 9.5, 32.8, "r4,r5", False),
        ("lora", 7.0, "A10G", 1, 8, 3.1, 1.2, "l1", True),
        ("qlora", 6.0, "V100-16GB", 1, 4, 1.4, 3.06, "q1,q2", True),
    ]
    frame = pd.DataFrame([{
        "configuration": f"{t} {int(size)}B · {gpus}× {gpu} · mb{mb} · seq512", "technique": t,
        "model_params_b": size, "gpu_model": gpu, "gpu_count": gpus, "micro_batch": mb, "seq_len": 512,
        "jobs": len(ids.split(",")), "job_ids": ids, "samples_per_second": sps, "tokens_per_second": sps * 512,
        "usd_per_hour": usd, "price_basis": "catalogue", "usd_per_1k_samples": usd / 3.6 / sps,
        "usd_per_million_tokens": usd / 3600 / (sps * 512) * 1e6, "best_in_group": best,
        "rank_in_group": 1 if best else 2,
    } for t, size, gpu, gpus, mb, sps, usd, ids, best in rows])
    return validate(frame.reindex(columns=BENCHMARK_COMPARISON.column_names), BENCHMARK_COMPARISON)


def recommendations() -> pd.DataFrame:
    frame = pd.DataFrame([{
        "kind": "move", "technique": "full", "model_size": "7B",
        "from_configuration": "full 7B · 8× A100-80GB · mb2 · seq512",
        "to_configuration": "full 7B · 8× A100-80GB · mb4 · seq512", "cost_change_pct": -55.0,
        "time_change_pct": -55.0, "saving_usd_per_month": 157.0, "from_job_ids": "r4,r5",
        "to_job_ids": "r1,r2,team/r 3", "job_ids": "r1,r2,r4,r5,team/r 3",
        "message": "move full fine-tune 7B jobs from mb2 to mb4 <fast>",
    }])
    return validate(frame.reindex(columns=BENCHMARK_RECOMMENDATIONS.column_names), BENCHMARK_RECOMMENDATIONS)


def test_scatter_has_one_colour_per_technique_and_stars_the_best_of_each_group() -> None:
    page = benchmark_page(comparison(), recommendations())
    html = page.render()
    assert html.count("class=\"plotly-graph-div\"") == 2  # per 1M tokens and per 1k samples
    from ftops.reports.benchmark_page import scatter

    fig = scatter(comparison(), "usd_per_million_tokens", "tokens_per_second", "USD per 1M tokens", "tokens/s")
    assert [t.name for t in fig.data] == ["full", "lora", "qlora"]
    for trace in fig.data:
        assert trace.marker.color == technique_color(trace.name)
    full = fig.data[0]
    assert list(full.marker.symbol) == ["star", "circle"]  # the mb4 configuration is the best of its group
    assert full.x[0] < full.x[1] and full.y[0] > full.y[1]  # cheaper and faster


def test_recommendations_link_their_runs_to_job_pages_and_escape_text() -> None:
    html = benchmark_page(comparison(), recommendations()).render()
    for job_id in ("r1", "r4", "team/r 3"):
        assert f"href='{job_page_href(job_id)}'" in html
    assert "&lt;fast&gt;" in html and "<fast>" not in html
    assert "saves 157 USD/month" in html
    assert "Best configuration of each group" in html


def test_an_empty_comparison_still_gives_a_page() -> None:
    html = benchmark_page(BENCHMARK_COMPARISON.empty(), BENCHMARK_RECOMMENDATIONS.empty()).render()
    assert "No configuration measured yet" in html and "No recommendation" in html


def test_benchmark_report_asset_writes_the_page(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    write_table(comparison(), wh, dg.AssetKey(BENCHMARK_COMPARISON.name))
    write_table(recommendations(), wh, dg.AssetKey(BENCHMARK_RECOMMENDATIONS.name))
    result = dg.materialize(
        [benchmark_report, dg.AssetSpec(BENCHMARK_COMPARISON.name), dg.AssetSpec(BENCHMARK_RECOMMENDATIONS.name)],
        selection=[benchmark_report],
        resources={"io_manager": PartitionedParquetIOManager(base_path=wh),
                   "reports": ReportsResource(folder=str(tmp_path / "reports"))})
    assert result.success
    page = tmp_path / "reports" / "benchmark" / "index.html"
    assert page.is_file() and "Performance per dollar" in page.read_text()
    metadata = result.asset_materializations_for_node("benchmark_report")[0].metadata
    assert metadata["configurations"].value == 4 and metadata["recommendations"].value == 1
