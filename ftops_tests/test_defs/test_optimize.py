"""Optimisation assets on a temporary instance: the catalogue's layers, and the advice built on them."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import yaml

from ftops.defs.io_manager import PartitionedParquetIOManager
from ftops.defs.optimize import CatalogResource, instance_catalog
from ftops.defs.resources import PolicyResource
from ftops.optimize.catalog import read_skypilot_csv, write_catalog

SKYPILOT_ROWS = """InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuMemoryMiBPerGpu,Price,SpotPrice,Region,AvailabilityZone
my-h100.8x,H100,8,192,2048,81920,40.00,12.00,us-east-1,use1-az1
p5.48xlarge,H100,8,192,2048,81920,50.00,15.00,us-east-1,use1-az1
"""


def _materialize(tmp_path, policy: dict) -> tuple[pd.DataFrame, dict]:
    config = tmp_path / "ftops.yaml"
    config.write_text(yaml.safe_dump(policy))
    folder = tmp_path / "catalog"
    folder.mkdir()
    source = tmp_path / "aws-extra.csv"
    source.write_text(SKYPILOT_ROWS)
    write_catalog(read_skypilot_csv(source, "aws"), folder / "aws-extra.csv")  # what `ftops catalog import` writes
    result = dg.materialize(
        [instance_catalog],
        resources={"policy": PolicyResource(config_path=str(config)), "catalog": CatalogResource(folder=str(folder)),
                   "io_manager": PartitionedParquetIOManager(base_path=str(tmp_path / "warehouse"))},
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    return pd.read_parquet(tmp_path / "warehouse" / "instance_catalog.parquet"), checks


def test_instance_catalog_layers_bundled_imported_yaml_rows_and_prices(tmp_path):
    table, checks = _materialize(tmp_path, {
        "prices": {"p5.48xlarge": {"on_demand_usd_per_hour": 45.0, "spot_usd_per_hour": 14.0}},
        "optimization": {"catalog": [{"cloud": "aws", "region": "eu-west-9", "instance_type": "my-l40s.4x",
                                      "gpu_model": "L40S", "gpu_count": 4, "gpu_memory_gb": 48,
                                      "on_demand_usd_per_hour": 9.0}]},
    })
    assert checks == {"contract_valid": True}
    rows = table.set_index(["cloud", "region", "instance_type"])
    assert rows.loc[("aws", "us-east-1", "my-h100.8x"), "on_demand_usd_per_hour"] == 40.0  # imported
    assert rows.loc[("aws", "eu-west-9", "my-l40s.4x"), "source"] == "ftops.yaml"  # a yaml row
    assert pd.isna(rows.loc[("aws", "eu-west-9", "my-l40s.4x"), "spot_usd_per_hour"])
    p5 = table[table["instance_type"] == "p5.48xlarge"]
    assert len(p5) > 1 and (p5["on_demand_usd_per_hour"] == 45.0).all() and (p5["spot_usd_per_hour"] == 14.0).all()
    assert {"gcp", "azure"} <= set(table["cloud"])  # the bundled rows are still there
