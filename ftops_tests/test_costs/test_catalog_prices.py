"""Estimates of un-billed job-hours: ftops.yaml prices, else the catalogue's region price, else its
median over regions, else no estimate."""

from __future__ import annotations

import pandas as pd

from ftops.costs import attribute_costs, job_hours
from ftops.optimize.catalog import gpus_per_instance
from ftops.policy import InstancePrice

from .frames import bill, jobs, ts

NOW = ts("2024-09-10 12:00")
CATALOG = pd.DataFrame({
    "cloud": ["aws", "aws", "aws", "gcp"],
    "region": ["us-east-1", "eu-west-1", "ap-south-1", "us-central1"],
    "instance_type": ["p4d.24xlarge", "p4d.24xlarge", "p4d.24xlarge", "a2-highgpu-8g"],
    "gpu_model": ["A100", "A100", "A100", "A100"],
    "gpu_count": [8, 8, 8, 8],
    "gpu_memory_gb": [40.0] * 4,
    "vcpus": [96.0] * 4,
    "memory_gb": [1152.0] * 4,
    "on_demand_usd_per_hour": [32.0, 40.0, 36.0, 29.0],
    "spot_usd_per_hour": [8.0, float("nan"), 10.0, 9.0],
    "source": ["test"] * 4,
    "price_date": ["2026-12-02"] * 4,
})


def estimates(registry, prices=None, catalog=CATALOG):
    usage = job_hours(registry, NOW, gpus_per_instance(catalog) if catalog is not None else None)
    out = attribute_costs(bill(), registry, usage, prices or {}, NOW, catalog=catalog)
    return out.set_index("job_id")


def one_hour(job_id, **spec):
    return {"job_id": job_id, "started_at": "2024-09-10 11:00", "instance_type": "p4d.24xlarge", "cloud": "aws",
            "region": "us-east-1", "gpu_count": 8, **spec}


def test_the_region_price_of_the_catalogue_costs_the_job():
    out = estimates(jobs(one_hour("east"), one_hour("west", region="eu-west-1"),
                         one_hour("spot", pricing="spot"), one_hour("gcp", cloud="GCP", region="us-central1",
                                                                     instance_type="a2-highgpu-8g")))
    assert out.loc["east", "cost_usd"] == 32.0 and pd.isna(out.loc["east", "note"])
    assert out.loc["west", "cost_usd"] == 40.0
    assert out.loc["spot", "cost_usd"] == 8.0
    assert out.loc["gcp", "cost_usd"] == 29.0  # the job's "GCP" is the catalogue's gcp


def test_ftops_yaml_prices_win_over_the_catalogue_spot_included():
    prices = {"p4d.24xlarge": InstancePrice(on_demand_usd_per_hour=20.0)}
    out = estimates(jobs(one_hour("east"), one_hour("spot", pricing="spot")), prices)
    assert out.loc["east", "cost_usd"] == 20.0
    # the policy gave no spot price: on-demand of the policy, not the catalogue's spot
    assert out.loc["spot", "cost_usd"] == 20.0 and out.loc["spot", "note"] == "no spot price: on-demand price used"


def test_an_unlisted_region_is_costed_at_the_median_over_regions_and_says_so():
    out = estimates(jobs(one_hour("moon", region="moon-1"), one_hour("nowhere", region=None, cloud=None),
                         one_hour("spot", region="moon-1", pricing="spot")))
    assert out.loc["moon", "cost_usd"] == 36.0  # median of 32, 40, 36
    assert out.loc["moon", "note"] == ("catalogue median over regions of p4d.24xlarge: "
                                       "no catalogue price for aws/moon-1")
    assert out.loc["nowhere", "cost_usd"] == 36.0 and "?/?" in out.loc["nowhere", "note"]
    assert out.loc["spot", "cost_usd"] == 9.0  # median of the spot prices that exist: 8, 10


def test_an_instance_type_nobody_prices_gets_no_estimate_and_instances_come_from_the_catalogue():
    out = estimates(jobs(one_hour("x", instance_type="mystery.8x"), one_hour("big", gpu_count=16)))
    assert pd.isna(out.loc["x", "cost_usd"]) and "mystery.8x" in out.loc["x", "note"]
    assert out.loc["big", "cost_usd"] == 64.0  # 16 GPUs on 8-GPU instances: two instance-hours
    without = estimates(jobs(one_hour("east")), catalog=None)
    assert pd.isna(without.loc["east", "cost_usd"])  # no prices and no catalogue: as before


def test_usage_carries_the_region():
    usage = job_hours(jobs(one_hour("east")), NOW)
    assert usage["region"].tolist() == ["us-east-1"] and str(usage["region"].dtype) == "string"
