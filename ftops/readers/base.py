"""What every reader returns: accepted rows in a canonical table and rejected rows with a reason.

Row accounting works on the source's *records* (a CSV/JSONL line, a Parquet row, a
`log_history` entry, an exposition sample line), which staging counts from the file itself
(`readers.records.count_records`), apart from the parse. A reader says how many records it
accounted for (`records_accounted`); the two must agree, so a record the reader lost is seen:

- one record, one row (long exports, job registries, bills): a record is accounted for when it
  became an accepted row, a rejected row, or an identical repeat dropped and counted in
  `duplicates`; `records_accounted = accepted + rejected + duplicates`.
- one record, several samples (wide exports, W&B CSVs, trainer_state entries) or several
  records, one sample (Prometheus used/free pairs): the reader tracks record ids and sets
  `records_out` = records that produced at least one sample or rejection, plus records it
  skipped on purpose because they hold nothing ftops tracks (an all-empty wide row, a series
  of an unknown exporter), counted where it skips them (`skipped`). A record that produced
  neither is a loss and unbalances the file.

A reader that refuses a whole file (unreadable, wrong format) returns one rejected record for
the file (`record` null); it stands for every record of the file (`whole_file_rejected`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Iterable

import numpy as np
import pandas as pd

from ftops.schemas import REJECTED_RECORDS, Table, validate


class ReaderError(ValueError):
    """A source cannot be read at all (missing, not the expected format). The message says why."""


@dataclass(frozen=True)
class ReadResult:
    table: str
    accepted: pd.DataFrame
    rejected: pd.DataFrame = field(default_factory=REJECTED_RECORDS.empty)
    duplicates: int = 0  # identical repeats of an accepted row in the source, dropped and counted
    records_out: int | None = None  # fan-out/fan-in readers: records accounted for (see the module doc)
    skipped: int = 0  # records holding nothing ftops tracks, skipped on purpose (included in records_out)

    @property
    def rows_in(self) -> int:
        """Rows this result holds: accepted + rejected."""
        return len(self.accepted) + len(self.rejected)

    @property
    def records_accounted(self) -> int:
        """Source records this reader accounted for; compare with the file's own count."""
        if self.records_out is not None:
            return self.records_out
        return len(self.accepted) + len(self.rejected) + self.duplicates + self.skipped

    @property
    def whole_file_rejected(self) -> bool:
        """The reader refused the file as a whole: its one rejection stands for every record."""
        return self.accepted.empty and len(self.rejected) >= 1 and bool(self.rejected["record"].isna().all())

    def with_records(self, records_out: int, skipped: int = 0) -> "ReadResult":
        return replace(self, records_out=records_out, skipped=skipped)

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
        duplicates=sum(r.duplicates for r in results),
        skipped=sum(r.skipped for r in results),
    )


def count_distinct(*ids: np.ndarray | pd.Index | pd.Series) -> int:
    """How many distinct record ids the arrays hold together (records with any outcome)."""
    parts = [np.asarray(i).astype("int64", copy=False).ravel() for i in ids if len(i)]
    return int(len(np.unique(np.concatenate(parts)))) if parts else 0
