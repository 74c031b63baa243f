"""The alerts trail: each notification as an audit record, and reading them back.

``alert_fired`` / ``alert_resolved`` records are written with the project's
AuditLogger to ``ALERTS_DIR`` (default logs/alerts) in ``alerts_YYYYMMDD.jsonl``
files of the audit record format, hash-chained too. Their ``additional_data`` can
be read without the rules file; the dashboard shows them and a restarted alerts
process resumes the alerts they left open.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from bot.audit import AuditEventType, AuditLogger, chain, reader, trails
from dashboard.alert_engine import Notification, Transition

log = logging.getLogger("dashboard.alerts")  # the alerts process's log, one name for all its parts

DEFAULT_ALERTS_DIR = "logs/alerts"
ALERTS_FILE_PREFIX = chain.ALERTS_FILE_PREFIX
ALERT_EVENT_TYPES = frozenset(
    {AuditEventType.ALERT_FIRED.value, AuditEventType.ALERT_RESOLVED.value}
)


def read_alert_history(
    alerts_dir: str | os.PathLike[str] = DEFAULT_ALERTS_DIR, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """``alert_fired`` / ``alert_resolved`` records of an alerts directory, oldest first
    (the last ``limit`` when given). Malformed lines are skipped; a missing directory
    is an empty history."""
    records: list[dict[str, Any]] = []
    for path in chain.trail_files(Path(alerts_dir), prefix=ALERTS_FILE_PREFIX):
        try:
            lines = list(reader.iter_lines(path))
        except OSError as exc:  # e.g. a truncated .gz: show what can be read elsewhere
            log.warning("cannot read %s: %s", path, exc)
            continue
        for _, line in lines:
            parsed = reader.parse_line(line)
            if isinstance(parsed, dict) and parsed["event_type"] in ALERT_EVENT_TYPES:
                records.append(parsed)
    return records[-limit:] if limit else records


def alert_record_data(t: Transition, bot: str = trails.DEFAULT_BOT) -> dict[str, Any]:
    """``additional_data`` of an alert record: enough to read it without the rules file."""
    rule = t.rule
    data: dict[str, Any] = {
        "rule": rule.name,
        "bot": bot,
        "metric": rule.metric,
        "notification": t.notification.value if t.notification else None,
        "state": t.state.value,
        "previous_state": t.previous.value,
        "value": t.value,
        "samples": t.samples,
        "fire_above": rule.fire_above,
        "clear_below": rule.clear_below,
        "at": t.at,
        "active_since": t.active_since,
        "reason": t.reason,
        "text": t.text(),
    }
    if rule.is_staleness:
        data["stale_after_seconds"] = rule.stale_after
    else:
        data.update(
            window_seconds=rule.window,
            min_samples=rule.min_samples,
            symbol=rule.symbol,
        )
    data["pending_seconds"] = rule.pending
    data["repeat_seconds"] = rule.repeat
    return data


class AlertRecorder:
    """Writes notifications into the alerts trail with the project's AuditLogger."""

    def __init__(self, logger: AuditLogger) -> None:
        self._logger = logger

    def record(self, t: Transition, bot: str = trails.DEFAULT_BOT) -> None:
        if t.notification is None:
            return
        kind = (
            AuditEventType.ALERT_RESOLVED
            if t.notification is Notification.RESOLVED
            else AuditEventType.ALERT_FIRED
        )
        self._logger.log_event(
            kind,
            "evaluate_alert_rule",
            symbol=t.rule.symbol,
            additional_data=alert_record_data(t, bot),
        )

    def close(self) -> None:
        self._logger.close()
