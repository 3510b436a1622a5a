"""Times of the demo: epoch milliseconds inside, ISO-8601 UTC text in the files."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.schemas import utc_timestamp

MS_PER_S = 1000
MS_PER_H = 3_600_000
MS_PER_DAY = 86_400_000


def default_end(end: pd.Timestamp | None) -> pd.Timestamp:
    if end is None:
        return pd.Timestamp.now(tz="UTC").floor("h")
    return utc_timestamp(end)


def iso(ts: pd.Timestamp) -> str:
    return ts.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def ms_to_iso(ms: np.ndarray, unit: str) -> np.ndarray:
    return np.datetime_as_string(np.asarray(ms, dtype="datetime64[ms]"), unit=unit, timezone="UTC")


def ms_text(ms: int | None) -> str | None:
    if ms is None:
        return None
    return str(np.datetime_as_string(np.datetime64(int(ms), "ms"), unit="s", timezone="UTC"))
