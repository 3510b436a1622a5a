"""Small realistic metric series for rule tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2025-03-01 08:00", tz="UTC")


def series(metric: str, values, *, job: str = "job-a", every: str = "1min", device: str | None = None,
           steps=None, start: pd.Timestamp = T0) -> pd.DataFrame:
    """One metric of one job as metric_samples rows, evenly spaced."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    ts = start + pd.to_timedelta(np.arange(n) * pd.Timedelta(every).value, unit="ns")
    step = pd.array(np.arange(1, n + 1) * 10 if steps is None else steps, dtype="Int64")
    return pd.DataFrame({
        "ts": ts, "job_id": job, "metric": metric, "value": values, "step": step,
        "device": pd.array([device] * n, dtype="string"), "host": "node-1", "source": "test",
    })


def noisy(level: float, n: int, rel_noise: float = 0.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level * (1 + rel_noise * rng.standard_normal(n))


def rules_fired(anomalies: pd.DataFrame) -> set[str]:
    return set(anomalies["rule"])
