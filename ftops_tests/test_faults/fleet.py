"""A small demo fleet, its warehouse, and content hashes of every stored table (shared by the fault tests)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ftops.definitions import Settings
from ftops.demo_fleet import write_demo_inbox

# Pinned so the fleet's bytes, its partitions and "now" never depend on the wall clock.
END = pd.Timestamp("2026-03-02T00:00:00Z")


@dataclass(frozen=True)
class Fleet:
    inbox: Path
    policy: Path
    start: str
    end: str

    def settings(self, warehouse: Path) -> Settings:
        return Settings(str(self.inbox), str(warehouse), str(self.policy), ledger=str(warehouse.parent / "ledger"))

    def span(self) -> tuple[str, str]:
        return self.start, self.end


def demo_fleet(folder: Path, n_jobs: int = 16, days: int = 2, seed: int = 3, end: pd.Timestamp = END) -> Fleet:
    """The demo fleet's exports in `folder/inbox`; called again on the same folder, a later export of
    the same fleet overwrites the files of the same name, as a trainer's growing log does."""
    inbox = folder / "inbox"
    manifest = write_demo_inbox(inbox, seed=seed, n_jobs=n_jobs, days=days, end=end)
    policy = folder / "ftops.yaml"
    policy.write_text((inbox / "demo_policy.yaml").read_text())
    return Fleet(inbox, policy, manifest.start.isoformat(), manifest.end.isoformat())


def table_files(warehouse: Path) -> list[Path]:
    """Every asset table file (one per partition); staging and the ledger (`_*`) are not tables."""
    return sorted(p for p in warehouse.rglob("*.parquet")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(warehouse).parts))


# When a notification really went out is a fact of the world, not derived from the inputs: two runs
# of the same data deliver at different wall-clock times and must still count as the same table.
WALL_CLOCK_COLUMNS = {"alert_deliveries": ("last_attempt_at", "delivered_at")}


def table_hash(path: Path, ignore: tuple[str, ...] = ()) -> str:
    """Content hash of a stored table: columns, dtypes and rows, whatever order the rows were written in."""
    df = pd.read_parquet(path)
    return frame_hash(df.drop(columns=[c for c in ignore if c in df.columns]))


def frame_hash(df: pd.DataFrame) -> str:
    """Content hash of a table: columns, dtypes and rows, whatever order the rows are in."""
    rows = np.sort(pd.util.hash_pandas_object(df, index=False).to_numpy()) if len(df) else np.array([], "uint64")
    digest = hashlib.sha256(repr([(c, str(t)) for c, t in df.dtypes.items()]).encode())
    digest.update(rows.tobytes())
    return digest.hexdigest()


def warehouse_hashes(warehouse: Path) -> dict[str, str]:
    """{table file relative to the warehouse: content hash} for every table."""
    hashes = {}
    for path in table_files(warehouse):
        name = path.relative_to(warehouse)
        hashes[str(name)] = table_hash(path, WALL_CLOCK_COLUMNS.get(name.parts[0].removesuffix(".parquet"), ()))
    return hashes
