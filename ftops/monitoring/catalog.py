"""The metric catalogue (§1.1): every canonical metric with its unit, category and the rules on it.

One name for one thing: rule names here are the `rule` values of the anomalies and alerts tables
and the label values ftops exports to Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ftops.schemas import METRIC_UNITS, RULE_NAMES, Category

Direction = Literal["high", "low"]  # which way a value is worse; picks the worst sample of a window


@dataclass(frozen=True)
class RuleInfo:
    name: str
    metric: str
    category: Category
    direction: Direction
    description: str


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str
    category: Category
    rules: tuple[str, ...]


_RULES: tuple[RuleInfo, ...] = (
    RuleInfo("loss_non_finite", "training_loss", "training", "high", "training loss is NaN or infinite"),
    RuleInfo("loss_rising", "training_loss", "training", "high",
             "training loss median rose by more than the allowed ratio over the trend window"),
    RuleInfo("loss_spike", "training_loss", "training", "high",
             "one or a few steps far above the recent median (robust z and ratio)"),
    RuleInfo("loss_divergence", "training_loss", "training", "high",
             "training loss stays several times above its recent median (or, early in a run, its lowest level)"),
    RuleInfo("loss_implausible", "training_loss", "training", "high",
             "training loss above what the task can produce (a broken run, e.g. an absurd learning rate)"),
    RuleInfo("not_learning", "training_loss", "training", "high",
             "training loss never left its starting level over a long stretch of training"),
    RuleInfo("learning_rate_out_of_range", "learning_rate", "training", "high",
             "learning rate outside the expected range (warm-up start and decay end excepted)"),
    RuleInfo("grad_norm_non_finite", "grad_norm", "training", "high", "gradient norm is NaN or infinite"),
    RuleInfo("grad_norm_spike", "grad_norm", "training", "high",
             "gradient norm far above its recent median for a step (clipped spikes are common)"),
    RuleInfo("grad_norm_explosion", "grad_norm", "training", "high",
             "gradient norm above the threshold and far above the job's recent level, huge or persistent"),
    RuleInfo("throughput_degraded", "samples_per_second", "training", "low",
             "samples/s below the degradation ratio of the baseline"),
    RuleInfo("gpu_underutilized", "gpu_utilization_pct", "resource", "low",
             "GPU utilisation below the under-utilisation threshold, sustained"),
    RuleInfo("gpu_overutilized", "gpu_utilization_pct", "resource", "high",
             "GPU utilisation above the saturation threshold, sustained: info, a warning only with a symptom "
             "(GPU temperature at the throttling level, or throughput degraded)"),
    RuleInfo("gpu_memory_copy_util_high", "gpu_memory_copy_util_pct", "resource", "high",
             "GPU memory bandwidth use above the warning/critical thresholds, sustained"),
    RuleInfo("gpu_memory_capacity_high", "gpu_memory_used_ratio", "resource", "high",
             "GPU memory capacity use above the warning/critical thresholds, sustained"),
    RuleInfo("cpu_high", "cpu_utilization_pct", "resource", "high", "CPU utilisation above the alert threshold, sustained"),
    RuleInfo("host_memory_high", "host_memory_used_ratio", "resource", "high",
             "host memory use above the warning/critical thresholds, sustained"),
    RuleInfo("val_loss_non_finite", "val_loss", "quality", "high", "validation loss is NaN or infinite"),
    RuleInfo("val_loss_stagnation", "val_loss", "quality", "high",
             "no relative improvement of the best validation loss within the patience"),
    RuleInfo("overfitting", "val_loss", "quality", "high", "validation loss rising while training loss falls"),
    RuleInfo("domain_accuracy_low", "domain_accuracy", "quality", "low", "domain accuracy below the minimum"),
    # retired: reaching the target is news, not an alert (run_health.target_reached says it); the
    # name stays in the vocabulary so alert tables written before still validate
    RuleInfo("domain_accuracy_target_reached", "domain_accuracy", "quality", "high",
             "retired: domain accuracy reached the target (now run_health.target_reached)"),
    RuleInfo("slow_convergence", "training_loss", "quality", "high",
             "projected epochs to converge above the expected number"),
    RuleInfo("job_preempted", "heartbeat", "resource", "high",
             "the job registry says the job was preempted (status or exit reason)"),
    RuleInfo("heartbeat_lost", "heartbeat", "resource", "high",
             "a job the registry says is running sent no heartbeat and made no step progress for the timeout"),
    RuleInfo("cost_per_hour_high", "cost_per_hour_usd", "cost", "high", "cost per hour above the limit"),
    RuleInfo("cost_per_sample_above_benchmark", "cost_per_hour_usd", "cost", "high",
             "cost per processed sample above the benchmark"),
    RuleInfo("cost_per_sample_above_target", "cost_per_hour_usd", "cost", "high",
             "cost per processed sample above the optimisation target (within the benchmark)"),
)
RULES: dict[str, RuleInfo] = {r.name: r for r in _RULES}
assert tuple(RULES) == RULE_NAMES, "schemas.RULE_NAMES (the rule column's vocabulary) must list these rules in order"

_CATEGORIES: dict[str, Category] = {
    "training_loss": "training",
    "val_loss": "quality",
    "learning_rate": "training",
    "grad_norm": "training",
    "samples_per_second": "training",
    "tokens_per_second": "training",
    "epoch": "training",
    "domain_accuracy": "quality",
    "gpu_utilization_pct": "resource",
    "gpu_memory_copy_util_pct": "resource",
    "gpu_memory_used_ratio": "resource",
    "gpu_power_watts": "resource",
    "gpu_temperature_c": "resource",
    "cpu_utilization_pct": "resource",
    "host_memory_used_ratio": "resource",
    "cost_per_hour_usd": "cost",
    "heartbeat": "resource",
}

# rules that read a metric without being "its" rule (cost per sample divides by throughput)
_ALSO_READS: dict[str, tuple[str, ...]] = {
    "samples_per_second": ("cost_per_sample_above_benchmark", "cost_per_sample_above_target", "gpu_overutilized"),
    "gpu_temperature_c": ("gpu_overutilized",),
    "val_loss": (),
    "epoch": ("slow_convergence",),
}

METRIC_CATALOG: dict[str, MetricInfo] = {
    name: MetricInfo(
        name=name,
        unit=unit,
        category=_CATEGORIES[name],
        rules=tuple(r.name for r in _RULES if r.metric == name) + _ALSO_READS.get(name, ()),
    )
    for name, unit in METRIC_UNITS.items()
}


# Settings of the rules above that ftops.policy does not carry yet, as "<section>.<key>" of the
# `monitoring` policy; `setting` reads the policy's value when it has the key, else these.
DEFAULTS: dict[str, float | None] = {
    # Cross-entropy starts near ln(vocabulary size), 10.4-11.9 for 32k-150k vocabularies; a first
    # loss of 1.5e5 is an absurd learning rate, not a task. None switches the rule off (losses
    # that are sums or regressions have no such bound).
    "loss.plausible_max": 50.0,
    # not learning: judged once this many losses were logged, from the run's first sample; the
    # median of the last quarter must be at least this much below the median of the first tenth
    "loss.not_learning_min_samples": 30,
    "loss.not_learning_min_improvement_ratio": 0.05,
    # loss_rising also needs the loss to have given back this share of the run's progress (start
    # level - best level so far): healthy multi-epoch runs drift up ~25 % late in an epoch
    "loss.trend_min_giveback_ratio": 0.25,
    # throttling: NVIDIA data-centre GPUs slow their clocks from about 85-90 °C
    "gpu_utilization.throttle_temperature_c": 85.0,
    # heartbeat_lost: no heartbeat and no step progress for this long while the registry says running
    "liveness.heartbeat_timeout_minutes": 15.0,
}


def setting(policy: object, key: str) -> float | None:
    """The value of DEFAULTS' `key` ("section.name") in a MonitoringPolicy, or its default."""
    section, name = key.split(".")
    return getattr(getattr(policy, section, None), name, DEFAULTS[key])


def rules_for(metric: str) -> tuple[str, ...]:
    """Rule names that read `metric` (empty for metrics only recorded, such as power)."""
    info = METRIC_CATALOG.get(metric)
    return info.rules if info else ()
