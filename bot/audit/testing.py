"""Test helper: capture the records an AuditLogger writes, as dicts, without reading files.

Like ``structlog.testing.capture_logs``::

    with capture_audit(logger) as records:
        risk.validate_risk(signal)
    assert records.types() == ["risk_rejection"]
    assert records.of_type("risk_rejection")[0]["error"]["reason"] == "invalid_stop_loss"

Each captured record is exactly what the trail gets between its timestamp and its
chain fields (event_type, operation, symbol, trace_id, the data objects, after
redaction), in the order the logger accepted them. The records still go to the
trail as usual, so a test can also verify it. Not captured: the ``audit_gap``
record the writer adds when an outage ends (it is written inside the writer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import orjson

from bot.audit.events import AuditEventType
from bot.audit.logger import AuditLogger

Record = dict[str, Any]


class CapturedRecords(list[Record]):
    """The captured records, in order, with two shortcuts for assertions."""

    def types(self) -> list[str]:
        return [record["event_type"] for record in self]

    def of_type(self, event_type: AuditEventType | str) -> list[Record]:
        kind = event_type.value if isinstance(event_type, AuditEventType) else event_type
        return [record for record in self if record["event_type"] == kind]


@contextlib.contextmanager
def capture_audit(logger: AuditLogger) -> Iterator[CapturedRecords]:
    """Collect every record ``logger`` accepts inside the block (see the module docstring)."""
    captured = CapturedRecords()
    append = logger._append

    def tee(fields: bytes, kind: str) -> None:
        captured.append(orjson.loads(b"{%s}" % fields))
        append(fields, kind)

    logger._append = tee
    try:
        yield captured
    finally:
        logger._append = append
