"""`write_demo_inbox`: plan the fleet, write every job's exports, the registry, the bills, the policy
and the manifest into an inbox folder; `main` is `python -m ftops.demo_fleet`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import yaml

from ftops.demo_fleet.billing import focus_csv_text, focus_frame, job_cost_lines
from ftops.demo_fleet.console import write_console_log
from ftops.demo_fleet.manifest import DemoManifest, InjectedFault, fault_record
from ftops.demo_fleet.plan import BILL_LAG_HOURS, OVERRUN_CATEGORY, PlannedJob, plan_fleet
from ftops.demo_fleet.policy import budget_limits, policy_dict
from ftops.demo_fleet.signals import resource_signals, training_signals
from ftops.demo_fleet.times import MS_PER_DAY, MS_PER_H, default_end
from ftops.demo_fleet.writers import (
    jobs_frame,
    write_agent_jsonl,
    write_trainer_jsonl,
    write_trainer_state,
    write_wide_csv,
)


def write_registry_and_bills(inbox: Path, jobs: list[PlannedJob], seed: int, start_ms: int, end_ms: int
                             ) -> tuple[pd.DataFrame, int, int]:
    """`jobs/jobs.csv` and the daily FOCUS bills (`billing/focus-<day>.csv`) of a planned fleet.

    Returns the fleet's cost lines (billed or not yet: what budgets are sized from), the bill files
    written and their lines.
    """
    (inbox / "jobs").mkdir(parents=True, exist_ok=True)
    jobs_frame(jobs).to_csv(inbox / "jobs" / "jobs.csv", index=False, lineterminator="\n")
    usage = job_cost_lines(jobs, seed, end_ms)
    cutoff_ms = (end_ms // MS_PER_H) * MS_PER_H - BILL_LAG_HOURS * MS_PER_H
    focus = focus_frame(usage, start_ms, cutoff_ms, seed)
    (inbox / "billing").mkdir(parents=True, exist_ok=True)
    files = 0
    for day, part in focus.groupby(focus["ChargePeriodStart"].dt.strftime("%Y-%m-%d"), sort=True):
        (inbox / "billing" / f"focus-{day}.csv").write_text(focus_csv_text(part), encoding="utf-8")
        files += 1
    return usage, files, len(focus)


def first_day(start_ms: int) -> str:
    """The day the fleet's data starts on: where its partitions start."""
    return pd.Timestamp(start_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d")


def write_demo_inbox(inbox: Path, seed: int = 7, n_jobs: int = 40, days: int = 7,
                     end: pd.Timestamp | None = None) -> DemoManifest:
    """Write a synthetic fleet into `inbox` (jobs/, metrics/, billing/) and return its manifest.

    `end` defaults to now rounded down to the hour (UTC); pass it for reproducible bytes. Existing
    files of an earlier demo with the same names are overwritten; other files are left alone.
    """
    inbox = Path(inbox)
    end = default_end(end)
    end_ms = int(end.value // 1_000_000)
    start_ms = end_ms - days * MS_PER_DAY
    jobs = plan_fleet(seed, n_jobs, days, end)

    counts = {"jobs": len(jobs), "metric_files": 0, "metric_samples": 0, "metric_samples_jsonl": 0,
              "metric_samples_wide_csv": 0, "metric_samples_trainer_state": 0, "billing_files": 0,
              "billing_lines": 0, "log_files": 0}
    faults: list[InjectedFault] = []
    for job in jobs:
        if job.started_ms is None:
            continue
        folder = inbox / "metrics" / job.job_id
        tr = training_signals(job, seed, end_ms)
        res = resource_signals(job, seed, end_ms)
        if job.fmt == "trainer_state":
            n = write_trainer_state(folder / "trainer_state.json", job, tr)
            counts["metric_samples_trainer_state"] += n
        elif job.fmt == "wide_csv":
            n = write_wide_csv(folder / "trainer_log.csv", job, tr)
            counts["metric_samples_wide_csv"] += n
        else:
            n = write_trainer_jsonl(folder / "trainer.jsonl", job, tr)
            counts["metric_samples_jsonl"] += n
        n_res, n_files = write_agent_jsonl(folder, job, res)
        counts["metric_samples_jsonl"] += n_res
        counts["metric_files"] += 1 + n_files
        counts["metric_samples"] += n + n_res
        write_console_log(inbox / "logs", job, tr, seed)
        counts["log_files"] += 1
        if job.fault:
            faults.append(fault_record(job, tr, res))

    usage, counts["billing_files"], counts["billing_lines"] = write_registry_and_bills(
        inbox, jobs, seed, start_ms, end_ms)
    limits, usage_pct = budget_limits(usage, end, seed)
    policy = policy_dict(limits, first_day(start_ms))
    overrun = next(f for f in faults if f.fault == "budget_overrun")
    faults = [
        InjectedFault(f.job_id, f.fault, f.expected_rule, f.category, f.onset,
                      f"{f.detail}; month-to-date spend of {OVERRUN_CATEGORY} is "
                      f"{usage_pct[OVERRUN_CATEGORY]} % of its limit (billed + not yet billed)")
        if f is overrun else f
        for f in faults
    ]
    faults.sort(key=lambda f: (f.job_id, f.fault))
    manifest = DemoManifest(
        seed=seed, n_jobs=n_jobs, days=days, start=pd.Timestamp(start_ms, unit="ms", tz="UTC"), end=end,
        counts=counts, faults=tuple(faults), policy=policy,
    )
    (inbox / "demo_manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    (inbox / "demo_policy.yaml").write_text(
        "# ftops policy for the synthetic demo fleet (written by ftops.demo_fleet)\n"
        + yaml.safe_dump(policy, sort_keys=True), encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftops.demo_fleet",
                                     description="Write the synthetic ftops demo fleet into an inbox folder.")
    parser.add_argument("inbox", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--end", help="ISO-8601 end of the window (default: now, rounded down to the hour)")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    manifest = write_demo_inbox(args.inbox, seed=args.seed, n_jobs=args.jobs, days=args.days,
                                end=pd.Timestamp(args.end) if args.end else None)
    print(json.dumps(manifest.counts, indent=2))
    print(f"{len(manifest.faults)} injected faults; written in {time.perf_counter() - t:.1f} s")
    return 0

