"""The GPU instance catalogue: what each cloud's GPU instance types hold and cost per hour.

One row per (cloud, region, instance_type, gpu_model, gpu_count), in the columns of
`CATALOG_COLUMNS`. Where the rows come from, later sources replacing earlier ones:

1. the bundled snapshot `ftops/data/instance_catalog.csv` (rebuilt by `tools/build_catalog.py`);
2. files written by `ftops catalog import` into the catalogue folder (settings `catalog`);
3. `optimization.catalog` rows of ftops.yaml;
4. `prices:` of ftops.yaml, which set the price of every row of their instance type.

SkyPilot's catalogue format (`InstanceType, AcceleratorName, AcceleratorCount, vCPUs, MemoryGiB,
Price, SpotPrice, Region, AvailabilityZone`, ...) is converted by `from_skypilot`; the bundled
snapshot and `ftops catalog import` both go through it.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ftops.optimize.gpus import canonical_gpu_models, datasheets

if TYPE_CHECKING:  # the policy module is plain Python too; imported for the annotation only
    from ftops.policy import Policy

CATALOG_COLUMNS = (
    "cloud", "region", "instance_type", "gpu_model", "gpu_count", "gpu_memory_gb", "vcpus", "memory_gb",
    "on_demand_usd_per_hour", "spot_usd_per_hour", "source", "price_date",
)
CATALOG_KEY = ("cloud", "region", "instance_type", "gpu_model", "gpu_count")
CATALOG_SCHEMA_VERSION = 1
CATALOG_TITLE = "ftops instance catalogue"

_STRINGS = ("cloud", "region", "instance_type", "gpu_model", "source", "price_date")
_FLOATS = ("gpu_memory_gb", "vcpus", "memory_gb", "on_demand_usd_per_hour", "spot_usd_per_hour")
_REQUIRED = ("cloud", "region", "instance_type", "gpu_model", "gpu_count", "gpu_memory_gb",
             "on_demand_usd_per_hour")
_SCHEMA_LINE = re.compile(r"^#\s*schema_version\s*:\s*(\S+)\s*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLOUDS_IN_NAMES = ("aws", "gcp", "azure")
_PRICE_DECIMALS = 8

# SkyPilot calls GCP's A3 Mega GPU "H100-MEGA": the chip is the same H100 SXM 80GB as A3 High's
# (GCP's accelerator type nvidia-h100-mega-80gb); only the machine's network differs, and that is
# what instance_type a3-megagpu-8g says. A job on it reports "NVIDIA H100 80GB HBM3".
_SKYPILOT_ALIASES = {"H100-MEGA": "H100"}

# GCP bills the GPU on its own row (no InstanceType) apart from the host VM row (no accelerator).
# A machine type of the accelerator-optimised families has a fixed GPU: the count is in the name
# (a2-highgpu-4g: 4), except G2, where the vCPU count is in the name.
_GCP_FIXED_GPUS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), accelerator)
    for pattern, accelerator in (
        (r"^a2-(?:highgpu|megagpu)-(\d+)g$", "A100"),
        (r"^a2-ultragpu-(\d+)g$", "A100-80GB"),
        (r"^a3-(?:highgpu|edgegpu)-(\d+)g(?:-nolssd)?$", "H100"),
        (r"^a3-megagpu-(\d+)g$", "H100-MEGA"),
        (r"^a3-ultragpu-(\d+)g(?:-nolssd)?$", "H200"),
        (r"^a4-highgpu-(\d+)g$", "B200"),
    )
)
_GCP_G2 = re.compile(r"^g2-standard-(\d+)$")
_GCP_G2_L4_COUNT = {4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}
# N1 machines take attachable T4 / V100 GPUs in any of many host sizes. The catalogue lists one
# representative host per GPU count, an n1-highmem with 8 vCPUs per GPU (about what data loading
# of a fine-tune needs, and within GCP's vCPU limit for every count), so that a T4 or V100 offer
# has one price: n1-highmem-8 with 1 GPU, -16 with 2, -32 with 4, -64 with 8. instance_type is the
# host; gpu_model and gpu_count (part of the key) say what is attached.
_GCP_N1_HOST_FOR_COUNT = {1: "n1-highmem-8", 2: "n1-highmem-16", 4: "n1-highmem-32", 8: "n1-highmem-64"}
_GCP_N1_GPUS = ("T4", "V100")


class CatalogError(ValueError):
    """A catalogue file or frame is not usable; the message names the file, line or row and column."""


# ---------------------------------------------------------------------------------------------
# typing and validation


def empty_catalog() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in CATALOG_COLUMNS}))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[list(CATALOG_COLUMNS)].copy()
    for column in _STRINGS:
        out[column] = out[column].astype("string")
    for column in _FLOATS:
        out[column] = out[column].astype("float64")
    out["gpu_count"] = out["gpu_count"].astype("int64")
    return out.reset_index(drop=True)


def _where(where: str, first_line: int | None, position: int) -> str:
    """'FILE, line N' for a file (first_line: the line of data row 0), else 'FRAME, row N'."""
    if first_line is None:
        return f"{where}, row {position}"
    return f"{where}, line {first_line + position}"


def _numeric(values: pd.Series, column: str, where: str, first_line: int | None) -> pd.Series:
    """Numbers of a column; a non-empty cell that is not a number is an error naming its place."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.strip()
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = numbers.isna() & text.notna() & text.ne("")
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise CatalogError(f"{_where(where, first_line, position)}: column {column}: "
                           f"{text.iloc[position]!r} is not a number")
    return numbers


def _validated(frame: pd.DataFrame, where: str, first_line: int | None = None) -> pd.DataFrame:
    """The frame in catalogue dtypes, or a CatalogError naming the first bad cell."""
    missing = [c for c in CATALOG_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(f"{where}: missing columns {', '.join(missing)}; a catalogue has the columns "
                           f"{', '.join(CATALOG_COLUMNS)}")
    out = frame[list(CATALOG_COLUMNS)].reset_index(drop=True).copy()
    for column in _STRINGS:
        out[column] = out[column].astype("string").str.strip().replace("", pd.NA)
    for column in (*_FLOATS, "gpu_count"):
        out[column] = _numeric(out[column], column, where, first_line)
    out["cloud"] = out["cloud"].str.lower()
    for column in _REQUIRED:
        empty = out[column].isna()
        if empty.any():
            position = int(np.flatnonzero(empty.to_numpy())[0])
            raise CatalogError(f"{_where(where, first_line, position)}: column {column} is empty")
    money = out[["gpu_memory_gb", "on_demand_usd_per_hour", "spot_usd_per_hour", "vcpus", "memory_gb"]]
    bad = ((money < 0) | np.isinf(money)).to_numpy()
    if bad.any():
        position, col = (int(i[0]) for i in np.nonzero(bad))
        raise CatalogError(f"{_where(where, first_line, position)}: column {money.columns[col]}: "
                           f"{float(money.iat[position, col]):g} is not allowed; must be a finite number >= 0")
    count = out["gpu_count"]
    bad_count = (count < 1) | (count != np.floor(count))
    if bad_count.any():
        position = int(np.flatnonzero(bad_count.to_numpy())[0])
        raise CatalogError(f"{_where(where, first_line, position)}: column gpu_count: {float(count.iloc[position]):g} "
                           "is not allowed; must be a whole number >= 1")
    dates = out["price_date"]
    bad_date = dates.notna() & ~dates.str.fullmatch(_DATE.pattern).fillna(False).astype(bool)
    if bad_date.any():
        position = int(np.flatnonzero(bad_date.to_numpy())[0])
        raise CatalogError(f"{_where(where, first_line, position)}: column price_date: {dates.iloc[position]!r} "
                           "is not a date like 2026-12-02")
    out = _typed(out)
    duplicated = out.duplicated(list(CATALOG_KEY), keep=False)
    if duplicated.any():
        positions = np.flatnonzero(duplicated.to_numpy())[:2]
        key = ", ".join(f"{c}={out.at[int(positions[0]), c]}" for c in CATALOG_KEY)
        raise CatalogError(f"{_where(where, first_line, int(positions[0]))}: the key ({key}) appears again at "
                           f"{_where('', first_line, int(positions[1])).lstrip(', ')}; one row per "
                           f"{', '.join(CATALOG_KEY)}")
    return out


# ---------------------------------------------------------------------------------------------
# SkyPilot format


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    return frame[column].astype("string").str.strip().replace("", pd.NA)


def _gpu_memory_mib(frame: pd.DataFrame, where: str) -> pd.Series:
    """Per-GPU memory in MiB: AWS's reduced GpuMemoryMiBPerGpu column, else the first SizeInMiB of
    the GpuInfo text (per GPU in SkyPilot's layout; TotalGpuMemoryInMiB does not match it)."""
    memory = pd.Series(np.nan, index=frame.index, dtype="float64")
    if "GpuMemoryMiBPerGpu" in frame.columns:
        memory = _numeric(frame["GpuMemoryMiBPerGpu"], "GpuMemoryMiBPerGpu", where, 2)
    if "GpuInfo" in frame.columns:
        parsed = _text(frame, "GpuInfo").str.extract(r"SizeInMiB['\"]?\s*:\s*(\d+(?:\.\d+)?)", expand=False)
        memory = memory.fillna(pd.to_numeric(parsed, errors="coerce").astype("float64"))
    return memory


def _gcp_host_accelerators(hosts: pd.Series) -> pd.DataFrame:
    """(InstanceType, AcceleratorName, AcceleratorCount) of each GCP host type that carries GPUs."""
    rows = []
    for host in hosts.dropna().unique().tolist():  # a few dozen machine types, not rows
        for pattern, accelerator in _GCP_FIXED_GPUS:
            match = pattern.match(host)
            if match:
                rows.append((host, accelerator, float(match.group(1))))
                break
        else:
            g2 = _GCP_G2.match(host)
            if g2 and int(g2.group(1)) in _GCP_G2_L4_COUNT:
                rows.append((host, "L4", float(_GCP_G2_L4_COUNT[int(g2.group(1))])))
    for count, host in _GCP_N1_HOST_FOR_COUNT.items():
        rows.extend((host, gpu, float(count)) for gpu in _GCP_N1_GPUS)
    return pd.DataFrame(rows, columns=["InstanceType", "AcceleratorName", "AcceleratorCount"]).astype(
        {"InstanceType": "string", "AcceleratorName": "string", "AcceleratorCount": "float64"})


def _gcp_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """GCP: a GPU VM's price is its host row plus the GPU row of the same zone (region when the
    file has no zones); spot likewise, empty when either side has no spot offer."""
    place = "AvailabilityZone" if rows["AvailabilityZone"].notna().any() else "Region"
    is_gpu = rows["InstanceType"].isna() & rows["AcceleratorName"].notna()
    hosts = rows[rows["InstanceType"].notna()]
    gpus = rows[is_gpu]
    pairs = _gcp_host_accelerators(hosts["InstanceType"])
    # a host row that names its own accelerator pairs with that (a full SkyPilot GCP file does so)
    own = hosts.loc[hosts["AcceleratorName"].notna() & ~hosts["InstanceType"].isin(pairs["InstanceType"]),
                    ["InstanceType", "AcceleratorName", "AcceleratorCount"]].drop_duplicates()
    pairs = pd.concat([pairs, own.astype(pairs.dtypes.to_dict())], ignore_index=True)
    hosts = hosts.drop(columns=["AcceleratorName", "AcceleratorCount", "gpu_memory_mib"]).merge(
        pairs, on="InstanceType", how="inner")
    gpu_side = gpus[[place, "AcceleratorName", "AcceleratorCount", "gpu_memory_mib", "Price", "SpotPrice"]]
    merged = hosts.merge(gpu_side, on=[place, "AcceleratorName", "AcceleratorCount"], how="inner",
                         suffixes=("", "_gpu"))
    # rounded to 8 decimals (the lists give at most 6): 0.16163 + 0.65681 is 0.8184400000000001 in binary
    merged["Price"] = (merged["Price"] + merged["Price_gpu"]).round(_PRICE_DECIMALS)
    merged["SpotPrice"] = (merged["SpotPrice"] + merged["SpotPrice_gpu"]).round(_PRICE_DECIMALS)  # NaN if either is
    return merged.drop(columns=["Price_gpu", "SpotPrice_gpu"])


def from_skypilot(frame: pd.DataFrame, cloud: str, source: str, price_date: str) -> pd.DataFrame:
    """Convert a catalogue in SkyPilot's layout (one cloud) to the ftops catalogue.

    - A row without Price is no on-demand offer there and is dropped; a row without SpotPrice is
      kept with an empty spot price.
    - Per-zone rows (AvailabilityZone) become one row per region: on-demand is the same in every
      zone of a region in the providers' lists (the lowest is kept should one differ), spot is the
      lowest zone's price among the zones with an on-demand offer (what a launcher that may pick the
      zone pays).
    - GCP (cloud "gcp"): host VM row + GPU row of the same zone, paired by machine family (see
      `_GCP_FIXED_GPUS` and `_GCP_N1_HOST_FOR_COUNT`); GPU rows without a host row in that zone, and
      host rows of families without GPUs, give no row. Elsewhere, rows without an InstanceType or
      an AcceleratorName are not GPU instances and are skipped.
    - gpu_model is SkyPilot's AcceleratorName (GCP's H100-MEGA is an H100); accelerators without a
      datasheet row (TPUs, AMD, M60, P4, P100, ...) and fractional GPUs (Azure's vGPU slices) are
      skipped: the skipped names and row counts are in `.attrs["skipped_accelerators"]`.
    - gpu_memory_gb (per GPU): the nominal memory of the GPU model's datasheet, as people ask for it
      (AWS lists an A10G or L4 at the 22,888 MiB the driver leaves usable, and `--gpu-memory-gb 24`
      must still find them); the source's GpuMemoryMiBPerGpu or GpuInfo SizeInMiB / 1024 only for a
      model without a datasheet figure.

    Errors name the `source` and the line (counted as in a CSV file with one header line).
    """
    cloud_name = str(cloud).strip().lower()
    if not cloud_name:
        raise CatalogError(f"{source}: the cloud is empty")
    if not _DATE.match(str(price_date)):
        raise CatalogError(f"{source}: price date {price_date!r} is not a date like 2026-12-02")
    required = ("InstanceType", "AcceleratorName", "AcceleratorCount", "Price", "Region")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CatalogError(f"{source}: missing columns {', '.join(missing)}; a SkyPilot catalogue has "
                           "InstanceType, AcceleratorName, AcceleratorCount, vCPUs, MemoryGiB, Price, SpotPrice, "
                           "Region[, AvailabilityZone]")
    frame = frame.reset_index(drop=True)
    rows = pd.DataFrame({
        "InstanceType": _text(frame, "InstanceType"),
        "AcceleratorName": _text(frame, "AcceleratorName"),
        "AcceleratorCount": _numeric(frame["AcceleratorCount"], "AcceleratorCount", source, 2),
        "vCPUs": (_numeric(frame["vCPUs"], "vCPUs", source, 2) if "vCPUs" in frame.columns
                  else pd.Series(np.nan, index=frame.index)),
        "MemoryGiB": (_numeric(frame["MemoryGiB"], "MemoryGiB", source, 2) if "MemoryGiB" in frame.columns
                      else pd.Series(np.nan, index=frame.index)),
        "gpu_memory_mib": _gpu_memory_mib(frame, source),
        "Price": _numeric(frame["Price"], "Price", source, 2),
        "SpotPrice": (_numeric(frame["SpotPrice"], "SpotPrice", source, 2) if "SpotPrice" in frame.columns
                      else pd.Series(np.nan, index=frame.index)),
        "Region": _text(frame, "Region"),
        "AvailabilityZone": _text(frame, "AvailabilityZone"),
    })
    prices = rows[["Price", "SpotPrice"]]
    negative = (prices < 0).any(axis=1)
    if negative.any():
        position = int(np.flatnonzero(negative.to_numpy())[0])
        raise CatalogError(f"{source}, line {position + 2}: a negative price "
                           f"({prices.iloc[position].to_dict()}); prices are USD per hour >= 0")
    no_region = rows["Region"].isna() & rows["Price"].notna()
    if no_region.any():
        position = int(np.flatnonzero(no_region.to_numpy())[0])
        raise CatalogError(f"{source}, line {position + 2}: column Region is empty")

    if cloud_name == "gcp":
        rows = _gcp_pairs(rows)
    else:
        rows = rows[rows["InstanceType"].notna() & rows["AcceleratorName"].notna()]
    rows = rows[rows["Price"].notna()]

    names = rows["AcceleratorName"].replace(_SKYPILOT_ALIASES)
    model = canonical_gpu_models(names)
    sheets = datasheets()
    count = rows["AcceleratorCount"]
    whole = count.notna() & (count >= 1) & (count == np.floor(count))
    known = model.isin(sheets.index).fillna(False).astype(bool) & whole
    skipped = rows.loc[~known, "AcceleratorName"].fillna("<none>")
    skipped_counts = {str(k): int(v) for k, v in skipped.value_counts().sort_index().items()}
    rows = rows[known].assign(gpu_model=model[known])

    memory_gb = rows["gpu_model"].map(sheets["memory_gb"]).astype("float64")
    memory_gb = memory_gb.fillna((rows["gpu_memory_mib"] / 1024).round(2))
    long = pd.DataFrame({
        "cloud": cloud_name,
        "region": rows["Region"],
        "instance_type": rows["InstanceType"],
        "gpu_model": rows["gpu_model"],
        "gpu_count": rows["AcceleratorCount"].astype("int64"),
        "gpu_memory_gb": memory_gb,
        "vcpus": rows["vCPUs"],
        "memory_gb": rows["MemoryGiB"],
        "on_demand_usd_per_hour": rows["Price"],
        "spot_usd_per_hour": rows["SpotPrice"],
    })
    if long.empty:
        out = empty_catalog()
    else:
        out = long.groupby(list(CATALOG_KEY), sort=True).agg(
            gpu_memory_gb=("gpu_memory_gb", "max"),
            vcpus=("vcpus", "max"),
            memory_gb=("memory_gb", "max"),
            on_demand_usd_per_hour=("on_demand_usd_per_hour", "min"),
            spot_usd_per_hour=("spot_usd_per_hour", "min"),  # skips zones without a spot offer
        ).reset_index()
        out["source"] = source
        out["price_date"] = str(price_date)
        out = _validated(out, source)
    out.attrs["skipped_accelerators"] = skipped_counts
    return out


def cloud_from_file_name(path: str | os.PathLike[str]) -> str | None:
    """aws, gcp or azure when exactly one of them is in the file name, else None."""
    name = Path(path).name.lower()
    found = [c for c in _CLOUDS_IN_NAMES if c in name]
    return found[0] if len(found) == 1 else None


def read_skypilot_csv(path: str | os.PathLike[str], cloud: str | None = None, *, source: str | None = None,
                      price_date: str | None = None) -> pd.DataFrame:
    """Read and convert one SkyPilot-format CSV (see `from_skypilot`).

    `cloud` defaults to the aws/gcp/azure in the file name; without either, a CatalogError says to
    name it. `source` defaults to the file name, `price_date` to today (UTC).
    """
    path = Path(path)
    cloud_name = (cloud or "").strip().lower() or cloud_from_file_name(path)
    if not cloud_name:
        raise CatalogError(f"{path}: cannot tell the cloud from the file name (no aws, gcp or azure in it); "
                           "name it (--cloud aws|gcp|azure|...)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise CatalogError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(f"{path}: not a readable CSV file: {first}") from None
    date = price_date or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return from_skypilot(frame, cloud_name, source or path.name, date)


# ---------------------------------------------------------------------------------------------
# the ftops format


def read_catalog(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a catalogue file in the ftops format (what `write_catalog` writes).

    It starts with `#` comment lines, one of them `# schema_version: 1`; a missing or unknown schema
    version, missing columns or a bad cell is a CatalogError naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not a UTF-8 text file") from None
    lines = text.splitlines(keepends=True)
    n_comments = 0
    version = None
    for line in lines:
        if not line.startswith("#"):
            break
        n_comments += 1
        match = _SCHEMA_LINE.match(line.strip())
        if match:
            version = match.group(1)
    if version is None:
        raise CatalogError(f"{path}: no '# schema_version: {CATALOG_SCHEMA_VERSION}' line at the top: not an ftops "
                           "catalogue (convert a SkyPilot catalogue with `ftops catalog import`)")
    if version != str(CATALOG_SCHEMA_VERSION):
        raise CatalogError(f"{path}: schema_version {version} is not supported; this ftops reads schema_version "
                           f"{CATALOG_SCHEMA_VERSION}")
    body = "".join(lines[n_comments:])
    if not body.strip():
        raise CatalogError(f"{path}: no header row after the comment lines")
    try:
        frame = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as exc:
        raise CatalogError(f"{path}: not a readable CSV body: {str(exc).strip().splitlines()[0]}") from None
    # data row 0 is on the line after the comments and the header
    return _validated(frame, str(path), first_line=n_comments + 2)


def write_catalog(frame: pd.DataFrame, path: str | os.PathLike[str], comments: Sequence[str] = ()) -> None:
    """Write `frame` in the ftops format: `# ftops instance catalogue`, `# schema_version: 1`, the
    extra `comments` (one `# ` line each), then the CSV. Replaces the file in one step."""
    out = _validated(frame, "catalogue to write").sort_values(list(CATALOG_KEY), kind="stable")
    header = [CATALOG_TITLE, f"schema_version: {CATALOG_SCHEMA_VERSION}", *comments]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        for line in header:
            for part in str(line).splitlines() or [""]:
                handle.write(f"# {part}\n".replace("# \n", "#\n"))
        out.to_csv(handle, index=False, lineterminator="\n")
    os.replace(tmp, path)


@functools.lru_cache(maxsize=1)
def _bundled() -> pd.DataFrame:
    ref = resources.files("ftops") / "data" / "instance_catalog.csv"
    with resources.as_file(ref) as path:
        return read_catalog(path)


def bundled_catalog() -> pd.DataFrame:
    """The snapshot shipped with ftops (ftops/data/instance_catalog.csv); the caller gets a copy."""
    return _bundled().copy()


def _policy_rows(policy: Policy) -> pd.DataFrame:
    rows = [dataclasses.asdict(row) for row in policy.optimization.catalog]
    if not rows:
        return empty_catalog()
    frame = pd.DataFrame(rows)
    given = frame["gpu_model"].astype("string")
    # "NVIDIA A100-SXM4-80GB" and "a100-80gb" are both A100-80GB; a name ftops does not know is
    # kept as written (the user's row is the only source of it)
    frame["gpu_model"] = canonical_gpu_models(given, frame["gpu_memory_gb"]).fillna(given)
    frame["source"] = "ftops.yaml"
    frame["price_date"] = pd.NA
    return _validated(frame, "ftops.yaml optimization.catalog")


def combined_catalog(policy: Policy, folder: str | os.PathLike[str] | None) -> pd.DataFrame:
    """The catalogue ftops prices with: bundled rows, then every `*.csv` in `folder` (files written by
    `ftops catalog import`, in name order), then `policy.optimization.catalog` (source "ftops.yaml");
    a later row replaces an earlier one with the same (cloud, region, instance_type, gpu_model,
    gpu_count). Finally `policy.prices` set on-demand and spot (empty when the policy gives none) of
    every row of their instance type, source "ftops.yaml prices". An instance type that is in
    `prices` but in no catalogue row gets no row: the policy says what it costs, not where it runs
    or what GPUs it has. A missing folder adds nothing (no catalogue has been imported yet).
    """
    frames = [bundled_catalog()]
    if folder is not None and Path(folder).is_dir():
        frames.extend(read_catalog(path) for path in sorted(Path(folder).glob("*.csv")))
    frames.append(_policy_rows(policy))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_catalog()
    combined = pd.concat(frames, ignore_index=True)
    combined = combined.drop_duplicates(list(CATALOG_KEY), keep="last")
    if policy.prices:
        table = pd.DataFrame(
            {"on_demand": [p.on_demand_usd_per_hour for p in policy.prices.values()],
             "spot": [np.nan if p.spot_usd_per_hour is None else p.spot_usd_per_hour
                      for p in policy.prices.values()]},
            index=pd.Index(list(policy.prices), dtype="string"), dtype="float64")
        hit = combined["instance_type"].isin(table.index).fillna(False).astype(bool)
        itype = combined.loc[hit, "instance_type"]
        combined.loc[hit, "on_demand_usd_per_hour"] = itype.map(table["on_demand"]).astype("float64").to_numpy()
        combined.loc[hit, "spot_usd_per_hour"] = itype.map(table["spot"]).astype("float64").to_numpy()
        combined.loc[hit, "source"] = "ftops.yaml prices"
        combined.loc[hit, "price_date"] = pd.NA
    return _typed(combined.sort_values(list(CATALOG_KEY), kind="stable"))


# ---------------------------------------------------------------------------------------------
# look-ups


def gpus_per_instance(catalog: pd.DataFrame) -> dict[str, int]:
    """instance_type -> GPUs per instance. A host that the catalogue lists with several GPU counts
    (GCP N1 with attachable GPUs) is left out: its count depends on what was attached."""
    counts = catalog.groupby("instance_type", sort=True)["gpu_count"].agg(["nunique", "first"])
    fixed = counts[counts["nunique"] == 1]["first"]
    return {str(k): int(v) for k, v in fixed.items()}


def catalog_prices(catalog: pd.DataFrame, cloud: pd.Series, region: pd.Series,
                   instance_type: pd.Series) -> pd.DataFrame:
    """Catalogue prices for rows of (cloud, region, instance_type), aligned to `instance_type`'s index.

    Columns on_demand_usd_per_hour, spot_usd_per_hour and basis: "region" where the catalogue has
    the instance type in that cloud and region; else "median over regions" (the median of the
    instance type's prices over every region that lists it: a job whose region is unknown or not
    listed is still costed at a typical price); NA where the catalogue does not know the type.
    """
    index = instance_type.index
    keys = pd.DataFrame({
        "cloud": cloud.astype("string").str.strip().str.lower().to_numpy(),
        "region": region.astype("string").str.strip().to_numpy(),
        "instance_type": instance_type.astype("string").str.strip().to_numpy(),
    })
    price_cols = ["on_demand_usd_per_hour", "spot_usd_per_hour"]
    exact = catalog.groupby(["cloud", "region", "instance_type"], sort=False)[price_cols].median().reset_index()
    found = keys.merge(exact, on=["cloud", "region", "instance_type"], how="left")
    typical = catalog.groupby("instance_type", sort=False)[price_cols].median()
    at_exact = found["on_demand_usd_per_hour"].notna()
    fallback = typical.reindex(keys["instance_type"].to_numpy())
    out = pd.DataFrame(index=keys.index)
    for column in price_cols:
        out[column] = found[column].where(at_exact, fallback[column].to_numpy()).astype("float64")
    basis = pd.Series(pd.NA, index=keys.index, dtype="string")
    basis = basis.mask(out["on_demand_usd_per_hour"].notna(), "median over regions").mask(at_exact, "region")
    out["basis"] = basis
    return out.set_axis(index)
