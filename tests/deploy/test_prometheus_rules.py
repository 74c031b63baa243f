"""deploy/: the Prometheus rules pass promtool's checks and unit tests, express the shipped
dashboard/alerts.toml rule for rule, and the example configs are valid for their engines."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from dashboard.alert_rules import Rule, format_duration, load_rules
from dashboard.alerts import DEFAULT_RULES_FILE
from tests.deploy.conftest import DEPLOY, need

RULES = DEPLOY / "prometheus" / "rules.yml"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=RULES.parent)


def test_promtool_checks_the_rules() -> None:
    done = _run(need("promtool"), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = _run(need("promtool"), "test", "rules", "rules_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_would_catch_a_lost_hysteresis(tmp_path: Any) -> None:
    """The tests can fail: without the clear_below branch the alert ends too early."""
    text = RULES.read_text().replace(
        "bot:risk_rejection_rate:ratio15m > 0.3", "bot:risk_rejection_rate:ratio15m > 0.5"
    )
    (tmp_path / "rules.yml").write_text(text)
    (tmp_path / "rules_test.yml").write_text((RULES.parent / "rules_test.yml").read_text())
    done = subprocess.run(
        [need("promtool"), "test", "rules", "rules_test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode != 0 and "RiskRejectionRate" in done.stdout + done.stderr


def test_example_configs_are_valid() -> None:
    prometheus = _run(
        need("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")
    )
    assert prometheus.returncode == 0, prometheus.stdout + prometheus.stderr
    amtool = _run(need("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr


def _alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {
        rule["labels"]["rule"]: rule
        for group in groups
        for rule in group["rules"]
        if "alert" in rule and "rule" in rule.get("labels", {})
    }


def _window(rule: Rule) -> str:
    return format_duration(rule.window).replace(" ", "")


@pytest.mark.parametrize("rule", load_rules(DEFAULT_RULES_FILE), ids=lambda r: r.name)
def test_each_shipped_rule_has_its_prometheus_alert(rule: Rule) -> None:
    alert = _alerts()[rule.name]
    expr = " ".join(alert["expr"].split())
    pending = alert.get("for", "0s")
    assert pending == (format_duration(rule.pending).replace(" ", "") if rule.pending else "0s")
    if rule.is_staleness:
        assert f"> {rule.stale_after:g}" in expr
        return
    metric = rule.metric.removesuffix("_rate")
    window = _window(rule)
    ratio = (
        f"bot:{metric}_rate:ratio{window}"
        if metric != "capping"
        else f"bot:capping_rate:ratio{window}"
    )
    samples = f"bot:{metric}_samples:increase{window}"
    assert f"{ratio} > {rule.fire_above:g} and {samples} >= {rule.min_samples}" in expr
    assert f"{ratio} > {rule.clear_below:g} and {samples} >= {rule.min_samples}" in expr
    assert f'ALERTS{{alertname="{alert["alert"]}", alertstate="firing"}}' in expr
