"""Run the ingest jobs in-process against a Dagster instance (used by `ftops demo`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from ftops.defs.jobs import GRAPH_STEPS
from ftops.defs.partitions import partition_range
from ftops.defs.sensors import RANGE_END, RANGE_START


def open_instance() -> dg.DagsterInstance:
    """The instance `dagster dev` uses when run from the same folder.

    DAGSTER_HOME when it is set; otherwise the folder's dagster.yaml with its storage under
    `.ftops/dagster_home` (exactly what `dagster dev` does without DAGSTER_HOME).
    """
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    home = Path(".ftops/dagster_home").absolute()
    home.mkdir(parents=True, exist_ok=True)
    config_dir = os.getcwd() if Path("dagster.yaml").exists() else str(home)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), config_dir=config_dir))


def materialize_graph(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    min_ts: str,
    max_ts: str,
    progress: Callable[[str, float], None] = lambda name, seconds: None,
    log_level: str = "INFO",
) -> list[dg.ExecuteInProcessResult]:
    """Materialise the whole graph in dependency order; partitioned steps as one run over the range."""
    span = partition_range(min_ts, max_ts)
    range_tags = {RANGE_START: span[0], RANGE_END: span[1]} if span else None
    results = []
    for name, ranged in GRAPH_STEPS:
        tags = range_tags if ranged else {}
        if tags is None:
            continue
        started = time.perf_counter()
        result = defs.resolve_job_def(name).execute_in_process(
            instance=instance,
            tags=tags,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=True,
        )
        progress(name, time.perf_counter() - started)
        results.append(result)
    return results
