"""AuditLogger: the facade of the one writer of the hash-chained JSON Lines trail (SPEC §7).

It composes the parts and keeps the promises callers rely on:

* ``log_event`` returns only after the record was handed to the OS (write(2)), so
  a killed process never loses an acknowledged record, and it never raises into
  trading code: whatever goes wrong is counted in ``stats``, logged, and later
  written into the trail itself (``audit_gap`` / ``audit_recovered``).
* The parts, each in its module: record.py (fields → JSON bytes, redaction),
  chain_writer.py (timestamp, seal, write; the chain state and its lock),
  outage.py (records held while the disk refuses them), durability.py (batched
  fdatasync, head anchor, checkpoints, day seals), startup.py (directory lock,
  resume, torn-line repair). The record layout and the seal are chain.py's.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from bot.audit import chain, startup
from bot.audit.chain_writer import ChainWriter
from bot.audit.durability import Durability
from bot.audit.events import AuditEventType
from bot.audit.outage import OutageBuffer
from bot.audit.record import JsonObject, RecordEncoder
from bot.audit.startup import AuditDirectoryLocked
from bot.audit.stats import AuditStats
from bot.audit.tracing import current_trace_id, new_trace_id, trace
from bot.audit.trails import DEFAULT_BOT

log = logging.getLogger("bot.audit")

EventType = AuditEventType | str

__all__ = [
    "AuditDirectoryLocked",
    "AuditLogger",
    "AuditStats",
    "current_trace_id",
    "new_trace_id",
    "trace",
]


class AuditLogger:
    """Append-only, hash-chained JSONL writer. Create one per process and inject it."""

    def __init__(
        self,
        audit_dir: str | os.PathLike[str] = "logs/audit",
        *,
        bot_id: str = DEFAULT_BOT,
        hmac_key: bytes | str | None = None,
        run_id: str | None = None,
        clock: Callable[[], int] = time.time_ns,
        fsync_interval: float = 1.0,
        checkpoint_interval: float = 60.0,
        buffer_limit: int = 10_000,
        redact_values: tuple[str, ...] = (),
        file_prefix: str = chain.FILE_PREFIX,
    ) -> None:
        """``bot_id`` is written in every record (SPEC §4). ``file_prefix`` names the day
        files ``<prefix>YYYYMMDD.jsonl``: the alerts process writes its own trail in this
        format as ``alerts_YYYYMMDD.jsonl`` (SPEC §5, dashboard/alert_records.py)."""
        self.audit_dir = Path(audit_dir)
        self.file_prefix = file_prefix
        self.bot_id = bot_id
        self.run_id = run_id or f"run-{secrets.token_hex(6)}"
        self.stats = AuditStats()
        if isinstance(hmac_key, str):
            hmac_key = hmac_key.encode()
        self._sealer = chain.Sealer(hmac_key)
        self._encode = RecordEncoder(self.stats, redact_values).encode
        self._writer = ChainWriter(
            self.audit_dir,
            file_prefix,
            self._sealer,
            chain.run_tag(self.run_id, bot_id),
            clock,
            OutageBuffer(buffer_limit, self.stats),
            self.stats,
        )
        self._append = self._writer.append
        self._closed = False

        created = not self.audit_dir.exists()
        self.audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created:
            os.chmod(self.audit_dir, 0o700)  # whatever the umask
        lock_fd = startup.acquire_lock(self.audit_dir, self.run_id)
        resumed = startup.resume(self.audit_dir, file_prefix)
        writer = self._writer
        writer.seq, writer.prev, writer.last_ns = resumed.seq, resumed.prev, resumed.last_ns
        writer.last_day = resumed.last_day
        self._durability = Durability(
            writer,
            sealer=self._sealer,
            run_id=self.run_id,
            lock_fd=lock_fd,
            log_event=self.log_event,
            stats=self.stats,
            fsync_interval=fsync_interval,
            checkpoint_interval=checkpoint_interval,
        )
        for event_type, operation, data in resumed.notes:
            if event_type is AuditEventType.AUDIT_RECOVERED:
                self.stats.recoveries += 1
            self.log_event(event_type, operation, additional_data=data)
        self._durability.start()

    # ------------------------------------------------------------------ API

    def log_event(
        self,
        event_type: EventType,
        operation: str,
        symbol: str | None = None,
        order_data: JsonObject | None = None,
        response: JsonObject | None = None,
        error: JsonObject | None = None,
        additional_data: JsonObject | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Append one record; returns after write(2) or after holding it. Never raises."""
        try:
            kind = event_type._value_ if type(event_type) is AuditEventType else str(event_type)
            self._append(
                self._encode(
                    kind,
                    operation,
                    symbol,
                    order_data,
                    response,
                    error,
                    additional_data,
                    trace_id,
                ),
                kind,
            )
        except Exception as exc:  # the logger must never break trading
            self.stats.internal_errors += 1
            log.exception("audit logger internal error: %s", exc)

    def log_order_placed(
        self,
        symbol: str,
        order_data: JsonObject,
        response: JsonObject | None = None,
        *,
        operation: str = "place_order",
        trace_id: str | None = None,
    ) -> None:
        self.log_event(
            AuditEventType.ORDER_PLACED,
            operation,
            symbol=symbol,
            order_data=order_data,
            response=response,
            trace_id=trace_id,
        )

    def log_order_rejected(
        self,
        symbol: str,
        order_data: JsonObject,
        error: JsonObject,
        *,
        operation: str = "place_order",
        trace_id: str | None = None,
    ) -> None:
        """``error`` carries the venue's ``error_code`` and ``error_message`` unchanged."""
        self.log_event(
            AuditEventType.ORDER_REJECTED,
            operation,
            symbol=symbol,
            order_data=order_data,
            error=error,
            trace_id=trace_id,
        )

    def log_risk_rejection(
        self,
        symbol: str,
        reason: str,
        message: str,
        validation_failed: str,
        signal: JsonObject,
        *,
        operation: str = "validate_risk",
        trace_id: str | None = None,
    ) -> None:
        self.log_event(
            AuditEventType.RISK_REJECTION,
            operation,
            symbol=symbol,
            order_data=signal,
            error={"reason": reason, "message": message, "validation_failed": validation_failed},
            trace_id=trace_id,
        )

    def log_api_error(
        self,
        operation: str,
        error: JsonObject,
        *,
        symbol: str | None = None,
        order_data: JsonObject | None = None,
        trace_id: str | None = None,
    ) -> None:
        self.log_event(
            AuditEventType.API_ERROR,
            operation,
            symbol=symbol,
            order_data=order_data,
            error=error,
            trace_id=trace_id,
        )

    trace = staticmethod(trace)

    def flush(self) -> None:
        """Write held records if possible, fsync now and seal closed days (tests, shutdown)."""
        with self._writer.lock:
            self._writer.drain()
        self._durability.sync()
        self._durability.seal_closed_days()

    def checkpoint(self) -> None:
        """Write an ``audit_checkpoint`` now (also done every ``checkpoint_interval``)."""
        self._durability.checkpoint()

    def close(self, *, checkpoint: bool = True) -> None:
        """Checkpoint, fsync, update the anchor and release the directory. Idempotent.

        ``checkpoint=False`` for a caller that wrote its own closing checkpoint and then
        one last record (the bot: checkpoint, ``bot_stopped``); the anchor still covers
        everything written."""
        if self._closed:
            return
        self._closed = True
        self._durability.stop()
        self.flush()
        if checkpoint:
            self._durability.checkpoint()
        with self._writer.lock:
            self._writer.close()
        self._durability.sync()
        with self._writer.lock:
            self._writer.release()
        startup.release_lock(self._durability.lock_fd)

    def __enter__(self) -> AuditLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def head(self) -> tuple[int, str]:
        """(next seq, hash of the last written record)."""
        with self._writer.lock:
            return self._writer.seq, self._writer.prev.decode()

    @property
    def keyed(self) -> bool:
        return self._sealer.keyed
