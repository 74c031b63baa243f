"""The alerts process's multi-bot loop (SPEC §10, §12): every rule evaluated for each bot
separately, a rule with `bot` only for that bot, alert records naming the bot, and a
restart resuming each bot's open alerts — real trails, real TrailStores, real logger."""

from __future__ import annotations

from pathlib import Path

from bot.audit import AuditEventType, AuditLogger
from dashboard.alert_fleet import AlertFleet
from dashboard.alert_records import ALERTS_FILE_PREFIX, AlertRecorder, read_alert_history
from dashboard.alert_rules import Rule


def rule(name: str, bot: str | None = None) -> Rule:
    return Rule(
        name=name,
        metric="risk_rejection_rate",
        fire_above=0.5,
        clear_below=0.3,
        window=900.0,
        min_samples=4,
        bot=bot,
    )


def write(directory: Path, validations: int, rejections: int) -> None:
    with AuditLogger(audit_dir=directory) as log:
        log.log_event(AuditEventType.HEARTBEAT, "heartbeat")
        for _ in range(validations):
            log.log_event(AuditEventType.RISK_VALIDATION, "validate_risk")
        for _ in range(rejections):
            log.log_event(
                AuditEventType.RISK_REJECTION, "validate_risk", error={"reason": "cooldown"}
            )


def fleet(tmp_path: Path, rules: list[Rule], printed: list[str]) -> tuple[AlertFleet, AuditLogger]:
    logger = AuditLogger(tmp_path / "alerts", file_prefix=ALERTS_FILE_PREFIX)
    history = read_alert_history(tmp_path / "alerts")
    return (
        AlertFleet(tmp_path / "audit", rules, AlertRecorder(logger), history, out=printed.append),
        logger,
    )


def test_each_bot_has_its_own_alert_state_and_records(tmp_path: Path) -> None:
    write(tmp_path / "audit" / "alpha", validations=1, rejections=5)  # 83%
    write(tmp_path / "audit" / "beta", validations=9, rejections=1)  # 10%
    printed: list[str] = []
    rules = [rule("rejections"), rule("beta-only", bot="beta")]
    alerts, logger = fleet(tmp_path, rules, printed)
    try:
        alerts.tick()
        assert set(alerts.services) == {"alpha", "beta"}
        assert [r.name for r in alerts.services["alpha"].engine.rules] == ["rejections"]
        assert [r.name for r in alerts.services["beta"].engine.rules] == ["rejections", "beta-only"]
        metrics = {m.bot: dict(m.firing) for m in alerts.metrics()}
        assert metrics == {
            "alpha": {"rejections": True},
            "beta": {"rejections": False, "beta-only": False},
        }
    finally:
        alerts.close()
        logger.close()
    fired = read_alert_history(tmp_path / "alerts")
    assert [(r["event_type"], r["additional_data"]["bot"]) for r in fired] == [
        ("alert_fired", "alpha")
    ]
    assert [line.split(" ALERT ", 1)[1].split(":")[0] for line in printed] == [
        "[alpha] FIRING rejections"
    ]

    # a restart resumes alpha's open alert (no second fire) and keeps beta normal
    printed.clear()
    alerts, logger = fleet(tmp_path, rules, printed)
    try:
        alerts.tick()
        assert alerts.services["alpha"].firing() == {"rejections": True}
    finally:
        alerts.close()
        logger.close()
    assert printed == []
    assert len(read_alert_history(tmp_path / "alerts")) == 1


def test_a_bot_appearing_later_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    alerts, logger = fleet(tmp_path, [rule("rejections")], [])
    try:
        alerts.tick()
        assert set(alerts.services) == {"bot"}  # nothing yet: the directory itself
        write(tmp_path / "audit" / "gamma", validations=1, rejections=5)
        alerts.tick()
        assert set(alerts.services) == {"gamma"}
        assert alerts.services["gamma"].firing() == {"rejections": True}
    finally:
        alerts.close()
        logger.close()
