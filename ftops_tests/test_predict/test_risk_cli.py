"""`ftops risk`: scores from registries, and exit 2 with one line for what it cannot use."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from ftops.risk_cli import add_risk_parser


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_risk_parser(parser.add_subparsers())
    args = parser.parse_args(["risk", *argv])
    return args.func(args)


def _registry(path, n: int, seed: int, failures: bool = True, offset_days: int = 0) -> str:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=offset_days) + pd.to_timedelta(
        np.arange(n) * 5, unit="h")
    gpu = rng.choice(["A10G", "H100"], n)
    failed = (gpu == "A10G") & (rng.random(n) < 0.8) if failures else np.zeros(n, dtype=bool)
    frame = pd.DataFrame({
        "job_id": [f"s{seed}-{i}" for i in range(n)], "technique": "lora", "model_params_b": 8.0, "seq_len": 2048,
        "batch_size": 4, "grad_accum": 4, "epochs": 1, "gpu_type": gpu, "gpu_count": 1,
        "status": np.where(failed, "failed", "succeeded"), "started_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ended_at": (start + pd.Timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return str(path)


def test_scores_registry_runs_as_json(tmp_path, capsys):
    train = _registry(tmp_path / "train" / "jobs.csv", 40, 1)
    score = _registry(tmp_path / "score" / "jobs.csv", 8, 2, offset_days=30)
    assert _run(["--train", train, "--score", score, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 8 and {"job_id", "risk", "top_factors"} == set(out[0])
    risk = {o["job_id"]: o["risk"] for o in out}
    assert all(0 <= r <= 1 for r in risk.values())


@pytest.mark.parametrize("argv, message", [
    (["--train", "{missing}", "--score", "{score}"], "file or folder not found"),
    (["--train", "{train}", "--score", "{score}", "--horizon-minutes", "-1"], "--horizon-minutes"),
    (["--train", "{train}", "--score", "{score}", "--horizon-minutes", "ten"], "--horizon-minutes"),
    (["--train", "{empty}", "--score", "{score}"], "no runs found"),
    (["--train", "{one_class}", "--score", "{score}"], "both outcomes"),
])
def test_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    paths = {"train": _registry(tmp_path / "t" / "jobs.csv", 30, 1),
             "score": _registry(tmp_path / "s" / "jobs.csv", 4, 2),
             "one_class": _registry(tmp_path / "o" / "jobs.csv", 10, 3, failures=False),
             "missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    assert _run([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("ftops risk:")


def test_the_evaluation_line_says_how_far_to_trust_the_scores():
    from ftops.risk_cli import evaluation_line

    line = evaluation_line({"n_train": 43, "n_test": 19, "auc": 0.729, "precision": 1.0, "recall": 0.4,
                            "accuracy": 0.842, "baseline_accuracy": 0.737, "brier": 0.174, "baseline_brier": 0.211})
    assert "AUC 0.729 (majority baseline 0.5)" in line and "earlier 43 runs" in line
    assert evaluation_line({"skipped": "one outcome only"}) == "evaluation: skipped (one outcome only)"
