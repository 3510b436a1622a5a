"""console_tails and job_failures on a temporary inbox: a failed job's OOM log makes it `oom` from its console."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from ftops.defs.failures import FAILURE_ASSETS, console_tails, job_failures
from ftops.defs.ingest import job_registry
from ftops.defs.io_manager import PartitionedParquetIOManager
from ftops.defs.resources import InboxResource, PolicyResource
from ftops.schemas import ALERTS, RUN_HEALTH
from ftops_tests.test_defs.inbox_builder import write_jobs

AS_OF = "2026-11-21T02:00:00Z"
OOM_LOG = """\
{'loss': 1.1021, 'learning_rate': 1.9e-05, 'epoch': 0.31}
Traceback (most recent call last):
  File "/workspace/train.py", line 212, in <module>
    trainer.train()
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacty of 79.15 GiB \
of which 1.02 GiB is free.
"""


@dg.asset(name="run_health")
def _run_health() -> pd.DataFrame:
    return RUN_HEALTH.empty()


@dg.asset(name="alerts")
def _alerts() -> pd.DataFrame:
    return ALERTS.empty()


def _inbox(root: Path) -> Path:
    write_jobs(root)  # ft-001 running, ft-002 succeeded
    (root / "jobs" / "ended.csv").write_text(
        "job_id,name,status,submitted_at,started_at,ended_at\n"
        "ft-003,medqa-full,failed,2026-11-20T20:00:00Z,2026-11-20T20:10:00Z,2026-11-20T23:00:00Z\n"
        "ft-004,legal-lora,cancelled,2026-11-20T20:00:00Z,2026-11-20T20:10:00Z,2026-11-20T21:00:00Z\n"
        "ft-005,code-lora,failed,2026-11-20T20:00:00Z,2026-11-20T20:10:00Z,2026-11-20T22:00:00Z\n"
    )
    logs = root / "logs"
    logs.mkdir()
    (logs / "ft-003.log").write_text(OOM_LOG)
    (logs / "ft-004.log").write_text("^CTraceback (most recent call last):\nKeyboardInterrupt\n")
    old = logs / "ft-005.log"
    old.write_text("ValueError: stale log of an earlier attempt\n")
    t = pd.Timestamp("2026-11-20T21:00:00Z").timestamp()
    os.utime(old, (t, t))
    # the job's newer console, from a W&B export of the same run: the newest file wins
    (root / "metrics" / "wandb" / "runs" / "ft-005").mkdir(parents=True)
    (root / "metrics" / "wandb" / "runs" / "ft-005" / "output.log").write_text(
        "2026-11-20T21:59:58Z step 400\n[rank0]: RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1691, "
        "unhandled system error, NCCL version 2.19.3\n")
    return root


def test_materialize_console_tails_and_job_failures(tmp_path):
    inbox = _inbox(tmp_path / "inbox")
    warehouse = str(tmp_path / "warehouse")
    result = dg.materialize(
        [job_registry, *FAILURE_ASSETS, _run_health, _alerts],
        resources={"io_manager": PartitionedParquetIOManager(base_path=warehouse),
                   "inbox": InboxResource(inbox_path=str(inbox), warehouse_path=warehouse,
                                          partitions_start="2026-11-01", staging_workers=1),
                   "policy": PolicyResource()},
        run_config={"ops": {"job_registry": {"config": {"as_of": AS_OF}},
                            "console_tails": {"config": {"as_of": AS_OF}}}},
    )
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        ("job_registry", "contract_valid"): True, ("job_registry", "row_accounting_balances"): True,
        ("job_registry", "no_duplicate_rows"): True,
        ("console_tails", "contract_valid"): True, ("console_tails", "row_accounting_balances"): True,
        ("console_tails", "no_duplicate_rows"): True,
        ("job_failures", "contract_valid"): True,
    }

    tails = pd.read_parquet(Path(warehouse) / "console_tails.parquet").set_index("job_id")
    assert sorted(tails.index) == ["ft-003", "ft-004", "ft-005"]
    assert tails.loc["ft-005", "source"] == "metrics/wandb/runs/ft-005/output.log"
    assert tails.loc["ft-005", "ts"] == pd.Timestamp("2026-11-20T21:59:58Z")

    failures = pd.read_parquet(Path(warehouse) / "job_failures.parquet").set_index("job_id")
    assert sorted(failures.index) == ["ft-003", "ft-004", "ft-005"]  # not the running or the succeeded job
    assert tuple(failures.loc["ft-003", ["failure_type", "basis"]]) == ("oom", "console")
    assert failures.loc["ft-003", "evidence"].startswith("torch.cuda.OutOfMemoryError: CUDA out of memory.")
    assert tuple(failures.loc["ft-004", ["failure_type", "basis"]]) == ("cancelled", "status")
    assert tuple(failures.loc["ft-005", ["failure_type", "basis"]]) == ("node_failure", "console")

    materialization = result.asset_materializations_for_node("job_failures")[0]
    metadata = materialization.metadata
    assert metadata["by_failure_type"].data == {"oom": 1, "cancelled": 1, "node_failure": 1}
    assert metadata["by_basis"].data == {"console": 2, "status": 1}
    assert "ft-003" in metadata["latest"].value
    tails_metadata = result.asset_materializations_for_node("console_tails")[0].metadata
    assert tails_metadata["rows"].value == 3 and tails_metadata["superseded_by_newer_file"].value == 1


def test_assets_are_in_their_groups():
    assert console_tails.group_names_by_key[dg.AssetKey("console_tails")] == "ingest"
    assert job_failures.group_names_by_key[dg.AssetKey("job_failures")] == "prediction"
    assert {k.to_user_string() for k in job_failures.dependency_keys} == {
        "job_registry", "console_tails", "run_health", "alerts"}
