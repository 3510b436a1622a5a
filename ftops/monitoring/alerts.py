"""Alert lifecycle: anomalies of the latest evaluation + the previous alerts -> the new alerts table.

An alert is one incident of one job, rule and device. Its id is a hash of job, rule, device and
the start of its first detection window, so a re-run over the same data finds the same alert and
updates it instead of raising a second one. Anomalies of one key that follow each other within
`resolve_after` (or overlap an existing alert, e.g. the same run seen again by the next partition)
belong to the same alert. An alert resolves once its condition has not been seen for
`resolve_after` (hysteresis against flapping); an anomaly that starts after that is a new alert
with a new id: it fires again.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from ftops.schemas import ALERTS, SEVERITIES, utc_timestamp, validate

_KEY = ["job_id", "rule", "device"]
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def alert_id(job_id: str, rule: str, device: str | None, first_ts: pd.Timestamp) -> str:
    """Stable id of an alert: job, rule, device and the start of its first detection window."""
    text = f"{job_id}|{rule}|{device or ''}|{pd.Timestamp(first_ts).tz_convert('UTC').isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _with_key(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["device"] = out["device"].astype("string").fillna("")
    return out


def _chains(anomalies: pd.DataFrame, resolve_after: pd.Timedelta) -> pd.DataFrame:
    """Anomalies of one key closer than `resolve_after` to the previous one -> one chain row."""
    a = _with_key(anomalies).sort_values(_KEY + ["first_ts"], kind="stable").reset_index(drop=True)
    a["_rank"] = a["severity"].map(_RANK).astype(int)
    key = a[_KEY].astype(str).agg("|".join, axis=1).to_numpy()
    same_key = np.r_[False, key[1:] == key[:-1]]
    reach = a.groupby(_KEY, sort=False)["last_ts"].cummax().shift()
    far = ((a["first_ts"] - reach) > resolve_after).to_numpy(dtype=bool, na_value=True)
    a["_chain"] = np.cumsum(~same_key | far) - 1
    # the chain's headline is its most severe anomaly, the latest among equals
    head = a.sort_values(["_chain", "_rank", "last_ts"], kind="stable").groupby("_chain").tail(1)
    head = head.set_index("_chain").sort_index()
    g = a.groupby("_chain", sort=True)
    return pd.DataFrame({
        "job_id": head["job_id"], "rule": head["rule"], "device": head["device"],
        "category": head["category"], "severity": head["severity"], "_rank": head["_rank"],
        "first_ts": g["first_ts"].min(), "last_ts": g["last_ts"].max(), "ongoing": g["ongoing"].any(),
        "value": head["value"], "threshold": head["threshold"], "message": head["message"],
    }).reset_index(drop=True)


def update_alerts(previous_alerts: pd.DataFrame | None, anomalies: pd.DataFrame, now: pd.Timestamp,
                  resolve_after: pd.Timedelta = pd.Timedelta(0),
                  evaluated_jobs: list[str] | None = None) -> pd.DataFrame:
    """The alerts table after one evaluation (ALERTS).

    `anomalies` is the complete latest evaluation (detect_anomalies over the data in scope);
    `now` the evaluation time. A firing alert that no anomaly continues is resolved at `now` once
    its `last_seen_at` is `resolve_after` old; with `evaluated_jobs`, alerts of other jobs (not in
    this evaluation's scope, e.g. another partition) are left as they are.
    """
    now = utc_timestamp(now)
    prev = validate(previous_alerts, ALERTS) if previous_alerts is not None and len(previous_alerts) else ALERTS.empty()
    prev = _with_key(prev)
    if anomalies is None or anomalies.empty:
        chains = pd.DataFrame({c: pd.Series(dtype=object) for c in _KEY + [
            "category", "severity", "_rank", "ongoing", "value", "threshold", "message"]})
        chains["first_ts"] = pd.Series(dtype="datetime64[ns, UTC]")
        chains["last_ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    else:
        chains = _chains(anomalies, resolve_after)

    # continue an existing alert whose span (plus the hysteresis) the chain overlaps
    chains["alert_id"] = pd.Series(pd.NA, index=chains.index, dtype="string")
    if len(chains) and len(prev):
        cand = chains.reset_index().merge(prev[_KEY + ["alert_id", "started_at", "last_seen_at"]],
                                          on=_KEY, suffixes=("", "_prev"))
        overlap = (cand["first_ts"] <= cand["last_seen_at"] + resolve_after) & (cand["last_ts"] >= cand["started_at"])
        cand = cand[overlap].sort_values(["index", "started_at"], kind="stable").groupby("index").tail(1)
        chains.loc[cand["index"].to_numpy(), "alert_id"] = cand["alert_id_prev"].to_numpy()
    new = chains["alert_id"].isna()
    chains.loc[new, "alert_id"] = [alert_id(j, r, d, t) for j, r, d, t in
                                   chains.loc[new, ["job_id", "rule", "device", "first_ts"]].itertuples(index=False)]

    if len(chains):
        # several chains can land on one alert (an alert that already spans them): fold them
        chains = chains.sort_values(["alert_id", "_rank", "last_ts"], kind="stable")
        g = chains.groupby("alert_id", sort=False)
        seen = g.tail(1).set_index("alert_id")
        seen["first_ts"] = g["first_ts"].min()
        seen["last_ts"] = g["last_ts"].max()
        seen["ongoing"] = g["ongoing"].any()
    else:
        seen = chains.set_index("alert_id")

    old = prev.set_index("alert_id")
    ids = old.index.union(seen.index)
    out = old.reindex(ids)
    s = seen.reindex(ids)
    has_new = s["first_ts"].notna().to_numpy()
    had_old = out["started_at"].notna().to_numpy()
    old_rank = out["severity"].map(_RANK).astype("float").to_numpy()
    new_rank = s["_rank"].astype("float").to_numpy()
    take_new = has_new & (~had_old | (new_rank >= np.nan_to_num(old_rank, nan=-1)))
    for col in ("job_id", "rule", "device", "category", "severity", "value", "threshold", "message"):
        out[col] = out[col].astype(object).where(~take_new, s[col].astype(object))
    out["started_at"] = pd.concat([out["started_at"], s["first_ts"]], axis=1).min(axis=1)
    out["last_seen_at"] = pd.concat([out["last_seen_at"], s["last_ts"]], axis=1).max(axis=1)

    in_scope = np.ones(len(out), dtype=bool) if evaluated_jobs is None else out["job_id"].isin(evaluated_jobs).to_numpy()
    # quiet = not seen for resolve_after; an anomaly still true at a run's last sample does not keep
    # a finished or silent job's alert firing forever (staleness is the heartbeat's business)
    quiet = (now - out["last_seen_at"]).to_numpy() >= resolve_after.to_timedelta64()
    was_resolved = (out["state"] == "resolved").to_numpy(dtype=bool, na_value=False)
    resolved = np.where(in_scope | has_new, quiet, was_resolved)
    out["state"] = np.where(resolved, "resolved", "firing")
    # a re-run that finds an incident still over keeps the time it was first resolved
    keep = resolved & was_resolved & out["resolved_at"].notna().to_numpy()
    out["resolved_at"] = pd.Series(np.where(resolved, np.where(keep, out["resolved_at"], now), pd.NaT),
                                   index=out.index)
    out = out.reset_index().rename(columns={"index": "alert_id"})
    out["device"] = out["device"].replace("", pd.NA)
    out = out.sort_values(["started_at", "alert_id"], kind="stable").reset_index(drop=True)
    return validate(out, ALERTS)


def worst_first(alerts: pd.DataFrame) -> pd.DataFrame:
    """Alerts ordered firing before resolved, then critical > warning > info, then the longest
    firing first (earliest `started_at`), then job and rule for a stable order."""
    if alerts.empty:
        return alerts.reset_index(drop=True)
    rank = pd.Categorical(alerts["severity"].astype("string"), categories=list(SEVERITIES), ordered=True).codes
    keys = pd.DataFrame({
        "_resolved": (alerts["state"].astype("string") != "firing").to_numpy(),
        "_severity": -np.asarray(rank),
        "_started": pd.to_datetime(alerts["started_at"], utc=True).to_numpy(),
        "_job": alerts["job_id"].astype("string").to_numpy(),
        "_rule": alerts["rule"].astype("string").to_numpy(),
    }, index=alerts.index)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return alerts.loc[order].reset_index(drop=True)
