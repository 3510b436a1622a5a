"""GPU datasheet figures and the GPU model vocabulary every ftops table uses.

The vocabulary is SkyPilot's AcceleratorName (H100, A100-80GB, L4, ...): the price catalogues
already speak it, so only names seen elsewhere (nvidia-smi, W&B metadata, DCGM labels such as
"NVIDIA A100-SXM4-80GB" or "Tesla T4") need mapping onto it.
"""

from __future__ import annotations

import functools
import math
import re
from importlib import resources

import pandas as pd

DATASHEET_COLUMNS = ("memory_gb", "dense_bf16_tflops", "memory_bandwidth_gbps", "source")

# Memory that splits the models sold in two sizes under one name: an A100 40GB reports ~39.4 GiB,
# a V100 16GB ~15.8 GiB, so halfway between the two sizes is safe on either side.
_A100_80GB_ABOVE_GB = 60.0
_V100_32GB_ABOVE_GB = 24.0

# Ordered: the first pattern that matches wins, so the longer names come before their prefixes
# (L40S before L4, A100 before A10, H100-MEGA before H100).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), model)
    for pattern, model in (
        (r"\bB200\b", "B200"),
        (r"\bH200\b", "H200"),
        (r"\bH100[- ]?MEGA\b", "H100-MEGA"),
        (r"\bH100\b", "H100"),
        (r"\bA100\b", "A100"),  # size resolved below
        (r"\bV100\b", "V100"),  # size resolved below
        (r"\bL40S\b", "L40S"),
        (r"\bA10G\b", "A10G"),
        (r"\bA10\b", "A10"),
        (r"\bL4\b", "L4"),
        (r"\bT4\b", "T4"),
    )
)
_SIZE = re.compile(r"(\d+)\s*G(?:I?B)?\b")


@functools.lru_cache(maxsize=1)
def _datasheets() -> pd.DataFrame:
    path = resources.files("ftops") / "data" / "gpu_datasheets.csv"
    with path.open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={"gpu_model": "string", "source": "string"})
    missing = [c for c in ("gpu_model", *DATASHEET_COLUMNS) if c not in frame.columns]
    if missing:  # a packaging mistake, not a user error: say which file is broken
        raise ValueError(f"ftops/data/gpu_datasheets.csv: missing columns {missing}")
    frame = frame.astype({"memory_gb": "float64", "dense_bf16_tflops": "float64",
                          "memory_bandwidth_gbps": "float64"})
    return frame.set_index("gpu_model")[list(DATASHEET_COLUMNS)]


def datasheets() -> pd.DataFrame:
    """Per gpu_model (index): memory_gb, dense_bf16_tflops (dense tensor TFLOP/s; FP16 where the GPU
    has no BF16, as the source column says), memory_bandwidth_gbps and the datasheet it came from.

    Read once from the bundled ftops/data/gpu_datasheets.csv; the caller gets its own copy.
    """
    return _datasheets().copy()


@functools.lru_cache(maxsize=1)
def _vocabulary() -> dict[str, str]:
    return {name.upper(): name for name in _datasheets().index}


def canonical_gpu_model(name: str | None, memory_gb: float | None = None) -> str | None:
    """The vocabulary name of a GPU as nvidia-smi, W&B, DCGM or a catalogue spell it; None if unknown.

    "NVIDIA A100-SXM4-80GB" -> "A100-80GB", "Tesla V100-SXM2-16GB" -> "V100", "NVIDIA H100 80GB HBM3"
    -> "H100", "Tesla T4" -> "T4". A vocabulary name is returned as it is (any case). A100 and V100
    come in two memory sizes: the size in the name decides, else `memory_gb` (per GPU) when given,
    else the smaller model (the SkyPilot meaning of a bare "A100" / "V100").
    """
    if name is None or (isinstance(name, float) and math.isnan(name)) or name is pd.NA:
        return None
    text = str(name).strip().upper().replace("_", " ")
    if not text:
        return None
    memory = None if memory_gb is None or pd.isna(memory_gb) else float(memory_gb)
    exact = _vocabulary().get(text)
    if exact is not None and not (memory is not None and exact in ("A100", "V100")):
        return exact
    for pattern, model in _PATTERNS:
        if not pattern.search(text):
            continue
        if model not in ("A100", "V100"):
            return model
        sizes = [int(s) for s in _SIZE.findall(text)]
        large = 80 if model == "A100" else 32
        small = 40 if model == "A100" else 16
        if large in sizes:
            return f"{model}-{large}GB"
        if small in sizes:
            return model
        threshold = _A100_80GB_ABOVE_GB if model == "A100" else _V100_32GB_ABOVE_GB
        return f"{model}-{large}GB" if memory is not None and memory > threshold else model
    return None


def canonical_gpu_models(names: pd.Series, memory_gb: pd.Series | None = None) -> pd.Series:
    """`canonical_gpu_model` over a column ("string" dtype, NA where unknown); each distinct
    (name, memory) pair is resolved once, so a million rows of eight GPU names cost eight calls."""
    keys = pd.DataFrame({"name": names.astype("string").to_numpy()}, index=names.index)
    keys["memory_gb"] = (pd.to_numeric(memory_gb, errors="coerce").to_numpy(dtype="float64")
                         if memory_gb is not None else float("nan"))
    unique = keys.drop_duplicates().reset_index(drop=True)
    unique["model"] = pd.array(
        [canonical_gpu_model(None if pd.isna(n) else n, None if pd.isna(m) else m)
         for n, m in zip(unique["name"].tolist(), unique["memory_gb"].tolist())],
        dtype="string",
    )
    merged = keys.reset_index(drop=True).merge(unique, on=["name", "memory_gb"], how="left")
    return pd.Series(merged["model"].to_numpy(), index=names.index, dtype="string", name=names.name)
