"""`python -m dashboard.alerts` as a real subprocess over a real trail written with the
AuditLogger, notifying a real HTTP server on 127.0.0.1.

Every wait is a condition polled until a generous deadline (the machine may be
loaded); nothing asserts on timing; processes and servers are always cleaned up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditEventType, AuditLogger
from dashboard.alerts import read_alert_history
from tests.webhook import Webhook

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0

RULES = """
[[rules]]
name = "orders"
metric = "order_rejection_rate"
window = "15m"
fire_above = 0.5
clear_below = 0.2
min_samples = 4
pending = "0s"
"""


def wait_for(
    condition: Callable[[], Any],
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    deadline: float = DEADLINE,
) -> Any:
    """Poll ``condition`` until truthy; fail naming ``what`` (and the process's output)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"alerts process exited ({proc.returncode}) before: {what}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for: {what}")


class AlertsProcess:
    def __init__(self, tmp_path: Path, webhook_url: str | None, rules: str = RULES) -> None:
        self.audit_dir = tmp_path / "audit"
        self.alerts_dir = tmp_path / "alerts"
        rules_file = tmp_path / "rules.toml"
        rules_file.write_text(rules)
        env = {k: v for k, v in os.environ.items() if k not in ("ALERT_WEBHOOK_URL",)}
        env.update(
            PYTHONPATH=str(ROOT),
            AUDIT_DIR=str(self.audit_dir),
            ALERTS_DIR=str(self.alerts_dir),
            PYTHONUNBUFFERED="1",
            METRICS_ADDR="127.0.0.1:0",  # never the fixed default port in tests
        )
        if webhook_url:
            env["ALERT_WEBHOOK_URL"] = webhook_url
        self.stdout_path, self.stderr_path = tmp_path / "stdout", tmp_path / "stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dashboard.alerts",
                    "--rules",
                    str(rules_file),
                    "--interval",
                    "0.2",
                    "--webhook-timeout",
                    "1",
                    "--webhook-attempts",
                    "2",
                ],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=err,
            )

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def history(self, event_type: str) -> list[dict[str, Any]]:
        return [r for r in read_alert_history(self.alerts_dir) if r["event_type"] == event_type]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail("alerts process did not exit after " + signal.Signals(sig).name)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[AuditLogger]:
    with AuditLogger(tmp_path / "audit") as logger:
        logger.log_event(AuditEventType.BOT_STARTED, "start")
        yield logger


def log_orders(trail: AuditLogger, placed: int, rejected: int) -> None:
    order = {"order_type": "MARKET", "side": "BUY"}
    for _ in range(placed):
        trail.log_order_placed("BTCUSDT", order)
    for _ in range(rejected):
        trail.log_order_rejected(
            "BTCUSDT", order, {"error_code": -2019, "error_message": "Margin is insufficient."}
        )


@pytest.fixture
def running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Webhook, Any]]:
    hook = Webhook(getattr(request, "param", "ok"))
    process = AlertsProcess(tmp_path, hook.url)
    try:
        yield hook, process
    finally:
        process.kill()
        hook.close()


def test_alert_fires_notifies_webhook_records_and_resolves(
    trail: AuditLogger, running: tuple[Webhook, AlertsProcess]
) -> None:
    hook, process = running
    log_orders(trail, placed=1, rejected=3)  # 75% > 50%

    wait_for(
        lambda: any("FIRING orders" in t for t in hook.texts()), "webhook FIRING", process.proc
    )
    fired = wait_for(lambda: process.history("alert_fired"), "alert_fired record", process.proc)
    data = fired[0]["additional_data"]
    assert (data["rule"], data["value"], data["samples"]) == ("orders", 0.75, 4)
    assert set(hook.bodies[0]) == {"text"}
    wait_for(lambda: "ALERT FIRING orders" in process.stdout(), "stdout notification")

    log_orders(trail, placed=20, rejected=0)  # 3/24 = 12.5% < 20%
    wait_for(lambda: process.history("alert_resolved"), "alert_resolved record", process.proc)
    wait_for(lambda: any("RESOLVED orders" in t for t in hook.texts()), "webhook RESOLVED")

    assert process.stop(signal.SIGTERM) == 0
    files = sorted(p.name for p in process.alerts_dir.glob("*.jsonl"))
    assert files and all(f.startswith("alerts_") for f in files)
    assert "secret-token" not in process.stderr_path.read_text()  # the URL is a credential


@pytest.mark.parametrize("running", ["error", "hang"], indirect=True)
def test_failing_webhook_does_not_stop_evaluation(
    trail: AuditLogger, running: tuple[Webhook, AlertsProcess]
) -> None:
    hook, process = running
    log_orders(trail, placed=1, rejected=3)
    wait_for(lambda: process.history("alert_fired"), "alert_fired record", process.proc)
    wait_for(lambda: hook.attempts >= 1, "webhook attempted", process.proc)

    log_orders(trail, placed=20, rejected=0)
    wait_for(lambda: process.history("alert_resolved"), "alert_resolved record", process.proc)
    if hook.mode == "error":
        wait_for(lambda: hook.attempts >= 2, "webhook retried", process.proc)
    assert process.stop(signal.SIGTERM) == 0
    assert hook.bodies == []


def test_sigint_exits_zero_and_defaults_need_no_arguments(tmp_path: Path) -> None:
    """`python -m dashboard.alerts` as in the Procfile: shipped rules, logs/audit, logs/alerts."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AUDIT_DIR", "ALERTS_DIR", "ALERT_WEBHOOK_URL")
    }
    env["PYTHONPATH"] = str(ROOT)
    env["METRICS_ADDR"] = "127.0.0.1:0"  # the default 9464 is a fixed port
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dashboard.alerts"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: "5 rules from" in err_path.read_text(), "startup message", proc)
        assert (tmp_path / "logs" / "alerts").is_dir()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE)


def test_bad_rules_file_is_refused_at_start_naming_the_key(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.replace('window = "15m"', 'window = "15 min"'))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "dashboard.alerts", "--rules", str(rules)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 2
    assert f"{rules}: rules[0] 'orders': key 'window' is a bad duration" in result.stderr
    assert not (tmp_path / "logs").exists()


def test_check_prints_the_rules_and_exits(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "dashboard.alerts", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0
    assert "trail-stale: no record or heartbeat for more than 3m" in result.stdout
