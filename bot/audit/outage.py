"""The outage buffer: records that could not be written, held until the trail is writable.

SPEC §7: records that cannot be written (disk full, permissions) are held in a
bounded buffer and written when possible; what had to be dropped is recorded as
``audit_gap`` with exact counts. Records are held *before* they are chained, so a
dropped record never breaks the chain: the ``audit_gap`` record sits where the
dropped records would be. This module only keeps the books; the chain writer
decides when to hold and when to drain.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bot.audit.stats import AuditStats

log = logging.getLogger("bot.audit")


@dataclass
class Held:
    """A timestamped, serialized record not yet chained (``payload`` lacks its closing brace)."""

    day: str
    payload: bytes
    event_type: str
    timestamp: str


@dataclass
class Outage:
    """What happened while the trail was unwritable; becomes one ``audit_gap`` record."""

    since: str
    first_error: str
    write_errors: int = 0
    held: int = 0
    dropped: int = 0
    dropped_by_type: Counter[str] = field(default_factory=Counter)
    first_dropped: str | None = None
    last_dropped: str | None = None

    def gap_data(self) -> dict[str, Any]:
        """The ``additional_data`` of the ``audit_gap`` record that closes this outage."""
        data: dict[str, Any] = {
            "reason": "audit_trail_unwritable",
            "unwritable_since": self.since,
            "first_error": self.first_error,
            "write_errors": self.write_errors,
            "held_then_written": self.held,
            "dropped_records": self.dropped,
            "dropped_by_type": dict(self.dropped_by_type),
        }
        if self.dropped:
            data["first_dropped_timestamp"] = self.first_dropped
            data["last_dropped_timestamp"] = self.last_dropped
        return data


class OutageBuffer:
    """Held records (at most ``limit``) and the open outage, if any. Not thread-safe:
    the chain writer calls it under its lock."""

    def __init__(self, limit: int, stats: AuditStats) -> None:
        self.limit = limit
        self.held: list[Held] = []
        self.outage: Outage | None = None
        self._stats = stats

    @property
    def empty(self) -> bool:
        return not self.held and self.outage is None

    def note_error(self, exc: OSError, stamp: str) -> None:
        """A write failed at ``stamp``: open the outage (once) and count the error."""
        self._stats.write_errors += 1
        if self.outage is None:
            self.outage = Outage(
                since=stamp, first_error=errno.errorcode.get(exc.errno or 0, str(exc))
            )
            log.warning("audit trail not writable (%s); holding records in memory", exc)
        self.outage.write_errors += 1

    def hold(self, item: Held) -> None:
        if len(self.held) >= self.limit:
            self.drop(item)
            return
        self.held.append(item)
        self._stats.held += 1
        if self.outage is not None:
            self.outage.held += 1

    def drop(self, item: Held) -> None:
        self._stats.dropped += 1
        self._stats.dropped_by_type[item.event_type] += 1
        outage = self.outage
        if outage is not None:
            outage.dropped += 1
            outage.dropped_by_type[item.event_type] += 1
            outage.first_dropped = outage.first_dropped or item.timestamp
            outage.last_dropped = item.timestamp

    def close_outage(self) -> Outage | None:
        """The outage just ended (its gap record was written): forget and report it."""
        outage, self.outage = self.outage, None
        if outage is not None:
            log.warning(
                "audit trail writable again; %d records held then written, %d dropped",
                outage.held,
                outage.dropped,
            )
        return outage
