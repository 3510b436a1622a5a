"""`ftops recommend` on the bundled catalogue, with no warehouse; and its one-line errors."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from ftops.recommend_cli import add_recommend_parser


@pytest.fixture(autouse=True)
def _no_warehouse(tmp_path, monkeypatch):
    monkeypatch.setenv("FTOPS_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("FTOPS_CATALOG", str(tmp_path / "catalog"))
    monkeypatch.setenv("FTOPS_INBOX", str(tmp_path / "inbox"))
    monkeypatch.delenv("FTOPS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./ftops.yaml or .ftops/ftops.yaml of the checkout


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ftops")
    sub = parser.add_subparsers(dest="command", required=True)
    add_recommend_parser(sub)
    args = parser.parse_args(["recommend", *argv])
    return args.func(args)


def test_eight_80gb_gpus_for_ten_hours_gives_real_instance_types(capsys):
    assert run(["--gpus", "8", "--gpu-memory-gb", "80", "--hours", "10", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    assert len({(r["cloud"], r["instance_type"]) for r in rows}) == 3
    for r in rows:
        assert r["gpu_count"] == 8 and r["gpu_memory_gb"] >= 80
        assert r["on_demand_usd_per_hour"] > 1.0 and r["pricing"] == "on_demand"
        assert r["basis"] == "datasheet" and r["checkpoint_interval_minutes"] is None
        assert r["expected_cost_usd"] == pytest.approx(r["expected_hours"] * r["on_demand_usd_per_hour"], rel=1e-3)
    costs = [r["expected_cost_usd"] for r in rows]
    assert costs == sorted(costs)
    from ftops.optimize.catalog import bundled_catalog

    catalog = bundled_catalog()
    for r in rows:  # real rows of the bundled catalogue, at their real prices
        hit = catalog[(catalog["cloud"] == r["cloud"]) & (catalog["region"] == r["region"])
                      & (catalog["instance_type"] == r["instance_type"])]
        assert len(hit) == 1
        assert hit["on_demand_usd_per_hour"].iloc[0] == pytest.approx(r["on_demand_usd_per_hour"])


def test_spot_with_a_budget_recommends_spot_with_a_checkpoint_interval(capsys):
    assert run(["--gpus", "8", "--gpu-memory-gb", "80", "--hours", "10", "--spot", "--budget-usd-per-hour", "200",
                "--top", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5
    spot = [r for r in rows if r["pricing"] == "spot"]
    assert spot
    for r in spot:
        assert r["spot_usd_per_hour"] <= 0.7 * 200
        assert r["checkpoint_interval_minutes"] > 0 and r["max_spot_usd_per_hour"] == pytest.approx(140.0)
        assert r["expected_cost_usd"] < r["on_demand_cost_usd"]
        assert r["mtbi_basis"] == "configured"


def test_critical_never_spot_and_tokens_work(capsys):
    assert run(["--gpus", "1", "--tokens", "1e9", "--model-params-b", "7", "--technique", "qlora", "--spot",
                "--critical", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["pricing"] for r in rows} == {"on_demand"}
    assert all(r["reason"].startswith("critical job") for r in rows)


def test_table_output_names_the_basis(capsys):
    assert run(["--gpus", "8", "--gpu-memory-gb", "80", "--hours", "10", "--cloud", "aws"]) == 0
    out = capsys.readouterr().out
    assert "instance type" in out and "aws" in out
    assert "basis: datasheet dense BF16 TFLOP/s relative to 10 h on A100-80GB" in out


def test_measured_throughput_from_the_warehouse_is_used(tmp_path, capsys):
    import dagster as dg

    from ftops.defs.io_manager import write_table

    measured = pd.DataFrame({
        "technique": ["lora", "lora"], "model_params_b": [7.0, 7.0], "gpu_model": ["H100", "A100-80GB"],
        "gpu_count": [8, 8], "pricing": ["on_demand", "on_demand"], "tokens_per_second_per_gpu": [2000.0, 1000.0],
        "samples_per_second_per_gpu": [1.0, 0.5], "job_ids": ["h1,h2", "a1"], "jobs": [2, 1],
    })
    write_table(measured, str(tmp_path / "warehouse"), dg.AssetKey("benchmark_comparison"))
    assert run(["--gpus", "8", "--gpu-memory-gb", "80", "--hours", "10", "--model-params-b", "7",
                "--technique", "lora", "--top", "20", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    h100 = [r for r in rows if r["gpu_model"] == "H100"]
    assert h100 and all(r["basis"] == "measured" and r["expected_hours"] == pytest.approx(5.0) for r in h100)
    assert h100[0]["measured_job_ids"] == ["a1", "h1", "h2"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--gpus", "8", "--gpu-memory-gb", "200", "--hours", "10"], "no instance has 8 GPUs with ≥ 200 GB each"),
    (["--gpus", "-1", "--hours", "10"], "--gpus must be above 0"),
    (["--gpus", "8", "--hours", "10", "--tokens", "1e9"], "not both"),
    (["--gpus", "8"], "give the work"),
    (["--gpus", "8", "--tokens", "1e9"], "--tokens needs --model-params-b and --technique"),
    (["--gpus", "8", "--hours", "10", "--gpu-memory-gb", "-3"], "--gpu-memory-gb must be at least 0"),
    (["--gpus", "two", "--hours", "10"], "--gpus must be a whole number"),
    (["--gpus", "1", "--tokens", "1e9", "--model-params-b", "7", "--technique", "magic"], "technique must be one of"),
    (["--gpus", "8", "--hours", "10", "--cloud", "ibm"], "no instance in cloud 'ibm'"),
])
def test_bad_requests_exit_2_with_one_line(argv, message, capsys):
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ftops recommend: ") and message in lines[0]
