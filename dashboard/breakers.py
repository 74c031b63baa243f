"""Circuit breakers (SPEC §11): an alert rule with ``action`` acts on the bot it fired for.

When such a rule fires, the alerts process asks the bot, over the control
channel of its audit directory (``bot.control.protocol``, the only module of
the bot the dashboard may import besides ``bot.audit``), to ``reduce`` or
``halt`` with ``source = "alert"`` and the rule's name; the bot records the
change. When it resolves and ``resume_on_resolve`` is set, it asks the bot to
resume; the bot does so only while the rule's own change is still the last
one (an operator or another rule may have acted since).

A bot that cannot be reached when its rule fires is an alert of its own: an
``alert_fired`` record for rule ``bot-unreachable`` (naming the rule and the
action that could not be delivered) and a notification. The act is retried
on every later tick until the bot answers or the rule resolves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.audit import AuditEventType, AuditLogger
from bot.control import protocol
from dashboard.alert_rules import Notification, Transition

log = logging.getLogger("dashboard.breakers")

UNREACHABLE_RULE = "bot-unreachable"

Request = Callable[..., dict[str, Any]]
"""request(audit_dir, command, **fields) -> final reply; protocol.request's shape."""


class CircuitBreaker:
    def __init__(
        self,
        logger: AuditLogger,
        notify: Callable[[str], None],
        *,
        request: Request = protocol.request,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._logger = logger
        self._notify = notify
        self._request = request
        self._clock = clock
        # (rule, bot) -> (command, directory, reason) not yet delivered
        self._pending: dict[tuple[str, str], tuple[str, Path, str]] = {}

    def act(self, t: Transition, bot: str, directory: Path | None) -> None:
        """Send the rule's act for this notification, if it has one. Never raises."""
        rule = t.rule
        if rule.action is None or directory is None:
            return
        if t.notification is Notification.FIRED:
            command = rule.action
        elif t.notification is Notification.RESOLVED and rule.resume_on_resolve:
            command = "resume"
        elif t.notification is Notification.RESOLVED:
            self._pending.pop((rule.name, bot), None)  # nothing left to deliver
            return
        else:
            return
        reason = f"alert {rule.name}: {t.text()}"
        self._pending[(rule.name, bot)] = (command, directory, reason)
        self._deliver(rule.name, bot, first=True)

    def retry(self, bot: str) -> None:
        """Deliver what an unreachable bot has not received yet."""
        for rule, pending_bot in list(self._pending):
            if pending_bot == bot:
                self._deliver(rule, bot, first=False)

    def _deliver(self, rule: str, bot: str, *, first: bool) -> None:
        command, directory, reason = self._pending[(rule, bot)]
        try:
            reply = self._request(directory, command, source="alert", rule=rule, reason=reason)
        except protocol.ControlError as exc:
            if first:
                self._unreachable(rule, bot, command, str(exc))
            return
        del self._pending[(rule, bot)]
        if not reply.get("ok"):
            log.error("bot %s refused %s from rule %s: %s", bot, command, rule, reply.get("error"))
            return
        log.info(
            "bot %s: %s from rule %s %s; state %s",
            bot,
            command,
            rule,
            "applied" if reply.get("changed") else "left the state as it was",
            reply.get("state"),
        )

    def _unreachable(self, rule: str, bot: str, command: str, error: str) -> None:
        text = f"FIRING {UNREACHABLE_RULE} [{bot}]: could not {command} for rule {rule}: {error}"
        self._logger.log_event(
            AuditEventType.ALERT_FIRED,
            "circuit_breaker",
            additional_data={
                "rule": UNREACHABLE_RULE,
                "bot": bot,
                "about_rule": rule,
                "action": command,
                "notification": Notification.FIRED.value,
                "state": "firing",
                "error": error,
                "at": self._clock(),
                "text": text,
            },
        )
        try:
            self._notify(text)
        except Exception:  # a notifier must never stop the evaluation loop
            log.exception("could not notify: %s", text)
