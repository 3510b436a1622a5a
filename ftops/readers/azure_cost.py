"""Azure cost exports in the native (pre-FOCUS) EA and MCA schemas -> staged `billing_line_items`.

EA exports name the cost `Cost` and the currency `BillingCurrency`; MCA exports use
`CostInBillingCurrency` and `BillingCurrencyCode` (either capitalisation). Lines are daily, so
the charge period is [Date, Date + 1 day). Tags are JSON, often without the outer braces.

Actual vs amortized: both exports carry one cost column. In an actual-cost export it is what was
billed; in an amortized export it is the cost with reservation/savings-plan purchases spread over
the usage they cover. Neither file says which it is, so the value goes to both billed_cost and
effective_cost; load one kind per billing period. Lines the two exports share get the same
content id (see billing_common), so loading both does not double count those.

Azure writes no line id, so line_item_id is always the stable content id.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ftops.readers.billing_common import Staged, join_text
from ftops.readers.tabular import Columns, parse_numbers, text_or_null

FORMAT = "Azure cost export"
_DATE = ("Date", "UsageDate", "UsageDateTime")
_COST = ("CostInBillingCurrency", "Cost", "PreTaxCost")
_CURRENCY = ("BillingCurrencyCode", "BillingCurrency", "Currency")
_AZURE_MARKERS = ("MeterCategory", "MeterId", "ConsumedService", "MeterName")
_PRICING_MODEL = {"ondemand": "Standard", "reservation": "Committed", "savingsplan": "Committed", "spot": "Dynamic"}


def matches(columns: list[str]) -> bool:
    c = Columns(pd.DataFrame(columns=columns))
    return c.has(*_DATE) and c.has(*_COST) and c.has(*_AZURE_MARKERS)


def _vm_size_from_additional_info(info: pd.Series | None, index: pd.Index) -> pd.Series:
    """AdditionalInfo's ServiceType when it is a VM size (Standard_…), parsed once per distinct value."""
    text = text_or_null(info, index)
    codes, uniques = pd.factorize(text, use_na_sentinel=True)

    def service_type(raw: str) -> str | None:
        try:
            value = json.loads(raw).get("ServiceType")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) and value.lower().startswith("standard_") else None

    found = np.array([service_type(str(u)) for u in uniques] + [None], dtype=object)
    return pd.Series(found.take(codes), index=index, dtype="string")


def stage(frame: pd.DataFrame) -> Staged:
    c = Columns(frame)
    index = frame.index
    names = {
        "charge_period_start": c.name(*_DATE),
        "billed_cost": c.name(*_COST),
        "currency": c.name(*_CURRENCY),
        "service_name": c.name("MeterCategory", "ConsumedService"),
        "resource_id": c.name("ResourceId", "InstanceId", "InstanceName"),
        "sku": c.name("MeterId", "PartNumber", "ProductId"),
        "consumed_quantity": c.name("Quantity", "UsageQuantity"),
        "consumed_unit": c.name("UnitOfMeasure"),
        "tags": c.name("Tags"),
    }
    columns = {key: (frame[col] if col is not None else None) for key, col in names.items()}
    columns["effective_cost"] = columns["billed_cost"]

    payg_cost = c.get("PaygCostInBillingCurrency")
    if payg_cost is not None:
        columns["list_cost"] = payg_cost
    else:
        payg_price, _ = parse_numbers(c.get("PayGPrice"), index)
        quantity, _ = parse_numbers(columns["consumed_quantity"], index)
        charge_type = text_or_null(c.get("ChargeType"), index).str.lower()
        # a pay-as-you-go price means nothing for purchases and refunds
        usage = charge_type.eq("usage").fillna(c.get("ChargeType") is None)
        model = text_or_null(c.get("PricingModel"), index).str.lower()
        # EA writes PayGPrice 0 on reservation/savings-plan lines: "not given", not "free"
        unknown = payg_price.eq(0) & model.isin(["reservation", "savingsplan"]).fillna(False)
        columns["list_cost"] = (payg_price * quantity).where(usage.to_numpy(dtype=bool) & ~unknown.to_numpy(dtype=bool))

    model = text_or_null(c.get("PricingModel"), index)
    columns["pricing_category"] = model.str.lower().map(_PRICING_MODEL).astype("string").mask(
        model.notna() & ~model.str.lower().isin(list(_PRICING_MODEL)), "Other"
    )
    location = text_or_null(c.get("ResourceLocation"), index)
    columns["region"] = location.str.lower().str.replace(" ", "", regex=False)
    columns["instance_type"] = _vm_size_from_additional_info(c.get("AdditionalInfo"), index)

    return Staged(
        columns=columns,
        source_names={k: v for k, v in names.items() if v is not None},
        instance_text=[t for t in (c.get("MeterSubCategory"), c.get("MeterName"), c.get("Product")) if t is not None],
        id_extra=join_text(
            c.get("SubscriptionId", "SubscriptionGuid"), c.get("ChargeType"), c.get("PricingModel"),
            c.get("ReservationId"), c.get("Product"), c.get("MeterName"), c.get("AdditionalInfo"),
            c.get("EffectivePrice"), c.get("UnitPrice"), c.get("BenefitId"),
        ),
        default_period=pd.Timedelta(days=1),
        provider="Microsoft",
    )
