"""deploy/grafana/ftops-dashboard.json queries only series that ftops serves, with the panels asked for."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ftops.agent import Agent
from ftops.exporter import WarehouseExporter
from ftops_tests.conftest import REPO_ROOT
from ftops_tests.test_agent import TWO_GPUS, FakeNVML
from ftops_tests.test_exporter import WRITTEN_AT, write_small_warehouse

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "ftops-dashboard.json"
FTOPS_NAME = re.compile(r"\bftops_[A-Za-z0-9_]+")


def _names(text: str) -> set[str]:
    families = list(text_string_to_metric_families(text))
    return {f.name for f in families} | {s.name for f in families for s in f.samples}


def served_metric_names(tmp_path: Path) -> set[str]:
    """Every metric name the exporter and the agent serve, from a real scrape of each (not a hand list)."""
    exporter = WarehouseExporter(str(write_small_warehouse(tmp_path / "wh")), clock=lambda: WRITTEN_AT)
    names = _names(generate_latest(exporter.registry()).decode())
    agent = Agent(tmp_path / "inbox", job_id="j1", host="h", nvml=FakeNVML(TWO_GPUS))
    try:
        agent.sample_once()
        names |= _names(generate_latest(agent.registry).decode())
    finally:
        agent.close()
    return names


def queried_metric_names(exprs) -> set[str]:
    """ftops metric names in PromQL expressions (all of ftops' series start with `ftops_`)."""
    return {name for expr in exprs for name in FTOPS_NAME.findall(expr)}


def _panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in _panels() for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_every_queried_metric_is_served(tmp_path):
    served = served_metric_names(tmp_path)
    queried = queried_metric_names(dashboard_exprs())
    assert len(queried) >= 15
    assert queried <= served, f"not served by the exporter or the agent: {sorted(queried - served)}"


def test_the_panels_asked_for_exist():
    by_metric: dict[str, set[str]] = {}
    for panel in _panels():
        for name in queried_metric_names(t["expr"] for t in panel["targets"]):
            by_metric.setdefault(name, set()).add(panel["type"])
    assert "timeseries" in by_metric["ftops_training_loss"]  # loss trend
    assert "gauge" in by_metric["ftops_gpu_utilization_pct"]
    assert by_metric["ftops_gpu_memory_used_ratio"] and by_metric["ftops_samples_per_second"]  # memory, throughput
    assert "timeseries" in by_metric["ftops_job_cost_per_hour_usd"]
    assert "bargauge" in by_metric["ftops_budget_usage_ratio"]
    assert {"stat", "table"} <= by_metric["ftops_alerts_firing"]  # firing alerts


def test_panels_do_not_overlap_and_use_the_datasource_variable():
    panels = _panels()
    cells = {}
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    assert len({p["id"] for p in json.loads(DASHBOARD.read_text())["panels"]}) == len(
        json.loads(DASHBOARD.read_text())["panels"])
