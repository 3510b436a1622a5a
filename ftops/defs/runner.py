"""Materialise the whole asset graph against a Dagster instance, without a daemon (`ftops demo`, the
fleet benchmark, tests).

Steps run in dependency order. The sample-level steps run once per job shard; with `processes` > 1
those runs go to worker processes, up to `processes` at once, each run in a fresh process as Dagster's
run launcher would start it: a run's memory is returned when it ends, so the peak of any process is
that of one shard, and the cores are used. Otherwise every run executes in this process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from ftops.defs.jobs import GRAPH_STEPS
from ftops.defs.sensors import RANGE_END, RANGE_START
from ftops.sharding import all_shards
from ftops.staging import worker_context


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


@dataclass(frozen=True)
class WorkerRun:
    """A run that executed in a worker process: its record on the instance."""

    dagster_run: dg.DagsterRun

    @property
    def success(self) -> bool:
        return self.dagster_run.status == dg.DagsterRunStatus.SUCCESS


def _execute_in_worker(settings, instance_ref: InstanceRef, job_name: str, tags: dict, run_config: dict) -> str:
    """One run in a worker process: the code location built from the same settings; returns the run id."""
    from ftops.definitions import build_definitions

    job = build_definitions(settings).resolve_job_def(job_name)
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        return job.execute_in_process(instance=instance, tags=tags, run_config=run_config,
                                      raise_on_error=True).run_id


def _execute_in_workers(settings, instance: dg.DagsterInstance, job_name: str, runs: list[dict],
                        run_config: dict, processes: int) -> list[WorkerRun]:
    ref = instance.get_ref()
    pool = ProcessPoolExecutor(max_workers=min(processes, len(runs)), mp_context=worker_context(),
                               max_tasks_per_child=1)  # a fresh process per run: its memory goes with it
    try:
        futures = [pool.submit(_execute_in_worker, settings, ref, job_name, tags, run_config) for tags in runs]
        run_ids = []
        for tags, future in zip(runs, futures):
            try:
                run_ids.append(future.result())
            except BrokenProcessPool as exc:
                raise RuntimeError(f"{job_name} {tags.get('ftops/shard', '')}: the run's process died (killed, "
                                   "out of memory?); use more shards (partitions.shards) or fewer processes") from exc
    finally:
        pool.shutdown(cancel_futures=True)
    return [WorkerRun(instance.get_run_by_id(run_id)) for run_id in run_ids]


def materialize_graph(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    min_ts: str,
    max_ts: str,
    progress: Callable[[str, float], None] = lambda name, seconds: None,
    log_level: str = "INFO",
    as_of: str | None = None,
    settings=None,
    processes: int = 1,
) -> list[dg.ExecuteInProcessResult | WorkerRun]:
    """Materialise the whole graph in dependency order: daily steps as one run over the range,
    sample-level steps as one run per job shard over the range (so memory follows a shard).

    `as_of` (ISO-8601) is given to every asset that evaluates "now" (costs and budgets), so a test or
    a backfill of a past range gives the same tables whatever the wall clock says. `progress` is
    called once per step, with the seconds of all its runs. With `settings` (the ftops.definitions
    Settings `defs` was built from) and `processes` > 1, the runs of a sample-level step execute in
    worker processes (see the module docstring); the instance must then be one other processes can
    open (not ephemeral). Every result has `.success` and `.dagster_run`.
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
        if settings is not None and processes > 1 and cut == "shard_days" and len(runs) > 1:
            results.extend(_execute_in_workers(settings, instance, name, runs, run_config, processes))
            progress(name, time.perf_counter() - started)
            continue
        for tags in runs:
            results.append(job.execute_in_process(
                instance=instance,
                tags=tags,
                run_config=run_config,
                raise_on_error=True,
            ))
        progress(name, time.perf_counter() - started)
    return results
