"""Hits: the firing samples a rule returns, before consecutive ones are merged into anomalies."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.series import MetricFrame
from ftops.schemas import SEVERITIES

# a hit's severity is its index in SEVERITIES, so the worst of several is their maximum
INFO, WARNING, CRITICAL = range(len(SEVERITIES))

HIT_COLUMNS = ("rule", "job", "device", "group", "seq", "ts", "step", "value", "severity", "threshold",
               "ref", "score", "badness", "window", "last_in_series")


def _at(x: float | np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    if x is None:
        return np.full(len(idx), np.nan)
    if np.ndim(x) == 0:
        return np.full(len(idx), x)
    return np.asarray(x)[idx]


def make_hits(frame: MetricFrame, rule: str, mask: np.ndarray, severity: int | np.ndarray,
              threshold: float | np.ndarray, window: str, ref: float | np.ndarray | None = None,
              score: float | np.ndarray | None = None, badness: np.ndarray | None = None,
              value: np.ndarray | None = None) -> pd.DataFrame:
    """Firing rows of `frame` under `mask` as a hits frame.

    `ref` is what the value was compared with (a median, a baseline), `score` how far off it is
    (robust z, a ratio); `badness` orders samples of one window to pick the worst (default: the
    value, or its negative for rules where low is bad, chosen by the caller).
    """
    # every column is gathered at the firing rows only: rules fire on a tiny share of samples
    idx = np.flatnonzero(mask)
    n = len(frame)
    values = np.asarray(frame.value if value is None else value)[idx]
    bad = values if badness is None else np.asarray(badness)[idx]
    group = frame.group[idx]
    nxt = np.minimum(idx + 1, max(n - 1, 0))
    is_last = (idx == n - 1) | (frame.group[nxt] != group)
    return pd.DataFrame({
        "rule": rule,
        "job": frame.group_job[group],
        "device": frame.group_device[group],
        "group": group,
        "seq": idx,
        "ts": frame.ts[idx],
        "step": frame.step[idx],
        "value": values,
        "severity": _at(severity, idx).astype(np.int8),
        "threshold": _at(threshold, idx).astype(float),
        "ref": _at(ref, idx).astype(float),
        "score": _at(score, idx).astype(float),
        # NaN/inf are the worst a value can be
        "badness": np.where(np.isfinite(bad), bad, np.inf),
        "window": window,
        "last_in_series": is_last,
    })


def empty_hits() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("rule", "window") else float) for c in HIT_COLUMNS})


def run_position(fire: np.ndarray, group: np.ndarray) -> np.ndarray:
    """0-based position of each firing sample within its run of consecutive firing samples; -1 elsewhere."""
    n = len(fire)
    if n == 0:
        return np.array([], dtype=np.int64)
    start = fire & ~np.r_[False, fire[:-1] & (group[1:] == group[:-1])]
    idx = np.arange(n)
    last_start = np.maximum.accumulate(np.where(start, idx, 0))
    return np.where(fire, idx - last_start, -1)


def run_length(fire: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Length of the run of consecutive firing samples each sample belongs to; 0 elsewhere."""
    pos = run_position(fire, group)
    n = len(fire)
    if n == 0:
        return pos
    # the run's last sample holds its length; spread it back over the run
    end = fire & ~np.r_[fire[1:] & (group[1:] == group[:-1]), False]
    idx = np.arange(n)
    next_end = np.minimum.accumulate(np.where(end, idx, n)[::-1])[::-1]
    length = np.where(next_end < n, pos[np.minimum(next_end, n - 1)] + 1, 0)
    return np.where(fire, length, 0)
