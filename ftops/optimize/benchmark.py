"""Benchmark comparison (§2.3): what the fleet's own runs measured, per configuration, per dollar.

Three steps, each a plain function on DataFrames:

1. `job_throughput(run_health)`: per job, the measured samples/s, tokens/s, steps/s and GPU utilisation.
   Each is the sample-weighted mean of the job's hourly run_health windows (a window with more logged
   values weighs more). Warm-up: when a job has at least `WARMUP_MIN_WINDOWS` windows of a metric, its
   first window is left out (model load, compilation and data-loader start-up depress it). A job with a
   single logged value (a Hugging Face `train_samples_per_second` summary) keeps that value.
   steps/s is the progress of the job's highest logged step over time (first to last window), null
   when fewer than two distinct points exist; downtime inside a run (a preemption and resume) lowers it.

2. `benchmark_comparison(jobs, throughput, catalog, job_costs)`: one row per configuration
   (technique, model size class, GPU model and count, micro-batch, sequence length, precision, pricing).
   - Which jobs count: succeeded and running jobs; failed, preempted and cancelled ones only when they
     ran at least `min_run_hours` between start and end, so a job that died at start-up never lends
     its few warm-up values to a configuration; a succeeded job shorter than that only with at least
     MIN_SHORT_RUN_STEPS steps (an exit-0 smoke test of one step measures start-up, not training). Jobs without a measured samples/s are left out;
     `benchmark_exclusions` lists every job left out and why (for the caller's metadata).
   - Throughput of a configuration: the median of its jobs (robust to one degraded run).
     steps/s not measured is derived as samples/s ÷ (micro-batch × grad_accum × GPUs), the global batch
     of data parallelism.
   - Price (`price_basis`): "billed" when any of its jobs has at least one billed hour in `job_costs`
     (cost of the bills ÷ hours they cover, over those jobs: what the fleet really paid, storage and all);
     else the catalogue price of the job's own cloud, region and instance type at its pricing
     ("catalogue <cloud> <region> <instance_type>"); else the catalogue median of instances with the same
     GPU model and count on the job's cloud, or on all clouds ("catalogue median <cloud> <gpu> ×<n>
     <pricing>"); else null. A job of unknown pricing (a W&B export) is priced on demand, and says so.
   - Ranking (`rank_in_group`, 1 = best) within each group (technique, model size class) by work per USD,
     where work is, per group: tokens when every configuration of the group measured tokens/s; else
     samples × sequence length (the padded token capacity) when every one has a sequence length; else
     samples. Configurations with different sequence lengths are thus compared per token, never per
     sample. A configuration without a price is not ranked.

3. `benchmark_recommendations(comparison, jobs, catalog, datasheets, now=...)`:
   - kind "move": in each group with ≥ 2 ranked configurations, from each other configuration the fleet
     ran in the look-back window to the best one, when the cost per unit of work falls by at least
     `min_saving_ratio`. Volume: the running hours of the `from` jobs inside the window
     [max(now − lookback_days, the fleet's first start), now] × the configuration's measured work rate,
     scaled to a month (30.4375 days ÷ window length). Saving per month = monthly work × (cost per unit
     on `from` − cost per unit on `to`).
   - kind "calibrate": catalogue GPU models with a datasheet that the group never measured, whose
     per-GPU memory is at least that of the best configuration's GPU, and whose projected cost per unit
     of work beats the best measured one by `min_saving_ratio`; the instance has at least as much GPU memory
     in all, at most `MAX_GPU_COUNT_FACTOR` times the GPUs, preferably in the cloud the best configuration
     ran in, with the GPU count nearest the measured one, the cheapest of those. The projection scales the best
     configuration's measured rate by the datasheet dense BF16 TFLOP/s × GPU count ratio (same MFU
     assumed: a guess, which is why a short calibration run is proposed instead of a move).
     At most `max_calibrations_per_group` per group, cheapest projected first.

Model size classes (`model_size_class`): params ≤ 1.5 B "1B", ≤ 4 "3B", ≤ 9 "7B", ≤ 16 "13B", ≤ 40 "34B",
≤ 80 "70B", larger ">80B"; unknown "?B".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ftops.optimize.catalog import catalog_prices
from ftops.optimize.gpus import canonical_gpu_models

WARMUP_MIN_WINDOWS = 3
MIN_RUN_HOURS = 1.0  # a failed/preempted/cancelled job counts only after this much running time
# a succeeded job shorter than MIN_RUN_HOURS counts only with this many steps: real exports hold exit-0
# smoke tests of 1 step in 18 s whose samples/s is start-up, while a 200-step calibration run is a measurement
MIN_SHORT_RUN_STEPS = 50
MIN_BILLED_HOURS = 1.0  # fewer billed hours than this say little about the hourly rate
BILLED_LINE_MAX = pd.Timedelta(days=1)  # monthly fees and refunds say nothing about an hourly rate
DAYS_PER_MONTH = 30.4375
MAX_GPU_COUNT_FACTOR = 2  # a calibration candidate has at most this many times the measured GPUs
COUNTED_STATUSES = ("succeeded", "running")
ENDED_EARLY_STATUSES = ("failed", "preempted", "cancelled")

SIZE_CLASS_EDGES_B = (1.5, 4.0, 9.0, 16.0, 40.0, 80.0)
SIZE_CLASS_LABELS = ("1B", "3B", "7B", "13B", "34B", "70B", ">80B")
UNKNOWN_SIZE = "?B"

THROUGHPUT_COLUMNS = ("job_id", "samples_per_second", "tokens_per_second", "steps_per_second",
                      "gpu_utilization_pct", "windows")

COMPARISON_COLUMNS = (
    "configuration", "technique", "model_params_b", "gpu_model", "gpu_count", "micro_batch", "seq_len",
    "precision", "pricing", "jobs", "job_ids", "samples_per_second", "tokens_per_second", "steps_per_second",
    "samples_per_second_per_gpu", "tokens_per_second_per_gpu", "gpu_utilization_pct", "usd_per_hour",
    "price_basis", "usd_per_1k_samples", "usd_per_million_tokens", "samples_per_usd", "rank_in_group",
    "best_in_group",
)

RECOMMENDATION_COLUMNS = (
    "kind", "group", "technique", "model_size", "from_configuration", "to_configuration", "unit",
    "cost_change_pct", "time_change_pct", "monthly_volume", "saving_usd_per_month", "from_job_ids",
    "to_job_ids", "job_ids", "proposal_id", "model_params_b", "gpu_model", "gpu_count", "instance_type",
    "cloud", "region", "pricing", "micro_batch", "seq_len", "precision", "steps", "expected_hours",
    "expected_usd_per_hour", "expected_cost_usd", "basis", "message", "as_of",
)

_THROUGHPUT_METRICS = ("samples_per_second", "tokens_per_second", "gpu_utilization_pct")
_KEY = ["technique", "model_size", "gpu_model", "gpu_count", "micro_batch", "seq_len", "precision", "pricing"]
_TECHNIQUE_LABELS = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tune", "prefix": "prefix-tuning",
                     "dpo": "DPO", "other": "other"}
_UNIT_SCALE = {"million tokens": 1e6, "1k samples": 1e3}


# --------------------------------------------------------------------------------------------- helpers

def model_size_class(params_b: pd.Series) -> pd.Series:
    """The size class label of each model size in billions of parameters (module docstring)."""
    values = pd.to_numeric(params_b, errors="coerce").astype("float64")
    codes = np.searchsorted(np.asarray(SIZE_CLASS_EDGES_B), values.to_numpy(), side="left")
    labels = np.asarray(SIZE_CLASS_LABELS, dtype=object)[np.minimum(codes, len(SIZE_CLASS_LABELS) - 1)]
    return pd.Series(np.where(values.isna().to_numpy(), UNKNOWN_SIZE, labels), index=params_b.index, dtype=object)


def _canonical(names: pd.Series) -> pd.Series:
    """Canonical GPU model names (ftops.optimize.gpus vocabulary); an unknown name is kept as written."""
    canonical = canonical_gpu_models(names).astype(object)
    raw = names.astype(object).map(lambda n: str(n).strip() if isinstance(n, str) else None)
    return canonical.where(canonical.notna(), raw).where(names.notna(), None)


def _opt(value: Any) -> Any:
    """A plain Python value (JSON-safe): numpy scalars unwrapped, NaN/NA/NaT -> None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _fmt_int(value: Any) -> str:
    value = _opt(value)
    return "?" if value is None else str(int(value))


def configuration_label(technique: Any, model_size: str, gpu_count: Any, gpu_model: Any, pricing: Any,
                        micro_batch: Any, seq_len: Any, precision: Any = None) -> str:
    """Readable key, e.g. "lora 7B · 8× A100-80GB · spot · mb4 · seq2048" (· bf16 when known)."""
    parts = [f"{_opt(technique) or '?'} {model_size}", f"{_fmt_int(gpu_count)}× {_opt(gpu_model) or '?'}",
             str(_opt(pricing) or "?"), f"mb{_fmt_int(micro_batch)}", f"seq{_fmt_int(seq_len)}"]
    if _opt(precision) is not None:
        parts.append(str(precision))
    return " · ".join(parts)


def _hours(delta: pd.Series) -> pd.Series:
    return delta.dt.total_seconds().astype("float64") / 3600.0


def _catalog_frame(catalog: pd.DataFrame) -> pd.DataFrame:
    cat = catalog.copy()
    cat["gpu_model"] = _canonical(cat["gpu_model"])
    for column in ("on_demand_usd_per_hour", "spot_usd_per_hour", "gpu_count"):
        cat[column] = pd.to_numeric(cat[column], errors="coerce").astype("float64")
    return cat


def _datasheet_table(datasheets: Any) -> pd.DataFrame:
    """gpu_model -> dense_bf16_tflops, memory_gb from a DataFrame (index or column) or a mapping."""
    if isinstance(datasheets, pd.DataFrame):
        table = datasheets.set_index("gpu_model") if "gpu_model" in datasheets.columns else datasheets
    elif isinstance(datasheets, Mapping):
        records = {}
        for name, sheet in datasheets.items():
            get = sheet.get if isinstance(sheet, Mapping) else (lambda k, s=sheet: getattr(s, k, None))
            records[name] = {"dense_bf16_tflops": get("dense_bf16_tflops"), "memory_gb": get("memory_gb")}
        table = pd.DataFrame.from_dict(records, orient="index")
    else:
        raise TypeError(f"datasheets must be a DataFrame or a mapping, not {type(datasheets).__name__}")
    out = pd.DataFrame({c: pd.to_numeric(table[c], errors="coerce") if c in table.columns else np.nan
                        for c in ("dense_bf16_tflops", "memory_gb")}, index=table.index.astype(str))
    out.index.name = "gpu_model"
    return out[~out.index.duplicated()]


# --------------------------------------------------------------------------------------- throughput

def job_throughput(run_health: pd.DataFrame) -> pd.DataFrame:
    """Per job: samples/s, tokens/s, steps/s and GPU utilisation (sample-weighted window means).

    Columns: job_id, samples_per_second, tokens_per_second, steps_per_second, gpu_utilization_pct,
    windows (windows of samples/s used). A job that logged none of these metrics is absent.
    """
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in THROUGHPUT_COLUMNS})
    empty["job_id"] = empty["job_id"].astype(object)
    empty["windows"] = empty["windows"].astype("Int64")
    if run_health.empty:
        return empty
    rh = run_health[["job_id", "metric", "window_start", "samples", "non_finite", "mean"]].copy()
    rh["job_id"] = rh["job_id"].astype(str)
    rh["metric"] = rh["metric"].astype(str)
    rows = rh[rh["metric"].isin(_THROUGHPUT_METRICS) & rh["mean"].notna()].copy()
    rows["weight"] = (rows["samples"] - rows["non_finite"]).clip(lower=1).astype("float64")
    rows = rows.sort_values(["job_id", "metric", "window_start"], kind="stable")
    order = rows.groupby(["job_id", "metric"]).cumcount()
    count = rows.groupby(["job_id", "metric"])["window_start"].transform("size")
    rows = rows[~((order == 0) & (count >= WARMUP_MIN_WINDOWS)).to_numpy()]
    rows["weighted"] = rows["mean"].astype("float64") * rows["weight"]
    sums = rows.groupby(["job_id", "metric"])[["weighted", "weight"]].sum()
    means = (sums["weighted"] / sums["weight"]).unstack("metric")
    windows = rows[rows["metric"] == "samples_per_second"].groupby("job_id").size()
    out = pd.DataFrame(index=means.index.union(_steps_per_second(run_health).index))
    for metric in _THROUGHPUT_METRICS:
        out[metric] = means[metric] if metric in means.columns else np.nan
    out["steps_per_second"] = _steps_per_second(run_health)
    out["windows"] = windows.reindex(out.index).fillna(0).astype("Int64")
    out = out[out[list(_THROUGHPUT_METRICS)].notna().any(axis=1)]
    out.index.name = "job_id"
    return out.reset_index()[list(THROUGHPUT_COLUMNS)].astype({c: "float64" for c in THROUGHPUT_COLUMNS[1:5]})


def _steps_per_second(run_health: pd.DataFrame) -> pd.Series:
    """Per job: (last highest step − first highest step) ÷ seconds between when they were reached."""
    points = run_health[run_health["max_step"].notna() & run_health["max_step_ts"].notna()]
    if points.empty:
        return pd.Series(dtype="float64", name="steps_per_second")
    points = pd.DataFrame({"job_id": points["job_id"].astype(str), "step": points["max_step"].astype("float64"),
                           "ts": points["max_step_ts"]})
    # one point per job and step (the first time it was logged, whatever metric logged it)
    points = points.sort_values(["job_id", "step", "ts"]).drop_duplicates(["job_id", "step"])
    grouped = points.groupby("job_id")
    first, last = grouped.first(), grouped.last()
    seconds = (last["ts"] - first["ts"]).dt.total_seconds()
    rate = (last["step"] - first["step"]) / seconds.where(seconds > 0)
    return rate.where(rate > 0).rename("steps_per_second")


# --------------------------------------------------------------------------------------- comparison

def _selected_jobs(jobs: pd.DataFrame, throughput: pd.DataFrame,
                   min_run_hours: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(jobs that count, joined with their throughput; every other job with the reason it is left out)."""
    j = jobs.copy()
    j["job_id"] = j["job_id"].astype(str)
    status = j["status"].astype(object)
    ran_hours = _hours(j["ended_at"] - j["started_at"]) if {"ended_at", "started_at"} <= set(j) else np.nan
    measured = j["job_id"].isin(throughput.loc[throughput["samples_per_second"].notna(), "job_id"].astype(str))
    reason = pd.Series(None, index=j.index, dtype=object)
    long_enough = pd.Series(ran_hours, index=j.index) >= min_run_hours
    steps = pd.to_numeric(j["total_steps"], errors="coerce") if "total_steps" in j else pd.Series(np.nan, index=j.index)
    smoke_test = status.eq("succeeded") & ~long_enough & ~(steps >= MIN_SHORT_RUN_STEPS) & pd.Series(
        ran_hours, index=j.index).notna()
    early = status.isin(ENDED_EARLY_STATUSES) & ~long_enough
    reason[~status.isin(COUNTED_STATUSES + ENDED_EARLY_STATUSES)] = "not run yet (" + status.fillna("no status").astype(str) + ")"
    reason[early & reason.isna()] = ("ended at start-up: " + status.astype(str) + " after "
                                     + pd.Series(ran_hours, index=j.index).round(2).astype(str)
                                     + f" h (< {min_run_hours:g} h of running)")
    reason[smoke_test & reason.isna()] = (f"a smoke test: succeeded in under {min_run_hours:g} h with fewer than "
                                          f"{MIN_SHORT_RUN_STEPS} steps")
    reason[j["gpu_type"].isna() & reason.isna()] = "no gpu_type in the job registry"
    reason[~measured & reason.isna()] = "no samples_per_second measured"
    excluded = pd.DataFrame({"job_id": j["job_id"], "reason": reason})[reason.notna().to_numpy()]
    kept = j[reason.isna().to_numpy()].merge(throughput.assign(job_id=throughput["job_id"].astype(str)),
                                             on="job_id", how="left")
    return kept, excluded.reset_index(drop=True)


def benchmark_exclusions(jobs: pd.DataFrame, throughput: pd.DataFrame, *,
                         min_run_hours: float = MIN_RUN_HOURS) -> pd.DataFrame:
    """Every job `benchmark_comparison` leaves out, with the reason (job_id, reason)."""
    return _selected_jobs(jobs, throughput, min_run_hours)[1]


def _billed_rates(job_costs: pd.DataFrame | None) -> pd.DataFrame:
    """Per job: billed USD and the hours those bill lines cover (hourly/daily, non-held lines only)."""
    columns = {"billed_usd": pd.Series(dtype="float64"), "billed_hours": pd.Series(dtype="float64")}
    if job_costs is None or job_costs.empty:
        return pd.DataFrame(columns, index=pd.Index([], name="job_id", dtype=object))
    c = job_costs
    span = c["period_end"] - c["period_start"]
    keep = (~c["estimated"].astype(bool) & ~c["suspicious"].astype(bool) & c["job_id"].notna()
            & c["cost_usd"].notna() & span.notna() & (span > pd.Timedelta(0)) & (span <= BILLED_LINE_MAX))
    lines = c[keep.to_numpy()].assign(job_id=lambda f: f["job_id"].astype(str), hours=_hours(span[keep.to_numpy()]))
    cost = lines.groupby("job_id")["cost_usd"].sum()
    # several lines of one job for the same hour (instance, volume, transfer) cover that hour once
    hours = lines.drop_duplicates(["job_id", "period_start", "period_end"]).groupby("job_id")["hours"].sum()
    return pd.DataFrame({"billed_usd": cost.astype("float64"), "billed_hours": hours.astype("float64")})


def _catalogue_rates(kept: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """Per kept job: catalogue USD/hour at its pricing, and the basis it was found on."""
    cat = _catalog_frame(catalog)
    spot = kept["pricing"].astype(object).eq("spot").to_numpy()
    found = catalog_prices(cat, kept["cloud"], kept["region"], kept["instance_type"])
    exact_rate = np.where(spot, found["spot_usd_per_hour"], found["on_demand_usd_per_hour"]).astype("float64")
    at_region = found["basis"].eq("region").fillna(False).to_numpy(dtype=bool)
    exact_basis = np.where(
        at_region,
        "catalogue " + kept["cloud"].astype(str) + " " + kept["region"].astype(str) + " " + kept["instance_type"].astype(str),
        "catalogue median over regions " + kept["instance_type"].astype(str))
    # the median over the job's own cloud where the catalogue has its GPU shape there, else over all clouds
    prices = ["on_demand_usd_per_hour", "spot_usd_per_hour"]
    by_cloud = cat.groupby(["cloud", "gpu_model", "gpu_count"])[prices].median().reset_index()
    by_gpu = cat.groupby(["gpu_model", "gpu_count"])[prices].median().reset_index()
    keys = pd.DataFrame({"cloud": kept["cloud"].astype(object).to_numpy(),
                         "gpu_model": kept["gpu_model"].astype(object).to_numpy(),
                         "gpu_count": pd.to_numeric(kept["gpu_count"], errors="coerce").astype("float64").to_numpy()})
    in_cloud = keys.merge(by_cloud.astype({"cloud": object, "gpu_model": object}),
                          on=["cloud", "gpu_model", "gpu_count"], how="left")
    anywhere = keys.merge(by_gpu.astype({"gpu_model": object}), on=["gpu_model", "gpu_count"], how="left")
    use_cloud = in_cloud["on_demand_usd_per_hour"].notna().to_numpy()
    near = in_cloud[prices].where(np.repeat(use_cloud[:, None], len(prices), axis=1), anywhere[prices])
    median_rate = np.where(spot, near["spot_usd_per_hour"], near["on_demand_usd_per_hour"]).astype("float64")
    # a job whose pricing is unknown (a W&B export says nothing about it) is priced on demand, and says so
    pricing = kept["pricing"].astype(object).where(kept["pricing"].notna(), "on_demand (pricing unknown)")
    where = np.where(use_cloud, kept["cloud"].astype(object).fillna("").astype(str) + " ", "all clouds ")
    median_basis = ("catalogue median " + pd.Series(where, index=kept.index) + kept["gpu_model"].astype(object).astype(str)
                    + " ×" + kept["gpu_count"].astype(object).astype(str) + " " + pricing.astype(str)).to_numpy()
    has_exact = ~np.isnan(exact_rate)
    rate = np.where(has_exact, exact_rate, median_rate)
    basis = np.where(has_exact, exact_basis, np.where(np.isnan(median_rate), None, median_basis))
    return pd.DataFrame({"catalogue_usd_per_hour": rate, "catalogue_basis": basis}, index=kept.index)


def _join_ids(ids: pd.Series) -> str:
    return ",".join(sorted(ids.astype(str)))


def _one_basis(bases: pd.Series) -> Any:
    found = sorted(set(bases.dropna().astype(str)))
    if not found:
        return None
    return found[0] if len(found) == 1 else f"catalogue mixed ({len(found)} instance prices, median)"


def benchmark_comparison(jobs: pd.DataFrame, throughput: pd.DataFrame, catalog: pd.DataFrame,
                         job_costs: pd.DataFrame | None = None, *,
                         min_run_hours: float = MIN_RUN_HOURS) -> pd.DataFrame:
    """One row per configuration the fleet measured, priced and ranked (module docstring, step 2).

    Columns: COMPARISON_COLUMNS, sorted by technique, model size, rank, configuration.
    """
    kept, _ = _selected_jobs(jobs, throughput, min_run_hours)
    if kept.empty:
        return _empty_comparison()
    kept["model_size"] = model_size_class(kept["model_params_b"])
    kept["gpu_model"] = _canonical(kept["gpu_type"])
    kept["micro_batch"] = kept["batch_size"]
    kept["precision"] = kept["precision"].astype(object) if "precision" in kept.columns else None
    for column in ("cloud", "region", "instance_type", "pricing", "technique"):
        if column not in kept.columns:
            kept[column] = None
    global_batch = (pd.to_numeric(kept["batch_size"], errors="coerce").astype("float64")
                    * pd.to_numeric(kept["grad_accum"], errors="coerce").astype("float64").fillna(1.0)
                    * pd.to_numeric(kept["gpu_count"], errors="coerce").astype("float64"))
    kept["steps_per_second"] = kept["steps_per_second"].fillna(kept["samples_per_second"] / global_batch)

    billed = _billed_rates(job_costs).reindex(kept["job_id"])
    trusted = (billed["billed_hours"] >= MIN_BILLED_HOURS).to_numpy()
    kept["billed_usd"] = np.where(trusted, billed["billed_usd"], np.nan)
    kept["billed_hours"] = np.where(trusted, billed["billed_hours"], np.nan)
    kept = kept.join(_catalogue_rates(kept, catalog))

    for column in _KEY:
        kept[column] = kept[column].astype(object).where(kept[column].notna(), None)
    grouped = kept.groupby(_KEY, dropna=False, sort=True)
    out = grouped.agg(
        model_params_b=("model_params_b", "median"),
        jobs=("job_id", "size"),
        job_ids=("job_id", _join_ids),
        samples_per_second=("samples_per_second", "median"),
        tokens_per_second=("tokens_per_second", "median"),
        steps_per_second=("steps_per_second", "median"),
        gpu_utilization_pct=("gpu_utilization_pct", "median"),
        billed_usd=("billed_usd", "sum"),
        billed_hours=("billed_hours", "sum"),
        catalogue_usd_per_hour=("catalogue_usd_per_hour", "median"),
        catalogue_basis=("catalogue_basis", _one_basis),
    ).reset_index()
    has_bill = (out["billed_hours"] > 0).to_numpy()
    out["usd_per_hour"] = np.where(has_bill, out["billed_usd"] / out["billed_hours"].where(has_bill),
                                   out["catalogue_usd_per_hour"])
    out["price_basis"] = np.where(has_bill, "billed", out["catalogue_basis"].astype(object))
    out["price_basis"] = out["price_basis"].where(out["usd_per_hour"].notna(), None)

    count = pd.to_numeric(out["gpu_count"], errors="coerce").astype("float64")
    out["samples_per_second_per_gpu"] = out["samples_per_second"] / count
    out["tokens_per_second_per_gpu"] = out["tokens_per_second"] / count
    per_hour = out["usd_per_hour"].where(out["usd_per_hour"] > 0)
    out["usd_per_1k_samples"] = per_hour / (out["samples_per_second"] * 3600.0) * 1e3
    out["usd_per_million_tokens"] = per_hour / (out["tokens_per_second"] * 3600.0) * 1e6
    out["samples_per_usd"] = out["samples_per_second"] * 3600.0 / per_hour
    out["configuration"] = [configuration_label(*row) for row in out[
        ["technique", "model_size", "gpu_count", "gpu_model", "pricing", "micro_batch", "seq_len", "precision"]
    ].itertuples(index=False, name=None)]  # configurations, not samples: a handful of rows

    rate, _ = work_rate(out)
    out["_score"] = rate * 3600.0 / per_hour  # work per USD; null without a price
    out["_group"] = out["technique"].astype(str) + "|" + out["model_size"].astype(str)
    ranked = out[out["_score"].notna()].sort_values(["_group", "_score", "configuration"],
                                                    ascending=[True, False, True])
    out["rank_in_group"] = (ranked.groupby("_group").cumcount() + 1).reindex(out.index).astype("Int64")
    out["best_in_group"] = out["rank_in_group"].eq(1).fillna(False).astype(bool)
    out["_rank"] = out["rank_in_group"].astype("float64").fillna(np.inf)
    out = out.sort_values(["_group", "_rank", "configuration"])
    return _typed_comparison(out.reset_index(drop=True))


def _typed_comparison(out: pd.DataFrame) -> pd.DataFrame:
    out = out[list(COMPARISON_COLUMNS)].copy()
    for column in ("gpu_count", "micro_batch", "seq_len", "jobs", "rank_in_group"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("Int64")
    for column in ("model_params_b", "samples_per_second", "tokens_per_second", "steps_per_second",
                   "samples_per_second_per_gpu", "tokens_per_second_per_gpu", "gpu_utilization_pct",
                   "usd_per_hour", "usd_per_1k_samples", "usd_per_million_tokens", "samples_per_usd"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    for column in ("configuration", "technique", "gpu_model", "precision", "pricing", "job_ids", "price_basis"):
        out[column] = out[column].astype(object).where(out[column].notna(), None)
    out["best_in_group"] = out["best_in_group"].astype(bool)
    return out


def _empty_comparison() -> pd.DataFrame:
    return _typed_comparison(pd.DataFrame({c: pd.Series(dtype=object) for c in COMPARISON_COLUMNS})
                             .assign(best_in_group=pd.Series(dtype=bool)))


def work_rate(comparison: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per configuration: the rate of work it is ranked on (per second) and its unit.

    Per group (technique, model size class): "million tokens" of measured tokens when every
    configuration measured tokens/s; else "million tokens" of samples × seq_len (padded capacity)
    when every one has a sequence length; else "1k samples".
    """
    size = model_size_class(comparison["model_params_b"])
    group = comparison["technique"].astype(str) + "|" + size.astype(str)
    tokens = comparison["tokens_per_second"].astype("float64")
    samples = comparison["samples_per_second"].astype("float64")
    seq = pd.to_numeric(comparison["seq_len"], errors="coerce").astype("float64")
    all_tokens = tokens.notna().groupby(group).transform("all")
    all_seq = seq.notna().groupby(group).transform("all")
    rate = np.where(all_tokens, tokens, np.where(all_seq, samples * seq, samples))
    unit = np.where(all_tokens, "million tokens", np.where(all_seq, "million tokens (samples × seq_len)", "1k samples"))
    return pd.Series(rate, index=comparison.index, dtype="float64"), pd.Series(unit, index=comparison.index, dtype=object)


def _per_unit(unit: pd.Series) -> pd.Series:
    return unit.map(lambda u: 1e3 if u == "1k samples" else 1e6).astype("float64")


# ---------------------------------------------------------------------------------- recommendations

def _signed_pct(value: float) -> str:
    return f"{'−' if value < 0 else '+'}{abs(value):.0f} %"


def _unit_text(unit: str) -> str:
    return "1,000 samples" if unit == "1k samples" else unit


def _describe(row: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    pricing = _opt(row["pricing"])
    text = f"{_fmt_int(row['gpu_count'])}× {row['gpu_model']}" + (f" {pricing.replace('_', '-')}" if pricing else "")
    extra = [f"{label}{_fmt_int(row[c])}" for c, label in (("micro_batch", "mb"), ("seq_len", "seq"))
             if _opt(row[c]) != _opt(other[c])]
    return " ".join([text, *extra])


def _running_hours_in(jobs: pd.DataFrame, start: pd.Timestamp, now: pd.Timestamp) -> pd.Series:
    """Per job: hours of running inside [start, now] (a running job runs until now)."""
    began = jobs["started_at"].clip(lower=start)
    ended = jobs["ended_at"].fillna(now).clip(upper=now)
    return _hours(ended - began).clip(lower=0).fillna(0.0)


def _empty_recommendations() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in RECOMMENDATION_COLUMNS})


def benchmark_recommendations(comparison: pd.DataFrame, jobs: pd.DataFrame, catalog: pd.DataFrame,
                              datasheets: Any, *, min_saving_ratio: float = 0.05, calibration_steps: int = 200,
                              now: pd.Timestamp, lookback_days: float = 30.0, max_calibrations_per_group: int = 3,
                              startup_hours: float = 0.25) -> pd.DataFrame:
    """"move" and "calibrate" rows (module docstring, step 3); columns RECOMMENDATION_COLUMNS.

    `startup_hours` is added to a calibration's expected time (provisioning, model download, warm-up).
    """
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    if comparison.empty:
        return _empty_recommendations()
    comp = comparison.reset_index(drop=True).copy()
    comp["model_size"] = model_size_class(comp["model_params_b"])
    comp["rate"], comp["unit"] = work_rate(comp)
    comp["usd_per_unit"] = comp["usd_per_hour"] / (comp["rate"] * 3600.0) * _per_unit(comp["unit"])
    comp["group"] = comp["technique"].astype(str) + " " + comp["model_size"].astype(str)
    rows = _move_rows(comp, jobs, now, lookback_days, min_saving_ratio)
    rows += _calibrate_rows(comp, jobs, catalog, datasheets, min_saving_ratio, calibration_steps,
                            max_calibrations_per_group, startup_hours)
    if not rows:
        return _empty_recommendations()
    out = pd.DataFrame.from_records(rows, columns=list(RECOMMENDATION_COLUMNS))
    out["as_of"] = now
    for column in ("cost_change_pct", "time_change_pct", "monthly_volume", "saving_usd_per_month", "model_params_b",
                   "expected_hours", "expected_usd_per_hour", "expected_cost_usd"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    for column in ("gpu_count", "micro_batch", "seq_len", "steps"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("Int64")
    return out


def _move_rows(comp: pd.DataFrame, jobs: pd.DataFrame, now: pd.Timestamp, lookback_days: float,
               min_saving_ratio: float) -> list[dict[str, Any]]:
    j = jobs.assign(job_id=jobs["job_id"].astype(str))
    started = j["started_at"].dropna()
    start = now - pd.Timedelta(days=lookback_days)
    if not started.empty:
        start = max(start, started.min())
    window_days = (now - start).total_seconds() / 86400.0
    if window_days <= 0:
        return []
    monthly = DAYS_PER_MONTH / window_days
    hours = pd.Series(_running_hours_in(j, start, now).to_numpy(), index=j["job_id"])
    hours = hours[~hours.index.duplicated()]

    rows = []
    ranked = comp[comp["rank_in_group"].notna()]
    for _, members in ranked.groupby("group", sort=True):  # groups, not samples: a handful
        if len(members) < 2:
            continue
        best = members.loc[members["rank_in_group"].astype(int).idxmin()]
        for _, row in members.sort_values("rank_in_group").iterrows():
            if row["rank_in_group"] == 1:
                continue
            ids = row["job_ids"].split(",")
            run_hours = float(hours.reindex(ids).fillna(0.0).sum())
            if run_hours <= 0:
                continue  # not in use in the window: nothing to move
            cost_ratio = best["usd_per_unit"] / row["usd_per_unit"]
            if not (1.0 - cost_ratio >= min_saving_ratio):
                continue
            scale = 1e3 if row["unit"] == "1k samples" else 1e6
            volume = run_hours * 3600.0 * row["rate"] * monthly / scale  # units per month
            saving = volume * (row["usd_per_unit"] - best["usd_per_unit"])
            cost_change = (cost_ratio - 1.0) * 100.0
            time_change = (row["rate"] / best["rate"] - 1.0) * 100.0
            technique = _TECHNIQUE_LABELS.get(row["technique"], str(row["technique"]))
            unit_text = _unit_text(row["unit"])
            message = (f"move {technique} {row['model_size']} jobs from {_describe(row, best)} to "
                       f"{_describe(best, row)}: {_signed_pct(cost_change)} cost per {unit_text}, "
                       f"{_signed_pct(time_change)} time; saves ~{saving:,.0f} USD/month at the fleet's current "
                       f"volume (from jobs {row['job_ids']}; measured on jobs {best['job_ids']})")
            rows.append({
                "kind": "move", "group": row["group"], "technique": row["technique"], "model_size": row["model_size"],
                "from_configuration": row["configuration"], "to_configuration": best["configuration"],
                "unit": row["unit"], "cost_change_pct": cost_change, "time_change_pct": time_change,
                "monthly_volume": volume, "saving_usd_per_month": saving, "from_job_ids": row["job_ids"],
                "to_job_ids": best["job_ids"], "job_ids": _join_ids(pd.Series(ids + best["job_ids"].split(","))),
                "proposal_id": None, "model_params_b": _opt(best["model_params_b"]),
                "gpu_model": best["gpu_model"], "gpu_count": _opt(best["gpu_count"]), "instance_type": None,
                "cloud": None, "region": None, "pricing": best["pricing"], "micro_batch": _opt(best["micro_batch"]),
                "seq_len": _opt(best["seq_len"]), "precision": _opt(best["precision"]), "steps": None,
                "expected_hours": None, "expected_usd_per_hour": _opt(best["usd_per_hour"]),
                "expected_cost_usd": None,
                "basis": f"from: {row['price_basis']}; to: {best['price_basis']}", "message": message,
            })
    return rows


def proposal_id(config: Mapping[str, Any]) -> str:
    """Stable id of a calibration configuration: the same configuration, the same id."""
    text = json.dumps({k: _opt(v) for k, v in sorted(config.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _calibrate_rows(comp: pd.DataFrame, jobs: pd.DataFrame, catalog: pd.DataFrame, datasheets: Any,
                    min_saving_ratio: float, steps: int, per_group: int,
                    startup_hours: float) -> list[dict[str, Any]]:
    sheets = _datasheet_table(datasheets)
    sheets = sheets[sheets["dense_bf16_tflops"] > 0]
    cat = _catalog_frame(catalog)
    cat = cat[cat["gpu_model"].isin(sheets.index) & (cat["gpu_count"] > 0)]
    if cat.empty:
        return []
    cat = cat.join(sheets.rename(columns={"memory_gb": "gpu_memory_sheet_gb"}), on="gpu_model")
    clouds = jobs.assign(job_id=jobs["job_id"].astype(str)).set_index("job_id")["cloud"] if "cloud" in jobs else None

    rows = []
    for group, members in comp.groupby("group", sort=True):  # groups: a handful
        ranked = members[members["rank_in_group"].notna()]
        if ranked.empty:
            continue
        best = ranked.loc[ranked["rank_in_group"].astype(int).idxmin()]
        if best["gpu_model"] not in sheets.index or not best["steps_per_second"] > 0 or not best["rate"] > 0:
            continue
        mem_b = sheets.at[best["gpu_model"], "memory_gb"]  # per GPU
        tflops_b = sheets.at[best["gpu_model"], "dense_bf16_tflops"]
        count_b = float(best["gpu_count"])
        measured = set(members["gpu_model"].astype(str))
        cand = cat[~cat["gpu_model"].isin(measured) & (cat["gpu_memory_sheet_gb"] >= mem_b)].copy()
        # as much GPU memory in all as the measured run had, and at most MAX_GPU_COUNT_FACTOR times its
        # GPUs: the projection scales linearly with GPU count, which is not credible much beyond that
        cand = cand[(cand["gpu_count"] * cand["gpu_memory_sheet_gb"] >= count_b * mem_b)
                    & (cand["gpu_count"] <= MAX_GPU_COUNT_FACTOR * count_b)]
        spot = best["pricing"] == "spot"
        cand["pricing"] = np.where(spot & cand["spot_usd_per_hour"].notna(), "spot", "on_demand")
        cand["usd_per_hour"] = np.where(cand["pricing"] == "spot", cand["spot_usd_per_hour"],
                                        cand["on_demand_usd_per_hour"])
        cand = cand[cand["usd_per_hour"] > 0]
        if cand.empty:
            continue
        home = set(clouds.reindex(best["job_ids"].split(",")).dropna().astype(str)) if clouds is not None else set()
        cand["other_cloud"] = ~cand["cloud"].astype(str).isin(home) if home else False
        cand["count_gap"] = (cand["gpu_count"] - count_b).abs()
        # per GPU model: the fleet's own cloud first, the GPU count nearest the measured one, then cheapest
        cand = cand.sort_values(["gpu_model", "other_cloud", "count_gap", "usd_per_hour", "cloud", "region",
                                 "instance_type"], key=lambda s: s.astype(str) if s.dtype == object else s)
        cand = cand.drop_duplicates("gpu_model")
        speedup = (cand["gpu_count"] * cand["dense_bf16_tflops"]) / (count_b * tflops_b)
        cand["usd_per_unit"] = (cand["usd_per_hour"] / (best["rate"] * speedup * 3600.0)
                                * (1e3 if best["unit"] == "1k samples" else 1e6))
        cand["steps_per_second"] = best["steps_per_second"] * speedup
        cand["speedup"] = speedup
        cand = cand[cand["usd_per_unit"] <= (1.0 - min_saving_ratio) * best["usd_per_unit"]]
        cand = cand.sort_values(["usd_per_unit", "gpu_model"]).head(per_group)
        for _, c in cand.iterrows():
            config = {"technique": best["technique"], "model_size": best["model_size"], "gpu_model": c["gpu_model"],
                      "gpu_count": int(c["gpu_count"]), "instance_type": _opt(c["instance_type"]),
                      "cloud": _opt(c["cloud"]), "region": _opt(c["region"]), "pricing": c["pricing"],
                      "micro_batch": _opt(best["micro_batch"]), "seq_len": _opt(best["seq_len"]),
                      "precision": _opt(best["precision"]), "steps": int(steps)}
            hours = steps / float(c["steps_per_second"]) / 3600.0 + startup_hours
            cost = hours * float(c["usd_per_hour"])
            change = (c["usd_per_unit"] / best["usd_per_unit"] - 1.0) * 100.0
            basis = (f"projected from {best['configuration']} (measured {best['steps_per_second']:.3g} steps/s on jobs "
                     f"{best['job_ids']}) × datasheet dense BF16 {c['dense_bf16_tflops']:g}/{tflops_b:g} TFLOP/s "
                     f"× GPUs {int(c['gpu_count'])}/{int(count_b)}; + {startup_hours:g} h start-up; "
                     f"price catalogue {c['cloud']} {c['region']} {c['instance_type']} {c['pricing']}")
            label = configuration_label(best["technique"], best["model_size"], c["gpu_count"], c["gpu_model"],
                                        c["pricing"], best["micro_batch"], best["seq_len"], best["precision"])
            technique = _TECHNIQUE_LABELS.get(best["technique"], str(best["technique"]))
            pid = proposal_id(config)
            rows.append({
                "kind": "calibrate", "group": group, "technique": best["technique"],
                "model_size": best["model_size"], "from_configuration": best["configuration"],
                "to_configuration": label, "unit": best["unit"], "cost_change_pct": change,
                "time_change_pct": (1.0 / float(c["speedup"]) - 1.0) * 100.0, "monthly_volume": None,
                "saving_usd_per_month": None, "from_job_ids": best["job_ids"], "to_job_ids": None,
                "job_ids": best["job_ids"], "proposal_id": pid, "model_params_b": _opt(best["model_params_b"]),
                **{k: config[k] for k in ("gpu_model", "gpu_count", "instance_type", "cloud", "region", "pricing",
                                          "micro_batch", "seq_len", "precision", "steps")},
                "expected_hours": hours, "expected_usd_per_hour": float(c["usd_per_hour"]),
                "expected_cost_usd": cost, "basis": basis,
                "message": (f"calibrate {technique} {best['model_size']} on {label}: never measured; projected "
                            f"{_signed_pct(change)} cost per {_unit_text(best['unit'])} "
                            f"vs {best['configuration']} (jobs {best['job_ids']}); a {steps}-step run takes "
                            f"~{hours:.2f} h and ~{cost:,.2f} USD (proposal {pid})"),
            })
    return rows
