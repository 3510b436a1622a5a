from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ftops.monitoring import detect_anomalies
from ftops.policy import GradNormPolicy, MonitoringPolicy, ThroughputPolicy

from .helpers import noisy, rules_fired, series


def _decaying_loss(n: int, seed: int = 0) -> np.ndarray:
    return 2.0 * np.exp(-np.arange(n) / 60) + 0.8 + 0.02 * np.random.default_rng(seed).standard_normal(n)


def test_healthy_loss_fires_nothing():
    an = detect_anomalies(series("training_loss", _decaying_loss(200)))
    assert an.empty, an["message"].tolist()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_loss_is_critical(bad):
    v = _decaying_loss(50)
    v[30:33] = bad
    an = detect_anomalies(series("training_loss", v))
    hit = an[an["rule"] == "loss_non_finite"]
    assert len(hit) == 1 and hit["severity"].iloc[0] == "critical"
    assert hit["n_samples"].iloc[0] == 3 and hit["first_step"].iloc[0] == 310
    assert "step 310" in hit["message"].iloc[0]


def test_rising_loss_trend_warns_but_one_spike_does_not():
    rising = np.r_[noisy(1.0, 20), noisy(1.0, 20) * np.linspace(1.0, 1.4, 20)]
    an = detect_anomalies(series("training_loss", rising))
    assert "loss_rising" in rules_fired(an)
    assert (an.loc[an["rule"] == "loss_rising", "severity"] == "warning").all()
    flat = noisy(1.0, 40)
    flat[25] = 1.6  # one spike inside a window is not a trend
    assert "loss_rising" not in rules_fired(detect_anomalies(series("training_loss", flat)))


def test_loss_trend_edge_of_threshold():
    # window medians 1.0 then 1.10: exactly +10 % is not "more than 10 %"
    v = np.r_[np.full(10, 1.0), np.full(10, 1.10)]
    assert "loss_rising" not in rules_fired(detect_anomalies(series("training_loss", v)))
    v = np.r_[np.full(10, 1.0), np.full(10, 1.12)]
    assert "loss_rising" in rules_fired(detect_anomalies(series("training_loss", v)))


def test_loss_spike_and_divergence():
    v = noisy(0.6, 80, 0.05)
    v[50] = 1.3
    an = detect_anomalies(series("training_loss", v))
    spike = an[an["rule"] == "loss_spike"]
    assert len(spike) == 1 and spike["severity"].iloc[0] == "warning" and spike["worst_step"].iloc[0] == 510
    v = noisy(0.6, 80, 0.05)
    v[60:] = np.linspace(3, 9, 20)
    an = detect_anomalies(series("training_loss", v))
    div = an[an["rule"] == "loss_divergence"]
    assert len(div) == 1 and div["severity"].iloc[0] == "critical"


def test_learning_rate_warmup_and_decay_are_legitimate():
    warm = np.linspace(0, 2e-4, 20)
    decay = np.linspace(2e-4, 0, 80)
    assert detect_anomalies(series("learning_rate", np.r_[warm, decay])).empty


def test_learning_rate_out_of_range():
    an = detect_anomalies(series("learning_rate", np.full(30, 5e-3)))
    assert list(an["rule"]) == ["learning_rate_out_of_range"] and an["n_samples"].iloc[0] == 30
    # stuck at a tiny constant rate is not a decay end
    an = detect_anomalies(series("learning_rate", np.full(30, 1e-8)))
    assert list(an["rule"]) == ["learning_rate_out_of_range"]
    # the edges of the range are inside it
    assert detect_anomalies(series("learning_rate", np.r_[np.full(5, 1e-3), np.full(5, 1e-6)])).empty


def test_grad_norm_explosion_needs_threshold_robust_z_and_size():
    g = noisy(2.7, 100, 0.05, seed=3)
    g[60] = 84.2
    an = detect_anomalies(series("grad_norm", g))
    row = an[an["rule"] == "grad_norm_explosion"].iloc[0]
    assert row["severity"] == "critical" and row["worst_step"] == 610
    assert "84.2 at step 610" in row["message"] and "robust z" in row["message"]
    # a lone 4x clipped spike is info, not a page
    g = noisy(2.0, 100, 0.05, seed=3)
    g[60] = 8.0
    an = detect_anomalies(series("grad_norm", g))
    assert list(an["severity"]) == ["info"] and list(an["rule"]) == ["grad_norm_spike"]
    # healthy runs log norms far above the spec's 1.0: nothing
    assert detect_anomalies(series("grad_norm", noisy(12.0, 100, 0.1))).empty


def test_grad_norm_spec_rule_is_a_setting():
    spec = dataclasses.replace(MonitoringPolicy(), grad_norm=GradNormPolicy(require_robust_z=False))
    an = detect_anomalies(series("grad_norm", noisy(3.0, 20)), policy=spec)
    assert list(an["rule"]) == ["grad_norm_explosion"] and an["n_samples"].iloc[0] == 20


def test_grad_norm_persistent_rise_is_critical():
    g = np.r_[noisy(1.5, 60, 0.05), np.full(5, 4.5)]
    an = detect_anomalies(series("grad_norm", g))
    assert list(an["rule"]) == ["grad_norm_explosion"] and an["n_samples"].iloc[0] >= 3


def test_throughput_against_job_baseline_and_configured():
    sps = np.r_[np.full(3, 20.0), noisy(100.0, 30, 0.02), np.full(6, 70.0)]
    an = detect_anomalies(series("samples_per_second", sps))
    hit = an[an["rule"] == "throughput_degraded"]
    assert len(hit) == 1 and "job baseline" in hit["message"].iloc[0]
    # 85 % of its own baseline is fine
    sps = np.r_[np.full(3, 20.0), noisy(100.0, 30, 0.01), np.full(6, 85.0)]
    assert detect_anomalies(series("samples_per_second", sps)).empty
    # too short for a baseline of its own (a trainer_state's one run-average sample) and no
    # configured baseline by default: not judged
    assert detect_anomalies(series("samples_per_second", [30.0])).empty
    # the spec's configured 50 applies once set (0.8 x 50 = 40)
    spec = dataclasses.replace(MonitoringPolicy(), throughput=ThroughputPolicy(baseline_samples_per_second=50))
    assert "throughput_degraded" in rules_fired(detect_anomalies(series("samples_per_second", [30.0]), policy=spec))
    assert detect_anomalies(series("samples_per_second", [45.0]), policy=spec).empty
    low = dataclasses.replace(MonitoringPolicy(), throughput=ThroughputPolicy(baseline_samples_per_second=10))
    assert detect_anomalies(series("samples_per_second", [30.0]), policy=low).empty


def test_one_slow_step_is_not_degradation():
    sps = noisy(100.0, 40, 0.01)
    sps[30] = 10.0
    assert detect_anomalies(series("samples_per_second", sps)).empty


def test_gap_splits_anomalies():
    a = series("learning_rate", np.full(5, 5e-3))
    b = series("learning_rate", np.full(5, 5e-3), start=a["ts"].iloc[-1] + pd.Timedelta("2h"))
    b["step"] = b["step"] + 1000
    an = detect_anomalies(pd.concat([a, b], ignore_index=True))
    assert len(an) == 2


def test_jobs_and_devices_are_kept_apart_and_unsorted_input_is_fine():
    a = series("training_loss", _decaying_loss(60), job="a")
    b = series("training_loss", _decaying_loss(60, seed=1), job="b")
    b.loc[40, "value"] = np.nan
    mixed = pd.concat([a, b]).sample(frac=1.0, random_state=0)
    an = detect_anomalies(mixed)
    assert list(an["job_id"]) == ["b"] and list(an["rule"]) == ["loss_non_finite"]


def test_empty_input():
    from ftops.monitoring.anomalies import ANOMALIES

    empty = detect_anomalies(series("training_loss", []))
    assert empty.empty and list(empty.columns) == ANOMALIES.column_names
