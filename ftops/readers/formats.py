"""The one table of file suffixes every reader, the inbox and `check-run` agree on.

Before this table the inbox, the tabular readers and the metric export reader each had their
own list, so a `.tsv` or `.csv.gz` export that the reader could read was refused by the inbox.
A name is `<stem><format suffix>[<compression suffix>]`, e.g. `run.jsonl.gz`.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from pathlib import PurePath
from typing import BinaryIO, Literal

DataFormat = Literal["csv", "tsv", "jsonl", "parquet"]

FORMAT_SUFFIXES: dict[str, DataFormat] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# what a corrupt or truncated compressed file raises while it is read
DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (EOFError, zipfile.BadZipFile, lzma.LZMAError, gzip.BadGzipFile)

# Parquet compresses inside the file, so these only apply to the text formats.
COMPRESSION_SUFFIXES: tuple[str, ...] = (".gz", ".bz2", ".zst", ".xz", ".zip")
# Arrow decompresses these itself while streaming; the others are opened with the standard library.
ARROW_COMPRESSIONS: tuple[str, ...] = (".gz", ".bz2", ".zst")


def split_suffixes(name: str | PurePath) -> tuple[DataFormat | None, str | None]:
    """(data format, compression suffix) from a file name; (None, …) when it is no data file."""
    suffixes = [s.lower() for s in PurePath(name).suffixes]
    compression = None
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        compression = suffixes.pop()
    fmt = FORMAT_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt == "parquet" and compression is not None:
        return None, compression
    return fmt, compression


def data_format(name: str | PurePath) -> DataFormat | None:
    """csv | tsv | jsonl | parquet for a data file name (compressed text included), else None."""
    return split_suffixes(name)[0]


def delimiter(name: str | PurePath) -> str:
    return "\t" if data_format(name) == "tsv" else ","


def describe_suffixes() -> str:
    """For messages: what a data file may be called."""
    formats = ", ".join(sorted(FORMAT_SUFFIXES))
    return f"{formats} (text formats optionally compressed: {', '.join(COMPRESSION_SUFFIXES)})"


def open_decompressed(path: str | PurePath) -> BinaryIO:
    """A binary stream of the file's data bytes, decompressed by its compression suffix."""
    _, compression = split_suffixes(path)
    path = str(path)
    if compression == ".gz":
        return gzip.open(path, "rb")
    if compression == ".bz2":
        return bz2.open(path, "rb")
    if compression == ".xz":
        return lzma.open(path, "rb")
    if compression == ".zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise ValueError(f"a .zip export must hold exactly one file, found {len(members)}")
        return archive.open(members[0])
    if compression == ".zst":
        import pyarrow as pa

        return pa.input_stream(path, compression="zstd")
    return open(path, "rb")


def read_decompressed(path: str | PurePath) -> bytes:
    with open_decompressed(path) as fh:
        return fh.read()


def utf8_problem(data: bytes, *, truncated: bool = False) -> str | None:
    """Why `data` is not UTF-8 text, naming the first bad byte; None when it is.

    `truncated`: the bytes are the head of a longer file, so a character cut at the end is fine.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return None
        byte = data[exc.start]
        return f"not UTF-8 text (byte 0x{byte:02x} at offset {exc.start}); write the file as UTF-8"
    return None


__all__ = [
    "ARROW_COMPRESSIONS", "COMPRESSION_SUFFIXES", "DECOMPRESSION_ERRORS", "FORMAT_SUFFIXES", "data_format", "delimiter",
    "describe_suffixes", "open_decompressed", "read_decompressed", "split_suffixes", "utf8_problem",
]
