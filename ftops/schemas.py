"""Canonical table contracts (ARCHITECTURE.md §3) and the validator used at every boundary.

A contract is an ordered list of columns with a logical dtype and whether nulls are allowed.
`validate` coerces a DataFrame to the contract (column order, dtypes, UTC timestamps) or raises
`SchemaError` naming the table, the column and what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

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

TECHNIQUES = ("lora", "qlora", "full", "prefix", "dpo", "other")
JOB_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled", "preempted")
EXIT_REASONS = ("oom", "preempted", "nan_loss", "hang", "code_error", "node_failure")
PRICING = ("on_demand", "spot")

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

JOBS = Table(
    "jobs",
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

TABLES = {t.name: t for t in (METRIC_SAMPLES, JOBS, BILLING_LINE_ITEMS, REJECTED_RECORDS)}


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
