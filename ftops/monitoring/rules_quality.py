"""Quality rules (§1.1): validation-loss stagnation and overfitting, domain accuracy, convergence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.hits import WARNING, make_hits
from ftops.monitoring.series import MetricFrame, rolling_median
from ftops.policy import ConvergencePolicy, DomainAccuracyPolicy, ValidationPolicy

_TRAIN_SMOOTHING_SAMPLES = 5  # training loss is noisy per step; compare smoothed levels
_START_SAMPLES = 3  # the loss a run starts from: median of its first logged samples


def asof(target: MetricFrame, source: MetricFrame, values: np.ndarray) -> np.ndarray:
    """For each target row, `values` of the same job's latest source row at or before its ts."""
    left = pd.DataFrame({"job": target.job, "ts": target.ts, "_row": np.arange(len(target))})
    right = pd.DataFrame({"job": source.job, "ts": source.ts, "_v": values})
    right = right[np.isfinite(right["_v"].to_numpy())]
    if left.empty or right.empty:
        return np.full(len(target), np.nan)
    merged = pd.merge_asof(left.sort_values("ts", kind="stable"), right.sort_values("ts", kind="stable"),
                           on="ts", by="job", direction="backward")
    out = np.full(len(target), np.nan)
    out[merged["_row"].to_numpy()] = merged["_v"].to_numpy()
    return out


def _shift_in_group(values: np.ndarray, frame: MetricFrame, k: int) -> np.ndarray:
    """values[i - k] when that row is in the same group, else NaN."""
    n = len(values)
    out = np.full(n, np.nan)
    if k <= 0 or n <= k:
        return values.copy() if k <= 0 else out
    same = frame.group[k:] == frame.group[:-k]
    out[k:] = np.where(same, values[:-k], np.nan)
    return out


def val_loss_hits(val: MetricFrame, train: MetricFrame | None, policy: ValidationPolicy) -> list[pd.DataFrame]:
    """val_loss_stagnation and overfitting (both warnings) on finite validation losses."""
    v = val.take(np.isfinite(val.value))
    patience = policy.stagnation_patience
    best = pd.Series(v.value).groupby(v.group).cummin().to_numpy() if len(v) else v.value
    best_before = _shift_in_group(best, v, patience)
    with np.errstate(invalid="ignore", divide="ignore"):
        improvement = (best_before - best) / np.abs(best_before)
    stagnant = improvement < policy.improvement_ratio
    out = [make_hits(v, "val_loss_stagnation", stagnant, WARNING, policy.improvement_ratio,
                     f"last {patience} evaluations", ref=best_before, score=improvement, badness=-improvement,
                     value=best)]

    k = policy.overfitting_evaluations
    text = f"last {k} evaluations"
    val_before = _shift_in_group(v.value, v, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = (v.value - val_before) / np.abs(val_before)
    if train is not None and len(train):
        t = train.take(np.isfinite(train.value))
        smooth = rolling_median(t.value, t.group, _TRAIN_SMOOTHING_SAMPLES, 1)
        train_now = asof(v, t, smooth)
        train_before = _shift_in_group(train_now, v, k)
        overfit = (rise > policy.overfitting_min_rise_ratio) & (train_now < train_before)
    else:
        train_now = np.full(len(v), np.nan)
        overfit = np.zeros(len(v), dtype=bool)
    out.append(make_hits(v, "overfitting", overfit, WARNING, policy.overfitting_min_rise_ratio, text,
                         ref=val_before, score=train_now, badness=rise))
    return out


def domain_accuracy_hits(frame: MetricFrame, policy: DomainAccuracyPolicy) -> list[pd.DataFrame]:
    """domain_accuracy_low. Reaching the target is news, not an alert: run_health's
    `target_reached` says it (132 of the demo's 192 alerts were that news)."""
    acc = frame.take(np.isfinite(frame.value))
    return [
        make_hits(acc, "domain_accuracy_low", acc.value < policy.minimum, WARNING, policy.minimum,
                  "each evaluation", badness=-acc.value),
    ]


def convergence_hits(loss: MetricFrame, epoch: np.ndarray, policy: ConvergencePolicy) -> pd.DataFrame:
    """slow_convergence: projected epoch of convergence > the expected number of epochs.

    The latest three quarters of the run (in epochs) give three median losses L0, L1, L2 a span d
    apart; an exponential approach to a plateau decays each span by r = (L1 - L2) / (L0 - L1), so
    the plateau is L2 - (L1 - L2) r / (1 - r) and the remaining gap shrinks by r per span. The run
    has converged when the gap is within `plateau_tolerance` of the whole decrease from the start
    of the run to the plateau (relative to the loss itself would never converge on losses that
    head for 0, where halving 0.003 to 0.0015 is still -50 %). A loss that is not
    decelerating (r >= 1) cannot be projected; it is slow only once the run is past the expected
    epochs without converging. Judged once per job, at its latest loss sample.
    """
    finite = np.isfinite(loss.value) & np.isfinite(epoch)
    lf = loss.take(finite)
    text = "last three quarters of the run"
    none = np.zeros(len(lf), dtype=bool)
    if len(lf) == 0:
        return make_hits(lf, "slow_convergence", none, WARNING, policy.max_expected_epochs, text)
    ep = epoch[finite]
    df = pd.DataFrame({"group": lf.group, "epoch": ep, "loss": lf.value})
    start_loss = df.groupby("group")["loss"].apply(lambda s: s.head(_START_SAMPLES).median())
    last_epoch = df.groupby("group")["epoch"].transform("max").to_numpy()
    d = last_epoch / 4.0
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_ = np.floor((ep - (last_epoch - 3 * d)) / d)
    df["bin"] = np.clip(bin_, -1, 2)
    df = df[df["bin"] >= 0]
    stats = df.groupby(["group", "bin"])["loss"].agg(["median", "size"]).unstack("bin")
    stats = stats.reindex(columns=pd.MultiIndex.from_product([["median", "size"], [0.0, 1.0, 2.0]]))
    med = stats["median"].to_numpy()
    size = stats["size"].fillna(0).to_numpy()
    groups = stats.index.to_numpy()
    l0, l1, l2 = med[:, 0], med[:, 1], med[:, 2]
    span = (pd.Series(last_epoch).groupby(lf.group).max().reindex(groups).to_numpy()) / 4.0
    end_epoch = span * 4.0
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (l1 - l2) / (l0 - l1)
        plateau = l2 - (l1 - l2) * r / (1 - r)
        gap = l2 - plateau
        start = start_loss.reindex(groups).to_numpy()
        tol = policy.plateau_tolerance * np.abs(start - np.where(np.isfinite(plateau), plateau, l2))
        spans_left = np.where(gap > tol, np.log(tol / gap) / np.log(r), 0.0)
        projected = (end_epoch - span / 2) + span * spans_left
    enough = (size >= 2).all(axis=1) & (end_epoch >= policy.min_epochs_observed)
    # converged already: the last span improved by less than the tolerance of the whole decrease
    converged = (l1 - l2) <= policy.plateau_tolerance * np.abs(start - l2)
    decelerating = (r > 0) & (r < 1)
    slow = enough & ~converged & np.where(decelerating, projected > policy.max_expected_epochs,
                                          end_epoch > policy.max_expected_epochs)
    projected = np.where(decelerating, projected, np.nan)
    # one hit per slow job, at its latest sample
    last_row = np.r_[lf.group[1:] != lf.group[:-1], True]
    per_group_slow = pd.Series(slow, index=groups).reindex(np.arange(lf.n_groups), fill_value=False).to_numpy()
    per_group_proj = pd.Series(projected, index=groups).reindex(np.arange(lf.n_groups)).to_numpy()
    per_group_end = pd.Series(end_epoch, index=groups).reindex(np.arange(lf.n_groups)).to_numpy()
    mask = last_row & per_group_slow[lf.group]
    return make_hits(lf, "slow_convergence", mask, WARNING, policy.max_expected_epochs, text,
                     ref=per_group_end[lf.group], score=per_group_proj[lf.group],
                     badness=per_group_proj[lf.group])
