"""The ftops code location: one dg.Definitions built from defs/.

Settings come from the environment, with the embedded default when nothing is set:
FTOPS_INBOX (default `.ftops/inbox`), FTOPS_WAREHOUSE (default `.ftops/warehouse`; any fsspec
URL such as `s3://bucket/ftops` works), FTOPS_CONFIG (default `ftops.yaml` when it exists, else
`.ftops/ftops.yaml`, the policy `ftops demo` writes for its fleet), FTOPS_PROMETHEUS_URL (a
Prometheus server to pull GPU series from every 15 minutes; unset: the pull schedule is stopped),
FTOPS_REPORTS (default `.ftops/reports`: the HTML reports and job pages).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg

from ftops.defs.calibration import CALIBRATION_JOBS
from ftops.defs.costs import COST_ASSETS
from ftops.defs.failures import FAILURE_ASSETS
from ftops.defs.ingest import INGEST_ASSETS
from ftops.defs.enforcement import ActuatorResource, LedgerResource, action_ledger, budget_enforcement, budget_sensor
from ftops.defs.monitoring import MONITORING_ASSETS
from ftops.defs.notifiers import NotifiersResource
from ftops.defs.optimize import OPTIMIZATION_ASSETS, CatalogResource
from ftops.defs.pages import PAGE_ASSETS, PAGE_SENSORS
from ftops.defs.predict import PREDICT_ASSETS
from ftops.defs.risk import RISK_ASSETS
from ftops.defs.recovery import RECOVERY_JOBS, RECOVERY_SENSORS
from ftops.defs.reports import REPORT_ASSETS, REPORT_JOBS, REPORT_SCHEDULES
from ftops.defs.prometheus import PrometheusResource, prometheus_pull, prometheus_pull_schedule
from ftops.defs.io_manager import JoblibModelIOManager, PartitionedParquetIOManager
from ftops.defs.jobs import INGEST_JOBS, MONITORING_JOBS
from ftops.defs.partitions import FleetPartitions, configured
from ftops.defs.resources import InboxResource, PolicyResource, ReportsResource, WarehouseResource
from ftops.defs.sensors import automation_sensor, inbox_sensor
from ftops.policy import load_policy


DEFAULT_CONFIGS = ("ftops.yaml", ".ftops/ftops.yaml")
DEFAULT_PROMETHEUS_URL = "http://localhost:9090"  # Prometheus' own default, for a manual run of the pull


@dataclass(frozen=True)
class Settings:
    inbox: str
    warehouse: str
    config: str | None
    ledger: str | None = None  # default: `_ledger` in a local warehouse, else .ftops/ledger
    env: tuple[tuple[str, str], ...] = ()  # FTOPS_* settings of notifiers and actuators
    catalog: str | None = None  # folder of catalogues added with `ftops catalog import`
    reports: str | None = None  # folder of the HTML reports and job pages

    def get(self, name: str, default: str | None = None) -> str | None:
        return dict(self.env).get(name, default)


def _local_or_url(value: str) -> str:
    return value if "://" in value else os.path.abspath(value)


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    config = env.get("FTOPS_CONFIG") or next((p for p in DEFAULT_CONFIGS if os.path.exists(p)), None)
    return Settings(
        inbox=_local_or_url(env.get("FTOPS_INBOX", ".ftops/inbox")),
        warehouse=_local_or_url(env.get("FTOPS_WAREHOUSE", ".ftops/warehouse")),
        config=os.path.abspath(config) if config else None,
        ledger=os.path.abspath(env["FTOPS_LEDGER"]) if env.get("FTOPS_LEDGER") else None,
        catalog=os.path.abspath(env.get("FTOPS_CATALOG", ".ftops/catalog")),
        reports=os.path.abspath(env.get("FTOPS_REPORTS", ".ftops/reports")),
        env=tuple(sorted((k, v) for k, v in env.items() if k.startswith("FTOPS_") or k == "SLACK_BOT_TOKEN")),
    )


def ledger_folder(settings: Settings) -> str:
    if settings.ledger:
        return settings.ledger
    # the ledger is an append-only log that needs a real file system (fsync, locks)
    return os.path.join(settings.warehouse, "_ledger") if "://" not in settings.warehouse else os.path.abspath(
        ".ftops/ledger")


def reports_folder(settings: Settings) -> str:
    """FTOPS_REPORTS; without one (Settings built in code: tests, benchmarks), `_reports` in a local
    warehouse, so pages land beside the data they show and never in the working directory."""
    if settings.reports:
        return settings.reports
    return os.path.join(settings.warehouse, "_reports") if "://" not in settings.warehouse else os.path.abspath(
        ".ftops/reports")


def build_definitions(settings: Settings) -> dg.Definitions:
    policy = load_policy(settings.config)  # a bad ftops.yaml fails the code location with the key named
    partitions = FleetPartitions.from_policy(policy.partitions)
    return dg.Definitions(
        assets=configured([*INGEST_ASSETS, *MONITORING_ASSETS, *COST_ASSETS, *OPTIMIZATION_ASSETS, *FAILURE_ASSETS,
                           *RISK_ASSETS, *PREDICT_ASSETS, action_ledger, *REPORT_ASSETS, *PAGE_ASSETS], partitions),
        jobs=[*INGEST_JOBS, *MONITORING_JOBS, budget_enforcement, *CALIBRATION_JOBS, *RECOVERY_JOBS, prometheus_pull,
              *REPORT_JOBS],
        sensors=[inbox_sensor, automation_sensor, budget_sensor, *RECOVERY_SENSORS, *PAGE_SENSORS],
        schedules=[prometheus_pull_schedule(running=bool(settings.get("FTOPS_PROMETHEUS_URL"))), *REPORT_SCHEDULES],
        resources={
            "io_manager": PartitionedParquetIOManager(base_path=settings.warehouse),
            "model_io_manager": JoblibModelIOManager(base_path=settings.warehouse),
            "inbox": InboxResource(
                inbox_path=settings.inbox,
                warehouse_path=settings.warehouse,
                job_tag_key=policy.job_tag_key,
                budget_tag_key=policy.budget_tag_key,
                future_tolerance_hours=policy.ingest.future_tolerance_hours,
                staging_workers=policy.ingest.staging_workers,
                partitions_start=partitions.start,
                shards=partitions.shards,
            ),
            "policy": PolicyResource(config_path=settings.config),
            "catalog": CatalogResource(folder=settings.catalog),
            "reports": ReportsResource(folder=reports_folder(settings)),
            "warehouse": WarehouseResource(base_path=settings.warehouse),
            "ledger": LedgerResource(folder=ledger_folder(settings)),
            "actuator": ActuatorResource(
                kind=settings.get("FTOPS_ACTUATOR", "record"),
                control_dir=settings.get("FTOPS_CONTROL_DIR"),
                webhook_url=settings.get("FTOPS_ACTUATOR_WEBHOOK_URL"),
                webhook_secret_env=settings.get("FTOPS_ACTUATOR_WEBHOOK_SECRET_ENV"),
                kubernetes_namespace=settings.get("FTOPS_KUBERNETES_NAMESPACE", "default"),
            ),
            "prometheus": PrometheusResource(url=settings.get("FTOPS_PROMETHEUS_URL") or DEFAULT_PROMETHEUS_URL),
            "notifiers": NotifiersResource(
                webhook_url=settings.get("FTOPS_WEBHOOK_URL"),
                webhook_secret_env=settings.get("FTOPS_WEBHOOK_SECRET_ENV"),
                slack_token=dg.EnvVar("SLACK_BOT_TOKEN") if settings.get("SLACK_BOT_TOKEN") else None,
                slack_channel=settings.get("FTOPS_SLACK_CHANNEL"),
                alertmanager_url=settings.get("FTOPS_ALERTMANAGER_URL"),
            ),
        },
    )


defs = build_definitions(settings_from_env())
