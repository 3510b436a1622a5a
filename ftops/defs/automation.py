"""When downstream assets follow their inputs (declarative automation), and how often sensors look.

`AutomationCondition.eager()` does not fit this graph: it only considers the latest day of a
time-partitioned asset (a late metric file for yesterday would never refresh yesterday's
anomalies), and for an unpartitioned asset fed by daily partitions it waits until *every* day
since the partitions' start exists, which never happens. `after_upstream_updates` runs a target
(each affected partition) once its inputs were updated, when nothing upstream is still running.

The trigger is remembered until the target is next requested. Dagster's `since` lets a reset win
over a trigger seen on the same tick, and `newly_requested` is true on the tick *after* a request:
an input updated just after a request (a bill landing while job_costs runs) would be lost. The
second clause keeps exactly that case until a later request.
"""

import os

import dagster as dg

SENSOR_INTERVAL_SECONDS = int(os.environ.get("FTOPS_SENSOR_INTERVAL_SECONDS", "30"))



def after_upstream_updates(ignore: tuple[str, ...] = (), needs: tuple[str, ...] = ()) -> dg.AutomationCondition:
    """Run once inputs were updated; `ignore` names inputs that alone should not trigger a run
    (for a daily asset, an unpartitioned input would otherwise refresh every day since 2023);
    `needs` names unpartitioned inputs that must exist first (a run without them would fail)."""
    updated = dg.AutomationCondition.any_deps_updated()
    if ignore:
        updated = updated.ignore(dg.AssetSelection.assets(*ignore))
    requested = dg.AutomationCondition.newly_requested()
    updated_after_request = (updated & requested).since(requested & ~updated)
    condition = (
        (updated.since(requested) | updated_after_request)
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    )
    if needs:
        condition = condition & ~dg.AutomationCondition.any_deps_match(
            dg.AutomationCondition.missing()).allow(dg.AssetSelection.assets(*needs))
    label = "after upstream updates" + (f" (not {', '.join(ignore)})" if ignore else "")
    return condition.with_label(label + (f" (once {', '.join(needs)} exists)" if needs else ""))


HOURLY = "0 * * * *"


def hourly_after_upstream_updates(needs: tuple[str, ...] = ()) -> dg.AutomationCondition:
    """For analytics (benchmarks, recommendations, models): as `after_upstream_updates`, but at most
    once an hour. Ingest updates the registry and metrics every few minutes; refitting models and
    re-ranking the catalogue each time would fill the run queue in front of the runs that act (a
    budget crossing waited 200 s instead of 80 s behind them)."""
    hour_passed = dg.AutomationCondition.cron_tick_passed(HOURLY).since(dg.AutomationCondition.newly_requested())
    label = "hourly, after upstream updates" + (f" (once {', '.join(needs)} exists)" if needs else "")
    return (after_upstream_updates(needs=needs) & hour_passed).with_label(label)
