"""Every canonical table contract and its vocabularies (docs/architecture.md §4), and the validator
used at every boundary.

A contract is an ordered list of columns with a logical dtype and whether nulls are allowed.
`validate` coerces a DataFrame to the contract (column order, dtypes, UTC timestamps) or raises
`SchemaError` naming the table, the column and what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import pandas as pd

# logical dtype -> pandas dtype used in memory and in Parquet
_PANDAS_DTYPES = {
    "str": "string",
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
    "ts": "datetime64[ns, UTC]",
}


class SchemaError(ValueError):
    """A DataFrame does not satisfy a table contract."""


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # one of _PANDAS_DTYPES
    nullable: bool = True
    allowed: tuple[str, ...] | None = None  # closed vocabulary for str columns


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # columns that identify a row (unique after de-duplication)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def empty(self) -> pd.DataFrame:
        return pd.DataFrame({c.name: pd.Series(dtype=_PANDAS_DTYPES[c.dtype]) for c in self.columns})


def _c(name: str, dtype: str, nullable: bool = True, allowed: tuple[str, ...] | None = None) -> Column:
    return Column(name, dtype, nullable, allowed)


# Canonical metric names and their units. Every reader maps its aliases onto these names.
METRIC_UNITS: dict[str, str] = {
    "training_loss": "loss",
    "val_loss": "loss",
    "learning_rate": "1",
    "grad_norm": "1",
    "samples_per_second": "samples/s",
    "tokens_per_second": "tokens/s",
    "epoch": "epochs",
    "domain_accuracy": "ratio (0-1)",
    "gpu_utilization_pct": "%",
    "gpu_memory_copy_util_pct": "%",
    "gpu_memory_used_ratio": "ratio (0-1)",
    "gpu_power_watts": "W",
    "gpu_temperature_c": "°C",
    "cpu_utilization_pct": "%",
    "host_memory_used_ratio": "ratio (0-1)",
    "cost_per_hour_usd": "USD/h",
    "heartbeat": "1",
}
METRICS: tuple[str, ...] = tuple(METRIC_UNITS)


@dataclass(frozen=True)
class MetricRange:
    """The physically possible values of a metric; a sample outside is refused by every reader."""

    low: float
    high: float
    # NaN/Inf are accepted only where they are a signal the rules need (a diverged loss)
    non_finite_ok: bool = False


_INF = float("inf")
# Losses are unbounded below on purpose: policy-gradient and reward losses (PPO, GRPO) are negative.
METRIC_RANGES: dict[str, MetricRange] = {
    "training_loss": MetricRange(-_INF, _INF, non_finite_ok=True),
    "val_loss": MetricRange(-_INF, _INF, non_finite_ok=True),
    "learning_rate": MetricRange(0.0, _INF, non_finite_ok=True),
    "grad_norm": MetricRange(0.0, _INF, non_finite_ok=True),
    "samples_per_second": MetricRange(0.0, _INF),
    "tokens_per_second": MetricRange(0.0, _INF),
    "epoch": MetricRange(0.0, _INF),
    "domain_accuracy": MetricRange(0.0, 1.0),
    "gpu_utilization_pct": MetricRange(0.0, 100.0),
    "gpu_memory_copy_util_pct": MetricRange(0.0, 100.0),
    "gpu_memory_used_ratio": MetricRange(0.0, 1.0),
    # the largest board power today is ~1.2 kW (GB200); 2 kW leaves room without admitting mW
    "gpu_power_watts": MetricRange(0.0, 2000.0),
    # NVML reports a die temperature; beyond 150 °C silicon is destroyed, below -40 no datacentre runs
    "gpu_temperature_c": MetricRange(-40.0, 150.0),
    "cpu_utilization_pct": MetricRange(0.0, 100.0),
    "host_memory_used_ratio": MetricRange(0.0, 1.0),
    "cost_per_hour_usd": MetricRange(0.0, _INF),
    "heartbeat": MetricRange(0.0, _INF),
}
assert set(METRIC_RANGES) == set(METRIC_UNITS), "every canonical metric needs a physical range"

# Vocabularies, each spelled once. Where code also needs one as a type (policy fields, the rule
# catalogue), the Literal is the definition and the tuple is read from it.
TECHNIQUES = ("lora", "qlora", "full", "prefix", "dpo", "other")
JOB_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "preempted")
EXIT_REASONS = ("oom", "preempted", "nan_loss", "hang", "code_error", "node_failure")
PRICING = ("on_demand", "spot")

Category = Literal["training", "resource", "quality", "cost"]
CATEGORIES: tuple[str, ...] = get_args(Category)
# lowest first: rules code a severity as its index here, and a merged anomaly takes the highest
Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
ALERT_STATES = ("firing", "resolved")
# The `rule` values of anomalies and alerts. monitoring/catalog.py describes each rule and refuses
# to load unless its rules are exactly these, in this order.
RULE_NAMES = (
    "loss_non_finite", "loss_rising", "loss_spike", "loss_divergence", "loss_implausible", "not_learning",
    "learning_rate_out_of_range", "grad_norm_non_finite", "grad_norm_spike", "grad_norm_explosion",
    "throughput_degraded", "gpu_underutilized", "gpu_overutilized", "gpu_memory_copy_util_high",
    "gpu_memory_capacity_high", "cpu_high", "host_memory_high", "val_loss_non_finite", "val_loss_stagnation",
    "overfitting", "domain_accuracy_low", "domain_accuracy_target_reached", "slow_convergence", "job_preempted",
    "heartbeat_lost", "cost_per_hour_high", "cost_per_sample_above_benchmark", "cost_per_sample_above_target",
)
DELIVERY_STATUSES = ("delivered", "pending", "superseded")
ATTRIBUTIONS = ("tag", "resource_id", "resource_id_shared", "estimate", "unattributed")
Period = Literal["month", "week", "day"]
PERIODS: tuple[str, ...] = get_args(Period)
# budget modes, and the mode each action in the ledger was planned under
Mode = Literal["off", "dry_run", "enforce"]
MODES: tuple[str, ...] = get_args(Mode)
TRIGGERS = ("budget", "recovery", "manual", "calibration")
ACTION_STATUSES = ("planned", "applied", "skipped", "failed")

METRIC_SAMPLES = Table(
    "metric_samples",
    (
        _c("ts", "ts", nullable=False),
        _c("job_id", "str", nullable=False),
        _c("metric", "str", nullable=False, allowed=METRICS),
        _c("value", "float"),
        _c("step", "int"),
        _c("device", "str"),
        _c("host", "str"),
        _c("source", "str", nullable=False),
    ),
    key=("job_id", "metric", "ts", "step", "device", "host"),
)

# Named after the asset people see in the UI: one name for one thing. Its rejected rows say
# `job_registry` in rejected_records.table; the inbox folder and staging kind stay `jobs/`.
JOBS = Table(
    "job_registry",
    (
        _c("job_id", "str", nullable=False),
        _c("name", "str"),
        _c("technique", "str", allowed=TECHNIQUES),
        _c("domain", "str"),
        _c("base_model", "str"),
        _c("model_params_b", "float"),
        _c("dataset_samples", "int"),
        _c("seq_len", "int"),
        _c("batch_size", "int"),
        _c("grad_accum", "int"),
        _c("epochs", "float"),
        _c("gpu_type", "str"),
        _c("gpu_count", "int"),
        _c("instance_type", "str"),
        _c("cloud", "str"),
        _c("region", "str"),
        _c("pricing", "str", allowed=PRICING),
        _c("budget_category", "str"),
        _c("critical", "bool"),
        _c("status", "str", allowed=JOB_STATUSES),
        _c("submitted_at", "ts"),
        _c("started_at", "ts"),
        _c("ended_at", "ts"),
        _c("exit_reason", "str", allowed=EXIT_REASONS),
        _c("total_steps", "int"),
    ),
    key=("job_id",),
)

BILLING_LINE_ITEMS = Table(
    "billing_line_items",
    (
        _c("line_item_id", "str", nullable=False),
        _c("charge_period_start", "ts", nullable=False),
        _c("charge_period_end", "ts"),
        _c("billed_cost", "float", nullable=False),
        _c("effective_cost", "float"),
        _c("list_cost", "float"),
        _c("currency", "str", nullable=False),
        _c("provider", "str"),
        _c("service_name", "str"),
        _c("resource_id", "str"),
        _c("sku", "str"),
        _c("instance_type", "str"),
        _c("pricing_category", "str"),
        _c("consumed_quantity", "float"),
        _c("consumed_unit", "str"),
        _c("region", "str"),
        _c("tags", "str"),  # JSON object as text
        _c("job_id", "str"),
        _c("budget_category", "str"),
        _c("source", "str", nullable=False),
    ),
    key=("line_item_id",),
)

REJECTED_RECORDS = Table(
    "rejected_records",
    (
        _c("source", "str", nullable=False),  # file (or URL) the row came from
        _c("table", "str", nullable=False),  # contract the row was meant for
        _c("record", "str"),  # row number, line number or JSON path inside the source
        _c("reason", "str", nullable=False),
        _c("raw", "str"),  # the refused row as JSON, so nothing is lost
    ),
)

RUN_HEALTH = Table(
    "run_health",
    (
        _c("job_id", "str", nullable=False),
        _c("metric", "str", nullable=False),
        _c("window_start", "ts", nullable=False),
        _c("window_minutes", "int", nullable=False),
        _c("samples", "int", nullable=False),
        _c("non_finite", "int", nullable=False),  # NaN/Inf samples: a diverged loss shows here
        _c("mean", "float"),
        _c("min", "float"),
        _c("max", "float"),
        _c("last", "float"),
        _c("last_ts", "ts", nullable=False),
        _c("max_step", "int"),
        _c("max_step_ts", "ts"),  # when the window's highest step was first logged: step progress
        _c("devices", "int", nullable=False),
        # domain_accuracy rows: whether the window's best reached the target (news, not an alert)
        _c("target_reached", "bool"),
    ),
    key=("job_id", "metric", "window_start"),
)

ANOMALIES = Table(
    "anomalies",
    (
        _c("job_id", "str", nullable=False),
        _c("rule", "str", nullable=False, allowed=RULE_NAMES),
        _c("category", "str", nullable=False, allowed=CATEGORIES),
        _c("severity", "str", nullable=False, allowed=SEVERITIES),
        _c("metric", "str", nullable=False),
        _c("device", "str"),
        _c("first_ts", "ts", nullable=False),
        _c("last_ts", "ts", nullable=False),
        _c("first_step", "int"),
        _c("last_step", "int"),
        _c("worst_ts", "ts", nullable=False),
        _c("worst_step", "int"),
        _c("n_samples", "int", nullable=False),
        _c("value", "float"),  # the worst sample's value (or derived value, e.g. a window median)
        _c("threshold", "float"),
        _c("reference", "float"),  # what the value was compared with: median, baseline, earlier best
        _c("score", "float"),  # how far off: robust z, ratio, improvement (see the rule)
        _c("window", "str"),
        _c("ongoing", "bool", nullable=False),  # reaches the job's latest sample of that series
        _c("message", "str", nullable=False),
    ),
    key=("job_id", "rule", "device", "first_ts"),
)

ALERTS = Table(
    "alerts",
    (
        _c("alert_id", "str", nullable=False),
        _c("job_id", "str", nullable=False),
        _c("rule", "str", nullable=False, allowed=RULE_NAMES),
        _c("device", "str"),  # part of the identity: one GPU of eight can be the problem
        _c("category", "str", nullable=False, allowed=CATEGORIES),
        _c("severity", "str", nullable=False, allowed=SEVERITIES),
        _c("state", "str", nullable=False, allowed=ALERT_STATES),
        _c("started_at", "ts", nullable=False),
        _c("last_seen_at", "ts", nullable=False),
        _c("resolved_at", "ts"),
        _c("value", "float"),
        _c("threshold", "float"),
        _c("message", "str", nullable=False),
    ),
    key=("alert_id",),
)

ALERT_DELIVERIES = Table(
    "alert_deliveries",
    (
        _c("alert_id", "str", nullable=False),
        _c("state", "str", nullable=False, allowed=ALERT_STATES),
        _c("notifier", "str", nullable=False),
        _c("status", "str", nullable=False, allowed=DELIVERY_STATUSES),
        _c("attempts", "int", nullable=False),
        _c("last_error", "str"),
        _c("last_attempt_at", "ts"),
        _c("delivered_at", "ts"),
    ),
    key=("alert_id", "state", "notifier"),
)

JOB_COSTS = Table(
    "job_costs",
    (
        _c("job_id", "str"),  # null: unattributed
        _c("budget_category", "str"),
        _c("period_start", "ts", nullable=False),
        _c("period_end", "ts"),
        _c("cost_usd", "float"),  # null only for an estimate without a catalogue price
        _c("estimated", "bool", nullable=False),
        _c("attribution", "str", nullable=False, allowed=ATTRIBUTIONS),
        _c("line_item_id", "str"),
        _c("provider", "str"),
        _c("service_name", "str"),
        _c("resource_id", "str"),
        _c("instance_type", "str"),
        _c("pricing", "str"),
        _c("running_hours", "float"),  # estimates: hours of running time costed
        _c("gpu_hours", "float"),
        _c("note", "str"),
        _c("suspicious", "bool", nullable=False),  # held: excluded from budget spend until confirmed
    ),
)

BUDGET_STATUS = Table(
    "budget_status",
    (
        _c("budget_category", "str"),  # null: spend whose category nobody named
        _c("period", "str", nullable=False, allowed=PERIODS),
        _c("period_key", "str", nullable=False),
        _c("period_start", "ts", nullable=False),
        _c("period_end", "ts", nullable=False),
        _c("current", "bool", nullable=False),  # the period that contains as_of; others are closed
        _c("as_of", "ts", nullable=False),
        _c("limit_usd", "float"),  # null: spend without a budget
        _c("mode", "str", allowed=MODES),
        _c("spend_usd", "float", nullable=False),
        _c("billed_usd", "float", nullable=False),
        _c("estimated_usd", "float", nullable=False),
        _c("suspicious_usd", "float", nullable=False),  # held lines: not in spend_usd
        _c("usage_pct", "float"),
        _c("remaining_usd", "float"),
        _c("burn_rate_usd_per_hour", "float", nullable=False),
        _c("forecast_period_end_usd", "float", nullable=False),
        _c("forecast_usage_pct", "float"),
        _c("forecast_next_24h_usd", "float", nullable=False),
        _c("thresholds_crossed", "str", nullable=False),  # JSON list of alert thresholds (pct)
        _c("highest_threshold_pct", "float"),
        _c("ladder_levels_reached", "str", nullable=False),  # JSON list of ladder levels (pct)
        _c("highest_ladder_pct", "float"),
        _c("running_jobs", "int", nullable=False),
    ),
    key=("budget_category", "period_key"),
)

ACTION_LEDGER = Table(
    "action_ledger",
    (
        _c("action_id", "str", nullable=False),
        _c("ts", "ts", nullable=False),  # when the status was last set
        _c("trigger", "str", nullable=False, allowed=TRIGGERS),
        _c("job_id", "str"),
        _c("budget_category", "str"),
        _c("action", "str", nullable=False),
        _c("params", "str"),  # JSON object
        _c("mode", "str", nullable=False, allowed=MODES),
        _c("status", "str", nullable=False, allowed=ACTION_STATUSES),
        _c("detail", "str"),
    ),
    key=("action_id",),
)

# --- optimisation (ftops/optimize) -------------------------------------------------------------------

INSTANCE_CATALOG = Table(
    "instance_catalog",
    (
        _c("cloud", "str", nullable=False),
        _c("region", "str", nullable=False),
        _c("instance_type", "str", nullable=False),
        _c("gpu_model", "str", nullable=False),
        _c("gpu_count", "int", nullable=False),
        _c("gpu_memory_gb", "float", nullable=False),  # per GPU
        _c("vcpus", "float"),
        _c("memory_gb", "float"),  # host memory
        _c("on_demand_usd_per_hour", "float", nullable=False),
        _c("spot_usd_per_hour", "float"),  # null: no spot offer
        _c("source", "str", nullable=False),
        _c("price_date", "str"),
    ),
    key=("cloud", "region", "instance_type", "gpu_model", "gpu_count"),
)

BENCHMARK_COMPARISON = Table(
    "benchmark_comparison",
    (
        _c("configuration", "str", nullable=False),
        _c("technique", "str"),
        _c("model_params_b", "float"),
        _c("gpu_model", "str"),
        _c("gpu_count", "int"),
        _c("micro_batch", "int"),
        _c("seq_len", "int"),
        _c("precision", "str"),
        _c("pricing", "str"),
        _c("jobs", "int", nullable=False),
        _c("job_ids", "str", nullable=False),  # comma-separated, sorted: the runs behind the numbers
        _c("samples_per_second", "float"),
        _c("tokens_per_second", "float"),
        _c("steps_per_second", "float"),
        _c("samples_per_second_per_gpu", "float"),
        _c("tokens_per_second_per_gpu", "float"),
        _c("gpu_utilization_pct", "float"),
        _c("usd_per_hour", "float"),
        _c("price_basis", "str"),
        _c("usd_per_1k_samples", "float"),
        _c("usd_per_million_tokens", "float"),
        _c("samples_per_usd", "float"),
        _c("rank_in_group", "int"),
        _c("best_in_group", "bool", nullable=False),
    ),
    key=("configuration",),
)

BENCHMARK_RECOMMENDATIONS = Table(
    "benchmark_recommendations",
    (
        _c("kind", "str", nullable=False, allowed=("move", "calibrate")),
        _c("group", "str"),
        _c("technique", "str"),
        _c("model_size", "str"),
        _c("from_configuration", "str"),
        _c("to_configuration", "str"),
        _c("unit", "str"),
        _c("cost_change_pct", "float"),
        _c("time_change_pct", "float"),
        _c("monthly_volume", "float"),
        _c("saving_usd_per_month", "float"),
        _c("from_job_ids", "str"),
        _c("to_job_ids", "str"),
        _c("job_ids", "str"),
        _c("proposal_id", "str"),  # calibrate: the stable id the calibration run is launched under
        _c("model_params_b", "float"),
        _c("gpu_model", "str"),
        _c("gpu_count", "int"),
        _c("instance_type", "str"),
        _c("cloud", "str"),
        _c("region", "str"),
        _c("pricing", "str"),
        _c("micro_batch", "int"),
        _c("seq_len", "int"),
        _c("precision", "str"),
        _c("steps", "int"),
        _c("expected_hours", "float"),
        _c("expected_usd_per_hour", "float"),
        _c("expected_cost_usd", "float"),
        _c("basis", "str"),
        _c("message", "str", nullable=False),
        _c("as_of", "ts"),
    ),
)

# --- prediction and recovery (ftops/predict) ------------------------------------------------------------

# Why an ended job did not succeed. `cancelled`: stopped by a person (not a failure, not a success).
FAILURE_TYPES = ("oom", "preempted", "nan_loss", "hang", "code_error", "node_failure", "cancelled", "unknown")
FailureType = Literal["oom", "preempted", "nan_loss", "hang", "code_error", "node_failure", "cancelled", "unknown"]
FAILURE_BASES = ("exit_reason", "console", "metrics", "exit_code", "status", "none")

JOB_FAILURES = Table(
    "job_failures",
    (
        _c("job_id", "str", nullable=False),
        _c("status", "str", allowed=JOB_STATUSES),
        _c("started_at", "ts"),
        _c("ended_at", "ts"),
        _c("exit_code", "int"),
        _c("failure_type", "str", nullable=False, allowed=FAILURE_TYPES),
        _c("basis", "str", nullable=False, allowed=FAILURE_BASES),  # what the type was read from
        _c("evidence", "str"),  # the line or signal that decided it
    ),
    key=("job_id",),
)

# The last lines a job printed (inbox `logs/<job_id>.log`, a W&B run's `output.log`, a tracker's
# `runs_console_tail.csv`): what `job_failures` reads a failure's cause from. One row per job after
# ingest (the newest file wins); readers.console_log documents each field.
CONSOLE_TAILS = Table(
    "console_tails",
    (
        _c("job_id", "str", nullable=False),
        _c("ts", "ts", nullable=False),  # the last timestamp the log shows, else the file's modification time
        _c("tail", "str"),  # the last 200 lines, "\n"-joined (progress-bar redraws collapsed, colour codes removed)
        _c("lines", "int"),  # lines of the log the tail was cut from (for a tracker's export: of its tail)
        _c("exit_code", "int"),  # the process exit code, where the source records it (tracker exports)
        _c("source", "str", nullable=False),
    ),
    key=("job_id",),
)

# Resource and failure-risk predictions for every pending and running job (ftops.predict.scheduling).
PREDICTION_BASES = ("fitted", "analytic")  # a fitted model, or the analytic estimate while history is short
JOB_RISK = Table(
    "job_risk",
    (
        _c("job_id", "str", nullable=False),
        _c("status", "str", allowed=JOB_STATUSES),
        _c("technique", "str", allowed=TECHNIQUES),
        _c("model_params_b", "float"),
        _c("gpu_model", "str"),  # the job's GPU in the datasheet vocabulary
        _c("gpu_count", "int"),
        _c("batch_size", "int"),  # micro-batch per GPU, as asked
        _c("grad_accum", "int"),
        _c("critical", "bool"),
        _c("pricing", "str", allowed=PRICING),
        _c("gpu_memory_gb", "float"),  # per GPU, datasheet
        _c("analytic_peak_memory_gb", "float"),  # per GPU
        _c("peak_memory_gb", "float"),  # per GPU, predicted (on memory_basis)
        _c("half_batch_peak_memory_gb", "float"),  # the same with half the micro-batch (null: cannot halve)
        _c("memory_ratio", "float"),  # predicted peak / the GPU's memory
        _c("memory_basis", "str", allowed=PREDICTION_BASES),
        _c("analytic_gpu_hours", "float"),
        _c("gpu_hours", "float"),  # whole run, predicted (on gpu_hours_basis)
        _c("gpu_hours_basis", "str", allowed=PREDICTION_BASES),
        _c("risk", "float"),  # probability of failure, 0-1 (null: the risk model gave none)
        _c("risky", "bool"),  # risk >= prediction.risk_threshold
        _c("top_factors", "str"),
    ),
    key=("job_id",),
)

SCHEDULE_DECISIONS = ("start", "wait", "unplaceable", "running")
SCHEDULE_PLAN = Table(
    "schedule_plan",
    (
        _c("job_id", "str", nullable=False),
        _c("status", "str", allowed=JOB_STATUSES),
        _c("decision", "str", nullable=False, allowed=SCHEDULE_DECISIONS),
        _c("priority", "int"),  # pending jobs: 1 runs first; null for running jobs
        _c("critical", "bool"),
        _c("target", "str", allowed=("cloud", "node_pool")),
        _c("node_pool", "str"),
        _c("cloud", "str"),
        _c("region", "str"),
        _c("instance_type", "str"),
        _c("gpu_model", "str"),
        _c("gpu_count", "int"),
        _c("gpu_memory_gb", "float"),  # per GPU where it is placed
        _c("pricing", "str", allowed=PRICING),
        _c("peak_memory_gb", "float"),  # predicted per GPU, after the micro-batch mitigation
        _c("expected_hours", "float"),
        _c("expected_cost_usd", "float"),
        _c("risk", "float"),
        _c("risky", "bool"),
        _c("risk_adjusted_cost_usd", "float"),  # expected cost x (1 + risk): the priority's cost
        _c("checkpoint_interval_minutes", "float"),
        _c("batch_size", "int"),  # planned micro-batch (halved where memory is tight)
        _c("grad_accum", "int"),  # planned (doubled with it: same effective batch)
        _c("mitigations", "str"),  # "; "-joined
        _c("reason", "str"),  # where and why, or why not
    ),
    key=("job_id",),
)

_CANDIDATE_COLUMNS = (
    _c("cloud", "str"),
    _c("region", "str"),
    _c("instance_type", "str"),
    _c("gpu_model", "str"),
    _c("gpu_count", "int"),
    _c("instances", "int"),  # identical nodes the job spans
    _c("gpu_memory_gb", "float"),
    _c("vcpus", "float"),
    _c("memory_gb", "float"),
    _c("on_demand_usd_per_hour", "float"),
    _c("spot_usd_per_hour", "float"),
    _c("expected_hours", "float"),
    _c("on_demand_cost_usd", "float"),
    _c("spot_cost_usd", "float"),
    _c("basis", "str"),  # measured | datasheet: where the hours on this GPU come from
    _c("measured_job_ids", "str"),
)
_PRICING_PLAN_COLUMNS = (
    _c("pricing", "str", allowed=PRICING),
    _c("max_spot_usd_per_hour", "float"),
    _c("checkpoint_interval_minutes", "float"),
    _c("mtbi_hours", "float"),
    _c("mtbi_basis", "str"),
    _c("expected_interruptions", "float"),
    _c("spot_expected_hours", "float"),
    _c("spot_expected_cost_usd", "float"),
    _c("expected_cost_usd", "float"),
)

INSTANCE_RECOMMENDATIONS = Table(
    "instance_recommendations",
    (
        _c("job_id", "str", nullable=False),
        _c("rank", "int"),  # null: the job could not be planned (reason says why)
        *_CANDIDATE_COLUMNS,
        *_PRICING_PLAN_COLUMNS,
        _c("current_instance_type", "str"),
        _c("current_pricing", "str"),
        _c("current_cost_usd", "float"),
        _c("saving_ratio", "float"),
        _c("worth_switching", "bool"),
        _c("reason", "str"),
    ),
    key=("job_id", "rank"),
)

SPOT_PLANS = Table(
    "spot_plans",
    (
        _c("job_id", "str", nullable=False),
        _c("status", "str"),
        _c("cloud", "str"),
        _c("region", "str"),
        _c("instance_type", "str"),
        _c("gpu_model", "str"),
        _c("instances", "int"),
        _c("current_pricing", "str"),
        _c("pricing", "str", allowed=PRICING),
        _c("change", "bool"),
        _c("max_spot_usd_per_hour", "float"),
        _c("checkpoint_interval_minutes", "float"),
        _c("mtbi_hours", "float"),
        _c("mtbi_basis", "str"),
        _c("expected_interruptions", "float"),
        _c("on_demand_hours", "float"),
        _c("on_demand_cost_usd", "float"),
        _c("spot_expected_hours", "float"),
        _c("spot_expected_cost_usd", "float"),
        _c("expected_hours", "float"),
        _c("expected_cost_usd", "float"),
        _c("basis", "str"),
        _c("reason", "str"),
    ),
    key=("job_id",),
)

NODE_ACTIVITY = Table(
    "node_activity",
    (
        _c("host", "str", nullable=False),
        _c("job_id", "str", nullable=False),
        _c("first_gpu_ts", "ts"),
        _c("last_ts", "ts", nullable=False),  # the pair's last sample of any metric
        _c("host_last_ts", "ts", nullable=False),
        _c("gpu_samples", "int", nullable=False),  # GPU utilisation samples in the idle window before host_last_ts
        _c("gpu_util_mean_pct", "float"),
        _c("gpu_util_max_pct", "float"),
        _c("devices", "int"),
    ),
    key=("host", "job_id", "last_ts"),
)

SCALING_ADVICE = Table(
    "scaling_advice",
    (
        _c("action", "str", nullable=False, allowed=("reuse", "release", "add")),
        _c("instance_type", "str"),
        _c("cloud", "str"),
        _c("region", "str"),
        _c("pricing", "str"),
        _c("nodes", "int", nullable=False),
        _c("hosts", "str"),
        _c("job_ids", "str"),
        _c("reason", "str", nullable=False),
    ),
)

TABLES = {t.name: t for t in (
    METRIC_SAMPLES, JOBS, BILLING_LINE_ITEMS, REJECTED_RECORDS, RUN_HEALTH, ANOMALIES, ALERTS, ALERT_DELIVERIES,
    JOB_COSTS, BUDGET_STATUS, ACTION_LEDGER, INSTANCE_CATALOG, BENCHMARK_COMPARISON, BENCHMARK_RECOMMENDATIONS,
    INSTANCE_RECOMMENDATIONS, SPOT_PLANS, NODE_ACTIVITY, SCALING_ADVICE, JOB_FAILURES, CONSOLE_TAILS, JOB_RISK,
    SCHEDULE_PLAN,
)}


def utc_timestamp(value) -> pd.Timestamp:
    """One timestamp (string, datetime or Timestamp) as tz-aware UTC; a naive one is taken as UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_utc(values: pd.Series) -> pd.Series:
    """Parse timestamps (strings, epoch seconds or datetimes) to tz-aware UTC; unparseable -> NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values
    elif pd.api.types.is_numeric_dtype(values):
        out = pd.to_datetime(values, unit="s", utc=True, errors="coerce")
    else:
        out = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    if getattr(out.dtype, "tz", None) is None:
        out = out.dt.tz_localize("UTC")
    return out.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _coerce(series: pd.Series, column: Column, table: str) -> pd.Series:
    target = _PANDAS_DTYPES[column.dtype]
    try:
        if column.dtype == "ts":
            return to_utc(series)
        if column.dtype == "float":
            return pd.to_numeric(series, errors="raise").astype("float64")
        if column.dtype == "int":
            numeric = pd.to_numeric(series, errors="raise")
            fractional = numeric.notna() & (numeric % 1 != 0)
            if fractional.any():
                raise SchemaError(
                    f"{table}.{column.name}: non-integer value(s) {list(numeric[fractional][:5])}"
                )
            return numeric.astype("Int64")
        if column.dtype == "bool":
            return series.astype("boolean")
        return series.astype("string")
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"{table}.{column.name}: cannot convert to {target}: {exc}") from exc


def validate(df: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Return `df` conformed to `table` or raise SchemaError with the column and the problem.

    Missing nullable columns are added as nulls; extra columns are dropped; a missing required
    column, a null in a non-nullable column or a value outside a closed vocabulary is an error.
    """
    missing = [c.name for c in table.columns if c.name not in df.columns and not c.nullable]
    if missing:
        raise SchemaError(f"{table.name}: missing required column(s) {missing}; got {list(df.columns)}")
    out = {}
    for column in table.columns:
        if column.name not in df.columns:
            out[column.name] = pd.Series(None, index=df.index, dtype=_PANDAS_DTYPES[column.dtype])
            continue
        values = _coerce(df[column.name], column, table.name)
        if not column.nullable and values.isna().any():
            n = int(values.isna().sum())
            raise SchemaError(f"{table.name}.{column.name}: {n} null value(s) in a required column")
        if column.allowed is not None:
            bad = values.notna() & ~values.isin(column.allowed)
            if bad.any():
                examples = sorted(set(values[bad].astype(str)))[:5]
                raise SchemaError(
                    f"{table.name}.{column.name}: value(s) {examples} not in allowed {list(column.allowed)}"
                )
        out[column.name] = values
    return pd.DataFrame(out, index=df.index).reset_index(drop=True)
