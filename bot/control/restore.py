"""What a restarted bot takes back from its trail: the trading state, the protections' inputs.

The trail is the only memory that survives a restart, and it is append-only
by day, so this reads day files newest first, lines from the end, and stops
as soon as it has what it needs: the newest ``trading_state_changed`` (every
start writes one, so that is normally in the newest file) and, back to the
start of the current UTC day or the protections' horizon, the fills, balance
queries and ``protection_triggered`` records. Lines are parsed only when they
mention a wanted event type; a malformed line is skipped, never fatal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.audit import AuditEventType, chain, reader
from bot.control.protections import Protections, Trigger
from bot.control.state import StateChange

log = logging.getLogger("bot.control")

_STATE = AuditEventType.TRADING_STATE_CHANGED.value
INPUTS = frozenset(
    {
        AuditEventType.ORDER_FILLED.value,
        AuditEventType.BALANCE_QUERY.value,
        AuditEventType.PROTECTION_TRIGGERED.value,
    }
)
"""What the protections are rebuilt from."""


@dataclass
class Restored:
    state: StateChange | None = None
    records: list[dict[str, Any]] = field(default_factory=list)  # since the horizon, oldest first


def _at(record: dict[str, Any]) -> float:
    return chain.timestamp_ns(record["timestamp"]) / 1e9


def marked_lines(data: bytes, markers: tuple[bytes, ...]) -> Iterator[bytes]:
    """The complete lines of ``data`` that hold any marker, last first, without splitting
    the rest (a torn last line is not complete)."""
    end = data.rfind(b"\n")
    if end < 0:
        return
    hits = {marker: data.rfind(marker, 0, end) for marker in markers}
    while (pos := max(hits.values(), default=-1)) >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        yield data[start : data.find(b"\n", pos)]
        for marker, at in hits.items():
            if at >= start:
                hits[marker] = data.rfind(marker, 0, start)


def _records_backwards(path: Path, kinds: frozenset[str]) -> Iterator[dict[str, Any]]:
    with reader.open_trail_file(path) as fh:
        data = fh.read()
    for line in marked_lines(data, tuple(kind.encode() for kind in kinds)):
        parsed = reader.parse_line(line)
        if isinstance(parsed, dict) and parsed.get("event_type") in kinds:
            yield parsed


def read_back(
    audit_dir: str | os.PathLike[str], *, since: float, inputs: frozenset[str] = INPUTS
) -> Restored:
    """The newest state change, and the records of the ``inputs`` kinds at or after
    ``since`` (epoch s); reading stops as soon as both are complete."""
    found = Restored()
    newest_first: list[dict[str, Any]] = []
    kinds = inputs | {_STATE}
    for path in reversed(chain.trail_files(Path(audit_dir))):
        try:
            for record in _records_backwards(path, kinds):
                at = _at(record)
                if at < since and found.state is not None:
                    break
                if record["event_type"] == _STATE and found.state is None:
                    try:
                        found.state = StateChange.from_audit(record["additional_data"], at)
                    except (KeyError, TypeError, ValueError):
                        log.warning("unreadable trading_state_changed in %s skipped", path.name)
                if at >= since and record["event_type"] in inputs:
                    newest_first.append(record)
            else:
                continue
            break
        except OSError as exc:
            log.warning("could not read %s back: %s", path.name, exc)
    found.records = newest_first[::-1]
    return found


def replay(protections: Protections, records: list[dict[str, Any]]) -> None:
    """Bring the protections up to date with what the trail says happened (oldest first)."""
    for record in records:
        at, kind = _at(record), record["event_type"]
        data = record.get("additional_data") or {}
        response = record.get("response") or {}
        if kind == AuditEventType.ORDER_FILLED.value:
            protections.on_fill(
                record.get("symbol") or "",
                str(data.get("role", "")),
                float(response.get("realized_pnl") or 0.0),
                float(response.get("commission") or 0.0),
                at,
            )
        elif kind == AuditEventType.BALANCE_QUERY.value and "wallet_balance" in response:
            wallet = float(response["wallet_balance"])
            protections.on_balance(wallet, wallet, at)
        elif kind == AuditEventType.PROTECTION_TRIGGERED.value:
            symbol = data.get("symbol")
            until = data.get("until")
            trigger = Trigger(
                str(data.get("protection")),
                None if symbol in (None, "all") else str(symbol),
                float(until) if until is not None else None,
                {},
                "read back from the trail",
            )
            protections.lock(trigger)
            protections.note_tripped(trigger.protection, at)
