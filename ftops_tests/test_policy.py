"""`ftops.yaml` loading: values a person could mistype are refused with the key named."""

from __future__ import annotations

import pytest
import yaml

from ftops.policy import IngestPolicy, Policy, PolicyError, load_policy, policy_from_dict


def test_ingest_section_defaults():
    assert policy_from_dict({}).ingest == IngestPolicy(
        future_tolerance_hours=24.0, max_line_item_cost_usd=100000.0, confirmed_line_items=()
    )


def test_ingest_section_is_read():
    ingest = policy_from_dict(
        {"ingest": {"future_tolerance_hours": 0, "max_line_item_cost_usd": 500, "confirmed_line_items": ["L-1"]}}
    ).ingest
    assert (ingest.future_tolerance_hours, ingest.max_line_item_cost_usd, ingest.confirmed_line_items) == (
        0.0, 500.0, ("L-1",),
    )


@pytest.mark.parametrize(
    ("ingest", "message"),
    [
        ({"future_tolerance_hours": -1}, r"ingest\.future_tolerance_hours: -1\.0 is not allowed"),
        ({"future_tolerance_hours": float("nan")}, r"ingest\.future_tolerance_hours: nan is not allowed"),
        ({"max_line_item_cost_usd": 0}, r"ingest\.max_line_item_cost_usd: 0\.0 is not allowed"),
        ({"max_line_item_cost_usd": float("inf")}, r"ingest\.max_line_item_cost_usd: inf is not allowed"),
        ({"confirmed_line_items": "L-1"}, r"ingest\.confirmed_line_items: expected a list"),
        ({"confirmed_line_items": [7]}, r"ingest\.confirmed_line_items\[0\]: expected a string"),
        ({"tolerance": 1}, r"ingest\.tolerance: unknown key"),
    ],
)
def test_ingest_section_refuses(ingest, message):
    with pytest.raises(PolicyError, match=message):
        policy_from_dict({"ingest": ingest})


def _budget(**overrides):
    return {"budgets": {"research": {"limit_usd": 1000, **overrides}}}


def _monitoring(section, **values):
    return {"monitoring": {section: values}}


NAN = float("nan")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(_budget(limit_usd=-5), r"budgets\.research\.limit_usd: -5\.0 is not allowed", id="negative-limit"),
        pytest.param(_budget(limit_usd=NAN), r"budgets\.research\.limit_usd: nan is not allowed", id="nan-limit"),
        pytest.param(_budget(limit_usd=yaml.safe_load(".nan")), r"budgets\.research\.limit_usd: nan is not allowed", id="yaml-nan-limit"),
        pytest.param(
            _budget(ladder={"terminate_non_critical_pct": 10}),
            r"budgets\.research\.ladder\.terminate_non_critical_pct: 10\.0 is not allowed; ladder levels must rise",
            id="ladder-out-of-order",
        ),
        pytest.param(
            _budget(ladder={"switch_to_spot_pct": None, "halve_batch_pct": 99}),
            r"budgets\.research\.ladder\.terminate_non_critical_pct: 98\.0 is not allowed",
            id="ladder-out-of-order-with-a-step-off",
        ),
        pytest.param(_budget(alert_thresholds_pct=[50, 180]), r"budgets\.research\.alert_thresholds_pct\[1\]: 180\.0 is not allowed; a percentage", id="threshold-above-100"),
        pytest.param(_budget(alert_thresholds_pct=[-10]), r"budgets\.research\.alert_thresholds_pct\[0\]: -10\.0 is not allowed", id="threshold-negative"),
        pytest.param(_monitoring("cpu", alert_pct=NAN), r"monitoring\.cpu\.alert_pct: nan is not allowed", id="threshold-nan"),
        pytest.param(_monitoring("gpu_utilization", over_pct=250), r"monitoring\.gpu_utilization\.over_pct: 250\.0 is not allowed", id="utilisation-above-100"),
        pytest.param(
            _monitoring("gpu_memory", copy_util_warning_pct=97, copy_util_critical_pct=95),
            r"monitoring\.gpu_memory\.copy_util_warning_pct: 97\.0 is not allowed; must not be above monitoring\.gpu_memory\.copy_util_critical_pct",
            id="warning-above-critical",
        ),
        pytest.param(
            _monitoring("host_memory", warning_ratio=0.97, critical_ratio=0.9),
            r"monitoring\.host_memory\.warning_ratio: 0\.97 is not allowed; must not be above",
            id="warning-ratio-above-critical",
        ),
        pytest.param(
            _monitoring("learning_rate", min=0.01, max=0.001),
            r"monitoring\.learning_rate\.min: 0\.01 is not allowed; must not be above monitoring\.learning_rate\.max",
            id="lr-min-above-max",
        ),
        pytest.param(_monitoring("loss", trend_window_minutes=-10), r"monitoring\.loss\.trend_window_minutes: -10\.0 is not allowed", id="negative-window"),
        pytest.param(_monitoring("grad_norm", window_steps=-1), r"monitoring\.grad_norm\.window_steps: -1 is not allowed", id="negative-window-steps"),
        pytest.param(_monitoring("host_memory", critical_ratio=1.5), r"monitoring\.host_memory\.critical_ratio: 1\.5 is not allowed; a ratio of a whole", id="ratio-above-1"),
        pytest.param(_monitoring("throughput", degradation_ratio=2), r"monitoring\.throughput\.degradation_ratio: 2\.0 is not allowed", id="degradation-ratio-above-1"),
        pytest.param(_monitoring("loss", divergence_ratio=0.5), r"monitoring\.loss\.divergence_ratio: 0\.5 is not allowed; a multiple", id="multiple-below-1"),
        pytest.param({"prices": {"a100": {"on_demand_usd_per_hour": -3}}}, r"prices\.a100\.on_demand_usd_per_hour: -3\.0 is not allowed", id="negative-price"),
        pytest.param({"prices": {"a100": {"on_demand_usd_per_hour": 3, "spot_usd_per_hour": -1}}}, r"prices\.a100\.spot_usd_per_hour: -1\.0 is not allowed", id="negative-spot-price"),
        pytest.param({"routes": [{"severity": "critical", "notifiers": ["log", "pagerduty"]}]}, r"routes\[0\]\.notifiers\[1\]: 'pagerduty' is not allowed; allowed values: 'log', 'webhook', 'slack', 'alertmanager'", id="unknown-notifier"),
        pytest.param({"job_tag_key": ""}, r"job_tag_key: '' is not allowed; the tag key must not be empty", id="empty-job-tag-key"),
        pytest.param({"budget_tag_key": "  "}, r"budget_tag_key: '  ' is not allowed", id="blank-budget-tag-key"),
        pytest.param(_budget(limit_usd="lots"), r"budgets\.research\.limit_usd: expected a number, got 'lots'", id="limit-not-a-number"),
        pytest.param(_budget(mode=True), r"budgets\.research\.mode: True is not allowed; allowed values: 'off', 'dry_run', 'enforce'", id="mode-on"),
    ],
)
def test_refused_with_the_key_named(data, message):
    with pytest.raises(PolicyError, match=message):
        policy_from_dict(data)


def test_refusals_are_one_line():
    with pytest.raises(PolicyError) as info:
        policy_from_dict(_budget(ladder={"terminate_non_critical_pct": 10}))
    assert "\n" not in str(info.value)


def test_duplicate_yaml_key_is_refused(tmp_path):
    config = tmp_path / "ftops.yaml"
    config.write_text("budgets:\n  research:\n    limit_usd: 100\n    mode: enforce\n    limit_usd: 100000\n")
    with pytest.raises(PolicyError) as info:
        load_policy(config)
    assert str(info.value) == (
        f"{config}: not valid YAML at line 5, column 5: duplicate key 'limit_usd' (each key may appear once per section)"
    )


def test_duplicate_section_is_refused(tmp_path):
    config = tmp_path / "ftops.yaml"
    config.write_text("budgets:\n  research:\n    limit_usd: 100\nbudgets:\n  other:\n    limit_usd: 5\n")
    with pytest.raises(PolicyError, match="duplicate key 'budgets'"):
        load_policy(config)


def test_unquoted_off_and_exponent_limit_work(tmp_path):
    # YAML 1.1 reads `off` as false and `1e6` (no dot) as a string; both mean what a person wrote
    config = tmp_path / "ftops.yaml"
    config.write_text("budgets:\n  research:\n    limit_usd: 1e6\n    mode: off\n  prod:\n    limit_usd: 2.5E3\n    mode: false\n")
    budgets = load_policy(config).budgets
    assert (budgets["research"].mode, budgets["research"].limit_usd) == ("off", 1_000_000.0)
    assert (budgets["prod"].mode, budgets["prod"].limit_usd) == ("off", 2500.0)


def test_valid_orderings_and_disabled_steps_are_accepted():
    policy = policy_from_dict({
        **_budget(limit_usd=0, ladder={"switch_to_spot_pct": None, "halve_batch_pct": 95, "terminate_non_critical_pct": 95}),
        "monitoring": {"gpu_memory": {"used_ratio_warning": 0.9, "used_ratio_critical": None}},
        "routes": [{"severity": "critical", "notifiers": ["slack", "alertmanager", "webhook", "log"]}],
    })
    assert policy.budgets["research"].ladder.terminate_non_critical_pct == 95.0
    assert policy.routes[0].notifiers == ("slack", "alertmanager", "webhook", "log")


def test_the_default_policy_is_valid():
    # the validation must not refuse the spec's own defaults
    assert policy_from_dict({}) == Policy()
