"""The ftops code location: one dg.Definitions built from defs/.

Settings come from the environment, with the embedded default when nothing is set:
FTOPS_INBOX (default `.ftops/inbox`), FTOPS_WAREHOUSE (default `.ftops/warehouse`; any fsspec
URL such as `s3://bucket/ftops` works), FTOPS_CONFIG (default `ftops.yaml` when it exists, else
`.ftops/ftops.yaml`, the policy `ftops demo` writes for its fleet).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg

from ftops.defs.costs import COST_ASSETS
from ftops.defs.ingest import INGEST_ASSETS
from ftops.defs.monitoring import MONITORING_ASSETS
from ftops.defs.io_manager import PartitionedParquetIOManager
from ftops.defs.jobs import INGEST_JOBS, MONITORING_JOBS
from ftops.defs.resources import InboxResource, PolicyResource, WarehouseResource
from ftops.defs.sensors import automation_sensor, inbox_sensor
from ftops.policy import load_policy


DEFAULT_CONFIGS = ("ftops.yaml", ".ftops/ftops.yaml")


@dataclass(frozen=True)
class Settings:
    inbox: str
    warehouse: str
    config: str | None


def _local_or_url(value: str) -> str:
    return value if "://" in value else os.path.abspath(value)


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    config = env.get("FTOPS_CONFIG") or next((p for p in DEFAULT_CONFIGS if os.path.exists(p)), None)
    return Settings(
        inbox=_local_or_url(env.get("FTOPS_INBOX", ".ftops/inbox")),
        warehouse=_local_or_url(env.get("FTOPS_WAREHOUSE", ".ftops/warehouse")),
        config=os.path.abspath(config) if config else None,
    )


def build_definitions(settings: Settings) -> dg.Definitions:
    policy = load_policy(settings.config)  # a bad ftops.yaml fails the code location with the key named
    return dg.Definitions(
        assets=[*INGEST_ASSETS, *MONITORING_ASSETS, *COST_ASSETS],
        jobs=[*INGEST_JOBS, *MONITORING_JOBS],
        sensors=[inbox_sensor, automation_sensor],
        resources={
            "io_manager": PartitionedParquetIOManager(base_path=settings.warehouse),
            "inbox": InboxResource(
                inbox_path=settings.inbox,
                warehouse_path=settings.warehouse,
                job_tag_key=policy.job_tag_key,
                budget_tag_key=policy.budget_tag_key,
            ),
            "policy": PolicyResource(config_path=settings.config),
            "warehouse": WarehouseResource(base_path=settings.warehouse),
        },
    )


defs = build_definitions(settings_from_env())
