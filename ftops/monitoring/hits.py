"""Hits: the firing samples a rule returns, before consecutive ones are merged into anomalies."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.series import MetricFrame

SEVERITIES = ("info", "warning", "critical")
INFO, WARNING, CRITICAL = 0, 1, 2

HIT_COLUMNS = ("rule", "job", "device", "group", "seq", "ts", "step", "value", "severity", "threshold",
               "ref", "score", "badness", "window", "last_in_series")


def _full(x: float | np.ndarray | None, n: int, mask: np.ndarray) -> np.ndarray:
    if x is None:
        return np.full(int(mask.sum()), np.nan)
    if np.ndim(x) == 0:
        return np.full(int(mask.sum()), x)
    return np.asarray(x)[mask]


def make_hits(frame: MetricFrame, rule: str, mask: np.ndarray, severity: int | np.ndarray,
              threshold: float | np.ndarray, window: str, ref: float | np.ndarray | None = None,
              score: float | np.ndarray | None = None, badness: np.ndarray | None = None,
              value: np.ndarray | None = None) -> pd.DataFrame:
    """Firing rows of `frame` under `mask` as a hits frame.

    `ref` is what the value was compared with (a median, a baseline), `score` how far off it is
    (robust z, a ratio); `badness` orders samples of one window to pick the worst (default: the
    value, or its negative for rules where low is bad, chosen by the caller).
    """
    mask = np.asarray(mask, dtype=bool)
    n = len(frame)
    values = frame.value if value is None else value
    is_last = np.r_[frame.group[1:] != frame.group[:-1], True] if n else np.array([], bool)
    bad = values if badness is None else badness
    return pd.DataFrame({
        "rule": rule,
        "job": frame.job[mask],
        "device": frame.device[mask],
        "group": frame.group[mask],
        "seq": np.flatnonzero(mask),
        "ts": frame.ts[mask],
        "step": frame.step[mask],
        "value": values[mask],
        "severity": _full(severity, n, mask).astype(np.int8),
        "threshold": _full(threshold, n, mask).astype(float),
        "ref": _full(ref, n, mask).astype(float),
        "score": _full(score, n, mask).astype(float),
        # NaN/inf are the worst a value can be
        "badness": np.where(np.isfinite(bad[mask]), bad[mask], np.inf),
        "window": window,
        "last_in_series": is_last[mask],
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
