"""Instance selection on hand-made catalogue and datasheet frames: every number is worked out here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ftops.optimize.selection import (
    NoCandidateError,
    Requirements,
    RequirementsError,
    Work,
    best_per_type,
    rank_instances,
)

DATASHEETS = pd.DataFrame(
    {"memory_gb": [80.0, 80.0, 24.0, 141.0], "dense_bf16_tflops": [312.0, 1000.0, 120.0, 1000.0],
     "memory_bandwidth_gbps": [2039.0, 3350.0, 300.0, 4800.0], "source": ["t"] * 4},
    index=pd.Index(["A100-80GB", "H100", "L4", "H200"], name="gpu_model"),
)


def catalog(rows: list[tuple]) -> pd.DataFrame:
    cols = ["cloud", "region", "instance_type", "gpu_model", "gpu_count", "gpu_memory_gb", "vcpus", "memory_gb",
            "on_demand_usd_per_hour", "spot_usd_per_hour"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["source"] = "test"
    frame["price_date"] = "2026-01-01"
    return frame


CATALOG = catalog([
    ("aws", "us-east-1", "p4de.24xlarge", "A100-80GB", 8, 80.0, 96.0, 1152.0, 40.0, 16.0),
    ("aws", "us-east-1", "p5.48xlarge", "H100", 8, 80.0, 192.0, 2048.0, 100.0, 30.0),
    ("aws", "us-west-2", "p5.48xlarge", "H100", 8, 80.0, 192.0, 2048.0, 100.0, np.nan),
    ("gcp", "us-central1", "a3-highgpu-8g", "H100", 8, 80.0, 208.0, 1872.0, 110.0, 40.0),
    ("aws", "us-east-1", "p5en.48xlarge", "H200", 8, 141.0, 192.0, 2048.0, 120.0, 50.0),
    ("aws", "us-east-1", "g6.xlarge", "L4", 1, 24.0, 4.0, 16.0, 0.8, 0.3),
    ("aws", "us-east-1", "g6.12xlarge", "L4", 4, 24.0, 48.0, 192.0, 4.6, 1.5),
    ("aws", "us-east-1", "g6.48xlarge", "L4", 8, 24.0, 192.0, 768.0, 13.4, 5.0),
    ("aws", "us-east-1", "mystery.8x", "X999", 8, 96.0, 96.0, 1024.0, 5.0, 1.0),
])


def rank(req: Requirements, work: Work | None = None, **kw) -> pd.DataFrame:
    return rank_instances(CATALOG, req, work or Work(reference_hours=10.0), datasheets=DATASHEETS, **kw)


def test_datasheet_hours_are_the_tflops_ratio_against_the_reference_and_cost_is_the_whole_job():
    r = rank(Requirements(8, 80))
    by = r.set_index(["region", "instance_type"])
    # 10 h on 8 x A100-80GB (312 TFLOP/s) -> H100 (1000): 3.12 h; the whole job on p5 costs 3.12 x 100
    assert by.loc[("us-east-1", "p5.48xlarge"), "expected_hours"] == pytest.approx(3.12)
    assert by.loc[("us-east-1", "p5.48xlarge"), "on_demand_cost_usd"] == pytest.approx(312.0)
    assert by.loc[("us-east-1", "p5.48xlarge"), "spot_cost_usd"] == pytest.approx(3.12 * 30.0)
    assert by.loc[("us-east-1", "p4de.24xlarge"), "on_demand_cost_usd"] == pytest.approx(400.0)
    # ranked by the whole job: the H100 at 2.5x the price per hour is cheaper than the A100
    assert list(r["instance_type"][:2]) == ["p5.48xlarge", "p5.48xlarge"]
    assert set(r["basis"]) == {"datasheet"}
    assert (r["measured_job_ids"] == "").all()
    # no datasheet, no measurement: dropped and named
    assert "mystery.8x" not in set(r["instance_type"])
    assert r.attrs["dropped_no_throughput"] == ["mystery.8x"]


def test_ties_are_broken_deterministically_by_hours_price_then_names():
    r = rank(Requirements(8, 80))
    # both p5 rows cost 312; us-east-1 sorts before us-west-2
    assert list(r["region"][:2]) == ["us-east-1", "us-west-2"]
    shuffled = rank_instances(CATALOG.sample(frac=1.0, random_state=3), Requirements(8, 80), Work(reference_hours=10.0),
                              datasheets=DATASHEETS)
    pd.testing.assert_frame_equal(r, shuffled)
    assert r["on_demand_cost_usd"].is_monotonic_increasing


def test_missing_spot_price_is_nan_not_zero():
    r = rank(Requirements(8, 80)).set_index(["region", "instance_type"])
    assert math.isnan(r.loc[("us-west-2", "p5.48xlarge"), "spot_usd_per_hour"])
    assert math.isnan(r.loc[("us-west-2", "p5.48xlarge"), "spot_cost_usd"])


@pytest.mark.parametrize(("req", "expected"), [
    (Requirements(8, 100), {"p5en.48xlarge"}),
    (Requirements(8, 80, host_memory_gb=2000), {"p5.48xlarge", "p5en.48xlarge"}),
    (Requirements(8, 80, vcpus=200), {"a3-highgpu-8g"}),
    (Requirements(8, 80, cloud="gcp"), {"a3-highgpu-8g"}),
    (Requirements(8, 80, cloud="AWS", region="us-west-2"), {"p5.48xlarge"}),
    (Requirements(4), {"g6.12xlarge"}),
])
def test_each_requirement_filters(req, expected):
    assert set(rank(req)["instance_type"]) == expected


def test_more_gpus_than_a_node_takes_several_of_the_largest_node_only():
    r = rank(Requirements(16, 20))
    # 2 x 8-GPU nodes; never 4 x g6.12xlarge or 16 x g6.xlarge when an 8 x L4 node exists
    assert set(r["instances"]) == {2}
    assert "g6.12xlarge" not in set(r["instance_type"]) and "g6.xlarge" not in set(r["instance_type"])
    row = r.set_index(["region", "instance_type"]).loc[("us-east-1", "g6.48xlarge")]
    # 10 h x 312/120 on L4, two nodes paid
    assert row["on_demand_cost_usd"] == pytest.approx(10 * 312 / 120 * 13.4 * 2)
    # host memory and vCPUs are the whole job's: two p4de nodes hold 2 x 1152 GB
    assert set(rank(Requirements(16, 80, host_memory_gb=2300))["instance_type"]) == {
        "p4de.24xlarge", "p5.48xlarge", "a3-highgpu-8g", "p5en.48xlarge"}


def test_tokens_use_flops_per_token_of_the_technique():
    tokens, params = 1e9, 7.0
    full = rank(Requirements(1), Work(tokens=tokens, model_params_b=params, technique="full"), datasheet_mfu=0.5)
    lora = rank(Requirements(1), Work(tokens=tokens, model_params_b=params, technique="lora"), datasheet_mfu=0.5)
    qlora = rank(Requirements(1), Work(tokens=tokens, model_params_b=params, technique="qlora"), datasheet_mfu=0.5)
    expected_full = 6 * 7e9 * 1e9 / (1 * 120e12 * 0.5 * 3600)
    assert full["expected_hours"].iloc[0] == pytest.approx(expected_full)
    assert lora["expected_hours"].iloc[0] == pytest.approx(expected_full * 4 / 6)
    assert qlora["expected_hours"].iloc[0] == pytest.approx(expected_full * 4 / 6 * 1.3)


def measured(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["technique", "model_params_b", "gpu_model", "gpu_count", "pricing",
                                       "tokens_per_second_per_gpu", "samples_per_second_per_gpu", "job_ids", "jobs"])


def test_measured_slow_gpu_loses_even_with_a_better_datasheet():
    # the fleet's H100 jobs ran at the A100's speed (a bad interconnect, say): the datasheet's 3.2x is not real
    m = measured([
        ("lora", 7.0, "H100", 8, "on_demand", 1000.0, 0.5, "j1,j2", 2),
        ("lora", 7.0, "A100-80GB", 8, "on_demand", 1000.0, 0.5, "j3", 1),
    ])
    work = Work(reference_hours=10.0, model_params_b=7.0, technique="lora")
    r = rank(Requirements(8, 80), work, measured=m)
    by = r.set_index(["region", "instance_type"])
    assert by.loc[("us-east-1", "p5.48xlarge"), "basis"] == "measured"
    assert by.loc[("us-east-1", "p5.48xlarge"), "expected_hours"] == pytest.approx(10.0)
    assert by.loc[("us-east-1", "p5.48xlarge"), "measured_job_ids"] == "j1,j2,j3"
    order = list(r["instance_type"])
    assert order.index("p4de.24xlarge") < order.index("p5.48xlarge")  # 400 USD beats 1,000 USD now
    # H200 has no measurement: datasheet
    assert by.loc[("us-east-1", "p5en.48xlarge"), "basis"] == "datasheet"


def test_measured_tokens_per_second_give_hours_directly_and_size_is_rescaled():
    m = measured([("qlora", 8.0, "L4", 1, "spot", 800.0, np.nan, "a", 1)])
    # 7B job, measured on an 8B model (within 1.5x): 800 x 8/7 tokens/s
    r = rank(Requirements(1), Work(tokens=1e8, model_params_b=7.0, technique="qlora"), measured=m)
    assert r["basis"].iloc[0] == "measured"
    assert r["expected_hours"].iloc[0] == pytest.approx(1e8 / (800.0 * 8 / 7) / 3600)
    # another technique, or a model more than 1.5x away, is not comparable: datasheet
    for work in (Work(tokens=1e8, model_params_b=7.0, technique="lora"),
                 Work(tokens=1e8, model_params_b=13.0, technique="qlora")):
        assert rank(Requirements(1), work, measured=m)["basis"].iloc[0] == "datasheet"


def test_measured_rows_on_the_same_gpu_count_are_preferred():
    m = measured([("full", 7.0, "L4", 1, "spot", 1000.0, np.nan, "one", 1),
                  ("full", 7.0, "L4", 8, "spot", 600.0, np.nan, "eight", 1)])
    r = rank(Requirements(8), Work(tokens=1e9, model_params_b=7.0, technique="full"), measured=m)
    row = r.set_index("instance_type").loc["g6.48xlarge"]
    assert row["expected_hours"] == pytest.approx(1e9 / (600.0 * 8) / 3600)
    assert row["measured_job_ids"] == "eight"


def test_reference_ratio_needs_the_reference_measured_too():
    m = measured([("lora", 7.0, "H100", 8, "on_demand", 1000.0, 0.5, "j1", 1)])
    r = rank(Requirements(8, 80), Work(reference_hours=10.0, model_params_b=7.0, technique="lora"), measured=m)
    assert set(r["basis"]) == {"datasheet"}


def test_no_candidate_names_the_requirement():
    with pytest.raises(NoCandidateError, match=r"no instance has 8 GPUs with ≥ 200 GB each; the largest is "
                                               r"8 × 141 GB \(H200\)"):
        rank(Requirements(8, 200))
    with pytest.raises(NoCandidateError, match="no instance has 3 GPUs.*GPU counts on offer: 1, 4, 8"):
        rank(Requirements(3))
    with pytest.raises(NoCandidateError, match="≥ 5000 GB host memory; the most is 2048 GB"):
        rank(Requirements(8, 80, host_memory_gb=5000))
    with pytest.raises(NoCandidateError, match="no instance in cloud 'ibm'"):
        rank(Requirements(8, cloud="ibm"))
    with pytest.raises(NoCandidateError, match="no instance in region 'mars-1'"):
        rank(Requirements(8, cloud="aws", region="mars-1"))
    only_unknown = CATALOG[CATALOG["instance_type"] == "mystery.8x"]
    with pytest.raises(NoCandidateError, match=r"datasheet or a measured throughput \(X999\)"):
        rank_instances(only_unknown, Requirements(8), Work(reference_hours=1.0), datasheets=DATASHEETS)


@pytest.mark.parametrize("kwargs", [
    {"gpus": 0}, {"gpus": -2}, {"gpus": 1.5}, {"gpus": 8, "gpu_memory_gb": -1.0},
    {"gpus": 8, "host_memory_gb": -5.0}, {"gpus": 8, "vcpus": float("nan")}, {"gpus": 8, "cloud": ""},
])
def test_bad_requirements_raise(kwargs):
    with pytest.raises(RequirementsError):
        Requirements(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {}, {"reference_hours": 1.0, "tokens": 5.0}, {"tokens": 1e9}, {"tokens": 1e9, "model_params_b": 7.0},
    {"reference_hours": -1.0}, {"tokens": 1e9, "model_params_b": 7.0, "technique": "magic"},
])
def test_bad_work_raises(kwargs):
    with pytest.raises(RequirementsError):
        Work(**kwargs)


def test_best_per_type_keeps_the_first_region_of_each_type():
    r = best_per_type(rank(Requirements(8, 80)))
    assert list(r["instance_type"]) == ["p5.48xlarge", "a3-highgpu-8g", "p5en.48xlarge", "p4de.24xlarge"]
    assert r["region"].iloc[0] == "us-east-1"
