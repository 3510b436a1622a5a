"""FOCUS 1.x exports (CSV or Parquet, PascalCase columns) -> staged `billing_line_items` fields.

Quirks handled (seen in the FOCUS sample data and the specification's examples): the literal
NULL/null for missing values, a UTF-8 byte-order mark before the first column, blank lines
between rows, money written as "$10,000.00 ", US dates such as 5/1/25, column names in another
case (SkuPriceid), and a Tags JSON object. The line id is the `Id` column (present in the
FOCUS sample data) or an `x_…Id` extension column naming a line item, when it is unique.
"""

from __future__ import annotations

import re

import pandas as pd

from ftops.readers.billing_common import Staged, join_text
from ftops.readers.tabular import Columns

FORMAT = "FOCUS 1.x"
REQUIRED = ("BilledCost", "ChargePeriodStart")
_LINE_ID_EXTENSION = re.compile(r"(?i)^x_\w*(lineitem|billingitem|record|row|charge)\w*id$")


def matches(columns: list[str]) -> bool:
    lookup = Columns(pd.DataFrame(columns=columns))
    return all(lookup.has(c) for c in REQUIRED)


def _line_id_column(c: Columns) -> str | None:
    if c.has("Id"):
        return c.name("Id")
    for column in c.frame.columns:
        if _LINE_ID_EXTENSION.match(str(column)):
            return column
    return None


def stage(frame: pd.DataFrame) -> Staged:
    c = Columns(frame)
    names = {
        "charge_period_start": c.name("ChargePeriodStart"),
        "charge_period_end": c.name("ChargePeriodEnd"),
        "billed_cost": c.name("BilledCost"),
        "effective_cost": c.name("EffectiveCost"),
        "list_cost": c.name("ListCost"),
        "currency": c.name("BillingCurrency"),
        # FOCUS 1.3 renamed ProviderName to ServiceProviderName
        "provider": c.name("ProviderName", "ServiceProviderName"),
        "service_name": c.name("ServiceName"),
        "resource_id": c.name("ResourceId"),
        "sku": c.name("SkuId", "SkuPriceId"),
        "pricing_category": c.name("PricingCategory"),
        "consumed_quantity": c.name("ConsumedQuantity"),
        "consumed_unit": c.name("ConsumedUnit"),
        "tags": c.name("Tags"),
        "instance_type": c.name("x_InstanceType", "InstanceType"),
    }
    columns = {key: (frame[col] if col is not None else None) for key, col in names.items()}
    region_id, region_name = c.get("RegionId"), c.get("RegionName")
    if region_id is not None and region_name is not None:
        columns["region"] = region_id.where(region_id.notna(), region_name)
    else:
        columns["region"] = region_id if region_id is not None else region_name
    line_id = _line_id_column(c)
    return Staged(
        columns=columns,
        source_names={k: v for k, v in names.items() if v is not None},
        line_id=frame[line_id] if line_id is not None else None,
        instance_text=[t for t in (c.get("SkuId"), c.get("ResourceName"), c.get("ChargeDescription"),
                                   c.get("SkuMeter"), c.get("SkuPriceDetails")) if t is not None],
        id_extra=join_text(
            c.get("ChargeCategory"), c.get("ChargeClass"), c.get("ChargeDescription"), c.get("ChargeFrequency"),
            c.get("SubAccountId"), c.get("CommitmentDiscountId"), c.get("SkuPriceId"), c.get("BillingPeriodStart"),
        ),
    )
