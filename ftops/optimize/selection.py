"""Instance selection (spec §2.1): which instance types can run a job, and what the whole job costs on each.

The catalogue is filtered by GPU count, GPU memory per GPU, host memory, vCPUs and (optionally) cloud and
region; the survivors are ranked by the projected cost of the *whole job*, not by the price per hour: a
GPU twice as fast at 1.5x the price wins.

Candidate shapes. Cloud GPUs come per instance, so a candidate is `instances` identical instances of one
type with `instances x gpu_count == gpus`:

- one instance whose `gpu_count` equals the requested GPUs (the normal case), or
- several instances of the *largest* shape of that GPU model on that cloud (two 8 x H100 nodes for a
  16-GPU job). Smaller nodes are never ganged up for a job that a bigger node of the same GPU could
  hold: that trades NVLink for the network and is not what anyone asking for 8 GPUs means.

A bigger instance than asked for (8 GPUs for a 4-GPU job) is not a candidate either: ask for 8 then.
Host memory and vCPUs are requirements of the whole job, summed over its instances. An instance whose
catalogue row lacks host memory or vCPUs cannot be shown to meet a host-memory or vCPU requirement and is
left out when one is given.

Hours on a candidate (`basis`):

- "measured": the fleet has measured throughput for the candidate's GPU model (same technique, model size
  within a factor 1.5, rescaled to the job's size since tokens/s scale as 1/N to first order). For `tokens`
  work hours = tokens / (tokens/s per GPU x GPUs x 3600); for `reference_hours` work the hours are scaled by the
  measured throughput ratio between the reference GPU and the candidate, which needs a measurement of the
  reference GPU too. Measurements on the same GPU count are preferred (scaling efficiency differs).
- "datasheet": otherwise, from the dense BF16 TFLOP/s of the datasheet: the ratio against the reference GPU
  for `reference_hours`, or FLOPs / (GPUs x TFLOP/s x MFU) for `tokens`.

Candidates whose GPU model has neither a datasheet nor a measurement are dropped; their instance types are
listed in `DataFrame.attrs["dropped_no_throughput"]` of the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


# Training FLOPs per parameter per token. Full fine-tuning: forward 2N, backward 4N (activation
# gradients 2N + weight gradients 2N) = 6N (Kaplan et al. 2020). LoRA/QLoRA/prefix tuning freeze the
# base model: the backward pass still propagates activation gradients through every layer (2N) but
# computes no weight gradients for the frozen weights, and the adapters' own FLOPs are negligible at low
# rank, so ~4N. DPO trains the policy (6N) and also runs the frozen reference model forward (2N): 8N
# (a LoRA-DPO run is cheaper; 8N is the safe side). "other" is costed like a full fine-tune.
FLOPS_PER_PARAM_TOKEN: dict[str, float] = {
    "full": 6.0, "lora": 4.0, "qlora": 4.0, "prefix": 4.0, "dpo": 8.0, "other": 6.0,
}
# QLoRA keeps the base in 4-bit NF4 and dequantises it to BF16 for every matmul, forward and backward;
# reported QLoRA runs take ~30 % longer than 16-bit LoRA on the same GPU (Dettmers et al. 2023 and the
# peft/bitsandbytes benchmarks), so datasheet hours are multiplied by this. Measured hours include it.
TIME_FACTOR: dict[str, float] = {"qlora": 1.3}
# a measurement counts for a job whose model is within this factor of the measured model's size
MEASURED_SIZE_FACTOR = 1.5

OUTPUT_COLUMNS = (
    "cloud", "region", "instance_type", "gpu_model", "gpu_count", "instances", "gpu_memory_gb", "vcpus",
    "memory_gb", "on_demand_usd_per_hour", "spot_usd_per_hour", "expected_hours", "on_demand_cost_usd",
    "spot_cost_usd", "basis", "measured_job_ids",
)
# deterministic order after the cost: faster, cheaper per hour, fewer nodes, then by name
TIE_BREAKERS = ("expected_hours", "_job_on_demand_usd_per_hour", "instances", "cloud", "region", "instance_type")


class RequirementsError(ValueError):
    """A requirement or a work description is malformed (a negative count, hours and tokens together)."""


class NoCandidateError(ValueError):
    """No catalogue instance meets the requirements; the message names the requirement that nothing meets."""


@dataclass(frozen=True)
class Requirements:
    """What a job needs. GPU memory is per GPU; host memory and vCPUs are for the whole job."""

    gpus: int
    gpu_memory_gb: float = 0.0
    host_memory_gb: float | None = None
    vcpus: float | None = None
    cloud: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, (int, np.integer)) or self.gpus < 1:
            raise RequirementsError(f"gpus must be a whole number of at least 1, not {self.gpus!r}")
        for name in ("gpu_memory_gb", "host_memory_gb", "vcpus"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, (int, float, np.number)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise RequirementsError(f"{name} must be a finite number of at least 0, not {value!r}")
        for name in ("cloud", "region"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise RequirementsError(f"{name} must be a non-empty name, not {value!r}")


@dataclass(frozen=True)
class Work:
    """How much work the job is: exactly one of `reference_hours` or `tokens`.

    `reference_hours`: wall hours the job takes on `Requirements.gpus` GPUs of the reference GPU model
    (`model_params_b` and `technique` optional; both are needed to use measured throughput).
    `tokens`: tokens processed over the whole run (samples x epochs x sequence length), with the model
    size in billions of parameters and the technique.
    """

    reference_hours: float | None = None
    tokens: float | None = None
    model_params_b: float | None = None
    technique: str | None = None

    def __post_init__(self) -> None:
        if (self.reference_hours is None) == (self.tokens is None):
            raise RequirementsError("give exactly one of reference hours or tokens as the work")
        for name in ("reference_hours", "tokens", "model_params_b"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                      or not math.isfinite(value) or value <= 0):
                raise RequirementsError(f"{name} must be a finite number above 0, not {value!r}")
        if self.technique is not None and self.technique not in FLOPS_PER_PARAM_TOKEN:
            raise RequirementsError(f"technique must be one of {', '.join(FLOPS_PER_PARAM_TOKEN)}, "
                                    f"not {self.technique!r}")
        if self.tokens is not None and (self.model_params_b is None or self.technique is None):
            raise RequirementsError("tokens as the work need the model size (model_params_b) and the technique")


def datasheet_hours_for_tokens(tokens: pd.Series | float, model_params_b: pd.Series | float,
                               technique: pd.Series | str, gpus: pd.Series | float,
                               dense_tflops: pd.Series | float, mfu: float) -> pd.Series | float:
    """Hours = k x N x T / (GPUs x TFLOP/s x 1e12 x MFU x 3600), times the technique's slowdown (QLoRA)."""
    tech = pd.Series(technique) if not isinstance(technique, (pd.Series, str)) else technique
    if isinstance(tech, str):
        k = FLOPS_PER_PARAM_TOKEN[tech]
        slow = TIME_FACTOR.get(tech, 1.0)
    else:
        k = tech.map(FLOPS_PER_PARAM_TOKEN).astype("float64")
        slow = tech.map(lambda t: TIME_FACTOR.get(t, 1.0)).astype("float64")
    flops = k * model_params_b * 1e9 * tokens
    return flops / (gpus * dense_tflops * 1e12 * mfu * 3600.0) * slow


def _f(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _measured_throughput(keys: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """Per key (gpu_model, technique, model_params_b, gpus): measured tokens/s and samples/s per GPU.

    Rows of the same technique with a model within MEASURED_SIZE_FACTOR of the key's size, rescaled to
    the key's size (throughput ~ 1/N); rows on the key's GPU count are used when there are any; a
    jobs-weighted mean. Returns the keys with `tps`, `sps` (NaN where unmeasured) and `job_ids`.
    """
    out = keys.copy()
    out["tps"] = np.nan
    out["sps"] = np.nan
    out["job_ids"] = ""
    if measured is None or measured.empty or keys.empty:
        return out
    m = pd.DataFrame({
        "gpu_model": measured["gpu_model"].astype("object"),
        "technique": measured["technique"].astype("object"),
        "m_params_b": _f(measured["model_params_b"]),
        "m_gpu_count": _f(measured["gpu_count"]),
        "m_tps": _f(measured.get("tokens_per_second_per_gpu", pd.Series(np.nan, index=measured.index))),
        "m_sps": _f(measured.get("samples_per_second_per_gpu", pd.Series(np.nan, index=measured.index))),
        "m_jobs": _f(measured.get("jobs", pd.Series(1.0, index=measured.index))).fillna(1.0).clip(lower=1.0),
        "m_job_ids": measured.get("job_ids", pd.Series("", index=measured.index)).astype("object").fillna(""),
    })
    m.loc[~(m["m_tps"] > 0), "m_tps"] = np.nan
    m.loc[~(m["m_sps"] > 0), "m_sps"] = np.nan
    m = m[(m["m_tps"].notna() | m["m_sps"].notna()) & (m["m_params_b"] > 0)]
    k = keys.reset_index(drop=True).copy()
    k["_key"] = np.arange(len(k))
    j = k.merge(m, on=["gpu_model", "technique"], how="inner")
    ratio = j["model_params_b"] / j["m_params_b"]
    j = j[(ratio <= MEASURED_SIZE_FACTOR) & (ratio >= 1.0 / MEASURED_SIZE_FACTOR)].copy()
    if j.empty:
        return out
    same = j["m_gpu_count"] == j["gpus"]
    j = j[same | ~same.groupby(j["_key"]).transform("any")].copy()
    scale = j["m_params_b"] / j["model_params_b"]  # a 1.2x bigger model runs ~1.2x fewer tokens/s
    for col, src in (("tps", "m_tps"), ("sps", "m_sps")):
        has = j[src].notna()
        j[f"_{col}_w"] = np.where(has, j["m_jobs"], 0.0)
        j[f"_{col}_wx"] = np.where(has, j[src] * scale * j["m_jobs"], 0.0)
    g = j.groupby("_key")
    agg = pd.DataFrame({
        "tps": g["_tps_wx"].sum() / g["_tps_w"].sum().replace(0.0, np.nan),
        "sps": g["_sps_wx"].sum() / g["_sps_w"].sum().replace(0.0, np.nan),
        "job_ids": g["m_job_ids"].agg(_join_ids),
    })
    res = k.drop(columns=["tps", "sps", "job_ids"], errors="ignore").join(agg, on="_key")
    res["job_ids"] = res["job_ids"].fillna("")
    res.index = keys.index
    return res.drop(columns="_key")


def _join_ids(values: pd.Series) -> str:
    ids = {part.strip() for v in values for part in str(v).split(",") if part.strip()}
    return ",".join(sorted(ids))


def estimate_hours(frame: pd.DataFrame, *, datasheets: pd.DataFrame, measured: pd.DataFrame | None = None,
                   reference_gpu: str = "A100-80GB", datasheet_mfu: float = 0.35) -> pd.DataFrame:
    """Expected wall hours of each row's work on its GPUs, and the basis used. Vectorised over rows.

    `frame` has `gpu_model`, `gpus` (GPUs the job runs on) and the work of each row: `reference_hours`
    or `tokens`, with `model_params_b` and `technique` (NaN/None where not given). Returns a frame on the
    same index with `expected_hours` (NaN where neither a datasheet nor a measurement exists), `basis`
    ("measured" | "datasheet" | None) and `measured_job_ids` (comma-separated; "" for datasheet rows).
    """
    if datasheet_mfu <= 0 or not math.isfinite(datasheet_mfu):
        raise RequirementsError(f"datasheet_mfu must be above 0, not {datasheet_mfu!r}")
    # positional inside; the caller's index is put back at the end
    rows = pd.DataFrame({
        "gpu_model": frame["gpu_model"].astype("object").to_numpy(),
        "gpus": _f(frame["gpus"]).to_numpy(),
        "reference_hours": _f(frame["reference_hours"]).to_numpy(),
        "tokens": _f(frame["tokens"]).to_numpy(),
        "model_params_b": _f(frame["model_params_b"]).to_numpy(),
        "technique": frame["technique"].astype("object").where(frame["technique"].notna(), None).to_numpy(),
    })
    by_tokens = rows["tokens"].notna()
    by_reference = rows["reference_hours"].notna() & ~by_tokens
    tflops = _f(datasheets["dense_bf16_tflops"])
    tflops = tflops[tflops > 0]
    cand_tflops = rows["gpu_model"].map(tflops).astype("float64")
    ref_tflops = float(tflops.get(reference_gpu, np.nan))
    ref_measured = measured is not None and not measured.empty and (measured["gpu_model"] == reference_gpu).any()
    if by_reference.any() and not math.isfinite(ref_tflops) and not ref_measured:
        raise RequirementsError(f"the reference GPU {reference_gpu} has neither a datasheet nor a measured throughput")

    # datasheet
    tok_hours = datasheet_hours_for_tokens(
        rows["tokens"], rows["model_params_b"], rows["technique"].where(by_tokens, "full").fillna("full"),
        rows["gpus"], cand_tflops, datasheet_mfu)
    hours = pd.Series(np.nan, index=rows.index)
    hours = hours.mask(by_tokens, tok_hours)
    hours = hours.mask(by_reference, rows["reference_hours"] * ref_tflops / cand_tflops)
    hours = hours.where(np.isfinite(hours) & (hours > 0))
    basis = pd.Series(np.where(hours.notna(), "datasheet", None), index=rows.index, dtype="object")
    job_ids = pd.Series("", index=rows.index, dtype="object")

    # measured: needs the technique and the model size, to compare like with like
    can_measure = rows["technique"].notna() & (rows["model_params_b"] > 0)
    if measured is not None and not measured.empty and can_measure.any():
        on = ["gpu_model", "technique", "model_params_b", "gpus"]
        keys = rows.loc[can_measure, on].drop_duplicates()
        ref_keys = keys.assign(gpu_model=reference_gpu)
        thr = _measured_throughput(pd.concat([keys, ref_keys]).drop_duplicates().reset_index(drop=True), measured)
        ref_thr = (thr[thr["gpu_model"] == reference_gpu].drop(columns="gpu_model")
                   .rename(columns={"tps": "ref_tps", "sps": "ref_sps", "job_ids": "ref_job_ids"}))
        kk = keys.merge(thr, on=on, how="left").merge(ref_thr, on=on[1:], how="left")
        # reference work: the ratio of one metric measured on both GPUs (tokens/s, else samples/s)
        use_tps = kk["tps"].notna() & kk["ref_tps"].notna()
        kk["ratio"] = np.where(use_tps, kk["ref_tps"] / kk["tps"], kk["ref_sps"] / kk["sps"])
        # one entry per distinct configuration, not per row: a short Python loop
        kk["ratio_ids"] = [_join_ids([a, b]) for a, b in zip(kk["job_ids"].fillna(""), kk["ref_job_ids"].fillna(""))]
        r = rows.loc[can_measure, [*on, "tokens", "reference_hours"]].reset_index().merge(kk, on=on, how="left")
        r = r.set_index("index")
        tok = by_tokens.loc[r.index]
        m_hours = pd.Series(np.where(tok, r["tokens"] / (r["tps"] * r["gpus"] * 3600.0),
                                     r["reference_hours"] * r["ratio"]),
                            index=r.index)
        ids = pd.Series(np.where(tok, r["job_ids"], r["ratio_ids"]), index=r.index)
        good = m_hours.index[np.isfinite(m_hours) & (m_hours > 0)]
        hours.loc[good] = m_hours.loc[good]
        basis.loc[good] = "measured"
        job_ids.loc[good] = ids.loc[good]
    return pd.DataFrame({"expected_hours": hours.to_numpy(), "basis": basis.to_numpy(),
                         "measured_job_ids": job_ids.to_numpy()}, index=frame.index)


def _shapes(catalog: pd.DataFrame, gpus: int) -> pd.DataFrame:
    """Candidate shapes: one instance with `gpus` GPUs, or whole multiples of the model's largest node."""
    c = catalog.copy()
    count = _f(c["gpu_count"])
    largest = count.groupby([c["cloud"], c["gpu_model"]]).transform("max")
    exact = count == gpus
    multiple = (count == largest) & (count > 0) & (count < gpus) & (np.mod(gpus, count.where(count > 0, 1)) == 0)
    c = c[exact | multiple].copy()
    c["instances"] = (gpus // _f(c["gpu_count"])).astype("int64")
    return c


def _gb(value: float) -> str:
    return f"{value:g}"


def filter_candidates(catalog: pd.DataFrame, requirements: Requirements) -> pd.DataFrame:
    """Catalogue rows (with `instances`) that meet the requirements; NoCandidateError naming the one nothing meets."""
    r = requirements
    catalog = catalog.reset_index(drop=True)
    c = catalog
    if r.cloud is not None:
        c = c[c["cloud"].astype("object").str.lower() == r.cloud.lower()]
        if c.empty:
            clouds = ", ".join(sorted(catalog["cloud"].dropna().astype(str).unique()))
            raise NoCandidateError(f"no instance in cloud {r.cloud!r}; the catalogue has: {clouds or 'nothing'}")
    if r.region is not None:
        before = c
        c = c[c["region"].astype("object").str.lower() == r.region.lower()]
        if c.empty:
            where = f" of {r.cloud}" if r.cloud else ""
            regions = sorted(before["region"].dropna().astype(str).unique())
            shown = ", ".join(regions[:12]) + (" ..." if len(regions) > 12 else "")
            raise NoCandidateError(f"no instance in region {r.region!r}{where}; regions: {shown or 'none'}")
    pool = c
    c = _shapes(c, r.gpus)
    if c.empty:
        counts = sorted({int(x) for x in _f(pool["gpu_count"]).dropna()})
        raise NoCandidateError(f"no instance has {r.gpus} GPUs (nor is {r.gpus} a multiple of a model's largest "
                               f"node); GPU counts on offer: {', '.join(map(str, counts)) or 'none'}")
    shaped = c
    c = c[_f(c["gpu_memory_gb"]) >= r.gpu_memory_gb]
    if c.empty:
        best = shaped.loc[_f(shaped["gpu_memory_gb"]).idxmax()]
        raise NoCandidateError(
            f"no instance has {r.gpus} GPUs with ≥ {_gb(r.gpu_memory_gb)} GB each; the largest is "
            f"{r.gpus} × {_gb(float(best['gpu_memory_gb']))} GB ({best['gpu_model']})")
    for need, col, what, unit in ((r.host_memory_gb, "memory_gb", "GB host memory", "GB"),
                                  (r.vcpus, "vcpus", "vCPUs", "vCPUs")):
        if need is None:
            continue
        before = c
        total = _f(c[col]) * c["instances"]
        c = c[total >= need]
        if c.empty:
            totals = _f(before[col]) * before["instances"]
            most = (f"the most is {_gb(float(totals.max()))} {unit} "
                    f"({before.loc[totals.idxmax(), 'instance_type']})"
                    if totals.notna().any() else "none lists it")
            raise NoCandidateError(f"no instance with {r.gpus} GPUs of ≥ {_gb(r.gpu_memory_gb)} GB has "
                                   f"≥ {_gb(need)} {what}; {most}")

    return c.copy()


def rank_instances(catalog: pd.DataFrame, requirements: Requirements, work: Work, *, datasheets: pd.DataFrame,
                   measured: pd.DataFrame | None = None, reference_gpu: str = "A100-80GB",
                   datasheet_mfu: float = 0.35) -> pd.DataFrame:
    """Every candidate for the job, cheapest whole job on demand first (see the module docstring).

    `on_demand_cost_usd` = hours x on-demand price x instances. `spot_cost_usd` is the spot price for the
    same hours, before interruptions (NaN without a spot offer); `spot.plan_pricing` adds the expected spot
    cost with lost work and restarts and re-sorts by the cost of the recommended pricing. Ties are broken
    by hours, the job's on-demand price per hour, instances, then cloud, region and instance type.
    Raises NoCandidateError naming the requirement nothing meets.
    """
    r = requirements
    c = filter_candidates(catalog, r)
    c["gpus"] = float(r.gpus)
    c["reference_hours"] = work.reference_hours if work.reference_hours is not None else np.nan
    c["tokens"] = work.tokens if work.tokens is not None else np.nan
    c["model_params_b"] = work.model_params_b if work.model_params_b is not None else np.nan
    c["technique"] = work.technique
    est = estimate_hours(c, datasheets=datasheets, measured=measured, reference_gpu=reference_gpu,
                         datasheet_mfu=datasheet_mfu)
    c = c.join(est)
    unknown = c["expected_hours"].isna()
    dropped = sorted(c.loc[unknown, "instance_type"].astype(str).unique())
    models = ", ".join(sorted(c.loc[unknown, "gpu_model"].astype(str).unique()))
    c = c[~unknown]
    if c.empty:
        raise NoCandidateError(f"no candidate GPU has a datasheet or a measured throughput ({models}); "
                               "the job's hours cannot be estimated")
    out = _ranked_frame(c)
    out.attrs["dropped_no_throughput"] = dropped
    return out


def best_per_type(frame: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """The first (best) row of each (cloud, instance_type) of a sorted frame: a top-3 of three regions of
    one instance type tells less than three instance types, each in its cheapest region."""
    return frame[~frame.duplicated([*by, "cloud", "instance_type"], keep="first")]


def _ranked_frame(c: pd.DataFrame) -> pd.DataFrame:
    instances = c["instances"].astype("float64")
    c = c.assign(
        on_demand_usd_per_hour=_f(c["on_demand_usd_per_hour"]),
        spot_usd_per_hour=_f(c["spot_usd_per_hour"]),
        vcpus=_f(c["vcpus"]) if "vcpus" in c else np.nan,
        memory_gb=_f(c["memory_gb"]) if "memory_gb" in c else np.nan,
    )
    c["on_demand_cost_usd"] = c["expected_hours"] * c["on_demand_usd_per_hour"] * instances
    c["spot_cost_usd"] = c["expected_hours"] * c["spot_usd_per_hour"] * instances
    c["_job_on_demand_usd_per_hour"] = c["on_demand_usd_per_hour"] * instances
    extra = [col for col in ("source", "price_date") if col in c.columns]
    c = c.sort_values(["on_demand_cost_usd", *TIE_BREAKERS], kind="mergesort", na_position="last")
    return c[[*OUTPUT_COLUMNS, *extra]].reset_index(drop=True)
