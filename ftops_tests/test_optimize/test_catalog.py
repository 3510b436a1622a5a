from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ftops.optimize.catalog import (
    CATALOG_COLUMNS, CatalogError, bundled_catalog, catalog_prices, combined_catalog, from_skypilot,
    gpus_per_instance, read_catalog, read_skypilot_csv, write_catalog,
)
from ftops.policy import policy_from_dict

DATE = "2026-12-02"
AWS_HEADER = ("InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "GpuMemoryMiBPerGpu",
              "Price", "SpotPrice", "Region", "AvailabilityZone")
GCP_HEADER = ("InstanceType", "vCPUs", "MemoryGiB", "AcceleratorName", "AcceleratorCount", "GpuInfo", "Region",
              "AvailabilityZone", "Price", "SpotPrice")
MIB_40 = "{'Gpus': [{'MemoryInfo': {'SizeInMiB': 40960}}]}"
MIB_16 = "{'Gpus': [{'MemoryInfo': {'SizeInMiB': 16384}}]}"


def frame(header, *rows) -> pd.DataFrame:
    return pd.DataFrame([dict(zip(header, r)) for r in rows], columns=list(header))


def aws(*rows) -> pd.DataFrame:
    return frame(AWS_HEADER, *rows)


def gcp(*rows) -> pd.DataFrame:
    return frame(GCP_HEADER, *rows)


def one(catalog: pd.DataFrame, **key) -> pd.Series:
    hit = catalog
    for column, value in key.items():
        hit = hit[hit[column] == value]
    assert len(hit) == 1, hit
    return hit.iloc[0]


def test_aws_zones_collapse_to_regions_with_the_lowest_zone_spot_and_missing_spot_kept_as_nan():
    out = from_skypilot(aws(
        ("p4d.24xlarge", "A100", 8.0, 96.0, 1152.0, 40960, 32.77, 9.5, "us-east-1", "use1-az1"),
        ("p4d.24xlarge", "A100", 8.0, 96.0, 1152.0, 40960, 32.77, 7.25, "us-east-1", "use1-az2"),
        ("p4d.24xlarge", "A100", 8.0, 96.0, 1152.0, 40960, 32.77, None, "us-east-1", "use1-az3"),
        ("p4d.24xlarge", "A100", 8.0, 96.0, 1152.0, 40960, 40.96, None, "eu-west-1", "euw1-az1"),
        # no on-demand offer in this zone: its spot price is not the region's
        ("p4d.24xlarge", "A100", 8.0, 96.0, 1152.0, 40960, None, 1.0, "eu-west-1", "euw1-az2"),
        # no on-demand offer anywhere in the region: no row
        ("p5e.48xlarge", "H200", 8.0, 192.0, 2048.0, 144384, None, 19.4, "us-east-2", "use2-az1"),
        ("g5.xlarge", "A10G", 1.0, 4.0, 16.0, 22888, 1.006, 0.3, "us-east-1", "use1-az1"),
    ), "aws", "test", DATE)
    assert list(out.columns) == list(CATALOG_COLUMNS)
    assert len(out) == 3
    east = one(out, region="us-east-1", instance_type="p4d.24xlarge")
    assert (east.on_demand_usd_per_hour, east.spot_usd_per_hour) == (32.77, 7.25)
    assert (east.cloud, east.gpu_model, east.gpu_count, east.gpu_memory_gb) == ("aws", "A100", 8, 40.0)
    assert (east.vcpus, east.memory_gb, east.source, east.price_date) == (96.0, 1152.0, "test", DATE)
    west = one(out, region="eu-west-1")
    assert west.on_demand_usd_per_hour == 40.96 and math.isnan(west.spot_usd_per_hour)
    # nominal datasheet memory, not the 22,888 MiB the driver leaves usable
    assert one(out, instance_type="g5.xlarge").gpu_memory_gb == 24.0
    assert out.dtypes.to_dict() == {
        **{c: pd.StringDtype() for c in ("cloud", "region", "instance_type", "gpu_model", "source", "price_date")},
        "gpu_count": np.dtype("int64"),
        **{c: np.dtype("float64") for c in ("gpu_memory_gb", "vcpus", "memory_gb", "on_demand_usd_per_hour",
                                            "spot_usd_per_hour")},
    }


def test_gcp_price_is_host_row_plus_gpu_row_of_the_same_zone():
    out = from_skypilot(gcp(
        ("a2-highgpu-8g", 96, 680, None, None, None, "us-central1", "us-central1-a", 6.0, 2.0),
        ("a2-highgpu-8g", 96, 680, None, None, None, "us-central1", "us-central1-b", 6.0, 1.5),
        (None, None, None, "A100", 8, MIB_40, "us-central1", "us-central1-a", 23.0, 9.0),
        (None, None, None, "A100", 8, MIB_40, "us-central1", "us-central1-b", 23.0, 8.0),
        (None, None, None, "A100", 1, MIB_40, "us-central1", "us-central1-a", 3.0, 1.0),  # no a2-highgpu-1g host
        # a zone where the GPU is not offered: the host alone is no GPU VM
        ("a2-highgpu-8g", 96, 680, None, None, None, "us-east1", "us-east1-b", 6.0, 2.0),
        # G2: the vCPU count in the name sets the number of L4s
        ("g2-standard-48", 48, 192, None, None, None, "us-central1", "us-central1-a", 2.0, None),
        (None, None, None, "L4", 4, None, "us-central1", "us-central1-a", 2.5, 1.0),
        # N1 hosts take attachable T4/V100 on the representative host for the count; P4 has no datasheet
        ("n1-highmem-8", 8, 52, None, None, None, "us-central1", "us-central1-a", 0.5, 0.1),
        ("n1-highmem-32", 32, 208, None, None, None, "us-central1", "us-central1-a", 2.0, 0.4),
        ("n1-standard-4", 4, 15, None, None, None, "us-central1", "us-central1-a", 0.2, 0.04),
        (None, None, None, "T4", 1, MIB_16, "us-central1", "us-central1-a", 0.35, 0.14),
        (None, None, None, "V100", 1, MIB_16, "us-central1", "us-central1-a", 2.48, 1.0),
        (None, None, None, "T4", 4, MIB_16, "us-central1", "us-central1-a", 1.4, 0.56),
        (None, None, None, "P4", 1, None, "us-central1", "us-central1-a", 0.6, 0.2),
        (None, None, None, "tpu-v3-8", 1, "tpu-v3-8", "us-central1", "us-central1-a", 8.0, None),
        # A3 Mega: SkyPilot's H100-MEGA is an H100
        ("a3-megagpu-8g", 208, 1872, None, None, None, "us-central1", "us-central1-a", 9.0, 3.0),
        (None, None, None, "H100-MEGA", 8, None, "us-central1", "us-central1-a", 80.0, 30.0),
    ), "gcp", "test", DATE)
    a2 = one(out, instance_type="a2-highgpu-8g")
    assert (a2.region, a2.gpu_model, a2.gpu_count) == ("us-central1", "A100", 8)
    assert a2.on_demand_usd_per_hour == 29.0 and a2.spot_usd_per_hour == 9.5  # zone b: 1.5 + 8.0
    assert (a2.vcpus, a2.memory_gb, a2.gpu_memory_gb) == (96.0, 680.0, 40.0)
    g2 = one(out, instance_type="g2-standard-48")
    assert (g2.gpu_model, g2.gpu_count, g2.on_demand_usd_per_hour) == ("L4", 4, 4.5)
    assert math.isnan(g2.spot_usd_per_hour)  # the host has no spot offer
    assert g2.gpu_memory_gb == 24.0  # no GpuInfo: the datasheet's memory
    t4 = one(out, instance_type="n1-highmem-8", gpu_model="T4")
    assert (t4.gpu_count, t4.on_demand_usd_per_hour, t4.spot_usd_per_hour) == (1, 0.85, 0.24)
    v100 = one(out, instance_type="n1-highmem-8", gpu_model="V100")
    assert v100.on_demand_usd_per_hour == pytest.approx(2.98)
    assert one(out, instance_type="n1-highmem-32").gpu_count == 4
    mega = one(out, instance_type="a3-megagpu-8g")
    assert (mega.gpu_model, mega.gpu_count, mega.on_demand_usd_per_hour) == ("H100", 8, 89.0)
    assert set(out["instance_type"]) == {"a2-highgpu-8g", "g2-standard-48", "n1-highmem-8", "n1-highmem-32",
                                         "a3-megagpu-8g"}
    assert out.attrs["skipped_accelerators"] == {}  # P4 and the TPU had no host pairing at all


def test_real_gcp_a2_highgpu_8g_is_host_plus_eight_a100(realdata):
    raw = pd.read_csv(realdata / "prices" / "gcp_gpu_rows.csv")
    zone = raw.loc[raw["InstanceType"].eq("a2-highgpu-8g"), "AvailabilityZone"].iloc[0]
    in_zone = raw[raw["AvailabilityZone"] == zone]
    host = in_zone[in_zone["InstanceType"] == "a2-highgpu-8g"].iloc[0]
    gpu = in_zone[in_zone["InstanceType"].isna() & (in_zone["AcceleratorName"] == "A100")
                  & (in_zone["AcceleratorCount"] == 8)].iloc[0]
    out = read_skypilot_csv(realdata / "prices" / "gcp_gpu_rows.csv", price_date=DATE)
    row = one(out, region=host["Region"], instance_type="a2-highgpu-8g")
    assert row.on_demand_usd_per_hour == pytest.approx(host["Price"] + gpu["Price"])
    assert (row.gpu_model, row.gpu_count, row.gpu_memory_gb, row.vcpus) == ("A100", 8, 40.0, host["vCPUs"])
    assert row.cloud == "gcp"  # from the file name
    assert not out["gpu_model"].str.startswith("tpu").any()


def test_azure_fractional_gpus_and_models_without_datasheet_are_skipped():
    header = ("InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "GpuInfo", "Price",
              "SpotPrice", "Region")
    out = from_skypilot(frame(header,
                              ("Standard_NV6ads_A10_v5", "A10", 0.167, 6, 55, "A10", 0.45, 0.1, "eastus"),
                              ("Standard_NV36ads_A10_v5", "A10", 1.0, 36, 440, "A10", 3.2, 0.9, "eastus"),
                              ("Standard_NV16as_v4", "MI25", 1.0, 16, 56, "MI25", 1.0, 0.3, "eastus")),
                        "Azure", "test", DATE)
    assert out["instance_type"].tolist() == ["Standard_NV36ads_A10_v5"]
    assert out["cloud"].tolist() == ["azure"] and out["gpu_memory_gb"].tolist() == [24.0]
    assert out.attrs["skipped_accelerators"] == {"A10": 1, "MI25": 1}


def test_skypilot_errors_name_the_source_line_and_column(tmp_path):
    with pytest.raises(CatalogError, match=r"x\.csv, line 3: column Price: 'free' is not a number"):
        from_skypilot(aws(("g5.xlarge", "A10G", 1, 4, 16, 22888, 1.0, None, "us-east-1", "a"),
                          ("g5.xlarge", "A10G", 1, 4, 16, 22888, "free", None, "us-east-1", "b")).astype(str),
                      "aws", "x.csv", DATE)
    with pytest.raises(CatalogError, match="missing columns Price"):
        from_skypilot(aws().drop(columns="Price"), "aws", "x.csv", DATE)
    with pytest.raises(CatalogError, match="negative price"):
        from_skypilot(aws(("g5.xlarge", "A10G", 1, 4, 16, 22888, -1.0, None, "us-east-1", "a")), "aws", "x", DATE)
    path = tmp_path / "prices.csv"
    aws(("g5.xlarge", "A10G", 1, 4, 16, 22888, 1.0, None, "us-east-1", "a")).to_csv(path, index=False)
    with pytest.raises(CatalogError, match=r"cannot tell the cloud .*--cloud"):
        read_skypilot_csv(path)
    assert read_skypilot_csv(path, "aws", price_date=DATE)["cloud"].tolist() == ["aws"]


def test_write_then_read_round_trips_and_the_schema_version_is_required(tmp_path):
    catalog = from_skypilot(aws(("g5.xlarge", "A10G", 1, 4, 16, 22888, 1.006, None, "us-east-1", "a"),
                                ("p5.48xlarge", "H100", 8, 192, 2048, 81920, 98.32, 12.5, "us-east-1", "a")),
                            "aws", "test", DATE)
    path = tmp_path / "c.csv"
    write_catalog(catalog, path, comments=["made by a test"])
    text = path.read_text()
    assert text.startswith("# ftops instance catalogue\n# schema_version: 1\n# made by a test\ncloud,region,")
    pd.testing.assert_frame_equal(read_catalog(path), catalog, check_like=False, check_exact=True)

    body = text.split("\n", 2)[2]
    (tmp_path / "none.csv").write_text("# ftops instance catalogue\n" + body)
    with pytest.raises(CatalogError, match=r"none\.csv: no '# schema_version: 1' line"):
        read_catalog(tmp_path / "none.csv")
    (tmp_path / "v2.csv").write_text(text.replace("schema_version: 1", "schema_version: 2"))
    with pytest.raises(CatalogError, match=r"v2\.csv: schema_version 2 is not supported"):
        read_catalog(tmp_path / "v2.csv")
    (tmp_path / "cols.csv").write_text(text.replace(",spot_usd_per_hour", ",spot"))
    with pytest.raises(CatalogError, match=r"cols\.csv: missing columns spot_usd_per_hour"):
        read_catalog(tmp_path / "cols.csv")
    # three comment lines and the header: data row 0 (g5) is on line 5, row 1 (p5) on line 6
    (tmp_path / "bad.csv").write_text(text.replace(",98.32,", ",lots,"))
    with pytest.raises(CatalogError, match=r"bad\.csv, line 6: column on_demand_usd_per_hour: 'lots'"):
        read_catalog(tmp_path / "bad.csv")
    (tmp_path / "dup.csv").write_text(text + text.splitlines()[-1] + "\n")
    with pytest.raises(CatalogError, match=r"dup\.csv, line 6: the key .* appears again at line 7"):
        read_catalog(tmp_path / "dup.csv")
    with pytest.raises(CatalogError, match=r"catalogue to write, row 0: column gpu_count: 0 is not allowed"):
        write_catalog(catalog.assign(gpu_count=0), tmp_path / "zero.csv")


def _policy(**data):
    return policy_from_dict(data)


def _imported(tmp_path, rows) -> str:
    folder = tmp_path / "catalog"
    write_catalog(from_skypilot(aws(*rows), "aws", "imported", DATE), folder / "aws-mine.csv")
    return str(folder)


def test_imported_files_then_yaml_rows_replace_bundled_rows_and_prices_win_over_everything(tmp_path):
    bundled = bundled_catalog()
    p5 = one(bundled, cloud="aws", region="us-east-1", instance_type="p5.48xlarge")
    folder = _imported(tmp_path, [("p5.48xlarge", "H100", 8, 192, 2048, 81920, 50.0, 10.0, "us-east-1", "a"),
                                  ("p5.48xlarge", "H100", 8, 192, 2048, 81920, 51.0, 11.0, "moon-1", "a")])
    policy = _policy(optimization={"catalog": [
        {"cloud": "AWS", "region": "moon-1", "instance_type": "p5.48xlarge", "gpu_model": "NVIDIA H100 80GB HBM3",
         "gpu_count": 8, "gpu_memory_gb": 80, "on_demand_usd_per_hour": 40.0},
        {"cloud": "onprem", "region": "basement", "instance_type": "dgx-1", "gpu_model": "V100",
         "gpu_count": 8, "gpu_memory_gb": 16, "on_demand_usd_per_hour": 5.0, "spot_usd_per_hour": 1.0},
    ]})
    combined = combined_catalog(policy, folder)
    assert p5.on_demand_usd_per_hour != 50.0
    east = one(combined, cloud="aws", region="us-east-1", instance_type="p5.48xlarge")
    assert (east.on_demand_usd_per_hour, east.spot_usd_per_hour, east.source) == (50.0, 10.0, "imported")
    moon = one(combined, region="moon-1")
    assert (moon.on_demand_usd_per_hour, moon.gpu_model, moon.source) == (40.0, "H100", "ftops.yaml")
    assert math.isnan(moon.spot_usd_per_hour) and pd.isna(moon.price_date)
    assert one(combined, instance_type="dgx-1").spot_usd_per_hour == 1.0
    assert len(combined) == len(bundled) + 2  # moon-1 and dgx-1 are new keys

    priced = _policy(prices={"p5.48xlarge": {"on_demand_usd_per_hour": 30.0}, "never-listed.2x": {
        "on_demand_usd_per_hour": 1.0}}, optimization={"catalog": [
            {"cloud": "aws", "region": "moon-1", "instance_type": "p5.48xlarge", "gpu_model": "H100",
             "gpu_count": 8, "gpu_memory_gb": 80, "on_demand_usd_per_hour": 40.0}]})
    priced = combined_catalog(priced, folder)
    p5_rows = priced[priced["instance_type"] == "p5.48xlarge"]
    assert len(p5_rows) > 3
    assert (p5_rows["on_demand_usd_per_hour"] == 30.0).all() and p5_rows["spot_usd_per_hour"].isna().all()
    assert (p5_rows["source"] == "ftops.yaml prices").all()
    assert "never-listed.2x" not in set(priced["instance_type"])  # prices do not invent rows
    untouched = priced[priced["instance_type"] == "p4d.24xlarge"]
    assert untouched["on_demand_usd_per_hour"].tolist() == bundled.loc[
        bundled["instance_type"] == "p4d.24xlarge", "on_demand_usd_per_hour"].tolist()


def test_a_missing_catalogue_folder_adds_nothing_and_a_bad_file_in_it_is_named(tmp_path):
    assert len(combined_catalog(_policy(), str(tmp_path / "absent"))) == len(bundled_catalog())
    (tmp_path / "broken.csv").write_text("cloud,region\naws,x\n")
    with pytest.raises(CatalogError, match=r"broken\.csv: no '# schema_version"):
        combined_catalog(_policy(), str(tmp_path))


REQUIRED = {
    "aws": {"H100", "H200", "A100", "A100-80GB", "L4", "L40S", "A10G", "T4", "V100", "V100-32GB", "B200"},
    "gcp": {"H100", "H200", "A100", "A100-80GB", "L4", "B200"},  # the source has no N1 hosts: no T4/V100
    "azure": {"H100", "H200", "A100", "A100-80GB", "A10", "T4", "V100", "V100-32GB"},
}


def test_bundled_catalogue_covers_the_required_models_on_each_cloud():
    bundled = bundled_catalog()
    assert list(bundled.columns) == list(CATALOG_COLUMNS)
    for cloud, models in REQUIRED.items():
        assert models <= set(bundled.loc[bundled["cloud"] == cloud, "gpu_model"]), cloud
    assert set(bundled["cloud"]) == {"aws", "gcp", "azure"}
    assert not bundled.duplicated(["cloud", "region", "instance_type", "gpu_model", "gpu_count"]).any()
    assert (bundled["on_demand_usd_per_hour"] > 0).all() and (bundled["price_date"] == DATE).all()
    assert bundled["spot_usd_per_hour"].isna().any()  # kept, not dropped
    from ftops.optimize.gpus import datasheets

    assert set(bundled["gpu_model"]) <= set(datasheets().index)


def test_bundled_catalogue_is_what_the_build_script_makes_from_the_real_files(realdata, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "rebuilt.csv"
    subprocess.run([sys.executable, str(root / "tools" / "build_catalog.py"), str(realdata / "prices"),
                    "--price-date", DATE, "--out", str(out)], check=True, capture_output=True)
    assert out.read_text() == (root / "ftops" / "data" / "instance_catalog.csv").read_text()


def test_gpus_per_instance_and_catalog_prices():
    catalog = from_skypilot(gcp(
        ("n1-highmem-8", 8, 52, None, None, None, "r1", "r1-a", 0.5, 0.1),
        ("n1-highmem-16", 16, 104, None, None, None, "r1", "r1-a", 1.0, 0.2),
        (None, None, None, "T4", 1, None, "r1", "r1-a", 0.35, 0.14),
        (None, None, None, "V100", 2, None, "r1", "r1-a", 5.0, 2.0),
        ("a3-highgpu-8g", 208, 1872, None, None, None, "r1", "r1-a", 10.0, 3.0),
        ("a3-highgpu-8g", 208, 1872, None, None, None, "r2", "r2-a", 12.0, None),
        ("a3-highgpu-8g", 208, 1872, None, None, None, "r3", "r3-a", 20.0, None),
        (None, None, None, "H100", 8, None, "r1", "r1-a", 80.0, 30.0),
        (None, None, None, "H100", 8, None, "r2", "r2-a", 80.0, 30.0),
        (None, None, None, "H100", 8, None, "r3", "r3-a", 80.0, 30.0),
    ), "gcp", "t", DATE)
    per = gpus_per_instance(catalog)
    assert per["a3-highgpu-8g"] == 8 and per["n1-highmem-16"] == 2 and per["n1-highmem-8"] == 1
    found = catalog_prices(catalog, pd.Series(["GCP", "gcp", None, "gcp"], index=[4, 5, 6, 7]),
                           pd.Series(["r2", "nowhere", "r1", "r1"], index=[4, 5, 6, 7]),
                           pd.Series(["a3-highgpu-8g", "a3-highgpu-8g", "a3-highgpu-8g", "mystery"],
                                     index=[4, 5, 6, 7]))
    assert list(found.index) == [4, 5, 6, 7]
    assert found.loc[4, "on_demand_usd_per_hour"] == 92.0 and math.isnan(found.loc[4, "spot_usd_per_hour"])
    assert found.loc[4, "basis"] == "region"
    assert found.loc[5, "on_demand_usd_per_hour"] == 92.0  # median of 90, 92, 100
    assert found.loc[5, "spot_usd_per_hour"] == 33.0 and found.loc[5, "basis"] == "median over regions"
    assert found.loc[6, "basis"] == "median over regions"
    assert pd.isna(found.loc[7, "basis"]) and math.isnan(found.loc[7, "on_demand_usd_per_hour"])
