"""Prometheus `/metrics` and `/health` for ftops' own derived tables (`ftops serve-metrics`).

The training nodes' raw GPU and host series come from `ftops agent`; this exporter serves what only
the warehouse knows: budget usage, spend, limits and forecasts of the current period, cost per hour and
per sample of running jobs, their latest training metrics, firing alerts, anomalies, and when each
table was last written. A custom collector reads the warehouse when Prometheus scrapes, and keeps
what it read for `cache_seconds`, so a burst of scrapes (several Prometheus replicas) reads it once.

Where "last successful ingest" comes from: the IO manager writes every table file under a hidden
temporary name and renames it into place only when the write succeeded, so the modification time
of a table's newest visible Parquet file is the time its last successful materialisation finished
(`ftops_table_last_written_timestamp_seconds`). `/health` judges ingest by the newest of the ingest
tables (INGEST_TABLES): 503 when none was written within `max_ingest_age_seconds`.

Everything arrives as arguments (the warehouse location, the limits, the clock); nothing here imports
Dagster or reads the environment.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable

import pandas as pd
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from ftops.costs.budgets import current_periods
from ftops.costs.progress import progress_from_metrics
from ftops.costs.summary import job_cost_summary
from ftops.monitoring.catalog import RULES
from ftops.schemas import JOB_STATUSES, SEVERITIES, TABLES
from ftops.warehouse_reader import WarehouseReader

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # what ftops knows about budgets and jobs is not for everyone: opt in to more
DEFAULT_PORT = 9464
DEFAULT_CACHE_SECONDS = 15.0
INGEST_TABLES = ("job_registry", "metric_samples", "billing_line_items", "rejected_records")
# the latest run_health window of a running job is served for these metrics, as ftops_<metric>
TRAINING_METRICS = ("training_loss", "val_loss", "grad_norm", "learning_rate", "samples_per_second",
                    "tokens_per_second")
RECENT_DAYS = 2  # days of run_health and anomalies read: the newest day, and the one before for a run crossing midnight
NO_CATEGORY = "none"  # label value for spend whose budget category nobody named


def _finite(value) -> float | None:
    if value is None or pd.isna(value):
        return None
    value = float(value)
    return value if not math.isnan(value) else None


def _label(value) -> str:
    return NO_CATEGORY if value is None or pd.isna(value) or not str(value) else str(value)


def budget_families(status: pd.DataFrame | None) -> list[Metric]:
    """Budget figures per category of the period in progress (budget_status rows marked current)."""
    labels = ["budget_category", "period"]
    families = {
        "usage_ratio": GaugeMetricFamily("ftops_budget_usage_ratio", "spend / limit of the current budget period "
                                         "(1 = the whole budget)", labels=labels),
        "spend": GaugeMetricFamily("ftops_budget_spend_usd", "spend so far in the current budget period, billed "
                                   "plus estimated", labels=labels),
        "limit": GaugeMetricFamily("ftops_budget_limit_usd", "budget limit of the current period", labels=labels),
        "forecast": GaugeMetricFamily("ftops_budget_forecast_usd", "forecast spend at the end of the current "
                                      "budget period", labels=labels),
        "forecast_ratio": GaugeMetricFamily("ftops_budget_forecast_usage_ratio", "forecast spend at period end "
                                            "/ limit", labels=labels),
    }
    if status is not None and not status.empty:
        for row in current_periods(status).itertuples():
            key = [_label(row.budget_category), str(row.period)]
            usage = _finite(row.usage_pct)
            forecast_usage = _finite(getattr(row, "forecast_usage_pct", None))
            for name, value in (("usage_ratio", None if usage is None else usage / 100.0),
                                ("spend", _finite(row.spend_usd)), ("limit", _finite(row.limit_usd)),
                                ("forecast", _finite(row.forecast_period_end_usd)),
                                ("forecast_ratio", None if forecast_usage is None else forecast_usage / 100.0)):
                if value is not None:
                    families[name].add_metric(key, value)
    return list(families.values())


def _running(jobs: pd.DataFrame | None) -> pd.DataFrame:
    if jobs is None or jobs.empty:
        return pd.DataFrame({"job_id": pd.Series(dtype="string"), "budget_category": pd.Series(dtype="string")})
    return jobs[jobs["status"].astype("string").eq("running").fillna(False).to_numpy()]


def job_families(jobs: pd.DataFrame | None, costs: pd.DataFrame | None, health: pd.DataFrame) -> list[Metric]:
    """Jobs by status; cost per hour, per sample and so far of each running job."""
    count = GaugeMetricFamily("ftops_jobs", "jobs in the job registry by status", labels=["status"])
    by_status = (jobs["status"].astype("string").value_counts() if jobs is not None and not jobs.empty
                 else pd.Series(dtype=int))
    for status in JOB_STATUSES:
        count.add_metric([status], float(by_status.get(status, 0)))
    labels = ["job_id", "budget_category"]
    per_hour = GaugeMetricFamily("ftops_job_cost_per_hour_usd", "cost so far / hours run, of a running job",
                                 labels=labels)
    per_sample = GaugeMetricFamily("ftops_job_cost_per_sample_usd", "cost so far / samples processed, of a "
                                   "running job", labels=labels)
    total = GaugeMetricFamily("ftops_job_cost_usd", "cost so far (billed plus estimated) of a running job",
                              labels=labels)
    running = _running(jobs)
    if not running.empty and costs is not None and not costs.empty:
        progress = (progress_from_metrics(health.rename(columns={"max_step": "step"})[["job_id", "step"]])
                    if not health.empty else None)
        summary = job_cost_summary(costs, jobs, progress)
        summary = summary[summary["job_id"].isin(running["job_id"].astype("string")).to_numpy()]
        for row in summary.itertuples():
            key = [str(row.job_id), _label(row.budget_category)]
            for family, value in ((per_hour, row.cost_per_hour_usd), (per_sample, row.cost_per_sample_usd),
                                  (total, row.total_cost_usd)):
                if _finite(value) is not None:
                    family.add_metric(key, float(value))
    return [count, per_hour, per_sample, total]


def training_families(jobs: pd.DataFrame | None, health: pd.DataFrame) -> list[Metric]:
    """The latest run_health window (an hour) of each running job: last finite value and NaN/Inf count."""
    families = {m: GaugeMetricFamily(f"ftops_{m}", f"latest {m} of a running job (last finite value of its "
                                     "latest run_health window)", labels=["job_id"]) for m in TRAINING_METRICS}
    non_finite = GaugeMetricFamily("ftops_non_finite_samples", "NaN or infinite samples in the latest "
                                   "run_health window of a running job", labels=["job_id", "metric"])
    running = _running(jobs)
    if not health.empty and not running.empty:
        rows = health[health["metric"].isin(TRAINING_METRICS).to_numpy()
                      & health["job_id"].isin(running["job_id"].astype("string")).to_numpy()]
        latest = rows.sort_values("window_start").groupby(["job_id", "metric"], observed=True).tail(1)
        for row in latest.sort_values(["job_id", "metric"]).itertuples():
            last = _finite(row.last)
            families[row.metric].add_metric([str(row.job_id)], math.nan if last is None else last)
            non_finite.add_metric([str(row.job_id), str(row.metric)], float(row.non_finite))
    return [*families.values(), non_finite]


def _rule_counts(name: str, documentation: str, rows: pd.DataFrame | None) -> GaugeMetricFamily:
    """A count per rule and severity, zero for the ones with none (so a query sees 0, not nothing)."""
    family = GaugeMetricFamily(name, documentation, labels=["rule", "category", "severity"])
    counts = (rows.groupby(["rule", "severity"], observed=True).size() if rows is not None and not rows.empty
              else pd.Series(dtype=int))
    for rule, info in RULES.items():
        for severity in SEVERITIES:
            family.add_metric([rule, info.category, severity], float(counts.get((rule, severity), 0)))
    return family


def alert_families(alerts: pd.DataFrame | None) -> list[Metric]:
    firing = None if alerts is None or alerts.empty else alerts[alerts["state"].eq("firing").to_numpy()]
    return [_rule_counts("ftops_alerts_firing", "alerts in state firing, by rule and severity", firing)]


def anomaly_families(days: dict[str, pd.DataFrame]) -> list[Metric]:
    """Anomalies of the newest day the warehouse holds, and those still ongoing (reaching the latest sample)."""
    newest = days[max(days)] if days else None
    frames = [f for f in days.values() if not f.empty]
    recent = pd.concat(frames, ignore_index=True) if frames else None
    ongoing = None if recent is None else recent[recent["ongoing"].astype(bool).to_numpy()]
    return [
        _rule_counts("ftops_anomalies_latest_day", "anomalies that started on the newest day of the anomalies "
                     "table, by rule and severity", newest),
        _rule_counts("ftops_anomalies_ongoing", "anomalies still ongoing (reaching their series' latest sample), "
                     "by rule and severity", ongoing),
    ]


@dataclass
class Snapshot:
    """What one read of the warehouse found: the metric families, errors, and ingest freshness."""

    read_at: float
    families: list[Metric] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    last_ingest: float | None = None
    last_ingest_table: str | None = None
    warehouse_exists: bool = True


class WarehouseExporter:
    """Reads the warehouse into Prometheus metric families at scrape time (cached) and judges health.

    `clock` gives Unix seconds (tests pin it); `max_ingest_age_seconds=None` never calls ingest stale.
    """

    def __init__(self, warehouse: str, *, cache_seconds: float = DEFAULT_CACHE_SECONDS,
                 max_ingest_age_seconds: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.reader = WarehouseReader(warehouse)
        self.cache_seconds = float(cache_seconds)
        self.max_ingest_age_seconds = max_ingest_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    # -- reading --------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            if self._snapshot is None or now - self._snapshot.read_at >= self.cache_seconds:
                self._snapshot = self._read(now)
            return self._snapshot

    def _attempt(self, snap: Snapshot, what: str, read: Callable[[], object], default=None):
        try:
            return read()
        except Exception as exc:  # a corrupt file, a lost bucket: serve the rest and say what failed
            text = str(exc).strip().splitlines()
            snap.errors.append(f"cannot read {what}: {type(exc).__name__}: {text[0] if text else ''}")
            logger.warning("%s", snap.errors[-1])
            return default

    def _recent_days(self, name: str) -> dict[str, pd.DataFrame]:
        return {day: self.reader.day(name, day) for day in self.reader.days(name)[-RECENT_DAYS:]}

    def _read(self, now: float) -> Snapshot:
        started = time.perf_counter()
        snap = Snapshot(read_at=now)
        snap.warehouse_exists = bool(self._attempt(snap, "the warehouse", self.reader.exists, False))
        if not snap.warehouse_exists and not snap.errors:
            snap.errors.append(f"the warehouse {self.reader.base_path} does not exist")
        if snap.warehouse_exists:
            status = self._attempt(snap, "budget_status", lambda: self.reader.table("budget_status"))
            jobs = self._attempt(snap, "job_registry", lambda: self.reader.table("job_registry"))
            costs = self._attempt(snap, "job_costs", lambda: self.reader.table("job_costs"))
            alerts = self._attempt(snap, "alerts", lambda: self.reader.table("alerts"))
            health_days = self._attempt(snap, "run_health", lambda: self._recent_days("run_health"), {})
            frames = [f for f in health_days.values() if not f.empty]
            health = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
            anomalies = self._attempt(snap, "anomalies", lambda: self._recent_days("anomalies"), {})
            for what, build in (("budget_status", lambda: budget_families(status)),
                                ("job_costs", lambda: job_families(jobs, costs, health)),
                                ("run_health", lambda: training_families(jobs, health)),
                                ("alerts", lambda: alert_families(alerts)),
                                ("anomalies", lambda: anomaly_families(anomalies))):
                snap.families += self._attempt(snap, f"{what} (unexpected columns)", build, [])
            snap.families.append(self._freshness(snap))
        up = GaugeMetricFamily("ftops_exporter_warehouse_up", "1 when every table the exporter serves was read, "
                               "0 when a read failed (see /health)")
        up.add_metric([], 0.0 if snap.errors else 1.0)
        duration = GaugeMetricFamily("ftops_exporter_read_duration_seconds", "how long the last read of the "
                                     "warehouse took")
        duration.add_metric([], time.perf_counter() - started)
        snap.families += [up, duration]
        return snap

    def _freshness(self, snap: Snapshot) -> Metric:
        family = GaugeMetricFamily("ftops_table_last_written_timestamp_seconds", "Unix time the newest file of "
                                   "a warehouse table was written (its last successful materialisation)",
                                   labels=["table"])
        for name in sorted(TABLES):
            written = self._attempt(snap, f"the files of {name}", lambda n=name: self.reader.last_written(n))
            if written is None:
                continue
            family.add_metric([name], written)
            if name in INGEST_TABLES and (snap.last_ingest is None or written > snap.last_ingest):
                snap.last_ingest, snap.last_ingest_table = written, name
        return family

    # -- serving --------------------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        """prometheus_client's collector protocol: the families of the (cached) snapshot."""
        return list(self.snapshot().families)

    def describe(self) -> Iterable[Metric]:
        return []  # nothing read at registration; names are checked at scrape time

    def health(self) -> tuple[bool, str]:
        """(healthy, reason): unreadable warehouse or stale ingest is unhealthy."""
        snap = self.snapshot()
        if snap.errors:
            return False, "; ".join(snap.errors)
        if self.max_ingest_age_seconds is not None:
            if snap.last_ingest is None:
                return False, f"no ingest table ({', '.join(INGEST_TABLES)}) has been written to the warehouse yet"
            age = self._clock() - snap.last_ingest
            if age > self.max_ingest_age_seconds:
                return False, (f"ingest is stale: the newest ingest table ({snap.last_ingest_table}) was written "
                               f"{age:.0f} s ago, more than the allowed {self.max_ingest_age_seconds:g} s")
        return True, "ok"

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry


def _handler(exporter: WarehouseExporter, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/health":
                ok, reason = exporter.health()
                self._send(200 if ok else 503, (reason + "\n").encode())
            elif path == "/":
                self._send(200, b"ftops exporter: /metrics (Prometheus), /health\n")
            else:
                self._send(404, b"not found: /metrics or /health\n")

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
            logger.debug("%s " + format, self.address_string(), *args)

    return Handler


def make_server(exporter: WarehouseExporter, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """An HTTP server for /metrics and /health (not started: call serve_forever, or run it in a thread)."""
    server = ThreadingHTTPServer((host, port), _handler(exporter, exporter.registry()))
    server.daemon_threads = True
    return server
