"""Count the records a file holds, from its bytes, apart from (and without) the reader's parse.

This is the left-hand side of the row accounting: staging compares it with what the reader
accounted for, so a reader (or a parser option) that silently drops a row shows up as an
unbalanced file. What a record is, per format family:

- CSV/TSV: a data line (header excluded; a line ends at a newline outside double quotes, so a
  quoted cell spanning lines is one record; empty lines are no records, as the parsers skip them);
- JSON Lines: a non-blank line;
- Parquet: the row count in the file's metadata;
- `trainer_state.json`: an entry of `log_history`;
- Prometheus text exposition: a line that is neither blank nor a `#` comment;
- a W&B `wandb-metadata.json`: one record (the run it describes gives one job row).

Counting streams the file in blocks with numpy, so it costs one pass over the bytes and no parse.
Returns None when the file cannot be counted (unreadable, corrupt compression): the caller
treats that as "not balanced" unless the reader refused the whole file anyway.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import numpy as np
import pyarrow.parquet as pq

from ftops.readers.formats import DECOMPRESSION_ERRORS, data_format, open_decompressed

_BLOCK = 1 << 24
_NL, _CR, _QUOTE, _HASH = 10, 13, 34, 35
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 11, 12, 13, 32]] = True


def _count_lines(path: str, *, quoted: bool, skip_comments: bool, whitespace_is_blank: bool) -> int:
    """Lines with content (see the module docstring) in a text file, block by block.

    The unfinished last line of a block is carried into the next one, so every block starts at
    a line start and, for CSV, outside quotes.
    """
    count = 0
    tail = b""
    with open_decompressed(path) as fh:
        while True:
            block = fh.read(_BLOCK)
            final = not block
            data = tail + block if tail else block
            if not data:
                break
            buf = np.frombuffer(data, dtype=np.uint8)
            ends = np.flatnonzero(buf == _NL)
            if quoted:
                quotes = np.flatnonzero(buf == _QUOTE)
                if len(quotes):
                    # a newline ends a record only outside quotes: an even number of quotes before it
                    ends = ends[(np.searchsorted(quotes, ends) & 1) == 0]
            if final:
                stops = np.concatenate([ends, [len(buf)]])
            else:
                stops = ends
                tail = data[ends[-1] + 1:] if len(ends) else data
            if len(stops):
                starts = np.concatenate([[0], stops[:-1] + 1])
                count += _lines_with_content(data, buf, starts, stops, skip_comments, whitespace_is_blank)
            if final:
                break
    return count


def _lines_with_content(data: bytes, buf: np.ndarray, starts: np.ndarray, stops: np.ndarray,
                        skip_comments: bool, whitespace_is_blank: bool) -> int:
    """Lines [start, stop) that hold something (and are no `#` comment when asked)."""
    length = stops - starts
    empty = (length == 0) | ((length == 1) & (buf[np.minimum(starts, len(buf) - 1)] == _CR))
    first = buf[np.minimum(starts, len(buf) - 1)]
    counted = ~empty
    if skip_comments:
        counted &= first != _HASH
    if whitespace_is_blank:
        # a line starting with whitespace may be blank or an indented comment: judge those few one by one
        odd = np.flatnonzero(counted & _SPACE[first])
        for i in odd:
            text = data[starts[i]:stops[i]].strip()
            counted[i] = bool(text) and not (skip_comments and text.startswith(b"#"))
    return int(counted.sum())


def _trainer_state_entries(path: str) -> int | None:
    with open(path, "rb") as fh:
        state = json.loads(fh.read(), parse_constant=str)
    if isinstance(state, dict) and isinstance(state.get("log_history"), list):
        return len(state["log_history"])
    return None


def count_records(path: str) -> int | None:
    """How many records `path` holds, counted from its bytes (see the module docstring)."""
    name = PurePosixPath(path).name.lower()
    try:
        if name.endswith("trainer_state.json"):
            return _trainer_state_entries(path)
        if name == "wandb-metadata.json":
            return 1
        if name.endswith((".prom", ".metrics")):
            return _count_lines(path, quoted=False, skip_comments=True, whitespace_is_blank=True)
        fmt = data_format(name)
        if fmt == "parquet":
            return int(pq.ParquetFile(path).metadata.num_rows)
        if fmt == "jsonl":
            return _count_lines(path, quoted=False, skip_comments=False, whitespace_is_blank=True)
        if fmt in ("csv", "tsv"):
            lines = _count_lines(path, quoted=True, skip_comments=False, whitespace_is_blank=False)
            return max(lines - 1, 0)  # the header
    except (OSError, ValueError, *DECOMPRESSION_ERRORS):  # corrupt compression, unreadable, not JSON
        return None
    except Exception:  # noqa: BLE001 - Arrow errors (corrupt Parquet footer) and the like
        return None
    return None
