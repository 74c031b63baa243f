"""bot.audit.testing.capture_audit: what a test sees is what the trail gets."""

from __future__ import annotations

from pathlib import Path

from bot.audit import AuditEventType, trace
from bot.audit.testing import capture_audit
from tests.audit.conftest import read_records

E = AuditEventType


def test_captured_records_are_the_trail_records_without_timestamp_and_chain(
    audit_dir: Path, open_logger, clock
) -> None:
    logger = open_logger(audit_dir, clock=clock, redact_values=("s3cr3t",))
    logger.log_event(E.HEARTBEAT, "before")  # outside the block: not captured
    with capture_audit(logger) as records, trace("t-1"):
        logger.log_risk_rejection("BTCUSDT", "invalid_stop_loss", "SL above entry", "sl", {"p": 1})
        logger.log_order_placed("BTCUSDT", {"side": "BUY", "api_key": "k", "note": "s3cr3t"})
    logger.log_event(E.HEARTBEAT, "after")
    logger.flush()
    assert records.types() == ["risk_rejection", "order_placed"]
    assert records.of_type(E.RISK_REJECTION)[0]["error"]["reason"] == "invalid_stop_loss"
    assert records[1]["order_data"] == {
        "side": "BUY",
        "api_key": "[REDACTED]",
        "note": "[REDACTED]",
    }
    written = [r for r in read_records(audit_dir) if r["operation"] not in ("before", "after")]
    chain_fields = {"timestamp", "bot_id", "run_id", "seq", "prev", "hash"}
    assert [{k: v for k, v in r.items() if k not in chain_fields} for r in written] == records
    assert all(r["trace_id"] == "t-1" for r in records)
