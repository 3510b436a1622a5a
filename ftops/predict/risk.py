"""Failure risk of a job (spec §3): from its spec, its launch context and, while it runs, early signals.

What a feature may use: only what was known at the moment the job is scored. At launch that is the
job's spec (technique, model size, GPU model and count, micro-batch, gradient accumulation, sequence
length, epochs, pricing, dataset size) and its launch context: how the same configuration fared in
jobs that *ended before this one started*, and how many launches of the same configuration happened
in the hours before (on real runs a burst of relaunches - someone retrying a broken script - is the
strongest signal available at launch). With a horizon of M minutes the job's first M minutes of
`run_health` rollups are added: loss level and slope, non-finite losses, gradient-norm level and
spikes, throughput against the job's own early baseline, GPU memory headroom. A run's length, exit
code, exit reason, final status and step count are never features (they are what is predicted);
`LEAKY_COLUMNS` names them and `feature_columns` refuses any feature derived from them.

Population: a model for horizon M learns from the finished jobs that were still running M minutes
after their start (a job that ended earlier had already told its outcome; including it would teach
"short runs fail"). `ended_at` decides who is in the population, never what a job's features are.
Cancelled jobs are neither failures nor successes: they are left out as examples (they still count
as launches in the launch context).

Model: scikit-learn Pipeline of a ColumnTransformer (numeric: median imputation with missing-value
indicators, then standardisation; categorical: one-hot, unknown categories ignored) and a
LogisticRegression with balanced class weights (failures are the minority; unweighted, the model
would learn to say "succeeds" to everything). Balanced weights make the raw probabilities those of a
fleet where half the jobs fail: `risk` ranks jobs well but over-states the failure probability, which
the evaluation's Brier score and reliability table show. The default threshold 0.5 is where the two
weighted classes tie.

`top_factors` explains a score: the features whose contribution coefficient × transformed value is
largest in magnitude, where numeric values are standardised (0 = the training mean, so a feature at
its usual level contributes nothing) and a category is 1 when the job has it. The sign says whether
it raised (+) or lowered (-) the log-odds of failure.

Early signals come from `run_health` windows whose last sample is within the horizon (a window that
crosses the horizon is left out whole, so nothing after it leaks in): they are as fine as the
windows. `ftops risk` rolls samples up into 1-minute windows; the asset graph's hourly `run_health`
gives early signals only from the second hour of a run on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # scikit-learn is imported where a model is fitted: it costs every run's start 1.5 s
    from sklearn.pipeline import Pipeline

FAILED_STATUSES = ("failed", "preempted")
FINISHED_STATUSES = ("succeeded", "failed", "preempted")
# columns that carry a job's length, exit or final state: the target, never an input
LEAKY_COLUMNS = ("ended_at", "exit_reason", "status", "total_steps", "exit_code", "failure_type", "duration",
                 "runtime")
# the job spec, as `job_registry` holds it
SPEC_CATEGORICAL = ("technique", "gpu_type", "pricing")
SPEC_NUMERIC = ("model_params_b", "gpu_count", "batch_size", "grad_accum", "seq_len", "epochs",
                "log_dataset_samples", "log_effective_batch")
# what the configuration's history said at launch
CONTEXT_NUMERIC = ("failure_rate_same_config", "recent_failures_same_config", "recent_failures_same_name",
                   "launches_same_config_recent", "launches_same_name_recent", "previous_same_name_failed",
                   "log_hours_since_launch_same_name")
# the first M minutes of the run
EARLY_NUMERIC = ("early_logged", "early_loss_level", "early_loss_slope", "early_loss_non_finite",
                 "early_grad_norm_level", "early_grad_norm_spike", "early_throughput_ratio",
                 "early_gpu_memory_headroom")
# what makes two jobs "the same configuration": the spec a person relaunches unchanged
CONFIG_KEY = ("technique", "base_model", "model_params_b", "gpu_type", "gpu_count", "batch_size", "grad_accum",
              "seq_len", "epochs", "dataset_samples")
DEFAULT_BURST_HOURS = 6.0
DEFAULT_THRESHOLD = 0.5
DEFAULT_TEST_FRACTION = 0.3
TOP_FACTORS = 3
_RELIABILITY_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
_MS_PER_HOUR = 3_600_000.0
# a name last launched longer ago than this (or never) is as good as new
_MAX_GAP_HOURS = 30 * 24.0
_MS_KEY_STRIDE = 10**13  # > 300 years in ms: a key's times never reach the next key's in `_count_before`
_LOSS = "training_loss"
_GRAD = "grad_norm"
_THROUGHPUT = ("samples_per_second", "tokens_per_second")
_GPU_MEMORY = "gpu_memory_used_ratio"


class RiskModelError(ValueError):
    """The data cannot train a model (no finished jobs, one class only, a leaky feature)."""


@dataclass(frozen=True)
class RiskModel:
    """A trained failure-risk pipeline and what it was trained and measured on."""

    pipeline: Pipeline
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    horizon_minutes: float
    threshold: float
    evaluation: dict[str, Any] = field(hash=False)
    burst_hours: float = DEFAULT_BURST_HOURS
    n_train: int = 0
    trained_at: pd.Timestamp | None = None

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical


def feature_columns(horizon_minutes: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric, categorical) features of the model for this horizon; refuses any leaky name."""
    numeric = SPEC_NUMERIC + CONTEXT_NUMERIC + (EARLY_NUMERIC if horizon_minutes > 0 else ())
    categorical = SPEC_CATEGORICAL
    leaky = [f for f in numeric + categorical if any(word in f for word in LEAKY_COLUMNS)]
    if leaky:
        raise RiskModelError(f"features derived from a job's end or outcome: {leaky}")
    return numeric, categorical


def failure_labels(jobs: pd.DataFrame, job_failures: pd.DataFrame | None = None) -> pd.Series:
    """Per finished job (index job_id): True when it failed or was preempted, False when it succeeded.

    Cancelled, pending and running jobs are absent. `job_failures` (JOB_FAILURES), when given, wins
    over the registry's status and drops the jobs it types as cancelled.
    """
    status = pd.Series(jobs["status"].astype("string").to_numpy(), index=jobs["job_id"].astype(str).to_numpy())
    status = status[~status.index.duplicated(keep="last")]
    if job_failures is not None and not job_failures.empty:
        jf = (job_failures.assign(job_id=job_failures["job_id"].astype(str))
              .drop_duplicates("job_id", keep="last").set_index("job_id"))
        known = jf["status"].astype("string").dropna()
        common = status.index.intersection(known.index)
        status.loc[common] = known.loc[common]
        cancelled = jf.index[(jf["failure_type"].astype("string") == "cancelled").fillna(False).to_numpy(dtype=bool)]
        status = status.drop(status.index.intersection(cancelled))
    status = status[status.isin(FINISHED_STATUSES).fillna(False).to_numpy(dtype=bool)]
    return status.isin(FAILED_STATUSES).astype(bool).rename("failed")


# ---------------------------------------------------------------------------------------------
# features


def _key(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One text key per row from `columns`; a missing value is its own value ("?")."""
    parts = [frame[c].astype("string").fillna("?") if c in frame else pd.Series("?", index=frame.index)
             for c in columns]
    out = parts[0]
    for part in parts[1:]:
        out = out + "|" + part
    return out


def _name_key(frame: pd.DataFrame) -> pd.Series:
    # a run name says "the same experiment" better than the model; without one, the base model
    name = frame["name"].astype("string") if "name" in frame else pd.Series(pd.NA, index=frame.index, dtype="string")
    base = frame["base_model"].astype("string") if "base_model" in frame else name
    return name.fillna(base)


def _ms(times: pd.Series, origin: pd.Timestamp) -> np.ndarray:
    return ((times - origin) / pd.Timedelta(milliseconds=1)).to_numpy(dtype="float64")


def _count_before(query_key: pd.Series, query_t: np.ndarray, ref_key: pd.Series, ref_t: np.ndarray,
                  window_ms: float | None = None) -> np.ndarray:
    """Per query row: reference rows with the same key and a time strictly before the query's (and,
    with `window_ms`, not earlier than that much before it). One sort and two binary searches: keys
    are coded and spaced `_MS_KEY_STRIDE` apart on one number line."""
    ok_ref = ref_key.notna().to_numpy() & np.isfinite(ref_t)
    codes, uniques = pd.factorize(pd.concat([ref_key[ok_ref], query_key], ignore_index=True))
    ref_codes, q_codes = codes[: int(ok_ref.sum())], codes[int(ok_ref.sum()):]
    line = np.sort(ref_codes.astype("float64") * _MS_KEY_STRIDE + ref_t[ok_ref])
    q_ok = (q_codes >= 0) & np.isfinite(query_t)
    base = np.where(q_ok, q_codes, 0).astype("float64") * _MS_KEY_STRIDE
    t = np.where(q_ok, query_t, 0.0)
    hi = np.searchsorted(line, base + t, side="left")
    lo = np.searchsorted(line, base + (t - window_ms if window_ms is not None else -0.5), side="left")
    return np.where(q_ok, hi - lo, 0).astype("float64")


def _launch_times(jobs: pd.DataFrame, now: pd.Timestamp | None) -> pd.Series:
    """When a job was launched: started_at, else submitted_at (a pending job), else `now`."""
    launch = jobs["started_at"] if "started_at" in jobs else pd.Series(pd.NaT, index=jobs.index)
    if "submitted_at" in jobs:
        launch = launch.fillna(jobs["submitted_at"])
    if now is not None:
        launch = launch.fillna(now)
    return pd.to_datetime(launch, utc=True)


def launch_context(jobs: pd.DataFrame, context: pd.DataFrame | None = None, *,
                   burst_hours: float = DEFAULT_BURST_HOURS, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """The launch-context features of each job (index as `jobs`), from `context` (default: `jobs`).

    A context job counts as a past outcome only when it ended strictly before this job was launched
    (and not after `now`), and as a launch only when it was launched strictly before this job. A job
    never counts itself. Counts are over the last `burst_hours` and log-scaled, and the all-time
    history is a smoothed rate, so a fleet's growing history does not shift the features over time.
    """
    ref = jobs if context is None else context
    origin = pd.Timestamp("2000-01-01", tz="UTC")
    q_t = _ms(_launch_times(jobs, now), origin)
    r_launch = _ms(_launch_times(ref, None), origin)
    ended = pd.to_datetime(ref["ended_at"], utc=True) if "ended_at" in ref else pd.Series(pd.NaT, index=ref.index)
    if now is not None:
        ended = ended.where(ended <= now)
    r_end = _ms(ended, origin)
    status = ref["status"].astype("string") if "status" in ref else pd.Series(pd.NA, index=ref.index, dtype="string")
    failed = status.isin(FAILED_STATUSES).fillna(False).to_numpy(dtype=bool)
    finished = status.isin(FINISHED_STATUSES).fillna(False).to_numpy(dtype=bool)
    q_config, r_config = _key(jobs, CONFIG_KEY), _key(ref, CONFIG_KEY)
    q_name, r_name = _name_key(jobs), _name_key(ref)
    window = burst_hours * _MS_PER_HOUR
    nan = np.full(len(ref), np.nan)
    failed_end, finished_end = np.where(failed, r_end, nan), np.where(finished, r_end, nan)
    out = pd.DataFrame(index=jobs.index)
    ended_before = _count_before(q_config, q_t, r_config, finished_end)
    failed_before = _count_before(q_config, q_t, r_config, failed_end)
    # Laplace-smoothed: a configuration never seen before sits at 0.5, not at a confident 0
    out["failure_rate_same_config"] = (failed_before + 1.0) / (ended_before + 2.0)
    out["recent_failures_same_config"] = np.log1p(_count_before(q_config, q_t, r_config, failed_end, window))
    out["recent_failures_same_name"] = np.log1p(_count_before(q_name, q_t, r_name, failed_end, window))
    out["launches_same_config_recent"] = np.log1p(_count_before(q_config, q_t, r_config, r_launch, window))
    out["launches_same_name_recent"] = np.log1p(_count_before(q_name, q_t, r_name, r_launch, window))
    previous = _previous(q_name, q_t, r_name, finished_end)
    has = previous >= 0
    last_failed = np.full(len(jobs), np.nan)
    last_failed[has] = failed[previous[has]].astype("float64")
    out["previous_same_name_failed"] = last_failed
    previous = _previous(q_name, q_t, r_name, r_launch)
    hours = np.full(len(jobs), _MAX_GAP_HOURS)
    has = previous >= 0
    hours[has] = np.clip((q_t[has] - r_launch[previous[has]]) / _MS_PER_HOUR, 0.0, _MAX_GAP_HOURS)
    out["log_hours_since_launch_same_name"] = np.log1p(hours)
    return out


def _previous(q_key: pd.Series, q_t: np.ndarray, r_key: pd.Series, r_t: np.ndarray) -> np.ndarray:
    """Per query: the position in the reference of the latest row with the same key and a time strictly
    before the query's; -1 without one."""
    ok = r_key.notna().to_numpy() & np.isfinite(r_t)
    positions = np.flatnonzero(ok)
    codes, _ = pd.factorize(pd.concat([r_key[ok], q_key], ignore_index=True))
    n = len(positions)
    r_line = codes[:n].astype("float64") * _MS_KEY_STRIDE + r_t[ok]
    order = np.argsort(r_line, kind="stable")
    line, line_codes = r_line[order], codes[:n][order]
    q_codes = codes[n:]
    q_ok = (q_codes >= 0) & np.isfinite(q_t)
    target = np.where(q_ok, q_codes, 0).astype("float64") * _MS_KEY_STRIDE + np.where(q_ok, q_t, 0.0)
    pos = np.searchsorted(line, target, side="left") - 1
    has = q_ok & (pos >= 0)
    has[has] &= line_codes[pos[has]] == q_codes[has]
    out = np.full(len(q_codes), -1, dtype="int64")
    out[has] = positions[order[pos[has]]]
    return out


def _spec(jobs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=jobs.index)
    for column in ("model_params_b", "gpu_count", "batch_size", "grad_accum", "seq_len", "epochs"):
        out[column] = pd.to_numeric(jobs[column], errors="coerce").astype("float64") if column in jobs else np.nan
    samples = pd.to_numeric(jobs["dataset_samples"], errors="coerce") if "dataset_samples" in jobs else np.nan
    out["log_dataset_samples"] = np.log1p(pd.Series(samples, index=jobs.index, dtype="float64").clip(lower=0))
    effective = out["batch_size"] * out["grad_accum"].fillna(1.0) * out["gpu_count"].fillna(1.0)
    out["log_effective_batch"] = np.log1p(effective.clip(lower=0))
    for column in SPEC_CATEGORICAL:
        values = jobs[column].astype("string") if column in jobs else pd.Series(pd.NA, index=jobs.index, dtype="string")
        out[column] = values.fillna("unknown").astype(object)
    return out


def early_signals(jobs: pd.DataFrame, run_health: pd.DataFrame | None, horizon_minutes: float,
                  now: pd.Timestamp | None = None) -> pd.DataFrame:
    """The early-signal features of each job (index as `jobs`) from its `run_health` windows whose
    last sample came within `horizon_minutes` of its start (and not after `now`)."""
    out = pd.DataFrame(np.nan, index=jobs.index, columns=list(EARLY_NUMERIC))
    out["early_logged"] = 0.0
    if run_health is None or run_health.empty or horizon_minutes <= 0:
        return out
    start = pd.Series(_launch_times(jobs, now).to_numpy(), index=jobs["job_id"].astype(str).to_numpy())
    start = start[~start.index.duplicated(keep="last")]
    cutoff = start + pd.Timedelta(minutes=float(horizon_minutes))
    if now is not None:
        cutoff = cutoff.where(cutoff <= now, now)
    health = run_health[run_health["job_id"].astype(str).isin(cutoff.index)]
    job = health["job_id"].astype(str)
    last_ts = pd.to_datetime(health["last_ts"], utc=True)
    health = health[(last_ts <= job.map(cutoff)).to_numpy(dtype=bool)].copy()
    if health.empty:
        return out
    health["job_id"] = health["job_id"].astype(str)
    health = health.sort_values(["job_id", "metric", "window_start"], kind="stable")
    by_job: dict[str, pd.Series] = {}
    training = health[health["metric"].astype(str).isin((_LOSS, _GRAD, *_THROUGHPUT))]
    by_job["early_logged"] = training.groupby("job_id")["samples"].sum().gt(0).astype("float64")

    loss = health[health["metric"].astype(str) == _LOSS]
    if not loss.empty:
        g = loss.groupby("job_id")
        weighted = (loss["mean"] * loss["samples"]).groupby(loss["job_id"]).sum(min_count=1)
        by_job["early_loss_level"] = weighted / g["samples"].sum().where(lambda s: s > 0)
        first, last = g["mean"].first(), g["mean"].last()
        # relative change from the first window to the last: a falling loss is negative
        by_job["early_loss_slope"] = ((last - first) / first.abs().where(lambda s: s > 0)).where(g.size() > 1)
        by_job["early_loss_non_finite"] = g["non_finite"].sum().gt(0).astype("float64")

    grad = health[health["metric"].astype(str) == _GRAD]
    if not grad.empty:
        g = grad.groupby("job_id")
        level = g["mean"].median()
        by_job["early_grad_norm_level"] = level
        # a spike is a window's maximum far above the job's own usual level
        by_job["early_grad_norm_spike"] = g["max"].max() / level.where(level > 0)

    throughput = health[health["metric"].astype(str).isin(_THROUGHPUT)]
    if not throughput.empty:
        # one throughput metric per job: samples/s where logged, else tokens/s
        rank = throughput["metric"].astype(str).map({m: i for i, m in enumerate(_THROUGHPUT)})
        best = rank.groupby(throughput["job_id"]).transform("min")
        throughput = throughput[(rank == best).to_numpy(dtype=bool)]
        g = throughput.groupby("job_id")
        baseline = g["mean"].first()  # the job's own early steady state: its first window
        by_job["early_throughput_ratio"] = (g["mean"].last() / baseline.where(baseline > 0)).where(g.size() > 1)

    memory = health[health["metric"].astype(str) == _GPU_MEMORY]
    if not memory.empty:
        by_job["early_gpu_memory_headroom"] = 1.0 - memory.groupby("job_id")["max"].max()

    ids = jobs["job_id"].astype(str)
    for name, values in by_job.items():
        mapped = ids.map(values).astype("float64")
        out[name] = mapped.fillna(0.0) if name == "early_logged" else mapped
    return out


def job_features(jobs: pd.DataFrame, run_health: pd.DataFrame | None, horizon_minutes: float,
                 now: pd.Timestamp | None = None, *, context: pd.DataFrame | None = None,
                 burst_hours: float = DEFAULT_BURST_HOURS) -> pd.DataFrame:
    """The model's features per job (index as `jobs`), each known at start + horizon (or `now`)."""
    numeric, categorical = feature_columns(horizon_minutes)
    ref = jobs if context is None else pd.concat([context, jobs], ignore_index=True).drop_duplicates(
        "job_id", keep="last")
    parts = [_spec(jobs), launch_context(jobs, ref, burst_hours=burst_hours, now=now)]
    if horizon_minutes > 0:
        parts.append(early_signals(jobs, run_health, horizon_minutes, now))
    frame = pd.concat(parts, axis=1)
    return frame[list(numeric + categorical)]


# ---------------------------------------------------------------------------------------------
# training and evaluation


def risk_pipeline(numeric: Sequence[str], categorical: Sequence[str], c: float) -> Pipeline:
    """The model: numbers imputed (median, with missing flags) and scaled, categories one-hot, into a
    logistic regression with balanced class weights (the benchmark fits the same on the Alibaba trace)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = Pipeline([
        # keep_empty_features: a feature no training job had (no grad_norm logged) must keep its column
        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
        ("scale", StandardScaler()),
    ])
    columns = ColumnTransformer([
        ("num", numbers, list(numeric)),
        ("cat", OneHotEncoder(handle_unknown="ignore"), list(categorical)),
    ], sparse_threshold=0.0)
    classifier = LogisticRegression(class_weight="balanced", C=c, max_iter=2000)
    return Pipeline([("features", columns), ("classifier", classifier)])


def _population(jobs: pd.DataFrame, labels: pd.Series, horizon_minutes: float,
                now: pd.Timestamp | None) -> pd.DataFrame:
    """The finished, labelled jobs a model for this horizon learns from, in launch order."""
    ids = jobs["job_id"].astype(str)
    started = pd.to_datetime(jobs["started_at"], utc=True)
    ended = pd.to_datetime(jobs["ended_at"], utc=True)
    keep = ids.isin(labels.index) & started.notna()
    if now is not None:
        # an outcome after `now` was not known yet
        keep &= ended.notna() & (ended <= now)
    if horizon_minutes > 0:
        # still running at the horizon: an earlier end would already have told the outcome
        keep &= ended.isna() | (ended > started + pd.Timedelta(minutes=float(horizon_minutes)))
    frame = jobs[keep.to_numpy(dtype=bool)].copy()
    frame["_failed"] = frame["job_id"].astype(str).map(labels).astype(bool)
    return frame.sort_values("started_at", kind="stable")


def _reliability(y: np.ndarray, p: np.ndarray) -> list[dict[str, Any]]:
    bins = np.clip(np.digitize(p, _RELIABILITY_BINS[1:-1], right=False), 0, len(_RELIABILITY_BINS) - 2)
    rows = []
    for b in range(len(_RELIABILITY_BINS) - 1):
        mask = bins == b
        rows.append({"bin": f"{_RELIABILITY_BINS[b]:.1f}-{_RELIABILITY_BINS[b + 1]:.1f}", "n": int(mask.sum()),
                     "mean_risk": float(p[mask].mean()) if mask.any() else None,
                     "failure_rate": float(y[mask].mean()) if mask.any() else None})
    return rows


def _metrics(y: np.ndarray, p: np.ndarray, threshold: float, train_rate: float) -> dict[str, Any]:
    from sklearn.metrics import brier_score_loss, precision_score, recall_score, roc_auc_score

    predicted = p >= threshold
    majority = bool(train_rate > 0.5)
    two_classes = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, p)) if two_classes else None,
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)) if y.any() else None,
        "accuracy": float((predicted == y).mean()),
        "baseline_accuracy": float((y == majority).mean()),  # always say the training set's majority class
        "baseline_auc": 0.5,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        # the majority baseline as a probability: the training failure rate for everyone
        "baseline_brier": float(np.mean((train_rate - y) ** 2)) if len(y) else None,
        "reliability": _reliability(y, p),
    }


def evaluate_time_ordered(jobs: pd.DataFrame, run_health: pd.DataFrame | None, labels: pd.Series,
                          horizon_minutes: float = 0.0, now: pd.Timestamp | None = None, *,
                          test_fraction: float = DEFAULT_TEST_FRACTION, threshold: float = DEFAULT_THRESHOLD,
                          burst_hours: float = DEFAULT_BURST_HOURS, c: float = 1.0) -> dict[str, Any]:
    """Train on the earlier jobs (by started_at), test on the later `test_fraction`: AUC, precision and
    recall at `threshold`, accuracy beside the majority-class baseline (AUC 0.5), Brier score beside
    the base-rate Brier, and a reliability table. Never raises for too little data: `skipped` says why.

    Test jobs' launch context may use any job that ended before they started, training or test: that
    is what the fleet knew then.
    """
    numeric, categorical = feature_columns(horizon_minutes)
    population = _population(jobs, labels, horizon_minutes, now)
    n = len(population)
    n_test = int(round(n * test_fraction))
    base = {"horizon_minutes": float(horizon_minutes), "threshold": float(threshold), "n_jobs": n,
            "n_train": n - n_test, "n_test": n_test, "split": "time-ordered by started_at"}
    if n_test < 1 or n - n_test < 2:
        return {**base, "skipped": f"too few finished jobs to split in time ({n})"}
    train, test = population.iloc[: n - n_test], population.iloc[n - n_test:]
    y_train, y_test = train["_failed"].to_numpy(), test["_failed"].to_numpy()
    base.update({"split_at": str(test["started_at"].iloc[0]), "train_failures": int(y_train.sum()),
                 "test_failures": int(y_test.sum())})
    if len(np.unique(y_train)) < 2:
        return {**base, "skipped": "the earlier jobs hold one outcome only"}
    features = job_features(population, run_health, horizon_minutes, now, context=jobs, burst_hours=burst_hours)
    pipeline = risk_pipeline(numeric, categorical, c).fit(features.loc[train.index], y_train)
    p = pipeline.predict_proba(features.loc[test.index])[:, 1]
    return {**base, **_metrics(y_test, p, threshold, float(y_train.mean()))}


def fit_risk_model(jobs: pd.DataFrame, run_health: pd.DataFrame | None, labels: pd.Series,
                   horizon_minutes: float = 0.0, now: pd.Timestamp | None = None, *,
                   threshold: float = DEFAULT_THRESHOLD, test_fraction: float = DEFAULT_TEST_FRACTION,
                   burst_hours: float = DEFAULT_BURST_HOURS, c: float = 1.0) -> RiskModel:
    """Evaluate in time order, then fit on every finished, labelled job still running at the horizon.

    `labels`: per job_id, True = failed (see `failure_labels`); jobs absent from it (cancelled,
    running) are not examples. Raises RiskModelError when the jobs hold one outcome only.
    """
    numeric, categorical = feature_columns(horizon_minutes)
    population = _population(jobs, labels, horizon_minutes, now)
    y = population["_failed"].to_numpy()
    if len(np.unique(y)) < 2:
        raise RiskModelError(f"cannot train a failure model: {len(y)} finished job(s) with "
                             f"{int(y.sum())} failure(s); both outcomes are needed")
    evaluation = evaluate_time_ordered(jobs, run_health, labels, horizon_minutes, now, test_fraction=test_fraction,
                                       threshold=threshold, burst_hours=burst_hours, c=c)
    features = job_features(population, run_health, horizon_minutes, now, context=jobs, burst_hours=burst_hours)
    pipeline = risk_pipeline(numeric, categorical, c).fit(features, y)
    evaluation = {**evaluation, "coefficients": _coefficients(pipeline)}
    return RiskModel(pipeline=pipeline, numeric=numeric, categorical=categorical,
                     horizon_minutes=float(horizon_minutes), threshold=float(threshold), evaluation=evaluation,
                     burst_hours=float(burst_hours), n_train=len(y), trained_at=now)


def _names(pipeline: Pipeline) -> list[str]:
    names = pipeline.named_steps["features"].get_feature_names_out()
    return [n.split("__", 1)[-1].replace("missingindicator_", "missing:") for n in names]


def _one_hot_name(name: str, categorical: Sequence[str]) -> str:
    for column in categorical:
        if name.startswith(f"{column}_"):
            return f"{column}={name[len(column) + 1:]}"
    return name


def _coefficients(pipeline: Pipeline) -> dict[str, float]:
    """The model's log-odds weight per transformed feature, largest magnitude first."""
    coef = pipeline.named_steps["classifier"].coef_[0]
    categorical = pipeline.named_steps["features"].transformers_[1][2]
    names = [_one_hot_name(n, categorical) for n in _names(pipeline)]
    order = np.argsort(-np.abs(coef))
    return {names[i]: round(float(coef[i]), 4) for i in order}


def score_jobs(model: RiskModel, jobs: pd.DataFrame, run_health: pd.DataFrame | None,
               now: pd.Timestamp | None = None, *, context: pd.DataFrame | None = None) -> pd.DataFrame:
    """Risk of failure per job in `jobs`: job_id, risk (0-1), top_factors.

    Each job is scored with what was known at min(start + the model's horizon, `now`): its spec, the
    launch context from `jobs` and `context` (extra registry rows that are not scored), and its
    early `run_health` windows. top_factors: the model's `TOP_FACTORS` largest contributions
    (coefficient × standardised value; see the module doc), "name +0.42" joined by "; ".
    """
    if jobs.empty:
        return pd.DataFrame({"job_id": pd.Series(dtype="string"), "risk": pd.Series(dtype="float64"),
                             "top_factors": pd.Series(dtype="string")})
    ref = jobs if context is None else pd.concat([context, jobs], ignore_index=True).drop_duplicates(
        "job_id", keep="last")
    features = job_features(jobs, run_health, model.horizon_minutes, now, context=ref,
                            burst_hours=model.burst_hours)
    pipeline = model.pipeline
    risk = pipeline.predict_proba(features)[:, 1]
    transformed = np.asarray(pipeline.named_steps["features"].transform(features), dtype="float64")
    contribution = transformed * pipeline.named_steps["classifier"].coef_[0]
    names = np.array([_one_hot_name(n, model.categorical) for n in _names(pipeline)], dtype=object)
    top = np.argsort(-np.abs(contribution), axis=1, kind="stable")[:, :TOP_FACTORS]
    picked = np.take_along_axis(contribution, top, axis=1)
    factors = ["; ".join(f"{names[i]} {v:+.2f}" for i, v in zip(row, values) if v != 0.0)
               for row, values in zip(top, picked)]
    return pd.DataFrame({"job_id": jobs["job_id"].astype("string").to_numpy(), "risk": risk.astype("float64"),
                         "top_factors": pd.array(factors, dtype="string")})
