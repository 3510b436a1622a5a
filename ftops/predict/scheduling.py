"""The scheduling plan for pending and running jobs (spec §3): where each runs, in which order, and the
mitigations that make a risky or tight job safer. Pure functions on frames.

Inputs are per job: the resource prediction and the failure-risk score (`job_risk_table` joins them into
the `job_risk` table), the optimisation selector's instance recommendations, and the policy.

Placement
- Cloud (no `prediction.node_pools`): the best-ranked instance of `instance_recommendations` (rank 1 is
  the selector's choice) whose GPU holds the job's predicted peak memory per GPU, after the micro-batch
  mitigation below. The selector filters on the memory of the GPU the job asked for, not on what it
  needs, so rank 1 can be too small (or larger than needed); a job that no recommended instance holds is
  `unplaceable` with the reason. Cloud capacity is taken as available: a placed job can `start`.
- Node pools (an on-premises or reserved cluster): a pool fits a job when its GPUs hold the predicted
  peak memory and it has at least the job's GPU count. Free GPUs = nodes x gpus_per_node minus the GPUs
  of running jobs placed there, where a running job is placed on a pool when its `instance_type` names
  the pool (how on-premises registries spell a node type); GPUs are counted per pool, not per node
  (fragmentation is the cluster scheduler's business). Pending jobs are placed greedily in priority
  order on the cheapest fitting pool with enough free GPUs (`start`), else they `wait` (a pool fits,
  none has the GPUs free now), or are `unplaceable` (no pool ever fits), each with the reason. A later
  job that fits in what a waiting one leaves starts (backfill: idle GPUs help nobody). Hours on a
  pool: the predicted GPU-hours scaled by datasheet TFLOP/s from the job's GPU to the pool's, over the
  job's GPUs; cost = hours x GPUs x usd_per_hour / gpus_per_node.

Priority (pending jobs; 1 runs first): critical jobs first; then a deadline, but the jobs table has no
deadline column, so none is used; then the risk-adjusted cost = expected cost x (1 + risk), cheapest
first: cheap, safe jobs free capacity soonest, and an expensive risky job is the one worth holding back
while its risk is looked at. Ties: fewer predicted GPU-hours, earlier submission, job_id.

Mitigations
- risk >= `risk_threshold`: checkpoint every `risky_checkpoint_ratio` x the job's Young/Daly interval
  tau = sqrt(2 C M). M is the mean time between interruptions of the job: its failure rate implied by
  the risk (a probability p of failing over H hours is a Poisson rate -ln(1 - p) / H) plus, on spot, the
  instance interruption rate of the plan (the spot policy's default MTBI for a running job). The ratio
  applies on top because a risk score ranks better than it is calibrated. Every job gets its interval
  when it has one; only risky ones get it shortened.
- critical jobs on spot (asked for, or running on it): on demand instead.
- predicted peak memory > `memory_headroom_ratio` x the GPU's memory: halve the micro-batch and double
  grad_accum (the effective batch stays the same); the planned peak is then the prediction at half the
  micro-batch. A micro-batch of 1 cannot be halved.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ftops.optimize.gpus import canonical_gpu_models, datasheets
from ftops.optimize.recommendations import RECOMMENDATION_COLUMNS
from ftops.policy import NodePool, PredictionPolicy, SpotPolicy
from ftops.schemas import JOB_RISK, SCHEDULE_PLAN

LIVE_STATUSES = ("pending", "running")
TARGETS = ("cloud", "node_pool")
NO_DEADLINE = "the jobs table has no deadline column: priority is critical first, then risk-adjusted cost"
JOB_RISK_COLUMNS = tuple(JOB_RISK.column_names)
SCHEDULE_PLAN_COLUMNS = tuple(SCHEDULE_PLAN.column_names)
_MAX_RISK = 0.99  # a certain failure has no finite MTBI; cap it


def _num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _text(series: pd.Series) -> pd.Series:
    return series.astype("object").where(series.notna(), None)


def _bool(series: pd.Series) -> pd.Series:
    return series.astype("object").where(series.notna(), False).astype(bool)


def _fmt(values: pd.Series, spec: str) -> pd.Series:
    return values.map(lambda v: format(v, spec) if pd.notna(v) and np.isfinite(v) else "?").astype("object")


def live_jobs(jobs: pd.DataFrame) -> pd.DataFrame:
    """The pending and running jobs of the registry (one row per job_id)."""
    live = jobs[jobs["status"].astype("object").isin(LIVE_STATUSES).to_numpy(dtype=bool)]
    return live.drop_duplicates("job_id")


def half_micro_batch(jobs: pd.DataFrame) -> pd.DataFrame:
    """The jobs with half the micro-batch and twice the gradient accumulation (same effective batch);
    batch_size is NaN where it cannot be halved (already 1, or unknown)."""
    b = _num(jobs["batch_size"])
    g = _num(jobs["grad_accum"]).fillna(1.0)
    return jobs.assign(batch_size=(b // 2).where(b >= 2), grad_accum=g * 2.0)


def job_risk_table(jobs: pd.DataFrame, predicted: pd.DataFrame, predicted_half: pd.DataFrame,
                   scores: pd.DataFrame | None, risk_threshold: float) -> pd.DataFrame:
    """The `job_risk` table: per live job its spec, predicted resources (also at half the micro-batch),
    risk (0..1, NaN when the risk model gave none), `risky` (risk >= threshold) and top factors.

    `predicted` and `predicted_half` are `predict_resources` of `jobs` and of `half_micro_batch(jobs)`
    (index: the jobs'); `scores` has job_id, risk and top_factors.
    """
    live = jobs.drop_duplicates("job_id")
    p = predicted.loc[live.index]
    out = pd.DataFrame({
        "job_id": live["job_id"].astype(str),
        "status": _text(live["status"]),
        "technique": _text(live["technique"]),
        "model_params_b": _num(live["model_params_b"]),
        "gpu_model": p["gpu_model"],
        "gpu_count": _num(live["gpu_count"]),
        "batch_size": _num(live["batch_size"]),
        "grad_accum": _num(live["grad_accum"]),
        "critical": _bool(live["critical"]),
        "pricing": _text(live["pricing"]),
        "gpu_memory_gb": p["gpu_memory_gb"],
        "analytic_peak_memory_gb": p["analytic_peak_memory_gb"],
        "peak_memory_gb": p["peak_memory_gb"],
        "half_batch_peak_memory_gb": predicted_half.loc[live.index, "peak_memory_gb"],
        "memory_basis": p["memory_basis"],
        "analytic_gpu_hours": p["analytic_gpu_hours"],
        "gpu_hours": p["gpu_hours"],
        "gpu_hours_basis": p["gpu_hours_basis"],
    }, index=live.index)
    out["memory_ratio"] = out["peak_memory_gb"] / out["gpu_memory_gb"]
    if scores is not None and not scores.empty:
        s = scores.assign(job_id=scores["job_id"].astype(str)).drop_duplicates("job_id").set_index("job_id")
        out["risk"] = out["job_id"].map(_num(s["risk"]).clip(0.0, 1.0)).astype("float64")
        out["top_factors"] = out["job_id"].map(_text(s["top_factors"])) if "top_factors" in s else None
    else:
        out["risk"] = np.nan
        out["top_factors"] = None
    out["top_factors"] = _text(out["top_factors"])
    out["risky"] = out["risk"] >= risk_threshold
    return out[list(JOB_RISK_COLUMNS)].reset_index(drop=True)


def priority_order(frame: pd.DataFrame) -> pd.Series:
    """1-based priority per row (critical first, then risk-adjusted cost, then fewer GPU-hours, earlier
    submission, job_id); needs critical, risk_adjusted_cost_usd, gpu_hours, submitted_at, job_id."""
    if frame.empty:
        return pd.Series(dtype="Int64", index=frame.index)
    key = pd.DataFrame({
        "not_critical": ~_bool(frame["critical"]),
        # a job whose cost is unknown goes after those that are known, not first
        "cost": _num(frame["risk_adjusted_cost_usd"]).fillna(np.inf),
        "hours": _num(frame["gpu_hours"]).fillna(np.inf),
        "submitted": pd.to_datetime(frame["submitted_at"], utc=True, errors="coerce"),
        "job_id": frame["job_id"].astype(str),
    }, index=frame.index)
    order = key.sort_values(list(key.columns), kind="mergesort", na_position="last").index
    return pd.Series(np.arange(1, len(order) + 1), index=order).reindex(frame.index).astype("Int64")


def checkpoint_minutes(risk: pd.Series, hours: pd.Series, spot_mtbi_hours: pd.Series, risky: pd.Series,
                       checkpoint_minutes_each: float, risky_ratio: float) -> tuple[pd.Series, pd.Series]:
    """(interval, Young/Daly base) in minutes: tau = sqrt(2 C M) with 1/M = -ln(1 - risk)/hours + 1/MTBI_spot
    (no spot: NaN MTBI); x `risky_ratio` where risky. NaN where neither rate is known or both are zero."""
    p = _num(risk).clip(0.0, _MAX_RISK)
    failure_rate = (-np.log1p(-p) / _num(hours).where(lambda h: h > 0)).fillna(0.0)
    spot_rate = (1.0 / _num(spot_mtbi_hours)).fillna(0.0)
    rate = (failure_rate + spot_rate).where(lambda r: r > 0)
    base_h = np.sqrt(2.0 * (checkpoint_minutes_each / 60.0) / rate)
    base = base_h * 60.0
    interval = base * np.where(_bool(risky), risky_ratio, 1.0)
    return interval, base


def _candidate_fit(peak: pd.Series, half: pd.Series, capacity: pd.Series,
                   headroom: float) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(fits, smaller_batch, planned_peak) of jobs on GPUs of `capacity` GB: the micro-batch is halved
    when the peak exceeds the headroom and halving is possible; it fits when the planned peak is within
    the GPU's memory. An unknown peak fits (nothing says it does not; the reason says so)."""
    smaller = (peak > headroom * capacity) & half.notna()
    planned = half.where(smaller, peak)
    fits = planned.isna() | (planned <= capacity)
    return fits, smaller, planned


def _pool_frame(pools: tuple[NodePool, ...], jobs: pd.DataFrame) -> pd.DataFrame:
    sheets = datasheets()
    frame = pd.DataFrame([{
        "node_pool": p.name, "pool_gpu_type": p.gpu_model, "gpus_per_node": float(p.gpus_per_node),
        "pool_gpu_memory_gb": float(p.gpu_memory_gb), "nodes": float(p.nodes), "usd_per_hour": float(p.usd_per_hour),
    } for p in pools])
    frame["pool_gpu_model"] = canonical_gpu_models(frame["pool_gpu_type"]).astype("object")
    frame["pool_gpu_model"] = frame["pool_gpu_model"].where(frame["pool_gpu_model"].notna(), frame["pool_gpu_type"])
    frame["pool_tflops"] = frame["pool_gpu_model"].map(_num(sheets["dense_bf16_tflops"])).astype("float64")
    frame["total_gpus"] = frame["nodes"] * frame["gpus_per_node"]
    running = jobs[jobs["status"].astype("object") == "running"]
    on_pool = pd.DataFrame({"node_pool": running["instance_type"].astype("object").astype(str).str.strip().str.lower(),
                            "gpus": _num(running["gpu_count"]).fillna(0.0)})
    used = on_pool.groupby("node_pool")["gpus"].sum()
    frame["used_gpus"] = frame["node_pool"].str.strip().str.lower().map(used).fillna(0.0)
    frame["free_gpus"] = (frame["total_gpus"] - frame["used_gpus"]).clip(lower=0.0)
    return frame


def _mitigations(plan: pd.DataFrame, prediction: PredictionPolicy, requested_spot: pd.Series) -> pd.Series:
    parts: list[pd.Series] = []
    idx = plan.index
    risky = _bool(plan["risky"])
    parts.append(pd.Series(np.where(
        risky, "checkpoint every " + _fmt(plan["checkpoint_interval_minutes"], ".0f") + " min ("
        + f"{prediction.risky_checkpoint_ratio:g} x the " + _fmt(plan["_base_minutes"], ".0f")
        + "-min Young/Daly interval): risk " + _fmt(plan["risk"], ".2f") + f" >= {prediction.risk_threshold:g}", ""),
        index=idx))
    crit_spot = _bool(plan["critical"]) & (requested_spot | (plan["pricing"].astype("object") == "spot"))
    parts.append(pd.Series(np.where(crit_spot, "on demand instead of spot: critical job", ""), index=idx))
    smaller = _bool(plan["_smaller_batch"])
    parts.append(pd.Series(np.where(
        smaller, "micro-batch " + _fmt(plan["_batch_size"], ".0f") + " -> " + _fmt(plan["batch_size"], ".0f")
        + ", grad_accum " + _fmt(plan["_grad_accum"], ".0f") + " -> " + _fmt(plan["grad_accum"], ".0f")
        + " (same effective batch): predicted peak " + _fmt(plan["_peak_memory_gb"], ".1f") + " GB > "
        + f"{prediction.memory_headroom_ratio:g} x " + _fmt(plan["gpu_memory_gb"], ".0f") + " GB", ""), index=idx))
    texts = pd.concat(parts, axis=1).replace("", np.nan).stack().dropna()
    joined = texts.groupby(level=0).agg("; ".join) if not texts.empty else pd.Series(dtype="object")
    return joined.reindex(idx).astype("object").where(lambda j: j.notna(), None)


def _cloud_pending(pending: pd.DataFrame, recommendations: pd.DataFrame, headroom: float) -> pd.DataFrame:
    """Pending jobs on the best-ranked recommended instance that holds them."""
    recs = (recommendations if recommendations is not None else pd.DataFrame()).reindex(
        columns=list(RECOMMENDATION_COLUMNS))
    recs = recs.assign(job_id=recs["job_id"].astype(str))
    ranked = recs[_num(recs["rank"]).notna()]
    cand = pending[["job_id", "peak_memory_gb", "half_batch_peak_memory_gb"]].reset_index(names="_row").merge(
        ranked, on="job_id", how="inner")
    fits, smaller, planned = _candidate_fit(cand["peak_memory_gb"], cand["half_batch_peak_memory_gb"],
                                            _num(cand["gpu_memory_gb"]), headroom)
    cand = cand.assign(_fits=fits.to_numpy(dtype=bool), _smaller_batch=smaller.to_numpy(dtype=bool),
                       _planned_peak=planned, _rank=_num(cand["rank"]))
    chosen = cand[cand["_fits"]].sort_values(["_row", "_rank"], kind="mergesort").drop_duplicates("_row")
    chosen = chosen.set_index("_row")
    out = pd.DataFrame(index=pending.index)
    take = ["cloud", "region", "instance_type", "gpu_model", "gpu_count", "instances", "gpu_memory_gb", "pricing",
            "expected_hours", "expected_cost_usd", "mtbi_hours", "_smaller_batch", "_planned_peak", "_rank"]
    for col in take:
        out[col] = chosen[col].reindex(pending.index) if col in chosen else np.nan
    out["gpu_count"] = _num(out["gpu_count"]) * _num(out["instances"]).fillna(1.0)  # GPUs of the whole job
    out["spot_mtbi_hours"] = (_num(out["mtbi_hours"]) / _num(out["instances"]).fillna(1.0)).where(
        out["pricing"].astype("object") == "spot")
    placed = chosen.index
    out["decision"] = np.where(pending.index.isin(placed), "start", "unplaceable")
    out["target"] = "cloud"

    # why a pending job has no instance: the selector said, or none of its instances holds the job
    reason = pd.Series(None, index=pending.index, dtype="object")
    own = recs.drop_duplicates("job_id").set_index("job_id")
    selector_reason = pending["job_id"].map(_text(own["reason"])) if "reason" in own else reason
    has_ranked = pending["job_id"].isin(set(ranked["job_id"]))
    max_mem = ranked.assign(m=_num(ranked["gpu_memory_gb"])).groupby("job_id")["m"].max()
    too_small = ("predicted peak " + _fmt(pending["peak_memory_gb"], ".1f") + " GB per GPU ("
                 + _fmt(pending["half_batch_peak_memory_gb"], ".1f") + " GB with half the micro-batch) is more than "
                 "the largest recommended GPU holds (" + _fmt(pending["job_id"].map(max_mem), ".0f")
                 + " GB): ask for a GPU with more memory or more GPUs to shard over")
    no_rec = "no instance recommendation: " + selector_reason.fillna("the job is not in instance_recommendations")
    reason = reason.mask(~has_ranked, no_rec).mask(has_ranked & (out["decision"] == "unplaceable"), too_small)
    picked_rank = _num(out["_rank"])
    memory_unknown = pending["peak_memory_gb"].isna()
    reason = reason.mask((out["decision"] == "start"), np.where(
        picked_rank == 1, "the selector's first choice", "rank " + _fmt(picked_rank, ".0f")
        + " of the selector: the better-ranked instances cannot hold the predicted peak memory"))
    reason = reason.mask((out["decision"] == "start") & memory_unknown,
                         reason.fillna("") + "; peak memory unknown (no prediction): not checked")
    out["reason"] = reason
    return out


def _pool_pending(pending: pd.DataFrame, jobs: pd.DataFrame, pools: tuple[NodePool, ...], headroom: float,
                  sheets: pd.DataFrame) -> pd.DataFrame:
    """Pending jobs on node pools: priority first needs every job's cost on the pools that fit it, then
    the greedy placement in priority order."""
    pf = _pool_frame(pools, jobs)
    job_tflops = pending["gpu_model"].map(_num(sheets["dense_bf16_tflops"])).astype("float64")
    cand = pending[["job_id", "gpu_count", "gpu_hours", "peak_memory_gb", "half_batch_peak_memory_gb"]].assign(
        _job_tflops=job_tflops).reset_index(names="_row").merge(pf, how="cross")
    fits, smaller, planned = _candidate_fit(cand["peak_memory_gb"], cand["half_batch_peak_memory_gb"],
                                            cand["pool_gpu_memory_gb"], headroom)
    # unknown speed on either side: the same speed (the ratio is 1)
    speed = (cand["_job_tflops"] / cand["pool_tflops"]).fillna(1.0)
    hours = cand["gpu_hours"] * speed / cand["gpu_count"]
    cand = cand.assign(
        _fits_memory=fits.to_numpy(dtype=bool), _enough_gpus=(cand["gpu_count"] <= cand["total_gpus"]).to_numpy(),
        _smaller_batch=smaller.to_numpy(dtype=bool), _planned_peak=planned, expected_hours=hours,
        expected_cost_usd=hours * cand["gpu_count"] * cand["usd_per_hour"] / cand["gpus_per_node"])
    cand["_eligible"] = cand["_fits_memory"] & cand["_enough_gpus"]
    eligible = cand[cand["_eligible"]]
    cheapest = eligible.groupby("_row")["expected_cost_usd"].min()

    # the priority is set on the cheapest pool that fits, before any is taken: the plan is made in its order
    order = priority_order(pending.assign(risk_adjusted_cost_usd=cheapest.reindex(pending.index)
                                          * (1.0 + _num(pending["risk"]).fillna(0.0))))
    free = dict(zip(pf["node_pool"], pf["free_gpus"]))
    by_row = {row: part for row, part in eligible.groupby("_row")}
    largest_pool = float(pf["total_gpus"].max())
    largest_memory = float(pf["pool_gpu_memory_gb"].max())
    decisions: dict[int, str] = {}
    reasons: dict[int, str] = {}
    picks: dict[int, pd.Series] = {}
    # Capacity taken by one job changes what the next may take: a sequential pass, over pending jobs only
    for row in order.sort_values().index:
        job = pending.loc[row]
        options = by_row.get(row)
        if options is None:
            gpus = float(job["gpu_count"])
            decisions[row] = "unplaceable"
            reasons[row] = (f"needs {gpus:.0f} GPUs; the largest node pool has {largest_pool:.0f}"
                            if not gpus <= largest_pool else
                            f"predicted peak {_one(job['peak_memory_gb'])} GB per GPU "
                            f"({_one(job['half_batch_peak_memory_gb'])} GB with half the micro-batch) is more than "
                            f"any node pool's GPUs hold ({largest_memory:.0f} GB)")
            continue
        options = options.assign(_free=options["node_pool"].map(free))
        open_ = options[options["_free"] >= options["gpu_count"]]
        by = ["_smaller_batch", "expected_cost_usd", "node_pool"]  # no mitigation needed first, then cheapest
        if open_.empty:
            decisions[row] = "wait"
            reasons[row] = ("fits " + ", ".join(options["node_pool"]) + f" but none has {float(job['gpu_count']):.0f}"
                            " GPUs free now (free: " + ", ".join(f"{p} {free[p]:.0f}" for p in options["node_pool"])
                            + ")")
            # a waiting job is planned on the pool it waits for, so its cost and mitigations are known
            picks[row] = options.sort_values(by, kind="mergesort").iloc[0]
            continue
        pick = open_.sort_values(by, kind="mergesort").iloc[0]
        decisions[row] = "start"
        reasons[row] = (f"node pool {pick['node_pool']}: {float(pick['pool_gpu_memory_gb']):.0f} GB GPUs, "
                        f"{free[pick['node_pool']]:.0f} free before this job")
        if pd.isna(job["peak_memory_gb"]):
            reasons[row] += "; peak memory unknown (no prediction): not checked"
        free[pick["node_pool"]] -= float(pick["gpu_count"])
        picks[row] = pick

    chosen = pd.DataFrame(picks).T if picks else pd.DataFrame(columns=cand.columns)
    chosen = chosen.reindex(pending.index)
    out = pd.DataFrame({
        "priority": order,
        "decision": pd.Series(decisions, dtype="object").reindex(pending.index),
        "reason": pd.Series(reasons, dtype="object").reindex(pending.index),
        "target": "node_pool",
        "node_pool": _text(chosen["node_pool"]),
        "gpu_model": _text(chosen["pool_gpu_model"]),
        "gpu_memory_gb": _num(chosen["pool_gpu_memory_gb"]),
        "gpu_count": pending["gpu_count"],
        "pricing": "on_demand",  # an own cluster is not reclaimed
        "cloud": None,
        "region": None,
        "instance_type": None,
        "expected_hours": _num(chosen["expected_hours"]),
        "expected_cost_usd": _num(chosen["expected_cost_usd"]),
        "spot_mtbi_hours": np.nan,
        "_smaller_batch": _bool(chosen["_smaller_batch"]),
        "_planned_peak": _num(chosen["_planned_peak"]),
    }, index=pending.index)
    return out


def _one(value: float) -> str:
    return f"{value:.1f}" if pd.notna(value) and math.isfinite(value) else "?"


def _running(running: pd.DataFrame, jobs: pd.DataFrame, pools: tuple[NodePool, ...], headroom: float,
             spot: SpotPolicy) -> pd.DataFrame:
    """Running jobs stay where they are: their registry instance (or the pool it names)."""
    reg = jobs.drop_duplicates("job_id").assign(job_id=lambda f: f["job_id"].astype(str)).set_index("job_id")
    ids = running["job_id"]
    out = pd.DataFrame(index=running.index)
    for col in ("cloud", "region", "instance_type"):
        out[col] = ids.map(_text(reg[col])) if col in reg else None
    names = {p.name.strip().lower(): p for p in pools}
    pool = out["instance_type"].map(lambda t: names.get(str(t).strip().lower()) if t is not None else None)
    out["node_pool"] = pool.map(lambda p: p.name if p is not None else None)
    out["target"] = np.where(out["node_pool"].notna(), "node_pool", "cloud")
    out["gpu_model"] = running["gpu_model"]
    out["gpu_memory_gb"] = running["gpu_memory_gb"].where(
        pool.isna(), pool.map(lambda p: float(p.gpu_memory_gb) if p is not None else np.nan))
    out["gpu_count"] = running["gpu_count"]
    out["pricing"] = running["pricing"]
    # the registry has no progress: the whole run's hours, as spot_plans does
    out["expected_hours"] = running["gpu_hours"] / running["gpu_count"]
    out["expected_cost_usd"] = np.nan
    out["spot_mtbi_hours"] = np.where(out["pricing"].astype("object") == "spot", spot.default_mtbi_hours, np.nan)
    fits, smaller, planned = _candidate_fit(running["peak_memory_gb"], running["half_batch_peak_memory_gb"],
                                            out["gpu_memory_gb"], headroom)
    out["_smaller_batch"] = smaller
    out["_planned_peak"] = planned
    out["decision"] = "running"
    out["reason"] = np.where(fits, "running: placement unchanged; mitigations apply at its next restart",
                             "running, but its predicted peak memory is more than its GPU holds even with half "
                             "the micro-batch: expect an OOM")
    return out


def schedule_plan(job_risk: pd.DataFrame, recommendations: pd.DataFrame | None, jobs: pd.DataFrame,
                  prediction: PredictionPolicy, spot: SpotPolicy) -> pd.DataFrame:
    """The `schedule_plan` table: one row per pending or running job of `job_risk` (see the module
    docstring for placement, priority and mitigations). `recommendations` is the instance_recommendations
    table (used when no node pools are configured); `jobs` the registry (submission times, requested
    pricing, instance of running jobs, the GPUs running jobs hold on node pools)."""
    if job_risk.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in SCHEDULE_PLAN_COLUMNS})
    sheets = datasheets()
    jr = job_risk.reset_index(drop=True).copy()
    jr["job_id"] = jr["job_id"].astype(str)
    reg = jobs.drop_duplicates("job_id").assign(job_id=lambda f: f["job_id"].astype(str)).set_index("job_id")
    jr["submitted_at"] = jr["job_id"].map(reg["submitted_at"]) if "submitted_at" in reg else pd.NaT
    requested_spot = (jr["job_id"].map(_text(reg["pricing"])) == "spot") if "pricing" in reg \
        else pd.Series(False, index=jr.index)
    status = jr["status"].astype("object")
    pending = jr[status == "pending"]
    running = jr[status == "running"]
    headroom = prediction.memory_headroom_ratio
    pools = prediction.node_pools

    parts = []
    if not pending.empty:
        placed = (_pool_pending(pending, jobs, pools, headroom, sheets) if pools
                  else _cloud_pending(pending, recommendations, headroom))
        parts.append(placed)
    if not running.empty:
        parts.append(_running(running, jobs, pools, headroom, spot))
    where = pd.concat(parts).reindex(jr.index)

    plan = jr[["job_id", "status", "critical", "risk", "risky", "gpu_hours", "submitted_at"]].copy()
    for col in ("decision", "target", "node_pool", "cloud", "region", "instance_type", "gpu_model", "gpu_count",
                "gpu_memory_gb", "pricing", "expected_hours", "expected_cost_usd", "spot_mtbi_hours", "reason"):
        plan[col] = where[col] if col in where else None
    plan["pricing"] = plan["pricing"].where(~_bool(plan["critical"]) | (status == "running"), "on_demand")
    smaller = _bool(where["_smaller_batch"].where(where["_smaller_batch"].notna(), False))
    plan["_smaller_batch"] = smaller
    plan["_peak_memory_gb"] = jr["peak_memory_gb"]
    plan["_batch_size"] = jr["batch_size"]
    plan["_grad_accum"] = jr["grad_accum"]
    plan["peak_memory_gb"] = _num(where["_planned_peak"]).where(_num(where["_planned_peak"]).notna(),
                                                               jr["peak_memory_gb"])
    plan["batch_size"] = jr["batch_size"].where(~smaller, (jr["batch_size"] // 2))
    plan["grad_accum"] = jr["grad_accum"].fillna(1.0).where(~smaller, jr["grad_accum"].fillna(1.0) * 2.0)
    plan["risk_adjusted_cost_usd"] = _num(plan["expected_cost_usd"]) * (1.0 + _num(plan["risk"]).fillna(0.0))
    is_pending = (status == "pending").to_numpy(dtype=bool)
    plan["priority"] = pd.Series(pd.NA, index=plan.index, dtype="Int64")
    if is_pending.any():
        plan.loc[is_pending, "priority"] = (where.loc[is_pending, "priority"].astype("Int64") if pools
                                            else priority_order(plan[is_pending]))
    hours = _num(plan["expected_hours"]).where(_num(plan["expected_hours"]).notna(),
                                               _num(jr["gpu_hours"]) / _num(jr["gpu_count"]))
    spot_mtbi = _num(plan["spot_mtbi_hours"]).where(plan["pricing"].astype("object") == "spot")
    plan["checkpoint_interval_minutes"], plan["_base_minutes"] = checkpoint_minutes(
        plan["risk"], hours, spot_mtbi, plan["risky"], spot.checkpoint_minutes, prediction.risky_checkpoint_ratio)
    plan["mitigations"] = _mitigations(plan, prediction, requested_spot)
    plan = plan.sort_values(["priority", "status", "job_id"], kind="mergesort", na_position="last")
    return plan[list(SCHEDULE_PLAN_COLUMNS)].reset_index(drop=True)
