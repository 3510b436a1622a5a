"""The one run-config field every asset that evaluates "now" takes, so backfills and tests can pin it."""

import dagster as dg
import pandas as pd

from ftops.schemas import utc_timestamp


class AsOfConfig(dg.Config):
    """Evaluate as of this time (ISO-8601, UTC); empty means now. For reproducible backfills and tests."""

    as_of: str = ""

    def now(self) -> pd.Timestamp:
        return utc_timestamp(self.as_of) if self.as_of else pd.Timestamp.now(tz="UTC")
