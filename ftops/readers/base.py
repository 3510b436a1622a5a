"""What every reader returns: accepted rows in a canonical table and rejected rows with a reason.

The invariant `rows_in == len(accepted) + len(rejected)` holds for every ReadResult; readers
that refuse a whole file (unreadable, wrong format) put one rejected record for the file and
count it as one row in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from ftops.schemas import REJECTED_RECORDS, Table, validate


class ReaderError(ValueError):
    """A source cannot be read at all (missing, not the expected format). The message says why."""


@dataclass(frozen=True)
class ReadResult:
    table: str
    accepted: pd.DataFrame
    rejected: pd.DataFrame = field(default_factory=REJECTED_RECORDS.empty)

    @property
    def rows_in(self) -> int:
        return len(self.accepted) + len(self.rejected)

    def rejection_counts(self) -> dict[str, int]:
        if self.rejected.empty:
            return {}
        return {str(k): int(v) for k, v in self.rejected["reason"].value_counts().items()}


def rejected_rows(
    raw: pd.DataFrame, reason: str | pd.Series, *, source: str, table: str, record: pd.Series | None = None
) -> pd.DataFrame:
    """Build `rejected_records` rows from the refused raw rows, keeping each row as JSON text."""
    if raw.empty:
        return REJECTED_RECORDS.empty()
    raw_json = raw.astype(object).where(raw.notna(), None).to_dict(orient="records")
    records = record if record is not None else pd.Series(raw.index.astype(str), index=raw.index)
    frame = pd.DataFrame(
        {
            "source": source,
            "table": table,
            "record": records.astype(str).to_numpy(),
            "reason": reason.to_numpy() if isinstance(reason, pd.Series) else reason,
            "raw": [json.dumps(r, default=str) for r in raw_json],
        }
    )
    return validate(frame, REJECTED_RECORDS)


def rejected_file(source: str, table: str, reason: str) -> pd.DataFrame:
    """One rejected record standing for a whole file that could not be read."""
    frame = pd.DataFrame({"source": [source], "table": [table], "record": [None], "reason": [reason], "raw": [None]})
    return validate(frame, REJECTED_RECORDS)


def combine(table: Table, results: Iterable[ReadResult]) -> ReadResult:
    results = list(results)
    accepted = [r.accepted for r in results if not r.accepted.empty]
    rejected = [r.rejected for r in results if not r.rejected.empty]
    return ReadResult(
        table.name,
        pd.concat(accepted, ignore_index=True) if accepted else table.empty(),
        pd.concat(rejected, ignore_index=True) if rejected else REJECTED_RECORDS.empty(),
    )
