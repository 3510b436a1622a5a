"""Failure-risk model: no leakage, launch context from earlier jobs only, time-ordered evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ftops.predict.risk import (
    CONTEXT_NUMERIC, EARLY_NUMERIC, LEAKY_COLUMNS, RiskModel, failure_labels, feature_columns, fit_risk_model,
    job_features, launch_context, score_jobs, evaluate_time_ordered,
)
from ftops.schemas import JOBS, RUN_HEALTH, validate

NOW = pd.Timestamp("2024-06-01", tz="UTC")


def _fleet(n: int = 300, seed: int = 3) -> pd.DataFrame:
    """Jobs whose failures depend on the spec: most jobs on the small GPU fail."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 120 * 24, n)), unit="h")
    gpu = rng.choice(["A10G", "A100-80GB", "H100"], n)
    seq = rng.choice([1024, 2048, 4096], n)
    risky = gpu == "A10G"
    failed = rng.random(n) < np.where(risky, 0.85, 0.08)
    return validate(pd.DataFrame({
        "job_id": [f"j{i:04d}" for i in range(n)], "name": [f"run-{i}" for i in range(n)],
        "technique": rng.choice(["lora", "full"], n), "base_model": "llama-8b", "model_params_b": 8.0,
        "seq_len": seq, "batch_size": rng.choice([4, 8], n), "grad_accum": 4, "epochs": 1.0,
        "gpu_type": gpu, "gpu_count": 1, "pricing": "on_demand", "dataset_samples": 10_000,
        "status": np.where(failed, "failed", "succeeded"), "started_at": start,
        "ended_at": start + pd.to_timedelta(rng.uniform(0.5, 5, n), unit="h"),
        "exit_reason": np.where(failed, "oom", None), "total_steps": 100,
    }), JOBS)


def test_features_never_derive_from_end_or_outcome():
    for horizon in (0, 10):
        numeric, categorical = feature_columns(horizon)
        names = numeric + categorical
        assert not [n for n in names if any(word in n for word in LEAKY_COLUMNS)]
        assert set(CONTEXT_NUMERIC) <= set(names)
        assert bool(set(EARLY_NUMERIC) & set(names)) == (horizon > 0)
    jobs = _fleet(20)
    features = job_features(jobs, None, 0, NOW)
    assert list(features.columns) == list(sum(feature_columns(0), ()))
    # rewriting every job's end, exit and length changes none of its features
    other = jobs.assign(ended_at=jobs["started_at"] + pd.Timedelta(minutes=1), exit_reason=None, total_steps=1)
    pd.testing.assert_frame_equal(features, job_features(other, None, 0, NOW))


def _job(job_id: str, start: str, end: str | None, status: str, **spec) -> dict:
    return {"job_id": job_id, "name": "exp", "technique": "full", "base_model": "llama-7b", "model_params_b": 7.0,
            "batch_size": 2, "grad_accum": 16, "seq_len": 512, "epochs": 3.0, "gpu_type": "A100-80GB",
            "gpu_count": 8, "status": status, "started_at": pd.Timestamp(start, tz="UTC"),
            "ended_at": pd.Timestamp(end, tz="UTC") if end else pd.NaT, **spec}


def test_launch_context_counts_only_what_ended_or_launched_before():
    jobs = validate(pd.DataFrame([
        _job("a", "2024-01-01 10:00", "2024-01-01 10:05", "failed"),
        _job("b", "2024-01-01 10:10", "2024-01-01 12:00", "failed"),  # still running when c starts
        _job("c", "2024-01-01 10:20", "2024-01-01 10:30", "succeeded"),
        _job("d", "2024-01-02 10:20", "2024-01-02 10:30", "succeeded", batch_size=4),  # another config
    ]), JOBS)
    ctx = launch_context(jobs, burst_hours=6.0, now=NOW).set_index(jobs["job_id"])
    assert ctx.loc["a", "launches_same_config_recent"] == 0
    assert ctx.loc["c", "launches_same_config_recent"] == pytest.approx(np.log1p(2))
    assert ctx.loc["c", "recent_failures_same_config"] == pytest.approx(np.log1p(1))  # a, not b
    assert ctx.loc["c", "failure_rate_same_config"] == pytest.approx((1 + 1) / (1 + 2))
    assert ctx.loc["c", "previous_same_name_failed"] == 1.0
    assert np.isnan(ctx.loc["a", "previous_same_name_failed"])
    assert ctx.loc["d", "failure_rate_same_config"] == 0.5  # never seen: the prior
    assert ctx.loc["d", "launches_same_name_recent"] == 0  # a day later, outside the burst window
    # what happened to b after c started cannot move c's features
    later = jobs.assign(status=jobs["status"].where(jobs["job_id"] != "b", "succeeded"))
    pd.testing.assert_series_equal(ctx.loc["c"], launch_context(later, now=NOW).set_index(jobs["job_id"]).loc["c"])


def test_evaluation_is_time_ordered_and_beats_the_majority_baseline():
    jobs = _fleet()
    labels = failure_labels(jobs)
    ev = evaluate_time_ordered(jobs, None, labels, 0, NOW, test_fraction=0.3)
    assert ev["n_train"] + ev["n_test"] == len(jobs) and ev["n_test"] == 90
    split = pd.Timestamp(ev["split_at"])
    assert (jobs["started_at"] < split).sum() == ev["n_train"]
    assert ev["auc"] > 0.8 > ev["baseline_auc"]
    assert ev["accuracy"] >= ev["baseline_accuracy"] - 0.05
    assert 0 <= ev["brier"] <= 1 and ev["precision"] > 0.5 and ev["recall"] > 0.5
    assert sum(row["n"] for row in ev["reliability"]) == ev["n_test"]


def test_labels_leave_out_cancelled_and_running():
    jobs = validate(pd.DataFrame([
        _job("a", "2024-01-01", "2024-01-02", "failed"), _job("b", "2024-01-01", "2024-01-02", "cancelled"),
        _job("c", "2024-01-01", None, "running"), _job("d", "2024-01-01", "2024-01-02", "preempted"),
        _job("e", "2024-01-01", "2024-01-02", "succeeded")]), JOBS)
    assert failure_labels(jobs).to_dict() == {"a": True, "d": True, "e": False}
    typed = pd.DataFrame({"job_id": ["a"], "status": ["failed"], "failure_type": ["cancelled"]})
    assert "a" not in failure_labels(jobs, typed).index


def _health(job_id: str, start: pd.Timestamp, minutes: range, loss: float, grad: float) -> pd.DataFrame:
    rows = []
    for m in minutes:
        ts = start + pd.Timedelta(minutes=m)
        for metric, value in (("training_loss", loss), ("grad_norm", grad)):
            rows.append({"job_id": job_id, "metric": metric, "window_start": ts.floor("1min"), "window_minutes": 1,
                         "samples": 1, "non_finite": 0, "mean": value, "min": value, "max": value, "last": value,
                         "last_ts": ts, "max_step": m, "max_step_ts": ts, "devices": 0})
    return pd.DataFrame(rows)


def test_early_signals_and_scores_see_only_the_first_minutes():
    jobs = _fleet(120)
    health = validate(pd.concat([_health(j, s, range(0, 30), 2.0 if f == "failed" else 1.0, 3.0)
                                 for j, s, f in zip(jobs["job_id"], jobs["started_at"], jobs["status"])]),
                      RUN_HEALTH)
    model = fit_risk_model(jobs, health, failure_labels(jobs), 10, NOW)
    assert isinstance(model, RiskModel) and set(EARLY_NUMERIC) <= set(model.features)
    scores = score_jobs(model, jobs, health, NOW)
    assert list(scores.columns) == ["job_id", "risk", "top_factors"]
    assert scores["risk"].between(0, 1).all() and (scores["top_factors"].str.count(";") <= 2).all()
    # metrics after the horizon change nothing
    late = health.assign(mean=np.where(health["last_ts"] > health["job_id"].map(
        jobs.set_index("job_id")["started_at"]) + pd.Timedelta(minutes=10), 99.0, health["mean"]))
    pd.testing.assert_frame_equal(scores, score_jobs(model, jobs, late, NOW))
    assert "early_loss_level" in " ".join(scores["top_factors"])


def test_one_outcome_only_is_refused():
    jobs = _fleet(30).assign(status="succeeded")
    with pytest.raises(ValueError, match="both outcomes"):
        fit_risk_model(jobs, None, failure_labels(jobs), 0, NOW)


@pytest.mark.parametrize("n_jobs, days", [(40, 7), (600, 28)])
def test_demo_fleet_time_ordered_auc(n_jobs, days):
    """The demo's failures follow the spec (OOM on 24 GB cards with long sequences, reclaims of long spot
    runs, code errors on fresh configurations): on a fleet large enough to have ~20 failures in its later
    30 %, the model trained on the earlier jobs ranks the later ones well above the majority baseline
    (AUC 0.5). The default demo (40 jobs) leaves 2-4 failures to test on: its AUC is reported, not required
    (one failure ranked one place lower moves it by 0.1-0.3)."""
    from ftops.demo_fleet.plan import plan_fleet
    from ftops.demo_fleet.writers import jobs_frame

    end = pd.Timestamp("2024-03-01", tz="UTC")
    jobs = validate(jobs_frame(plan_fleet(7, n_jobs, days, end)), JOBS)
    ev = evaluate_time_ordered(jobs, None, failure_labels(jobs), 0, end)
    print(json.dumps({k: ev.get(k) for k in ("n_train", "n_test", "train_failures", "test_failures", "auc",
                                             "baseline_auc", "baseline_accuracy")}))
    assert ev["baseline_auc"] == 0.5
    if n_jobs == 40:
        assert ev["auc"] is None or 0.0 <= ev["auc"] <= 1.0
        return
    assert ev["test_failures"] >= 15 and ev["auc"] > 0.6


def test_real_wandb_runs_scored_at_launch(realdata, tmp_path, capsys):
    from ftops.cli import build_parser
    from ftops.risk_cli import add_risk_parser

    runs = sorted((realdata / "runs" / "wandb_stanford_alpaca_early" / "runs").iterdir())
    meta = {r.name: json.loads((r / "wandb-metadata.json").read_text())["startedAt"]
            for r in runs if (r / "wandb-metadata.json").is_file()}
    ordered = sorted(meta, key=meta.get)
    cut = int(len(ordered) * 0.7)
    root = realdata / "runs" / "wandb_stanford_alpaca_early" / "runs"
    import argparse

    parser = argparse.ArgumentParser()
    add_risk_parser(parser.add_subparsers())
    args = parser.parse_args(["risk", "--train", *[str(root / r) for r in ordered[:cut]],
                              "--score", *[str(root / r) for r in ordered[cut:]], "--horizon-minutes", "0", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(o["job_id"] for o in out) == sorted(ordered[cut:])
    assert all(0.0 <= o["risk"] <= 1.0 and isinstance(o["top_factors"], list) for o in out)
    assert build_parser  # the lead wires add_risk_parser into ftops.cli
