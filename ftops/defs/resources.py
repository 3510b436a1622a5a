"""Resources: where the inbox and the warehouse are, and the policy in force."""

from __future__ import annotations

import os

import dagster as dg
import pandas as pd

from ftops.defs.io_manager import read_table
from ftops.defs.partitions import FleetPartitions
from ftops.policy import PartitionsPolicy, Policy, load_policy
from ftops.staging import Staging


class InboxResource(dg.ConfigurableResource):
    """The inbox folder (or fsspec URL), the warehouse where its files are staged once, and the
    partitions they are cut into (ftops.yaml `partitions:`, the same the assets are built with)."""

    inbox_path: str
    warehouse_path: str
    job_tag_key: str = "job_id"
    budget_tag_key: str = "budget_category"
    future_tolerance_hours: float = 24.0  # ftops.yaml ingest.future_tolerance_hours
    staging_workers: int | None = None  # ftops.yaml ingest.staging_workers; None: one per core
    partitions_start: str = PartitionsPolicy.start  # ftops.yaml partitions.start
    shards: int = PartitionsPolicy.shards  # ftops.yaml partitions.shards

    def partitions(self) -> FleetPartitions:
        return FleetPartitions(self.partitions_start, self.shards)

    def staging(self) -> Staging:
        return Staging(
            self.warehouse_path,
            earliest=self.partitions().earliest,
            job_tag_key=self.job_tag_key,
            budget_tag_key=self.budget_tag_key,
            future_tolerance_hours=self.future_tolerance_hours,
            workers=self.staging_workers,
            shards=self.shards,
        )


class PolicyResource(dg.ConfigurableResource):
    """`ftops.yaml`: thresholds, budgets, routes, modes and prices (spec defaults when absent)."""

    config_path: str | None = None

    def load(self) -> Policy:
        return load_policy(self.config_path)


class WarehouseResource(dg.ConfigurableResource):
    """Read access to stored asset tables, for sensors and stateful assets (their previous value)."""

    base_path: str

    def read(self, asset: str, partition_key: str | None = None) -> pd.DataFrame | None:
        return read_table(self.base_path, dg.AssetKey(asset), partition_key)


class ReportsResource(dg.ConfigurableResource):
    """The folder HTML reports and job pages are written to (FTOPS_REPORTS, default .ftops/reports):
    a local folder, because people open the pages from it in a browser."""

    folder: str

    def path(self, *parts: str) -> str:
        return os.path.join(self.folder, *parts)
