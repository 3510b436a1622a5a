"""Run the ingest jobs in-process against a Dagster instance (used by `ftops demo`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from ftops.defs.jobs import GRAPH_STEPS
from ftops.defs.sensors import RANGE_END, RANGE_START
from ftops.sharding import all_shards


# The instance `dagster dev` (and `ftops demo`) use in a project folder when DAGSTER_HOME is unset.
DEFAULT_HOME = ".ftops/dagster_home"


def open_instance() -> dg.DagsterInstance:
    """The instance `dagster dev` uses when run from the same folder.

    DAGSTER_HOME when it is set; otherwise the folder's dagster.yaml with its storage under
    `.ftops/dagster_home` (exactly what `dagster dev` does without DAGSTER_HOME).
    """
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    home = Path(DEFAULT_HOME).absolute()
    home.mkdir(parents=True, exist_ok=True)
    config_dir = os.getcwd() if Path("dagster.yaml").exists() else str(home)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), config_dir=config_dir))


def _ops_taking_as_of(job: dg.JobDefinition) -> list[str]:
    """The ops of `job` whose config has an `as_of` field (assets configured with defs.as_of.AsOfConfig)."""
    names = []
    for node in job.graph.node_defs:
        schema = getattr(node, "config_schema", None)
        fields = getattr(getattr(schema, "config_type", None), "fields", {}) or {}
        if "as_of" in fields:
            names.append(node.name)
    return names


def _run_tags(defs: dg.Definitions, cut: str, min_ts: str, max_ts: str) -> list[dict[str, str]] | None:
    """The tags of each run of a step cut `cut` (see GRAPH_STEPS); None when the range holds no partition."""
    if cut == "all":
        return [{}]
    partitions = defs.resources["inbox"].partitions()
    days = partitions.day_range(min_ts, max_ts)
    if days is None:
        return None
    if cut == "days":
        return [{RANGE_START: days[0], RANGE_END: days[1]}]
    return [{RANGE_START: first, RANGE_END: last, "ftops/shard": shard.key}
            for shard in all_shards(partitions.shards)
            for first, last in [partitions.shard_day_range(days, shard)]]


def materialize_graph(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    min_ts: str,
    max_ts: str,
    progress: Callable[[str, float], None] = lambda name, seconds: None,
    log_level: str = "INFO",
    as_of: str | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Materialise the whole graph in dependency order: daily steps as one run over the range,
    sample-level steps as one run per job shard over the range (so memory follows a shard).

    `as_of` (ISO-8601) is given to every asset that evaluates "now" (costs and budgets), so a test or
    a backfill of a past range gives the same tables whatever the wall clock says. `progress` is
    called once per step, with the seconds of all its runs.
    """
    results = []
    for name, cut in GRAPH_STEPS:
        runs = _run_tags(defs, cut, min_ts, max_ts)
        if runs is None:
            continue
        started = time.perf_counter()
        job = defs.resolve_job_def(name)
        run_config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
        if as_of:
            run_config["ops"] = {op: {"config": {"as_of": as_of}} for op in _ops_taking_as_of(job)}
        for tags in runs:
            results.append(job.execute_in_process(
                instance=instance,
                tags=tags,
                run_config=run_config,
                raise_on_error=True,
            ))
        progress(name, time.perf_counter() - started)
    return results
