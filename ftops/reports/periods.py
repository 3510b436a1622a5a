"""Report periods named as people write them: `2026-11` (a calendar month), `2026-W47` (an ISO week)."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

from ftops.costs.periods import PeriodWindow, period_window

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


def parse_period(key: str) -> PeriodWindow:
    """The month or ISO week a key names; ValueError with the accepted syntax otherwise."""
    text = str(key).strip()
    try:
        if m := _MONTH.match(text):
            start = pd.Timestamp(year=int(m[1]), month=int(m[2]), day=1, tz="UTC")
            return period_window(start, "month")
        if m := _WEEK.match(text):
            monday = dt.date.fromisocalendar(int(m[1]), int(m[2]), 1)
            return period_window(pd.Timestamp(monday, tz="UTC"), "week")
    except ValueError:
        pass
    raise ValueError(f"period {key!r}: write a month as YYYY-MM (2026-11) or an ISO week as YYYY-Www (2026-W47)")


def previous_period(window: PeriodWindow) -> PeriodWindow:
    """The period of the same kind just before `window`."""
    return period_window(window.start - pd.Timedelta(hours=1), window.period)
