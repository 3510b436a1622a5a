"""Job pages: safe file names, curves with the job's alerts marked where they fired (on a real W&B run
from ../shared/realdata, with the alerts ftops' own rules raise on it), and the `job_pages` asset on
a small warehouse (one shard-day rebuilds the pages of its jobs from their whole series)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ftops.defs.io_manager import PartitionedParquetIOManager, write_table
from ftops.defs.pages import job_pages
from ftops.defs.partitions import FleetPartitions, configured, shard_day_key
from ftops.defs.resources import ReportsResource, WarehouseResource
from ftops.monitoring.alerts import update_alerts
from ftops.monitoring.alerts import worst_first
from ftops.monitoring.anomalies import detect_anomalies
from ftops.policy import Policy
from ftops.reports.job_page import MAX_POINTS_PER_TRACE, job_figures, job_page, job_page_href, job_page_name
from ftops.schemas import ALERTS, JOB_COSTS, JOBS, METRIC_SAMPLES, validate
from ftops.sharding import shard_of

RUN = "runs/wandb_stanford_alpaca_8xA100_yc1999"  # Alpaca 7B full fine-tune, 8x A100-80GB, 10 minutes


def real_run(realdata: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(samples, alerts, registry row) of a real run: its alerts are what ftops' rules raise on it."""
    from ftops.readers.wandb import read_wandb_run
    from ftops.readers.wandb_job import read_wandb_job

    samples = read_wandb_run(realdata / RUN).accepted
    job = read_wandb_job(realdata / RUN).accepted
    found = detect_anomalies(samples, job, Policy().monitoring)
    alerts = update_alerts(None, found, samples["ts"].max() + pd.Timedelta(hours=1),
                           resolve_after=pd.Timedelta(minutes=30))
    return samples, alerts, job.iloc[0].to_dict()


def _in_chart(text: str) -> str:
    """`text` as it appears in a chart's JSON inside the page (non-ASCII escaped)."""
    return json.dumps(text)[1:-1]


def _naive(ts) -> pd.Timestamp:
    return pd.Timestamp(ts).tz_convert("UTC").tz_localize(None)


def _alert(job_id: str, rule: str, category: str, severity: str, started_at: pd.Timestamp, state: str = "firing",
           device: str | None = None) -> dict:
    return {"alert_id": f"{job_id}:{rule}:{started_at.isoformat()}", "job_id": job_id, "rule": rule, "device": device,
            "category": category, "severity": severity, "state": state, "started_at": started_at,
            "last_seen_at": started_at + pd.Timedelta(minutes=5), "resolved_at": None, "value": 1.0,
            "threshold": 0.5, "message": f"{rule} on {job_id}"}


def test_page_names_are_safe_stable_and_distinct() -> None:
    assert job_page_name("run-17_a.b") == "run-17_a.b.html"  # a safe id is its own name
    names = {i: job_page_name(i) for i in ("team/a b", "team_a_b", "Team/a b", "../etc/passwd", "..", "",
                                           "a" * 300, "日本語-run", "RUN-1", "run-1")}
    assert len(set(names.values())) == len(names)
    for job_id, name in names.items():
        assert name.endswith(".html") and "/" not in name and "\\" not in name and not name.startswith(".")
        assert name == name.lower() and len(name) <= 90
        assert job_page_name(job_id) == name  # stable
    assert job_page_href("team/a b") == f"../jobs/{job_page_name('team/a b')}"


def test_worst_first_orders_firing_then_severity_then_longest_firing() -> None:
    t = pd.Timestamp("2024-03-01 10:00", tz="UTC")
    alerts = pd.DataFrame([
        _alert("a", "cpu_high", "resource", "info", t),
        _alert("b", "loss_spike", "training", "critical", t + pd.Timedelta(hours=1), state="resolved"),
        _alert("c", "loss_spike", "training", "critical", t + pd.Timedelta(hours=2)),
        _alert("d", "gpu_underutilized", "resource", "warning", t),
        _alert("e", "loss_rising", "training", "critical", t + pd.Timedelta(hours=1)),
    ])
    assert list(worst_first(alerts)["job_id"]) == ["e", "c", "d", "a", "b"]


def test_real_run_alerts_are_marked_on_the_curve_of_their_gpu_at_their_fired_time(realdata: Path) -> None:
    samples, alerts, job = real_run(realdata)
    assert len(alerts) >= 1 and set(alerts["rule"]) == {"gpu_underutilized"}  # the rules' verdict on this run
    # and a loss alert where the 10th logged loss is, as a loss rule would raise it
    loss = samples[samples["metric"] == "training_loss"].sort_values("ts")
    at = loss["ts"].iloc[9]
    spike = pd.DataFrame([_alert(job["job_id"], "loss_spike", "training", "critical", at)])
    alerts = validate(pd.concat([alerts, spike], ignore_index=True), ALERTS)

    figures = job_figures(samples, alerts)
    assert list(figures) == ["loss", "learning_rate", "gpu_util", "gpu_memory"]  # what this run logged

    gpu = figures["gpu_util"]
    marks = next(t for t in gpu.data if t.name == "warning alerts")
    expected = alerts[alerts["rule"] == "gpu_underutilized"]
    assert sorted(pd.to_datetime(marks.x)) == sorted(_naive(t) for t in expected["started_at"])
    util = samples[samples["metric"] == "gpu_utilization_pct"]
    for device, started in zip(expected["device"], expected["started_at"]):
        at_fire = util[(util["device"] == device) & (util["ts"] == started)]["value"]
        assert len(at_fire) == 1  # the rule fired on a sample of that GPU
        assert float(at_fire.iloc[0]) in [float(y) for y in marks.y]
    lines = {(s.x0, s.line.color) for s in gpu.layout.shapes}
    assert {(_naive(t), "#EE7733") for t in expected["started_at"]} <= {(pd.Timestamp(x), c) for x, c in lines}
    labels = [a.text for a in gpu.layout.annotations]
    assert any(text.startswith("gpu_underutilized · warning") for text in labels)

    loss_marks = next(t for t in figures["loss"].data if t.name == "critical alerts")
    assert list(pd.to_datetime(loss_marks.x)) == [_naive(at)]
    assert list(loss_marks.y) == [pytest.approx(float(loss["value"].iloc[9]))]
    assert "gpu_underutilized" not in [a.text.split(" ")[0] for a in figures["loss"].layout.annotations]

    html = job_page(job["job_id"], samples, alerts, None, job).render()
    assert _in_chart("loss_spike · critical") in html and _in_chart("gpu_underutilized · warning") in html
    assert job["base_model"] in html


def test_alerts_without_a_chart_go_on_the_first_and_cost_alerts_on_the_cost_curve() -> None:
    t0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")
    ts = pd.date_range(t0, periods=120, freq="min")
    samples = pd.DataFrame({"ts": ts, "job_id": "j", "metric": "training_loss", "value": np.linspace(3, 1, 120),
                            "step": np.arange(120), "device": None, "host": None, "source": "test"})
    costs = pd.DataFrame({"job_id": "j", "period_start": [t0, t0 + pd.Timedelta(hours=1)],
                          "period_end": [t0 + pd.Timedelta(hours=1), t0 + pd.Timedelta(hours=2)],
                          "cost_usd": [10.0, 12.0], "estimated": [False, True], "suspicious": [False, False]})
    alerts = pd.DataFrame([_alert("j", "heartbeat_lost", "resource", "warning", ts[60]),
                           _alert("j", "cost_per_hour_high", "cost", "critical", t0 + pd.Timedelta(hours=2))])
    figures = job_figures(samples, alerts, costs)
    assert list(figures) == ["loss", "cost"]
    heartbeat = next(t for t in figures["loss"].data if t.name == "warning alerts")
    assert list(heartbeat.y) == [pytest.approx(samples["value"].iloc[60])]
    cost = next(t for t in figures["cost"].data if t.name == "critical alerts")
    assert list(cost.y) == [pytest.approx(22.0)]  # the cumulative cost when it fired
    html = job_page("j", samples, alerts, costs).render()
    assert "22.00" in html and "12.00 USD estimated" in html


def test_long_series_are_thinned_and_non_finite_values_are_gaps() -> None:
    ts = pd.date_range("2024-03-01", periods=20_000, freq="s", tz="UTC")
    value = np.full(len(ts), 50.0)
    value[100] = np.inf
    samples = pd.DataFrame({"ts": np.tile(ts, 2), "job_id": "j", "metric": "gpu_utilization_pct",
                            "value": np.tile(value, 2), "step": None, "device": np.repeat(["0", "1"], len(ts)),
                            "host": None, "source": "test"})
    figure = job_figures(samples, pd.DataFrame(columns=ALERTS.column_names))["gpu_util"]
    assert [t.name for t in figure.data] == ["GPU 0", "GPU 1"]
    assert all(len(t.x) <= MAX_POINTS_PER_TRACE for t in figure.data)
    assert all(np.isfinite([y for y in t.y if y == y]).all() for t in figure.data)


def test_a_job_without_samples_or_alerts_still_gets_a_page() -> None:
    html = job_page("new job/1", METRIC_SAMPLES.empty(), ALERTS.empty(), JOB_COSTS.empty(), None).render()
    assert "No samples yet" in html and "No alerts for this job" in html and "not in the job registry" in html
    assert "plotly" in html.lower()  # self-contained like every page


# --- the asset on a small warehouse -----------------------------------------------------------------

SHARDS = 2
DAY1, DAY2 = "2024-03-01", "2024-03-02"


def _ids_in_shard(shard: int, n: int) -> list[str]:
    found = [j for j in (f"team/run {i}" for i in range(200)) if shard_of(j, SHARDS) == shard]
    return found[:n]


def _samples(job_id: str, day: str, n: int = 30) -> pd.DataFrame:
    ts = pd.date_range(f"{day} 10:00", periods=n, freq="min", tz="UTC")
    return pd.DataFrame({"ts": ts, "job_id": job_id, "metric": "training_loss", "value": np.linspace(2, 1, n),
                         "step": np.arange(n), "device": None, "host": None, "source": "test"})


def test_job_pages_asset_rebuilds_the_pages_of_the_partitions_jobs_from_their_whole_series(tmp_path: Path) -> None:
    wh, reports = str(tmp_path / "wh"), str(tmp_path / "reports")
    both_days, second_only, first_only = _ids_in_shard(0, 3)
    other_shard = _ids_in_shard(1, 1)[0]
    shard0, shard1 = f"0-of-{SHARDS}", f"1-of-{SHARDS}"
    key = dg.AssetKey(METRIC_SAMPLES.name)
    write_table(validate(pd.concat([_samples(both_days, DAY1), _samples(first_only, DAY1)]), METRIC_SAMPLES),
                wh, key, shard_day_key(DAY1, shard0))
    write_table(validate(pd.concat([_samples(both_days, DAY2), _samples(second_only, DAY2)]), METRIC_SAMPLES),
                wh, key, shard_day_key(DAY2, shard0))
    write_table(validate(_samples(other_shard, DAY2), METRIC_SAMPLES), wh, key, shard_day_key(DAY2, shard1))
    fired = pd.Timestamp(f"{DAY1} 10:10", tz="UTC")
    write_table(validate(pd.DataFrame([_alert(both_days, "loss_spike", "training", "critical", fired),
                                       _alert(other_shard, "loss_spike", "training", "warning", fired)]), ALERTS),
                wh, dg.AssetKey(ALERTS.name))
    registry = pd.DataFrame({"job_id": [both_days, second_only], "name": ["both", "second"],
                             "status": "running", "started_at": pd.Timestamp(f"{DAY1} 09:00", tz="UTC")})
    write_table(validate(registry.reindex(columns=JOBS.column_names), JOBS), wh, dg.AssetKey(JOBS.name))

    assets = configured([job_pages], FleetPartitions("2024-02-01", SHARDS))
    result = dg.materialize(assets, partition_key=shard_day_key(DAY2, shard0), resources={
        "io_manager": PartitionedParquetIOManager(base_path=wh), "warehouse": WarehouseResource(base_path=wh),
        "reports": ReportsResource(folder=reports)})
    assert result.success
    table = result.output_for_node("job_pages")
    assert sorted(table["job_id"]) == sorted([both_days, second_only])  # first_only has no samples that day
    by_job = table.set_index("job_id")
    assert by_job.loc[both_days, "samples"] == 60  # both days of its series, not only the partition's
    assert by_job.loc[both_days, "alerts"] == 1 and by_job.loc[both_days, "firing"] == 1
    assert by_job.loc[second_only, "samples"] == 30 and by_job.loc[second_only, "alerts"] == 0
    assert set(table["day"]) == {pd.Timestamp(DAY2, tz="UTC")}

    pages = sorted(p.name for p in (tmp_path / "reports" / "jobs").iterdir())
    assert pages == sorted([job_page_name(both_days), job_page_name(second_only)])
    assert by_job.loc[both_days, "page"] == f"jobs/{job_page_name(both_days)}"  # relative to the reports folder
    html = (tmp_path / "reports" / by_job.loc[both_days, "page"]).read_text()
    assert f"Samples from {DAY1} 10:00 to {DAY2} 10:29 UTC" in html and _in_chart("loss_spike · critical") in html
    assert "No alerts for this job" in (tmp_path / "reports" / by_job.loc[second_only, "page"]).read_text()

    materialization = result.asset_materializations_for_node("job_pages")[0]
    assert materialization.metadata["pages"].value == 2
    assert both_days in materialization.metadata["preview"].value


def _requested(result, name: str) -> set:
    return result.get_requested_partitions(dg.AssetKey(name))


def test_pages_follow_their_partition_after_the_alerts_of_the_same_ingest(tmp_path: Path) -> None:
    from ftops.definitions import Settings, build_definitions

    defs = build_definitions(Settings(str(tmp_path / "inbox"), str(tmp_path / "wh"), None))
    selection = dg.AssetSelection.assets("job_pages", ALERTS.name)
    with dg.DagsterInstance.ephemeral() as instance:
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
        key = shard_day_key(DAY1, "3-of-8")
        instance.report_runless_asset_event(dg.AssetMaterialization("anomalies", partition=key))
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                 cursor=tick.cursor)
        assert _requested(tick, ALERTS.name) == {None} and _requested(tick, "job_pages") == set()  # alerts first
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                 cursor=tick.cursor)
        assert _requested(tick, "job_pages") == {key}  # only the partition that changed
        instance.report_runless_asset_event(dg.AssetMaterialization(ALERTS.name))
        for _ in range(2):  # an alerts update alone rebuilds no page (it would rebuild every partition)
            tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                                     cursor=tick.cursor)
            assert _requested(tick, "job_pages") == set()
