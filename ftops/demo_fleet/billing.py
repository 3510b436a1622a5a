"""The fleet's cloud bill: hourly compute usage per job instance, and the FOCUS 1.0 line items a
provider would export for it (tagged job usage, shared storage and networking, one credit)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.demo_fleet.plan import DEMO_TAG_TEAM, PlannedJob, job_rng, observed_end_ms
from ftops.demo_fleet.times import MS_PER_DAY, MS_PER_H


FOCUS_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
    "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
    "ServiceCategory", "Id", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)
_NUMERIC_FOCUS = {"BilledCost", "ConsumedQuantity", "ContractedCost", "ContractedUnitPrice", "EffectiveCost",
                  "ListCost", "PricingQuantity", "Id"}
_REGION_NAMES = {"us-east-1": "US East (N. Virginia)", "us-west-2": "US West (Oregon)"}
_SUB_ACCOUNTS = {"research": ("310000000001", "ml-research"), "product": ("310000000002", "ml-product"),
                 "experiments": ("310000000003", "ml-sandbox"), None: ("310000000000", "platform-shared")}


def _fake_code(text: pd.Series, length: int) -> pd.Series:
    """Stable AWS-looking SKU codes derived from text (not real SKUs)."""
    alphabet = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ23456789"))
    # 12 characters of 5 bits per 64-bit hash
    hashes = [pd.util.hash_pandas_object(text + f"~{k}", index=False).to_numpy() for k in range(length // 12 + 1)]
    chars = [alphabet[(hashes[i // 12] >> np.uint64(5 * (i % 12))) % np.uint64(32)] for i in range(length)]
    return pd.Series(["".join(c) for c in zip(*chars)], index=text.index) if len(text) else text


def job_cost_lines(jobs: list[PlannedJob], seed: int, end_ms: int) -> pd.DataFrame:
    """Hourly compute usage of every job instance, billed or not yet (for budgets)."""
    frames = []
    for job in jobs:
        if job.started_ms is None:
            continue
        stop = observed_end_ms(job, end_ms)
        first = (job.started_ms // MS_PER_H) * MS_PER_H
        hours = np.arange(first, stop, MS_PER_H, dtype=np.int64)
        if not len(hours):
            continue
        used_h = (np.minimum(hours + MS_PER_H, stop) - np.maximum(hours, job.started_ms)) / MS_PER_H
        inst = job.instance
        r = job_rng(seed, job.index, 6)
        if job.pricing == "spot":
            # the spot market moves hour by hour around its typical level
            unit = np.round(inst.spot_usd_per_hour * np.clip(np.exp(r.normal(0, 0.08, len(hours))), 0.8, 1.25), 4)
        else:
            unit = np.full(len(hours), inst.on_demand_usd_per_hour)
        frames.append(pd.DataFrame({
            "hour_ms": hours, "quantity": np.round(used_h, 6), "unit_price": unit,
            "list_unit_price": inst.on_demand_usd_per_hour, "job_id": job.job_id,
            "budget_category": job.budget_category, "team": DEMO_TAG_TEAM[job.domain],
            "instance_type": inst.name, "pricing": job.pricing, "region": job.region, "zone": job.zone,
            "resource_id": job.resource_id,
        }))
    lines = pd.concat(frames, ignore_index=True)
    lines["cost"] = np.round(lines["quantity"] * lines["unit_price"], 8)
    return lines


def _shared_usage_lines(day: pd.DatetimeIndex, quantity: np.ndarray, unit_price: float, unit: str,
                        description: str, resource_id: str, resource_type: str, service_category: str,
                        service_name: str, sku: str) -> pd.DataFrame:
    """Daily FOCUS lines of a shared us-east-1 resource that no job's tags claim (storage, network)."""
    cost = np.round(quantity * unit_price, 8)
    account = _SUB_ACCOUNTS[None]
    return pd.DataFrame({
        "AvailabilityZone": None, "BilledCost": cost, "ChargeCategory": "Usage",
        "ChargeDescription": description, "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": day, "ChargePeriodEnd": day + pd.Timedelta(days=1),
        "ConsumedQuantity": quantity, "ConsumedUnit": unit, "ContractedCost": cost,
        "ContractedUnitPrice": unit_price, "EffectiveCost": cost,
        "ListCost": cost, "ListUnitPrice": str(unit_price), "PricingCategory": "Standard",
        "PricingQuantity": quantity, "PricingUnit": unit, "RegionId": "us-east-1",
        "RegionName": _REGION_NAMES["us-east-1"], "ResourceId": resource_id,
        "ResourceType": resource_type, "ServiceCategory": service_category, "ServiceName": service_name,
        "SkuKey": sku, "SubAccountId": account[0], "SubAccountName": account[1], "Tags": None,
    })


def focus_frame(usage: pd.DataFrame, start_ms: int, cutoff_ms: int, seed: int) -> pd.DataFrame:
    """FOCUS 1.0 rows: billed job usage, daily shared storage/networking, one credit."""
    usage = usage[usage["hour_ms"] < cutoff_ms]
    spot = usage["pricing"] == "spot"
    hour = pd.to_datetime(usage["hour_ms"], unit="ms")
    tags = ('{"budget_category": "' + usage["budget_category"] + '", "job_id": "' + usage["job_id"]
            + '", "team": "' + usage["team"] + '"}')
    unit_txt = usage["unit_price"].map("{:.4f}".format)
    desc = np.where(spot, "$" + unit_txt + " per Spot Linux " + usage["instance_type"] + " Instance Hour",
                    "$" + usage["list_unit_price"].map("{:.4f}".format) + " per On Demand Linux "
                    + usage["instance_type"] + " Instance Hour")
    sub = usage["budget_category"].map(lambda c: _SUB_ACCOUNTS[c])
    jobs = pd.DataFrame({
        "AvailabilityZone": usage["zone"], "BilledCost": usage["cost"],
        "ChargeCategory": "Usage", "ChargeDescription": desc, "ChargeFrequency": "Usage-Based",
        "ChargePeriodStart": hour, "ChargePeriodEnd": hour + pd.Timedelta(hours=1),
        "ConsumedQuantity": usage["quantity"], "ConsumedUnit": "Hours",
        "ContractedCost": np.round(usage["quantity"] * usage["list_unit_price"], 8),
        "ContractedUnitPrice": usage["list_unit_price"], "EffectiveCost": usage["cost"],
        "ListCost": np.round(usage["quantity"] * usage["list_unit_price"], 8),
        "ListUnitPrice": usage["list_unit_price"].map("{:g}".format),
        "PricingCategory": np.where(spot, "Dynamic", "Standard"), "PricingQuantity": usage["quantity"],
        "PricingUnit": "Hours", "RegionId": usage["region"], "RegionName": usage["region"].map(_REGION_NAMES),
        "ResourceId": usage["resource_id"], "ResourceType": "instance", "ServiceCategory": "Compute",
        "ServiceName": "Amazon Elastic Compute Cloud",
        "SkuKey": usage["instance_type"] + "|" + usage["pricing"] + "|" + usage["region"],
        "SubAccountId": sub.str[0], "SubAccountName": sub.str[1], "Tags": tags,
    })

    r = np.random.default_rng([seed, 0, 7])
    days = np.arange(start_ms // MS_PER_DAY * MS_PER_DAY, cutoff_ms - MS_PER_DAY + 1, MS_PER_DAY, dtype=np.int64)
    day = pd.to_datetime(days, unit="ms")
    n = len(days)
    gb_month = np.round(r.uniform(38000, 42000, n) / 30.0, 6)  # checkpoints and datasets, per day
    nat_gb = np.round(r.uniform(300, 900, n), 6)
    shared_acct = _SUB_ACCOUNTS[None]
    storage = _shared_usage_lines(
        day, gb_month, 0.023, "GB-Mo", "$0.023 per GB - first 50 TB / month of storage used",
        "ftops-demo-checkpoints", "bucket", "Storage", "Amazon Simple Storage Service", "s3-standard")
    network = _shared_usage_lines(
        day, nat_gb, 0.045, "GB", "$0.045 per GB Data Processed by NAT Gateways",
        "nat-0ftopsdemo0000001", "natgateway", "Networking", "Amazon Virtual Private Cloud", "nat-gateway-bytes")
    parts = [jobs, storage, network]
    if n:
        credit_day = day[min(n - 1, n // 2)]
        amount = -round(float(r.uniform(150, 300)), 2)
        parts.append(pd.DataFrame({
            "AvailabilityZone": [None], "BilledCost": [amount], "ChargeCategory": ["Credit"],
            "ChargeDescription": ["AWS Promotional Credits (research grant)"], "ChargeFrequency": ["One-Time"],
            "ChargePeriodStart": [credit_day], "ChargePeriodEnd": [credit_day + pd.Timedelta(hours=1)],
            "ConsumedQuantity": [None], "ConsumedUnit": [None], "ContractedCost": [amount],
            "ContractedUnitPrice": [None], "EffectiveCost": [amount], "ListCost": [amount], "ListUnitPrice": [None],
            "PricingCategory": ["Other"], "PricingQuantity": [0.0], "PricingUnit": ["Hours"],
            "RegionId": ["us-east-1"], "RegionName": [_REGION_NAMES["us-east-1"]], "ResourceId": [None],
            "ResourceType": [None], "ServiceCategory": ["Compute"], "ServiceName": ["Amazon Elastic Compute Cloud"],
            "SkuKey": ["credit"], "SubAccountId": [shared_acct[0]], "SubAccountName": [shared_acct[1]],
            "Tags": [None],
        }))
    focus = pd.concat([p for p in parts if len(p)], ignore_index=True)
    month = focus["ChargePeriodStart"].dt.to_period("M")
    focus["BillingPeriodStart"] = month.dt.start_time
    focus["BillingPeriodEnd"] = (month + 1).dt.start_time
    focus["BillingAccountId"] = "210987654321"
    focus["BillingAccountName"] = "ftops-demo"
    focus["BillingCurrency"] = "USD"
    focus["InvoiceIssuerName"] = "Amazon Web Services, Inc."
    focus["ProviderName"] = "AWS"
    focus["PublisherName"] = "Amazon Web Services, Inc."
    for col in ("ChargeClass", "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
                "CommitmentDiscountStatus", "CommitmentDiscountType", "ResourceName"):
        focus[col] = None
    focus["SkuId"] = _fake_code(focus["SkuKey"], 16)
    focus["SkuPriceId"] = np.where(focus["ChargeCategory"] == "Credit", None,
                                   focus["SkuId"] + "." + _fake_code(focus["SkuKey"] + "#rate", 10))
    # a line item id that is stable across re-deliveries of the same charge
    key = (focus["ResourceId"].fillna("") + "|" + focus["ChargeCategory"] + "|" + focus["SkuKey"] + "|"
           + focus["ChargePeriodStart"].astype("int64").astype(str))
    focus["Id"] = (pd.util.hash_pandas_object(key, index=False).to_numpy() % np.uint64(10**12)).astype(np.int64)
    focus = focus.sort_values(["ChargePeriodStart", "ServiceName", "ResourceId", "Id"], kind="stable",
                              na_position="last").reset_index(drop=True)
    return focus[list(FOCUS_COLUMNS)]


def focus_csv_text(frame: pd.DataFrame) -> str:
    """CSV as the FOCUS sample writes it: quoted text, bare numbers, bare NULL for nulls."""
    cols = []
    for name in FOCUS_COLUMNS:
        s = frame[name]
        if pd.api.types.is_datetime64_any_dtype(s):
            text = '"' + s.dt.strftime("%Y-%m-%d %H:%M:%S") + '"'
        elif name == "Id":
            text = s.astype(str)
        elif name in _NUMERIC_FOCUS:
            num = pd.to_numeric(s, errors="coerce")
            text = num.map(lambda v: f"{v:.11f}") if name != "ConsumedQuantity" else num.map(lambda v: f"{v:.9f}")
        else:
            text = '"' + s.astype(object).where(s.notna(), "").astype(str).str.replace('"', '""') + '"'
        cols.append(text.where(s.notna(), "NULL"))
    header = ",".join(f'"{c}"' for c in FOCUS_COLUMNS)
    body = pd.concat(cols, axis=1).agg(",".join, axis=1) if len(frame) else pd.Series(dtype=str)
    return header + "\n" + "".join(line + "\n" for line in body)
