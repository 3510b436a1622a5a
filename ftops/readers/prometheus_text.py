"""Prometheus text exposition (`*.prom`, `*.metrics`) -> `metric_samples`.

Exporters name and scale GPU metrics their own way; this module owns the mapping onto the
canonical names and units of schemas.METRIC_UNITS, including the conversions a plain alias
table cannot express (0-1 ratios to percent, MiB/bytes pairs to a capacity ratio, mW to W).
`prometheus_api` reuses the same mapping for `query_range` results, so a series means the same
thing whether it came from a scrape file or from a Prometheus server.

Supported exporters:
- NVIDIA dcgm-exporter (`DCGM_FI_*`, and the 1.x `dcgm_*` compatibility names);
- utkuozdemir/nvidia_gpu_exporter (`nvidia_smi_*`);
- mindprince/nvidia_gpu_prometheus_exporter (`nvidia_gpu_*`);
- node_exporter host memory (`node_memory_MemAvailable_bytes` / `node_memory_MemTotal_bytes`);
- the ftops agent, which exposes canonical names with the prefix `ftops_`.
Every other series is not something ftops tracks and is skipped without a rejection.

The parse is a vectorised regex over lines rather than prometheus_client's parser: that parser
stops at the first bad line and does not report line numbers, while a rejection here must name
its line and the rest of the file must still be read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ftops.readers.base import ReadResult, rejected_file, rejected_rows
from ftops.readers.samples import finish_samples
from ftops.schemas import METRIC_SAMPLES, METRICS, REJECTED_RECORDS

TABLE = METRIC_SAMPLES.name
FTOPS_PREFIX = "ftops_"


@dataclass(frozen=True)
class Direct:
    """An exporter series that is one canonical metric after multiplying by `scale`.

    Among several series that give the same metric for the same GPU and time, the lowest
    `priority` wins and the others are skipped (they are fallbacks, not duplicates).
    """

    metric: str
    scale: float = 1.0
    priority: int = 0


@dataclass(frozen=True)
class Part:
    """One operand of a derived capacity ratio: `family` groups the operands that belong together."""

    family: str
    role: str  # used | free | total | available
    metric: str  # the canonical ratio this operand contributes to


DIRECT: dict[str, Direct] = {
    # dcgm-exporter: DEV_* utilisations are already percent.
    "DCGM_FI_DEV_GPU_UTIL": Direct("gpu_utilization_pct"),
    # PROF_* fields are 0-1 ratios. GR_ENGINE_ACTIVE is the profiling-level equivalent of GPU_UTIL
    # and only stands in when GPU_UTIL is absent (e.g. MIG, where GPU_UTIL is not reported).
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": Direct("gpu_utilization_pct", 100.0, 1),
    "DCGM_FI_DEV_MEM_COPY_UTIL": Direct("gpu_memory_copy_util_pct"),
    "DCGM_FI_PROF_DRAM_ACTIVE": Direct("gpu_memory_copy_util_pct", 100.0, 1),
    "DCGM_FI_DEV_POWER_USAGE": Direct("gpu_power_watts"),
    "DCGM_FI_DEV_POWER_USAGE_INSTANT": Direct("gpu_power_watts", 1.0, 1),
    "DCGM_FI_DEV_GPU_TEMP": Direct("gpu_temperature_c"),
    # dcgm-exporter 1.x compatibility names (same units as the DEV_* fields).
    "dcgm_gpu_utilization": Direct("gpu_utilization_pct"),
    "dcgm_mem_copy_utilization": Direct("gpu_memory_copy_util_pct"),
    "dcgm_power_usage": Direct("gpu_power_watts"),
    "dcgm_gpu_temp": Direct("gpu_temperature_c"),
    # nvidia_gpu_exporter: utilisations are exported as 0-1 ratios.
    "nvidia_smi_utilization_gpu_ratio": Direct("gpu_utilization_pct", 100.0),
    "nvidia_smi_utilization_memory_ratio": Direct("gpu_memory_copy_util_pct", 100.0),
    "nvidia_smi_power_draw_watts": Direct("gpu_power_watts"),
    "nvidia_smi_power_draw_average_watts": Direct("gpu_power_watts", 1.0, 1),
    "nvidia_smi_power_draw_instant_watts": Direct("gpu_power_watts", 1.0, 2),
    "nvidia_smi_temperature_gpu": Direct("gpu_temperature_c"),
    # nvidia_gpu_prometheus_exporter (mindprince): duty cycle is percent, power is milliwatts.
    "nvidia_gpu_duty_cycle": Direct("gpu_utilization_pct"),
    "nvidia_gpu_power_usage_milliwatts": Direct("gpu_power_watts", 0.001),
    "nvidia_gpu_temperature_celsius": Direct("gpu_temperature_c"),
    # The ftops agent exposes canonical names and units.
    **{FTOPS_PREFIX + m: Direct(m) for m in METRICS},
}

PARTS: dict[str, Part] = {
    # Capacity, not bandwidth: FB_USED / (FB_USED + FB_FREE) as docs/architecture.md §4 defines it
    # (FB_RESERVED is left out on purpose, so the ratio reads as "share of usable memory").
    "DCGM_FI_DEV_FB_USED": Part("dcgm_fb", "used", "gpu_memory_used_ratio"),
    "DCGM_FI_DEV_FB_FREE": Part("dcgm_fb", "free", "gpu_memory_used_ratio"),
    "dcgm_fb_used": Part("dcgm1_fb", "used", "gpu_memory_used_ratio"),
    "dcgm_fb_free": Part("dcgm1_fb", "free", "gpu_memory_used_ratio"),
    "nvidia_smi_memory_used_bytes": Part("nvidia_smi_memory", "used", "gpu_memory_used_ratio"),
    "nvidia_smi_memory_total_bytes": Part("nvidia_smi_memory", "total", "gpu_memory_used_ratio"),
    "nvidia_smi_memory_free_bytes": Part("nvidia_smi_memory", "free", "gpu_memory_used_ratio"),
    "nvidia_gpu_memory_used_bytes": Part("nvidia_gpu_memory", "used", "gpu_memory_used_ratio"),
    "nvidia_gpu_memory_total_bytes": Part("nvidia_gpu_memory", "total", "gpu_memory_used_ratio"),
    "node_memory_MemAvailable_bytes": Part("node_memory", "available", "host_memory_used_ratio"),
    "node_memory_MemTotal_bytes": Part("node_memory", "total", "host_memory_used_ratio"),
}

_DIRECT_METRIC = {k: v.metric for k, v in DIRECT.items()}
_DIRECT_SCALE = {k: v.scale for k, v in DIRECT.items()}
_DIRECT_PRIORITY = {k: v.priority for k, v in DIRECT.items()}
_PART_FAMILY = {k: v.family for k, v in PARTS.items()}
_PART_ROLE = {k: v.role for k, v in PARTS.items()}
_PART_METRIC = {k: v.metric for k, v in PARTS.items()}

# nvidia_gpu_exporter labels its series only with the GPU UUID; these two series carry the
# UUID -> index link, so samples can be keyed by GPU index like every other exporter's.
INDEX_SERIES = ("nvidia_smi_index", "nvidia_smi_gpu_info")

# Where the job comes from, most specific first. `exported_pod` before `pod`: when Prometheus
# scrapes dcgm-exporter through a ServiceMonitor it sets `pod` to the exporter's own pod and
# renames the workload's pod label to `exported_pod`.
JOB_LABELS: tuple[str, ...] = ("job_id", "exported_pod", "pod")
# `instance` is Prometheus's target address, a last resort behind the labels exporters set.
HOST_LABELS: tuple[str, ...] = ("host", "Hostname", "hostname", "node", "instance")
# A GPU index when the exporter gives one, else its UUID.
DEVICE_LABELS: tuple[str, ...] = ("gpu", "minor_number")
UUID_LABELS: tuple[str, ...] = ("UUID", "uuid")


def is_mapped(names: pd.Series) -> pd.Series:
    """Which series names this module turns into samples or uses to build them."""
    return names.isin(DIRECT.keys()) | names.isin(PARTS.keys()) | names.isin(INDEX_SERIES)


def _first_present(labels: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Row-wise first non-empty value among `columns` (an empty label means absent in Prometheus)."""
    out = pd.Series(pd.NA, index=labels.index, dtype="string")
    for column in reversed(columns):
        if column in labels:
            values = labels[column].astype("string")
            out = values.where(values.notna() & (values != ""), out)
    return out


def _strip_port(instance: pd.Series) -> pd.Series:
    # "10.0.0.7:9400" -> "10.0.0.7", "[fe80::1]:9400" -> "fe80::1"
    return instance.str.replace(r"^\[?(.*?)\]?:\d+$", r"\1", regex=True)


def _index_lookup(names: pd.Series, values: pd.Series, labels: pd.DataFrame, host: pd.Series,
                  uuid: pd.Series) -> pd.DataFrame:
    """(host, uuid) -> GPU index from nvidia_smi_index values and nvidia_smi_gpu_info labels."""
    from_value = names == "nvidia_smi_index"
    idx_value = values.where(from_value & np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan)))
    index = pd.Series(pd.NA, index=names.index, dtype="string")
    index = index.mask(idx_value.notna(), idx_value.round().astype("Int64").astype("string"))
    if "index" in labels:
        info_index = labels["index"].astype("string")
        index = index.mask((names == "nvidia_smi_gpu_info") & info_index.notna() & (info_index != ""), info_index)
    links = pd.DataFrame({"host": host, "uuid": uuid, "index": index})
    links = links[links["uuid"].notna() & links["index"].notna()].drop_duplicates()
    # One UUID with two indexes (masked UUIDs on a multi-GPU host) cannot be resolved: keep the UUID.
    ambiguous = links.duplicated(["host", "uuid"], keep=False)
    return links[~ambiguous]


def exporter_samples(
    names: pd.Series,
    values: pd.Series,
    ts: pd.Series,
    labels: pd.DataFrame,
    *,
    record: pd.Series,
    raw: pd.Series,
    source: str,
    job_id: str | None,
    job_labels: Sequence[str] = JOB_LABELS,
    metric_override: str | None = None,
) -> ReadResult:
    """Exporter series samples -> canonical `metric_samples` with units converted.

    All inputs share one index, one row per exporter sample: `names` the series name, `values`
    float64, `ts` UTC timestamps (NaT where unknown), `labels` one column per label name,
    `record` where the sample came from (line number, JSON path) and `raw` its original text.
    Rows whose name is not mapped are skipped. With `metric_override` every row is taken as that
    canonical metric unchanged (expression queries whose result has no series name).
    """
    names = names.astype("string")
    values = values.astype("float64")
    host = _first_present(labels, HOST_LABELS[:-1])
    if "instance" in labels:
        host = host.fillna(_strip_port(_first_present(labels, ["instance"])))
    uuid = _first_present(labels, UUID_LABELS)
    job = _first_present(labels, list(job_labels))
    if job_id is not None:
        job = job.fillna(job_id)

    lookup = _index_lookup(names, values, labels, host, uuid)
    keys = pd.DataFrame({"host": host, "uuid": uuid})
    looked_up = keys.merge(lookup, on=["host", "uuid"], how="left")["index"].set_axis(names.index)
    device = _first_present(labels, DEVICE_LABELS).fillna(looked_up.astype("string"))
    if "GPU_I_ID" in labels:
        # dcgm-exporter reports each MIG instance under its parent's `gpu` index: keep them apart.
        gi = labels["GPU_I_ID"].astype("string")
        device = device.where(gi.isna() | (gi == "") | device.isna(), device + ":mig" + gi)
    device = device.fillna(uuid).fillna(_first_present(labels, ["device"]))
    if metric_override is None:
        is_ftops = names.str.startswith(FTOPS_PREFIX).fillna(False)
        own_device = _first_present(labels, ["device"])
        device = device.where(~is_ftops, own_device)

    frame = pd.DataFrame(
        {"name": names, "value": values, "ts": ts, "job_id": job, "host": host, "device": device,
         "record": record.astype("string"), "raw": raw.astype("string")}
    )
    if metric_override is not None:
        direct = frame.assign(metric=metric_override, scale=1.0, priority=0)
        derived, incomplete = None, REJECTED_RECORDS.empty()
    else:
        direct = frame[names.isin(DIRECT.keys()).to_numpy()]
        direct = direct.assign(
            metric=direct["name"].map(_DIRECT_METRIC).astype("string"),
            scale=direct["name"].map(_DIRECT_SCALE).astype("float64"),
            priority=direct["name"].map(_DIRECT_PRIORITY).astype("int64"),
        )
        derived, incomplete = _ratios(frame[names.isin(PARTS.keys()).to_numpy()], source)
    direct, fallbacks = _best_priority(direct)
    direct = direct.assign(value=direct["value"] * direct["scale"])

    pieces = [f[_LONG] for f in (direct, derived) if f is not None and not f.empty]
    long = pd.concat(pieces, ignore_index=True) if pieces else _empty_long()
    # repeats of one sample key (a scrape pasted twice) are judged in finish_samples, as in every reader
    result = finish_samples(
        long.drop(columns="record").rename(columns={"raw": "exposition"}), source=source,
        record=long["record"],
    )
    rejected = [r for r in (incomplete, result.rejected) if not r.empty]
    # a used/free pair is two records and one sample: count the records each output names
    named = pd.concat([long["record"], fallbacks["record"], incomplete["record"]], ignore_index=True)
    records = int(named.astype("string").str.split("+").explode().nunique())
    return ReadResult(
        TABLE, result.accepted, pd.concat(rejected, ignore_index=True) if rejected else REJECTED_RECORDS.empty(),
        duplicates=result.duplicates,
    ).with_records(records, len(fallbacks))


_LONG = ["ts", "job_id", "metric", "value", "device", "host", "record", "raw"]
_GROUP = ["job_id", "host", "device", "ts"]


def _empty_long() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in _LONG})


def _best_priority(direct: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The samples of the best series per metric, GPU and time, and the fallback samples skipped."""
    if direct.empty:
        return direct, direct
    best = direct.groupby(_GROUP + ["metric"], dropna=False)["priority"].transform("min")
    keep = (direct["priority"] == best).to_numpy()
    return direct[keep], direct[~keep]


def _ratios(parts: pd.DataFrame, source: str) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Derived capacity ratios from the used/free/total operands of one GPU (or host) and time."""
    if parts.empty:
        return None, REJECTED_RECORDS.empty()
    names = parts["name"]
    # Null keys get a sentinel: groupby and unstack must not drop samples whose device or host is unknown.
    keyed = pd.DataFrame(
        {
            "family": names.map(_PART_FAMILY), "metric": names.map(_PART_METRIC), "role": names.map(_PART_ROLE),
            **{c: parts[c].astype("string").fillna(_NULL) for c in ("job_id", "host", "device")},
            "ts_key": pd.DatetimeIndex(parts["ts"]).asi8,  # NaT is a distinct integer: nothing dropped
            "ts": parts["ts"], "value": parts["value"], "record": parts["record"], "raw": parts["raw"],
        }
    )
    # A scrape repeated in one file repeats its operands: pair the n-th `used` with the n-th `free`,
    # so the repeat becomes a second ratio that the duplicate check refuses like any other sample.
    keyed["occurrence"] = keyed.groupby(
        ["family", "metric", "job_id", "host", "device", "ts_key", "role"], sort=False
    ).cumcount()
    keys = ["family", "metric", "job_id", "host", "device", "ts_key", "occurrence"]
    by_role = keyed.groupby(keys + ["role"], sort=False)
    roles = ["used", "free", "total", "available"]
    value = by_role["value"].first().unstack("role").reindex(columns=roles)
    record = _join_present(by_role["record"].first().unstack("role").reindex(columns=roles), "+")
    raw = _join_present(by_role["raw"].first().unstack("role").reindex(columns=roles), "\n")
    ts = keyed.groupby(keys, sort=False)["ts"].first().reindex(value.index)

    used = value["used"].fillna(value["total"] - value["available"])
    denominator = value["total"].fillna(value["used"] + value["free"])
    reason = pd.Series(pd.NA, index=value.index, dtype="string")
    reason = reason.mask(denominator == 0, "memory total is 0: capacity ratio undefined")
    reason = reason.mask(
        value["used"].isna() & value["available"].isna(),
        "memory 'used' series missing for this GPU/time: capacity ratio cannot be computed",
    )
    reason = reason.mask(
        value["total"].isna() & value["free"].isna(),
        "memory 'free'/'total' series missing for this GPU/time: capacity ratio cannot be computed",
    )

    flat = value.index.to_frame(index=False)
    for column in ("job_id", "host", "device"):
        flat[column] = flat[column].astype("string").replace(_NULL, pd.NA)
    flat["ts"] = ts.to_numpy()
    flat["value"] = (used / denominator).to_numpy()
    flat["record"] = record.to_numpy()
    flat["raw"] = raw.to_numpy()
    bad = reason.notna().to_numpy()
    rejected = rejected_rows(
        flat.loc[bad, ["family", "job_id", "host", "device", "raw"]].reset_index(drop=True),
        reason[bad].reset_index(drop=True), source=source, table=TABLE,
        record=flat.loc[bad, "record"].reset_index(drop=True),
    )
    return flat.loc[~bad, _LONG], rejected


_NULL = "\x00"


def _join_present(columns: pd.DataFrame, sep: str) -> pd.Series:
    """Row-wise join of the non-null values of string columns, without a per-row Python call."""
    out = pd.Series(pd.NA, index=columns.index, dtype="string")
    for name in columns:
        col = columns[name].astype("string")
        out = out.where(col.isna(), (out + sep + col).fillna(col))
    return out


# --- text exposition parse -------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*\s*=\s*"(?:[^"\\\n]|\\.)*"'
_LABEL_SET = rf"\{{\s*(?:{_LABEL}\s*(?:,\s*{_LABEL}\s*)*,?\s*)?\}}"
_LABEL_PAIR = r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<val>(?:[^"\\\n]|\\.)*)"'
# Loose split first, so each part can be judged on its own and the reason names the bad part.
_LINE = r"^(?P<name>[^\s{]+)\s*(?P<labels>\{.*\})?\s*(?P<value>\S+)?\s*(?P<ts>\S+)?\s*(?P<extra>.*)$"
_NAN_WORDS = ["nan", "+nan", "-nan"]


def _unescape(values: pd.Series) -> pd.Series:
    has_escape = values.str.contains("\\", regex=False).fillna(False)
    if not has_escape.any():
        return values
    fixed = values[has_escape].str.replace(
        r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), regex=True
    )
    return values.mask(has_escape, fixed)


def _load(path_or_text: str | os.PathLike | bytes, source: str | None
          ) -> tuple[str | None, str, str | None, pd.Timestamp | None, str | None]:
    """(text, source, file stem, file mtime, error) — text given inline has no stem or mtime."""
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return path_or_text, source or "<text>", None, None, None
    if isinstance(path_or_text, bytes):
        src, stem, mtime, raw = source or "<bytes>", None, None, path_or_text
    else:
        path = Path(path_or_text)
        src, stem = source or str(path), path.stem
        try:
            raw = path.read_bytes()
            mtime = pd.Timestamp(path.stat().st_mtime_ns, unit="ns", tz="UTC")
        except OSError as exc:
            return None, src, None, None, f"cannot read file: {exc.strerror or exc}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (Prometheus exposition is UTF-8): {exc.reason} at byte {exc.start}"
        return None, src, None, None, reason
    return text, src, stem, mtime, None


def read_prometheus_text(
    path_or_text: str | os.PathLike | bytes,
    job_id: str | None = None,
    scraped_at: pd.Timestamp | None = None,
    *,
    source: str | None = None,
) -> ReadResult:
    """Read a Prometheus text exposition (a file path, or the text itself) into `metric_samples`.

    A str containing a newline is the exposition itself; otherwise it is a path. The job is the
    series' `job_id` label, else its pod (`exported_pod`, `pod`), else `job_id`, else the file stem.
    A sample without its own timestamp (ms) gets `scraped_at`, else the file's modification time.
    Malformed lines are rejected with their line number; series ftops does not track are skipped.
    """
    text, src, stem, mtime, error = _load(path_or_text, source)
    if text is None:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), rejected_file(src, TABLE, error or "unreadable"))
    default_ts = pd.Timestamp(scraped_at) if scraped_at is not None else mtime
    if default_ts is not None and default_ts.tzinfo is None:
        default_ts = default_ts.tz_localize("UTC")
    default_job = job_id if job_id is not None else stem

    lines = pd.Series(text.lstrip("\ufeff").splitlines(), dtype="string")
    lines.index = pd.RangeIndex(1, len(lines) + 1)  # line numbers
    stripped = lines.str.strip()
    lines = lines[(stripped != "") & ~stripped.str.startswith("#")]
    if lines.empty:
        return ReadResult(TABLE, METRIC_SAMPLES.empty(), REJECTED_RECORDS.empty())

    parts = lines.str.strip().str.extract(_LINE)
    name, label_text, value_text, ts_text = parts["name"], parts["labels"], parts["value"], parts["ts"]
    value = pd.to_numeric(value_text, errors="coerce").astype("float64")
    ts_ms = pd.to_numeric(ts_text.where(ts_text.str.fullmatch(r"-?\d+").fillna(False)), errors="coerce")

    reason = pd.Series(pd.NA, index=lines.index, dtype="string")
    reason = reason.mask(parts["extra"].fillna("") != "", "malformed line: unexpected text after the timestamp")
    reason = reason.mask(ts_text.notna() & ts_ms.isna(), "malformed line: timestamp is not integer milliseconds")
    reason = reason.mask(
        value.isna() & ~value_text.str.lower().isin(_NAN_WORDS).fillna(False),
        "malformed line: sample value is not a number",
    )
    reason = reason.mask(label_text.notna() & ~label_text.str.fullmatch(_LABEL_SET).fillna(False),
                         "malformed line: invalid label set")
    reason = reason.mask(~name.str.fullmatch(_NAME).fillna(False), "malformed line: invalid metric name")

    wanted = reason.isna() & is_mapped(name).fillna(False)
    pairs = label_text[wanted & label_text.notna()].str.extractall(_LABEL_PAIR)
    if not pairs.empty:
        pairs = pairs.reset_index(level="match", drop=True).reset_index(names="line")
        repeated = pairs.duplicated(["line", "key"], keep=False)
        reason[pairs.loc[repeated, "line"].unique()] = "malformed line: label name repeated"
        wanted &= reason.isna()
        pairs = pairs[~repeated]
        labels = pairs.pivot(index="line", columns="key", values="val").astype("string")
        labels = labels.apply(_unescape).reindex(lines.index)
    else:
        labels = pd.DataFrame(index=lines.index)

    malformed = reason.notna()
    rejected_lines = rejected_rows(
        pd.DataFrame({"line": lines[malformed]}), reason[malformed], source=src, table=TABLE,
        record="line " + pd.Series(lines.index[malformed].astype(str), index=lines.index[malformed]),
    )

    keep = wanted.to_numpy()
    ts = pd.to_datetime(ts_ms[keep], unit="ms", utc=True, errors="coerce")
    if default_ts is not None:
        ts = ts.fillna(default_ts)
    record = "line " + pd.Series(lines.index[keep].astype(str), index=lines.index[keep])
    result = exporter_samples(
        name[keep], value[keep], ts, labels[keep], record=record, raw=lines[keep], source=src,
        job_id=default_job,
    )
    rejected = [r for r in (rejected_lines, result.rejected) if not r.empty]
    # series ftops does not track (go_*, process_*, other exporters) are skipped on purpose
    untracked = int((reason.isna() & ~wanted).sum())
    return ReadResult(
        TABLE, result.accepted, pd.concat(rejected, ignore_index=True) if rejected else REJECTED_RECORDS.empty(),
        duplicates=result.duplicates,
    ).with_records(len(rejected_lines) + untracked + result.records_accounted, untracked + result.skipped)
