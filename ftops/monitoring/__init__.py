"""Monitoring (§1): metric catalogue, rule and statistical detectors, alert lifecycle.

Plain pandas/numpy: no Dagster, no environment, no network. The Dagster assets (`run_health`,
`anomalies`, `alerts`) call `detect_anomalies` and `update_alerts`.
"""

from ftops.monitoring.alerts import alert_id, update_alerts
from ftops.monitoring.anomalies import detect_anomalies
from ftops.monitoring.catalog import METRIC_CATALOG, RULES, MetricInfo, RuleInfo, rules_for

__all__ = [
    "METRIC_CATALOG", "RULES", "MetricInfo", "RuleInfo", "alert_id", "detect_anomalies", "rules_for",
    "update_alerts",
]
