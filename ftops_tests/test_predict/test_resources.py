"""Resource prediction: the analytic estimate's physics, the fallback while history is short, the fitted
model once there is enough, and the held-out MAPE on the demo fleet."""

from __future__ import annotations

import io
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from ftops.predict.resources import (
    OVERHEAD_GB,
    analytic_gpu_hours,
    analytic_memory,
    analytic_resources,
    fit_resource_model,
    mape,
    predict_resources,
    training_examples,
)

NOW = pd.Timestamp("2026-03-18T09:00:00Z")


def _spec(technique: str, params_b: float = 7.0, gpus: int = 1, batch: int = 1, seq_len: int = 2048,
          gpu_type: str = "A100-80GB", **extra) -> dict:
    return {"job_id": f"{technique}-{params_b}-{gpus}-{batch}", "technique": technique, "model_params_b": params_b,
            "gpu_count": gpus, "batch_size": batch, "grad_accum": 1, "seq_len": seq_len, "gpu_type": gpu_type,
            "dataset_samples": 10_000, "epochs": 1, **extra}


# ------------------------------------------------------------------------------------------ analytic


def test_7b_memory_full_above_lora_above_qlora_with_plausible_gigabytes():
    jobs = pd.DataFrame([_spec("full"), _spec("lora"), _spec("qlora")])
    mem = analytic_memory(jobs).set_index(jobs["technique"])
    # bf16 weights 2 + bf16 gradients 2 + fp32 Adam master and moments 12 = 16 B per parameter
    assert mem.loc["full", "states_gb"] == pytest.approx(7 * 16, rel=1e-9)
    assert mem.loc["full", "optimizer_gb"] == pytest.approx(7 * 12)
    # a frozen bf16 base (14 GB) plus small adapters
    assert 14.0 <= mem.loc["lora", "states_gb"] <= 15.0
    # a 4-bit base, 0.5 B per parameter plus quantisation constants and the bf16 layers
    assert 4.0 <= mem.loc["qlora", "states_gb"] <= 6.0
    assert mem.loc["full", "peak_memory_gb"] > mem.loc["lora", "peak_memory_gb"] > mem.loc["qlora", "peak_memory_gb"]
    # activations depend on the shape, not the technique: equal for the three at one micro-batch
    assert mem["activations_gb"].nunique() == 1 and 0.5 < mem["activations_gb"].iloc[0] < 5.0
    # the shape rule: a 7B model has ~33 layers of hidden ~4,200 (Llama-2 7B: 32 x 4,096)
    assert 30 < mem.loc["lora", "layers"] < 36 and 3_800 < mem.loc["lora", "hidden"] < 4_600
    assert (mem["peak_memory_gb"] == mem["states_gb"] + mem["activations_gb"] + OVERHEAD_GB).all()


def test_activations_grow_with_micro_batch_and_sequence_length():
    jobs = pd.DataFrame([_spec("lora", batch=1), _spec("lora", batch=4), _spec("lora", batch=4, seq_len=4096)])
    act = analytic_memory(jobs)["activations_gb"].to_numpy()
    assert act[1] == pytest.approx(4 * act[0])
    assert act[2] == pytest.approx(2 * act[1])


def test_full_fine_tunes_shard_over_their_gpus_and_adapter_runs_replicate_unless_too_big():
    jobs = pd.DataFrame([_spec("full", gpus=8), _spec("lora", gpus=8), _spec("lora", params_b=70.0, gpus=8)])
    capacity = pd.Series(80.0, index=jobs.index)
    mem = analytic_memory(jobs, capacity)
    assert mem["sharded"].tolist() == [True, False, True]  # a 70B bf16 base (141 GB) cannot be replicated
    per_gpu_states = mem["peak_memory_gb"] - mem["activations_gb"] - OVERHEAD_GB
    assert per_gpu_states[0] == pytest.approx(112 / 8)
    assert per_gpu_states[1] == pytest.approx(mem.loc[1, "states_gb"])
    assert per_gpu_states[2] == pytest.approx(mem.loc[2, "states_gb"] / 8)


def test_gpu_hours_from_flops_over_datasheet_tflops_at_the_mfu():
    jobs = pd.DataFrame([_spec("full"), _spec("lora"), _spec("qlora")])
    est = analytic_resources(jobs, mfu=0.35)
    tokens = 10_000 * 1 * 2048
    a100 = 312e12 * 0.35 * 3600
    assert est["analytic_gpu_hours"].tolist() == pytest.approx(
        [6 * 7e9 * tokens / a100, 4 * 7e9 * tokens / a100, 4 * 7e9 * tokens / a100 * 1.3])
    assert est["gpu_memory_gb"].tolist() == [80.0, 80.0, 80.0]
    # a GPU without a datasheet gives no estimate rather than a guess
    unknown = analytic_gpu_hours(pd.DataFrame([_spec("lora", gpu_type="TPU v5")]), pd.Series([np.nan]))
    assert unknown.isna().all()


# --------------------------------------------------------------------------------- fitted vs fallback

_GPUS = (("A100-80GB", 80.0), ("L40S", 48.0), ("A10G", 24.0), ("H100", 80.0))


def synthetic_fleet(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A registry of ended jobs whose real hours and memory differ from the analytic estimate by a
    factor per technique and GPU (what a fleet's habits do), with 5 % noise; and their memory metrics."""
    rng = np.random.default_rng(seed)
    techniques = rng.choice(["lora", "qlora", "full"], n)
    gpu = rng.integers(0, len(_GPUS), n)
    jobs = pd.DataFrame({
        "job_id": [f"job-{i:03d}" for i in range(n)],
        "technique": techniques,
        "model_params_b": rng.choice([1.5, 3.8, 7.0, 8.0], n),
        "gpu_type": [_GPUS[g][0] for g in gpu],
        "gpu_count": rng.choice([1, 4, 8], n),
        "batch_size": rng.choice([1, 2, 4, 8], n),
        "grad_accum": rng.choice([1, 2, 4], n),
        "seq_len": rng.choice([1024, 2048, 4096], n),
        "dataset_samples": rng.integers(5_000, 50_000, n),
        "epochs": rng.choice([1, 2, 3], n),
        "status": "succeeded",
        "exit_reason": None,
    })
    est = analytic_resources(jobs)
    hours_factor = pd.Series(techniques).map({"lora": 0.6, "qlora": 1.8, "full": 1.2}).to_numpy() \
        * np.array([1.0, 1.4, 0.8, 1.1])[gpu]
    gpu_hours = est["analytic_gpu_hours"].to_numpy() * hours_factor * rng.lognormal(0.0, 0.05, n)
    wall_h = gpu_hours / jobs["gpu_count"].to_numpy()
    ended = NOW - pd.to_timedelta(np.linspace(200.0, 1.0, n), unit="h")
    jobs["started_at"] = ended - pd.to_timedelta(wall_h, unit="h")
    jobs["ended_at"] = ended
    memory_factor = pd.Series(techniques).map({"lora": 1.3, "qlora": 2.0, "full": 0.9}).to_numpy()
    peak_gb = np.minimum(est["analytic_peak_memory_gb"].to_numpy() * memory_factor * rng.lognormal(0.0, 0.05, n),
                         0.98 * est["gpu_memory_gb"].to_numpy())
    health = pd.DataFrame({"job_id": jobs["job_id"], "metric": "gpu_memory_used_ratio",
                           "max": peak_gb / est["gpu_memory_gb"].to_numpy()})
    return jobs, health


def test_short_history_falls_back_to_the_analytic_estimate_and_says_so():
    jobs, health = synthetic_fleet(12)
    model = fit_resource_model(jobs, health, NOW, min_history_jobs=20)
    assert model.peak_memory.basis == model.gpu_hours.basis == "analytic"
    assert model.peak_memory.pipeline is None and "fewer than min_history_jobs = 20" in model.gpu_hours.reason
    assert model.gpu_hours.evaluation.n_train == 0 and model.gpu_hours.evaluation.n_test == 12
    assert np.isnan(model.gpu_hours.evaluation.mape_fitted) and model.gpu_hours.evaluation.mape_analytic > 0.2
    pending = jobs.head(3).assign(status="pending")
    predicted = predict_resources(model, pending)
    assert (predicted["gpu_hours"] == predicted["analytic_gpu_hours"]).all()
    assert (predicted["peak_memory_gb"] == predicted["analytic_peak_memory_gb"]).all()
    assert set(predicted["memory_basis"]) == set(predicted["gpu_hours_basis"]) == {"analytic"}


def test_enough_history_fits_and_beats_the_analytic_estimate_on_later_jobs():
    jobs, health = synthetic_fleet(80)
    model = fit_resource_model(jobs, health, NOW, min_history_jobs=20)
    for target in (model.peak_memory, model.gpu_hours):
        ev = target.evaluation
        assert target.basis == "fitted", target.reason
        assert (ev.n_train, ev.n_test) == (60, 20)
        # time-ordered: the held-out jobs are the 20 that ended last
        assert set(ev.test_job_ids) == set(jobs.sort_values("ended_at")["job_id"].tail(20))
        assert ev.mape_fitted < 0.5 * ev.mape_analytic
    # the hours' factors are multiplicative, exactly what a ridge on the log ratio learns: the noise is left
    assert model.gpu_hours.evaluation.mape_fitted < 0.1
    summary = model.summary()
    assert summary["gpu_hours_basis"] == "fitted" and summary["memory_n_test"] == 20
    assert summary["gpu_hours_mape_fitted"] < summary["gpu_hours_mape_analytic"]
    # the model is what the asset stores: it survives joblib
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    again = joblib.load(io.BytesIO(buffer.getvalue()))
    new = synthetic_fleet(10, seed=1)[0]
    pd.testing.assert_frame_equal(predict_resources(again, new), predict_resources(model, new))
    assert (predict_resources(model, new)["gpu_hours_basis"] == "fitted").all()


def test_training_targets_leave_out_censored_and_unfinished_runs():
    jobs, health = synthetic_fleet(6)
    jobs.loc[0, ["status", "exit_reason"]] = ["failed", "oom"]  # its peak is the GPU's capacity, not its need
    jobs.loc[1, "status"] = "cancelled"  # stopped early: its hours say nothing
    jobs.loc[2, "ended_at"] = NOW + pd.Timedelta(hours=1)  # after `now`: not known yet
    examples = training_examples(jobs, health, NOW).set_index("job_id")
    assert "job-002" not in examples.index
    assert np.isnan(examples.loc["job-000", "peak_memory_gb"]) and np.isnan(examples.loc["job-000", "gpu_hours"])
    assert examples.loc["job-001", "peak_memory_gb"] > 0 and np.isnan(examples.loc["job-001", "gpu_hours"])
    row = jobs.set_index("job_id").loc["job-003"]
    wall_h = (row["ended_at"] - row["started_at"]).total_seconds() / 3600
    assert examples.loc["job-003", "gpu_hours"] == pytest.approx(wall_h * row["gpu_count"])
    ratio = health.set_index("job_id").loc["job-003", "max"]
    assert examples.loc["job-003", "peak_memory_gb"] == pytest.approx(ratio * examples.loc["job-003", "gpu_memory_gb"])


def test_mape_is_a_fraction_of_the_actual():
    assert mape([110.0, 90.0], [100.0, 100.0]) == pytest.approx(0.1)
    assert np.isnan(mape([], []))


# --------------------------------------------------------------------------------- the demo fleet

DEMO_END = pd.Timestamp("2026-03-18T09:00:00Z")


@pytest.fixture(scope="module")
def demo_fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    from ftops.demo_fleet import write_demo_inbox
    from ftops.monitoring.health import run_health
    from ftops.readers.inbox import reader_for

    inbox = tmp_path_factory.mktemp("resources") / "inbox"
    write_demo_inbox(inbox, seed=7, n_jobs=120, days=14, end=DEMO_END)
    jobs = reader_for("jobs", str(inbox / "jobs" / "jobs.csv"))().accepted
    # GPU memory comes from the agent's exports; the trainer logs carry none, so they are not read
    files = sorted(Path(inbox / "metrics").rglob("agent-*.jsonl"))
    samples = pd.concat([reader_for("metrics", str(p))().accepted for p in files], ignore_index=True)
    return jobs, run_health(samples[samples["metric"] == "gpu_memory_used_ratio"])


def test_demo_fleet_fitted_model_beats_the_analytic_estimate_on_later_jobs(demo_fleet):
    jobs, health = demo_fleet
    model = fit_resource_model(jobs, health, DEMO_END, min_history_jobs=20)
    summary = model.summary()
    print({k: v for k, v in summary.items() if "reason" not in k})  # the numbers the issue asks for (pytest -s)
    hours, memory = model.gpu_hours.evaluation, model.peak_memory.evaluation
    assert model.gpu_hours.basis == "fitted" and hours.n_test >= 20
    assert hours.mape_fitted < hours.mape_analytic
    # the demo draws each job's memory use at random (55-86 % of its GPU), so ~15 % is the floor here
    assert model.peak_memory.basis == "fitted" and memory.mape_fitted < memory.mape_analytic
    live = jobs[jobs["status"].isin(["pending", "running"])]
    predicted = predict_resources(model, live)
    assert predicted["gpu_hours"].gt(0).all() and predicted["peak_memory_gb"].gt(0).all()
    assert (predicted["peak_memory_gb"] < predicted["gpu_memory_gb"]).all()  # they run: they fit
