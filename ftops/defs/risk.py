"""The failure-risk model asset (spec §3): trained on the registry's finished jobs, stored with joblib."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ftops.defs.as_of import AsOfConfig
from ftops.defs.automation import hourly_after_upstream_updates
from ftops.defs.checks import as_contract
from ftops.predict.risk import DEFAULT_TEST_FRACTION, RiskModelError, failure_labels, fit_risk_model
from ftops.schemas import JOB_FAILURES, JOBS, RUN_HEALTH

GROUP = "prediction"


class RiskModelConfig(AsOfConfig):
    """Which moment of a run the model scores: 0 minutes is at launch, M the first M minutes of metrics."""

    horizon_minutes: float = 0.0
    test_fraction: float = DEFAULT_TEST_FRACTION


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 4)


@dg.asset(
    group_name=GROUP,
    kinds={"scikitlearn"},
    io_manager_key="model_io_manager",
    automation_condition=hourly_after_upstream_updates(),
)
def failure_risk_model(context: dg.AssetExecutionContext, config: RiskModelConfig, job_registry: pd.DataFrame,
                       run_health: pd.DataFrame, job_failures: pd.DataFrame) -> Iterator:
    """Logistic-regression failure-risk model over job spec, launch context (past failures and recent
    relaunches of the same configuration) and early run signals, with its time-ordered evaluation:
    AUC, precision and recall at the threshold beside the majority-class baseline, Brier score."""
    now = config.now()
    jobs = as_contract(job_registry, JOBS)
    health = as_contract(run_health, RUN_HEALTH)
    failures = as_contract(job_failures, JOB_FAILURES)
    labels = failure_labels(jobs, failures)
    try:
        model = fit_risk_model(jobs, health, labels, config.horizon_minutes, now,
                               test_fraction=config.test_fraction)
    except RiskModelError as exc:
        # a young fleet without a failure yet: nothing to learn, and no stale model is written over
        context.log.warning(str(exc))
        yield dg.Output(None, metadata={"skipped": str(exc), "finished_jobs": len(labels)})
        return
    ev = model.evaluation
    coefficients = ev.get("coefficients", {})
    yield dg.Output(model, metadata={
        "horizon_minutes": model.horizon_minutes,
        "n_train": ev.get("n_train", 0), "n_test": ev.get("n_test", 0),
        "n_fitted": model.n_train,
        "auc": _number(ev.get("auc")),
        "threshold": model.threshold,
        "precision_at_threshold": _number(ev.get("precision")),
        "recall_at_threshold": _number(ev.get("recall")),
        "accuracy": _number(ev.get("accuracy")),
        "baseline_accuracy": _number(ev.get("baseline_accuracy")),
        "baseline_auc": 0.5,
        "brier": _number(ev.get("brier")),
        "baseline_brier": _number(ev.get("baseline_brier")),
        "evaluation_skipped": ev.get("skipped", ""),
        "features": dg.MetadataValue.json(list(model.features)),
        "top_coefficients": dg.MetadataValue.json(dict(list(coefficients.items())[:10])),
        "reliability": dg.MetadataValue.json(ev.get("reliability", [])),
    })


RISK_ASSETS = [failure_risk_model]
