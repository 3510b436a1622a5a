"""Ingest assets: inbox files -> job_registry, metric_samples, billing_line_items, rejected_records."""

from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ftops.defs.as_of import AsOfConfig
from ftops.defs.checks import contract_check, contract_spec, markdown_preview
from ftops.defs.io_manager import table_path
from ftops.defs.partitions import ONE_SHARD_DAY_PER_RUN, daily_partitions, shard_day_partitions, shard_of_run
from ftops.defs.resources import InboxResource, PolicyResource
from ftops.schemas import BILLING_LINE_ITEMS, JOBS, METRIC_SAMPLES, REJECTED_RECORDS, Table, validate
from ftops.sharding import Shard
from ftops.staging import KeyResolution, StagedFile, Staging, newest_wins


def _staging(inbox: InboxResource, config: AsOfConfig, policy: PolicyResource) -> Staging:
    # `as_of` pins "now" for the future-row cut-off
    return inbox.staging().at(config.now(), policy.load().ingest.future_tolerance_hours)


def _stored(inbox: InboxResource, asset: str, partition_keys: list[str] | None, columns: list[str]
            ) -> pd.DataFrame | None:
    """What the IO manager stored for this run (read back, not the DataFrame in memory); None if absent.

    Assumes the IO manager's base path is the inbox's warehouse, as build_definitions wires it.
    """
    key = dg.AssetKey(asset)
    paths = [table_path(inbox.warehouse_path, key, k) for k in (partition_keys or [None])]
    if not all(p.exists() for p in paths):
        return None
    frames = [pq.read_table(p.path, filesystem=p.fs, columns=columns).to_pandas() for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

BALANCE = "row_accounting_balances"
NO_DUPLICATES = "no_duplicate_rows"
NO_DUPLICATE_LINE_ITEMS = "no_duplicate_line_items"


def _checks(table: Table, duplicates_check: str = NO_DUPLICATES) -> list[dg.AssetCheckSpec]:
    asset = table.name
    return [
        contract_spec(table),
        dg.AssetCheckSpec(
            BALANCE, asset=asset,
            description="Every file: records counted in the file = records its reader accounted for; the table: "
                        "rows read = rows stored (read back) + duplicates + superseded rows.",
        ),
        dg.AssetCheckSpec(duplicates_check, asset=asset, description="The table's key is unique."),
    ]


def _balance_check(files: list[StagedFile], rows_read: int, resolved: KeyResolution,
                   stored: pd.DataFrame | None) -> dg.AssetCheckResult:
    """Records in each file = what its reader accounted for; rows read = rows stored + rows dropped.

    `rows_read` is what the files' staged copies gave for this run; duplicates and superseded
    rows are counted where `newest_wins` drops them; rows stored are read back from the
    warehouse, so a row lost between the read and the write fails the check.
    """
    unbalanced = [f.relpath for f in files if not f.balanced]
    rows_stored = None if stored is None else len(stored)
    passed = (not unbalanced and rows_stored is not None
              and rows_read == rows_stored + resolved.duplicates + resolved.superseded)
    return dg.AssetCheckResult(
        check_name=BALANCE,
        passed=passed,
        metadata={
            "files": len(files),
            "records_in": sum(f.records_in or 0 for f in files),
            "records_accounted": sum(f.records_out or 0 for f in files),
            "accepted": sum(f.accepted for f in files),
            "rejected": sum(f.rejected for f in files),
            "duplicates_in_files": sum(f.duplicates for f in files),
            "skipped_untracked": sum(f.skipped for f in files),
            "rows_read_for_partitions": rows_read,
            "rows_stored": -1 if rows_stored is None else rows_stored,
            "duplicates_dropped": resolved.duplicates,
            "superseded_by_newer_file": resolved.superseded,
            "unbalanced_files": ", ".join(unbalanced[:10]) or "none",
        },
    )


def _duplicates_check(stored: pd.DataFrame | None, table: Table, name: str = NO_DUPLICATES) -> dg.AssetCheckResult:
    """The key is unique in what was stored (read back), not in the DataFrame that was de-duplicated."""
    if stored is None:
        return dg.AssetCheckResult(check_name=name, passed=False, metadata={"error": "table not stored"})
    n = int(stored.duplicated(subset=list(table.key)).sum()) if not stored.empty else 0
    return dg.AssetCheckResult(check_name=name, passed=n == 0, metadata={"duplicate_keys": n,
                                                                          "rows_stored": len(stored)})


def _files_metadata(files: list[StagedFile]) -> dict:
    return {
        "files": len(files),
        "rows_rejected_in_files": sum(f.rejected for f in files),
    }


def _registry_exports_last(df: pd.DataFrame, files: list[StagedFile]) -> pd.DataFrame:
    """The rows of registry exports (`jobs/`) after those of W&B run metadata (`metrics/`), each group
    still oldest file first, so `newest_wins` lets a registry row win over a W&B row of the same job:
    a registry knows what W&B cannot (instance type, pricing, budget, the scheduler's own status).

    `staging.load("jobs")` concatenates each file's accepted rows in `files` order, so a row's file is
    found by repeating each file's relpath `accepted` times.
    """
    counts = [f.accepted for f in files]
    if sum(counts) != len(df) or all(f.relpath.startswith("jobs/") for f in files):
        return df
    from_registry = np.repeat([f.relpath.startswith("jobs/") for f in files], counts)
    order = np.argsort(from_registry, kind="stable")
    return df.iloc[order].reset_index(drop=True)



def _per_metric(df: pd.DataFrame) -> pd.DataFrame:
    """Samples, jobs and time span per metric: what a partition holds, at a glance."""
    if df.empty:
        return pd.DataFrame(columns=["metric", "samples", "jobs", "first_ts", "last_ts"])
    return (df.groupby("metric", observed=True)
            .agg(samples=("value", "size"), jobs=("job_id", "nunique"), first_ts=("ts", "min"), last_ts=("ts", "max"))
            .reset_index().sort_values("samples", ascending=False))


def _top_services(df: pd.DataFrame) -> pd.DataFrame:
    """Billed cost per provider, service and currency, the largest first."""
    if df.empty:
        return pd.DataFrame(columns=["provider", "service_name", "currency", "lines", "billed_cost"])
    return (df.groupby(["provider", "service_name", "currency"], dropna=False, observed=True)
            .agg(lines=("billed_cost", "size"), billed_cost=("billed_cost", "sum"))
            .reset_index().sort_values("billed_cost", ascending=False))

@dg.asset(
    group_name="ingest",
    kinds={"pandas", "parquet"},
    check_specs=_checks(JOBS),
)
def job_registry(context: dg.AssetExecutionContext, config: AsOfConfig, inbox: InboxResource,
                 policy: PolicyResource) -> Iterator:
    """Every known fine-tuning job; a later export of a job replaces an earlier one."""
    staging = _staging(inbox, config, policy)
    staging.stage_inbox(inbox.inbox_path)
    df, files = staging.load("jobs")
    rows_read = len(df)
    resolved = newest_wins(_registry_exports_last(df, files), ["job_id"])
    df = validate(resolved.table, JOBS)
    yield dg.Output(
        df,
        metadata={
            "rows": len(df),
            "by_status": dg.MetadataValue.json(df["status"].value_counts(dropna=False).astype(int).to_dict()
                                               if not df.empty else {}),
            "preview": dg.MetadataValue.md(df.head(10).to_markdown() if not df.empty else "(empty)"),
            **_files_metadata(files),
        },
    )
    staging.mark_ingested(files)  # after the Output: the IO manager has stored the table by now
    stored = _stored(inbox, JOBS.name, None, list(JOBS.key))
    yield contract_check(df, JOBS)
    yield _balance_check(files, rows_read, resolved, stored)
    yield _duplicates_check(stored, JOBS)


def _partitioned_ingest(context: dg.AssetExecutionContext, staging: Staging, inbox: InboxResource, kind: str,
                        table: Table, shard: Shard | None = None
                        ) -> tuple[KeyResolution, list[StagedFile], int, list[StagedFile]]:
    """The window's rows (one per key) of the shard's jobs, the files they came from, rows read, and
    the files wholly inside the window."""
    staging.stage_inbox(inbox.inbox_path)
    window = context.partition_time_window
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    df, files = staging.load(kind, start, end, shard=shard)
    rows_read = len(df)
    # The newest file wins: files are loaded oldest first, so the last row of a key is kept.
    resolved = newest_wins(df, list(table.key))
    del df
    where = f" shard {shard.key}" if shard else ""
    context.log.info(f"{table.name} {start:%Y-%m-%d}..{end:%Y-%m-%d}{where}: {len(resolved.table)} rows from "
                     f"{len(files)} files ({resolved.duplicates} duplicates, {resolved.superseded} superseded)")
    return resolved, files, rows_read, staging.covered_by(files, start, end)


@dg.asset(
    group_name="ingest",
    partitions_def=shard_day_partitions,
    backfill_policy=ONE_SHARD_DAY_PER_RUN,
    metadata={"partition_column": "ts"},
    kinds={"pandas", "parquet"},
    check_specs=_checks(METRIC_SAMPLES),
)
def metric_samples(context: dg.AssetExecutionContext, config: AsOfConfig, inbox: InboxResource,
                   policy: PolicyResource) -> Iterator:
    """Every training, resource, quality and cost sample in the canonical long format, by day and job shard."""
    staging = _staging(inbox, config, policy)
    shard = shard_of_run(context)
    resolved, files, rows_read, covered = _partitioned_ingest(context, staging, inbox, "metrics", METRIC_SAMPLES,
                                                              shard)
    df = resolved.table
    yield dg.Output(
        df,
        metadata={
            "rows": len(df),
            "jobs": int(df["job_id"].nunique()) if not df.empty else 0,
            "by_metric": dg.MetadataValue.json(
                df["metric"].value_counts().astype(int).to_dict() if not df.empty else {}
            ),
            "metrics": markdown_preview(_per_metric(df), ["metric", "samples", "jobs", "first_ts", "last_ts"],
                                        rows=30),
            **_files_metadata(files),
        },
    )
    staging.mark_ingested(covered, shard)  # after the Output: the partition files are stored
    stored = _stored(inbox, METRIC_SAMPLES.name, context.partition_keys, list(METRIC_SAMPLES.key))
    yield contract_check(df, METRIC_SAMPLES)
    yield _balance_check(files, rows_read, resolved, stored)
    yield _duplicates_check(stored, METRIC_SAMPLES)


@dg.asset(
    group_name="ingest",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_column": "charge_period_start"},
    kinds={"pandas", "parquet"},
    check_specs=_checks(BILLING_LINE_ITEMS, NO_DUPLICATE_LINE_ITEMS),
)
def billing_line_items(context: dg.AssetExecutionContext, config: AsOfConfig, inbox: InboxResource,
                       policy: PolicyResource) -> Iterator:
    """Billing lines normalised to FOCUS (snake_case), de-duplicated by line_item_id, by charge day."""
    staging = _staging(inbox, config, policy)
    resolved, files, rows_read, covered = _partitioned_ingest(
        context, staging, inbox, "billing", BILLING_LINE_ITEMS)
    df = resolved.table
    totals = df.groupby("currency")["billed_cost"].sum().round(2).to_dict() if not df.empty else {}
    yield dg.Output(
        df,
        metadata={
            "rows": len(df),
            "billed_cost_by_currency": dg.MetadataValue.json({str(k): float(v) for k, v in totals.items()}),
            "lines_tagged_with_job": int(df["job_id"].notna().sum()) if not df.empty else 0,
            "top_services": markdown_preview(_top_services(df), ["provider", "service_name", "currency", "lines",
                                                                 "billed_cost"]),
            **_files_metadata(files),
        },
    )
    staging.mark_ingested(covered)  # after the Output: the partition files are stored
    stored = _stored(inbox, BILLING_LINE_ITEMS.name, context.partition_keys, list(BILLING_LINE_ITEMS.key))
    yield contract_check(df, BILLING_LINE_ITEMS)
    yield _balance_check(files, rows_read, resolved, stored)
    yield _duplicates_check(stored, BILLING_LINE_ITEMS, NO_DUPLICATE_LINE_ITEMS)


@dg.asset(
    group_name="ingest",
    kinds={"pandas", "parquet"},
    deps=[job_registry, metric_samples, billing_line_items, "console_tails"],  # console_tails: defs/failures.py
    check_specs=[
        dg.AssetCheckSpec(
            BALANCE, asset=REJECTED_RECORDS.name,
            description="For every inbox file, rows in = accepted + rejected, and every rejection is kept.",
        )
    ],
)
def rejected_records(context: dg.AssetExecutionContext, config: AsOfConfig, inbox: InboxResource,
                     policy: PolicyResource) -> Iterator:
    """Every row any reader refused, with the file it came from and the reason; nothing is dropped."""
    staging = _staging(inbox, config, policy)
    staging.stage_inbox(inbox.inbox_path)
    df, files = staging.load_rejected()
    by_reason = df.groupby(["table", "reason"]).size().sort_values(ascending=False) if not df.empty else None
    yield dg.Output(
        df,
        metadata={
            "rows": len(df),
            "files_with_rejections": int(df["source"].nunique()) if not df.empty else 0,
            "by_reason": dg.MetadataValue.md(
                by_reason.rename("rows").reset_index().to_markdown(index=False) if by_reason is not None else "none"
            ),
        },
    )
    staging.mark_ingested([f for f in files if f.accepted == 0])  # files that only held rejections
    unbalanced = [f.relpath for f in files if not f.balanced]
    expected = sum(f.rejected for f in files)
    stored = _stored(inbox, REJECTED_RECORDS.name, None, ["reason"])
    kept = -1 if stored is None else len(stored)
    yield dg.AssetCheckResult(
        check_name=BALANCE,
        passed=not unbalanced and expected == kept,
        metadata={"files": len(files), "rejected_in_manifests": expected, "rows_stored": kept,
                  "unbalanced_files": ", ".join(unbalanced[:10]) or "none"},
    )


INGEST_ASSETS = [job_registry, metric_samples, billing_line_items, rejected_records]
