"""Resource needs of a fine-tuning job from its spec (spec §3): peak GPU memory per GPU and GPU-hours.

Two estimates, and the model says which one it used (`basis`):

- **analytic** (`analytic_resources`): memory from bytes per parameter plus activations, GPU-hours from
  training FLOPs over the datasheet's TFLOP/s at an MFU. Needs no history; right to within a factor that
  depends on the fleet's habits (activation checkpointing, packing, kernels, allocator slack).
- **fitted** (`fit_resource_model`): per target, a ridge regression on log features that predicts the
  *log ratio* of the observed value to the analytic estimate. The analytic estimate already carries the
  physics (memory ~ params, hours ~ params x tokens / TFLOP/s); what is left to learn is a correction per
  technique, GPU and shape that varies slowly, which a regularised linear model learns from few jobs
  without the wild extrapolation a tree model makes outside the sizes it saw (a tree predicts a constant
  beyond the largest model it was trained on; a log-ratio ridge falls back to the physics there). With
  strong regularisation the prediction shrinks to the analytic estimate, never to a fleet mean.

Training data (`training_examples`): the registry's ended jobs (ended at or before `now`) joined with
their metrics.
- peak memory per GPU = the largest `gpu_memory_used_ratio` of any window and device (run_health `max`)
  x the datasheet memory of the job's GPU. That ratio is what the driver reports as used (FB_USED), so it
  includes the CUDA context and the caching allocator's slack: exactly what must fit. Jobs that failed
  with an OOM are left out: their peak is the GPU's capacity (censored), not what they needed.
- GPU-hours = (ended_at - started_at) x gpu_count of *succeeded* jobs (a failed or cancelled job stopped
  early, a preempted one ran twice). It includes model loading and evaluations, as the bill does.

Evaluation: time-ordered hold-out. Jobs sorted by ended_at; the model is fitted on the earlier 75 % and
scored on the later 25 % (MAPE of the fitted model and of the analytic estimate on the same jobs), as it
is used: trained on the past, asked about the future. The stored pipeline is then refitted on all jobs.
A target with fewer than `min_history_jobs` jobs, or whose fitted model did worse than the analytic
estimate on the held-out jobs, uses the analytic estimate (`basis` = "analytic", `reason` says why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # scikit-learn is imported where a model is fitted: it costs every run's start 1.5 s
    from sklearn.pipeline import Pipeline

from ftops.optimize.gpus import canonical_gpu_models, datasheets
from ftops.optimize.selection import FLOPS_PER_PARAM_TOKEN, TIME_FACTOR

Basis = Literal["fitted", "analytic"]
Target = Literal["peak_memory_gb", "gpu_hours"]

# ------------------------------------------------------------------------------ analytic memory: bytes
# Mixed-precision AdamW (Rajbhandari et al. 2020, "ZeRO", §3.1): bf16 weights 2 B and bf16 gradients
# 2 B per trained parameter, and an fp32 master copy plus two fp32 moments, 12 B: 16 B per parameter.
WEIGHT_BYTES = 2.0
GRADIENT_BYTES = 2.0
OPTIMIZER_BYTES = 12.0
# QLoRA (Dettmers et al. 2023): NF4 weights, 0.5 B per parameter, plus one fp32 absmax per 64-weight
# block (0.0625 B; double quantisation brings it to 0.016, the larger figure is the safe side), and the
# layers that stay in bf16 (embeddings, norms, often the LM head): ~5 % of the parameters at 2 B.
NF4_BYTES = 0.5 + 0.0625
UNQUANTISED_SHARE = 0.05
# LoRA rank 16 on every attention and MLP projection of a Llama-7B is ~40 M parameters, 0.6 % of the
# base; prefix tuning trains fewer. The adapters train like a full model (16 B each), a rounding error.
ADAPTER_PARAM_SHARE = 0.005
# CUDA context, cuBLAS workspaces, NCCL buffers and the caching allocator's fragmentation: a fixed slab
# measured runs show on every GPU whatever the model (~1-2 GB).
OVERHEAD_GB = 1.5
# a frozen base replicated on every GPU (DDP, the usual adapter recipe) must leave room to train; above
# this share of the GPU's memory the run can only have been sharded (FSDP / ZeRO-3, as 70B LoRA runs are)
REPLICATED_MAX_SHARE = 0.8

# ------------------------------------------------------------------------- analytic memory: activations
# Shape from size: a decoder has N ~ 12 L h^2 parameters (attention 4h^2 + MLP 8h^2 per layer, Kaplan
# et al. 2020), and models keep h / L near 128 (Llama-2 7B 4096/32, 13B 5120/40; 70B 8192/80 = 102), so
# L = cbrt(N / (12 x 128^2)) and h = 128 L. A 7B model gives L = 33, h = 4,200.
HIDDEN_PER_LAYER = 128.0
# Activation checkpointing is assumed (TRL, axolotl, LLaMA-Factory and the QLoRA recipe turn on
# gradient_checkpointing by default): each layer keeps its bf16 input (2 s b h bytes) and one layer at a
# time is recomputed with all its activations, 34 s b h bytes per layer with flash attention
# (Korthikanti et al. 2022, eq. 2 without the 5 a s^2 b attention-score term). A fleet that does not
# checkpoint shows up as a large fitted correction.
CHECKPOINTED_BYTES_PER_LAYER = 2.0
LAYER_ACTIVATION_BYTES = 34.0
# The logits of the micro-batch in bf16 plus their fp32 upcast for the loss: s b V x 6 bytes, with a
# vocabulary between Llama-2/Mistral's 32 k and Llama-3/Qwen's 128-152 k.
VOCABULARY = 64_000
LOGIT_BYTES = 6.0
# DPO runs the chosen and the rejected completion of every pair through the model together.
ACTIVATION_FACTOR = {"dpo": 2.0}

FULL_TECHNIQUES = ("full", "dpo", "other")  # every weight trained
ADAPTER_TECHNIQUES = ("lora", "qlora", "prefix")  # frozen base, small trained adapters

DEFAULT_MFU = 0.35  # share of datasheet TFLOP/s a fine-tuning run achieves (optimization.datasheet_mfu)
TEST_SHARE = 0.25  # the later quarter of the history is held out
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 3, 11))

CATEGORICAL_FEATURES = ("technique", "gpu_model")
NUMERIC_FEATURES: dict[str, tuple[str, ...]] = {
    "peak_memory_gb": ("log_model_params_b", "log_seq_len", "log_micro_batch", "log_gpu_count",
                       "log_gpu_memory_gb", "log_analytic_peak_memory_gb"),
    "gpu_hours": ("log_model_params_b", "log_seq_len", "log_micro_batch", "log_grad_accum", "log_gpu_count",
                  "log_tokens", "log_analytic_gpu_hours"),
}
ANALYTIC_COLUMN: dict[str, str] = {"peak_memory_gb": "analytic_peak_memory_gb", "gpu_hours": "analytic_gpu_hours"}
PREDICTION_COLUMNS = ("job_id", "gpu_model", "gpu_memory_gb", "analytic_peak_memory_gb", "peak_memory_gb",
                      "memory_basis", "analytic_gpu_hours", "gpu_hours", "gpu_hours_basis")
ENDED_STATUSES = ("succeeded", "failed", "cancelled", "preempted")


def _num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _col(jobs: pd.DataFrame, name: str) -> pd.Series:
    return _num(jobs[name]) if name in jobs else pd.Series(np.nan, index=jobs.index)


def model_shape(model_params_b: pd.Series) -> pd.DataFrame:
    """Layers and hidden size implied by the parameter count (N = 12 L h^2, h = 128 L)."""
    n = _num(model_params_b) * 1e9
    layers = np.cbrt(n / (12.0 * HIDDEN_PER_LAYER ** 2))
    return pd.DataFrame({"layers": layers, "hidden": HIDDEN_PER_LAYER * layers}, index=model_params_b.index)


def _technique(jobs: pd.DataFrame) -> pd.Series:
    t = jobs["technique"].astype("object").where(jobs["technique"].notna(), None)
    # an unknown technique is costed like a full fine-tune: the expensive side
    return t.where(t.isin(list(FLOPS_PER_PARAM_TOKEN)), "other").astype("object")


def _gpu_model(jobs: pd.DataFrame) -> pd.Series:
    return canonical_gpu_models(jobs["gpu_type"]).astype("object") if "gpu_type" in jobs \
        else pd.Series(None, index=jobs.index, dtype="object")


def analytic_memory(jobs: pd.DataFrame, gpu_memory_gb: pd.Series | None = None) -> pd.DataFrame:
    """Peak memory per GPU, GB, by parts: weights, gradients, optimiser state, activations, overhead.

    `states_gb` (weights + gradients + optimiser state) is for the whole model, before sharding: a 7B
    full fine-tune is 7 x 16 = 112 GB, a 7B LoRA ~14.6 GB, a 7B QLoRA ~4.6 GB. Full fine-tunes (and DPO,
    which also holds a frozen bf16 reference model) are taken as sharded over the job's GPUs
    (FSDP / ZeRO-3: the only way they fit); adapter runs replicate the frozen base on every GPU unless it
    would fill more than REPLICATED_MAX_SHARE of the GPU (`gpu_memory_gb`, per row; unknown: replicated).
    Activations and overhead are per GPU. Columns: layers, hidden, weights_gb, gradients_gb,
    optimizer_gb, states_gb, sharded, activations_gb, peak_memory_gb. Index: the jobs'.
    """
    tech = _technique(jobs)
    n = _col(jobs, "model_params_b") * 1e9
    full = tech.isin(FULL_TECHNIQUES)
    qlora = tech == "qlora"
    adapters = n * ADAPTER_PARAM_SHARE
    base_bytes = np.where(qlora, (1.0 - UNQUANTISED_SHARE) * NF4_BYTES + UNQUANTISED_SHARE * WEIGHT_BYTES,
                          WEIGHT_BYTES)
    weights = np.where(full, n * WEIGHT_BYTES, n * base_bytes + adapters * WEIGHT_BYTES)
    weights = weights + np.where(tech == "dpo", n * WEIGHT_BYTES, 0.0)  # the frozen reference model
    trained = np.where(full, n, adapters)
    gradients = trained * GRADIENT_BYTES
    optimizer = trained * OPTIMIZER_BYTES
    states = weights + gradients + optimizer

    gpus = _col(jobs, "gpu_count").where(lambda g: g >= 1)
    capacity = (pd.Series(np.nan, index=jobs.index) if gpu_memory_gb is None
                else _num(gpu_memory_gb).reindex(jobs.index))
    too_big_to_replicate = (weights / 1e9 > REPLICATED_MAX_SHARE * capacity).to_numpy(dtype=bool)
    sharded = (full.to_numpy(dtype=bool) | too_big_to_replicate) & (gpus > 1).to_numpy(dtype=bool)
    per_gpu_states = np.where(sharded, states / gpus.fillna(1.0), states)

    shape = model_shape(_col(jobs, "model_params_b"))
    s = _col(jobs, "seq_len")
    b = _col(jobs, "batch_size")
    tokens = s * b * tech.map(lambda t: ACTIVATION_FACTOR.get(t, 1.0)).astype("float64")
    activations = tokens * (shape["hidden"] * (CHECKPOINTED_BYTES_PER_LAYER * shape["layers"] + LAYER_ACTIVATION_BYTES)
                            + VOCABULARY * LOGIT_BYTES)
    out = pd.DataFrame({
        "layers": shape["layers"],
        "hidden": shape["hidden"],
        "weights_gb": weights / 1e9,
        "gradients_gb": gradients / 1e9,
        "optimizer_gb": optimizer / 1e9,
        "states_gb": states / 1e9,
        "sharded": sharded,
        "activations_gb": activations / 1e9,
    }, index=jobs.index)
    out["peak_memory_gb"] = per_gpu_states / 1e9 + out["activations_gb"] + OVERHEAD_GB
    return out


def job_tokens(jobs: pd.DataFrame) -> pd.Series:
    """Tokens over the run: dataset_samples x epochs x seq_len (seq_len is the padded/packed length, so an
    upper bound for unpacked data; the fitted model learns the fleet's fill)."""
    return _col(jobs, "dataset_samples") * _col(jobs, "epochs") * _col(jobs, "seq_len")


def analytic_gpu_hours(jobs: pd.DataFrame, dense_tflops: pd.Series, mfu: float = DEFAULT_MFU) -> pd.Series:
    """GPU-hours = k N T / (TFLOP/s x 1e12 x MFU x 3600), k from FLOPS_PER_PARAM_TOKEN (6 full, 4 adapters,
    8 DPO), times TIME_FACTOR (QLoRA's dequantisation, x1.3). Independent of the GPU count to first order:
    more GPUs finish sooner, not cheaper. NaN where the GPU has no datasheet or the work is unknown."""
    tech = _technique(jobs)
    k = tech.map(FLOPS_PER_PARAM_TOKEN).astype("float64")
    slow = tech.map(lambda t: TIME_FACTOR.get(t, 1.0)).astype("float64")
    flops = k * _col(jobs, "model_params_b") * 1e9 * job_tokens(jobs)
    return flops * slow / (_num(dense_tflops).reindex(jobs.index) * 1e12 * mfu * 3600.0)


def analytic_resources(jobs: pd.DataFrame, mfu: float = DEFAULT_MFU,
                       sheets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per job: gpu_model (canonical), gpu_memory_gb and dense_tflops (datasheet), analytic_peak_memory_gb
    and analytic_gpu_hours. Index: the jobs'."""
    sheets = datasheets() if sheets is None else sheets
    gpu = _gpu_model(jobs)
    memory = gpu.map(_num(sheets["memory_gb"])).astype("float64")
    tflops = gpu.map(_num(sheets["dense_bf16_tflops"])).astype("float64")
    return pd.DataFrame({
        "gpu_model": gpu,
        "gpu_memory_gb": memory,
        "dense_tflops": tflops,
        "analytic_peak_memory_gb": analytic_memory(jobs, memory)["peak_memory_gb"],
        "analytic_gpu_hours": analytic_gpu_hours(jobs, tflops, mfu),
    }, index=jobs.index)


def _log(series: pd.Series) -> pd.Series:
    values = _num(series)
    return np.log(values.where(values > 0))


def features(jobs: pd.DataFrame, mfu: float = DEFAULT_MFU, sheets: pd.DataFrame | None = None) -> pd.DataFrame:
    """The model's inputs per job (both targets' columns) with the analytic estimates they correct.

    A missing grad_accum counts as 1 (the trainers' default); other gaps stay NaN and leave the job
    without a prediction rather than with a guess.
    """
    est = analytic_resources(jobs, mfu, sheets)
    out = est.copy()
    out["technique"] = _technique(jobs)
    out["gpu_model"] = est["gpu_model"].where(est["gpu_model"].notna(), "unknown").astype("object")
    out["log_model_params_b"] = _log(_col(jobs, "model_params_b"))
    out["log_seq_len"] = _log(_col(jobs, "seq_len"))
    out["log_micro_batch"] = _log(_col(jobs, "batch_size"))
    out["log_grad_accum"] = _log(_col(jobs, "grad_accum").fillna(1.0))
    out["log_gpu_count"] = _log(_col(jobs, "gpu_count"))
    out["log_tokens"] = _log(job_tokens(jobs))
    out["log_gpu_memory_gb"] = _log(est["gpu_memory_gb"])
    out["log_analytic_peak_memory_gb"] = _log(est["analytic_peak_memory_gb"])
    out["log_analytic_gpu_hours"] = _log(est["analytic_gpu_hours"])
    return out


def training_examples(jobs: pd.DataFrame, run_health: pd.DataFrame | None, now: pd.Timestamp,
                      mfu: float = DEFAULT_MFU, sheets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ended jobs (ended at or before `now`) with features and observed targets: `peak_memory_gb` (NaN
    without memory metrics, or for an OOM) and `gpu_hours` (NaN unless succeeded). Index: job order."""
    ended_at = pd.to_datetime(jobs["ended_at"], utc=True, errors="coerce")
    status = jobs["status"].astype("object")
    done = jobs[(status.isin(ENDED_STATUSES) & (ended_at <= now)).to_numpy(dtype=bool)]
    if done.empty:
        return pd.DataFrame(columns=["job_id", "ended_at", "peak_memory_gb", "gpu_hours"])
    x = features(done, mfu, sheets)
    x.insert(0, "job_id", done["job_id"].astype(str).to_numpy())
    x["ended_at"] = pd.to_datetime(done["ended_at"], utc=True)

    peak_ratio = pd.Series(dtype="float64")
    if run_health is not None and not run_health.empty:
        mem = run_health[run_health["metric"].astype("object") == "gpu_memory_used_ratio"]
        peak_ratio = _num(mem["max"]).groupby(mem["job_id"].astype(str).to_numpy()).max()
    ratio = x["job_id"].map(peak_ratio).astype("float64")
    censored = (done["exit_reason"].astype("object") == "oom").to_numpy(dtype=bool) if "exit_reason" in done \
        else np.zeros(len(done), dtype=bool)
    x["peak_memory_gb"] = (ratio * x["gpu_memory_gb"]).where(~censored & (ratio > 0))

    started = pd.to_datetime(done["started_at"], utc=True, errors="coerce")
    wall_h = (x["ended_at"] - started).dt.total_seconds() / 3600.0
    succeeded = (status.loc[done.index] == "succeeded").to_numpy(dtype=bool)
    x["gpu_hours"] = (wall_h * _col(done, "gpu_count")).where(succeeded & (wall_h > 0))
    return x.reset_index(drop=True)


def mape(predicted: np.ndarray | pd.Series, actual: np.ndarray | pd.Series) -> float:
    """Mean absolute percentage error as a fraction (0.12 = 12 %); NaN when there is nothing to score."""
    p = np.asarray(predicted, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    ok = np.isfinite(p) & np.isfinite(a) & (a > 0)
    return float(np.mean(np.abs(p[ok] - a[ok]) / a[ok])) if ok.any() else float("nan")


@dataclass(frozen=True)
class Evaluation:
    """Held-out scores of one target: the later `n_test` jobs, after fitting on the earlier `n_train`."""

    n_train: int
    n_test: int
    mape_fitted: float  # NaN when no model was fitted
    mape_analytic: float
    test_job_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetModel:
    """One target's predictor: the pipeline (None on the analytic basis) and how it did."""

    target: Target
    basis: Basis
    reason: str
    pipeline: Pipeline | None
    feature_names: tuple[str, ...]
    n_jobs: int  # ended jobs with this target observed
    evaluation: Evaluation

    def predict(self, x: pd.DataFrame) -> pd.Series:
        """Predicted target per row of `features`; the analytic estimate on the analytic basis."""
        analytic = _num(x[ANALYTIC_COLUMN[self.target]])
        if self.basis == "analytic" or self.pipeline is None:
            return analytic
        return _fitted(self.pipeline, x, self.feature_names, analytic)


@dataclass(frozen=True)
class ResourceModel:
    """What the resource_model asset stores: both targets' predictors and the settings they assume."""

    peak_memory: TargetModel
    gpu_hours: TargetModel
    datasheet_mfu: float
    min_history_jobs: int
    trained_at: pd.Timestamp
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, float | int | str]:
        """Flat numbers for asset metadata: basis, history and held-out MAPE (fractions) per target."""
        out: dict[str, float | int | str] = {"datasheet_mfu": self.datasheet_mfu,
                                             "min_history_jobs": self.min_history_jobs}
        for prefix, t in (("memory", self.peak_memory), ("gpu_hours", self.gpu_hours)):
            out[f"{prefix}_basis"] = t.basis
            out[f"{prefix}_reason"] = t.reason
            out[f"{prefix}_n_jobs"] = t.n_jobs
            out[f"{prefix}_n_train"] = t.evaluation.n_train
            out[f"{prefix}_n_test"] = t.evaluation.n_test
            out[f"{prefix}_mape_fitted"] = _round(t.evaluation.mape_fitted)
            out[f"{prefix}_mape_analytic"] = _round(t.evaluation.mape_analytic)
        return out


def _round(value: float) -> float:
    return round(value, 4) if math.isfinite(value) else float("nan")


def _pipeline(target: Target) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = list(NUMERIC_FEATURES[target])
    prep = ColumnTransformer([
        # a GPU or technique the model never saw gets no correction of its own: the shared terms apply
        ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(CATEGORICAL_FEATURES)),
        ("numbers", StandardScaler(), numeric),
    ])
    # RidgeCV picks the shrinkage by efficient leave-one-out on the training jobs alone
    return Pipeline([("features", prep), ("ridge", RidgeCV(alphas=RIDGE_ALPHAS))])


def _complete(x: pd.DataFrame, target: Target) -> pd.Series:
    cols = list(NUMERIC_FEATURES[target])
    return x[cols].apply(np.isfinite).all(axis=1)


def _fitted(pipeline: Pipeline, x: pd.DataFrame, names: tuple[str, ...], analytic: pd.Series) -> pd.Series:
    numeric = [n for n in names if n not in CATEGORICAL_FEATURES]
    ok = x[numeric].apply(np.isfinite).all(axis=1).to_numpy(dtype=bool)
    out = pd.Series(np.nan, index=x.index)
    if ok.any():
        log_ratio = pipeline.predict(x.loc[ok, list(names)])
        out[ok] = analytic[ok].to_numpy() * np.exp(log_ratio)
    return out


def _fit_target(examples: pd.DataFrame, target: Target, min_history_jobs: int,
                test_share: float) -> TargetModel:
    names = (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES[target])
    analytic_col = ANALYTIC_COLUMN[target]
    have = examples[_num(examples[target]).gt(0) & _complete(examples, target)] if not examples.empty \
        else examples
    have = have.sort_values(["ended_at", "job_id"], kind="mergesort")
    n = len(have)
    if n < min_history_jobs:
        ev = Evaluation(0, n, float("nan"), mape(have[analytic_col], have[target]) if n else float("nan"),
                        tuple(have["job_id"]))
        return TargetModel(target, "analytic", f"{n} ended jobs with {target} observed, fewer than "
                           f"min_history_jobs = {min_history_jobs}: analytic estimate", None, names, n, ev)
    n_test = max(1, math.ceil(test_share * n))
    train, test = have.iloc[: n - n_test], have.iloc[n - n_test:]
    y_train = np.log(_num(train[target]) / _num(train[analytic_col]))
    held_out = _pipeline(target).fit(train[list(names)], y_train)
    predicted = _fitted(held_out, test, names, _num(test[analytic_col]))
    ev = Evaluation(len(train), len(test), mape(predicted, test[target]), mape(test[analytic_col], test[target]),
                    tuple(test["job_id"]))
    y_all = np.log(_num(have[target]) / _num(have[analytic_col]))
    final = _pipeline(target).fit(have[list(names)], y_all)
    if not ev.mape_fitted <= ev.mape_analytic:
        # a correction that does not carry over to later jobs is noise; the physics is the safer bet
        return TargetModel(target, "analytic", f"the fitted model's held-out MAPE {ev.mape_fitted:.3f} is not "
                           f"below the analytic estimate's {ev.mape_analytic:.3f}: analytic estimate", final,
                           names, n, ev)
    return TargetModel(target, "fitted", f"ridge on the log ratio to the analytic estimate, {n} ended jobs; "
                       f"held-out MAPE {ev.mape_fitted:.3f} vs analytic {ev.mape_analytic:.3f}", final, names, n, ev)


def fit_resource_model(jobs: pd.DataFrame, run_health: pd.DataFrame | None, now: pd.Timestamp, *,
                       min_history_jobs: int = 20, mfu: float = DEFAULT_MFU,
                       test_share: float = TEST_SHARE) -> ResourceModel:
    """Fit (or fall back to the analytic estimate for) peak memory per GPU and GPU-hours; see the module
    docstring for the data, the model and the evaluation."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be between 0 and 1, not {test_share}")
    if min_history_jobs < 2:
        raise ValueError(f"min_history_jobs must be at least 2 (one to train, one to test), not {min_history_jobs}")
    examples = training_examples(jobs, run_health, now, mfu)
    return ResourceModel(
        peak_memory=_fit_target(examples, "peak_memory_gb", min_history_jobs, test_share),
        gpu_hours=_fit_target(examples, "gpu_hours", min_history_jobs, test_share),
        datasheet_mfu=mfu,
        min_history_jobs=min_history_jobs,
        trained_at=pd.Timestamp(now),
        notes=("peak memory: max gpu_memory_used_ratio x datasheet memory; OOM-failed jobs left out (censored)",
               "gpu_hours: (ended_at - started_at) x gpu_count of succeeded jobs"),
    )


def predict_resources(model: ResourceModel, jobs: pd.DataFrame) -> pd.DataFrame:
    """Per job (index: the jobs'): job_id, gpu_model, gpu_memory_gb (datasheet, per GPU), the analytic and
    the predicted peak memory per GPU and GPU-hours, and the basis of each prediction."""
    x = features(jobs, model.datasheet_mfu)
    out = pd.DataFrame({
        "job_id": jobs["job_id"].astype(str),
        "gpu_model": x["gpu_model"].where(x["gpu_model"] != "unknown", None),
        "gpu_memory_gb": x["gpu_memory_gb"],
        "analytic_peak_memory_gb": x["analytic_peak_memory_gb"],
        "peak_memory_gb": model.peak_memory.predict(x),
        "memory_basis": model.peak_memory.basis,
        "analytic_gpu_hours": x["analytic_gpu_hours"],
        "gpu_hours": model.gpu_hours.predict(x),
        "gpu_hours_basis": model.gpu_hours.basis,
    }, index=jobs.index)
    return out[list(PREDICTION_COLUMNS)]
