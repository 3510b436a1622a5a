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
    # a spike that comes back is news (info); one that stays is a divergence (critical)
    assert len(spike) == 1 and spike["severity"].iloc[0] == "info" and spike["worst_step"].iloc[0] == 510
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


def test_samples_of_no_metric_a_rule_reads():
    # heartbeats only (an agent export of a job whose trainer logs elsewhere): nothing to judge
    assert detect_anomalies(series("heartbeat", np.ones(5))).empty


def test_empty_input():
    from ftops.schemas import ANOMALIES

    empty = detect_anomalies(series("training_loss", []))
    assert empty.empty and list(empty.columns) == ANOMALIES.column_names


# --- issue 7 §5/§8: alerts a person would question --------------------------------------------------

def test_divergence_over_a_handful_of_points_is_critical():
    # a short run with an absurd learning rate: five logged losses, each far above the last
    loss = series("training_loss", [2.3, 2.9, 4.8, 8.5, 15.2], every="10min")
    lr = series("learning_rate", np.full(5, 5e-3), every="10min")
    an = detect_anomalies(pd.concat([loss, lr], ignore_index=True))
    div = an[an["rule"] == "loss_divergence"]
    assert len(div) == 1 and div["severity"].iloc[0] == "critical", an["message"].tolist()
    assert div["last_step"].iloc[0] == 50 and "lowest level it had reached 2.3" in div["message"].iloc[0]
    # the same few points falling are a run that learns
    falling = series("training_loss", [8.3, 2.1, 0.9, 0.43], every="10min")
    assert detect_anomalies(falling).empty


def test_a_run_that_is_not_learning_warns_once():
    an = detect_anomalies(series("training_loss", noisy(2.3, 200, 0.02)))
    assert list(an["rule"]) == ["not_learning"] and an["severity"].iloc[0] == "warning"
    assert an["worst_step"].iloc[0] == 2000 and "not learning" in an["message"].iloc[0]
    # too short to judge, and a window into the middle of a run (first step far from the start)
    assert detect_anomalies(series("training_loss", noisy(2.3, 20, 0.02))).empty
    middle = series("training_loss", noisy(0.4, 200, 0.02), steps=np.arange(5000, 7000, 10))
    assert detect_anomalies(middle).empty


def test_an_implausible_first_loss_is_critical_without_any_history():
    # the real Trainer with an absurd learning rate: 1.5e5 at the first log, never NaN
    an = detect_anomalies(series("training_loss", [1.5e5, 1.2e5, 9.8e4], every="5min"))
    hit = an[an["rule"] == "loss_implausible"]
    assert len(hit) == 1 and hit["severity"].iloc[0] == "critical" and hit["n_samples"].iloc[0] == 3
    assert "1.5e+05 at step 10" in hit["message"].iloc[0]
    # the bound is a setting: a summed or regression loss switches it off
    off = dataclasses.replace(MonitoringPolicy(), loss=_with(MonitoringPolicy().loss, plausible_max=None))
    assert "loss_implausible" not in rules_fired(
        detect_anomalies(series("training_loss", [1.5e5, 1.2e5, 9.8e4], every="5min"), policy=off))


def _with(section, **values):
    # a policy section with keys ftops.policy may not define yet (catalog.DEFAULTS)
    out = dataclasses.replace(section)
    for k, v in values.items():
        object.__setattr__(out, k, v)
    return out


def test_late_epoch_drift_of_a_converged_run_is_not_rising():
    # W&B Alpaca: 1.6 -> 0.26, then +25-30 % late in the last epoch, ending far below the start
    drift = np.r_[np.linspace(1.6, 0.26, 150), np.linspace(0.26, 0.34, 60)]
    an = detect_anomalies(series("training_loss", drift * noisy(1.0, 210, 0.01)))
    assert "loss_rising" not in rules_fired(an)
    # the same rise on a run that had made no progress is a trend
    flat_then_up = np.r_[np.full(60, 1.0), np.linspace(1.0, 1.4, 30)] * noisy(1.0, 90, 0.01)
    assert "loss_rising" in rules_fired(detect_anomalies(series("training_loss", flat_then_up)))
