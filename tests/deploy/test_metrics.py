"""The alerts process's /metrics (SPEC §12) equal the trail's counts, per bot, and stay
equal across a restart: they are read from the trail, not counted in memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.audit import AuditEventType, AuditLogger
from dashboard.exporter import parse_address
from tests.deploy.conftest import ROOT, Alerts, Sample, Service, scrape
from tests.waiting import wait_until

T = AuditEventType


def _write(directory: Path, validations: int, reasons: list[str], state: str | None) -> None:
    with AuditLogger(audit_dir=directory) as log:
        log.log_event(T.BOT_STARTED, "start")
        for _ in range(validations):
            log.log_event(T.RISK_VALIDATION, "validate_risk", symbol="BTCUSDT")
        for reason in reasons:
            log.log_event(
                T.RISK_REJECTION,
                "validate_risk",
                symbol="BTCUSDT",
                error={"reason": reason, "message": reason, "validation_failed": reason},
            )
        log.log_event(T.HEARTBEAT, "heartbeat")
        if state is not None:
            data = {"from": "active", "to": state, "reason": "test", "source": "operator"}
            log.log_event(T.TRADING_STATE_CHANGED, "set_state", additional_data=data)


def _label(name: str, **labels: str) -> Sample:
    return (name, tuple(sorted(labels.items())))


def _both_checked(metrics: dict[Sample, float]) -> dict[Sample, float] | None:
    checked = all(_label("audit_chain_intact", bot=b) in metrics for b in ("alpha", "beta"))
    return metrics if checked else None


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    root = tmp_path / "audit"
    _write(root / "alpha", 7, ["existing_position", "existing_position", "invalid_stop_loss"], None)
    _write(root / "beta", 2, ["cooldown"], "halted")
    with open(next((root / "beta").glob("audit_*.jsonl")), "ab") as fh:
        fh.write(b'{"not": "a record"}\n')
    return root


def test_metrics_equal_the_trail_per_bot_and_survive_a_restart(
    tmp_path: Path, audit_dir: Path
) -> None:
    expected = {
        _label("audit_events_total", bot="alpha", event_type="risk_validation"): 7,
        _label("audit_events_total", bot="alpha", event_type="risk_rejection"): 3,
        _label("audit_events_total", bot="alpha", event_type="bot_started"): 1,
        _label("audit_events_total", bot="alpha", event_type="order_placed"): 0,
        _label("audit_events_total", bot="beta", event_type="risk_validation"): 2,
        _label("audit_events_total", bot="beta", event_type="trading_state_changed"): 1,
        _label("audit_risk_rejections_total", bot="alpha", reason="existing_position"): 2,
        _label("audit_risk_rejections_total", bot="alpha", reason="invalid_stop_loss"): 1,
        _label("audit_risk_rejections_total", bot="beta", reason="cooldown"): 1,
        _label("audit_malformed_lines_total", bot="alpha"): 0,
        _label("audit_malformed_lines_total", bot="beta"): 1,
        _label("audit_chain_intact", bot="alpha"): 1,
        _label("trading_state", bot="alpha", state="active"): 1,
        _label("trading_state", bot="alpha", state="halted"): 0,
        _label("trading_state", bot="beta", state="halted"): 1,
        _label("trading_state", bot="beta", state="active"): 0,
        _label("alert_firing", bot="alpha", rule="risk-rejection-rate"): 0,
        _label("alert_firing", bot="beta", rule="trail-stale"): 0,
    }
    for run in range(2):
        alerts = Alerts(tmp_path, audit_dir, log=f"run{run}")
        try:
            metrics = wait_until(
                lambda a=alerts: _both_checked(scrape(a.metrics_url)),
                timeout=60,
                what="metrics of both bots, their chains checked",
            )
        finally:
            assert alerts.stop() == 0
        assert {key: metrics.get(key) for key in expected} == expected
        last_event = metrics[_label("audit_last_event_timestamp_seconds", bot="alpha")]
        last_heartbeat = metrics[_label("audit_last_heartbeat_timestamp_seconds", bot="alpha")]
        assert 0 < last_heartbeat <= last_event
        # only known bots: no "bot" for the root, which holds no trail of its own
        assert not any(dict(labels).get("bot") == "bot" for _, labels in metrics)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("OFF", None),
    ],
)
def test_metrics_address(text: str, parsed: tuple[str, int] | None) -> None:
    assert parse_address(text) == parsed


@pytest.mark.parametrize("text", ["9464", "host:", "host:99999", "host:http"])
def test_bad_metrics_address_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)


def test_a_busy_metrics_port_is_reported_and_alerting_goes_on(
    tmp_path: Path, audit_dir: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "ALERT_WEBHOOK_URL"}
        env.update(
            AUDIT_DIR=str(audit_dir),
            ALERTS_DIR=str(tmp_path / "alerts"),
            METRICS_ADDR=f"127.0.0.1:{port}",
        )
        alerts = Service(
            "alerts process",
            [sys.executable, "-m", "dashboard.alerts", "--interval", "0.3"],
            tmp_path / "busy.log",
            cwd=ROOT,
            env=env,
        )
        try:
            wait_until(
                lambda: alerts.alive() and "watching bot beta" in alerts.output(),
                timeout=60,
                what="evaluation without metrics",
            )
            assert f"metrics: cannot listen on 127.0.0.1:{port}" in alerts.output()
        finally:
            assert alerts.stop() == 0


def test_bad_metrics_address_stops_the_process_at_start(tmp_path: Path, audit_dir: Path) -> None:
    env = dict(os.environ, AUDIT_DIR=str(audit_dir), ALERTS_DIR=str(tmp_path / "alerts"))
    done = subprocess.run(
        [sys.executable, "-m", "dashboard.alerts", "--metrics-addr", "9464"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "metrics address '9464': give HOST:PORT" in done.stderr
