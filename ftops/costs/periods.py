"""Budget periods: the calendar month, ISO week or UTC day that contains a moment."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ftops.schemas import Period, utc_timestamp


@dataclass(frozen=True)
class PeriodWindow:
    period: Period
    key: str  # "2024-09", "2024-W38", "2024-09-18": part of every action's idempotency key
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive


def period_window(now: pd.Timestamp, period: Period = "month") -> PeriodWindow:
    """The period of kind `period` containing `now` (UTC; weeks start on Monday, as ISO weeks do)."""
    now = utc_timestamp(now)
    day = now.normalize()
    if period == "month":
        start = day.replace(day=1)
        return PeriodWindow(period, f"{start.year:04d}-{start.month:02d}", start, start + pd.DateOffset(months=1))
    if period == "week":
        start = day - pd.Timedelta(days=day.weekday())
        iso = start.isocalendar()
        return PeriodWindow(period, f"{iso[0]:04d}-W{iso[1]:02d}", start, start + pd.Timedelta(days=7))
    if period == "day":
        return PeriodWindow(period, day.strftime("%Y-%m-%d"), day, day + pd.Timedelta(days=1))
    raise ValueError(f"unknown budget period {period!r}; allowed: 'month', 'week', 'day'")
