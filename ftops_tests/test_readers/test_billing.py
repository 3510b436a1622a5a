from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ftops.readers.billing import NOT_A_BILL, detect_format, is_spot, read_billing
from ftops.readers.billing_common import gpu_instance_in
from ftops.schemas import BILLING_LINE_ITEMS, validate

# ---- fixtures ---------------------------------------------------------------------------------

FOCUS_HEADER = (
    "Id,BilledCost,EffectiveCost,ListCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,"
    "ChargeDescription,ProviderName,ServiceName,ResourceId,ResourceName,SkuId,PricingCategory,ConsumedQuantity,"
    "ConsumedUnit,RegionId,RegionName,Tags"
)
FOCUS_ROWS = [
    # 1 GPU host, tags name the job and budget
    'L1,1.624,1.624,1.624,USD,2024-09-03 10:00:00,2024-09-03 11:00:00,Usage,'
    '$1.624 per On Demand Linux g5.4xlarge Instance Hour,AWS,Amazon Elastic Compute Cloud,i-0abc,NULL,'
    '4GQWNPC9K2PZAY97,Standard,1,Hours,us-east-1,US East (N. Virginia),'
    '"{""job_id"": ""ft-001"", ""budget_category"": ""research""}"',
    # 2 spot p4d, AWS user: prefix and other key case
    'L2,9.80,9.80,32.77,USD,2024-09-03T10:00:00Z,2024-09-03T11:00:00Z,Usage,Spot usage,AWS,'
    'Amazon Elastic Compute Cloud,i-0def,NULL,USE1-SpotUsage:p4d.24xlarge,Dynamic,1,Hours,us-east-1,NULL,'
    '"{""user:job_id"": ""ft-002"", ""Budget_Category"": ""production""}"',
    # 3 credit: negative cost is a valid line; RegionId NULL falls back to RegionName
    "L3,-5.00,-5.00,NULL,USD,2024-09-01 00:00:00,2024-10-01 00:00:00,Credit,Promotional credit,AWS,NULL,NULL,NULL,"
    "NULL,NULL,NULL,NULL,NULL,Global,NULL",
    # 4 Azure GPU VM named in ResourceName; money formatting
    'L4,"$1,234.50 ",1234.5,1234.5,USD,2024-09-03,2024-09-04,Usage,NC A100 v4,Microsoft,Virtual Machines,'
    '/subscriptions/s/vm1,Standard_NC24ads_A100_v4,NULL,Standard,24,Hours,eastus,East US,'
    '"{""job_id"": ""ft-003""}"',
    # 5 unparseable start
    "L5,1.00,1.00,1.00,USD,yesterday,2024-09-03 11:00:00,Usage,x,AWS,S3,r5,NULL,sku5,Standard,1,GB,us-east-1,NULL,NULL",
    # 6 non-numeric billed cost
    "L6,12.5x,1.00,1.00,USD,2024-09-03 10:00:00,2024-09-03 11:00:00,Usage,x,AWS,S3,r6,NULL,sku6,Standard,1,GB,"
    "us-east-1,NULL,NULL",
    # 7 missing currency
    "L7,1.00,1.00,1.00,NULL,2024-09-03 10:00:00,2024-09-03 11:00:00,Usage,x,AWS,S3,r7,NULL,sku7,Standard,1,GB,"
    "us-east-1,NULL,NULL",
    # 8 tags that are not JSON: the cost still counts, the text is kept
    "L8,0.50,0.50,0.50,USD,2024-09-03 10:00:00,2024-09-03 11:00:00,Usage,x,AWS,S3,r8,NULL,sku8,Standard,1,GB,"
    "us-east-1,NULL,team=ml",
]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _focus(tmp_path: Path, rows: list[str] = FOCUS_ROWS, name: str = "focus.csv") -> Path:
    return _write(tmp_path, name, "\n".join([FOCUS_HEADER, *rows]) + "\n")


def _by_id(result) -> pd.DataFrame:
    return result.accepted.set_index("line_item_id")


def _reasons(result) -> dict[str, str]:
    """record -> reason of every rejected row."""
    return dict(zip(result.rejected["record"], result.rejected["reason"]))


# ---- FOCUS ------------------------------------------------------------------------------------


def test_focus_accepts_valid_lines_and_extracts_tags(tmp_path):
    result = read_billing(_focus(tmp_path))
    items = _by_id(result)

    assert sorted(items.index) == ["L1", "L2", "L3", "L4", "L8"]  # the file's own unique Id column
    assert items.loc["L1", "job_id"] == "ft-001"
    assert items.loc["L1", "budget_category"] == "research"
    assert items.loc["L2", "job_id"] == "ft-002"  # user:job_id
    assert items.loc["L2", "budget_category"] == "production"  # Budget_Category
    assert items.loc["L4", "job_id"] == "ft-003"
    assert pd.isna(items.loc["L3", "job_id"])
    assert json.loads(items.loc["L1", "tags"]) == {"job_id": "ft-001", "budget_category": "research"}
    assert json.loads(items.loc["L8", "tags"]) == {"_unparsed": "team=ml"}
    assert pd.isna(items.loc["L3", "tags"])

    assert items.loc["L3", "billed_cost"] == -5.0
    assert items.loc["L3", "region"] == "Global"
    assert pd.isna(items.loc["L3", "list_cost"])
    assert items.loc["L4", "billed_cost"] == 1234.5
    assert items.loc["L1", "charge_period_start"] == pd.Timestamp("2024-09-03T10:00:00Z")
    assert set(items["currency"]) == {"USD"}
    validate(result.accepted, BILLING_LINE_ITEMS)


def test_focus_instance_type_and_spot(tmp_path):
    items = _by_id(read_billing(_focus(tmp_path)))
    assert items.loc["L1", "instance_type"] == "g5.4xlarge"  # from ChargeDescription
    assert items.loc["L2", "instance_type"] == "p4d.24xlarge"  # from SkuId
    assert items.loc["L4", "instance_type"] == "Standard_NC24ads_A100_v4"  # from ResourceName
    assert pd.isna(items.loc["L8", "instance_type"])
    assert items.loc["L2", "pricing_category"] == "Dynamic"
    assert is_spot(items).to_dict() == {"L1": False, "L2": True, "L3": False, "L4": False, "L8": False}


def test_focus_rejections_have_reasons(tmp_path):
    result = read_billing(_focus(tmp_path))
    reasons = dict(zip(result.rejected["record"], result.rejected["reason"]))
    assert reasons == {
        "5": "unparseable charge_period_start (ChargePeriodStart)",
        "6": "non-numeric billed_cost (BilledCost)",
        "7": "missing currency (BillingCurrency)",
    }
    assert json.loads(result.rejected.set_index("record").loc["6", "raw"])["BilledCost"] == "12.5x"
    assert result.rows_in == len(FOCUS_ROWS) == len(result.accepted) + len(result.rejected)


def test_tag_keys_are_configurable(tmp_path):
    rows = [FOCUS_ROWS[0].replace('""job_id""', '""Run""').replace('""budget_category""', '""CostCenter""')]
    items = read_billing(_focus(tmp_path, rows), job_tag_key="run", budget_tag_key="costcenter").accepted
    assert (items["job_id"].iloc[0], items["budget_category"].iloc[0]) == ("ft-001", "research")


def test_content_ids_are_stable_and_an_exact_repeat_is_a_duplicate_not_spend(tmp_path):
    # no Id column: ids are content hashes; lines 2 and 3 are byte-identical
    header = "BilledCost,BillingCurrency,ChargePeriodStart,ProviderName,ResourceId,SkuId"
    lines = ["0.10,USD,2024-09-01T00:00:00Z,AWS,i-1,sku", "0.20,USD,2024-09-01T00:00:00Z,AWS,i-1,sku",
             "0.20,USD,2024-09-01T00:00:00Z,AWS,i-1,sku"]
    path = _write(tmp_path, "bill.csv", "\n".join([header, *lines]) + "\n")
    result = read_billing(path)
    first = result.accepted["line_item_id"].tolist()
    second = read_billing(path).accepted["line_item_id"].tolist()

    assert first == second
    assert len(first) == len(set(first)) == 2
    assert result.accepted["billed_cost"].sum() == pytest.approx(0.30)
    assert result.duplicates == 1 and result.rejected.empty and result.records_accounted == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in first)
    # the same content under another file name gets the same ids (no double counting on re-delivery)
    moved = _write(tmp_path, "renamed.csv", path.read_text())
    assert read_billing(moved).accepted["line_item_id"].tolist() == first
    # and so does the file without its repeated line: a repeat changes no other line's id
    clean = _write(tmp_path, "clean.csv", "\n".join([header, *lines[:2]]) + "\n")
    assert read_billing(clean).accepted["line_item_id"].tolist() == first
    # pinned: a change here changes every stored id (a pandas hashing change would show up here)
    assert first[0] == "741186ee698977d119b82b906c4ab42c"


def test_lines_that_differ_only_in_columns_not_read_stay_apart(tmp_path):
    header = "BilledCost,BillingCurrency,ChargePeriodStart,ProviderName,ResourceId,x_Note"
    lines = ["0.20,USD,2024-09-01T00:00:00Z,AWS,i-1,a", "0.20,USD,2024-09-01T00:00:00Z,AWS,i-1,b"]
    result = read_billing(_write(tmp_path, "bill.csv", "\n".join([header, *lines]) + "\n"))
    assert result.accepted["line_item_id"].is_unique and len(result.accepted) == 2 and result.rejected.empty


def test_repeated_lines_with_their_own_ids_keep_the_ids_and_count_once(tmp_path):
    # the same five lines written twice, ids included (the December export)
    rows = [FOCUS_ROWS[i] for i in (0, 1, 2, 3, 7)]
    result = read_billing(_focus(tmp_path, rows + rows))
    assert sorted(result.accepted["line_item_id"]) == ["L1", "L2", "L3", "L4", "L8"]
    assert result.accepted["billed_cost"].sum() == pytest.approx(read_billing(_focus(tmp_path, rows, "once.csv"))
                                                                  .accepted["billed_cost"].sum())
    assert result.duplicates == 5 and result.rejected.empty and result.records_accounted == 10


def test_a_repeat_of_a_rejected_line_is_rejected_too_not_counted_as_duplicate(tmp_path):
    rows = [FOCUS_ROWS[5], FOCUS_ROWS[5], FOCUS_ROWS[0]]  # L6: non-numeric billed cost, twice
    result = read_billing(_focus(tmp_path, rows))
    assert result.duplicates == 0 and len(result.accepted) == 1
    assert result.rejected["record"].tolist() == ["1", "2"]


def test_a_source_id_shared_by_different_lines_falls_back_for_those_lines_only(tmp_path):
    rows = [FOCUS_ROWS[0], FOCUS_ROWS[0].replace("L1,1.624", "L1,2.000"), FOCUS_ROWS[1]]
    ids = read_billing(_focus(tmp_path, rows)).accepted["line_item_id"]
    assert "L1" not in set(ids) and ids.is_unique
    assert ids.iloc[2] == "L2"  # a line's id does not depend on the other lines of its file


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity"])
def test_non_finite_costs_are_rejected(tmp_path, cell):
    rows = [FOCUS_ROWS[0].replace("L1,1.624,1.624", f"L1,{cell},1.624"),
            FOCUS_ROWS[1].replace("L2,9.80,9.80,32.77", f"L2,9.80,9.80,{cell}")]
    result = read_billing(_focus(tmp_path, rows))
    assert result.accepted.empty
    reasons = _reasons(result)
    assert reasons["1"].startswith("non-finite billed_cost (BilledCost)")
    assert reasons["2"].startswith("non-finite list_cost (ListCost)")


def test_non_finite_costs_in_parquet_are_rejected(tmp_path):
    table = pa.table({"BilledCost": pa.array([1.5, float("inf")]), "BillingCurrency": ["USD", "USD"],
                      "ChargePeriodStart": ["2024-09-01T00:00:00Z", "2024-09-01T01:00:00Z"]})
    path = tmp_path / "bill.parquet"
    pq.write_table(table, path)
    result = read_billing(path)
    assert result.accepted["billed_cost"].tolist() == [1.5]
    assert result.rejected["reason"].str.startswith("non-finite billed_cost").tolist() == [True]


def test_focus_parquet_with_map_tags(tmp_path):
    table = pa.table(
        {
            "BilledCost": pa.array([1.5, -0.25]),
            "ChargePeriodStart": pa.array(pd.to_datetime(["2024-09-01 00:00", "2024-09-01 01:00"], utc=True)),
            "ChargePeriodEnd": pa.array(pd.to_datetime(["2024-09-01 01:00", "2024-09-01 02:00"], utc=True)),
            "BillingCurrency": ["EUR", "EUR"],
            "ProviderName": ["Google Cloud", "Google Cloud"],
            "SkuId": ["a2-highgpu-1g", None],
            "PricingCategory": ["Dynamic", None],
            "Tags": pa.array([[("job_id", "g-1"), ("team", 'a"b')], None], type=pa.map_(pa.string(), pa.string())),
        }
    )
    path = tmp_path / "focus.parquet"
    pq.write_table(table, path)
    result = read_billing(path)
    assert result.rejected.empty
    first = result.accepted.iloc[0]
    assert json.loads(first["tags"]) == {"job_id": "g-1", "team": 'a"b'}
    assert (first["job_id"], first["currency"], first["instance_type"]) == ("g-1", "EUR", "a2-highgpu-1g")
    assert result.accepted["billed_cost"].tolist() == [1.5, -0.25]


# ---- AWS CUR ----------------------------------------------------------------------------------

CUR = """\
identity/LineItemId,identity/TimeInterval,bill/PayerAccountId,lineItem/UsageAccountId,lineItem/LineItemType,lineItem/UsageStartDate,lineItem/UsageEndDate,lineItem/ProductCode,lineItem/UsageType,lineItem/Operation,lineItem/AvailabilityZone,lineItem/ResourceId,lineItem/UsageAmount,lineItem/CurrencyCode,lineItem/UnblendedRate,lineItem/UnblendedCost,lineItem/LineItemDescription,product/ProductName,product/instanceType,product/regionCode,product/sku,pricing/publicOnDemandCost,pricing/term,pricing/unit,savingsPlan/SavingsPlanEffectiveCost,reservation/EffectiveCost,resourceTags/user:job_id,resourceTags/user:budget_category,resourceTags/user:Name
a1,2024-09-01T00:00:00Z/2024-10-01T00:00:00Z,111122223333,444455556666,Usage,2024-09-03T10:00:00Z,2024-09-03T11:00:00Z,AmazonEC2,USE1-BoxUsage:g5.4xlarge,RunInstances,us-east-1a,i-0abc,1,USD,1.624,1.624,$1.624 per On Demand Linux g5.4xlarge Instance Hour,Amazon Elastic Compute Cloud,g5.4xlarge,us-east-1,4GQWNPC9K2PZAY97,1.624,OnDemand,Hrs,,,ft-42,research,trainer-0
a2,2024-09-01T00:00:00Z/2024-10-01T00:00:00Z,111122223333,444455556666,Usage,2024-09-03T10:00:00Z,2024-09-03T11:00:00Z,AmazonEC2,USE1-SpotUsage:p4d.24xlarge,RunInstances:SV001,us-east-1b,i-0def,1,USD,9.8,9.8,$9.8 per Linux/UNIX spot instance-hour,Amazon Elastic Compute Cloud,p4d.24xlarge,us-east-1,XYZ123,32.7726,,Hrs,,,ft-43,,
a3,2024-09-01T00:00:00Z/2024-10-01T00:00:00Z,111122223333,444455556666,SavingsPlanCoveredUsage,2024-09-03T10:00:00Z,2024-09-03T11:00:00Z,AmazonEC2,USE1-BoxUsage:g6.xlarge,RunInstances,us-east-1a,i-0ghi,1,USD,0.8048,0.8048,Savings Plan covered usage,Amazon Elastic Compute Cloud,g6.xlarge,us-east-1,QQQ111,0.8048,OnDemand,Hrs,0.52,,ft-44,research,
a4,2024-09-01T00:00:00Z/2024-10-01T00:00:00Z,111122223333,444455556666,Credit,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,AmazonEC2,,,,,,USD,,-25.00,AWS Activate credit,Amazon Elastic Compute Cloud,,,,,,,,,,,
a5,2024-09-01T00:00:00Z/2024-10-01T00:00:00Z,111122223333,444455556666,Usage,not-a-time,2024-09-03T11:00:00Z,AmazonS3,USE1-TimedStorage-ByteHrs,,,bucket-1,1,USD,0.023,0.023,storage,Amazon Simple Storage Service,,us-east-1,S3SKU,0.023,OnDemand,GB-Mo,,,,,
"""


def test_cur(tmp_path):
    path = _write(tmp_path, "cur.csv", CUR)
    assert detect_format(path.read_text().splitlines()[0].split(",")) == "AWS CUR"
    result = read_billing(path)
    items = result.accepted.set_index(result.accepted["line_item_id"].str.split("@").str[0])

    assert sorted(items.index) == ["a1", "a2", "a3", "a4"]
    assert items.loc["a1", "line_item_id"] == "a1@2024-09-01T00:00:00Z/2024-10-01T00:00:00Z"
    assert (items.loc["a1", "provider"], items.loc["a1", "service_name"]) == ("AWS", "Amazon Elastic Compute Cloud")
    assert items.loc["a1", "instance_type"] == "g5.4xlarge"
    assert (items.loc["a1", "job_id"], items.loc["a1", "budget_category"]) == ("ft-42", "research")
    assert json.loads(items.loc["a1", "tags"]) == {
        "user:job_id": "ft-42", "user:budget_category": "research", "user:Name": "trainer-0",
    }
    assert items.loc["a1", "pricing_category"] == "Standard"
    assert items.loc["a2", "pricing_category"] == "Dynamic"  # SpotUsage
    assert is_spot(items).to_dict() == {"a1": False, "a2": True, "a3": False, "a4": False}
    assert items.loc["a2", "list_cost"] == pytest.approx(32.7726)
    assert items.loc["a3", "pricing_category"] == "Committed"
    assert items.loc["a3", "effective_cost"] == pytest.approx(0.52)  # SavingsPlanEffectiveCost
    assert items.loc["a3", "billed_cost"] == pytest.approx(0.8048)
    assert items.loc["a4", "billed_cost"] == -25.0
    assert items.loc["a1", "charge_period_end"] == pd.Timestamp("2024-09-03T11:00:00Z")
    assert result.rejection_counts() == {"unparseable charge_period_start (lineItem/UsageStartDate)": 1}
    assert result.rows_in == 5
    validate(result.accepted, BILLING_LINE_ITEMS)


def test_cur_2_column_names(tmp_path):
    text = (
        "identity_line_item_id,line_item_usage_start_date,line_item_usage_end_date,line_item_unblended_cost,"
        "line_item_currency_code,product_instance_type,resource_tags\n"
        'x1,2024-09-03T10:00:00Z,2024-09-03T11:00:00Z,3.06,USD,p3.2xlarge,"{""user_job_id"": ""ft-9""}"\n'
    )
    result = read_billing(_write(tmp_path, "cur2.csv", text))
    row = result.accepted.iloc[0]
    assert (row["line_item_id"], row["instance_type"], row["job_id"], row["provider"]) == ("x1", "p3.2xlarge", "ft-9", "AWS")


# ---- Azure ------------------------------------------------------------------------------------

AZURE_MCA = "\n".join(
    [
        "date,costInBillingCurrency,billingCurrencyCode,subscriptionId,meterCategory,meterSubCategory,meterName,"
        "meterId,resourceId,resourceLocation,quantity,unitOfMeasure,pricingModel,chargeType,"
        "paygCostInBillingCurrency,additionalInfo,tags",
        # Azure writes tags as JSON without the outer braces
        "09/03/2024,29.39,EUR,sub-1,Virtual Machines,NCads A100 v4 Series,NC24ads A100 v4,m-1,"
        "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/train-1,West Europe,"
        '8,1 Hour,Spot,Usage,32.0,"{""ServiceType"":""Standard_NC24ads_A100_v4"",""VCPUs"":24}",'
        '"""job_id"": ""ft-77"",""budget_category"": ""research"""',
        "09/03/2024,-3.00,EUR,sub-1,Virtual Machines,,Refund,m-2,/subscriptions/sub-1/x,westeurope,1,1 Hour,"
        "OnDemand,Refund,,,",
        "13/03/2024,1.00,EUR,sub-1,Storage,,LRS,m-3,/subscriptions/sub-1/y,westeurope,1,1 GB/Month,OnDemand,Usage,1.0,,",
    ]
) + "\n"


def test_azure_mca_export(tmp_path):
    result = read_billing(_write(tmp_path, "azure.csv", AZURE_MCA))
    assert result.rows_in == 3
    # one line has a day-first date (13/03): the whole column is read day-first
    items = result.accepted
    assert result.rejected.empty
    first = items.iloc[0]
    assert first["charge_period_start"] == pd.Timestamp("2024-03-09T00:00:00Z")
    assert first["charge_period_end"] == pd.Timestamp("2024-03-10T00:00:00Z")  # daily lines
    assert (first["provider"], first["currency"], first["region"]) == ("Microsoft", "EUR", "westeurope")
    assert (first["job_id"], first["budget_category"]) == ("ft-77", "research")  # tags without braces
    assert first["instance_type"] == "Standard_NC24ads_A100_v4"
    assert first["pricing_category"] == "Dynamic"
    assert first["list_cost"] == 32.0
    assert items.iloc[1]["billed_cost"] == -3.0
    assert len(set(items["line_item_id"])) == 3


# ---- files that are not bills -----------------------------------------------------------------


def test_mapping_table_is_not_a_bill(tmp_path):
    path = _write(tmp_path, "units.csv", 'UnitOfMeasure,AccountTypes,PricingBlockSize,DistinctUnits\n"1 Hour",EA,1,Hours\n')
    result = read_billing(path)
    assert result.accepted.empty and len(result.rejected) == 1
    reason = result.rejected["reason"].iloc[0]
    assert reason.startswith(f"{NOT_A_BILL}: ")
    for tried in ("FOCUS 1.x", "AWS CUR", "Azure EA/MCA cost export"):
        assert tried in reason


@pytest.mark.parametrize(
    "name, content",
    [("missing.csv", None), ("empty.csv", b""), ("bill.xlsx", b"PK\x03\x04"), ("garbage.parquet", b"\x00\x01nope")],
)
def test_unreadable_files_are_one_rejected_record(tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = read_billing(path)
    assert result.accepted.empty and result.rows_in == 1
    assert result.rejected["reason"].iloc[0].startswith("unreadable billing file")


@pytest.mark.parametrize(
    "data, expected",
    [
        ((FOCUS_HEADER + "\n" + FOCUS_ROWS[0] + "\n").encode("utf-16"), "UTF-16 text (byte-order mark FF FE)"),
        (b"PAR1" + bytes(64), "a Parquet file, not text"),
        (bytes(range(256)) * 8, "binary, not a text table"),
    ],
    ids=["utf-16", "parquet-named-csv", "binary"],
)
def test_a_bill_that_is_not_text_is_one_rejection_saying_why(tmp_path, data, expected):
    path = tmp_path / "bill.csv"
    path.write_bytes(data)
    result = read_billing(path)
    assert result.accepted.empty and len(result.rejected) == 1
    reason = result.rejected["reason"].iloc[0]
    assert reason.startswith(f"{NOT_A_BILL}: the file is") and expected in reason, reason


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$1.624 per On Demand Linux g5.4xlarge Instance Hour", "g5.4xlarge"),
        ("USE1-SpotUsage:p5.48xlarge", "p5.48xlarge"),
        ("p4de.24xlarge", "p4de.24xlarge"),
        ("BoxUsage:G6E.12XLARGE", "g6e.12xlarge"),
        ("trn1.32xlarge", "trn1.32xlarge"),
        ("Standard_ND96isr_H100_v5 VM", "Standard_ND96isr_H100_v5"),
        ("a3-highgpu-8g", "a3-highgpu-8g"),
        ("g2-standard-8", "g2-standard-8"),
        ("$0.34 per On Demand Linux c5.2xlarge Instance Hour", None),
        ("AWS Marketplace hourly software usage|us-east-1|m5.2xlarge", None),
        ("Standard_D2s_v3", None),
        ("gp3 storage", None),
    ],
)
def test_gpu_instance_names(text, expected):
    found = gpu_instance_in(pd.Series([text]), pd.RangeIndex(1)).iloc[0]
    assert (pd.isna(found) if expected is None else found == expected)


# ---- real public data (skips without ../shared/realdata) --------------------------------------

_COMMITMENT_MISSING_CURRENCY = "missing currency (the file has no billing currency column)"
_HOUR_30 = "unparseable charge_period_end (ChargePeriodEnd); " + _COMMITMENT_MISSING_CURRENCY


def _expected_real(relpath: str) -> dict | None:
    """What each real billing CSV must give: accepted rows and the exact rejection counts."""
    name = Path(relpath).name
    if name == "focus_1.0_sample_1000_anonymized_real.csv":
        return {"accepted": 1000, "rejections": {}}
    if name == "EA_ActualCost_Small.csv":
        return {"accepted": 11, "rejections": {}}
    if name == "EA_AmortizedCost_Small.csv":
        return {"accepted": 28, "rejections": {}}
    if name.startswith("finops_toolkit_"):
        # mapping tables shipped with the FinOps toolkit (units, services), not bills
        return {"accepted": 0, "rejections": {NOT_A_BILL: 1}}
    if name.startswith("saas_examples__"):
        return {"accepted": None, "rejections": {}}
    if name.startswith("commitment_discount_"):
        # the specification's commitment examples omit BillingCurrency (a required FOCUS column,
        # and required by the contract), so every line is refused; two purchase examples also
        # write an impossible ChargePeriodEnd ("2023-02-01T30:00:00Z", hour 30)
        return {"accepted": 0, "rejections": None}
    return None


def test_every_real_billing_csv_is_accounted_for(realdata):
    files = sorted((realdata / "billing").rglob("*.csv"))
    assert len(files) == 31
    for path in files:
        relpath = str(path.relative_to(realdata))
        expected = _expected_real(relpath)
        assert expected is not None, f"no expectation for {relpath}: explain it in this test"
        result = read_billing(path)
        assert result.rows_in == len(result.accepted) + len(result.rejected)
        if expected["accepted"] is not None:
            assert len(result.accepted) == expected["accepted"], relpath
        if expected["rejections"] is not None:
            counts = {reason.split(":")[0] if reason.startswith(NOT_A_BILL) else reason: n
                      for reason, n in result.rejection_counts().items()}
            assert counts == expected["rejections"], relpath
        else:
            assert set(result.rejection_counts()) <= {_COMMITMENT_MISSING_CURRENCY, _HOUR_30}, relpath
        validate(result.accepted, BILLING_LINE_ITEMS)


def test_real_focus_sample(realdata):
    path = realdata / "billing" / "focus_1.0_sample_1000_anonymized_real.csv"
    result = read_billing(path)
    items = result.accepted
    assert len(items) == 1000 and result.rejected.empty
    assert set(items["currency"]) == {"USD"}
    assert items["provider"].value_counts().to_dict() == {"AWS": 942, "Microsoft": 51, "Oracle": 7}
    gpu = items[items["instance_type"] == "g5.4xlarge"]
    assert len(gpu) == 8
    assert gpu["service_name"].eq("Amazon Elastic Compute Cloud").all()
    # the only other GPU family in the sample: two g3.4xlarge (Tesla M60) lines; CPU hosts stay null
    assert items["instance_type"].value_counts().to_dict() == {"g5.4xlarge": 8, "g3.4xlarge": 2}
    # the sample's Id column is unique, so it is the line id
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert items["line_item_id"].tolist() == raw["Id"].tolist()
    assert (items["billed_cost"] < 0).sum() == 13  # credits and refunds are lines, not errors
    assert items["charge_period_start"].notna().all()
    assert items["tags"].notna().sum() == 711
    assert read_billing(path).accepted["line_item_id"].equals(items["line_item_id"])


def test_real_focus_spec_examples(realdata):
    folder = realdata / "billing" / "focus_spec_examples"
    files = sorted(folder.glob("*.csv"))
    assert len(files) == 26
    totals = {"accepted": 0, "rejected": 0}
    for path in files:
        result = read_billing(path)
        totals["accepted"] += len(result.accepted)
        totals["rejected"] += len(result.rejected)
        if path.name.startswith("saas_examples__"):
            assert result.rejected.empty, path.name
            assert set(result.accepted["currency"]) == {"USD"}
        else:
            assert result.accepted.empty, path.name
    assert totals == {"accepted": 56, "rejected": 25}
    # "$10,000.00 " money text and M/D/YY dates
    a1 = read_billing(folder / "saas_examples__simple_agreements__simple_saas_agreements_a1.csv").accepted.iloc[0]
    assert a1["billed_cost"] == 10000.0
    assert a1["charge_period_start"] == pd.Timestamp("2025-04-01T00:00:00Z")
    assert a1["charge_period_end"] == pd.Timestamp("2026-04-01T00:00:00Z")
    scenario_2 = read_billing(folder / "commitment_discount_scenarios__commitment_discount_purchase_scenario_2.csv")
    assert scenario_2.rejection_counts() == {_COMMITMENT_MISSING_CURRENCY: 2, _HOUR_30: 1}


def test_real_azure_ea_exports(realdata):
    folder = realdata / "billing" / "azure_ea_export_samples"
    actual = read_billing(folder / "EA_ActualCost_Small.csv")
    amortized = read_billing(folder / "EA_AmortizedCost_Small.csv")
    for result in (actual, amortized):
        assert result.rejected.empty
        assert set(result.accepted["currency"]) == {"USD"}
        assert set(result.accepted["provider"]) == {"Microsoft"}
        assert result.accepted["tags"].dropna().map(json.loads).map(type).eq(dict).all()
    assert (len(actual.accepted), len(amortized.accepted)) == (11, 28)
    # brace-less Azure tags parsed
    tags = actual.accepted["tags"].dropna().map(json.loads)
    assert any(t.get("CostCenter") == "1234" for t in tags)
    # the usage lines both exports share get the same content id: only the actual export's
    # reservation purchase (3.25 USD) is not in the amortized one
    shared = set(actual.accepted["line_item_id"]) & set(amortized.accepted["line_item_id"])
    assert len(shared) == 10
    only_actual = actual.accepted[~actual.accepted["line_item_id"].isin(shared)]
    assert only_actual["billed_cost"].tolist() == [3.25]
    assert only_actual["pricing_category"].tolist() == ["Committed"]


@pytest.mark.parametrize("name", ["finops_toolkit_PricingUnits.csv", "finops_toolkit_Services.csv"])
def test_real_mapping_tables_are_refused(realdata, name):
    # FinOps toolkit lookup tables (unit and service mappings) sit beside the exports but are not
    # bills; Services.csv even has FOCUS-like ServiceName/ServiceCategory columns, yet no cost or period
    result = read_billing(realdata / "billing" / "azure_ea_export_samples" / name)
    assert result.accepted.empty and len(result.rejected) == 1
    assert result.rejected["reason"].iloc[0].startswith(NOT_A_BILL)


def test_header_only_and_ragged_lines(tmp_path):
    empty = read_billing(_write(tmp_path, "empty_bill.csv", FOCUS_HEADER + "\n"))
    assert empty.rows_in == 0 and list(empty.accepted.columns) == BILLING_LINE_ITEMS.column_names

    text = "BilledCost,BillingCurrency,ChargePeriodStart\n1,USD,2024-09-01\n2,USD,2024-09-01,oops\n3,USD,2024-09-02\n"
    result = read_billing(_write(tmp_path, "ragged.csv", text))
    assert result.accepted["billed_cost"].tolist() == [1.0, 3.0]
    assert result.rejection_counts() == {"malformed CSV line: 4 fields where the header has 3": 1}
    assert result.rows_in == 3
