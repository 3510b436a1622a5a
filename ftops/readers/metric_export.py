"""Metric exports (JSONL, CSV, Parquet; long or wide) -> canonical `metric_samples`.

Long shape: one sample per row, columns `ts, job_id, metric, value` and optionally `step, device,
host, source` (or common aliases of those column names). Wide shape: `ts` (+ ids) and one column
per metric, melted to long; an empty cell means "not logged at this row", not a NaN sample.

Speed is the point (exports reach tens of millions of rows), so the fast path is Arrow end to end:
`pyarrow.csv.read_csv` / `pyarrow.json.read_json` with explicit column types; id columns parsed
straight into the large_string buffers pandas' `string` dtype keeps (no copy on hand-over); metric
names parsed as a dictionary so aliases are mapped on a handful of names instead of per row.
Only when the typed read fails does a tolerant path run, and only for what failed:
- CSV: the offending column is re-read as text and converted leniently (bad cells -> rejected rows);
  rows with the wrong number of fields are skipped by Arrow and rejected with their line number.
- JSONL: the file is bisected into line ranges; ranges Arrow reads stay fast, the few small ranges it
  cannot read are parsed line by line, so one malformed line costs one rejected record.
A file that cannot be read at all yields one rejected record (base.rejected_file), never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ftops.readers.aliases import canonical_metric_name
from ftops.readers.base import ReadResult, count_distinct, rejected_file, rejected_rows
from ftops.readers.formats import (
    ARROW_COMPRESSIONS, COMPRESSION_SUFFIXES, DECOMPRESSION_ERRORS, FORMAT_SUFFIXES, data_format, delimiter, describe_suffixes,
    open_decompressed, read_decompressed, split_suffixes, utf8_problem,
)
from ftops.readers.samples import finish_samples
from ftops.schemas import METRIC_SAMPLES, REJECTED_RECORDS

TABLE = METRIC_SAMPLES.name

# canonical column -> accepted spellings (compared case-insensitively); first match wins
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("ts", "timestamp", "time", "datetime", "_timestamp"),
    "job_id": ("job_id", "job", "jobid", "job_name", "run_id"),
    "metric": ("metric", "name", "metric_name", "key"),
    "value": ("value", "val", "metric_value"),
    "step": ("step", "global_step", "_step", "iteration"),
    "device": ("device", "gpu", "gpu_index", "gpu_id", "gpu_uuid", "device_id"),
    "host": ("host", "hostname", "instance", "node", "node_name"),
    "source": ("source",),
}
_ID_COLUMNS = ("job_id", "device", "host", "source")

_DICT = pa.dictionary(pa.int32(), pa.string())
_SNIFF_BYTES = 1 << 16
# Arrow's default CSV null spellings include "nan"/"NaN"; only an empty cell is missing here, so a
# NaN loss stays a NaN sample and a wide-format blank stays "not logged".
_CSV_NULLS = [""]
_JSON_TOLERANT_LINES = 64  # below this many lines a failing JSONL range is parsed line by line
_JSON_RANGE_BYTES = 1 << 20

Format = Literal["csv", "jsonl", "parquet"]
Shape = Literal["long", "wide", "unknown"]


@dataclass(frozen=True)
class ExportDescription:
    """What `read_metric_export` sees in a file before reading it all."""

    path: str
    format: Format | None
    shape: Shape
    columns: dict[str, str] = field(default_factory=dict)  # canonical column -> column in the file
    metric_columns: dict[str, str] = field(default_factory=dict)  # wide: file column -> canonical metric
    ignored_columns: tuple[str, ...] = ()  # neither an id column nor a known metric (wide) / unused (long)
    error: str | None = None


class _Unreadable(Exception):
    """The whole file cannot be read; the message is the rejection reason."""


# ---------------------------------------------------------------------------------------------------
# detection


def _format_of(path: Path) -> Format | None:
    fmt = data_format(path.name)
    return "csv" if fmt == "tsv" else fmt


def _arrow_source(path: Path) -> str | pa.Buffer:
    """What Arrow's readers take: the path when Arrow decompresses it itself, else the bytes."""
    compression = split_suffixes(path.name)[1]
    if compression is None or compression in ARROW_COMPRESSIONS:
        return str(path)
    return pa.py_buffer(read_decompressed(path))


def _head_bytes(path: Path, n: int = _SNIFF_BYTES) -> bytes:
    with open_decompressed(path) as stream:
        return stream.read(n)


def _check_utf8(head: bytes) -> None:
    problem = utf8_problem(head, truncated=len(head) == _SNIFF_BYTES)
    if problem:
        raise _Unreadable(problem)


def _classify_columns(names: list[str]) -> tuple[Shape, dict[str, str], dict[str, str], tuple[str, ...]]:
    lowered = {}
    for name in names:
        lowered.setdefault(name.strip().lower(), name)
    columns: dict[str, str] = {}
    for canonical, spellings in COLUMN_ALIASES.items():
        for spelling in spellings:
            if spelling in lowered:
                columns[canonical] = lowered[spelling]
                break
    if "metric" in columns and "value" in columns:
        used = set(columns.values())
        return "long", columns, {}, tuple(n for n in names if n not in used)
    # wide: `name`/`key`/`value` are not metric-name columns there, so drop such matches
    columns = {k: v for k, v in columns.items() if k not in ("metric", "value")}
    id_cols = set(columns.values())
    metric_columns = {}
    for name in names:
        if name in id_cols:
            continue
        metric = canonical_metric_name(name)
        if metric is not None:
            metric_columns[name] = metric
    ignored = tuple(n for n in names if n not in id_cols and n not in metric_columns)
    if metric_columns and "ts" in columns:
        return "wide", columns, metric_columns, ignored
    return "unknown", columns, metric_columns, ignored


def _sniff_csv(path: Path, delimiter: str) -> tuple[list[str], pa.Schema]:
    head = _head_bytes(path)
    if not head.strip():
        raise _Unreadable("empty file")
    _check_utf8(head)
    cut = head.rfind(b"\n")
    if len(head) == _SNIFF_BYTES and cut > 0:
        head = head[: cut + 1]
    try:
        sample = pa_csv.read_csv(
            pa.py_buffer(head),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=lambda _: "skip"),
            convert_options=pa_csv.ConvertOptions(null_values=_CSV_NULLS, strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _Unreadable(f"not a readable CSV file: {exc}") from exc
    return sample.column_names, sample.schema


def _sniff_jsonl(path: Path) -> tuple[list[str], dict[str, list[object]]]:
    """Keys in order of appearance and sample values of the first lines that parse."""
    head = _head_bytes(path)
    if not head.strip():
        raise _Unreadable("empty file")
    _check_utf8(head)
    lines = head.split(b"\n")
    if len(head) == _SNIFF_BYTES:
        lines = lines[:-1]  # probably cut mid-line
    keys: dict[str, list[object]] = {}
    parsed = 0
    for line in lines[:2000]:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            parsed += 1
            for k, v in obj.items():
                keys.setdefault(k, []).append(v)
    if not parsed:
        raise _Unreadable("no JSON object found in the first lines (not JSON Lines)")
    return list(keys), keys


def _delimiter(path: Path) -> str:
    return delimiter(path.name)


def _inspect(path: Path) -> tuple[ExportDescription, object]:
    """Format, shape and column mapping from the file's head; raises _Unreadable.

    The second value is what the sniff learnt for the typed read: the inferred CSV schema of the
    first rows, or sample values per JSON key.
    """
    fmt = _format_of(path)
    if fmt is None:
        raise _Unreadable(f"unsupported metric export file type {path.suffix!r}: expected {describe_suffixes()}")
    if not path.exists():
        raise FileNotFoundError(str(path))
    sniffed: object = None
    if fmt == "csv":
        names, sniffed = _sniff_csv(path, _delimiter(path))
    elif fmt == "jsonl":
        names, sniffed = _sniff_jsonl(path)
    else:
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError) as exc:
            raise _Unreadable(f"not a readable Parquet file: {exc}") from exc
    shape, columns, metric_columns, ignored = _classify_columns(names)
    if shape == "unknown":
        raise _Unreadable(
            "neither long (metric + value columns) nor wide (a ts column and known metric columns) "
            f"metric export; columns: {names}"
        )
    return ExportDescription(str(path), fmt, shape, columns, metric_columns, ignored), sniffed


def describe_export(path: str | Path) -> ExportDescription:
    """The detected format and shape of a metric export, its column mapping and ignored columns.

    Never raises: a file that cannot be read comes back with shape "unknown" and `error` set.
    """
    path = Path(path)
    try:
        return _inspect(path)[0]
    except _Unreadable as exc:
        return ExportDescription(str(path), _format_of(path), "unknown", error=str(exc))
    except (OSError, pa.ArrowException, ValueError) as exc:
        return ExportDescription(str(path), _format_of(path), "unknown", error=f"cannot open: {exc}")


def _job_id_from_path(path: Path) -> str:
    if path.parent.parent.name == "metrics" and path.parent.name:
        return path.parent.name
    # drop the format and compression suffixes only: "llama-3.1-8b.csv.gz" -> "llama-3.1-8b"
    name = path.name
    known = set(FORMAT_SUFFIXES) | set(COMPRESSION_SUFFIXES)
    for suffix in reversed(path.suffixes):
        if suffix.lower() not in known:
            break
        name = name[: -len(suffix)]
    return name


# ---------------------------------------------------------------------------------------------------
# Arrow columns -> pandas columns of the metric_samples dtypes


def _large_string_chunks(column: pa.ChunkedArray) -> pa.ChunkedArray:
    # pandas' ArrowStringArray stores large_string; casting once here avoids a second copy there
    return column if column.type == pa.large_string() else pc.cast(column, pa.large_string())


def _blank_to_null(name: object) -> object:
    return None if isinstance(name, str) and not name.strip() else name


def _canonical_or_blank(name: object) -> object:
    name = _blank_to_null(name)
    return canonical_metric_name(name) or name


def _string_series(column: pa.ChunkedArray, *, metric: bool = False, blanks_possible: bool = True) -> pd.Series:
    """Arrow strings (or numbers) -> pandas `string`; blank cells -> null; metric names canonical.

    Blank handling and alias mapping run on the dictionary (a handful of distinct names) rather
    than on every row, then one decode builds the column pandas keeps. `blanks_possible=False`
    (CSV, where Arrow already made empty cells null) skips the scan for blanks.
    """
    mapper = _canonical_or_blank if metric else _blank_to_null
    if pa.types.is_floating(column.type) and _all_integral(column):
        # JSON numbers such as a GPU index 0 come as float when some rows lack them
        column = pc.cast(column, pa.int64(), safe=False)
    if not pa.types.is_dictionary(column.type):
        if not metric and not (blanks_possible and _has_blank(column)):
            return pd.Series(pd.arrays.ArrowStringArray(_large_string_chunks(column)), copy=False)
        column = pc.dictionary_encode(pc.cast(column, pa.string()))
    if column.num_chunks == 0:
        return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([], pa.large_string())), copy=False)
    # each parsed block has its own dictionary; one shared dictionary means one mapping
    column = column.unify_dictionaries()
    names = column.chunk(0).dictionary.to_pylist()
    mapped = [mapper(n) for n in names]
    if mapped != names:
        dictionary = pa.array(mapped, pa.string())
        column = pa.chunked_array(
            [pa.DictionaryArray.from_arrays(chunk.indices, dictionary) for chunk in column.chunks], column.type
        )
    return pd.Series(pd.arrays.ArrowStringArray(pc.cast(column, pa.large_string())), copy=False)


def _has_blank(column: pa.ChunkedArray) -> bool:
    """Any empty or whitespace-only string? Chunk by chunk from the offsets: no string copies."""
    if pa.types.is_string(column.type):
        width = np.int32
    elif pa.types.is_large_string(column.type):
        width = np.int64
    else:
        return False
    for chunk in column.chunks:
        n = len(chunk)
        if n == chunk.null_count:
            continue
        offsets = np.frombuffer(
            chunk.buffers()[1], dtype=width, count=n + 1, offset=chunk.offset * width().itemsize
        )
        empty = np.diff(offsets) == 0
        if chunk.null_count:
            empty &= chunk.is_valid().to_numpy(zero_copy_only=False)
        if empty.any() or pc.any(pc.utf8_is_space(chunk)).as_py():
            return True
    return False


def _all_integral(column: pa.ChunkedArray) -> bool:
    valid = column.drop_null()
    return len(valid) == 0 or bool(pc.all(pc.equal(pc.floor(valid), valid)).as_py())


# magnitude thresholds: beyond 1e11 seconds (year 5138) a number must be ms, beyond 1e14 us, 1e17 ns
_EPOCH_UNITS_NS = ((1e17, 1), (1e14, 1_000), (1e11, 1_000_000))


def _epoch_to_utc(column: pa.ChunkedArray | pa.Array) -> pd.Series:
    """Epoch numbers to UTC; the unit (s, ms, us, ns) is chosen per value by its magnitude."""
    if pa.types.is_integer(column.type):
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        ints = pc.fill_null(pc.cast(column, pa.int64()), 0).to_numpy(zero_copy_only=False)
        magnitude = np.abs(ints)
        scale = np.full(len(ints), 1_000_000_000, dtype="int64")
        for threshold, ns in _EPOCH_UNITS_NS[::-1]:
            scale[magnitude >= threshold] = ns
        ok = valid & (magnitude <= np.iinfo("int64").max // scale)
        ns_values = np.where(ok, ints * scale, 0)
    else:
        x = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        magnitude = np.abs(x)
        scale = np.full(len(x), 1e9)
        for threshold, ns in _EPOCH_UNITS_NS[::-1]:
            scale[magnitude >= threshold] = ns
        # a float64 cannot carry nanoseconds at today's epoch: round to microseconds
        micros = np.round(x * (scale / 1000))
        ok = np.isfinite(micros) & (np.abs(micros) < 9.2e15)
        ns_values = np.where(ok, micros, 0).astype("int64") * 1000
    out = pd.Series(pd.to_datetime(ns_values, unit="ns", utc=True))
    if not ok.all():
        out[~ok] = pd.NaT
    return out


def _ts_series(column: pa.ChunkedArray) -> pd.Series:
    t = column.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            column = pc.assume_timezone(column, "UTC")
        column = pc.cast(column, pa.timestamp("ns", tz="UTC"))
        return column.to_pandas()
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _epoch_to_utc(column)
    if pa.types.is_dictionary(t):
        column = pc.cast(column, pa.string())
    for target in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
        try:
            return _ts_series(pc.cast(column, target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    try:
        return _epoch_to_utc(pc.cast(column, pa.float64()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # mixed spellings or a few bad cells: let pandas try each value; NaT is rejected downstream
    text = pd.Series(pd.arrays.ArrowStringArray(_large_string_chunks(column)), copy=False)
    numeric = pd.to_numeric(text, errors="coerce")
    parsed = pd.to_datetime(text.where(numeric.isna()), utc=True, errors="coerce", format="mixed")
    if numeric.notna().any():
        epochs = _epoch_to_utc(pa.array(numeric.to_numpy(dtype="float64", na_value=np.nan)))
        parsed = parsed.where(numeric.isna(), epochs)
    return parsed


def _value_series(column: pa.ChunkedArray) -> pd.Series:
    """float64 where every cell is a number; otherwise the text, for finish_samples to judge per row."""
    t = column.type
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
        return pd.Series(pc.cast(column, pa.float64()).to_numpy(), copy=False)
    if pa.types.is_dictionary(t):
        column = pc.cast(column, pa.string())
    try:
        return pd.Series(pc.cast(column, pa.float64()).to_numpy(), copy=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.Series(pd.arrays.ArrowStringArray(_large_string_chunks(column)), copy=False).str.strip()


def _int64_numpy(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Values and null mask with one copy: fill_null + combine_chunks would allocate twice."""
    column = pc.cast(column, pa.int64())
    values = np.empty(len(column), dtype="int64")
    mask = np.zeros(len(column), dtype=bool)
    pos = 0
    for chunk in column.chunks:
        n = len(chunk)
        data = chunk.buffers()[1]
        if n == 0:
            continue
        if data is None or chunk.null_count == n:
            values[pos : pos + n] = 0
            mask[pos : pos + n] = True
            pos += n
            continue
        values[pos : pos + n] = np.frombuffer(data, dtype="int64", count=n, offset=chunk.offset * 8)
        if chunk.null_count:
            nulls = chunk.is_null().to_numpy(zero_copy_only=False)
            mask[pos : pos + n] = nulls
            values[pos : pos + n][nulls] = 0  # slots under a null hold whatever the reader left there
        pos += n
    return values, mask


def _step_series(column: pa.ChunkedArray) -> tuple[pd.Series, np.ndarray]:
    """Nullable int steps and a mask of cells that are present but not an integer."""
    t = column.type
    if pa.types.is_integer(t):
        values, mask = _int64_numpy(column)
        return pd.Series(pd.arrays.IntegerArray(values, mask), copy=False), np.zeros(len(values), bool)
    if pa.types.is_dictionary(t):
        column = pc.cast(column, pa.string())
    if pa.types.is_floating(t):
        numeric = pd.Series(column.to_numpy(), copy=False)
        present = numeric.notna().to_numpy()
    else:
        text = pd.Series(pd.arrays.ArrowStringArray(_large_string_chunks(column)), copy=False).str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        present = (text.notna() & (text != "")).to_numpy(dtype=bool, na_value=False)
    numeric = numeric.astype("float64")
    integral = numeric.notna() & np.isfinite(numeric) & (numeric % 1 == 0)
    bad = present & ~integral.to_numpy()
    return numeric.where(integral).astype("Int64"), bad


def _to_long(
    table: pa.Table, desc: ExportDescription, job_id_default: str | None, lines: np.ndarray | pd.RangeIndex
) -> tuple[pd.DataFrame, pd.DataFrame | None, int]:
    """Arrow table in the file's shape -> (long rows for finish_samples, rows refused here, rows skipped).

    `lines` holds each row's line number (record); long rows carry theirs as the index. A wide
    row without any metric cell is skipped (counted): it logged nothing ftops tracks.
    """
    cols = desc.columns
    blanks_possible = desc.format != "csv"
    n = table.num_rows
    parts: dict[str, pd.Series] = {}
    parts["ts"] = (
        _ts_series(table.column(cols["ts"])) if "ts" in cols
        else pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    )
    if "job_id" in cols:
        job = _string_series(table.column(cols["job_id"]), blanks_possible=blanks_possible)
        if job_id_default is not None and job.isna().any():
            job = job.fillna(job_id_default)
    else:
        job = pd.Series(
            pd.arrays.ArrowStringArray(pa.repeat(pa.scalar(job_id_default, pa.large_string()), n)), copy=False
        )
    parts["job_id"] = job
    bad_step = np.zeros(n, bool)
    if "step" in cols:
        parts["step"], bad_step = _step_series(table.column(cols["step"]))
    for name in ("device", "host", "source"):
        if name in cols:
            parts[name] = _string_series(table.column(cols[name]), blanks_possible=blanks_possible)

    if desc.shape == "long":
        parts["metric"] = _string_series(table.column(cols["metric"]), metric=True)
        value_column = table.column(cols["value"])
        parts["value"] = _value_series(value_column)
        # a float column turns null into NaN: keep the null mask so a missing value is refused
        parts["value_missing"] = pd.Series(pc.is_null(value_column).to_numpy(zero_copy_only=False), copy=False)
        frame = pd.DataFrame(parts, copy=False)
        frame.index = lines
        refused = None
        if bad_step.any():
            refused = rejected_rows(
                frame[bad_step], "step is not an integer", source=desc.path, table=TABLE,
                record=pd.Series(frame.index[bad_step], index=frame.index[bad_step]),
            )
            frame = frame[~bad_step]
        return frame, refused, 0

    # wide: one block of rows per metric column, keeping only cells that hold something
    base = pd.DataFrame(parts, copy=False)
    line_array = np.asarray(lines)
    blocks = []
    refused_parts = []
    any_present = np.zeros(n, dtype=bool)
    for column, metric in desc.metric_columns.items():
        raw = table.column(column)
        present = pc.is_valid(raw).to_numpy(zero_copy_only=False)
        if not (pa.types.is_floating(raw.type) or pa.types.is_integer(raw.type)):
            text = pc.cast(raw, pa.string())
            filled = pc.utf8_length(pc.utf8_trim_whitespace(text))
            present &= pc.fill_null(pc.greater(filled, 0), False).to_numpy(zero_copy_only=False)
        any_present |= present
        if not present.any():
            continue
        block = base[present]
        block = block.assign(
            metric=pd.arrays.ArrowStringArray(pa.repeat(pa.scalar(metric, pa.large_string()), len(block))),
            value=_value_series(raw)[present].to_numpy(),
        )
        block.index = line_array[present]
        step_bad = bad_step[present]
        if step_bad.any():
            refused_parts.append(rejected_rows(
                block[step_bad], "step is not an integer", source=desc.path, table=TABLE,
                record=pd.Series(block.index[step_bad], index=block.index[step_bad]),
            ))
            block = block[~step_bad]
        blocks.append(block)
    refused = pd.concat(refused_parts, ignore_index=True) if refused_parts else None
    skipped = int((~any_present).sum())
    if not blocks:
        return pd.DataFrame({"ts": [], "job_id": [], "metric": [], "value": []}), refused, skipped
    return pd.concat(blocks), refused, skipped


# ---------------------------------------------------------------------------------------------------
# format readers: each returns pieces (table, line number of each row) and rows refused while parsing

_Piece = tuple[pa.Table, "np.ndarray | pd.RangeIndex"]


def _csv_types(desc: ExportDescription, sniffed: pa.Schema) -> dict[str, pa.DataType]:
    cols = desc.columns
    types: dict[str, pa.DataType] = {}
    if "ts" in cols:
        inferred = sniffed.field(cols["ts"]).type
        if pa.types.is_timestamp(inferred):
            types[cols["ts"]] = pa.timestamp("ns", tz="UTC" if inferred.tz else None)
        elif pa.types.is_integer(inferred):
            types[cols["ts"]] = pa.int64()
        elif pa.types.is_floating(inferred):
            types[cols["ts"]] = pa.float64()
        else:
            types[cols["ts"]] = pa.string()
    # ids straight into the large_string pandas keeps (no decode copy later); metric names as a
    # dictionary, so aliases are mapped on a handful of distinct names
    for name in _ID_COLUMNS:
        if name in cols:
            types[cols[name]] = pa.large_string()
    if "metric" in cols:
        types[cols["metric"]] = _DICT
    if "value" in cols:
        types[cols["value"]] = pa.float64()
    if "step" in cols:
        types[cols["step"]] = pa.int64()
    for column in desc.metric_columns:
        types[column] = pa.float64()
    return types


_CSV_COLUMN_ERROR = re.compile(r"In CSV column #(\d+)")


def _read_csv(path: Path, desc: ExportDescription, sniffed: pa.Schema) -> tuple[list[_Piece], pd.DataFrame | None]:
    delimiter = _delimiter(path)
    types = _csv_types(desc, sniffed)
    wanted = list(dict.fromkeys(list(desc.columns.values()) + list(desc.metric_columns)))
    invalid: list[object] = []

    def on_invalid(row: object) -> str:
        invalid.append(row)
        return "skip"

    source = _arrow_source(path)

    def read(use_threads: bool = True) -> pa.Table:
        return pa_csv.read_csv(
            source if isinstance(source, str) else pa.BufferReader(source),
            read_options=pa_csv.ReadOptions(use_threads=use_threads),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, include_columns=wanted, null_values=_CSV_NULLS, strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

    for _ in range(len(types) + 1):
        invalid.clear()
        try:
            table = read()
            break
        except pa.ArrowInvalid as exc:
            # a typed column holds something else: read just that column as text, judge it per cell
            match = _CSV_COLUMN_ERROR.search(str(exc))
            if not match:
                raise _Unreadable(f"not a readable CSV file: {exc}") from exc
            column = sniffed.names[int(match.group(1))]
            if types.get(column) in (None, pa.string(), pa.large_string(), _DICT):
                raise _Unreadable(f"not a readable CSV file: {exc}") from exc
            types[column] = pa.string()
    else:  # pragma: no cover - every typed column already relaxed to text
        raise _Unreadable("not a readable CSV file")

    lines: np.ndarray | pd.RangeIndex = pd.RangeIndex(2, table.num_rows + 2)
    refused = None
    if invalid:
        # Arrow only numbers rows when reading on one thread; worth it on this rare path
        invalid.clear()
        table = read(use_threads=False)
        numbers = np.array(sorted(r.number for r in invalid if r.number is not None), dtype="int64")
        # shift each kept row's line number past the skipped rows before it
        shifted = numbers - 2 - np.arange(len(numbers))
        k = np.arange(table.num_rows)
        lines = k + 2 + np.searchsorted(shifted, k, side="right")
        raw = pd.DataFrame({"line": [r.text for r in invalid]})
        reasons = pd.Series(
            [f"malformed CSV row: expected {r.expected_columns} fields, got {r.actual_columns}" for r in invalid]
        )
        refused = rejected_rows(
            raw, reasons, source=desc.path, table=TABLE,
            record=pd.Series([r.number for r in invalid], dtype="object"),
        )
    return [(table, lines)], refused


def _json_schema(desc: ExportDescription, samples: dict[str, list[object]]) -> pa.Schema:
    def kind(key: str) -> str:
        values = [v for v in samples.get(key, []) if v is not None]
        if values and all(isinstance(v, bool) for v in values):
            return "bool"
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "int"
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return "float"
        return "str"

    fields = []
    cols = desc.columns
    if "ts" in cols:
        k = kind(cols["ts"])
        if k in ("int", "float"):
            fields.append((cols["ts"], pa.int64() if k == "int" else pa.float64()))
        else:
            values = [v for v in samples.get(cols["ts"], []) if isinstance(v, str)]
            zoned = values and all(re.search(r"(Z|[+-]\d\d:?\d\d)$", v.strip()) for v in values)
            fields.append((cols["ts"], pa.timestamp("ns", tz="UTC") if zoned else pa.string()))
    for name in _ID_COLUMNS + ("metric",):
        if name in cols:
            # large_string is what pandas keeps: no copy when the column is handed over
            fields.append((cols[name], pa.int64() if kind(cols[name]) == "int" else pa.large_string()))
    # a heartbeat may be logged as true/false; Arrow reads that as bool, and bool -> 1.0/0.0 later
    if "value" in cols:
        fields.append((cols["value"], pa.bool_() if kind(cols["value"]) == "bool" else pa.float64()))
    if "step" in cols:
        fields.append((cols["step"], pa.int64() if kind(cols["step"]) in ("int", "str") else pa.float64()))
    for column in desc.metric_columns:
        fields.append((column, pa.bool_() if kind(column) == "bool" else pa.float64()))
    return pa.schema(fields)


def _read_jsonl(
    path: Path, desc: ExportDescription, samples: dict[str, list[object]]
) -> tuple[list[_Piece], pd.DataFrame | None]:
    schema = _json_schema(desc, samples)
    parse_options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        source = _arrow_source(path)
        table = pa_json.read_json(source if isinstance(source, str) else pa.BufferReader(source),
                                  parse_options=parse_options)
        return [(table, pd.RangeIndex(1, table.num_rows + 1))], None
    except pa.ArrowInvalid:
        pass
    data = read_decompressed(path)
    return _read_jsonl_tolerant(data, desc, schema, parse_options)


def _read_jsonl_tolerant(
    data: bytes, desc: ExportDescription, schema: pa.Schema, parse_options: pa_json.ParseOptions
) -> tuple[list[_Piece], pd.DataFrame | None]:
    """Bisect line ranges: Arrow reads the good ranges, small failing ranges go line by line.

    Returns up to two pieces, typed rows and line-parsed rows (text columns); rows of the second
    come after those of the first in the result, each in file order.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10) + 1
    if not len(ends) or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    starts = np.concatenate([[0], ends[:-1]])
    tables: list[pa.Table] = []
    line_parts: list[np.ndarray] = []
    bad_lines: list[tuple[int, str, str]] = []
    # ~1 MiB ranges first, so a bad line costs re-reading its range only, not halves of the file
    cuts = np.searchsorted(ends, np.arange(_JSON_RANGE_BYTES, len(data), _JSON_RANGE_BYTES), side="left")
    bounds = np.unique(np.concatenate([[0], cuts + 1, [len(starts)]]).clip(0, len(starts)))
    pending = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])][::-1]
    while pending:
        lo, hi = pending.pop()
        chunk = data[starts[lo] : ends[hi - 1]]
        if not chunk.strip():
            continue
        if hi - lo > _JSON_TOLERANT_LINES:
            try:
                t = pa_json.read_json(pa.py_buffer(chunk), parse_options=parse_options)
            except pa.ArrowInvalid:
                mid = (lo + hi) // 2
                pending.extend([(mid, hi), (lo, mid)])  # stack: lo half first
                continue
            non_blank = _non_blank_lines(buf, starts, ends, lo, hi)
            tables.append(t)
            line_parts.append(non_blank + 1)
            continue
        rows, row_lines = [], []
        for i in range(lo, hi):
            line = data[starts[i] : ends[i]].strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                reason = f"malformed JSON line: {getattr(exc, 'msg', exc)}"
                bad_lines.append((i + 1, reason, line.decode("utf-8", "replace")))
                continue
            if not isinstance(obj, dict):
                bad_lines.append((i + 1, "JSON line is not an object", line.decode("utf-8", "replace")))
                continue
            rows.append(obj)
            row_lines.append(i + 1)
        if rows:
            tables.append(_objects_to_table(rows, schema))
            line_parts.append(np.asarray(row_lines, dtype="int64"))
    refused = None
    if bad_lines:
        raw = pd.DataFrame({"line": [b[2] for b in bad_lines]})
        refused = rejected_rows(
            raw, pd.Series([b[1] for b in bad_lines]), source=desc.path, table=TABLE,
            record=pd.Series([b[0] for b in bad_lines]),
        )
    # typed ranges stay one fast table; the few line-parsed rows (text) are judged on their own
    pieces = []
    for kind in (True, False):
        chosen = [i for i, t in enumerate(tables) if (t.schema == schema) == kind]
        if chosen:
            pieces.append((
                pa.concat_tables([tables[i] for i in chosen]),
                np.concatenate([line_parts[i] for i in chosen]),
            ))
    return pieces, refused


def _non_blank_lines(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> np.ndarray:
    # Arrow skips blank lines; find them to keep line numbers right (only on this fallback path)
    idx = np.arange(lo, hi)
    lengths = ends[lo:hi] - starts[lo:hi]
    blank = lengths <= 2  # "\n" or "\r\n"; longer whitespace-only lines are rare enough to ignore
    if blank.any():
        first = buf[starts[lo:hi]]
        blank &= (first == 10) | (first == 13)
    return idx[~blank]


def _objects_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Parsed JSON objects of a failing range -> text columns (per line; fallback path only)."""
    out = {}
    for name in schema.names:
        values = []
        for row in rows:
            v = row.get(name)
            if v is None:
                values.append(None)
            elif isinstance(v, str):
                values.append(v)
            elif isinstance(v, bool):
                values.append("1" if v else "0")
            elif isinstance(v, float) and np.isnan(v):
                values.append("nan")
            else:
                values.append(json.dumps(v) if isinstance(v, (dict, list)) else str(v))
        out[name] = pa.array(values, pa.string())
    return pa.table(out)


def _read_parquet(path: Path, desc: ExportDescription) -> tuple[list[_Piece], None]:
    wanted = list(dict.fromkeys(list(desc.columns.values()) + list(desc.metric_columns)))
    table = pq.read_table(path, columns=wanted)
    return [(table, pd.RangeIndex(0, table.num_rows))], None


# ---------------------------------------------------------------------------------------------------


def read_metric_export(path: str | Path, job_id: str | None = None) -> ReadResult:
    """Read a metric export (CSV/TSV, JSON Lines or Parquet; long or wide) into `metric_samples`.

    job_id comes from a job_id column when there is one (blank cells take the `job_id` argument when
    given), else the `job_id` argument, else the folder name for `.../metrics/<job_id>/<file>`, else
    the file stem. Timestamps may be ISO-8601 (Z or offset; naive means UTC) or epoch s/ms/us/ns.
    Rejected rows carry the line number (CSV: header is line 1; Parquet: row index) as `record`.
    """
    path = Path(path)
    source = str(path)
    try:
        return _read(path, job_id)
    except _Unreadable as exc:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(source, TABLE, str(exc)))
    except FileNotFoundError:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(source, TABLE, "file not found"))
    except (OSError, pa.ArrowException, ValueError, UnicodeDecodeError, *DECOMPRESSION_ERRORS) as exc:
        return ReadResult(
            TABLE, METRIC_SAMPLES.empty(), rejected_file(source, TABLE, f"cannot read metric export: {exc}")
        )


def _read(path: Path, job_id: str | None) -> ReadResult:
    source = str(path)
    desc, sniffed = _inspect(path)
    fmt, columns = desc.format, desc.columns
    if fmt == "csv":
        pieces, refused = _read_csv(path, desc, sniffed)
    elif fmt == "jsonl":
        pieces, refused = _read_jsonl(path, desc, sniffed)
    else:
        pieces, refused = _read_parquet(path, desc)

    default_job = job_id if job_id is not None else (None if "job_id" in columns else _job_id_from_path(path))
    accepted, rejected = [], [refused] if refused is not None else []
    duplicates = skipped = 0
    # wide: a line fans out into one sample per metric column, so lines are counted by id
    seen_lines: list[np.ndarray] = [_record_ids(refused)] if refused is not None else []
    while pieces:
        table, lines = pieces.pop(0)
        long, refused_here, skipped_here = _to_long(table, desc, default_job, lines)
        del table  # the Arrow buffers not handed to pandas can go before finish_samples allocates
        if desc.shape == "wide":
            seen_lines.append(np.asarray(long.index, dtype="int64"))
            if refused_here is not None:
                seen_lines.append(_record_ids(refused_here))
        result = finish_samples(long, source=source)
        accepted.append(result.accepted)
        duplicates += result.duplicates
        skipped += skipped_here
        rejected.extend(r for r in (refused_here, result.rejected) if r is not None)
    rejected = [r for r in rejected if len(r)]
    out = ReadResult(
        TABLE,
        accepted[0] if len(accepted) == 1 else pd.concat(accepted, ignore_index=True),
        pd.concat(rejected, ignore_index=True) if rejected else REJECTED_RECORDS.empty(),
        duplicates=duplicates,
        skipped=skipped,
    )
    if desc.shape == "wide":
        out = out.with_records(count_distinct(*seen_lines) + skipped, skipped)
    return out


def _record_ids(rejected: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(rejected["record"], errors="coerce").dropna().to_numpy(dtype="int64")
