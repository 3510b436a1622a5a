"""Why ended jobs failed: console tails from the inbox, and job_failures from the registry, the tails and
the monitoring tables (ftops.predict.failures holds the rules)."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.defs.as_of import AsOfConfig
from ftops.defs.automation import after_upstream_updates
from ftops.defs.checks import as_contract, contract_check, contract_spec, markdown_preview
from ftops.defs.ingest import _balance_check, _checks, _duplicates_check, _files_metadata, _staging, _stored
from ftops.defs.resources import InboxResource, PolicyResource
from ftops.predict.failures import classify_failures
from ftops.schemas import ALERTS, CONSOLE_TAILS, JOB_FAILURES, JOBS, RUN_HEALTH, validate
from ftops.staging import newest_wins

PREVIEW_ROWS = 10


def _counts(values: pd.Series) -> dg.MetadataValue:
    return dg.MetadataValue.json({str(k): int(v) for k, v in values.value_counts().items()} if len(values) else {})


@dg.asset(
    group_name="ingest",
    kinds={"pandas", "parquet"},
    check_specs=_checks(CONSOLE_TAILS),
)
def console_tails(context: dg.AssetExecutionContext, config: AsOfConfig, inbox: InboxResource,
                  policy: PolicyResource) -> Iterator:
    """The last lines every job printed (inbox `logs/`, W&B `output.log`, `runs_console_tail.csv`);
    a later file of a job replaces an earlier one."""
    staging = _staging(inbox, config, policy)
    staging.stage_inbox(inbox.inbox_path)
    df, files = staging.load("logs")
    rows_read = len(df)
    # files are loaded oldest first: the newest file's tail of a job wins
    resolved = newest_wins(df, list(CONSOLE_TAILS.key))
    df = validate(resolved.table, CONSOLE_TAILS)
    yield dg.Output(
        df,
        metadata={
            "rows": len(df),
            "with_exit_code": int(df["exit_code"].notna().sum()),
            "latest": markdown_preview(df.sort_values("ts", ascending=False).assign(
                last_line=df["tail"].str.rstrip().str.rsplit("\n", n=1).str[-1].str.slice(0, 120)),
                ["job_id", "ts", "exit_code", "last_line"]),
            "superseded_by_newer_file": resolved.superseded,
            **_files_metadata(files),
        },
    )
    staging.mark_ingested(files)  # after the Output: the IO manager has stored the table by now
    stored = _stored(inbox, CONSOLE_TAILS.name, None, list(CONSOLE_TAILS.key))
    yield contract_check(df, CONSOLE_TAILS)
    yield _balance_check(files, rows_read, resolved, stored)
    yield _duplicates_check(stored, CONSOLE_TAILS)


@dg.asset(
    group_name="prediction",
    kinds={"pandas", "parquet"},
    automation_condition=after_upstream_updates(),
    check_specs=[contract_spec(JOB_FAILURES)],
)
def job_failures(context: dg.AssetExecutionContext, job_registry: pd.DataFrame, console_tails: pd.DataFrame,
                 run_health: pd.DataFrame, alerts: pd.DataFrame) -> Iterator:
    """Why every failed, preempted or cancelled job ended (oom, preempted, nan_loss, hang, code_error,
    node_failure, cancelled, unknown), with what it was read from and the line or signal that decided."""
    table = classify_failures(
        as_contract(job_registry, JOBS),
        as_contract(console_tails, CONSOLE_TAILS),
        as_contract(run_health, RUN_HEALTH),
        as_contract(alerts, ALERTS),
    )
    latest = table.sort_values("ended_at", ascending=False, na_position="last", kind="stable").head(PREVIEW_ROWS)
    yield dg.Output(table, metadata={
        "rows": len(table),
        "by_failure_type": _counts(table["failure_type"]),
        "by_basis": _counts(table["basis"]),
        "latest": dg.MetadataValue.md(latest.to_markdown(index=False) if not latest.empty else "(none)"),
    })
    yield contract_check(table, JOB_FAILURES)


FAILURE_ASSETS = [console_tails, job_failures]
