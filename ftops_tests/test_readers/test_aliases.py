from __future__ import annotations

import pandas as pd
import pytest

from ftops.readers.aliases import METRIC_ALIASES, canonical_metric_name, canonical_metric_names
from ftops.schemas import METRICS


def test_every_alias_maps_to_a_canonical_metric() -> None:
    assert set(METRIC_ALIASES.values()) <= set(METRICS)
    for metric in METRICS:
        assert METRIC_ALIASES[metric] == metric


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("loss", "training_loss"),
        ("train_loss", "training_loss"),
        ("train/loss", "training_loss"),
        ("eval_loss", "val_loss"),
        ("val/loss", "val_loss"),
        ("lr", "learning_rate"),
        ("gpu_util", "gpu_utilization_pct"),
        ("DCGM_FI_DEV_GPU_UTIL", "gpu_utilization_pct"),
        ("utilization.gpu", "gpu_utilization_pct"),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", "gpu_memory_copy_util_pct"),
        ("cpu_usage_percent", "cpu_utilization_pct"),
        (" Train/Loss ", "training_loss"),
    ],
)
def test_known_aliases(alias: str, canonical: str) -> None:
    assert canonical_metric_name(alias) == canonical


def test_unit_changing_names_are_not_aliases() -> None:
    # these need a unit conversion that only the format's reader knows
    for name in ("DCGM_FI_DEV_FB_USED", "nvidia_smi_utilization_gpu_ratio", "memory"):
        assert canonical_metric_name(name) is None


def test_vectorised_mapping_keeps_unknown_and_missing() -> None:
    names = pd.Series(["loss", "lr", None, "my_metric", "loss"], index=[10, 11, 12, 13, 14])
    out = canonical_metric_names(names)
    assert out.dtype == "string"
    assert out.index.tolist() == [10, 11, 12, 13, 14]
    assert out.tolist() == ["training_loss", "learning_rate", pd.NA, "my_metric", "training_loss"]


def test_categorical_stays_categorical_and_merges_aliases() -> None:
    names = pd.Series(["loss", "train/loss", "lr", None], dtype="category")
    out = canonical_metric_names(names)
    assert isinstance(out.dtype, pd.CategoricalDtype)
    assert sorted(out.cat.categories) == ["learning_rate", "training_loss"]
    assert out.astype(object).where(out.notna(), None).tolist() == ["training_loss", "training_loss", "learning_rate", None]
