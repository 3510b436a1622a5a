"""The exporter (`ftops serve-metrics`): every metric family from a small warehouse, and /health."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ftops.defs.io_manager import table_path, write_table
from ftops.exporter import WarehouseExporter, make_server
from ftops.schemas import (ALERTS, ANOMALIES, BILLING_LINE_ITEMS, BUDGET_STATUS, JOB_COSTS, JOBS, METRIC_SAMPLES,
                           RUN_HEALTH, validate)

WRITTEN_AT = 1_800_000_000.0  # every table file's modification time (pinned: no test reads today's date)
AS_OF = "2026-11-03T10:00:00Z"
SHARD = "0-of-1"


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _budget_row(category, period_key, current, spend, limit, forecast):
    start = _ts(f"{period_key}-01")
    return {"budget_category": category, "period": "month", "period_key": period_key, "period_start": start,
            "period_end": start + pd.offsets.MonthBegin(1), "current": current, "as_of": _ts(AS_OF),
            "limit_usd": limit, "mode": "dry_run", "spend_usd": spend, "billed_usd": spend, "estimated_usd": 0.0,
            "suspicious_usd": 0.0, "usage_pct": None if limit is None else spend / limit * 100,
            "remaining_usd": None if limit is None else limit - spend, "burn_rate_usd_per_hour": 1.0,
            "forecast_period_end_usd": forecast,
            "forecast_usage_pct": None if limit is None else forecast / limit * 100,
            "forecast_next_24h_usd": 24.0, "thresholds_crossed": "[]", "highest_threshold_pct": None,
            "ladder_levels_reached": "[]", "highest_ladder_pct": None, "running_jobs": 1}


def budget_status_table() -> pd.DataFrame:
    return validate(pd.DataFrame([
        _budget_row("research", "2026-11", True, 450.0, 1000.0, 900.0),
        _budget_row("research", "2026-10", False, 800.0, 1000.0, 800.0),  # a closed period: not served
        _budget_row(None, "2026-11", True, 12.5, None, 20.0),  # spend nobody budgeted: no limit, no ratio
    ]), BUDGET_STATUS)


def _job(job_id, status, ended=None):
    return {"job_id": job_id, "status": status, "budget_category": "research", "started_at": _ts("2026-11-03T00:00"),
            "ended_at": ended, "dataset_samples": 1000, "epochs": 2.0, "total_steps": 100, "batch_size": 8,
            "grad_accum": 1, "gpu_count": 1, "submitted_at": _ts("2026-11-02T23:00")}


def _health(job_id, metric, window_start, last, non_finite=0, max_step=None):
    start = _ts(window_start)
    return {"job_id": job_id, "metric": metric, "window_start": start, "window_minutes": 60, "samples": 10,
            "non_finite": non_finite, "mean": last, "min": last, "max": last, "last": last,
            "last_ts": start + pd.Timedelta(minutes=59), "max_step": max_step, "devices": 1}


def _anomaly(rule, severity, category, first_ts, ongoing):
    ts = _ts(first_ts)
    return {"job_id": "j1", "rule": rule, "category": category, "severity": severity, "metric": "training_loss",
            "first_ts": ts, "last_ts": ts, "worst_ts": ts, "n_samples": 3, "ongoing": ongoing, "message": rule}


def _alert(alert_id, rule, category, severity, state):
    return {"alert_id": alert_id, "job_id": "j1", "rule": rule, "category": category, "severity": severity,
            "state": state, "started_at": _ts("2026-11-03T08:00"), "last_seen_at": _ts("2026-11-03T09:00"),
            "message": rule}


def write_small_warehouse(warehouse: Path, budget_status: pd.DataFrame | None = None) -> Path:
    """A warehouse written with the IO manager's writer: budgets, two jobs, costs, health, alerts, anomalies."""
    base = str(warehouse)

    def put(df, name, partition=None):
        write_table(df, base, dg.AssetKey(name), partition)
        os.utime(table_path(base, dg.AssetKey(name), partition).path, (WRITTEN_AT, WRITTEN_AT))

    put(budget_status_table() if budget_status is None else budget_status, "budget_status")
    put(validate(pd.DataFrame([_job("j1", "running"), _job("j2", "succeeded", _ts("2026-11-03T05:00"))]), JOBS),
        "job_registry")
    put(validate(pd.DataFrame([
        {"job_id": "j1", "budget_category": "research", "period_start": _ts("2026-11-03T00:00"),
         "period_end": _ts("2026-11-03T10:00"), "cost_usd": 20.0, "estimated": True, "attribution": "estimate",
         "running_hours": 10.0, "suspicious": False},
        {"job_id": "j2", "budget_category": "research", "period_start": _ts("2026-11-03T00:00"),
         "period_end": _ts("2026-11-03T05:00"), "cost_usd": 7.0, "estimated": False, "attribution": "tag",
         "suspicious": False},
    ]), JOB_COSTS), "job_costs")
    put(validate(pd.DataFrame([
        _health("j1", "training_loss", "2026-11-02T23:00", 2.0, max_step=20),
    ]), RUN_HEALTH), "run_health", f"2026-11-02|{SHARD}")
    put(validate(pd.DataFrame([
        _health("j1", "training_loss", "2026-11-03T08:00", 1.5, max_step=40),
        _health("j1", "training_loss", "2026-11-03T09:00", 1.2, non_finite=2, max_step=50),
        _health("j1", "samples_per_second", "2026-11-03T09:00", 30.0),
        _health("j2", "training_loss", "2026-11-03T04:00", 0.9, max_step=100),  # ended: not served
    ]), RUN_HEALTH), "run_health", f"2026-11-03|{SHARD}")
    put(validate(pd.DataFrame([_anomaly("cpu_high", "warning", "resource", "2026-11-01T10:00", True)]), ANOMALIES),
        "anomalies", f"2026-11-01|{SHARD}")  # older than the two newest days: not read
    put(validate(pd.DataFrame([_anomaly("loss_rising", "warning", "training", "2026-11-02T20:00", True)]), ANOMALIES),
        "anomalies", f"2026-11-02|{SHARD}")
    put(validate(pd.DataFrame([
        _anomaly("gpu_underutilized", "warning", "resource", "2026-11-03T08:00", True),
        _anomaly("gpu_underutilized", "warning", "resource", "2026-11-03T02:00", False),
    ]), ANOMALIES), "anomalies", f"2026-11-03|{SHARD}")
    put(validate(pd.DataFrame([
        _alert("a1", "gpu_underutilized", "resource", "warning", "firing"),
        _alert("a2", "gpu_underutilized", "resource", "warning", "firing"),
        _alert("a3", "loss_spike", "training", "warning", "resolved"),
    ]), ALERTS), "alerts")
    put(validate(pd.DataFrame([{"ts": _ts("2026-11-03T09:00"), "job_id": "j1", "metric": "training_loss",
                                "value": 1.2, "source": "test"}]), METRIC_SAMPLES),
        "metric_samples", f"2026-11-03|{SHARD}")
    return warehouse


def scrape(exporter: WarehouseExporter) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape through prometheus_client's text format."""
    text = generate_latest(exporter.registry()).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def warehouse(tmp_path):
    return write_small_warehouse(tmp_path / "wh")


def test_every_metric_family_with_its_value(warehouse):
    samples = scrape(WarehouseExporter(str(warehouse), clock=lambda: WRITTEN_AT + 60))
    research = {"budget_category": "research", "period": "month"}
    assert _value(samples, "ftops_budget_usage_ratio", **research) == pytest.approx(0.45)
    assert _value(samples, "ftops_budget_spend_usd", **research) == 450.0
    assert _value(samples, "ftops_budget_limit_usd", **research) == 1000.0
    assert _value(samples, "ftops_budget_forecast_usd", **research) == 900.0
    assert _value(samples, "ftops_budget_forecast_usage_ratio", **research) == pytest.approx(0.9)
    unbudgeted = {"budget_category": "none", "period": "month"}
    assert _value(samples, "ftops_budget_spend_usd", **unbudgeted) == 12.5
    assert ("ftops_budget_limit_usd", tuple(sorted(unbudgeted.items()))) not in samples
    assert sum(name == "ftops_budget_spend_usd" for name, _ in samples) == 2  # the closed period is not served

    job = {"job_id": "j1", "budget_category": "research"}
    assert _value(samples, "ftops_job_cost_per_hour_usd", **job) == pytest.approx(2.0)  # 20 USD over 10 h
    # 1000 samples x 2 epochs x 50 of 100 steps = 1000 samples processed
    assert _value(samples, "ftops_job_cost_per_sample_usd", **job) == pytest.approx(0.02)
    assert _value(samples, "ftops_job_cost_usd", **job) == 20.0
    assert not any(dict(labels).get("job_id") == "j2" for _, labels in samples)  # ended jobs are not served
    assert _value(samples, "ftops_jobs", status="running") == 1.0
    assert _value(samples, "ftops_jobs", status="failed") == 0.0

    assert _value(samples, "ftops_training_loss", job_id="j1") == 1.2  # the latest window's last value
    assert _value(samples, "ftops_samples_per_second", job_id="j1") == 30.0
    assert _value(samples, "ftops_non_finite_samples", job_id="j1", metric="training_loss") == 2.0

    gpu = {"rule": "gpu_underutilized", "category": "resource", "severity": "warning"}
    assert _value(samples, "ftops_alerts_firing", **gpu) == 2.0
    assert _value(samples, "ftops_alerts_firing", rule="loss_spike", category="training", severity="warning") == 0.0
    assert _value(samples, "ftops_anomalies_latest_day", **gpu) == 2.0
    assert _value(samples, "ftops_anomalies_ongoing", **gpu) == 1.0
    assert _value(samples, "ftops_anomalies_ongoing", rule="loss_rising", category="training",
                  severity="warning") == 1.0
    assert _value(samples, "ftops_anomalies_ongoing", rule="cpu_high", category="resource",
                  severity="warning") == 0.0  # its day is older than the two read

    assert _value(samples, "ftops_table_last_written_timestamp_seconds", table="metric_samples") == WRITTEN_AT
    assert _value(samples, "ftops_table_last_written_timestamp_seconds", table="budget_status") == WRITTEN_AT
    assert _value(samples, "ftops_exporter_warehouse_up") == 1.0
    assert ("ftops_exporter_read_duration_seconds", ()) in samples


def test_a_table_without_the_current_column_is_all_current(tmp_path):
    status = budget_status_table().drop(columns=["current"]).iloc[[0]]
    samples = scrape(WarehouseExporter(str(write_small_warehouse(tmp_path / "wh", status))))
    assert _value(samples, "ftops_budget_spend_usd", budget_category="research", period="month") == 450.0


def test_health_is_ok_while_ingest_is_fresh_and_503_when_stale(warehouse):
    now = [WRITTEN_AT + 600]
    exporter = WarehouseExporter(str(warehouse), cache_seconds=0, max_ingest_age_seconds=3600, clock=lambda: now[0])
    assert exporter.health() == (True, "ok")
    now[0] = WRITTEN_AT + 7200
    ok, reason = exporter.health()
    assert not ok and "ingest is stale" in reason and "7200 s ago" in reason
    assert WarehouseExporter(str(warehouse), clock=lambda: now[0]).health() == (True, "ok")  # no limit: never stale


def test_health_503_without_any_ingest(tmp_path):
    (tmp_path / "wh").mkdir()
    ok, reason = WarehouseExporter(str(tmp_path / "wh"), max_ingest_age_seconds=60).health()
    assert not ok and reason.startswith("no ingest table")


def test_unreadable_warehouse_is_503_and_up_0(warehouse, tmp_path):
    missing = WarehouseExporter(str(tmp_path / "nowhere"))
    ok, reason = missing.health()
    assert not ok and "does not exist" in reason
    assert _value(scrape(missing), "ftops_exporter_warehouse_up") == 0.0

    (warehouse / "budget_status.parquet").write_bytes(b"not parquet")
    corrupt = WarehouseExporter(str(warehouse), clock=lambda: WRITTEN_AT)
    ok, reason = corrupt.health()
    assert not ok and reason.startswith("cannot read budget_status: ")
    samples = scrape(corrupt)
    assert _value(samples, "ftops_exporter_warehouse_up") == 0.0
    assert _value(samples, "ftops_job_cost_usd", job_id="j1", budget_category="research") == 20.0  # the rest is served


def test_reads_are_cached_for_cache_seconds(warehouse):
    now = [WRITTEN_AT]
    exporter = WarehouseExporter(str(warehouse), cache_seconds=15, clock=lambda: now[0])
    first = exporter.snapshot()
    now[0] += 14
    assert exporter.snapshot() is first
    now[0] += 1
    assert exporter.snapshot() is not first


def test_http_metrics_and_health(warehouse):
    server = make_server(WarehouseExporter(str(warehouse), clock=lambda: WRITTEN_AT), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = response.read().decode()
            assert 'ftops_budget_usage_ratio{budget_category="research",period="month"} 0.45' in text
        with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
            assert (response.status, response.read()) == (200, b"ok\n")
        (warehouse / "alerts.parquet").write_bytes(b"torn")
        corrupt = make_server(WarehouseExporter(str(warehouse)), "127.0.0.1", 0)
        threading.Thread(target=corrupt.serve_forever, daemon=True).start()
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"http://127.0.0.1:{corrupt.server_address[1]}/health", timeout=10)
        assert failed.value.code == 503 and failed.value.read().decode().startswith("cannot read alerts: ")
        corrupt.shutdown()
        corrupt.server_close()
    finally:
        server.shutdown()
        server.server_close()


def test_cli_binds_loopback_and_reads_the_policy_age(tmp_path, monkeypatch):
    from ftops.cli import build_parser

    args = build_parser().parse_args(["serve-metrics"])
    assert (args.host, args.port, args.max_ingest_age) == ("127.0.0.1", 9464, None)
    assert build_parser().parse_args(["serve-metrics", "--max-ingest-age", "900"]).max_ingest_age == 900.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve-metrics", "--max-ingest-age", "-1"])

    from ftops.policy import policy_from_dict

    assert policy_from_dict({"ingest": {"max_age_seconds": 3600}}).ingest.max_age_seconds == 3600.0


def test_the_reader_finds_the_io_managers_daily_and_shard_day_files(warehouse):
    from ftops.warehouse_reader import WarehouseReader

    bills = validate(pd.DataFrame([{"line_item_id": "L1", "charge_period_start": _ts("2026-11-03T01:00"),
                                    "billed_cost": 3.0, "currency": "USD", "source": "test"}]), BILLING_LINE_ITEMS)
    write_table(bills, str(warehouse), dg.AssetKey("billing_line_items"), "2026-11-03")
    reader = WarehouseReader(str(warehouse))
    assert reader.days("billing_line_items") == ["2026-11-03"]
    assert reader.day("billing_line_items", "2026-11-03")["line_item_id"].tolist() == ["L1"]
    assert reader.days("anomalies") == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert len(reader.day("run_health", "2026-11-03")) == 4
    assert reader.table("alerts") is not None and reader.table("never_written") is None
    assert reader.last_written("never_written") is None
