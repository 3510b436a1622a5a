"""When downstream assets follow their inputs (declarative automation), and how often sensors look.

`AutomationCondition.eager()` does not fit this graph: it only considers the latest day of a
time-partitioned asset (a late metric file for yesterday would never refresh yesterday's
anomalies), and for an unpartitioned asset fed by daily partitions it waits until *every* day
since the partitions' start exists, which never happens. `after_upstream_updates` runs a target
(each affected partition) once its inputs were updated, when nothing upstream is still running.

The trigger is remembered until the target is next *requested* (not merely materialised): a bill
that lands while job_costs is running is picked up by the next tick instead of being lost in the
race between the update and the end of that run.
"""

import os

import dagster as dg

SENSOR_INTERVAL_SECONDS = int(os.environ.get("FTOPS_SENSOR_INTERVAL_SECONDS", "30"))



def after_upstream_updates(ignore: tuple[str, ...] = ()) -> dg.AutomationCondition:
    """Run once inputs were updated; `ignore` names inputs that alone should not trigger a run
    (for a daily asset, an unpartitioned input would otherwise refresh every day since 2023)."""
    updated = dg.AutomationCondition.any_deps_updated()
    if ignore:
        updated = updated.ignore(dg.AssetSelection.assets(*ignore))
    return (
        updated.since(dg.AutomationCondition.newly_requested())
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("after upstream updates" + (f" (not {', '.join(ignore)})" if ignore else ""))
