"""The bundled catalogue against the raw price lists it was built from (../shared/realdata/prices).

Expected prices are recomputed here with plain pandas from the raw rows, not with from_skypilot, so
a mistake in the conversion cannot hide behind itself.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ftops.optimize.catalog import bundled_catalog

SEED = 20261202
# SkyPilot's name of the GPU billed with a GCP host, where it differs from the catalogue's gpu_model
GCP_GPU_ROW_NAME = {"a3-megagpu-8g": "H100-MEGA"}


@pytest.fixture(scope="module")
def raw(realdata):
    prices = realdata / "prices"
    aws = pd.concat([pd.read_csv(prices / "aws_gpu_p_family_subset.csv"),
                     pd.read_csv(prices / "aws_gpu_g_family_subset.csv")], ignore_index=True)
    return {"aws": aws, "gcp": pd.read_csv(prices / "gcp_gpu_rows.csv"),
            "azure": pd.read_csv(prices / "azure_gpu_rows.csv")}


def expected(raw, row) -> tuple[float, float]:
    """(on-demand, spot) of one catalogue row, recomputed from the raw rows."""
    data = raw[row.cloud]
    if row.cloud == "gcp":
        hosts = data[(data["InstanceType"] == row.instance_type) & (data["Region"] == row.region)]
        gpu_name = GCP_GPU_ROW_NAME.get(row.instance_type, row.gpu_model)
        gpus = data[data["InstanceType"].isna() & (data["AcceleratorName"] == gpu_name)
                    & (data["AcceleratorCount"] == row.gpu_count) & (data["Region"] == row.region)]
        zones = hosts.merge(gpus, on="AvailabilityZone", suffixes=("_host", "_gpu"))
        on_demand = zones["Price_host"] + zones["Price_gpu"]
        spot = zones["SpotPrice_host"] + zones["SpotPrice_gpu"]
    else:
        offers = data[(data["InstanceType"] == row.instance_type) & (data["Region"] == row.region)
                      & data["Price"].notna()]
        assert (offers["AcceleratorName"] == row.gpu_model).all()
        assert (offers["AcceleratorCount"] == row.gpu_count).all()
        on_demand, spot = offers["Price"], offers["SpotPrice"]
    assert len(on_demand) >= 1 and on_demand.round(6).nunique() == 1, (row, on_demand)
    return float(on_demand.iloc[0]), float(spot.min())  # min skips zones without a spot offer


def check(raw, row) -> None:
    on_demand, spot = expected(raw, row)
    assert row.on_demand_usd_per_hour == pytest.approx(on_demand, abs=1e-6), row
    if math.isnan(spot):
        assert math.isnan(row.spot_usd_per_hour), row
    else:
        assert row.spot_usd_per_hour == pytest.approx(spot, abs=1e-6), row


def test_a_random_sample_of_bundled_prices_matches_the_raw_lists(raw):
    bundled = bundled_catalog()
    sample = bundled.sample(30, random_state=SEED)
    assert set(sample["cloud"]) == {"aws", "gcp", "azure"}
    for row in sample.itertuples(index=False):  # 30 rows, each checked on its own raw rows
        check(raw, row)


def test_p5_48xlarge_us_east_1_and_every_p4de_24xlarge(raw):
    bundled = bundled_catalog()
    p5 = bundled[(bundled["instance_type"] == "p5.48xlarge") & (bundled["region"] == "us-east-1")]
    assert len(p5) == 1
    row = p5.iloc[0]
    assert (row.gpu_model, row.gpu_count, row.gpu_memory_gb, row.vcpus) == ("H100", 8, 80.0, 192.0)
    check(raw, row)
    p4de = bundled[bundled["instance_type"] == "p4de.24xlarge"]
    raw_regions = set(raw["aws"].loc[(raw["aws"]["InstanceType"] == "p4de.24xlarge") & raw["aws"]["Price"].notna(),
                                     "Region"])
    assert set(p4de["region"]) == raw_regions and len(p4de) >= 1
    assert (p4de["gpu_model"] == "A100-80GB").all() and (p4de["gpu_memory_gb"] == 80.0).all()
    for row in p4de.itertuples(index=False):
        check(raw, row)


def test_every_aws_and_azure_offer_with_a_known_gpu_is_in_the_catalogue(raw):
    bundled = bundled_catalog()
    for cloud, models in (("aws", None), ("azure", {"A10", "A100", "A100-80GB", "H100", "H200", "T4", "V100",
                                                    "V100-32GB"})):
        data = raw[cloud]
        offers = data[data["Price"].notna() & (data["AcceleratorCount"] >= 1)
                      & (data["AcceleratorCount"] % 1 == 0)]
        if models is not None:
            offers = offers[offers["AcceleratorName"].isin(models)]
        want = set(zip(offers["Region"], offers["InstanceType"]))
        have = bundled[bundled["cloud"] == cloud]
        assert set(zip(have["region"], have["instance_type"])) == want, cloud


def test_no_spot_offer_stays_empty_spot(raw):
    bundled = bundled_catalog()
    # g5.4xlarge has no spot offer in the us-west-2 Los Angeles local zone only: us-west-2 keeps a spot price
    g5 = bundled[(bundled["instance_type"] == "g5.4xlarge") & (bundled["region"] == "us-west-2")].iloc[0]
    assert not math.isnan(g5.spot_usd_per_hour)
    # p5.4xlarge has no spot offer in any us-east-1 zone
    p5 = bundled[(bundled["instance_type"] == "p5.4xlarge") & (bundled["region"] == "us-east-1")].iloc[0]
    assert math.isnan(p5.spot_usd_per_hour) and p5.on_demand_usd_per_hour == 6.88
