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
on every later tick until the bot answers or the rule resolves; either ends
that alert with an ``alert_resolved`` record and a notification.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.audit import AuditEventType, AuditLogger
from bot.control import protocol
from dashboard.alert_engine import Notification, Transition

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
        self._unreachable: set[tuple[str, str]] = set()  # (rule, bot) with an open alert

    def act(self, t: Transition, bot: str, directory: Path | None) -> None:
        """Send the rule's act for this notification, if it has one. Never raises."""
        rule = t.rule
        if rule.action is None or directory is None:
            return
        key = (rule.name, bot)
        if t.notification is Notification.FIRED:
            command = rule.action
        elif t.notification is Notification.RESOLVED and rule.resume_on_resolve:
            command = "resume"
        elif t.notification is Notification.RESOLVED:
            if self._pending.pop(key, None) is not None:  # nothing left to deliver
                self._unreachable_ends(key, "the rule resolved before the bot could be reached")
            return
        else:
            return
        self._pending[key] = (command, directory, f"alert {rule.name}: {t.text()}")
        self._deliver(key)

    def retry(self, bot: str) -> None:
        """Deliver what an unreachable bot has not received yet."""
        for key in list(self._pending):
            if key[1] == bot:
                self._deliver(key)

    def _deliver(self, key: tuple[str, str]) -> None:
        (rule, bot), (command, directory, reason) = key, self._pending[key]
        try:
            reply = self._request(directory, command, source="alert", rule=rule, reason=reason)
        except protocol.ControlError as exc:
            if key not in self._unreachable:
                self._unreachable.add(key)
                self._record(
                    AuditEventType.ALERT_FIRED,
                    key,
                    f"FIRING {UNREACHABLE_RULE} [{bot}]: could not {command} "
                    f"for rule {rule}: {exc}",
                    action=command,
                    error=str(exc),
                )
            return
        del self._pending[key]
        self._unreachable_ends(key, f"{command} delivered")
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

    def _unreachable_ends(self, key: tuple[str, str], how: str) -> None:
        if key in self._unreachable:
            self._unreachable.discard(key)
            rule, bot = key
            self._record(
                AuditEventType.ALERT_RESOLVED,
                key,
                f"RESOLVED {UNREACHABLE_RULE} [{bot}] for rule {rule}: {how}",
            )

    def _record(self, kind: AuditEventType, key: tuple[str, str], text: str, **fields: str) -> None:
        """One alert record of the ``bot-unreachable`` alert, and its notification."""
        rule, bot = key
        fired = kind is AuditEventType.ALERT_FIRED
        self._logger.log_event(
            kind,
            "circuit_breaker",
            additional_data={
                "rule": UNREACHABLE_RULE,
                "bot": bot,
                "about_rule": rule,
                "notification": (Notification.FIRED if fired else Notification.RESOLVED).value,
                "state": "firing" if fired else "normal",
                "at": self._clock(),
                "text": text,
                **fields,
            },
        )
        try:
            self._notify(text)
        except Exception:  # a notifier must never stop the evaluation loop
            log.exception("could not notify: %s", text)
