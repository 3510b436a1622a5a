"""The code location loads and has the asset graph docs/architecture.md describes."""

import subprocess
import sys

import dagster as dg

from ftops.definitions import Settings, build_definitions
from ftops.policy import PolicyError

import pytest

from ftops_tests.conftest import REPO_ROOT


def test_asset_keys_groups_and_partitions(tmp_path):
    config = tmp_path / "ftops.yaml"
    config.write_text("partitions:\n  start: 2026-11-01\n  shards: 3\n")
    defs = build_definitions(Settings(str(tmp_path / "inbox"), str(tmp_path / "wh"), str(config)))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"job_registry", "metric_samples", "billing_line_items", "rejected_records"} <= keys
    for key in ("job_registry", "metric_samples", "billing_line_items", "rejected_records"):
        assert graph.get(dg.AssetKey(key)).group_name == "ingest"
    # the sample-level assets: day x job shard, from the configured start, one shard-day per run
    for key in ("metric_samples", "run_health", "anomalies"):
        partitions = graph.get(dg.AssetKey(key)).partitions_def
        assert isinstance(partitions, dg.MultiPartitionsDefinition)
        assert partitions.partition_dimension_names == ["day", "shard"]
        day = partitions.get_partitions_def_for_dimension("day")
        assert isinstance(day, dg.DailyPartitionsDefinition) and day.start.strftime("%Y-%m-%d") == "2026-11-01"
        assert partitions.get_partitions_def_for_dimension("shard").get_partition_keys() == [
            "0-of-3", "1-of-3", "2-of-3"]
        policy = graph.get(dg.AssetKey(key)).backfill_policy
        assert policy.max_partitions_per_run == 1
    billing = graph.get(dg.AssetKey("billing_line_items"))
    assert isinstance(billing.partitions_def, dg.DailyPartitionsDefinition)
    assert billing.partitions_def.start.strftime("%Y-%m-%d") == "2026-11-01"
    assert billing.backfill_policy == dg.BackfillPolicy.single_run()
    inbox = defs.resources["inbox"]
    assert (inbox.partitions_start, inbox.shards) == ("2026-11-01", 3)  # staging and the sensor agree
    for key in ("job_registry", "rejected_records"):
        assert graph.get(dg.AssetKey(key)).partitions_def is None
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert ("billing_line_items", "no_duplicate_line_items") in checks
    assert ("metric_samples", "row_accounting_balances") in checks
    assert ("metric_samples", "contract_valid") in checks
    assert defs.resolve_sensor_def("inbox_sensor") is not None


def test_bad_policy_file_fails_the_code_location_with_the_key(tmp_path):
    config = tmp_path / "ftops.yaml"
    config.write_text("budgets:\n  research:\n    limit_usd: 100\n    mode: always\n")
    with pytest.raises(PolicyError, match=r"budgets\.research\.mode: 'always' is not allowed; allowed values: 'off', 'dry_run', 'enforce'"):
        build_definitions(Settings(str(tmp_path / "inbox"), str(tmp_path / "wh"), str(config)))


def test_dagster_definitions_validate(tmp_path):
    env = {"FTOPS_INBOX": str(tmp_path / "inbox"), "FTOPS_WAREHOUSE": str(tmp_path / "wh"),
           "DAGSTER_HOME": str(tmp_path), "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr
