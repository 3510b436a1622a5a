"""Vectorised loading and field parsing shared by the job registry and billing readers.

Every parser returns the parsed values *and* a mask of cells that were present but could not be
parsed, so a reader can reject exactly those rows with a reason instead of silently nulling a
value. Parsing works on the distinct values where that is cheaper (bills repeat the same hourly
period and the same tag string on millions of lines).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ftops.readers.base import ReaderError
from ftops.readers.formats import data_format, delimiter

# Cells that mean "no value". FOCUS writes the literal NULL; hand-written exports write null/None.
NULL_TOKENS = ["", "NULL", "null", "Null", "None", "none", "NaN", "nan", "N/A", "n/a"]

def file_kind(path: str | os.PathLike) -> str:
    """csv | parquet | jsonl | unknown, from the file name (the one suffix table: readers.formats)."""
    fmt = data_format(Path(path).name)
    return {"csv": "csv", "tsv": "csv", "parquet": "parquet", "jsonl": "jsonl"}.get(fmt or "", "unknown")


@dataclass
class RawTable:
    """A file's rows as raw values (strings for text formats), with where each row came from."""

    frame: pd.DataFrame
    record: pd.Series  # 1-based data row number (header excluded), or JSONL line number
    # lines that could not be split into fields: (record, reason, raw text or None)
    bad_lines: list[tuple[str, str, str | None]] = field(default_factory=list)


def _csv_kwargs(path: str | os.PathLike) -> dict:
    sep = delimiter(Path(path).name)
    # dtype=str: numbers such as account ids and "$1,000.00" must reach the parsers untouched
    # index_col=False: a ragged line must be an error, never a silent shift of columns into the index
    return dict(sep=sep, dtype=str, keep_default_na=False, na_values=NULL_TOKENS, index_col=False)


def _read_csv(path: str | os.PathLike, nrows: int | None = None) -> tuple[pd.DataFrame, list[list[str]]]:
    kwargs = _csv_kwargs(path)
    if nrows is None:
        # The multi-threaded Arrow parser is the fast path for million-line bills. It refuses
        # ragged lines, quoted newlines and non-UTF-8 text; the pandas parsers below take those.
        try:
            # (index_col=False trips a pandas bug in this engine; it refuses ragged lines anyway)
            fast = {k: v for k, v in kwargs.items() if k != "index_col"}
            return pd.read_csv(path, encoding="utf-8-sig", engine="pyarrow", **fast), []
        except Exception:  # noqa: BLE001 - any refusal just means "use the tolerant parser"
            pass
    # utf-8-sig strips the byte-order mark Azure and Excel put before the first column name
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return pd.read_csv(path, encoding=encoding, nrows=nrows, **kwargs), []
        except UnicodeDecodeError:
            continue
        except pd.errors.ParserError:
            # A ragged line: re-read with the python engine so only the bad lines are refused
            # (the fast engines can only fail the whole file or drop lines silently).
            bad: list[list[str]] = []
            frame = pd.read_csv(
                path, encoding=encoding, nrows=nrows, engine="python",
                on_bad_lines=lambda fields: bad.append(fields) and None, **kwargs,
            )
            return frame, bad
    raise ReaderError("cannot decode file as UTF-8 or Latin-1 text")


def _arrow_to_text(table: pa.Table) -> pa.Table:
    """Map/struct/list columns (e.g. a FOCUS Parquet `Tags` map) become JSON object text."""
    columns = []
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_map(column.type):
            columns.append(_map_to_json(column))
        elif pa.types.is_struct(column.type) or pa.types.is_list(column.type):
            columns.append(_nested_to_json(column))
        else:
            columns.append(column)
    return pa.table(columns, names=table.column_names)


def _json_string(values: pd.Series) -> pd.Series:
    """JSON string literals for a string Series, escaping computed once per distinct value."""
    codes, uniques = pd.factorize(values.astype("string"), use_na_sentinel=True)
    quoted = np.array([json.dumps(str(u), ensure_ascii=False) for u in uniques] + ["null"], dtype=object)
    return pd.Series(quoted.take(codes), index=values.index, dtype=object)


def _map_to_json(column: pa.ChunkedArray) -> pa.Array:
    import pyarrow.compute as pc

    array = column.combine_chunks()
    n = len(array)
    # compute kernels take lists, not maps: view the map as list<struct<key, value>>
    as_list = pa.ListArray.from_arrays(array.offsets, array.values, mask=array.is_null())
    pairs_struct = pc.list_flatten(as_list)  # in row order, null maps skipped
    keys, items = pairs_struct.field(0), pairs_struct.field(1)
    parents = pc.list_parent_indices(as_list).to_numpy()
    pairs = pd.DataFrame(
        {
            "row": parents,
            "kv": _json_string(pd.Series(keys.to_pandas()))
            + ": "
            + _json_string(pd.Series(pc.cast(items, pa.string()).to_pandas())),
        }
    )
    # one string join per row group is done by pandas' grouped string sum, not a Python loop per pair
    joined = (pairs["kv"] + ", ").groupby(pairs["row"]).sum().str[:-2]
    out = pd.Series(pd.NA, index=range(n), dtype="string")
    out.loc[joined.index] = "{" + joined.astype("string") + "}"
    valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out[valid & out.isna().to_numpy()] = "{}"
    return pa.array(out.astype(object).where(out.notna(), None), type=pa.string())


def _nested_to_json(column: pa.ChunkedArray) -> pa.Array:
    # Rare in bills (Tags is a map or a string); these lists are small, so plain json is acceptable.
    values = column.to_pylist()
    return pa.array([None if v is None else json.dumps(v, default=str) for v in values], type=pa.string())


def read_header(path: str | os.PathLike) -> list[str]:
    """Column names of a CSV or Parquet file without reading its rows. Raises ReaderError."""
    kind = file_kind(path)
    try:
        if kind == "parquet":
            return list(pq.read_schema(path).names)
        if kind == "csv":
            return [str(c) for c in _read_csv(path, nrows=0)[0].columns]
    except ReaderError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise ReaderError("file is empty (no header line)") from exc
    except Exception as exc:  # unreadable for any reason: the caller turns this into a rejected file
        raise ReaderError(f"cannot read header: {type(exc).__name__}: {exc}") from exc
    raise ReaderError(f"unsupported file type {Path(path).name!r}: expected .csv (optionally compressed) or .parquet")


def read_tabular(path: str | os.PathLike) -> RawTable:
    """All rows of a CSV (as text) or Parquet file (native types). Raises ReaderError."""
    kind = file_kind(path)
    try:
        if kind == "parquet":
            frame = _arrow_to_text(pq.read_table(path)).to_pandas()
            bad: list[list[str]] = []
        elif kind == "csv":
            frame, bad = _read_csv(path)
        else:
            raise ReaderError(f"unsupported file type {Path(path).name!r}: expected .csv or .parquet")
    except ReaderError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise ReaderError("file is empty (no header line)") from exc
    except Exception as exc:
        raise ReaderError(f"cannot read file: {type(exc).__name__}: {exc}") from exc
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    record = pd.Series(np.arange(1, len(frame) + 1).astype(str), index=frame.index)
    width = len(frame.columns)
    bad_lines = [
        ("malformed line", f"malformed CSV line: {len(fields)} fields where the header has {width}", json.dumps(fields))
        for fields in bad
    ]
    return RawTable(frame, record, bad_lines)


class Columns:
    """Case-insensitive column lookup: exporters disagree on capitalisation (SkuPriceId vs SkuPriceid)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self._by_lower: dict[str, str] = {}
        for name in frame.columns:
            self._by_lower.setdefault(str(name).strip().lower(), name)

    def name(self, *candidates: str) -> str | None:
        for candidate in candidates:
            found = self._by_lower.get(candidate.lower())
            if found is not None:
                return found
        return None

    def get(self, *candidates: str) -> pd.Series | None:
        name = self.name(*candidates)
        return None if name is None else self.frame[name]

    def has(self, *candidates: str) -> bool:
        return self.name(*candidates) is not None


# ---- field parsers ---------------------------------------------------------------------------


def _as_text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text.isin(NULL_TOKENS))


def text_or_null(values: pd.Series | None, index: pd.Index) -> pd.Series:
    """Stripped text with null tokens as NA; a missing column becomes all-NA."""
    if values is None:
        return pd.Series(pd.NA, index=index, dtype="string")
    return _as_text(values)


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")


def parse_numbers(values: pd.Series | None, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """float64 values and a mask of cells present but not numbers.

    Accepts money formatting seen in hand-made exports ("$10,000.00 ", "(5.00)" for -5) on the
    slow path only: plain numbers, the normal case, are parsed in one to_numeric call.
    """
    if values is None:
        return pd.Series(np.nan, index=index, dtype="float64"), pd.Series(False, index=index)
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=index, dtype="float64"), values.notna()
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64"), pd.Series(False, index=index)
    text = _as_text(values)
    number = pd.to_numeric(text, errors="coerce").astype("float64")
    retry = text.notna() & number.isna() & ~text.str.lower().isin(["nan", "inf", "-inf"])
    if retry.any():
        cleaned = text[retry].str.replace(r"^\((.*)\)$", r"-\1", regex=True)
        cleaned = cleaned.str.replace(r"[\s$€£¥]", "", regex=True).str.replace(_THOUSANDS, "", regex=True)
        number.loc[retry] = pd.to_numeric(cleaned, errors="coerce").astype("float64")
    bad = text.notna() & number.isna() & ~text.str.lower().isin(["nan"])
    return number, bad.fillna(False).astype(bool)


def parse_integers(values: pd.Series | None, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """Int64 values and a mask of cells present but not whole numbers ("8.0" is 8; "8.5" is bad)."""
    number, bad = parse_numbers(values, index)
    fractional = number.notna() & ((number % 1) != 0)
    bad = bad | fractional | np.isinf(number)
    clean = number.where(~bad)
    return clean.astype("Int64"), bad.astype(bool)


_SLASH_DATE = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{2,4})")


def _parse_unique_timestamps(uniques: pd.Series) -> pd.Series:
    out = pd.to_datetime(uniques, format="ISO8601", utc=True, errors="coerce")
    left = out.isna()
    if left.any():
        digits = uniques[left].str.fullmatch(r"-?\d+(\.\d+)?").fillna(False)
        if digits.any():
            seconds = pd.to_numeric(uniques[left][digits], errors="coerce")
            # epoch milliseconds are > 1e11 for any date after 1973
            seconds = seconds.where(seconds.abs() < 1e11, seconds / 1000.0)
            out.loc[seconds.index] = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
        left = out.isna()
    if left.any():
        rest = uniques[left]
        parts = rest.str.extract(_SLASH_DATE).astype("float64")
        # US month-first unless a first field > 12 proves the export is day-first
        dayfirst = bool((parts[0] > 12).any() and not (parts[1] > 12).any())
        out.loc[rest.index] = pd.to_datetime(rest, format="mixed", dayfirst=dayfirst, utc=True, errors="coerce")
    return out


def parse_timestamps(values: pd.Series | None, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """tz-aware UTC timestamps (naive values are UTC) and a mask of cells present but unparseable."""
    empty = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    if values is None:
        return empty, pd.Series(False, index=index)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = values if getattr(values.dtype, "tz", None) else values.dt.tz_localize("UTC")
        return out.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), pd.Series(False, index=index)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        seconds = values.astype("float64")
        seconds = seconds.where(seconds.abs() < 1e11, seconds / 1000.0)
        return pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[ns, UTC]"), pd.Series(False, index=index)
    text = _as_text(values)
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    if len(uniques) == 0:
        return empty, pd.Series(False, index=index)
    parsed = _parse_unique_timestamps(pd.Series(uniques, dtype="string"))
    as_ns = parsed.astype("datetime64[ns, UTC]").dt.tz_localize(None).to_numpy()
    # code -1 (missing) takes the trailing NaT
    taken = np.append(as_ns, np.datetime64("NaT", "ns")).take(codes)
    out = pd.Series(taken, index=index).dt.tz_localize("UTC")
    bad = text.notna() & out.isna()
    return out, bad.fillna(False).astype(bool)


_TRUE = {"true", "t", "yes", "y", "1", "1.0", "on"}
_FALSE = {"false", "f", "no", "n", "0", "0.0", "off"}


def parse_booleans(values: pd.Series | None, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """Nullable booleans from true/false/1/0/yes/no (any case) and a mask of other values."""
    if values is None:
        return pd.Series(pd.NA, index=index, dtype="boolean"), pd.Series(False, index=index)
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean"), pd.Series(False, index=index)
    text = _as_text(values).str.lower()
    out = pd.Series(pd.NA, index=index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False).to_numpy()] = True
    out[text.isin(_FALSE).fillna(False).to_numpy()] = False
    bad = text.notna() & out.isna()
    return out, bad.fillna(False).astype(bool)


def add_reason(reason: pd.Series, mask: pd.Series | np.ndarray, text: str) -> pd.Series:
    """Append `text` to the rejection reason of the rows in `mask` ("; "-separated, in check order)."""
    mask = pd.Series(np.asarray(mask, dtype=bool), index=reason.index)
    if not mask.any():
        return reason
    prefix = (reason + "; ").fillna("")
    return reason.mask(mask, prefix + text)


def no_reason(index: pd.Index) -> pd.Series:
    return pd.Series(pd.NA, index=index, dtype="string")


def bad_line_rejects(table: RawTable, source: str, table_name: str) -> pd.DataFrame:
    """Rejected records for the lines a reader could not split into fields."""
    from ftops.schemas import REJECTED_RECORDS, validate

    if not table.bad_lines:
        return REJECTED_RECORDS.empty()
    frame = pd.DataFrame(
        {
            "source": source,
            "table": table_name,
            "record": [rec for rec, _, _ in table.bad_lines],
            "reason": [why for _, why, _ in table.bad_lines],
            "raw": [raw for _, _, raw in table.bad_lines],
        }
    )
    return validate(frame, REJECTED_RECORDS)
