"""Job shards: a stable hash of `job_id` into a fixed number of shards.

A shard is named by its index and the count, `3-of-8`: the name says which hashing placed a job
there, so a table written under 8 shards is never read as if it held the jobs of 16. Changing the
count makes new names; the old files are left where they are and nothing reads them.

The hash is CRC-32 of the UTF-8 job id, the same in every process, Python version and machine
(Python's own `hash` is salted per process). It is computed once per distinct job id, not per sample.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

_KEY = re.compile(r"^(\d+)-of-(\d+)$")


def shard_of(job_id: str, count: int) -> int:
    """The shard index (0 .. count-1) of one job id."""
    return zlib.crc32(str(job_id).encode("utf-8")) % count


def shard_indices(job_ids: pd.Series | Iterable[str], count: int) -> np.ndarray:
    """The shard index of every element, hashing each distinct job id once."""
    codes, uniques = pd.factorize(pd.Series(job_ids, dtype="object"), use_na_sentinel=True)
    per_unique = np.fromiter((shard_of(j, count) for j in uniques), dtype=np.int64, count=len(uniques))
    out = np.full(len(codes), -1, dtype=np.int64)  # a missing job id belongs to no shard
    known = codes >= 0
    out[known] = per_unique[codes[known]]
    return out


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"shard {self.index} of {self.count}: need 0 <= index < count and count >= 1")

    @property
    def key(self) -> str:
        width = len(str(self.count - 1))
        return f"{self.index:0{width}d}-of-{self.count}"

    @classmethod
    def parse(cls, key: str) -> "Shard":
        match = _KEY.match(key)
        if not match:
            raise ValueError(f"{key!r} is not a shard key (expected like '3-of-8')")
        return cls(int(match.group(1)), int(match.group(2)))

    def holds(self, job_ids: pd.Series | Iterable[str]) -> np.ndarray:
        """A boolean mask: which of these job ids hash to this shard."""
        return shard_indices(job_ids, self.count) == self.index

    def select(self, job_ids: Iterable[str]) -> list[str]:
        """The job ids (from a short list, e.g. a file's) that hash to this shard."""
        return [j for j in job_ids if shard_of(j, self.count) == self.index]


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(count)]
