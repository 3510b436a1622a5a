"""Per-job advice from the job registry: where to run pending jobs, and spot or on demand (spec §2.1).

Pure functions on frames; the Dagster assets that call them live elsewhere.

`instance_recommendations` covers *pending* jobs only: moving a running job costs a restart and lost
work that the registry cannot size (it has no progress); `spot_plans` covers running jobs too, on their
current instance type. Per job:

- requirements: `gpus` = gpu_count; GPU memory per GPU >= the datasheet memory of the job's current
  gpu_type when it is known (the job fits there, so it fits in as much), else no minimum; cloud and
  region free (the cheapest place wins; `cloud`/`region` in the output say where).
- work: tokens = dataset_samples x epochs x seq_len with model_params_b and technique. seq_len is the
  padded/packed length, so this is an upper bound for unpacked data. A job without these cannot be sized:
  it gets one row with `rank` missing and the `reason` saying what is missing (no silent omission).
- budget per hour: `budget_usd_per_hour[budget_category]`; for a category not in it, the per-job cost
  limit (monitoring.cost.max_usd_per_hour); critical jobs run on demand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.optimize.gpus import canonical_gpu_models
from ftops.optimize.selection import (
    FLOPS_PER_PARAM_TOKEN,
    OUTPUT_COLUMNS,
    NoCandidateError,
    Requirements,
    estimate_hours,
    filter_candidates,
)
from ftops.optimize.spot import plan_numbers, plan_reasons
from ftops.policy import Policy

RECOMMENDATION_COLUMNS = (
    "job_id", "rank", *OUTPUT_COLUMNS, "pricing", "max_spot_usd_per_hour", "checkpoint_interval_minutes",
    "mtbi_hours", "mtbi_basis", "expected_interruptions", "spot_expected_hours", "spot_expected_cost_usd",
    "expected_cost_usd", "current_instance_type", "current_pricing", "current_cost_usd", "saving_ratio",
    "worth_switching", "reason",
)
SPOT_PLAN_COLUMNS = (
    "job_id", "status", "cloud", "region", "instance_type", "gpu_model", "instances", "current_pricing", "pricing",
    "change", "max_spot_usd_per_hour", "checkpoint_interval_minutes", "mtbi_hours", "mtbi_basis",
    "expected_interruptions", "on_demand_hours", "on_demand_cost_usd", "spot_expected_hours",
    "spot_expected_cost_usd", "expected_hours", "expected_cost_usd", "basis", "reason",
)
_PLANNED_STATUSES = ("pending", "running")


def _num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _text(series: pd.Series) -> pd.Series:
    return series.astype("object").where(series.notna(), None)


def per_job_limit(policy: Policy) -> float:
    """The per-job cost limit that stands in for a budget per hour where a category has none."""
    return policy.monitoring.cost.max_usd_per_hour


def job_work(jobs: pd.DataFrame, datasheets: pd.DataFrame,
             budget_usd_per_hour: dict[str, float] | None = None,
             per_job_usd_per_hour: float | None = None) -> pd.DataFrame:
    """Per job: gpus, gpu_memory_gb (minimum per GPU), tokens, model_params_b, technique, critical, budget
    per hour and `skip` (why the job cannot be planned; None when it can). Index: the jobs' index.

    A job whose category has no budget per hour is held to `per_job_usd_per_hour` (the per-job cost
    limit, monitoring.cost.max_usd_per_hour) when given: spec §2.1's "or a per-job limit"."""
    budgets = budget_usd_per_hour or {}
    gpu_model = canonical_gpu_models(jobs["gpu_type"]).astype("object")
    memory = _num(datasheets["memory_gb"])
    need_memory = gpu_model.map(memory).astype("float64").fillna(0.0)
    tokens = _num(jobs["dataset_samples"]) * _num(jobs["epochs"]) * _num(jobs["seq_len"])
    technique = _text(jobs["technique"])
    out = pd.DataFrame({
        "job_id": jobs["job_id"].astype("object"),
        "gpus": _num(jobs["gpu_count"]),
        "gpu_memory_gb": need_memory,
        "current_gpu_model": gpu_model,
        "tokens": tokens,
        "reference_hours": np.nan,
        "model_params_b": _num(jobs["model_params_b"]),
        "technique": technique,
        "critical": jobs["critical"].astype("object").fillna(False).astype(bool),
        "budget_usd_per_hour": _text(jobs["budget_category"]).map(lambda c: budgets.get(c, np.nan)
                                                                  if c is not None else np.nan).astype("float64")
        .fillna(np.nan if per_job_usd_per_hour is None else float(per_job_usd_per_hour)),
    }, index=jobs.index)
    skip = pd.Series(None, index=jobs.index, dtype="object")
    checks = (
        (~(out["gpus"] >= 1) | (out["gpus"] % 1 != 0), "no GPU count: the requirements are unknown"),
        (~(out["tokens"] > 0), "dataset_samples, epochs or seq_len missing: the work cannot be sized"),
        (~(out["model_params_b"] > 0), "model_params_b missing: the work cannot be sized"),
        (~technique.isin(list(FLOPS_PER_PARAM_TOKEN)), "technique missing: the work cannot be sized"),
    )
    for bad, why in reversed(checks):  # the first failing check's reason wins
        skip = skip.mask(bad, why)
    out["skip"] = skip
    return out


def _current_plan(jw: pd.DataFrame, jobs: pd.DataFrame, catalog: pd.DataFrame, datasheets: pd.DataFrame,
                  measured: pd.DataFrame | None, policy: Policy, mtbi: pd.DataFrame | None) -> pd.DataFrame:
    """Each plannable job on its current instance type (matched on cloud, region, instance type)."""
    opt = policy.optimization
    key = ["cloud", "region", "instance_type"]
    cat = catalog.assign(**{k: catalog[k].astype("object").str.strip().str.lower() for k in key})
    cat = cat.drop_duplicates(key, keep="first")
    j = pd.DataFrame({k: jobs[k].astype("object").str.strip().str.lower() for k in key}, index=jobs.index)
    j["status"] = jobs["status"].astype("object")
    j["current_pricing"] = _text(jobs["pricing"])
    j = j.join(jw)
    j = j[j["skip"].isna()]
    merged = j.reset_index(names="_row").merge(cat, on=key, how="inner").set_index("_row")
    merged["instances"] = np.maximum(1.0, np.ceil(merged["gpus"] / _num(merged["gpu_count"])))
    est = estimate_hours(merged, datasheets=datasheets, measured=measured, reference_gpu=opt.reference_gpu,
                         datasheet_mfu=opt.datasheet_mfu)
    merged = merged.join(est)
    merged = merged[merged["expected_hours"].notna()]
    planned = plan_numbers(merged, spot_policy=opt.spot, mtbi=mtbi, budget_usd_per_hour=merged["budget_usd_per_hour"],
                           critical=merged["critical"], consider_spot=True)
    planned["reason"] = plan_reasons(planned, opt.spot)
    return planned


def _cost_on_current_pricing(planned: pd.DataFrame) -> pd.Series:
    spot = planned["current_pricing"] == "spot"
    return planned["spot_expected_cost_usd"].where(spot & planned["spot_expected_cost_usd"].notna(),
                                                   planned["on_demand_cost_usd"])


def instance_recommendations(jobs: pd.DataFrame, catalog: pd.DataFrame, datasheets: pd.DataFrame,
                             measured: pd.DataFrame | None, policy: Policy,
                             budget_usd_per_hour: dict[str, float] | None, mtbi: pd.DataFrame | None,
                             top: int = 3) -> pd.DataFrame:
    """The `top` cheapest instance types (each in its cheapest region) for every pending job.

    One row per (job_id, rank), rank 1 = cheapest expected cost of the recommended pricing, with the
    candidate columns of `rank_instances`, the pricing plan of `plan_pricing`, the job's cost on its
    current instance type and pricing (`current_cost_usd`, NaN when that type is not in the catalogue),
    `saving_ratio` = 1 - expected / current and `worth_switching` (saving >= min_saving_ratio). A pending
    job that cannot be planned gets one row with `rank` missing and the reason.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    opt = policy.optimization
    pending = jobs[jobs["status"].astype("object") == "pending"]
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in RECOMMENDATION_COLUMNS})
    if pending.empty:
        return empty
    jw = job_work(pending, datasheets, budget_usd_per_hour, per_job_limit(policy))
    skipped = [jw.loc[jw["skip"].notna(), ["job_id", "skip"]].rename(columns={"skip": "reason"})]
    # the job's minimum memory per GPU, apart from the instance's gpu_memory_gb it is crossed with
    ok = jw[jw["skip"].isna()].rename(columns={"gpu_memory_gb": "min_gpu_memory_gb"})
    ok["gpus"] = ok["gpus"].astype("int64")

    # one catalogue filter per distinct shape (few), then every job of the shape against its candidates
    shapes = ok[["gpus", "min_gpu_memory_gb"]].drop_duplicates()
    parts = []
    for gpus, memory in shapes.itertuples(index=False):
        jobs_of_shape = ok[(ok["gpus"] == gpus) & (ok["min_gpu_memory_gb"] == memory)]
        try:
            cands = filter_candidates(catalog, Requirements(gpus=int(gpus), gpu_memory_gb=float(memory)))
        except NoCandidateError as exc:
            skipped.append(pd.DataFrame({"job_id": jobs_of_shape["job_id"], "reason": str(exc)}))
            continue
        cands = cands.drop(columns=["gpus", "tokens", "reference_hours", "model_params_b", "technique"],
                           errors="ignore")
        parts.append(jobs_of_shape.merge(cands, how="cross"))
    rows = [pd.DataFrame()]
    if parts:
        c = pd.concat(parts, ignore_index=True)
        est = estimate_hours(c, datasheets=datasheets, measured=measured, reference_gpu=opt.reference_gpu,
                             datasheet_mfu=opt.datasheet_mfu)
        c = c.join(est)
        unsized = c.groupby("job_id")["expected_hours"].transform("count") == 0
        gone = c.loc[unsized, "job_id"].drop_duplicates()
        skipped.append(pd.DataFrame({"job_id": gone, "reason": "no candidate GPU has a datasheet or a measured "
                                                               "throughput: the job's hours cannot be estimated"}))
        c = c[c["expected_hours"].notna()].copy()
        c["on_demand_usd_per_hour"] = _num(c["on_demand_usd_per_hour"])
        c["spot_usd_per_hour"] = _num(c["spot_usd_per_hour"])
        inst = c["instances"].astype("float64")
        c["spot_cost_usd"] = c["expected_hours"] * c["spot_usd_per_hour"] * inst
        planned = plan_numbers(c, spot_policy=opt.spot, mtbi=mtbi, budget_usd_per_hour=c["budget_usd_per_hour"],
                               critical=c["critical"], consider_spot=True)
        planned["_rate"] = planned["on_demand_usd_per_hour"] * inst
        planned = planned.sort_values(["job_id", "expected_cost_usd", "expected_hours", "_rate", "instances",
                                       "cloud", "region", "instance_type"], kind="mergesort")
        planned = planned[~planned.duplicated(["job_id", "cloud", "instance_type"], keep="first")]
        planned["rank"] = planned.groupby("job_id").cumcount() + 1
        planned = planned[planned["rank"] <= top].copy()
        planned["reason"] = plan_reasons(planned, opt.spot)
        rows = [planned]

    out = pd.concat([*rows, *[s for s in skipped if not s.empty]], ignore_index=True)
    if out.empty:
        return empty
    for col in ("expected_cost_usd", "rank"):  # absent when no job could be planned
        if col not in out:
            out[col] = float("nan")
    current = _current_plan(jw, pending, catalog, datasheets, measured, policy, mtbi)
    cur = pd.DataFrame({"job_id": current["job_id"], "current_cost_usd": _cost_on_current_pricing(current)})
    cur = cur.drop_duplicates("job_id")
    out = out.merge(cur, on="job_id", how="left")
    first = pending.drop_duplicates("job_id")
    ids = first["job_id"].astype("object").to_numpy()
    out["current_instance_type"] = out["job_id"].map(pd.Series(_text(first["instance_type"]).to_numpy(), index=ids))
    out["current_pricing"] = out["job_id"].map(pd.Series(_text(first["pricing"]).to_numpy(), index=ids))
    out["saving_ratio"] = 1.0 - out["expected_cost_usd"] / out["current_cost_usd"]
    out["worth_switching"] = (out["saving_ratio"] >= opt.min_saving_ratio).where(out["saving_ratio"].notna())
    out["rank"] = out["rank"].astype("Int64")
    for col in RECOMMENDATION_COLUMNS:
        if col not in out:
            out[col] = np.nan
    out = out.sort_values(["job_id", "rank"], kind="mergesort", na_position="last")
    return out[list(RECOMMENDATION_COLUMNS)].reset_index(drop=True)


def spot_plans(jobs: pd.DataFrame, catalog: pd.DataFrame, datasheets: pd.DataFrame, measured: pd.DataFrame | None,
               policy: Policy, budget_usd_per_hour: dict[str, float] | None,
               mtbi: pd.DataFrame | None) -> pd.DataFrame:
    """Spot or on demand for every pending or running job, on its current instance type.

    The whole job's work is costed both ways (the registry has no progress, so for a running job the
    part already done is not subtracted; the comparison holds for what is left in proportion). `change`
    says the recommendation differs from the job's current pricing. A job whose instance type is not in
    the catalogue, or whose work cannot be sized, gets a row with `pricing` missing and the reason.
    """
    opt = policy.optimization
    live = jobs[jobs["status"].astype("object").isin(_PLANNED_STATUSES)]
    if live.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in SPOT_PLAN_COLUMNS})
    jw = job_work(live, datasheets, budget_usd_per_hour, per_job_limit(policy))
    planned = _current_plan(jw, live, catalog, datasheets, measured, policy, mtbi)
    planned = planned.drop_duplicates("job_id")
    planned["change"] = planned["pricing"] != planned["current_pricing"]
    base = pd.DataFrame({
        "job_id": live["job_id"].astype("object"), "status": live["status"].astype("object"),
        "cloud": _text(live["cloud"]), "region": _text(live["region"]), "instance_type": _text(live["instance_type"]),
        "current_pricing": _text(live["pricing"]),
    }).drop_duplicates("job_id")
    missing = base[~base["job_id"].isin(planned["job_id"])].copy()
    why = jw.set_index("job_id")["skip"]
    why = why[~why.index.duplicated()]
    missing["reason"] = missing["job_id"].map(why)
    missing["reason"] = missing["reason"].where(
        missing["reason"].notna(),
        "instance type " + missing["instance_type"].fillna("?").astype(str) + " in "
        + missing["cloud"].fillna("?").astype(str) + "/" + missing["region"].fillna("?").astype(str)
        + " is not in the catalogue (or its GPU has no datasheet): no plan")
    # the catalogue's spelling lower-cased the keys: report the job's own
    planned = planned.drop(columns=["cloud", "region", "instance_type", "status", "current_pricing"])
    planned = base.merge(planned, on="job_id", how="inner")
    out = pd.concat([planned, missing], ignore_index=True)
    for col in SPOT_PLAN_COLUMNS:
        if col not in out:
            out[col] = np.nan
    return out.sort_values("job_id", kind="mergesort")[list(SPOT_PLAN_COLUMNS)].reset_index(drop=True)
