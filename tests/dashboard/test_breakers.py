"""Circuit breakers (SPEC §11) over a real control socket: what is sent when, and an
unreachable bot as an alert of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bot.audit import AuditLogger
from bot.control.server import ControlServer, Peer
from dashboard.alert_engine import AlertState, Notification, Transition
from dashboard.alert_rules import Rule, RulesError, parse_rules
from dashboard.breakers import UNREACHABLE_RULE, CircuitBreaker

RULE = Rule(
    name="orders",
    metric="order_rejection_rate",
    fire_above=0.5,
    clear_below=0.2,
    window=900.0,
    action="halt",
    resume_on_resolve=True,
)


def transition(rule: Rule, notification: Notification) -> Transition:
    state = AlertState.FIRING if notification is Notification.FIRED else AlertState.NORMAL
    return Transition(rule, AlertState.PENDING, state, 1000.0, 0.9, 10, "test", notification)


class FakeBot:
    """A real ControlServer whose handler records what it was asked."""

    def __init__(self, audit_dir: Path) -> None:
        audit_dir.mkdir(parents=True, exist_ok=True)
        self.audit_dir = audit_dir
        self.asked: list[dict[str, Any]] = []
        self.server = ControlServer(audit_dir, self.handle)

    def handle(self, message: dict[str, Any], peer: Peer) -> Iterator[dict[str, Any]]:
        self.asked.append(message)
        yield {"final": True, "ok": True, "changed": True, "state": "halted"}


@pytest.fixture
def alerts_log(tmp_path: Path) -> Iterator[AuditLogger]:
    logger = AuditLogger(tmp_path / "alerts", file_prefix="alerts_")
    yield logger
    logger.close()


def alert_records(logger: AuditLogger) -> list[dict[str, Any]]:
    logger.flush()
    return [
        orjson.loads(line)
        for path in sorted(logger.audit_dir.glob("alerts_*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def test_firing_asks_the_bot_to_halt_and_resolving_to_resume(
    tmp_path: Path, alerts_log: AuditLogger
) -> None:
    bot = FakeBot(tmp_path / "audit")
    bot.server.start()
    try:
        breaker = CircuitBreaker(alerts_log, notify=lambda text: None)
        breaker.act(transition(RULE, Notification.FIRED), "bot", bot.audit_dir)
        breaker.act(transition(RULE, Notification.REPEAT), "bot", bot.audit_dir)
        breaker.act(transition(RULE, Notification.RESOLVED), "bot", bot.audit_dir)
    finally:
        bot.server.close()
    assert [(m["command"], m["source"], m["rule"]) for m in bot.asked] == [
        ("halt", "alert", "orders"),
        ("resume", "alert", "orders"),
    ]
    assert not os.path.exists(bot.server.path)  # the socket goes with the server


def test_a_rule_without_action_never_reaches_the_bot(
    tmp_path: Path, alerts_log: AuditLogger
) -> None:
    bot = FakeBot(tmp_path / "audit")
    bot.server.start()
    try:
        plain = Rule(name="plain", metric="capping_rate", fire_above=0.5, clear_below=0.2)
        CircuitBreaker(alerts_log, notify=lambda text: None).act(
            transition(plain, Notification.FIRED), "bot", bot.audit_dir
        )
    finally:
        bot.server.close()
    assert bot.asked == []


def test_an_unreachable_bot_is_an_alert_and_the_act_is_retried(
    tmp_path: Path, alerts_log: AuditLogger
) -> None:
    notified: list[str] = []
    breaker = CircuitBreaker(alerts_log, notify=notified.append)
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    breaker.act(transition(RULE, Notification.FIRED), "bot", audit_dir)

    [record] = alert_records(alerts_log)
    assert record["event_type"] == "alert_fired"
    data = record["additional_data"]
    assert (data["rule"], data["about_rule"], data["action"], data["bot"]) == (
        UNREACHABLE_RULE,
        "orders",
        "halt",
        "bot",
    )
    assert len(notified) == 1 and "could not halt" in notified[0]
    breaker.retry("bot")  # still unreachable: the open alert is not notified again
    assert len(alert_records(alerts_log)) == 1 and len(notified) == 1

    bot = FakeBot(audit_dir)
    bot.server.start()
    try:
        breaker.retry("bot")
        breaker.retry("bot")  # delivered once, not again
    finally:
        bot.server.close()
    assert [m["command"] for m in bot.asked] == ["halt"]
    records = alert_records(alerts_log)
    assert [r["event_type"] for r in records] == ["alert_fired", "alert_resolved"]
    assert records[-1]["additional_data"]["rule"] == UNREACHABLE_RULE
    assert "halt delivered" in notified[-1]


def test_the_unreachable_alert_ends_when_its_rule_resolves_undelivered(
    tmp_path: Path, alerts_log: AuditLogger
) -> None:
    notified: list[str] = []
    breaker = CircuitBreaker(alerts_log, notify=notified.append)
    plain = Rule(name="x", metric="capping_rate", fire_above=0.5, clear_below=0.2, action="reduce")
    breaker.act(transition(plain, Notification.FIRED), "bot", tmp_path)
    breaker.act(transition(plain, Notification.RESOLVED), "bot", tmp_path)
    breaker.retry("bot")  # nothing pending any more
    assert [r["event_type"] for r in alert_records(alerts_log)] == ["alert_fired", "alert_resolved"]
    assert "resolved before the bot could be reached" in notified[-1]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('action = "stop"', "key 'action' must be one of reduce, halt"),
        ("resume_on_resolve = 1", "key 'resume_on_resolve' must be true or false"),
        ("resume_on_resolve = true", "key 'resume_on_resolve' needs an action"),
        ("bot = 3", "key 'bot' must be a bot id"),
    ],
)
def test_a_bad_breaker_key_is_refused_naming_it(extra: str, problem: str) -> None:
    text = f"""
[[rules]]
name = "x"
metric = "capping_rate"
window = "1m"
fire_above = 0.5
{extra}
"""
    with pytest.raises(RulesError, match=problem):
        parse_rules(text)


def test_breaker_keys_are_read() -> None:
    [rule] = parse_rules(
        '[[rules]]\nname = "x"\nmetric = "staleness"\nstale_after = "1m"\n'
        'action = "reduce"\nresume_on_resolve = true\nbot = "alpha"\n'
    )
    assert (rule.action, rule.resume_on_resolve, rule.bot) == ("reduce", True, "alpha")
    assert "reduces the bot" in rule.describe()
