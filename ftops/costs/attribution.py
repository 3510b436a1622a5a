"""Bills → jobs (`job_costs`): attributed bill lines, estimates for hours no bill covers yet, the rest.

Rules
- A line tagged with a job id belongs to that job (attribution "tag"), even when the registry
  does not know the job yet: the tag is the provider's own statement.
- An untagged line whose resource_id the resource map ties to a job belongs to it ("resource_id").
  A resource mapped to several jobs goes to those whose running interval overlaps the line; if
  several still do, the cost is split evenly among them ("resource_id_shared").
- Every other line is kept with job_id null ("unattributed"), with its provider and service: a
  cost never vanishes because nobody tagged it.
- Bills arrive hours late. A job's hours after its *billed-through* time (the latest end of its
  hourly-or-daily, positive bill lines) are costed as running time × price per instance-hour
  ("estimate", estimated=True). The price: `prices:` of ftops.yaml for the instance type; else
  the instance catalogue's price for the job's cloud, region and instance type; else the median
  of the catalogue's prices of that instance type over the regions that list it (the note says
  so); else none (cost_usd null, the note names the instance type). When the bill for an hour arrives the billed-through time moves
  past it and the estimate for that hour is no longer produced, so an hour is never counted twice.
  Credits and lines spanning more than a day (monthly fees, refunds) do not move billed-through:
  they say nothing about which hours were billed.
- Credits and negative lines are kept as they are: they lower cost.
- All money is in one currency (prices and budget limits are USD); anything else is refused with
  `CurrencyMismatchError` rather than summed.
- A line whose cost (or credit) is beyond `max_line_item_cost_usd` is implausible (a 1e12 line
  once reached every ladder level). It is kept and counted as billed, but marked `suspicious`:
  budgets show it apart and do not act on it, and it does not move billed-through, so the hour
  it claims is still estimated. Listing its line id in `confirmed_line_items` makes it an
  ordinary line again; the flag is computed here, on every run, so a confirmation (or a new
  bound) takes effect without re-reading any bill.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from ftops.costs.usage import running_intervals
from ftops.optimize.catalog import catalog_prices
from ftops.policy import InstancePrice
from ftops.readers.billing_common import is_spot
from ftops.schemas import JOB_COSTS, validate

CURRENCY = "USD"
# a line covering more than this says nothing about which job-hours the bill has reached
BILLED_THROUGH_MAX_PERIOD = pd.Timedelta(days=1)
HELD_NOTE = ("held as suspicious: cost beyond ingest.max_line_item_cost_usd; not in budget spend until its "
             "line_item_id is listed in ingest.confirmed_line_items")


class CurrencyMismatchError(ValueError):
    """Billing lines are in a currency other than the one ftops budgets in, or in several."""

    def __init__(self, currencies: list[str], expected: str = CURRENCY):
        self.currencies = currencies
        self.expected = expected
        super().__init__(
            f"billing_line_items are in {len(currencies)} currenc{'y' if len(currencies) == 1 else 'ies'} "
            f"{currencies}; ftops prices and budget limits are in {expected}, and amounts in different "
            f"currencies cannot be added. Export the bills in {expected} (the billing currency of the "
            f"account) or convert them before ingest."
        )


def check_currency(billing: pd.DataFrame, expected: str = CURRENCY) -> None:
    """Raise CurrencyMismatchError unless every line is in `expected`."""
    if billing.empty:
        return
    found = sorted(set(billing["currency"].astype("string").str.strip().str.upper().dropna()))
    if found and found != [expected]:
        raise CurrencyMismatchError(found, expected)


def _line_end(billing: pd.DataFrame) -> pd.Series:
    end = billing["charge_period_end"]
    return end.where(end.notna(), billing["charge_period_start"] + pd.Timedelta(hours=1))


def _resource_candidates(
    lines: pd.DataFrame, resource_map: pd.DataFrame, intervals: pd.DataFrame
) -> pd.DataFrame:
    """(row, job_id, share) for untagged lines whose resource id the map ties to jobs."""
    mapping = resource_map[["job_id", "resource_id"]].dropna().astype("string").drop_duplicates()
    cand = lines[["resource_id", "charge_period_start", "_end"]].reset_index(names="_row")
    cand = cand.merge(mapping, on="resource_id", how="inner")
    if cand.empty:
        return pd.DataFrame({"_row": pd.Series(dtype="int64"), "job_id": pd.Series(dtype="string"),
                             "share": pd.Series(dtype="float64")})
    cand = cand.merge(intervals, on="job_id", how="left")
    overlaps = (
        (cand["started_at"].isna() | (cand["started_at"] < cand["_end"]))
        & (cand["run_end"].isna() | (cand["run_end"] > cand["charge_period_start"]))
    ).fillna(True).astype(bool)
    n_candidates = cand.groupby("_row")["job_id"].transform("size")
    n_overlapping = overlaps.groupby(cand["_row"]).transform("sum")
    # narrow by time only when it helps; a single mapping is trusted even if the times disagree
    keep = (n_candidates == 1) | overlaps | (n_overlapping == 0)
    cand = cand[keep]
    cand = cand.assign(share=1.0 / cand.groupby("_row")["job_id"].transform("size"))
    return cand[["_row", "job_id", "share"]]


def suspicious_lines(billing: pd.DataFrame, max_line_item_cost_usd: float | None,
                     confirmed_line_items: Collection[str] = ()) -> pd.Series:
    """True for lines whose billed cost is beyond the bound (either sign) and nobody has confirmed."""
    if max_line_item_cost_usd is None:
        return pd.Series(False, index=billing.index)
    beyond = billing["billed_cost"].abs() > max_line_item_cost_usd
    confirmed = billing["line_item_id"].astype("string").isin(list(confirmed_line_items))
    return (beyond & ~confirmed).fillna(False).astype(bool)


def _bill_rows(billing: pd.DataFrame, jobs: pd.DataFrame, resource_map: pd.DataFrame | None,
               intervals: pd.DataFrame, suspicious: pd.Series) -> pd.DataFrame:
    lines = billing.reset_index(drop=True).copy()
    lines["_suspicious"] = suspicious.to_numpy()
    lines["_end"] = _line_end(lines)
    lines["job_id"] = lines["job_id"].astype("string").str.strip().replace("", pd.NA)
    tagged = lines["job_id"].notna()

    pieces = [lines[tagged].assign(attribution="tag", share=1.0)]
    untagged = lines[~tagged & lines["resource_id"].notna()]
    if resource_map is not None and not untagged.empty:
        cand = _resource_candidates(untagged, resource_map, intervals)
        mapped = lines.loc[cand["_row"].to_numpy()].drop(columns="job_id").reset_index(drop=True)
        mapped["job_id"] = cand["job_id"].to_numpy()
        mapped["share"] = cand["share"].to_numpy()
        mapped["attribution"] = np.where(mapped["share"] < 1.0, "resource_id_shared", "resource_id")
        pieces.append(mapped)
        matched_rows = set(cand["_row"].tolist())
    else:
        matched_rows = set()
    rest = lines[~tagged & ~lines.index.isin(list(matched_rows))]
    pieces.append(rest.assign(attribution="unattributed", share=1.0, job_id=pd.NA))
    rows = pd.concat([p for p in pieces if not p.empty] or [pieces[-1]], ignore_index=True)

    registry_category = jobs.drop_duplicates("job_id").set_index("job_id")["budget_category"]
    category = rows["job_id"].map(registry_category).astype("string")
    spot = is_spot(rows)
    known_pricing = rows["pricing_category"].astype("string").isin(["Standard", "Dynamic"]).fillna(False)
    return pd.DataFrame(
        {
            "job_id": rows["job_id"].astype("string"),
            # the registry's category names one thing once; the bill's own tag fills the gaps
            "budget_category": category.fillna(rows["budget_category"].astype("string")),
            "period_start": rows["charge_period_start"],
            "period_end": rows["_end"],
            "cost_usd": rows["billed_cost"] * rows["share"],
            "estimated": False,
            "attribution": rows["attribution"],
            "line_item_id": rows["line_item_id"],
            "provider": rows["provider"],
            "service_name": rows["service_name"],
            "resource_id": rows["resource_id"],
            "instance_type": rows["instance_type"],
            "pricing": pd.Series(np.where(spot, "spot", "on_demand"), dtype="string").where(known_pricing.to_numpy()),
            "running_hours": np.nan,
            "gpu_hours": np.nan,
            "note": pd.Series(np.where(rows["share"] < 1.0, "resource shared by several jobs: split evenly", None),
                              dtype="string").mask(rows["_suspicious"].to_numpy(), HELD_NOTE),
            "suspicious": rows["_suspicious"].to_numpy(),
        }
    )


def billed_through(bill_rows: pd.DataFrame) -> pd.Series:
    """Per job: the end of the latest hour its bills cover (see the module rules)."""
    attributed = bill_rows[bill_rows["job_id"].notna() & ~bill_rows["estimated"].astype(bool)
                           & ~bill_rows["suspicious"].astype(bool)]
    period = attributed["period_end"] - attributed["period_start"]
    usage_like = (attributed["cost_usd"] > 0) & (period <= BILLED_THROUGH_MAX_PERIOD)
    return attributed[usage_like].groupby("job_id")["period_end"].max()


def _price_table(prices: dict[str, InstancePrice]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "on_demand": [p.on_demand_usd_per_hour for p in prices.values()],
            "spot": [np.nan if p.spot_usd_per_hour is None else p.spot_usd_per_hour for p in prices.values()],
        },
        index=pd.Index(list(prices), dtype="string", name="instance_type"),
        dtype="float64",
    )


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name].astype("string")
    return pd.Series(pd.NA, index=frame.index, dtype="string")


def _estimate_rows(usage: pd.DataFrame, through: pd.Series, prices: dict[str, InstancePrice],
                   catalog: pd.DataFrame | None = None) -> pd.DataFrame:
    if usage.empty:
        return JOB_COSTS.empty()
    usage = usage.copy()
    # reindex, not map: pandas' string map cannot return datetimes
    through = through.astype("datetime64[ns, UTC]")
    through.index = through.index.astype("string")
    cut = through.reindex(usage["job_id"].astype("string")).set_axis(usage.index)
    usage["period_start"] = usage["period_start"].where(cut.isna() | (cut <= usage["period_start"]), cut)
    usage = usage[usage["period_end"] > usage["period_start"]].reset_index(drop=True)
    hours = (usage["period_end"] - usage["period_start"]) / pd.Timedelta(hours=1)

    table = _price_table(prices)
    itype = usage["instance_type"].astype("string")
    on_demand = itype.map(table["on_demand"]).astype("float64")
    spot_price = itype.map(table["spot"]).astype("float64")
    median_note = pd.Series(False, index=usage.index)
    if catalog is not None and not catalog.empty:
        # ftops.yaml prices win as a pair: their empty spot is not filled from the catalogue
        from_catalog = on_demand.isna()
        found = catalog_prices(catalog, _column(usage, "cloud"), _column(usage, "region"), itype)
        on_demand = on_demand.where(~from_catalog, found["on_demand_usd_per_hour"])
        spot_price = spot_price.where(~from_catalog, found["spot_usd_per_hour"])
        median_note = from_catalog & found["basis"].eq("median over regions").fillna(False).astype(bool)
    wants_spot = usage["pricing"].astype("string").eq("spot").fillna(False).astype(bool)
    # an unknown spot price falls back to on-demand: overestimating is safer for a budget
    price = on_demand.where(~wants_spot | spot_price.isna(), spot_price)
    note = pd.Series(pd.NA, index=usage.index, dtype="string")
    no_spot = wants_spot & spot_price.isna() & on_demand.notna()
    note = note.mask(no_spot, "no spot price: on-demand price used")
    where = _column(usage, "cloud").fillna("?") + "/" + _column(usage, "region").fillna("?")
    median = ("catalogue median over regions of " + itype.fillna("") + ": no catalogue price for " + where)
    note = note.mask(median_note, median).mask(median_note & no_spot, median + "; no spot price: on-demand price used")
    note = note.mask(on_demand.isna(), "no catalogue price for instance_type " + itype.fillna("<unknown>"))
    pricing = usage["pricing"].astype("string").fillna("on_demand")
    return pd.DataFrame(
        {
            "job_id": usage["job_id"],
            "budget_category": usage["budget_category"],
            "period_start": usage["period_start"],
            "period_end": usage["period_end"],
            "cost_usd": hours * usage["instances"] * price,
            "estimated": True,
            "attribution": "estimate",
            "line_item_id": pd.NA,
            "provider": usage["cloud"],
            "service_name": pd.NA,
            "resource_id": pd.NA,
            "instance_type": itype,
            "pricing": pricing,
            "running_hours": hours,
            "gpu_hours": hours * usage["gpu_count"],
            "note": note,
            "suspicious": False,
        }
    )


def attribute_costs(
    billing: pd.DataFrame,
    jobs: pd.DataFrame,
    usage: pd.DataFrame,
    prices: dict[str, InstancePrice],
    now: pd.Timestamp,
    resource_map: pd.DataFrame | None = None,
    currency: str = CURRENCY,
    max_line_item_cost_usd: float | None = None,
    confirmed_line_items: Collection[str] = (),
    catalog: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`job_costs`: billed lines attributed to jobs, estimates after each job's billed-through time,
    unattributed lines with job_id null. Sums of cost_usd never count a job-hour twice.

    billing: `billing_line_items` (job_id already extracted from tags); jobs: `jobs`;
    usage: `job_hours(jobs, now)`; prices by instance_type (ftops.yaml `prices:`, they win);
    catalog: the instance catalogue (`ftops.optimize.catalog.combined_catalog`) for instance types
    `prices` does not name (see the module rules); resource_map: optional frame with
    job_id and resource_id columns for untagged lines; lines beyond `max_line_item_cost_usd`
    and not in `confirmed_line_items` are marked suspicious. Raises CurrencyMismatchError.
    """
    check_currency(billing, currency)
    intervals = running_intervals(jobs, now)
    held = suspicious_lines(billing, max_line_item_cost_usd, confirmed_line_items)
    bills = _bill_rows(billing, jobs, resource_map, intervals, held) if not billing.empty else JOB_COSTS.empty()
    bills = validate(bills, JOB_COSTS)
    estimates = validate(_estimate_rows(usage, billed_through(bills), prices, catalog), JOB_COSTS)
    frames = [f for f in (bills, estimates) if not f.empty]
    if not frames:
        return JOB_COSTS.empty()
    out = pd.concat(frames, ignore_index=True)
    return validate(out.sort_values(["period_start", "job_id"], na_position="last", kind="stable"), JOB_COSTS)
