"""End to end with a live `dagster dev`: a bill lands in the inbox, the daemon's sensors and
declarative automation carry it to budget_status, budget_sensor launches budget_enforcement, and
the actions reach the ledger (dry_run) or the jobs' control files (enforce)."""

import json
import os
import time

import pytest

from ftops.actions.ledger_store import LedgerStore
from ftops_tests.dagster_dev import DagsterDev, project_folder

pytestmark = pytest.mark.integration

FOCUS_HEADER = ("BilledCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,EffectiveCost,ListCost,ProviderName,"
                "ServiceName,ResourceId,SkuId,PricingCategory,ConsumedQuantity,ConsumedUnit,RegionId,ChargeCategory,"
                "ChargeDescription,Tags")


def _write_jobs(inbox):
    # On-premises instance types, which no catalogue prices: spend is exactly the bill, so the levels
    # crossed do not depend on how many unbilled hours the wall clock adds as estimates.
    path = inbox / "jobs" / "jobs.csv"
    path.parent.mkdir(parents=True)
    path.write_text(
        "job_id,technique,domain,gpu_type,gpu_count,instance_type,pricing,budget_category,critical,status,"
        "started_at,batch_size,grad_accum,total_steps\n"
        "rs-1,lora,medical,A100-80GB,8,onprem-a100x8,on_demand,research,false,running,2026-11-01T00:00:00Z,8,2,5000\n"
        "rs-2,full,legal,H100-80GB,8,onprem-h100x8,on_demand,research,true,running,2026-11-01T00:00:00Z,4,4,9000\n"
    )


def _write_bill(inbox, usd_per_job: float):
    """Today's hourly lines for both jobs, landed atomically (written aside, then renamed in)."""
    folder = inbox / "billing"
    folder.mkdir(exist_ok=True)
    start = time.strftime("%Y-%m-%d", time.gmtime())
    rows = [FOCUS_HEADER]
    for job in ("rs-1", "rs-2"):
        tags = json.dumps({"job_id": job, "budget_category": "research"}).replace('"', '""')
        rows.append(f'{usd_per_job},USD,{start} 00:00:00,{start} 01:00:00,{usd_per_job},{usd_per_job},AWS,'
                    f'Amazon Elastic Compute Cloud,i-{job},SKU,Standard,1,Hrs,us-east-1,Usage,usage,"{tags}"')
    tmp = folder / ".bill.csv.part"
    tmp.write_text("\n".join(rows) + "\n")
    os.replace(tmp, folder / "focus-today.csv")


def _project(tmp_path, mode: str, actuator: dict[str, str]):
    folder = project_folder(tmp_path)
    inbox = folder / "inbox"
    _write_jobs(inbox)
    policy = folder / "ftops.yaml"
    policy.write_text(f"budgets:\n  research:\n    limit_usd: 100\n    mode: {mode}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FTOPS_"))}
    env |= {"FTOPS_INBOX": str(inbox), "FTOPS_WAREHOUSE": str(folder / "warehouse"), "FTOPS_CONFIG": str(policy),
            "FTOPS_LEDGER": str(folder / "ledger"), "FTOPS_SENSOR_INTERVAL_SECONDS": "3", **actuator}
    return folder, inbox, env


def _landing_to_ledger(dev: DagsterDev, inbox, ledger: LedgerStore, expected_actions: int) -> float:
    dev.wait_for(lambda: any(r["jobName"] == "job_registry_ingest" and r["status"] == "SUCCESS" for r in dev.runs()),
                 "the job registry ingest run")
    landed = time.monotonic()
    _write_bill(inbox, usd_per_job=48.0)  # 96 % of the 100 USD budget
    dev.wait_for(lambda: len(ledger.load()) >= expected_actions, "ledger entries", timeout_s=300)
    elapsed = time.monotonic() - landed
    dev.wait_for(lambda: sum(r["jobName"] == "budget_enforcement" and r["status"] == "SUCCESS"
                             for r in dev.runs()) == 4, "four enforcement runs (50, 80, 90, 95 %)")
    print(f"\nbill landed -> ledger entry: {elapsed:.1f} s")
    return elapsed


def test_dry_run_records_each_ladder_step_once(tmp_path):
    folder, inbox, env = _project(tmp_path, "dry_run", {})
    ledger = LedgerStore(folder / "ledger")
    with DagsterDev(folder, env) as dev:
        _landing_to_ledger(dev, inbox, ledger, expected_actions=3)
        runs = [r for r in dev.runs() if r["jobName"] == "budget_enforcement"]
        levels = sorted(float(t["value"]) for r in runs for t in r["tags"] if t["key"] == "ftops/level_pct")
        assert levels == [50, 80, 90, 95]
    table = ledger.load()
    # 90 %: both on-demand jobs to spot; 95 %: halve both micro-batches. Nothing applied: dry run.
    assert sorted(zip(table["job_id"], table["action"])) == [
        ("rs-1", "reduce_batch_size"), ("rs-1", "switch_to_spot"), ("rs-2", "reduce_batch_size"),
        ("rs-2", "switch_to_spot")]
    assert set(table["status"]) == {"skipped"} and set(table["mode"]) == {"dry_run"}
    assert table["action_id"].is_unique


def test_enforce_writes_control_files(tmp_path):
    control = tmp_path / "control"
    folder, inbox, env = _project(
        tmp_path, "enforce", {"FTOPS_ACTUATOR": "control_file", "FTOPS_CONTROL_DIR": str(control)})
    ledger = LedgerStore(folder / "ledger")
    with DagsterDev(folder, env) as dev:
        _landing_to_ledger(dev, inbox, ledger, expected_actions=4)
    table = ledger.load()
    assert set(table["status"]) == {"applied"} and set(table["mode"]) == {"enforce"}
    commands = {job: json.loads((control / f"{job}.json").read_text()) for job in ("rs-1", "rs-2")}
    for job, (micro, accum) in {"rs-1": (4, 4), "rs-2": (2, 8)}.items():
        text = json.dumps(commands[job])
        assert "reduce_batch_size" in text and "switch_to_spot" in text
        ids = set(table.loc[table["job_id"] == job, "action_id"])
        assert all(action_id in text for action_id in ids)
        assert f'"micro_batch_size": {micro}' in text and f'"grad_accum": {accum}' in text
