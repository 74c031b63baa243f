"""The shipped Prometheus rules and Alertmanager routing, end to end with the real engines:
the alerts process serves /metrics over a live trail, Prometheus (1 s scrapes and
evaluations, `for:` shortened to 1 s) scrapes it, and a rejection burst written by the
bot reaches a webhook on 127.0.0.1 through Alertmanager, naming the bot."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.audit import AuditEventType, AuditLogger
from tests.deploy.conftest import DEADLINE, DEPLOY, Alerts, Service, free_port, get, need
from tests.waiting import wait_until
from tests.webhook import Webhook

pytestmark = pytest.mark.slow


def _rules(target: Path) -> Path:
    """deploy/prometheus/rules.yml with every `for:` at 1 s (the expressions unchanged)."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target.write_text(yaml.safe_dump(rules))
    return target


def _alertmanager_config(target: Path, webhook_url: str) -> Path:
    """deploy/alertmanager/alertmanager.yml sending to ``webhook_url`` without waiting."""
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(group_wait="0s", group_interval="1s")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    target.write_text(yaml.safe_dump(config))
    return target


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(promql)}"
    try:
        answer = json.loads(get(url))
    except OSError:
        return []
    result: list[dict[str, Any]] = answer.get("data", {}).get("result", [])
    return result


@pytest.fixture
def bot_trail(tmp_path: Path) -> Iterator[AuditLogger]:
    with AuditLogger(audit_dir=tmp_path / "audit" / "alpha") as log:
        log.log_event(AuditEventType.BOT_STARTED, "start")
        for _ in range(3):
            log.log_event(AuditEventType.RISK_VALIDATION, "validate_risk", symbol="BTCUSDT")
        log.log_event(AuditEventType.HEARTBEAT, "heartbeat")
        yield log


def test_rejection_burst_reaches_the_webhook_through_prometheus_and_alertmanager(
    tmp_path: Path, bot_trail: AuditLogger
) -> None:
    prometheus, alertmanager = need("prometheus"), need("prometheus-alertmanager")
    hook = Webhook(path="/alertmanager")
    services: list[Service] = []
    try:
        alerts = Alerts(tmp_path, tmp_path / "audit")
        services.append(alerts)
        am_port = free_port()
        services.append(
            Service(
                "alertmanager",
                [
                    alertmanager,
                    f"--config.file={_alertmanager_config(tmp_path / 'am.yml', hook.url)}",
                    f"--storage.path={tmp_path / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                tmp_path / "alertmanager.log",
            )
        )
        prom_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(_rules(tmp_path / "rules.yml"))],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
            },
            "scrape_configs": [
                {
                    "job_name": "audit",
                    "static_configs": [{"targets": [f"127.0.0.1:{alerts.port}"]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
        prom_port = free_port()
        services.append(
            Service(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp_path / "prometheus.log",
            )
        )
        # a few scrapes of the calm trail first: the burst is then an increase
        wait_until(
            lambda: (
                all(s.alive() for s in services)
                and _query(prom_port, 'count_over_time(up{job="audit"}[1m]) >= 3')
            ),
            timeout=DEADLINE,
            what="three scrapes of the alerts process by Prometheus",
        )
        assert _query(prom_port, 'up{job="audit"} == 1')

        for _ in range(20):
            bot_trail.log_event(
                AuditEventType.RISK_REJECTION,
                "validate_risk",
                symbol="BTCUSDT",
                error={"reason": "existing_position", "message": "open", "validation_failed": "x"},
            )

        def firing() -> list[dict[str, Any]]:
            return [
                alert
                for body in list(hook.bodies)
                for alert in body.get("alerts", [])
                if alert["labels"].get("alertname") == "RiskRejectionRate"
                and alert["status"] == "firing"
            ]

        alerts_seen = wait_until(
            lambda: all(s.alive() for s in services) and firing(),
            timeout=DEADLINE,
            what="the RiskRejectionRate notification on the webhook",
        )
        labels = alerts_seen[0]["labels"]
        assert labels["bot"] == "alpha"
        assert labels["rule"] == "risk-rejection-rate"
        assert labels["severity"] == "warning"
        assert "alpha: risk rejection rate" in alerts_seen[0]["annotations"]["summary"]
        assert not any(
            a["labels"].get("alertname") == "TrailStale"
            for body in hook.bodies
            for a in body.get("alerts", [])
        )
    finally:
        for service in reversed(services):
            service.stop()
        hook.close()
