"""How long instance recommendations and spot plans take for many pending jobs.

    python benchmarks/optimize.py                  # 1,000 pending jobs, best of 3
    python benchmarks/optimize.py --jobs 5000 --repeats 1

Synthetic pending jobs (GPU model and count, technique, model size, dataset, budget category drawn
with a fixed seed) against the bundled catalogue. The baseline is the plain way: one
`rank_instances` + `plan_pricing` call per job, as `ftops recommend` does for one request. The
vectorised `instance_recommendations` must find a first choice of the same expected cost for every job.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from tabulate import tabulate

from ftops.optimize.catalog import bundled_catalog
from ftops.optimize.gpus import datasheets
from ftops.optimize.recommendations import instance_recommendations, spot_plans
from ftops.optimize.selection import Requirements, Work, rank_instances
from ftops.optimize.spot import plan_pricing
from ftops.policy import Policy

BUDGET_USD_PER_HOUR = {"research": 40.0, "product": 80.0}


def pending_jobs(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "job_id": [f"job-{i:05d}" for i in range(n)], "status": "pending",
        "gpu_type": rng.choice(["L4", "A10G", "L40S", "A100", "A100-80GB", "H100"], n),
        "gpu_count": rng.choice([1, 4, 8], n), "technique": rng.choice(["lora", "qlora", "full"], n),
        "model_params_b": rng.choice([1.0, 7.0, 13.0, 70.0], n),
        "dataset_samples": rng.integers(10_000, 200_000, n), "epochs": 3, "seq_len": 2048,
        "pricing": rng.choice(["spot", "on_demand"], n), "critical": rng.random(n) < 0.1,
        "budget_category": rng.choice(list(BUDGET_USD_PER_HOUR), n), "cloud": "aws", "region": "us-east-1",
        "instance_type": "p4d.24xlarge",
    })


def per_job_loop(jobs: pd.DataFrame, catalog: pd.DataFrame, sheets: pd.DataFrame, policy: Policy) -> pd.Series:
    """The expected cost of each job's first choice, one selection per job (the baseline)."""
    firsts = {}
    memory = sheets["memory_gb"]
    for job in jobs.itertuples(index=False):
        work = Work(tokens=float(job.dataset_samples * job.epochs * job.seq_len), model_params_b=job.model_params_b,
                    technique=job.technique)
        ranked = rank_instances(catalog, Requirements(int(job.gpu_count), float(memory.get(job.gpu_type, 0.0))),
                                work, datasheets=sheets, reference_gpu=policy.optimization.reference_gpu,
                                datasheet_mfu=policy.optimization.datasheet_mfu)
        planned = plan_pricing(ranked, spot_policy=policy.optimization.spot,
                               budget_usd_per_hour=BUDGET_USD_PER_HOUR[job.budget_category], critical=job.critical)
        firsts[job.job_id] = planned["expected_cost_usd"].iloc[0]
    return pd.Series(firsts)


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    jobs, catalog, sheets, policy = pending_jobs(args.jobs), bundled_catalog(), datasheets(), Policy()

    t_recs, recs = best_of(args.repeats, lambda: instance_recommendations(
        jobs, catalog, sheets, None, policy, BUDGET_USD_PER_HOUR, None))
    t_plans, _ = best_of(args.repeats, lambda: spot_plans(jobs, catalog, sheets, None, policy, BUDGET_USD_PER_HOUR,
                                                         None))
    t_loop, loop = best_of(1, lambda: per_job_loop(jobs, catalog, sheets, policy))

    # compared by cost: equally cheap instance types (a3-edgegpu-8g and its -nolssd twin) may swap places
    first = recs[recs["rank"] == 1].set_index("job_id")["expected_cost_usd"]
    agree = np.isclose(first.reindex(loop.index).to_numpy(), loop.to_numpy(), rtol=1e-9).mean()
    rows = [["instance_recommendations (top 3 per job)", t_recs, args.jobs / t_recs, t_recs / t_recs],
            ["spot_plans (current instance)", t_plans, args.jobs / t_plans, t_plans / t_recs],
            ["per-job loop: rank_instances + plan_pricing", t_loop, args.jobs / t_loop, t_loop / t_recs]]
    print(f"{args.jobs:,} pending jobs x {len(catalog):,} catalogue rows; first choice agrees with the loop "
          f"for {agree:.1%} of jobs")
    print(tabulate(rows, headers=["step", "seconds", "jobs/s", "vs instance_recommendations"],
                   floatfmt=(None, ".2f", ",.0f", ".2f")))
    if agree < 1.0:
        raise SystemExit("the vectorised recommendations and the per-job loop disagree on a first choice")


if __name__ == "__main__":
    main()
