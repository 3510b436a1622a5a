"""Autoscaling advice: which nodes to release, which to hand to a pending job, how many to add.

Advice only: applying it (draining, terminating, launching) is an actuator's job, so every line says
why. Two steps:

1. `node_activity` runs on one shard-day of `metric_samples` at a time (memory stays bounded however
   large the fleet) and keeps, per (host, job), what the advice needs: the last sample, and the GPU
   utilisation over the last `idle_minutes` before the host's last sample in that shard-day.
2. `scaling_advice` takes those rows of every shard (and, near midnight, of the day before too: a
   host appears once per shard-day it reported in), the job registry and the pending placements.

A node is released when all of these hold:

- idle: it reported GPU utilisation in the last `idle_minutes` before its last sample, and the
  largest value stayed under `idle_gpu_utilization_pct` (max, not mean: one busy GPU of eight means
  work is running);
- observed long enough: its first GPU sample is at or before the start of that window, so the window
  is idle data, not a node that just booted and has not started its job yet;
- no job seen on it is running: every job that reported from it has a registry status other than
  `running`. A job the registry does not know could be running, so it keeps the node too. A node
  whose GPUs idle under a running job is not released (that is `gpu_underutilized`'s business);
- still up: its last sample is within 2 x `idle_minutes` of `now`. A node silent for longer is gone
  already, or its agent is; either way there is nothing to release on its evidence.

Merging shards is conservative: each (host, job) row's tail is measured back from the host's last
sample *in its own shard-day*, which may be earlier than the host's last sample overall. Rows whose
last sample falls in the host's overall window count, each with its own tail: that covers the window
and possibly some time before it, so a max can only be higher than the window's own (a release can
be missed, never invented). Rows whose last sample is before the window are jobs that had stopped by
then; their GPU samples say nothing about the window.

A releasable node whose instance type matches a pending placement is reused for that job instead of
released: it is already paid for and up. Match: the same instance type, and the same cloud, region and
pricing where both sides know them (a spot node must not take an on-demand placement, nor one region's
node another region's job). A node's instance type, cloud, region and pricing are those of the job that
reported from it last. Placements take matching nodes in order (instance type, cloud, region, pricing,
job id), nodes in host order, so the advice is the same every time. What reuse does not cover is
added, summed per (instance type, cloud, region, pricing).
"""

from __future__ import annotations

import pandas as pd

from ftops.schemas import utc_timestamp

GPU_METRIC = "gpu_utilization_pct"
# a node silent longer than this many idle windows is not "still up"
STILL_UP_WINDOWS = 2.0

ACTIVITY_COLUMNS = ("host", "job_id", "first_gpu_ts", "last_ts", "host_last_ts", "gpu_samples",
                    "gpu_util_mean_pct", "gpu_util_max_pct", "devices")
ADVICE_COLUMNS = ("action", "instance_type", "cloud", "region", "pricing", "nodes", "hosts", "job_ids", "reason")
ACTIONS = ("reuse", "release", "add")
_PLACEMENT_KEY = ["instance_type", "cloud", "region", "pricing"]


def node_activity(samples: pd.DataFrame, day_end: pd.Timestamp, idle_minutes: float) -> pd.DataFrame:
    """Per (host, job_id) of one shard-day of `metric_samples`: its last sample and its GPU tail.

    Columns (ACTIVITY_COLUMNS): `first_gpu_ts` (its first GPU utilisation sample), `last_ts` (its last
    sample of any metric), `host_last_ts` (the host's last sample in these samples, any job),
    `gpu_samples`, `gpu_util_mean_pct`, `gpu_util_max_pct` and `devices` (distinct GPU devices) over
    the tail: GPU utilisation samples in [host_last_ts - idle_minutes, host_last_ts]. Mean and max are
    NaN when the tail holds no GPU sample.

    Samples at or after `day_end` belong to the next shard-day and are left out. Samples without a
    host cannot be placed on a node and are dropped.
    """
    cols = ["ts", "job_id", "metric", "value", "device", "host"]
    frame = samples[cols]
    keep = frame["host"].notna().to_numpy() & (frame["ts"] < day_end).to_numpy(dtype=bool, na_value=False)
    frame = frame[keep]
    if frame.empty:
        return _empty_activity()
    keys = ["host", "job_id"]
    # only three columns for the all-metric part: millions of rows, so no copy of the rest
    last = frame[["host", "job_id", "ts"]].groupby(keys, sort=False, observed=True)["ts"].max()
    host_last = last.groupby(level="host", sort=False).max()

    gpu = frame[frame["metric"].to_numpy() == GPU_METRIC]
    first_gpu = gpu.groupby(keys, sort=False, observed=True)["ts"].min()
    window_start = gpu["host"].map(host_last) - pd.Timedelta(minutes=idle_minutes)
    tail = gpu[(gpu["ts"] >= window_start).to_numpy(dtype=bool, na_value=False)]
    stats = tail.groupby(keys, sort=False, observed=True).agg(
        gpu_samples=("value", "size"), gpu_util_mean_pct=("value", "mean"), gpu_util_max_pct=("value", "max"),
        devices=("device", "nunique"))

    out = last.rename("last_ts").to_frame().join(first_gpu.rename("first_gpu_ts")).join(stats).reset_index()
    out["host_last_ts"] = out["host"].map(host_last)
    out["gpu_samples"] = out["gpu_samples"].fillna(0).astype("int64")
    out["devices"] = out["devices"].fillna(0).astype("int64")
    out["gpu_util_mean_pct"] = out["gpu_util_mean_pct"].astype("float64")
    out["gpu_util_max_pct"] = out["gpu_util_max_pct"].astype("float64")
    out["first_gpu_ts"] = out["first_gpu_ts"].astype(out["last_ts"].dtype)
    out["host"] = out["host"].astype("string")
    out["job_id"] = out["job_id"].astype("string")
    return out[list(ACTIVITY_COLUMNS)].sort_values(keys, ignore_index=True)


def scaling_advice(nodes: pd.DataFrame, jobs: pd.DataFrame, pending_placements: pd.DataFrame, *,
                   idle_gpu_utilization_pct: float, idle_minutes: float, now: pd.Timestamp) -> pd.DataFrame:
    """Advice lines (ADVICE_COLUMNS), reuse first, then release, then add; see the module doc for the rules.

    `nodes`: `node_activity` rows of every shard (a host may appear in several). `jobs`: the job
    registry (job_id, status, instance_type, cloud, region, pricing). `pending_placements`: one row
    per pending job with job_id, instance_type, cloud, region, instances, pricing.
    """
    now = utc_timestamp(now)
    hosts = _host_view(nodes, jobs, idle_minutes)
    floor = float(idle_gpu_utilization_pct)
    window = pd.Timedelta(minutes=idle_minutes)
    idle = (hosts["gpu_samples"] > 0) & (hosts["gpu_util_max_pct"] < floor)
    covered = hosts["first_gpu_ts"].notna() & (hosts["first_gpu_ts"] <= hosts["window_start"])
    up = hosts["last_ts"] >= now - STILL_UP_WINDOWS * window
    releasable = hosts[(idle & covered & ~hosts["busy"] & up).fillna(False).to_numpy(dtype=bool)]

    lines: list[dict] = []
    taken: set[str] = set()
    placements = _placements(pending_placements)
    remaining = []
    for p in placements.itertuples(index=False):  # per pending job: a handful, not samples
        match = releasable[~releasable["host"].isin(taken) & (releasable["instance_type"] == p.instance_type)]
        for column in ("cloud", "region", "pricing"):
            wanted = getattr(p, column)
            if not pd.isna(wanted):
                match = match[match[column].isna() | (match[column] == wanted)]
        chosen = match.head(int(p.instances))
        taken.update(chosen["host"])
        if len(chosen):
            lines.append({
                "action": "reuse", "instance_type": p.instance_type, "cloud": p.cloud, "region": p.region,
                "pricing": p.pricing, "nodes": len(chosen), "hosts": ",".join(chosen["host"]), "job_ids": p.job_id,
                "reason": (f"pending job {p.job_id} needs {int(p.instances)} x {p.instance_type}: "
                           f"{_idle_words(chosen, floor, idle_minutes)}; reused instead of released and added"),
            })
        if int(p.instances) > len(chosen):
            remaining.append({**p._asdict(), "instances": int(p.instances) - len(chosen), "reused": len(chosen)})

    for node in releasable[~releasable["host"].isin(taken)].itertuples(index=False):
        one = releasable[releasable["host"] == node.host]
        lines.append({
            "action": "release", "instance_type": node.instance_type, "cloud": node.cloud, "region": node.region,
            "pricing": node.pricing, "nodes": 1, "hosts": node.host, "job_ids": node.job_ids,
            "reason": f"{_idle_words(one, floor, idle_minutes)}; no pending job needs this instance type",
        })

    if remaining:
        rest = pd.DataFrame(remaining)
        for key, group in rest.groupby(_PLACEMENT_KEY, dropna=False, sort=True):
            instances, reused = int(group["instances"].sum()), int(group["reused"].sum())
            lines.append({
                "action": "add", **dict(zip(_PLACEMENT_KEY, key)), "nodes": instances, "hosts": None,
                "job_ids": ",".join(group["job_id"]),
                "reason": (f"pending job(s) {', '.join(group['job_id'])} need {instances} more x {key[0]}"
                           + (f" after reusing {reused} idle node(s)" if reused else "")
                           + ": no idle node of this type to reuse"),
            })

    out = pd.DataFrame(lines, columns=list(ADVICE_COLUMNS))
    if out.empty:
        return _empty_advice()
    out["nodes"] = out["nodes"].astype("int64")
    for column in ADVICE_COLUMNS:
        if column != "nodes":
            out[column] = out[column].astype("string")
    order = out["action"].map({a: i for i, a in enumerate(ACTIONS)})
    return (out.assign(_order=order)
            .sort_values(["_order", "instance_type", "cloud", "region", "pricing", "hosts", "job_ids"],
                         na_position="last", kind="stable")
            .drop(columns="_order").reset_index(drop=True))


def _host_view(nodes: pd.DataFrame, jobs: pd.DataFrame, idle_minutes: float) -> pd.DataFrame:
    """One row per host: its window, GPU tail over the rows in the window, jobs, busy, instance type."""
    columns = ["host", "last_ts", "window_start", "first_gpu_ts", "gpu_samples", "gpu_util_mean_pct",
               "gpu_util_max_pct", "devices", "busy", "job_ids", *_PLACEMENT_KEY]
    nodes = nodes[nodes["host"].notna()]
    if nodes.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    window = pd.Timedelta(minutes=idle_minutes)
    registry = jobs.drop_duplicates("job_id", keep="last").set_index("job_id")
    rows = nodes.assign(
        host_last=nodes.groupby("host")["last_ts"].transform("max"),
        status=nodes["job_id"].map(registry["status"]),
    )
    rows["window_start"] = rows["host_last"] - window
    in_window = rows["last_ts"] >= rows["window_start"]
    tail = rows[in_window].assign(weighted=lambda d: d["gpu_util_mean_pct"].fillna(0.0) * d["gpu_samples"])
    stats = tail.groupby("host").agg(gpu_samples=("gpu_samples", "sum"), weighted=("weighted", "sum"),
                                     gpu_util_max_pct=("gpu_util_max_pct", "max"), devices=("devices", "max"))
    stats["gpu_util_mean_pct"] = (stats["weighted"] / stats["gpu_samples"]).where(stats["gpu_samples"] > 0)
    # busy: a job on it runs, or the registry does not know a job on it (it could be running)
    rows["blocking"] = rows["status"].isna() | (rows["status"] == "running")
    per_host = rows.groupby("host").agg(last_ts=("host_last", "max"), window_start=("window_start", "max"),
                                        first_gpu_ts=("first_gpu_ts", "min"), busy=("blocking", "any"))
    per_host["job_ids"] = (rows.drop_duplicates(["host", "job_id"]).sort_values(["host", "job_id"])
                           .groupby("host")["job_id"].agg(",".join))
    # the node's type is that of the job that reported from it last
    latest = rows.sort_values(["host", "last_ts", "job_id"]).drop_duplicates("host", keep="last").set_index("host")
    for column in _PLACEMENT_KEY:
        source = registry[column] if column in registry else pd.Series(dtype=object)
        per_host[column] = latest["job_id"].map(source)
    out = per_host.join(stats[["gpu_samples", "gpu_util_mean_pct", "gpu_util_max_pct", "devices"]])
    out["gpu_samples"] = out["gpu_samples"].fillna(0).astype("int64")
    out["devices"] = out["devices"].fillna(0).astype("int64")
    return out.reset_index().sort_values("host", ignore_index=True)[columns]


def _placements(pending: pd.DataFrame) -> pd.DataFrame:
    cols = ["job_id", *_PLACEMENT_KEY, "instances"]
    frame = pending.reindex(columns=cols)
    instances = pd.to_numeric(frame["instances"], errors="coerce")
    frame = frame[(instances > 0).fillna(False).to_numpy(dtype=bool)].assign(instances=instances)
    frame = frame.astype({c: object for c in cols if c != "instances"})
    frame = frame.where(frame.notna(), None)
    return frame.sort_values([*_PLACEMENT_KEY, "job_id"], na_position="last", key=lambda s: s.astype(str),
                             ignore_index=True)


def _idle_words(nodes: pd.DataFrame, floor: float, idle_minutes: float) -> str:
    hosts = ", ".join(
        f"{n.host} (max GPU {n.gpu_util_max_pct:.0f}%, mean {n.gpu_util_mean_pct:.0f}% over {n.gpu_samples} "
        f"samples; jobs {n.job_ids} not running)"
        for n in nodes.itertuples(index=False))
    return f"idle under {floor:g}% GPU for the last {idle_minutes:g} min: {hosts}"


def _empty_activity() -> pd.DataFrame:
    ts = pd.Series(dtype="datetime64[ns, UTC]")
    return pd.DataFrame({
        "host": pd.Series(dtype="string"), "job_id": pd.Series(dtype="string"), "first_gpu_ts": ts,
        "last_ts": ts, "host_last_ts": ts, "gpu_samples": pd.Series(dtype="int64"),
        "gpu_util_mean_pct": pd.Series(dtype="float64"), "gpu_util_max_pct": pd.Series(dtype="float64"),
        "devices": pd.Series(dtype="int64"),
    })


def _empty_advice() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="string") for c in ADVICE_COLUMNS})
    return frame.astype({"nodes": "int64"})
