"""`ftops check-run` and the ingest read a file with the same readers, so they must agree on it:
the same samples accepted, the same rows refused for the same reasons, the same files refused whole.
Only staging places rows in partitions, so its time-bound rejections are the one expected difference."""

from __future__ import annotations

import pandas as pd
import pytest

from ftops.check_run import read_paths
from ftops_tests.test_staging import CORPUS, _inbox, _staging

TIME_BOUNDS = ("in the future", "before the first partition")


def _staged_by_file(tmp_path):
    staging = _staging(tmp_path)
    inbox = _inbox(tmp_path)
    staged = {f.relpath: f for f in staging.stage_inbox(inbox) if f.kind == "metrics"}
    rejected, _ = staging.load_rejected()
    return inbox, staged, rejected


def test_check_run_and_ingest_agree_on_every_metric_file_of_the_bad_input_corpus(tmp_path):
    inbox, staged, rejected = _staged_by_file(tmp_path)
    assert len(staged) >= 40
    disagreements = []
    for relpath, f in sorted(staged.items()):
        found = read_paths([inbox / relpath])
        mine = rejected[rejected["source"] == relpath]
        time_bound = mine["reason"].str.contains("|".join(TIME_BOUNDS)).sum()
        if f.file_rejected:
            if not found.problems:
                disagreements.append(f"{relpath}: ingest refuses the whole file, check-run reads it")
            continue
        if found.problems:
            disagreements.append(f"{relpath}: check-run refuses it ({found.problems}), ingest reads it")
            continue
        if len(found.samples) != f.accepted + time_bound:
            disagreements.append(f"{relpath}: check-run accepts {len(found.samples)}, "
                                 f"ingest {f.accepted} (+{time_bound} outside the partitions)")
        theirs = sorted(found.rejected["reason"].astype(str))
        ours = sorted(r for r in mine["reason"].astype(str) if not any(b in r for b in TIME_BOUNDS))
        if theirs != ours:
            disagreements.append(f"{relpath}: rejection reasons differ: check-run {theirs} vs ingest {ours}")
    assert not disagreements, "\n".join(disagreements)


@pytest.mark.parametrize("name", ["long-missing-value.jsonl", "long-out-of-range.csv", "long-conflict.jsonl",
                                  "long-latin1.jsonl", "long.csv.gz", "long-future.tsv"])
def test_named_cases_are_in_the_corpus(name):
    # the agreement above covers these cases of issue 7 only while the corpus holds them
    assert any(p.name == name for p in (CORPUS / "metrics").iterdir())
