"""Metric-name aliases from every source format, mapped onto the canonical names of schemas.METRICS.

One table for all readers (metric exports, Prometheus/DCGM, W&B, trainer_state) so a name means the
same thing whichever file it came from. Lookup ignores case and surrounding blanks because exporters
disagree on both (`DCGM_FI_DEV_GPU_UTIL`, `train/Loss`).

Only names whose *unit* already matches the canonical metric belong here. A name that needs a unit
conversion (`nvidia_smi_utilization_gpu_ratio` is 0-1, `DCGM_FI_DEV_FB_USED` is MiB, W&B `memory`
is a percentage) is left to the reader that knows the conversion; mapping it here would silently
produce wrong numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.schemas import METRICS

_ALIASES_BY_METRIC: dict[str, tuple[str, ...]] = {
    "training_loss": (
        "loss", "train_loss", "train/loss", "training/loss", "train.loss", "trainer/loss",
        "train_loss_step", "loss_step", "training_loss_step",
    ),
    "val_loss": (
        "eval_loss", "eval/loss", "val/loss", "validation_loss", "validation/loss", "valid_loss",
        "valid/loss", "val_loss_epoch", "evaluation_loss", "eval.loss", "val.loss",
    ),
    "learning_rate": (
        "lr", "train/learning_rate", "train/lr", "learning-rate", "trainer/learning_rate",
        "lr-adamw", "lr-adam", "lr-sgd",
    ),
    "grad_norm": (
        "gradient_norm", "train/grad_norm", "grad-norm", "total_norm", "global_grad_norm",
        "trainer/grad_norm", "grad_norm_total",
    ),
    "samples_per_second": (
        "train_samples_per_second", "train/samples_per_second", "samples/s", "samples_per_sec",
        "samples_per_s", "throughput_samples_per_second",
    ),
    "tokens_per_second": (
        "train_tokens_per_second", "train/tokens_per_second", "tokens/s", "tokens_per_sec",
        "tokens_per_s", "throughput_tokens_per_second",
    ),
    "epoch": ("train/epoch", "epochs", "trainer/epoch"),
    "domain_accuracy": (
        "domain_acc", "eval_accuracy", "eval/accuracy", "val_accuracy", "val/accuracy",
        "eval_domain_accuracy", "eval/domain_accuracy",
    ),
    "gpu_utilization_pct": (
        "gpu_util", "gpu_utilization", "gpu_util_pct", "gpu_utilization_percent", "gpu_usage_percent",
        "gpu_util_percent", "dcgm_fi_dev_gpu_util", "utilization.gpu", "utilization.gpu [%]",
    ),
    "gpu_memory_copy_util_pct": (
        "dcgm_fi_dev_mem_copy_util", "utilization.memory", "utilization.memory [%]",
        "gpu_mem_copy_util", "gpu_memory_copy_util", "gpu_mem_copy_util_pct", "gpu_memory_bandwidth_util_pct",
    ),
    "gpu_memory_used_ratio": (
        "gpu_mem_used_ratio", "gpu_memory_used_fraction", "gpu_memory_ratio", "gpu_mem_ratio",
        "gpu_memory_usage_ratio",
    ),
    "gpu_power_watts": (
        "gpu_power", "gpu_power_w", "gpu_power_draw", "gpu_power_usage_watts", "dcgm_fi_dev_power_usage",
        "power.draw", "power.draw [w]",
    ),
    "gpu_temperature_c": (
        "gpu_temp", "gpu_temperature", "gpu_temp_c", "dcgm_fi_dev_gpu_temp", "temperature.gpu",
    ),
    "cpu_utilization_pct": (
        "cpu_usage_percent", "cpu_util", "cpu_utilization", "cpu_util_pct", "cpu_percent",
        "cpu_utilization_percent", "system/cpu",
    ),
    "host_memory_used_ratio": (
        "host_mem_used_ratio", "mem_used_ratio", "memory_used_ratio", "host_memory_ratio",
    ),
    "cost_per_hour_usd": ("cost_per_hour", "usd_per_hour", "hourly_cost_usd", "cost_usd_per_hour"),
    "heartbeat": ("heartbeat_ts", "alive"),
}

METRIC_ALIASES: dict[str, str] = {
    **{m: m for m in METRICS},
    **{alias: metric for metric, aliases in _ALIASES_BY_METRIC.items() for alias in aliases},
}
"""alias (lower case) -> canonical metric name; canonical names map to themselves."""

_LOOKUP = {k.strip().lower(): v for k, v in METRIC_ALIASES.items()}


def canonical_metric_name(name: object) -> str | None:
    """The canonical name for one metric name or alias, or None when it is not known."""
    if not isinstance(name, str):
        return None
    return _LOOKUP.get(name.strip().lower())


def canonical_metric_names(names: pd.Series) -> pd.Series:
    """Map metric names/aliases to canonical names; unknown names are kept as given.

    Keeping unknown names (rather than nulling them) lets finish_samples reject the row with the
    original name visible. The mapping runs over the distinct names only (a 10-million-row export
    has a handful), then is broadcast by codes, so cost is one factorize. A categorical input stays
    categorical (memory); anything else comes back as the pandas `string` dtype.
    """
    if isinstance(names.dtype, pd.CategoricalDtype):
        categories = names.cat.categories
        mapped = [canonical_metric_name(c) or c for c in categories]
        # two aliases of one metric become one category: rebuild through codes
        new_categories = pd.Index(pd.unique(np.asarray(mapped, dtype=object)))
        remap = new_categories.get_indexer(mapped)
        codes = names.cat.codes.to_numpy()
        new_codes = np.where(codes < 0, -1, remap.take(np.where(codes < 0, 0, codes)))
        return pd.Series(
            pd.Categorical.from_codes(new_codes, categories=new_categories), index=names.index, name=names.name
        )
    codes, uniques = pd.factorize(names, use_na_sentinel=True)
    mapped = np.array([canonical_metric_name(u) or u for u in uniques] + [None], dtype=object)
    # code -1 (missing) indexes the trailing None
    return pd.Series(mapped.take(codes), index=names.index, name=names.name, dtype="string")
