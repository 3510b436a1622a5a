"""Billing exports -> `billing_line_items`: one entry point that recognises the format by its header.

Formats: FOCUS 1.x (CSV/Parquet), AWS CUR (legacy and 2.0 column names), Azure EA/MCA cost
exports. The header is read first, so a file that is no bill at all (a mapping table, a price
list) is refused as one rejected record without reading its rows. Field rules shared by every
format (ids, tags, spot, rejections) live in billing_common.
"""

from __future__ import annotations

import os

from ftops.readers import aws_cur, azure_cost, focus
from ftops.readers.base import ReaderError, ReadResult, rejected_file
from ftops.readers.billing_common import SPOT_PRICING_CATEGORY, TABLE, finish_billing, is_spot
from ftops.readers.sniff import not_text_reason
from ftops.readers.tabular import file_kind, read_header, read_tabular
from ftops.schemas import BILLING_LINE_ITEMS

# checked in this order: CUR and FOCUS names are distinctive; Azure's Date/Cost are generic
_FORMATS = (aws_cur, focus, azure_cost)
_TRIED = (
    "FOCUS 1.x (needs BilledCost and ChargePeriodStart)",
    "AWS CUR (needs lineItem/UnblendedCost and lineItem/UsageStartDate, or CUR 2.0 line_item_unblended_cost "
    "and line_item_usage_start_date)",
    "Azure EA/MCA cost export (needs Date, Cost or CostInBillingCurrency, and MeterCategory/MeterId/ConsumedService)",
)
NOT_A_BILL = "not a billing export"


def detect_format(columns: list[str]) -> str | None:
    """The format name whose required columns the header has, or None."""
    for module in _FORMATS:
        if module.matches(columns):
            return module.FORMAT
    return None


def read_billing(
    path: str | os.PathLike, job_tag_key: str = "job_id", budget_tag_key: str = "budget_category"
) -> ReadResult:
    """Read one billing export into `billing_line_items` rows plus rejected rows with reasons.

    job_id and budget_category come from the tags named `job_tag_key` / `budget_tag_key`
    (case-insensitive, AWS `user:` prefix accepted). Never raises for bad input: an unreadable
    file or one whose header matches no billing format is one rejected record.
    """
    source = str(path)

    def refuse(reason: str) -> ReadResult:
        return ReadResult(TABLE, BILLING_LINE_ITEMS.empty(), rejected_file(source, TABLE, reason))

    try:
        # the CSV parser's Latin-1 fallback would read UTF-16 or binary bytes as a garbled header
        problem = not_text_reason(path) if file_kind(path) == "csv" else None
        header = read_header(path)
    except OSError as exc:
        return refuse(f"unreadable billing file: {type(exc).__name__}: {exc}")
    except ReaderError as exc:
        return refuse(f"unreadable billing file: {exc}")
    if problem is not None:
        return refuse(f"{NOT_A_BILL}: {problem}")
    module = next((m for m in _FORMATS if m.matches(header)), None)
    if module is None:
        shown = ", ".join(header[:12]) + (", …" if len(header) > 12 else "")
        return refuse(
            f"{NOT_A_BILL}: the header matches no known billing format (tried {'; '.join(_TRIED)}); "
            f"columns: {shown}"
        )
    try:
        table = read_tabular(path)
    except ReaderError as exc:
        return refuse(f"unreadable billing file: {exc}")
    staged = module.stage(table.frame)
    return finish_billing(staged, table, source=source, job_tag_key=job_tag_key, budget_tag_key=budget_tag_key)


__all__ = ["read_billing", "detect_format", "is_spot", "SPOT_PRICING_CATEGORY", "NOT_A_BILL"]
