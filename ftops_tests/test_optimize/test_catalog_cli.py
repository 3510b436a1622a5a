from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from ftops.catalog_cli import add_catalog_parser
from ftops.optimize.catalog import bundled_catalog, read_catalog

SKYPILOT_AWS = (
    "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuMemoryMiBPerGpu,Price,SpotPrice,Region,"
    "AvailabilityZone\n"
    "p5.48xlarge,H100,8.0,192.0,2048.0,81920,55.0,20.0,moon-1,moon1-az1\n"
    "p5.48xlarge,H100,8.0,192.0,2048.0,81920,55.0,12.0,moon-1,moon1-az2\n"
    "g6.xlarge,L4,1.0,4.0,16.0,22888,0.8,,moon-1,moon1-az1\n"
    "trn1.2xlarge,Trainium,1.0,8.0,32.0,32768,1.3,0.4,moon-1,moon1-az1\n"
)


def run(argv: list[str]) -> int:
    """`ftops catalog ...` through a parser of our own, as `ftops.cli.build_parser` wires it."""
    parser = argparse.ArgumentParser(prog="ftops")
    add_catalog_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["catalog", *argv])
    return int(args.func(args) or 0)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTOPS_CATALOG", str(tmp_path / "catalog"))
    config = tmp_path / "ftops.yaml"
    config.write_text("prices:\n  g6.xlarge: {on_demand_usd_per_hour: 0.5}\n")
    monkeypatch.setenv("FTOPS_CONFIG", str(config))
    return tmp_path


def test_import_converts_into_the_catalogue_folder_and_show_json_combines(env, capsys):
    source = env / "aws_vms.csv"
    source.write_text(SKYPILOT_AWS)
    assert run(["import", str(source), "--price-date", "2026-12-01"]) == 0
    out = capsys.readouterr().out
    target = env / "catalog" / "aws-aws_vms.csv"
    assert f"imported 2 rows (aws) from {source} into {target}" in out
    assert "  H100: 1\n  L4: 1\n" in out and "Trainium 1" in out
    imported = read_catalog(target)
    p5 = imported[imported["instance_type"] == "p5.48xlarge"].iloc[0]
    assert (p5.on_demand_usd_per_hour, p5.spot_usd_per_hour, p5.price_date) == (55.0, 12.0, "2026-12-01")

    assert run(["show", "--json", "--gpu", "NVIDIA H100 80GB HBM3", "--cloud", "aws"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["gpu_model"] for r in rows} == {"H100"} and {r["cloud"] for r in rows} == {"aws"}
    moon = [r for r in rows if r["region"] == "moon-1"]
    assert moon == [{**moon[0], "on_demand_usd_per_hour": 55.0, "spot_usd_per_hour": 12.0, "gpu_count": 8,
                     "source": "aws_vms.csv"}]
    assert len(rows) == len(bundled_catalog().query("gpu_model == 'H100' and cloud == 'aws'")) + 1

    assert run(["show", "--json", "--gpu", "L4"]) == 0
    l4 = pd.DataFrame(json.loads(capsys.readouterr().out))
    g6 = l4[l4["instance_type"] == "g6.xlarge"]
    assert (g6["on_demand_usd_per_hour"] == 0.5).all() and g6["spot_usd_per_hour"].isna().all()  # ftops.yaml

    assert run(["show", "--gpu", "L4", "--cloud", "moon"]) == 0
    assert capsys.readouterr().out.strip() == "no catalogue rows match"
    assert run(["show", "--cloud", "gcp", "--gpu", "A100-80GB"]) == 0
    table = capsys.readouterr().out
    assert "a2-ultragpu-8g" in table and "on-demand USD/h" in table


def test_cloud_comes_from_the_option_when_the_file_name_does_not_say(env, capsys):
    source = env / "vms.csv"
    source.write_text(SKYPILOT_AWS)
    assert run(["import", str(source)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("ftops catalog import: ") and "--cloud" in captured.err
    assert run(["import", str(source), "--cloud", "AWS", "--folder", str(env / "elsewhere")]) == 0
    assert (env / "elsewhere" / "aws-vms.csv").exists()


@pytest.mark.parametrize("content", [
    "not,a,catalogue\n1,2,3\n",  # missing columns
    "",  # empty file
    SKYPILOT_AWS.replace("55.0,20.0", "lots,20.0"),  # a price that is no number
    SKYPILOT_AWS.splitlines()[0] + "\ntrn1.2xlarge,Trainium,1.0,8.0,32.0,32768,1.3,0.4,moon-1,moon1-az1\n",
    b"\xff\xfe\x00garbage".decode("latin-1"),
])
def test_a_bad_file_is_one_line_on_stderr_and_exit_2(env, capsys, content):
    source = env / "aws_bad.csv"
    source.write_text(content, encoding="latin-1")
    assert run(["import", str(source)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("ftops catalog import: ") and "aws_bad.csv" in captured.err
    assert not (env / "catalog").exists()


def test_a_missing_file_and_a_broken_catalogue_folder_are_one_line(env, capsys):
    assert run(["import", str(env / "aws_absent.csv")]) == 2
    assert capsys.readouterr().err.strip().endswith("aws_absent.csv: file not found")
    (env / "catalog").mkdir()
    (env / "catalog" / "aws-old.csv").write_text("# ftops instance catalogue\n# schema_version: 9\ncloud\n")
    assert run(["show", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "schema_version 9 is not supported" in err
