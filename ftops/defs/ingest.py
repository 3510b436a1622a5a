"""Ingest assets: inbox files -> job_registry, metric_samples, billing_line_items, rejected_records."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.defs.checks import contract_check, contract_spec
from ftops.defs.partitions import daily_partitions
from ftops.defs.resources import InboxResource
from ftops.schemas import BILLING_LINE_ITEMS, JOBS, METRIC_SAMPLES, Table, validate
from ftops.staging import StagedFile

BALANCE = "row_accounting_balances"
NO_DUPLICATES = "no_duplicate_rows"
NO_DUPLICATE_LINE_ITEMS = "no_duplicate_line_items"


def _checks(asset: str, duplicates_check: str = NO_DUPLICATES) -> list[dg.AssetCheckSpec]:
    return [
        contract_spec(asset),
        dg.AssetCheckSpec(
            BALANCE, asset=asset,
            description="Every file: rows in = accepted + rejected; the table: rows read = written + duplicates.",
        ),
        dg.AssetCheckSpec(duplicates_check, asset=asset, description="The table's key is unique."),
    ]


def _balance_check(files: list[StagedFile], rows_read: int, rows_written: int, duplicates: int
                   ) -> dg.AssetCheckResult:
    unbalanced = [f.relpath for f in files if not f.balanced]
    passed = not unbalanced and rows_read == rows_written + duplicates
    return dg.AssetCheckResult(
        check_name=BALANCE,
        passed=passed,
        metadata={
            "files": len(files),
            "rows_in": sum(f.rows_in for f in files),
            "accepted": sum(f.accepted for f in files),
            "rejected": sum(f.rejected for f in files),
            "rows_read_for_partitions": rows_read,
            "rows_written": rows_written,
            "duplicates_dropped": duplicates,
            "unbalanced_files": ", ".join(unbalanced[:10]) or "none",
        },
    )


def _duplicates_check(df: pd.DataFrame, table: Table, name: str = NO_DUPLICATES) -> dg.AssetCheckResult:
    n = int(df.duplicated(subset=list(table.key)).sum()) if not df.empty else 0
    return dg.AssetCheckResult(check_name=name, passed=n == 0, metadata={"duplicate_keys": n})


def _files_metadata(files: list[StagedFile]) -> dict:
    return {
        "files": len(files),
        "rows_rejected_in_files": sum(f.rejected for f in files),
    }


@dg.asset(
    group_name="ingest",
    kinds={"pandas", "parquet"},
    check_specs=_checks("job_registry"),
)
def job_registry(context: dg.AssetExecutionContext, inbox: InboxResource) -> Iterator:
    """Every known fine-tuning job (the `jobs` contract); a later export of a job replaces an earlier one."""
    staging = inbox.staging()
    staging.stage_inbox(inbox.inbox_path)
    df, files = staging.load("jobs")
    rows_read = len(df)
    df = df.drop_duplicates(subset=["job_id"], keep="last").reset_index(drop=True)
    df = validate(df, JOBS)
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
    yield contract_check(df, JOBS)
    yield _balance_check(files, rows_read, len(df), rows_read - len(df))
    yield _duplicates_check(df, JOBS)


def _partitioned_ingest(context: dg.AssetExecutionContext, inbox: InboxResource, kind: str, table: Table
                        ) -> tuple[pd.DataFrame, list[StagedFile], int, list[StagedFile]]:
    """The window's rows, the files they came from, rows read, and the files wholly inside the window."""
    staging = inbox.staging()
    staging.stage_inbox(inbox.inbox_path)
    window = context.partition_time_window
    start, end = pd.Timestamp(window.start), pd.Timestamp(window.end)
    df, files = staging.load(kind, start, end)
    rows_read = len(df)
    # The newest file wins: files are loaded oldest first, so keep the last copy of a key.
    df = df.drop_duplicates(subset=list(table.key), keep="last").reset_index(drop=True)
    context.log.info(f"{table.name} {start:%Y-%m-%d}..{end:%Y-%m-%d}: {len(df)} rows from {len(files)} files")
    return df, files, rows_read, staging.covered_by(files, start, end)


@dg.asset(
    group_name="ingest",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_column": "ts"},
    kinds={"pandas", "parquet"},
    check_specs=_checks("metric_samples"),
)
def metric_samples(context: dg.AssetExecutionContext, inbox: InboxResource) -> Iterator:
    """Every training, resource, quality and cost sample in the canonical long format, by day."""
    df, files, rows_read, covered = _partitioned_ingest(context, inbox, "metrics", METRIC_SAMPLES)
    yield dg.Output(
        df,
        metadata={
            "rows": len(df),
            "jobs": int(df["job_id"].nunique()) if not df.empty else 0,
            "by_metric": dg.MetadataValue.json(
                df["metric"].value_counts().astype(int).to_dict() if not df.empty else {}
            ),
            **_files_metadata(files),
        },
    )
    inbox.staging().mark_ingested(covered)  # after the Output: the partition files are stored
    yield contract_check(df, METRIC_SAMPLES)
    yield _balance_check(files, rows_read, len(df), rows_read - len(df))
    yield _duplicates_check(df, METRIC_SAMPLES)


@dg.asset(
    group_name="ingest",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"partition_column": "charge_period_start"},
    kinds={"pandas", "parquet"},
    check_specs=_checks("billing_line_items", NO_DUPLICATE_LINE_ITEMS),
)
def billing_line_items(context: dg.AssetExecutionContext, inbox: InboxResource) -> Iterator:
    """Billing lines normalised to FOCUS (snake_case), de-duplicated by line_item_id, by charge day."""
    df, files, rows_read, covered = _partitioned_ingest(context, inbox, "billing", BILLING_LINE_ITEMS)
    totals = df.groupby("currency")["billed_cost"].sum().round(2).to_dict() if not df.empty else {}
    yield dg.Output(
        df,
        metadata={
            "rows": len(df),
            "billed_cost_by_currency": dg.MetadataValue.json({str(k): float(v) for k, v in totals.items()}),
            "lines_tagged_with_job": int(df["job_id"].notna().sum()) if not df.empty else 0,
            **_files_metadata(files),
        },
    )
    inbox.staging().mark_ingested(covered)  # after the Output: the partition files are stored
    yield contract_check(df, BILLING_LINE_ITEMS)
    yield _balance_check(files, rows_read, len(df), rows_read - len(df))
    yield _duplicates_check(df, BILLING_LINE_ITEMS, NO_DUPLICATE_LINE_ITEMS)


@dg.asset(
    group_name="ingest",
    kinds={"pandas", "parquet"},
    deps=[job_registry, metric_samples, billing_line_items],
    check_specs=[
        dg.AssetCheckSpec(
            BALANCE, asset="rejected_records",
            description="For every inbox file, rows in = accepted + rejected, and every rejection is kept.",
        )
    ],
)
def rejected_records(context: dg.AssetExecutionContext, inbox: InboxResource) -> Iterator:
    """Every row any reader refused, with the file it came from and the reason; nothing is dropped."""
    staging = inbox.staging()
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
    yield dg.AssetCheckResult(
        check_name=BALANCE,
        passed=not unbalanced and expected == len(df),
        metadata={"files": len(files), "rejected_in_manifests": expected, "rows_kept": len(df),
                  "unbalanced_files": ", ".join(unbalanced[:10]) or "none"},
    )


INGEST_ASSETS = [job_registry, metric_samples, billing_line_items, rejected_records]
