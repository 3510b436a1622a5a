"""A real Prometheus scrapes `ftops serve-metrics` and `ftops agent`, each a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ftops_tests.conftest import REPO_ROOT
from ftops_tests.services import free_port, start_prometheus, stop_process_group, wait_for
from ftops_tests.test_deploy_prometheus import _rules
from ftops_tests.test_exporter import write_small_warehouse
from ftops_tests.test_grafana_dashboard import dashboard_exprs


def _start(tmp_path: Path, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process below)
    return subprocess.Popen([sys.executable, "-m", "ftops.cli", *argv], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _query(url: str, promql: str) -> list[dict]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.mark.integration
def test_prometheus_reads_budget_usage_from_the_exporter_and_gpu_series_from_the_agent(tmp_path: Path) -> None:
    warehouse = write_small_warehouse(tmp_path / "wh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FTOPS_")}
    env.update(PYTHONPATH=str(REPO_ROOT), FTOPS_WAREHOUSE=str(warehouse))
    exporter_port, agent_port = free_port(), free_port()
    processes = [
        _start(tmp_path, "exporter", ["serve-metrics", "--port", str(exporter_port), "--cache-seconds", "1"], env),
        _start(tmp_path, "agent", ["agent", "--inbox", str(tmp_path / "inbox"), "--job-id", "j1", "--interval",
                                   "0.5", "--port", str(agent_port)], env),
    ]
    prometheus = None
    try:
        for port, path in ((exporter_port, "health"), (agent_port, "metrics")):
            wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/{path}", timeout=2).status_code == 200,
                     timeout_s=90, what=f"/{path} on port {port}")
        url, prometheus = start_prometheus(tmp_path, [f"127.0.0.1:{exporter_port}", f"127.0.0.1:{agent_port}"])
        usage = wait_for(lambda: _query(url, 'ftops_budget_usage_ratio{budget_category="research"}'),
                         timeout_s=60, what="the budget usage series in Prometheus")
        assert len(usage) == 1 and float(usage[0]["value"][1]) == pytest.approx(450.0 / 1000.0)
        assert usage[0]["metric"]["period"] == "month"
        heartbeat = wait_for(lambda: _query(url, 'ftops_heartbeat{job_id="j1"}'), timeout_s=60,
                             what="the agent's heartbeat in Prometheus")
        assert float(heartbeat[0]["value"][1]) == 1.0
        up = {r["metric"]["instance"]: r["value"][1] for r in _query(url, "up")}
        assert up == {f"127.0.0.1:{exporter_port}": "1", f"127.0.0.1:{agent_port}": "1"}
        # every query of the dashboard and the PrometheusRule is PromQL this Prometheus accepts
        grafana_only = ("label_values(",)  # a Grafana template function, not PromQL
        for expr in [*(e for e in dashboard_exprs() if not e.startswith(grafana_only)), *(r["expr"] for r in _rules())]:
            _query(url, expr.replace("$job_id", ".*"))
        loss = _query(url, 'ftops_training_loss{job_id=~".*"}')
        assert [(r["metric"]["job_id"], float(r["value"][1])) for r in loss] == [("j1", 1.2)]
    finally:
        if prometheus is not None:
            stop_process_group(prometheus)
        for process in processes:
            stop_process_group(process)
    assert [p.returncode for p in processes] == [0, 0], [
        (tmp_path / f"{n}.log").read_text(errors="replace")[-2000:] for n in ("exporter", "agent")]
