"""Asset checks and boundary helpers shared by the asset modules."""

import dagster as dg
import pandas as pd

from ftops.schemas import SchemaError, Table, validate

CONTRACT = "contract_valid"


# Every table asset is named after its contract, so the contract names the asset its check is on.
def contract_spec(table: Table) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(CONTRACT, asset=table.name,
                             description="The table satisfies its contract in schemas.py.")


def contract_check(df: pd.DataFrame, table: Table) -> dg.AssetCheckResult:
    """`contract_valid` for a table an asset is about to store (or has stored)."""
    asset = table.name
    try:
        validate(df, table)
    except SchemaError as exc:
        return dg.AssetCheckResult(asset_key=asset, check_name=CONTRACT, passed=False, metadata={"error": str(exc)})
    return dg.AssetCheckResult(asset_key=asset, check_name=CONTRACT, passed=True,
                               metadata={"columns": len(table.columns)})


def markdown_preview(frame: pd.DataFrame, columns: list[str], rows: int = 10) -> dg.MetadataValue:
    """The first `rows` of a table's most useful columns as Markdown metadata ("none" when empty)."""
    return dg.MetadataValue.md(frame[columns].head(rows).to_markdown(index=False) if not frame.empty else "none")


def as_contract(df: pd.DataFrame, table: Table) -> pd.DataFrame:
    """An upstream table as its contract (a load of no partitions has no columns at all)."""
    return table.empty() if df.empty else validate(df, table)
