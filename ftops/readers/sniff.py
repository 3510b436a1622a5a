"""Is a text input text at all? Looked at before parsing, so a wrong file is refused once, saying why.

The CSV parsers fall back to Latin-1, which decodes any bytes: a UTF-16 export or a binary file
would otherwise come out as a "table" of garbage rows, each rejected for a missing field. The
first bytes tell these cases apart cheaply: a byte-order mark, a known binary signature, or NUL
bytes (never in UTF-8 or Latin-1 text, always in UTF-16/32 and in most binary formats).
"""

from __future__ import annotations

import os
from pathlib import Path

from ftops.readers.formats import COMPRESSION_SUFFIXES

SNIFF_BYTES = 64 * 1024
_SAVE_AS = "export or save it as UTF-8 text"

# (leading bytes, what the file is); longer marks first: the UTF-32 LE mark starts with UTF-16's
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", f"UTF-32 text (byte-order mark FF FE 00 00), not UTF-8: {_SAVE_AS}"),
    (b"\x00\x00\xfe\xff", f"UTF-32 text (byte-order mark 00 00 FE FF), not UTF-8: {_SAVE_AS}"),
    (b"\xff\xfe", f"UTF-16 text (byte-order mark FF FE), not UTF-8: {_SAVE_AS}"),
    (b"\xfe\xff", f"UTF-16 text (byte-order mark FE FF), not UTF-8: {_SAVE_AS}"),
    (b"PAR1", "a Parquet file, not text: give it a .parquet name"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?), not text: export the sheet as CSV (UTF-8)"),
    (b"\x1f\x8b", "gzip-compressed, not text: name it with a .gz suffix"),
    (b"%PDF", "a PDF document, not a table"),
)


def not_text_reason(path: str | os.PathLike) -> str | None:
    """Why the file cannot be a UTF-8 text table, or None when its first bytes look like text.

    Latin-1 and other 8-bit text is not refused here: it has no NUL bytes and the CSV parser
    reads it. Raises OSError when the file cannot be opened (the caller's parser would too).
    """
    if Path(path).name.lower().endswith(COMPRESSION_SUFFIXES):
        return None  # compressed inputs are checked by their parser after decompression
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    for mark, what in _SIGNATURES:
        if head.startswith(mark):
            return f"the file is {what}"
    nul = head.find(b"\x00")
    if nul < 0:
        return None
    # UTF-16 without a byte-order mark: ASCII characters alternate with NUL bytes
    if head.count(b"\x00") * 3 >= len(head):
        return f"the file looks like UTF-16 text without a byte-order mark (NUL bytes between characters): {_SAVE_AS}"
    return f"the file is binary, not a text table (a NUL byte at offset {nul})"
