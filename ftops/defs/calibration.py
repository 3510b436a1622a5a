"""Benchmark calibration: the `benchmark_calibration` job launches the proposed calibration runs once.

It reads the `benchmark_recommendations` table from the warehouse, keeps its `calibrate` rows, plans
one `launch_calibration` per proposal (ftops.optimize.calibration) and carries them out the way
budget enforcement does (ftops.actions.ledger_store): each action is written to the ledger as
planned before any side effect, then applied through the configured actuator and marked. Mode
`dry_run` (the default, as for budgets) records each launch as skipped and starts nothing; `enforce`
posts it through the actuator (the webhook actuator: control_file and kubernetes refuse a launch,
which the ledger records as failed). The launched run reports under its job id `calib-<proposal_id>`
through the inbox like any run. The same proposal is launched once: a second run changes nothing.
"""

import dagster as dg
import pandas as pd

from ftops.actions.ledger_store import execute_actions
from ftops.defs.enforcement import ActuatorResource, LedgerResource, publish_ledger
from ftops.defs.resources import WarehouseResource
from ftops.optimize.calibration import DEFAULT_BUDGET_CATEGORY, TRIGGER, calibration_actions
from ftops.schemas import MODES, utc_timestamp

# the asset the optimisation group writes; read here as stored, like budget_sensor reads budget_status
BENCHMARK_RECOMMENDATIONS = "benchmark_recommendations"


class CalibrationConfig(dg.Config):
    mode: str = "dry_run"  # off | dry_run | enforce
    period_key: str = ""  # recorded with each action; empty: the month of as_of (YYYY-MM)
    as_of: str = ""  # ISO-8601 UTC; empty: now
    proposal_ids: list[str] = []  # empty: every calibrate row
    budget_category: str = DEFAULT_BUDGET_CATEGORY  # the budget calibration runs are charged to


@dg.op(description="Launch each proposed calibration run once through the actuator (ledger first; dry run by default).")
def launch_calibrations(context: dg.OpExecutionContext, config: CalibrationConfig, ledger: LedgerResource,
                        actuator: ActuatorResource, warehouse: WarehouseResource) -> None:
    if config.mode not in MODES:
        raise dg.DagsterInvalidConfigError(f"mode {config.mode!r}: allowed values are {list(MODES)}", [], None)
    now = utc_timestamp(config.as_of) if config.as_of else pd.Timestamp.now(tz="UTC")
    period_key = config.period_key or now.strftime("%Y-%m")
    recommendations = warehouse.read(BENCHMARK_RECOMMENDATIONS)
    if recommendations is None:
        context.log.info(f"{BENCHMARK_RECOMMENDATIONS} is not materialised yet: nothing to launch")
        recommendations = pd.DataFrame()
    actions = calibration_actions(recommendations, config.mode, period_key, budget_category=config.budget_category,
                                  proposal_ids=config.proposal_ids or None)
    store = ledger.store()
    planned_here = {a.action_id for a in actions}
    # enforce-mode launches an earlier run recorded and did not finish; a dry run must not re-record them
    orphans = ([a for a in store.pending(config.budget_category)
                if a.trigger == TRIGGER and a.action_id not in planned_here] if config.mode == "enforce" else [])
    results = execute_actions(actions + orphans, store, actuator.build(), config.mode)
    for r in results:
        context.log.info(f"{r['action']} {r['job_id']}: {r['status']} ({r['detail']})")
    if not results:
        context.log.info("no calibration proposed: every candidate configuration is measured or not cheaper")

    publish_ledger(context, store, warehouse, results, proposals=len(actions), mode=config.mode,
                   period_key=period_key)


@dg.job(description="Launch the proposed benchmark calibration runs (dry run by default), each once.",
        tags={"ftops/trigger": TRIGGER})
def benchmark_calibration() -> None:
    launch_calibrations()


CALIBRATION_JOBS = [benchmark_calibration]
