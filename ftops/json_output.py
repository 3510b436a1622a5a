"""Strict JSON for the `--json` outputs of the ftops commands: no NaN, no Infinity, no numpy types."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def json_value(value: Any) -> Any:
    """A table cell as a JSON value: null for missing and non-finite numbers, ISO-8601 for times."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bool):
        return value
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
