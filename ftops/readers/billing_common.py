"""The shared last step of every billing reader: staged columns -> `billing_line_items` + rejections.

Each format module (focus, aws_cur, azure_cost) only says where each canonical field lives in its
files (`Staged`); parsing, tag extraction, instance-type detection, line ids and rejections are
done here once, vectorised, so every format follows the same rules.

line_item_id
    The source's own line id when the file has one and it is present and unique on every line
    (re-reading gives the same ids, and the id joins back to the provider's bill). Otherwise a
    stable content id: a 128-bit hash of the canonical fields (provider, charge period, costs,
    currency, service, resource, sku, pricing category, quantity, unit, region, tags, plus a
    format-specific discriminator such as the charge description) and the row's occurrence number
    among lines with the same canonical content (lines that differ only in columns ftops does not
    read). Re-reading a file gives the same ids; the same line in two exports (an Azure actual and
    amortized export share most usage lines, a bill delivered twice) gets the same id, so
    downstream de-duplication by id does not count it twice. The file name is deliberately not
    hashed: a renamed or moved file must not produce new ids. Hashing uses pandas'
    hash_pandas_object (SipHash with a fixed key, deterministic across processes and machines)
    twice with two keys. A source id shared by lines with different content says nothing about
    which line is which, so only those lines fall back to content ids: the id of a line never
    depends on the other lines of its file.

Repeated lines
    A line that repeats an earlier line of the same file exactly (every column, the source id
    included) is an export glitch, not a second charge: it is dropped and counted in the
    result's `duplicates` (as every reader does with identical repeats), so it never adds spend.

Costs
    A cost that is not a finite number (inf, -inf) is rejected: it would make every sum it
    reaches infinite. Plausibility (a 1e12 line) is judged downstream against the policy's
    `max_line_item_cost_usd`, where a person's confirmation can take effect without re-reading
    the file.

Spot
    `pricing_category` keeps the FOCUS value (Standard | Committed | Dynamic | Other). Spot
    capacity is FOCUS "Dynamic"; CUR and Azure spot lines are mapped to it. Downstream code
    should use `is_spot(items)` rather than spell the rule again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ftops.readers.base import ReadResult, rejected_rows
from ftops.readers.tabular import (
    RawTable,
    add_reason,
    bad_line_rejects,
    no_reason,
    parse_numbers,
    parse_timestamps,
    text_or_null,
)
from ftops.schemas import BILLING_LINE_ITEMS, REJECTED_RECORDS, validate

TABLE = BILLING_LINE_ITEMS.name
SPOT_PRICING_CATEGORY = "Dynamic"

# FOCUS 1.x PricingCategory values and older/other spellings of them
_PRICING_CATEGORY = {
    "standard": "Standard", "on-demand": "Standard", "ondemand": "Standard", "on demand": "Standard",
    "committed": "Committed", "commitment-based": "Committed", "commitment based": "Committed",
    "reserved": "Committed", "reservation": "Committed", "savingsplan": "Committed", "savings plan": "Committed",
    "dynamic": "Dynamic", "spot": "Dynamic", "preemptible": "Dynamic", "low priority": "Dynamic",
    "other": "Other",
}

# Instance names of accelerator hosts, recognised in free text (SKU ids, resource names, charge
# descriptions). Limited to GPU/accelerator families on purpose: ftops attributes accelerator
# spend, and a general pattern also matches marketplace software lines that merely mention a host.
_GPU_INSTANCE = re.compile(
    r"(?i)(?<![\w.-])("
    # AWS: p3, p4d, p5en, p6-b200, g4dn, g5, g6e, gr6, trn1n, inf2, dl1 ...
    r"(?:p\d+[a-z]*|g\d+[a-z]*|gr\d+[a-z]*|trn\d+[a-z]*|inf\d+[a-z]*|dl\d+[a-z]*)(?:-[a-z0-9]+)?"
    r"\.(?:\d*xlarge|large|medium|small|metal(?:-\d+xl)?)"
    # Azure: Standard_NC24ads_A100_v4, Standard_ND96isr_H100_v5, Standard_NV36ads_A10_v5
    r"|standard_n[cdgv]\w*"
    # GCP: a2-highgpu-1g, a3-megagpu-8g, a4-highgpu-8g, g2-standard-4, TPU ct5lp-hightpu-4t
    r"|(?:a2|a3|a4x?)-(?:highgpu|megagpu|ultragpu|edgegpu)-\d+g|g2-standard-\d+|ct\d[a-z]*-hightpu-\d+t"
    r")(?![\w.-])"
)
_INSTANCE_TAG_KEYS = ("instance_type", "instancetype", "instance-type", "vm_size", "vmsize", "machine_type", "machine-type")

# canonical fields hashed into a content id (line_item_id fallback)
_ID_FIELDS = (
    "provider", "charge_period_start", "charge_period_end", "billed_cost", "effective_cost", "list_cost",
    "currency", "service_name", "resource_id", "sku", "pricing_category", "consumed_quantity",
    "consumed_unit", "region", "tags",
)
_HASH_KEYS = ("ftops-billing-01", "ftops-billing-02")  # 16 bytes each: SipHash keys
INF_HINT = "an infinite amount cannot be summed"


@dataclass
class Staged:
    """Where each canonical field lives in one format's rows (values still raw)."""

    columns: dict[str, pd.Series | None]  # canonical name -> raw values (or None: not in this format)
    source_names: dict[str, str]  # canonical name -> the file's column name, for precise reasons
    line_id: pd.Series | None = None  # the source's own line id, if the format has one
    instance_text: list[pd.Series] = field(default_factory=list)  # free text that may name a GPU instance
    id_extra: pd.Series | None = None  # extra content that tells lines apart in the hash
    default_period: pd.Timedelta | None = None  # charge period length when the format has no end column
    provider: str | None = None  # constant provider when the format has no provider column


def is_spot(items: pd.DataFrame) -> pd.Series:
    """True for line items bought as spot/preemptible capacity (FOCUS PricingCategory "Dynamic")."""
    return items["pricing_category"].astype("string").eq(SPOT_PRICING_CATEGORY).fillna(False).astype(bool)


def normalise_pricing_category(values: pd.Series) -> pd.Series:
    """FOCUS PricingCategory spelling; unknown values are kept as given rather than guessed."""
    text = values.astype("string").str.strip()
    mapped = text.str.lower().map(_PRICING_CATEGORY).astype("string")
    return mapped.fillna(text)


def parse_tag_text(text: str) -> dict | None:
    """One tags cell -> dict. Accepts JSON objects and Azure's JSON without the outer braces."""
    stripped = text.strip()
    for candidate in (stripped, "{" + stripped + "}"):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _tag_value(tags: dict | None, key: str) -> str | None:
    """Value of tag `key`: exact key first, then case-insensitive, also AWS `user:`-prefixed forms."""
    if not tags:
        return None
    candidates = (key, f"user:{key}", f"user_{key}")
    value = None
    for candidate in candidates:
        if candidate in tags:
            value = tags[candidate]
            break
    else:
        folded = {str(k).strip().lower(): v for k, v in tags.items()}
        for candidate in candidates:
            if candidate.lower() in folded:
                value = folded[candidate.lower()]
                break
    if value is None:
        return None
    value = value if isinstance(value, str) else json.dumps(value)
    return value.strip() or None


def extract_tags(
    tags: pd.Series | None, index: pd.Index, keys: dict[str, str | tuple[str, ...]]
) -> tuple[pd.Series, dict[str, pd.Series]]:
    """Normalised JSON text of each tags cell and the values of the requested tag keys.

    Parsing runs once per distinct tags string (a bill has millions of lines but few distinct
    tag sets), then the results are broadcast back by factorize codes. A cell that is not a JSON
    object is kept, not dropped, as {"_unparsed": "<text>"}: the line's cost still counts, and
    the text stays visible to whoever fixes the tagging.
    """
    if tags is None:
        empty = pd.Series(pd.NA, index=index, dtype="string")
        return empty, {name: empty.copy() for name in keys}
    text = text_or_null(tags, index)
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    parsed = [parse_tag_text(str(u)) for u in uniques]
    dicts = [p if p is not None else {"_unparsed": str(u)} for p, u in zip(parsed, uniques)]
    as_json = [json.dumps(d, ensure_ascii=False) for d in dicts]

    def broadcast(values: list) -> pd.Series:
        array = np.array(values + [None], dtype=object)
        return pd.Series(array.take(codes), index=index, dtype="string")

    extracted = {}
    for name, key in keys.items():
        alternatives = (key,) if isinstance(key, str) else key
        values = []
        for d in parsed:
            found = None
            for alt in alternatives:
                found = _tag_value(d, alt)
                if found is not None:
                    break
            values.append(found)
        extracted[name] = broadcast(values)
    return broadcast(as_json), extracted


def gpu_instance_in(text: pd.Series | None, index: pd.Index) -> pd.Series:
    """The GPU instance type named in free text (lower case; Azure keeps its Standard_ casing)."""
    if text is None:
        return pd.Series(pd.NA, index=index, dtype="string")
    values = text_or_null(text, index)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    found = pd.Series(uniques, dtype="string").str.extract(_GPU_INSTANCE, expand=False)
    is_azure = found.str.lower().str.startswith("standard_").fillna(False)
    found = found.where(is_azure, found.str.lower())
    array = np.concatenate([found.to_numpy(dtype=object, na_value=None), np.array([None], dtype=object)])
    return pd.Series(array.take(codes), index=index, dtype="string")


def _hex(hashes: np.ndarray) -> np.ndarray:
    """uint64 -> 16 lower-case hex characters, without a Python loop per value."""
    lut = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")
    as_bytes = hashes.astype(">u8").view(np.uint8).reshape(-1, 8)
    return lut[as_bytes].view("S16").ravel()


def content_ids(frame: pd.DataFrame, extra: pd.Series | None) -> pd.Series:
    """Stable 32-hex-character ids from canonical content plus an occurrence counter."""
    if frame.empty:
        return pd.Series([], index=frame.index, dtype="string")
    key = frame[list(_ID_FIELDS)].copy()
    key["_extra"] = extra.astype("string") if extra is not None else pd.Series(pd.NA, index=key.index, dtype="string")
    content = pd.util.hash_pandas_object(key, index=False, hash_key=_HASH_KEYS[0]).to_numpy()
    # lines whose canonical content is the same (they differ only in columns not read) are numbered
    # 0, 1, ... in file order; exact repeats never reach here (the caller drops them)
    key["_occurrence"] = pd.Series(content).groupby(content).cumcount().to_numpy()
    high = pd.util.hash_pandas_object(key, index=False, hash_key=_HASH_KEYS[0]).to_numpy()
    low = pd.util.hash_pandas_object(key, index=False, hash_key=_HASH_KEYS[1]).to_numpy()
    joined = np.char.add(_hex(high), _hex(low)).astype(str)
    return pd.Series(joined, index=frame.index, dtype="string")


def finish_billing(
    staged: Staged,
    raw: RawTable,
    *,
    source: str,
    job_tag_key: str = "job_id",
    budget_tag_key: str = "budget_category",
) -> ReadResult:
    """Parse, validate and split one staged billing file into accepted and rejected rows."""
    frame = raw.frame
    index = frame.index
    col = staged.columns.get
    name = staged.source_names.get
    reason = no_reason(index)

    start, bad = parse_timestamps(col("charge_period_start"), index)
    label = f"charge_period_start ({name('charge_period_start', 'absent')})"
    reason = add_reason(reason, start.isna() & ~bad, f"missing {label}")
    reason = add_reason(reason, bad, f"unparseable {label}")

    end, bad = parse_timestamps(col("charge_period_end"), index)
    reason = add_reason(reason, bad, f"unparseable charge_period_end ({name('charge_period_end')})")
    if staged.default_period is not None and col("charge_period_end") is None:
        end = start + staged.default_period

    billed, bad = parse_numbers(col("billed_cost"), index)
    label = f"billed_cost ({name('billed_cost', 'absent')})"
    reason = add_reason(reason, billed.isna() & ~bad, f"missing {label}")
    reason = add_reason(reason, bad, f"non-numeric {label}")
    reason = add_reason(reason, np.isinf(billed), f"non-finite {label}: {INF_HINT}")

    numbers = {}
    for field_name in ("effective_cost", "list_cost", "consumed_quantity"):
        numbers[field_name], bad = parse_numbers(col(field_name), index)
        reason = add_reason(reason, bad, f"non-numeric {field_name} ({name(field_name)})")
        reason = add_reason(reason, np.isinf(numbers[field_name]),
                            f"non-finite {field_name} ({name(field_name)}): {INF_HINT}")

    currency = text_or_null(col("currency"), index).str.upper()
    if col("currency") is None:
        reason = add_reason(reason, currency.isna(), "missing currency (the file has no billing currency column)")
    else:
        reason = add_reason(reason, currency.isna(), f"missing currency ({name('currency')})")

    tags, from_tags = extract_tags(
        col("tags"), index,
        {"job_id": job_tag_key, "budget_category": budget_tag_key, "instance_type": _INSTANCE_TAG_KEYS},
    )

    instance = text_or_null(col("instance_type"), index).fillna(from_tags["instance_type"])
    for text in staged.instance_text:
        if instance.isna().any():
            instance = instance.fillna(gpu_instance_in(text, index))

    provider = text_or_null(col("provider"), index)
    if staged.provider is not None:
        provider = provider.fillna(staged.provider)
    pricing_category = col("pricing_category")
    out = pd.DataFrame(
        {
            "charge_period_start": start,
            "charge_period_end": end,
            "billed_cost": billed,
            "effective_cost": numbers["effective_cost"],
            "list_cost": numbers["list_cost"],
            "currency": currency,
            "provider": provider,
            "service_name": text_or_null(col("service_name"), index),
            "resource_id": text_or_null(col("resource_id"), index),
            "sku": text_or_null(col("sku"), index),
            "instance_type": instance,
            "pricing_category": normalise_pricing_category(text_or_null(pricing_category, index)),
            "consumed_quantity": numbers["consumed_quantity"],
            "consumed_unit": text_or_null(col("consumed_unit"), index),
            "region": text_or_null(col("region"), index),
            "tags": tags,
            "job_id": from_tags["job_id"],
            "budget_category": from_tags["budget_category"],
            "source": source,
        },
        index=index,
    )
    repeat = frame.duplicated(keep="first").to_numpy()
    own_id = text_or_null(staged.line_id, index) if staged.line_id is not None else None
    out.insert(0, "line_item_id", _line_item_ids(own_id, out, staged.id_extra, repeat))

    bad_rows = reason.notna().to_numpy()
    # a repeat of a rejected line is rejected with it, saying what is wrong with both
    duplicate = repeat & ~bad_rows
    accepted = validate(out[~bad_rows & ~duplicate], BILLING_LINE_ITEMS)
    rejected = rejected_rows(frame[bad_rows], reason[bad_rows], source=source, table=TABLE, record=raw.record[bad_rows])
    parts = [r for r in (rejected, bad_line_rejects(raw, source, TABLE)) if not r.empty]
    rejected = pd.concat(parts, ignore_index=True) if parts else REJECTED_RECORDS.empty()
    return ReadResult(TABLE, accepted, rejected, duplicates=int(duplicate.sum()))


def _line_item_ids(own: pd.Series | None, out: pd.DataFrame, extra: pd.Series | None,
                   repeat: np.ndarray) -> pd.Series:
    """The source's id where it names one line, a content id elsewhere (see the module notes).

    Exact repeats are left out (they are dropped), so neither a repeat nor its presence changes
    the id of any other line: a file with and without a repeated line gives the same ids.
    """
    ids = pd.Series(pd.NA, index=out.index, dtype="string")
    kept = ~repeat
    content = content_ids(out[kept], extra[kept] if extra is not None else None)
    if own is None:
        ids[kept] = content
        return ids
    own = own[kept]
    trusted = own.notna() & ~own.duplicated(keep=False)
    ids[kept] = own.where(trusted, content)
    return ids


def join_text(*parts: pd.Series | None) -> pd.Series | None:
    """Row-wise "a|b|c" of optional text columns (nulls as empty), for hash discriminators."""
    present = [p.astype("string").fillna("") for p in parts if p is not None]
    if not present:
        return None
    out = present[0]
    for p in present[1:]:
        out = out + "|" + p
    return out
