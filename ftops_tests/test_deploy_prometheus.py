"""deploy/kubernetes: the PrometheusRule passes promtool (check and unit tests), its rules read only
served series, and the Services, ServiceMonitors and the exporter Deployment agree on names and ports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ftops import agent, exporter
from ftops.schemas import CATEGORIES, SEVERITIES
from ftops_tests.conftest import REPO_ROOT
from ftops_tests.services import require_binary
from ftops_tests.test_grafana_dashboard import queried_metric_names, served_metric_names

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
RULE = KUBERNETES / "prometheusrule.yaml"
RULE_TESTS = KUBERNETES / "prometheusrule_test.yaml"


def _rules() -> list[dict]:
    spec = yaml.safe_load(RULE.read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def _docs(name: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d}


@pytest.fixture
def rules_folder(tmp_path: Path) -> Path:
    """The PrometheusRule's spec as a plain rules file, next to a copy of the rule tests (as their header says)."""
    require_binary("promtool", "the PrometheusRule is checked with promtool")
    spec = yaml.safe_load(RULE.read_text())["spec"]
    (tmp_path / "ftops-rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return tmp_path


def _promtool(folder: Path, *args: str) -> str:
    result = subprocess.run(["promtool", *args], cwd=folder, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_rules(rules_folder):
    out = _promtool(rules_folder, "check", "rules", "ftops-rules.yaml")
    assert f"SUCCESS: {len(_rules())} rules found" in out


def test_promtool_unit_tests_pass_with_rules_firing(rules_folder):
    _promtool(rules_folder, "test", "rules", RULE_TESTS.name)
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert len(fired) >= 3, fired
    assert {"FtopsGpuUnderutilized", "FtopsLossNonFinite", "FtopsBudgetUsage"} <= fired


def test_the_unit_tests_fail_when_a_rule_changes(rules_folder):
    """The rule tests are not vacuous: a threshold moved in the rules breaks them."""
    rules = (rules_folder / "ftops-rules.yaml").read_text()
    (rules_folder / "ftops-rules.yaml").write_text(rules.replace("ftops_gpu_utilization_pct < 60",
                                                                 "ftops_gpu_utilization_pct < 30"))
    result = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], cwd=rules_folder,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "FtopsGpuUnderutilized" in result.stdout + result.stderr


def test_rules_read_served_series_and_use_ftops_vocabularies(tmp_path):
    rules = _rules()
    assert queried_metric_names(r["expr"] for r in rules) <= served_metric_names(tmp_path)
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES and rule["labels"]["category"] in CATEGORIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_services_monitors_and_deployment_agree():
    monitors = _docs("servicemonitor.yaml")
    ports = {"ftops-exporter": exporter.DEFAULT_PORT, "ftops-agent": agent.DEFAULT_PORT}
    for name, port in ports.items():
        service, monitor = monitors[("Service", name)], monitors[("ServiceMonitor", name)]
        assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics"}]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
        assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
    # the rules' `up{job=...}` is the Service's name, which the ServiceMonitor makes the job label
    jobs = {rule["expr"].split('job="')[1].split('"')[0] for rule in _rules() if 'up{job="' in rule["expr"]}
    assert jobs == set(ports)

    deployment = _docs("exporter.yaml")[("Deployment", "ftops-exporter")]
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"].items() >= monitors[("Service", "ftops-exporter")]["spec"]["selector"].items()
    (container,) = pod["spec"]["containers"]
    assert container["command"][:4] == ["ftops", "serve-metrics", "--host", "0.0.0.0"]
    assert container["ports"] == [{"name": "metrics", "containerPort": exporter.DEFAULT_PORT}]
    from ftops.cli import build_parser

    build_parser().parse_args(container["command"][1:])  # the Deployment's command line is one ftops accepts
