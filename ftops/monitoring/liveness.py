"""Job liveness (§1.1): `job_preempted` and `heartbeat_lost`, judged per job from the job registry.

These rules read no sample series: they compare what the registry says with the job's last signs
of life (its latest heartbeat and the time its step last advanced) at an evaluation time `now` that
the caller passes in, never the wall clock. They return rows of the anomalies table, so the alert
lifecycle treats them like any other detection.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ftops.monitoring.catalog import RULES, setting
from ftops.monitoring.messages import format_messages
from ftops.schemas import ANOMALIES, to_utc, utc_timestamp, validate

LIVENESS_RULES = frozenset({"job_preempted", "heartbeat_lost"})
_SIGNS = ("job_id", "last_heartbeat_ts", "last_progress_ts", "last_sample_ts")


def _empty_signs() -> pd.DataFrame:
    return pd.DataFrame({"job_id": pd.Series(dtype="string"),
                         **{c: pd.Series(dtype="datetime64[ns, UTC]") for c in _SIGNS[1:]}})


def signs_of_life_from_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Per job: the latest heartbeat, when its step last advanced (the first sample at its highest
    step) and its latest sample of any metric, from `metric_samples`."""
    if samples is None or samples.empty:
        return _empty_signs()
    ts = to_utc(samples["ts"])
    # one sample is a window of its own: its time is both its last sample and its step's time
    return _latest_signs(pd.DataFrame({
        "job_id": samples["job_id"].astype("string"), "metric": samples["metric"].astype("string"),
        "last_ts": ts, "step": pd.to_numeric(samples["step"], errors="coerce").astype("float64"), "step_ts": ts}))


def signs_of_life_from_run_health(health: pd.DataFrame) -> pd.DataFrame:
    """`signs_of_life_from_samples` from the `run_health` rollups (hourly windows)."""
    if health is None or health.empty:
        return _empty_signs()
    h = pd.DataFrame({"job_id": health["job_id"].astype("string"), "metric": health["metric"].astype("string"),
                      "last_ts": to_utc(health["last_ts"]),
                      "step": pd.to_numeric(health["max_step"], errors="coerce").astype("float64")})
    # run_health written before max_step_ts existed: the window's last sample stands in for it
    h["step_ts"] = to_utc(health["max_step_ts"]) if "max_step_ts" in health else h["last_ts"]
    return _latest_signs(h)


def _latest_signs(w: pd.DataFrame) -> pd.DataFrame:
    """Per job, from windows (job_id, metric, last_ts, step, step_ts): its latest sample, its latest
    heartbeat, and when its highest step was first reached."""
    out = w.groupby("job_id")["last_ts"].max().rename("last_sample_ts").to_frame()
    out["last_heartbeat_ts"] = w[w["metric"] == "heartbeat"].groupby("job_id")["last_ts"].max()
    stepped = w[w["step"].notna()]
    top = stepped["step"] == stepped.groupby("job_id")["step"].transform("max")
    out["last_progress_ts"] = stepped[top].groupby("job_id")["step_ts"].min()
    return out.reset_index()[list(_SIGNS)]


def _rows(job_id: pd.Series, rule: str, severity: str, first: pd.Series, last: pd.Series, value: np.ndarray,
          threshold: float, window: pd.Series | str, ongoing: bool) -> pd.DataFrame:
    n = len(job_id)
    out = pd.DataFrame({
        "job_id": job_id.astype("string").to_numpy(),
        "rule": rule,
        "category": RULES[rule].category,
        "severity": severity,
        "metric": RULES[rule].metric,
        "device": pd.Series(pd.NA, index=range(n), dtype="string"),
        "first_ts": first.to_numpy(),
        "last_ts": last.to_numpy(),
        "first_step": pd.NA,
        "last_step": pd.NA,
        "worst_ts": last.to_numpy(),
        "worst_step": pd.NA,
        "n_samples": 0,
        "value": value,
        "threshold": threshold,
        "reference": np.nan,
        "score": np.nan,
        "window": window if isinstance(window, str) else window.to_numpy(),
        "ongoing": ongoing,
    }, index=range(n))
    out["message"] = format_messages(out) if n else pd.Series(dtype="string")
    return out


def preempted_anomalies(jobs: pd.DataFrame, signs: pd.DataFrame | None = None) -> pd.DataFrame:
    """job_preempted (warning): one row per job whose registry status or exit reason is `preempted`,
    at its end time (else its last sample, else its start); a job with none of them is skipped."""
    if jobs is None or jobs.empty or "job_id" not in jobs:
        return ANOMALIES.empty()
    j = jobs.drop_duplicates("job_id", keep="last").reset_index(drop=True)
    status = j.get("status", pd.Series(pd.NA, index=j.index)).astype("string")
    reason = j.get("exit_reason", pd.Series(pd.NA, index=j.index)).astype("string")
    hit = ((status == "preempted") | (reason == "preempted")).fillna(False).to_numpy(dtype=bool)
    if not hit.any():
        return ANOMALIES.empty()
    j, status, reason = j[hit], status[hit], reason[hit]
    when = to_utc(j.get("ended_at", pd.Series(pd.NaT, index=j.index)))
    if signs is not None and len(signs):
        last = signs.set_index(signs["job_id"].astype("string"))["last_sample_ts"]
        when = when.fillna(pd.Series(last.reindex(j["job_id"].astype("string")).to_numpy(), index=j.index))
    when = when.fillna(to_utc(j.get("started_at", pd.Series(pd.NaT, index=j.index))))
    keep = when.notna().to_numpy()
    j, status, reason, when = j[keep], status[keep], reason[keep], when[keep]
    window = "status " + status.fillna("?") + ", exit_reason " + reason.fillna("none")
    out = _rows(j["job_id"], "job_preempted", "warning", when, when, np.full(len(j), np.nan), np.nan, window,
                ongoing=False)
    return validate(out, ANOMALIES)


def heartbeat_lost_anomalies(jobs: pd.DataFrame, signs: pd.DataFrame, now: pd.Timestamp,
                             timeout_minutes: float) -> pd.DataFrame:
    """heartbeat_lost (critical): jobs the registry says are running whose latest heartbeat, step
    progress and start are all more than `timeout_minutes` before the evaluation time.

    The evaluation time is `now`, but never later than the newest sample of any job: when the
    whole inbox lags (files land hourly, the demo's data ends on the hour), every running job
    would look silent; that is a late feed, not a lost job.
    """
    if jobs is None or jobs.empty or "status" not in jobs:
        return ANOMALIES.empty()
    j = jobs.drop_duplicates("job_id", keep="last")
    j = j[(j["status"].astype("string") == "running").fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)
    if j.empty:
        return ANOMALIES.empty()
    now = utc_timestamp(now)
    newest = signs["last_sample_ts"].max() if signs is not None and len(signs) else pd.NaT
    horizon = min(now, newest) if pd.notna(newest) else now
    ids = j["job_id"].astype("string")
    s = (signs.set_index(signs["job_id"].astype("string")) if signs is not None and len(signs)
         else _empty_signs().set_index("job_id")).reindex(ids)
    heartbeat = pd.Series(s["last_heartbeat_ts"].to_numpy(), index=j.index)
    progress = pd.Series(s["last_progress_ts"].to_numpy(), index=j.index)
    started = to_utc(j.get("started_at", pd.Series(pd.NaT, index=j.index)))
    alive = pd.concat([heartbeat, progress, started], axis=1).max(axis=1)
    timeout = pd.Timedelta(minutes=timeout_minutes)
    lost = (alive.notna() & (horizon - alive > timeout)).to_numpy(dtype=bool)
    if not lost.any():
        return ANOMALIES.empty()
    j, alive, heartbeat, progress = j[lost], alive[lost], heartbeat[lost], progress[lost]

    def _hhmm(ts: pd.Series) -> pd.Series:
        return ts.dt.strftime("%Y-%m-%d %H:%M UTC").fillna("never")

    window = "heartbeat " + _hhmm(heartbeat) + ", step progress " + _hhmm(progress)
    silent = ((horizon - alive) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)
    out = _rows(j["job_id"], "heartbeat_lost", "critical", alive + timeout,
                pd.Series(horizon, index=j.index), silent, timeout_minutes, window, ongoing=True)
    return validate(out, ANOMALIES)


def liveness_anomalies(jobs: pd.DataFrame | None, signs: pd.DataFrame | None, now: pd.Timestamp,
                       policy: object = None) -> pd.DataFrame:
    """job_preempted and heartbeat_lost for the jobs of the registry at `now` (ANOMALIES rows)."""
    if jobs is None or jobs.empty:
        return ANOMALIES.empty()
    signs = signs if signs is not None else _empty_signs()
    timeout = float(setting(policy, "liveness.heartbeat_timeout_minutes"))
    parts = [preempted_anomalies(jobs, signs), heartbeat_lost_anomalies(jobs, signs, now, timeout)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return ANOMALIES.empty()
    return validate(pd.concat(parts, ignore_index=True), ANOMALIES)
