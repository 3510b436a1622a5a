"""Detectors against real public runs (../shared/realdata; skipped where it is absent)."""

from __future__ import annotations

import pandas as pd
import pytest

from ftops.monitoring import detect_anomalies, update_alerts
from ftops.readers.trainer_state import read_trainer_state
from ftops.readers.wandb import read_wandb_run

SPIKE_RULES = {"loss_spike", "loss_divergence", "grad_norm_spike", "grad_norm_explosion"}


def _manifest(realdata) -> pd.DataFrame:
    return pd.read_csv(realdata / "trainer_states" / "MANIFEST.csv", dtype=str).fillna("")


def test_trainer_states_no_critical_without_flags_and_spikes_found(realdata):
    manifest = _manifest(realdata)
    assert len(manifest) >= 10
    for row in manifest.itertuples(index=False):
        samples = read_trainer_state(realdata / "trainer_states" / row.file).accepted
        an = detect_anomalies(samples)
        if not row.flags:
            assert not (an["severity"] == "critical").any(), (row.file, an["message"].tolist())
        if "spikes=" in row.flags:
            assert SPIKE_RULES & set(an["rule"]), (row.file, an["message"].tolist())


def test_healthy_mistral_grad_norm_spikes_are_not_pages(realdata):
    # logs lone 4x grad-norm spikes (robust z 16) and is a healthy run: the spec's raw 1.0 would page
    path = realdata / "trainer_states" / "syGOAT__Mistral-v0.2-Translator-bf16__trainer_state.json"
    an = detect_anomalies(read_trainer_state(path).accepted)
    spikes = an[an["rule"] == "grad_norm_spike"]
    assert len(spikes) >= 1 and (spikes["severity"] == "info").all()
    assert "grad_norm_explosion" not in set(an["rule"])


@pytest.mark.parametrize("folder, run", [
    ("wandb_stanford_alpaca_early", "lklngczn"),
    ("wandb_wisdom-pan+ChatGLM-LoRA", "gpiov4nv"),
])
def test_wandb_runs_detect_and_alert(realdata, folder, run):
    path = realdata / "runs" / folder / "runs" / run
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    samples = read_wandb_run(path).accepted
    an = detect_anomalies(samples)
    assert not an.empty and an["message"].str.len().gt(20).all()
    # training-side rules never page on these finished, healthy-looking runs
    training = an[an["category"] == "training"]
    assert not (training["severity"] == "critical").any(), training["message"].tolist()
    alerts = update_alerts(None, an, samples["ts"].max() + pd.Timedelta("1h"), pd.Timedelta("10min"))
    assert alerts["alert_id"].is_unique and (alerts["state"] == "resolved").all()
    again = update_alerts(alerts, an, samples["ts"].max() + pd.Timedelta("2h"), pd.Timedelta("10min"))
    pd.testing.assert_frame_equal(again, alerts)
