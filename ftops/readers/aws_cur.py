"""AWS Cost and Usage Report (legacy CUR `lineItem/UnblendedCost` style, and CUR 2.0 `line_item_…`)
-> staged `billing_line_items` fields.

Both generations are read through one table: legacy names are turned into CUR 2.0 snake_case
("lineItem/UsageStartDate" -> "line_item_usage_start_date"). Tags come from `resourceTags/…`
columns (legacy; key kept as AWS writes it, e.g. "user:job_id") or the CUR 2.0 `resource_tags`
JSON map.

Costs: billed_cost is lineItem/UnblendedCost (what the invoice sums). effective_cost follows the
FOCUS mapping for the common cases: covered Savings Plan usage costs its SavingsPlanEffectiveCost,
reserved-instance usage (DiscountedUsage) its reservation/EffectiveCost, and SavingsPlanNegation
lines (which only cancel the on-demand cost of covered usage) cost nothing; everything else costs
its unblended cost. list_cost is pricing/publicOnDemandCost.

Line id: identity/LineItemId is unique only within one time interval of a delivery, so the id is
LineItemId + "@" + identity/TimeInterval when both are present (and unique in the file).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from ftops.readers.billing_common import Staged, join_text
from ftops.readers.tabular import Columns, parse_numbers, text_or_null

FORMAT = "AWS CUR"
REQUIRED = ("line_item_unblended_cost", "line_item_usage_start_date")
_TAG_PREFIX = re.compile(r"(?i)^resource_?tags/")


def snake(name: str) -> str:
    """CUR legacy column name -> CUR 2.0 name ("lineItem/UnblendedCost" -> "line_item_unblended_cost")."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip())
    return re.sub(r"[/:\s]+", "_", text).lower()


def matches(columns: list[str]) -> bool:
    names = {snake(c) for c in columns if not _TAG_PREFIX.match(str(c))}
    return all(r in names for r in REQUIRED)


def _tags_json(frame: pd.DataFrame, tag_columns: list[str]) -> pd.Series | None:
    """One JSON object per line from the resourceTags/* columns, built once per distinct tag set."""
    if not tag_columns:
        return None
    tags = frame[tag_columns].astype("string")
    tags = tags.mask(tags.apply(lambda col: col.str.strip().eq("")))
    keys = [_TAG_PREFIX.sub("", c) for c in tag_columns]
    hashed = pd.util.hash_pandas_object(tags, index=False).to_numpy()
    _, first, inverse = np.unique(hashed, return_index=True, return_inverse=True)
    distinct = tags.iloc[first].to_numpy(dtype=object, na_value=None)
    built = [json.dumps({k: v for k, v in zip(keys, row) if v is not None}, ensure_ascii=False) for row in distinct]
    out = np.array(built, dtype=object).take(inverse)
    return pd.Series(out, index=frame.index, dtype="string").mask(lambda s: s.eq("{}"))


def stage(frame: pd.DataFrame) -> Staged:
    tag_columns = [c for c in frame.columns if _TAG_PREFIX.match(str(c))]
    renamed = frame.drop(columns=tag_columns).rename(columns=snake)
    c = Columns(renamed)
    names = {
        "charge_period_start": "line_item_usage_start_date",
        "charge_period_end": "line_item_usage_end_date",
        "billed_cost": "line_item_unblended_cost",
        "list_cost": "pricing_public_on_demand_cost",
        "currency": "line_item_currency_code",
        "service_name": c.name("product_product_name", "line_item_product_code"),
        "resource_id": "line_item_resource_id",
        "sku": c.name("product_sku", "line_item_usage_type"),
        "consumed_quantity": "line_item_usage_amount",
        "consumed_unit": c.name("pricing_unit"),
        "region": c.name("product_region_code", "product_region"),
        "instance_type": c.name("product_instance_type"),
    }
    columns = {key: c.get(col) if col else None for key, col in names.items()}
    index = frame.index

    line_type = text_or_null(c.get("line_item_line_item_type"), index)
    unblended, _ = parse_numbers(c.get("line_item_unblended_cost"), index)
    effective = unblended.copy()
    sp_effective, _ = parse_numbers(c.get("savings_plan_savings_plan_effective_cost"), index)
    ri_effective, _ = parse_numbers(c.get("reservation_effective_cost"), index)
    covered = line_type.eq("SavingsPlanCoveredUsage").fillna(False) & sp_effective.notna()
    discounted = line_type.eq("DiscountedUsage").fillna(False) & ri_effective.notna()
    effective = effective.mask(covered, sp_effective).mask(discounted, ri_effective)
    effective = effective.mask(line_type.eq("SavingsPlanNegation").fillna(False), 0.0)
    # unparseable unblended costs stay unparseable text in billed_cost; effective just follows
    columns["effective_cost"] = effective

    columns["pricing_category"] = _pricing_category(c, line_type, index)
    columns["provider"] = None
    if c.has("resource_tags"):
        columns["tags"] = c.get("resource_tags")
    else:
        columns["tags"] = _tags_json(frame, tag_columns)

    line_id = c.get("identity_line_item_id", "line_item_line_item_id")
    interval = c.get("identity_time_interval")
    if line_id is not None and interval is not None:
        line_id = line_id.astype("string") + "@" + interval.astype("string")

    source_names = {k: col for k, col in names.items() if col and c.has(col)}
    # reasons name the file's own column, not the CUR 2.0 spelling
    original = {snake(col): col for col in frame.columns if not _TAG_PREFIX.match(str(col))}
    source_names = {k: original.get(v, v) for k, v in source_names.items()}
    return Staged(
        columns=columns,
        source_names=source_names,
        line_id=line_id,
        instance_text=[t for t in (c.get("line_item_usage_type"), c.get("line_item_line_item_description")) if t is not None],
        id_extra=join_text(
            line_type, c.get("line_item_usage_account_id"), c.get("line_item_usage_type"),
            c.get("line_item_operation"), c.get("line_item_line_item_description"), c.get("line_item_availability_zone"),
        ),
        provider="AWS",
    )


def _pricing_category(c: Columns, line_type: pd.Series, index: pd.Index) -> pd.Series:
    """FOCUS PricingCategory from pricing/term, the line type and the usage type."""
    term = text_or_null(c.get("pricing_term"), index).str.lower()
    usage_type = text_or_null(c.get("line_item_usage_type"), index)
    out = pd.Series(pd.NA, index=index, dtype="string")
    usage_lines = line_type.isin(["Usage", "DiscountedUsage", "SavingsPlanCoveredUsage"]).fillna(False)
    if c.get("line_item_line_item_type") is None:
        usage_lines = pd.Series(True, index=index)
    out = out.mask(usage_lines & term.eq("ondemand").fillna(False), "Standard")
    out = out.mask(usage_lines & term.isin(["reserved", "savingsplan"]).fillna(False), "Committed")
    out = out.mask(line_type.isin(["DiscountedUsage", "SavingsPlanCoveredUsage"]).fillna(False), "Committed")
    spot = term.eq("spot").fillna(False) | usage_type.str.contains("SpotUsage", regex=False).fillna(False)
    return out.mask(spot, "Dynamic")
