"""Calibration runs as planned actions: the `calibrate` rows of benchmark_recommendations, to launch.

A calibration run is a new, short job (`calib-<proposal_id>`) on a configuration the fleet never
measured. Its metrics come back through the inbox under that job id like any run's, and once the job
registry knows it, `benchmark_comparison` measures the configuration and the proposal disappears.

Idempotency: the key is (job id, action, trigger) and the job id carries the proposal id, a hash of
the configuration: a proposal is launched once, whatever the period. A launch that failed may be tried
again (the ledger's rule); a launched run that never reported is not relaunched by itself: a person
decides. A changed configuration (another GPU count, micro-batch, step count) is a new proposal.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from ftops.plans import PlannedAction
from ftops.schemas import MODES, Mode

ACTION = "launch_calibration"
TRIGGER = "calibration"
JOB_PREFIX = "calib-"
DEFAULT_BUDGET_CATEGORY = "calibration"
# what the launched job needs to know (the receiver starts it from these); all JSON-safe
PARAM_COLUMNS = ("proposal_id", "technique", "model_size", "model_params_b", "gpu_model", "gpu_count",
                 "instance_type", "cloud", "region", "pricing", "micro_batch", "seq_len", "precision", "steps",
                 "expected_hours", "expected_usd_per_hour", "expected_cost_usd")


def calibration_job_id(proposal_id: str) -> str:
    """The job id the calibration run reports its metrics under."""
    return f"{JOB_PREFIX}{proposal_id}"


def calibration_key(job_id: str) -> str:
    """Idempotency key of a launch: one per calibration job, never per period."""
    text = json.dumps([job_id, ACTION, TRIGGER])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _plain(value: Any) -> Any:
    """JSON-safe scalar: numpy unwrapped, NaN/NA -> None (the webhook refuses NaN)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def calibration_actions(recommendations: pd.DataFrame, mode: Mode, period_key: str, *,
                        budget_category: str = DEFAULT_BUDGET_CATEGORY,
                        proposal_ids: list[str] | None = None) -> list[PlannedAction]:
    """One `launch_calibration` action per `calibrate` row (optionally only `proposal_ids`).

    params: the configuration (PARAM_COLUMNS present in the table), steps and expected cost;
    `period_key` is recorded (when it was decided), not part of the key. Rows in table order.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {list(MODES)}")
    if recommendations is None or recommendations.empty or "kind" not in recommendations.columns:
        return []
    rows = recommendations[recommendations["kind"].astype(str).eq("calibrate").to_numpy()
                           & recommendations["proposal_id"].notna().to_numpy()]
    if proposal_ids is not None:
        rows = rows[rows["proposal_id"].astype(str).isin(proposal_ids).to_numpy()]
    rows = rows.drop_duplicates("proposal_id")
    columns = [c for c in PARAM_COLUMNS if c in rows.columns]
    actions = []
    for record in rows.to_dict("records"):  # proposals: a few per group
        job_id = calibration_job_id(str(record["proposal_id"]))
        params = {c: _plain(record[c]) for c in columns}
        actions.append(PlannedAction(
            action_id=calibration_key(job_id), job_id=job_id, budget_category=budget_category, action=ACTION,
            params=params, level_pct=0.0, mode=mode, period_key=period_key, trigger=TRIGGER,
            reason=str(record.get("message") or f"calibration run {job_id}"),
        ))
    return actions
