"""The baseline of the ingest benchmarks: one inbox file read with pyarrow's own reader for its format."""

from __future__ import annotations


def bare_read(path: str) -> int:
    """Rows of one file read with pyarrow's own reader for its format (default options)."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    if path.endswith(".parquet"):
        return pq.read_table(path).num_rows
    if path.endswith(".csv"):
        return pcsv.read_csv(path).num_rows
    if path.endswith(".json"):  # trainer_state.json: one object over many lines
        return pjson.read_json(path, parse_options=pjson.ParseOptions(newlines_in_values=True)).num_rows
    return pjson.read_json(path).num_rows
