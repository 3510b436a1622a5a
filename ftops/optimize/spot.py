"""Spot or on demand, and how often to checkpoint on spot (spec §2.1).

Rules:

- max spot price = `SpotPolicy.max_price_budget_ratio` (0.7) x the budget per hour, where the budget per
  hour is the category's remaining budget over the hours left in its period, or a per-job limit. It is
  compared with what the *job* pays per hour on spot (price x instances). Without a budget there is no cap.
- critical jobs, instance types without a spot offer and spot prices above the max run on demand.
- checkpoint interval: Young/Daly, tau = sqrt(2 x C x M), with C the time to write a checkpoint and M the
  mean time between interruptions (MTBI).
- spot is recommended only when its *expected* cost, lost work and restarts included, is below the
  on-demand cost of the same work.

Expected wall time on spot: Daly's first-order model. Work W hours, checkpoint every tau hours at cost C,
an interruption every M hours on average, each losing half an interval of work (tau/2) and a restart R:

    wall = W x (1 + C/tau) + (wall / M) x (tau/2 + R)

wall appears on both sides (interruptions happen during the overheads too); solved for it:

    wall = W x (1 + C/tau) / (1 - (tau/2 + R) / M)

which holds while tau/2 + R < M; beyond that the job expects to be interrupted before it gets back to
work and never finishes (wall = inf). The model is first order: it ignores interruptions during a restart
compounding and treats a job shorter than tau as paying a fraction C/tau per hour of work.

MTBI. A job on several instances is stopped when any one of them is reclaimed, so its MTBI is the
instance's MTBI divided by the instance count. The instance MTBI per cloud/region/GPU is configured
(`SpotPolicy.mtbi_hours`, most specific key wins, else `default_mtbi_hours`) until the job registry holds
`min_preemptions_to_learn` preemptions of that cloud/region/GPU; then the fleet's own rate is used
(spot job-hours / preemptions; a multi-node job counts once per hour, a slight over-estimate of the
instance MTBI while most spot jobs are one node).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ftops.optimize.gpus import canonical_gpu_models
from ftops.policy import SpotPolicy

MTBI_COLUMNS = ("cloud", "region", "gpu_model", "spot_jobs", "spot_hours", "preemptions", "learnt_mtbi_hours",
                "configured_mtbi_hours", "mtbi_hours", "basis")
PLAN_COLUMNS = ("pricing", "max_spot_usd_per_hour", "checkpoint_interval_minutes", "mtbi_hours", "mtbi_basis",
                "expected_interruptions", "spot_expected_hours", "spot_expected_cost_usd", "on_demand_hours",
                "expected_hours", "expected_cost_usd", "reason")


@dataclass(frozen=True)
class SpotRun:
    """Expected course of W hours of work on spot under Daly's first-order model."""

    wall_hours: float  # inf when interruptions come faster than the job can get back to work
    interruptions: float  # expected number: wall / MTBI
    overhead_hours: float  # wall - work: checkpoints, lost work and restarts
    interval_hours: float  # checkpoint interval used


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'of at least' if allow_zero else 'above'} 0, not {value!r}")
    return value


def young_daly_interval_hours(checkpoint_hours: float, mtbi_hours: float) -> float:
    """The checkpoint interval that minimises expected waste: tau = sqrt(2 x C x M) (Young 1974, Daly 2006)."""
    c = _positive("checkpoint_hours", checkpoint_hours, allow_zero=True)
    m = _positive("mtbi_hours", mtbi_hours)
    return math.sqrt(2.0 * c * m)


def budget_usd_per_hour(remaining_usd: float, hours_left: float) -> float:
    """What may be spent per hour for the budget to last: remaining / hours left; 0 once it is spent."""
    h = _positive("hours_left", hours_left)
    remaining = float(remaining_usd)
    if math.isnan(remaining):
        raise ValueError("remaining_usd must be a number, not NaN")
    return max(remaining, 0.0) / h


def max_spot_price(budget_usd_per_hour: float, ratio: float) -> float:
    """The most a spot job may pay per hour: ratio (0.7) x the budget per hour."""
    return _positive("ratio", ratio) * _positive("budget_usd_per_hour", budget_usd_per_hour, allow_zero=True)


def _daly_wall(work: np.ndarray, mtbi: np.ndarray, checkpoint: float | np.ndarray, restart: float | np.ndarray,
               tau: np.ndarray) -> np.ndarray:
    """wall = W (1 + C/tau) / (1 - (tau/2 + R)/M), inf where the denominator is not positive (vectorised)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        per_work = 1.0 + np.where(tau > 0, np.divide(checkpoint, tau), 0.0)
        denominator = 1.0 - (tau / 2.0 + restart) / mtbi
        return np.where(denominator > 0, work * per_work / np.where(denominator > 0, denominator, 1.0), np.inf)


def expected_spot_run(work_hours: float, mtbi_hours: float, checkpoint_hours: float, restart_hours: float,
                      interval_hours: float | None = None) -> SpotRun:
    """Expected wall time of `work_hours` on spot, checkpointing every `interval_hours` (Young/Daly if None)."""
    w = _positive("work_hours", work_hours, allow_zero=True)
    m = _positive("mtbi_hours", mtbi_hours)
    c = _positive("checkpoint_hours", checkpoint_hours, allow_zero=True)
    r = _positive("restart_hours", restart_hours, allow_zero=True)
    tau = young_daly_interval_hours(c, m) if interval_hours is None else _positive("interval_hours", interval_hours)
    wall = float(_daly_wall(np.array(w), np.array(m), c, r, np.array(tau)))
    return SpotRun(wall_hours=wall, interruptions=wall / m, overhead_hours=wall - w, interval_hours=tau)


# ---------------------------------------------------------------------------------------------- MTBI


def _key(*parts: pd.Series) -> pd.Series:
    out = parts[0].astype("object").fillna("").astype(str).str.strip().str.lower()
    for p in parts[1:]:
        out = out + "/" + p.astype("object").fillna("").astype(str).str.strip().str.lower()
    return out


def configured_mtbi(cloud: pd.Series, region: pd.Series, gpu_model: pd.Series, spot_policy: SpotPolicy) -> pd.Series:
    """The configured instance MTBI per row: "cloud/region/gpu", else "cloud/region", else "cloud", else default.

    Keys compare case-insensitively.
    """
    table = {str(k).strip().lower(): float(v) for k, v in spot_policy.mtbi_hours.items()}
    out = pd.Series(np.nan, index=cloud.index)
    for key in (_key(cloud, region, gpu_model), _key(cloud, region), _key(cloud)):  # most specific first
        out = out.fillna(key.map(table).astype("float64"))
    return out.fillna(float(spot_policy.default_mtbi_hours))


def mtbi_table(jobs: pd.DataFrame, spot_policy: SpotPolicy, now: pd.Timestamp) -> pd.DataFrame:
    """Spot hours, preemptions and the MTBI to use per (cloud, region, gpu_model) from the job registry.

    Spot job-hours are counted from started_at to ended_at (or `now` while running), up to `now`; a job
    counts as preempted when its status or exit_reason says so (and it ended by `now`). `basis` is
    "learnt" (mtbi_hours = spot_hours / preemptions) once preemptions >= min_preemptions_to_learn, else
    "configured" (the policy's value). gpu_model is the job's gpu_type in catalogue spelling.
    """
    now = pd.Timestamp(now)
    if jobs is None or jobs.empty:
        return pd.DataFrame({c: pd.Series(dtype="object" if c in ("cloud", "region", "gpu_model", "basis")
                                          else "float64") for c in MTBI_COLUMNS})
    j = jobs[(jobs["pricing"].astype("object") == "spot") & jobs["started_at"].notna()
             & jobs["cloud"].notna() & jobs["region"].notna() & jobs["gpu_type"].notna()]
    j = j[j["started_at"] < now]
    end = j["ended_at"].where(j["ended_at"].notna() & (j["ended_at"] < now), now)
    hours = ((end - j["started_at"]).dt.total_seconds() / 3600.0).clip(lower=0.0)
    preempted = ((j["status"].astype("object") == "preempted") | (j["exit_reason"].astype("object") == "preempted"))
    preempted = preempted & (j["ended_at"].isna() | (j["ended_at"] <= now))
    names = j["gpu_type"].astype("object")
    canonical = canonical_gpu_models(j["gpu_type"]).astype("object")
    models = canonical.where(canonical.notna(), names)  # an unknown name stays as it is
    frame = pd.DataFrame({
        "cloud": j["cloud"].astype("object").str.strip().str.lower(),
        "region": j["region"].astype("object").str.strip().str.lower(),
        "gpu_model": models,
        "spot_hours": hours.astype("float64"),
        "preemptions": preempted.astype("int64"),
    })
    g = frame.groupby(["cloud", "region", "gpu_model"], sort=True)
    t = g.agg(spot_jobs=("spot_hours", "size"), spot_hours=("spot_hours", "sum"),
              preemptions=("preemptions", "sum")).reset_index()
    t["spot_jobs"] = t["spot_jobs"].astype("int64")
    t["preemptions"] = t["preemptions"].astype("int64")
    with np.errstate(divide="ignore", invalid="ignore"):
        t["learnt_mtbi_hours"] = np.where(t["preemptions"] > 0, t["spot_hours"] / t["preemptions"], np.nan)
    t["configured_mtbi_hours"] = configured_mtbi(t["cloud"], t["region"], t["gpu_model"], spot_policy)
    learnt = (t["preemptions"] >= max(int(spot_policy.min_preemptions_to_learn), 1)) & (t["learnt_mtbi_hours"] > 0)
    t["mtbi_hours"] = np.where(learnt, t["learnt_mtbi_hours"], t["configured_mtbi_hours"])
    t["basis"] = np.where(learnt, "learnt", "configured").astype(object)
    return t[list(MTBI_COLUMNS)]


def mtbi_frame(cloud: pd.Series, region: pd.Series, gpu_model: pd.Series, table: pd.DataFrame | None,
               spot_policy: SpotPolicy) -> pd.DataFrame:
    """Instance MTBI and its basis per row (vectorised `mtbi_for`): learnt where the table says so."""
    configured = configured_mtbi(cloud, region, gpu_model, spot_policy)
    out = pd.DataFrame({"mtbi_hours": configured, "mtbi_basis": "configured"}, index=cloud.index)
    if table is None or table.empty:
        return out
    learnt = table[table["basis"] == "learnt"]
    if learnt.empty:
        return out
    by_key = pd.Series(learnt["mtbi_hours"].to_numpy(dtype="float64"),
                       index=_key(learnt["cloud"], learnt["region"], learnt["gpu_model"]).to_numpy())
    by_key = by_key[~by_key.index.duplicated()]
    hit = _key(cloud, region, gpu_model).map(by_key).astype("float64")
    has = hit.notna()
    out.loc[has, "mtbi_hours"] = hit[has]
    out.loc[has, "mtbi_basis"] = "learnt"
    return out


def mtbi_for(cloud: str, region: str, gpu_model: str, table: pd.DataFrame | None,
             spot_policy: SpotPolicy) -> tuple[float, str]:
    """(instance MTBI hours, "learnt" | "configured") for one cloud/region/GPU."""
    one = mtbi_frame(pd.Series([cloud]), pd.Series([region]), pd.Series([gpu_model]), table, spot_policy)
    return float(one["mtbi_hours"].iloc[0]), str(one["mtbi_basis"].iloc[0])


# ---------------------------------------------------------------------------------------------- plans


def _money(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "?" if not np.isfinite(v) else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"))


def _hours(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "?" if not np.isfinite(v) else (f"{v:,.0f}" if v >= 10 else f"{v:.1f}"))


def _rate(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "?" if not np.isfinite(v) else f"{v:.2f}" if v < 10 else f"{v:.1f}")


def _as_series(value, index: pd.Index, dtype: str) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.reindex(index) if not value.index.equals(index) else value
    if isinstance(value, (list, tuple, np.ndarray)):
        return pd.Series(value, index=index)
    return pd.Series([value] * len(index), index=index, dtype="object" if value is None else None)


def plan_numbers(candidates: pd.DataFrame, *, spot_policy: SpotPolicy, mtbi: pd.DataFrame | None = None,
                 budget_usd_per_hour: float | None | pd.Series = None, critical: bool | pd.Series = False,
                 consider_spot: bool = True) -> pd.DataFrame:
    """`plan_pricing` without the `reason` sentences (for big frames cut down before the sentences)."""
    c = candidates.copy()
    idx = c.index
    work = pd.to_numeric(c["on_demand_hours"] if "on_demand_hours" in c else c["expected_hours"],
                         errors="coerce").astype("float64")
    instances = (pd.to_numeric(c["instances"], errors="coerce").astype("float64").fillna(1.0)
                 if "instances" in c else pd.Series(1.0, index=idx))
    od_price = pd.to_numeric(c["on_demand_usd_per_hour"], errors="coerce").astype("float64")
    spot_price = pd.to_numeric(c["spot_usd_per_hour"], errors="coerce").astype("float64")
    budget = pd.to_numeric(_as_series(budget_usd_per_hour, idx, "float64"), errors="coerce").astype("float64")
    crit = _as_series(critical, idx, "bool").astype("object").fillna(False).astype(bool)

    m = mtbi_frame(c["cloud"], c["region"], c["gpu_model"], mtbi, spot_policy)
    job_mtbi = m["mtbi_hours"] / instances  # any reclaimed node stops a synchronous job
    ckpt = float(spot_policy.checkpoint_minutes) / 60.0
    restart = float(spot_policy.restart_minutes) / 60.0
    tau = np.sqrt(2.0 * ckpt * job_mtbi.to_numpy())
    wall = pd.Series(_daly_wall(work.to_numpy(), job_mtbi.to_numpy(), ckpt, restart, tau), index=idx)
    spot_cost = wall * spot_price * instances
    od_cost = work * od_price * instances
    max_spot = float(spot_policy.max_price_budget_ratio) * budget.clip(lower=0.0)
    job_spot_rate = spot_price * instances

    has_offer = spot_price.notna() & (spot_price > 0)
    under_cap = max_spot.isna() | (job_spot_rate <= max_spot)
    finishes = np.isfinite(wall)
    cheaper = spot_cost < od_cost
    use_spot = consider_spot & ~crit & has_offer & under_cap & finishes & cheaper

    c["on_demand_hours"] = work
    c["on_demand_cost_usd"] = od_cost
    c["max_spot_usd_per_hour"] = max_spot
    c["mtbi_hours"] = m["mtbi_hours"]
    c["mtbi_basis"] = m["mtbi_basis"]
    c["job_mtbi_hours"] = job_mtbi
    c["spot_checkpoint_interval_minutes"] = tau * 60.0
    c["expected_interruptions"] = (wall / job_mtbi).where(has_offer)
    c["spot_expected_hours"] = wall.where(has_offer)
    c["spot_expected_cost_usd"] = spot_cost.where(has_offer)
    c["pricing"] = np.where(use_spot, "spot", "on_demand").astype(object)
    c["checkpoint_interval_minutes"] = (c["spot_checkpoint_interval_minutes"]).where(use_spot)
    c["expected_hours"] = wall.where(use_spot, work)
    c["expected_cost_usd"] = spot_cost.where(use_spot, od_cost)
    # why, as a code the sentences are built from
    why = np.select(
        [use_spot.to_numpy(), crit.to_numpy(), ~has_offer.to_numpy(), np.full(len(c), not consider_spot),
         ~under_cap.to_numpy(), ~np.asarray(finishes)],
        ["spot", "critical", "no_offer", "not_considered", "over_cap", "never_finishes"], "dearer")
    c["_why"] = why
    c["_critical"] = crit
    c["_job_spot_usd_per_hour"] = job_spot_rate
    c["_budget_usd_per_hour"] = budget
    return c


def plan_reasons(planned: pd.DataFrame, spot_policy: SpotPolicy) -> pd.Series:
    """One human sentence per row of `plan_numbers`' output."""
    p = planned
    if p.empty:  # string arithmetic on empty float columns has no dtype to work in
        return pd.Series(dtype="object", index=p.index)
    ratio = f"{spot_policy.max_price_budget_ratio:g}"
    rate = _rate(p["_job_spot_usd_per_hour"])
    spot_part = "spot " + rate + " USD/h"
    cap = np.where(p["max_spot_usd_per_hour"].notna(),
                   " the max " + ratio + " × " + _rate(p["_budget_usd_per_hour"]) + " = "
                   + _rate(p["max_spot_usd_per_hour"]) + " USD/h", " (no budget cap)")
    under = spot_part + pd.Series(np.where(p["max_spot_usd_per_hour"].notna(), " is under" + cap, cap), index=p.index)
    interruptions = ("with 1 interruption per " + _hours(p["job_mtbi_hours"]) + " h ("
                     + p["mtbi_basis"].astype(str) + ") and a " + p["spot_checkpoint_interval_minutes"].map(
                         lambda v: f"{v:.0f}" if np.isfinite(v) else "?") + "-min Young/Daly checkpoint interval")
    costs = (_money(p["spot_expected_cost_usd"]) + " USD in " + _hours(p["spot_expected_hours"]) + " h vs "
             + _money(p["on_demand_cost_usd"]) + " USD in " + _hours(p["on_demand_hours"]) + " h on demand")
    sentences = {
        "spot": under + "; " + interruptions + " it costs " + costs,
        "not_considered": "on demand (spot not considered); spot would cost " + costs,
        "critical": pd.Series("critical job: on demand, never interrupted", index=p.index),
        "no_offer": pd.Series("no spot offer for this instance type: on demand", index=p.index),
        # the spec's fallback; when on demand does not fit the budget either, say so rather than imply it does
        "over_cap": spot_part + " is above" + pd.Series(cap, index=p.index) + ": on demand" + pd.Series(np.where(
            p["on_demand_usd_per_hour"] * p.get("instances", 1) > p["_budget_usd_per_hour"].fillna(np.inf),
            " (which does not fit the budget per hour either: the category cannot afford this job this period)",
            ""), index=p.index),
        "never_finishes": (under + "; but with 1 interruption per " + _hours(p["job_mtbi_hours"])
                           + " h a restart and the lost work outlast the time between interruptions: on demand"),
        "dearer": under + "; but " + interruptions + " it would cost " + costs + ": on demand",
    }
    out = pd.Series("", index=p.index, dtype="object")
    for code, text in sentences.items():
        mask = p["_why"] == code
        if mask.any():
            out[mask] = text[mask]
    return out


def plan_pricing(candidates: pd.DataFrame, *, spot_policy: SpotPolicy, mtbi: pd.DataFrame | None = None,
                 budget_usd_per_hour: float | None | pd.Series = None, critical: bool | pd.Series = False,
                 consider_spot: bool = True, sort: bool = True) -> pd.DataFrame:
    """Add the pricing plan to candidates (rows with cloud, region, gpu_model, instances, prices, hours).

    The work hours come from `on_demand_hours` when present, else `expected_hours`. Adds `pricing`
    ("spot" | "on_demand"), `max_spot_usd_per_hour` (NaN without a budget), `checkpoint_interval_minutes`
    (spot only), `mtbi_hours` (the instance's) and `mtbi_basis`, `expected_interruptions`,
    `spot_expected_hours` and `spot_expected_cost_usd` (lost work and restarts included; NaN without an
    offer), `on_demand_hours`, `on_demand_cost_usd`, `expected_hours` and `expected_cost_usd` of the
    recommended pricing, and `reason`. `budget_usd_per_hour` and `critical` are scalars or per-row
    Series. With `sort` the rows come cheapest recommended cost first, ties as in `rank_instances`.
    """
    planned = plan_numbers(candidates, spot_policy=spot_policy, mtbi=mtbi, budget_usd_per_hour=budget_usd_per_hour,
                           critical=critical, consider_spot=consider_spot)
    planned["reason"] = plan_reasons(planned, spot_policy)
    planned = planned.drop(columns=[c for c in planned.columns if c.startswith("_")] + ["job_mtbi_hours",
                                                                                       "spot_checkpoint_interval_minutes"])
    if sort:
        planned = sort_plans(planned)
    return planned


def sort_plans(planned: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Cheapest recommended cost first; ties by hours, the job's on-demand rate, instances, then names."""
    p = planned.assign(_rate=pd.to_numeric(planned["on_demand_usd_per_hour"], errors="coerce")
                       * (planned["instances"] if "instances" in planned else 1))
    keys = [*by, "expected_cost_usd", "expected_hours", "_rate",
            *[k for k in ("instances", "cloud", "region", "instance_type") if k in p]]
    return p.sort_values(keys, kind="mergesort", na_position="last").drop(columns="_rate").reset_index(drop=True)


def budget_usd_per_hour_by_category(budget_status: pd.DataFrame, now: pd.Timestamp) -> dict[str, float]:
    """Per budget category: remaining budget over the hours left in its period, the tightest of its periods.

    Only periods that contain `now` and have a limit count; a category whose budget is spent gets 0
    (no spot price is then low enough, so its jobs are planned on demand with that reason).
    """
    if budget_status is None or budget_status.empty:
        return {}
    now = pd.Timestamp(now)
    current = budget_status[(budget_status["period_start"] <= now) & (budget_status["period_end"] > now)
                            & budget_status["limit_usd"].notna() & budget_status["budget_category"].notna()]
    if current.empty:
        return {}
    hours_left = (current["period_end"] - now).dt.total_seconds() / 3600.0
    remaining = (current["limit_usd"] - current["spend_usd"]).clip(lower=0.0)
    per_hour = (remaining / hours_left).groupby(current["budget_category"].astype(str)).min()
    return {str(k): float(v) for k, v in per_hour.items()}
