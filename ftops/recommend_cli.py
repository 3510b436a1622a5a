"""`ftops recommend`: which instance type runs a job cheapest, and whether on spot (spec §2.1).

Works without a warehouse: the catalogue is the bundled snapshot plus `ftops catalog import` files and
ftops.yaml rows; hours come from GPU datasheets. When the warehouse holds a `benchmark_comparison`
table its measured throughput is used instead (`basis` says which), and with `--spot` the spot
interruption rate is learnt from the warehouse's `job_registry` once it holds enough preemptions.

Without `--spot` every recommendation is on demand (spot prices are still shown); with it, spot is
recommended where it still wins after the expected interruptions. Instance types are shown once each,
in their cheapest region. Exit 0 with recommendations, 2 with one line on stderr when the request is
malformed, nothing meets it, or the policy cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

_PROG = "ftops recommend"


class _Usage(ValueError):
    """A malformed request: one line on stderr, exit 2."""


def add_recommend_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the `recommend` subcommand on an argparse subparsers object; `func` runs it."""
    parser = subparsers.add_parser(
        "recommend",
        help="the cheapest instance types for a job, on demand or spot",
        description="Rank the catalogue's instance types by the projected cost of the whole job. Give the work "
                    "as --hours on the reference GPU (A100-80GB unless ftops.yaml says otherwise) or as --tokens "
                    "with --model-params-b and --technique. Exit 2 with one line on stderr when nothing meets "
                    "the requirements or they are malformed.",
    )
    # numbers are parsed by the command, not argparse: every bad value then gets the same one-line error
    parser.add_argument("--gpus", required=True, metavar="N", help="GPUs the job needs")
    parser.add_argument("--gpu-memory-gb", default="0", metavar="G", help="memory per GPU, GB (default 0)")
    parser.add_argument("--hours", metavar="H", help="wall hours of the job on N reference GPUs")
    parser.add_argument("--tokens", metavar="T", help="tokens processed over the run (samples x epochs x seq len)")
    parser.add_argument("--model-params-b", metavar="B", help="model size, billions of parameters")
    parser.add_argument("--technique", metavar="NAME", help="lora, qlora, full, prefix, dpo or other")
    parser.add_argument("--host-memory-gb", metavar="M", help="host memory of the whole job, GB")
    parser.add_argument("--vcpus", metavar="V", help="vCPUs of the whole job")
    parser.add_argument("--cloud", help="only this cloud (aws, gcp, azure)")
    parser.add_argument("--region", help="only this region")
    parser.add_argument("--spot", action="store_true", help="consider spot capacity (default: on demand only)")
    parser.add_argument("--budget-usd-per-hour", metavar="X",
                        help="what the job may spend per hour; spot is capped at 0.7 of it (no cap without it)")
    parser.add_argument("--critical", action="store_true", help="a critical job: never on spot")
    parser.add_argument("--top", default="3", metavar="K", help="how many instance types to show (default 3)")
    parser.add_argument("--json", action="store_true", help="print a JSON list, best first, instead of a table")
    parser.set_defaults(func=run_recommend)
    return parser


def _number(value: str | None, flag: str, *, whole: bool = False, positive: bool = False) -> float | int | None:
    if value is None:
        return None
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise _Usage(f"{flag} must be {kind}, not {value!r}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise _Usage(f"{flag} must be {'above' if positive else 'at least'} 0, not {value}")
    return number


def _request(args: argparse.Namespace):
    from ftops.optimize.selection import Requirements, Work

    gpus = _number(args.gpus, "--gpus", whole=True, positive=True)
    hours = _number(args.hours, "--hours", positive=True)
    tokens = _number(args.tokens, "--tokens", positive=True)
    params = _number(args.model_params_b, "--model-params-b", positive=True)
    if hours is not None and tokens is not None:
        raise _Usage("give the work as --hours or as --tokens, not both")
    if hours is None and tokens is None:
        raise _Usage("give the work: --hours H (on the reference GPU) or --tokens T with --model-params-b and "
                     "--technique")
    if tokens is not None and (params is None or args.technique is None):
        raise _Usage("--tokens needs --model-params-b and --technique")
    requirements = Requirements(
        gpus=gpus, gpu_memory_gb=_number(args.gpu_memory_gb, "--gpu-memory-gb"),
        host_memory_gb=_number(args.host_memory_gb, "--host-memory-gb"), vcpus=_number(args.vcpus, "--vcpus"),
        cloud=args.cloud, region=args.region)
    work = Work(reference_hours=hours, tokens=tokens, model_params_b=params, technique=args.technique)
    return requirements, work


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _warehouse_table(warehouse: str, name: str):
    """A warehouse table, or None when it is absent or unreadable (the command works without it)."""
    import dagster as dg

    from ftops.defs.io_manager import read_table

    try:
        return read_table(warehouse, dg.AssetKey(name))
    except (OSError, ValueError, ImportError) as exc:  # a corrupt file, an unknown URL scheme
        print(f"{_PROG}: ignoring {name} in {warehouse}: {_one_line(exc)}", file=sys.stderr)
        return None


def _finite(value: Any, digits: int | None = None) -> Any:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    if not math.isfinite(number):
        return None
    return round(number, digits) if digits is not None else number


def _text(value: Any) -> str | None:
    import pandas as pd

    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _objects(plans) -> list[dict[str, Any]]:
    out = []
    for row in plans.to_dict("records"):
        ids = _text(row.get("measured_job_ids")) or ""
        out.append({
            "cloud": _text(row["cloud"]), "region": _text(row["region"]),
            "instance_type": _text(row["instance_type"]), "gpu_model": _text(row["gpu_model"]),
            "gpu_count": int(row["gpu_count"]), "instances": int(row["instances"]),
            "gpu_memory_gb": _finite(row["gpu_memory_gb"]), "vcpus": _finite(row["vcpus"]),
            "memory_gb": _finite(row["memory_gb"]),
            "on_demand_usd_per_hour": _finite(row["on_demand_usd_per_hour"]),
            "spot_usd_per_hour": _finite(row["spot_usd_per_hour"]),
            "pricing": row["pricing"],
            "expected_hours": _finite(row["expected_hours"], 4),
            "expected_cost_usd": _finite(row["expected_cost_usd"], 2),
            "on_demand_cost_usd": _finite(row["on_demand_cost_usd"], 2),
            "spot_expected_cost_usd": _finite(row["spot_expected_cost_usd"], 2),
            "spot_expected_hours": _finite(row["spot_expected_hours"], 4),
            "max_spot_usd_per_hour": _finite(row["max_spot_usd_per_hour"], 4),
            "checkpoint_interval_minutes": _finite(row["checkpoint_interval_minutes"], 1),
            "mtbi_hours": _finite(row["mtbi_hours"], 2) if row["pricing"] == "spot" else None,
            "mtbi_basis": row["mtbi_basis"] if row["pricing"] == "spot" else None,
            "basis": row["basis"],
            "measured_job_ids": [i for i in ids.split(",") if i],
            "price_date": _text(row.get("price_date")), "source": _text(row.get("source")),
            "reason": row["reason"],
        })
    return out


def _basis_line(objects: list[dict[str, Any]], reference_gpu: str, mfu: float, work) -> str:
    measured = [o for o in objects if o["basis"] == "measured"]
    if work.reference_hours is not None:
        sheet = f"datasheet dense BF16 TFLOP/s relative to {work.reference_hours:g} h on {reference_gpu}"
    else:
        sheet = f"datasheet dense BF16 TFLOP/s at {mfu:.0%} MFU"
    if not measured:
        return f"basis: {sheet} (no measured throughput for these GPUs)"
    if len(measured) == len(objects):
        return "basis: the fleet's measured throughput (benchmark_comparison)"
    return (f"basis: measured throughput for {len(measured)} of {len(objects)} rows (benchmark_comparison); "
            f"the others {sheet}")


def run_recommend(args: argparse.Namespace) -> int:
    """Run `ftops recommend` from parsed arguments; returns the exit code."""
    try:
        from ftops.optimize.selection import RequirementsError

        try:
            requirements, work = _request(args)
            top = _number(args.top, "--top", whole=True, positive=True)
            budget = _number(args.budget_usd_per_hour, "--budget-usd-per-hour")
        except RequirementsError as exc:
            raise _Usage(str(exc)) from None
        return _recommend(args, requirements, work, top, budget)
    except _Usage as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2


def _recommend(args: argparse.Namespace, requirements, work, top: int, budget: float | None) -> int:
    import pandas as pd

    from ftops.definitions import settings_from_env
    from ftops.optimize.catalog import combined_catalog
    from ftops.optimize.gpus import datasheets
    from ftops.optimize.selection import NoCandidateError, RequirementsError, best_per_type, rank_instances
    from ftops.optimize.spot import mtbi_table, plan_pricing
    from ftops.policy import PolicyError, load_policy

    settings = settings_from_env()
    try:
        policy = load_policy(settings.config)
        catalog = combined_catalog(policy, settings.catalog)
    except (PolicyError, OSError, ValueError) as exc:
        raise _Usage(f"cannot read the policy or the catalogue: {_one_line(exc)}") from None
    opt = policy.optimization
    measured = _warehouse_table(settings.warehouse, "benchmark_comparison")
    try:
        ranked = rank_instances(catalog, requirements, work, datasheets=datasheets(), measured=measured,
                                reference_gpu=opt.reference_gpu, datasheet_mfu=opt.datasheet_mfu)
    except (NoCandidateError, RequirementsError) as exc:
        raise _Usage(str(exc)) from None
    mtbi = None
    if args.spot:
        jobs = _warehouse_table(settings.warehouse, "job_registry")
        if jobs is not None and not jobs.empty:
            mtbi = mtbi_table(jobs, opt.spot, now=pd.Timestamp.now(tz="UTC"))
    plans = plan_pricing(ranked, spot_policy=opt.spot, mtbi=mtbi, budget_usd_per_hour=budget,
                         critical=args.critical, consider_spot=args.spot)
    plans = best_per_type(plans).head(top)
    objects = _objects(plans)
    if args.json:
        print(json.dumps(objects, indent=2, allow_nan=False, ensure_ascii=False))
        return 0
    from tabulate import tabulate

    def money(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    table = [[i + 1, o["cloud"], o["region"], o["instance_type"],
              (f"{o['instances']} × " if o["instances"] > 1 else "")
              + f"{o['gpu_count']} × {o['gpu_model']} ({o['gpu_memory_gb']:g} GB)",
              money(o["on_demand_usd_per_hour"]), money(o["spot_usd_per_hour"]), o["pricing"].replace("_", " "),
              f"{o['expected_hours']:,.2f}", money(o["expected_cost_usd"]),
              "-" if o["checkpoint_interval_minutes"] is None else f"{o['checkpoint_interval_minutes']:.0f}",
              o["basis"]] for i, o in enumerate(objects)]
    print(tabulate(table, headers=["#", "cloud", "region", "instance type", "GPUs", "on-demand USD/h", "spot USD/h",
                                   "pricing", "hours", "cost USD", "checkpoint min", "basis"],
                   disable_numparse=True))
    print(_basis_line(objects, opt.reference_gpu, opt.datasheet_mfu, work))
    if objects:
        print(f"best: {objects[0]['reason']}")
    return 0
