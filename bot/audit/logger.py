"""AuditLogger: the one writer of the hash-chained JSON Lines trail (SPEC §7).

Why it looks like this:

* ``log_event`` serializes, seals and ``write(2)``s the line before returning,
  so a killed process never loses an acknowledged record; ``fdatasync`` runs
  on a background thread at a bounded interval, outside the write lock, and
  the head anchor is advanced only after a successful ``fdatasync``.
* It never raises into trading code. Anything that goes wrong (serialization,
  disk full, permissions, a deleted directory) is counted in ``stats``, logged
  as a warning, and later written into the trail itself (``audit_gap`` /
  ``audit_recovered``) so the gap is part of the evidence.
* Records that cannot be written are held *before* they are chained; when the
  hold buffer is full, new records are dropped and counted, which never breaks
  the chain: the ``audit_gap`` record sits where the dropped records would be.
* The hot path (``log_event`` while the trail is healthy) is written for
  speed: no ABC ``isinstance``, a per-second cached timestamp prefix, a key-set
  pre-check that skips the redaction walk, and sealing inlined. When the C
  accelerator is built (``bot/audit/native``), that same common case runs in C
  and every other call comes back here: this module stays the reference, and
  both write byte-identical trails (tests/audit/test_native.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import gzip
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import threading
import time
from binascii import hexlify
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from bot.audit import chain, native
from bot.audit.events import AuditEventType

log = logging.getLogger("bot.audit")

EventType = AuditEventType | str
JsonObject = Mapping[str, Any]

_TRACE: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_trace", default=None)
_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_SECRET_KEY_RE = re.compile(
    r"api[_-]?key|secret|signature|password|passphrase|token|hmac|private[_-]?key|auth", re.I
)
REDACTED = "[REDACTED]"
_CONTAINERS = (dict, list, tuple)
_MEMO_LIMIT = 10_000
_KEY_IS_SECRET: dict[Any, bool] = {}  # memo: record keys repeat, the regex is slow
_SAFE_KEYS: set[str] = set()  # keys known not to be secret, for the one-call pre-check
_sha256 = hashlib.sha256
_hmac_digest = hmac.digest


class AuditDirectoryLocked(RuntimeError):
    """Another process already writes this audit directory (one writer per directory)."""


def new_trace_id() -> str:
    """A short random id, safe inside Binance client order ids (``[A-Za-z0-9_-]``)."""
    return secrets.token_hex(8)


def current_trace_id() -> str | None:
    return _TRACE.get()


@contextlib.contextmanager
def trace(trace_id: str | None = None) -> Iterator[str]:
    """Attach a trace id to every event logged inside the block (per thread/task)."""
    tid = trace_id or new_trace_id()
    token = _TRACE.set(tid)
    try:
        yield tid
    finally:
        _TRACE.reset(token)


@dataclass
class AuditStats:
    """Counters a caller or a test can read; all monotonic for the process."""

    written: int = 0
    held: int = 0
    dropped: int = 0
    write_errors: int = 0
    fsync_errors: int = 0
    fsyncs: int = 0
    serialization_fallbacks: int = 0
    redactions: int = 0
    recoveries: int = 0
    internal_errors: int = 0
    dropped_by_type: Counter[str] = field(default_factory=Counter)


@dataclass
class _Held:
    """A timestamped, serialized record not yet chained (``payload`` lacks its closing brace)."""

    day: str
    payload: bytes
    event_type: str
    timestamp: str


@dataclass
class _Outage:
    """What happened while the trail was unwritable; becomes one ``audit_gap`` record."""

    since: str
    first_error: str
    write_errors: int = 0
    held: int = 0
    dropped: int = 0
    dropped_by_type: Counter[str] = field(default_factory=Counter)
    first_dropped: str | None = None
    last_dropped: str | None = None


class _ChainState:
    """What the hot path reads and advances, under the logger's lock: the pure-Python
    twin of the C ``native.lib.Writer``, which keeps the same attributes."""

    def __init__(self) -> None:
        self.seq = 0  # next record's seq
        self.prev = chain.GENESIS_HASH.encode()  # hash of the last record
        self.size = 0  # bytes in the open day file
        self.unsynced = 0  # records written since the last fdatasync
        self.last_ns = 0  # latest timestamp used: the trail never goes back in time
        self.written = 0  # records written by this logger
        self.fd: int | None = None  # the open day file
        self.fd_day = ""
        self.slow = False  # held records, an outage or closed: every call takes the careful path
        self.ts_prefix = b""  # b'{"timestamp":"YYYY-MM-DDTHH:MM:SS' of ts_sec
        self.ts_day = ""  # YYYYMMDD of ts_sec
        self._ts_sec = -1

    @property
    def ts_sec(self) -> int:
        return self._ts_sec

    @ts_sec.setter
    def ts_sec(self, sec: int) -> None:
        """Setting the second caches its timestamp prefix and day."""
        moment = datetime.fromtimestamp(sec, UTC)
        self._ts_sec = sec
        self.ts_prefix = b'{"timestamp":"%s' % moment.strftime("%Y-%m-%dT%H:%M:%S").encode()
        self.ts_day = moment.strftime("%Y%m%d")


class AuditLogger:
    """Append-only, hash-chained JSONL writer. Create one per process and inject it."""

    def __init__(
        self,
        audit_dir: str | os.PathLike[str] = "logs/audit",
        *,
        hmac_key: bytes | str | None = None,
        run_id: str | None = None,
        clock: Callable[[], int] = time.time_ns,
        fsync_interval: float = 1.0,
        checkpoint_interval: float = 60.0,
        buffer_limit: int = 10_000,
        redact_values: tuple[str, ...] = (),
        file_prefix: str = chain.FILE_PREFIX,
    ) -> None:
        """``file_prefix`` names the day files ``<prefix>YYYYMMDD.jsonl``. The alerts
        process writes its own trail in this format as ``alerts_YYYYMMDD.jsonl``
        (SPEC §5, dashboard/alerts.py): keep this parameter."""
        self.audit_dir = Path(audit_dir)
        self.file_prefix = file_prefix
        self.run_id = run_id or f"run-{secrets.token_hex(6)}"
        self._stats = AuditStats()
        if isinstance(hmac_key, str):
            hmac_key = hmac_key.encode()
        self._sealer = chain.Sealer(hmac_key)
        self._key = self._sealer.key if self._sealer.keyed else None
        self._run_tag = chain.run_tag(self.run_id)
        self._clock = clock
        self._fsync_interval = fsync_interval
        self._checkpoint_interval = checkpoint_interval
        self._buffer_limit = buffer_limit
        self._redact_values = tuple(v.encode() for v in redact_values if v)
        self._closed = False
        self._retired_fds: list[int] = []
        self._dir_created_file = False
        self._held: list[_Held] = []
        self._outage: _Outage | None = None
        # The chain state and its lock: the C writer when built (its log_event then
        # takes the common case and hands the rest to the Python one below).
        self._state: _ChainState
        self._lock: contextlib.AbstractContextManager[Any]
        if native.lib is not None:
            writer = native.lib.Writer(
                fallback=self.log_event,
                commit_slow=self._native_commit_slow,
                write_failed=self._native_write_failed,
                dumps=orjson.dumps,
                default=_json_default,
                option=_ORJSON_OPTS,
                event_type_cls=AuditEventType,
                trace_var=_TRACE,
                safe_keys=_SAFE_KEYS,
                redact_values=self._redact_values,
                clock=clock,
                realtime=clock is time.time_ns,
                key=self._key,
                run_tag=self._run_tag,
            )
            self._state = self._lock = writer
            self.log_event = writer.log_event  # type: ignore[method-assign]
        else:
            self._state = _ChainState()
            self._lock = threading.Lock()
        self._last_checkpoint_seq = -1

        created = not self.audit_dir.exists()
        self.audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created:
            os.chmod(self.audit_dir, 0o700)  # whatever the umask
        self._lock_fd = self._acquire_directory_lock()
        startup_notes = self._resume_chain()
        for event_type, operation, data in startup_notes:
            self.log_event(event_type, operation, additional_data=data)
        self._stop = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name="audit-sync", daemon=True)
        self._syncer.start()

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
            record: dict[str, Any] = {
                "event_type": kind,
                "operation": operation if type(operation) is str else str(operation),
            }
            if symbol is not None:
                record["symbol"] = symbol if type(symbol) is str else str(symbol)
            if trace_id is None:
                trace_id = _TRACE.get()
            if trace_id is not None:
                record["trace_id"] = trace_id if type(trace_id) is str else str(trace_id)
            objects = 0
            keys_known = True
            if order_data is not None:
                if type(order_data) is not dict:
                    order_data = _as_object(order_data)
                record["order_data"] = order_data
                objects += 1
                keys_known = type(order_data) is dict and _SAFE_KEYS.issuperset(order_data)
            if response is not None:
                if type(response) is not dict:
                    response = _as_object(response)
                record["response"] = response
                objects += 1
                keys_known = (
                    keys_known and type(response) is dict and _SAFE_KEYS.issuperset(response)
                )
            if error is not None:
                if type(error) is not dict:
                    error = _as_object(error)
                record["error"] = error
                objects += 1
                keys_known = keys_known and type(error) is dict and _SAFE_KEYS.issuperset(error)
            if additional_data is not None:
                if type(additional_data) is not dict:
                    additional_data = _as_object(additional_data)
                record["additional_data"] = additional_data
                objects += 1
                keys_known = (
                    keys_known
                    and type(additional_data) is dict
                    and _SAFE_KEYS.issuperset(additional_data)
                )
            try:
                rest = orjson.dumps(record, default=_json_default, option=_ORJSON_OPTS)
            except (TypeError, orjson.JSONEncodeError):
                rest = self._serialize_fallback(record)
                keys_known = False
            # Known keys and no nested object (exactly one `{` per object): nothing to
            # redact. Otherwise walk the record; a `{` inside a string only costs the walk.
            if objects and not (keys_known and rest.count(b"{") == objects + 1):
                rest = _redact_payload(rest, self.stats)
            for value in self._redact_values:
                if value in rest:
                    rest = rest.replace(value, REDACTED.encode())
                    self.stats.redactions += 1
            with self._lock:
                state = self._state
                now = self._clock()
                if now < state.last_ns:
                    now = state.last_ns  # never let the trail go back in time
                state.last_ns = now
                if now // 1_000_000_000 != state.ts_sec:
                    state.ts_sec = now // 1_000_000_000
                if state.slow or state.fd_day != state.ts_day or state.fd is None:
                    self._commit_slow(self._stamped(now, rest), kind)
                    return
                head = b'%s.%06dZ",%s%s%d,"prev":"%s' % (
                    state.ts_prefix,
                    now // 1000 % 1_000_000,
                    rest[1:-1],
                    self._run_tag,
                    state.seq,
                    state.prev,
                )
                key = self._key
                if key is None:
                    digest = hexlify(_sha256(head + b'"}').digest())
                else:
                    digest = hexlify(_hmac_digest(key, head + b'"}', "sha256"))
                line = b'%s","hash":"%s"}\n' % (head, digest)
                try:
                    written = os.write(state.fd, line)
                except OSError as exc:
                    self._on_write_failure(exc, self._stamped(now, rest), kind)
                    return
                if written != len(line):
                    short = OSError(errno.ENOSPC, "short write to audit file")
                    self._on_write_failure(short, self._stamped(now, rest), kind)
                    return
                state.size += written
                state.seq += 1
                state.prev = digest
                state.unsynced += 1
                state.written += 1
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
        """Write held records if possible and fsync now (tests, shutdown)."""
        with self._lock:
            if self._state.slow and not self._closed:
                self._drain()
        self._sync_once()

    def checkpoint(self) -> None:
        """Write an ``audit_checkpoint`` now (also done every ``checkpoint_interval``)."""
        self._checkpoint()

    def close(self, *, checkpoint: bool = True) -> None:
        """Checkpoint, fsync, update the anchor and release the directory. Idempotent.

        ``checkpoint=False`` for a caller that wrote its own closing checkpoint and then
        one last record (the bot: checkpoint, ``bot_stopped``); the anchor still covers
        everything written."""
        if self._closed:
            return
        self._stop.set()
        self._syncer.join(timeout=10)
        with self._lock:
            self._drain()
        if checkpoint:
            self._checkpoint()
        with self._lock:
            self._drain()
            self._closed = True
            self._state.slow = True
        self._sync_once()
        with self._lock:
            if self._held or self._outage is not None:
                log.error(
                    "audit trail closed with %d records unwritable",
                    len(self._held) + (self._outage.dropped if self._outage else 0),
                )
            for fd in [
                *self._retired_fds,
                *([self._state.fd] if self._state.fd is not None else []),
            ]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._retired_fds.clear()
            self._state.fd = None
            self._state.fd_day = ""
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

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
    def stats(self) -> AuditStats:
        """Counters of this logger (``written`` is kept with the chain state)."""
        self._stats.written = self._state.written
        return self._stats

    @property
    def head(self) -> tuple[int, str]:
        """(next seq, hash of the last written record)."""
        with self._lock:
            return self._state.seq, self._state.prev.decode()

    @property
    def keyed(self) -> bool:
        return self._sealer.keyed

    # --------------------------------------------------------- serializing

    def _stamped(self, now: int, rest: bytes) -> bytes:
        """``{"timestamp":"...",<rest>`` without the closing brace: a record ready to seal."""
        return b'%s.%06dZ",%s' % (self._state.ts_prefix, now // 1000 % 1_000_000, rest[1:-1])

    def _now(self) -> tuple[str, str]:
        """(day, timestamp) for records the logger writes about itself (lock held)."""
        now = max(self._clock(), self._state.last_ns)
        self._state.last_ns = now
        if now // 1_000_000_000 != self._state.ts_sec:
            self._state.ts_sec = now // 1_000_000_000
        prefix = self._state.ts_prefix[len(chain.TIMESTAMP_PREFIX) :].decode()
        stamp = f"{prefix}.{now // 1000 % 1_000_000:06d}Z"
        return self._state.ts_day, stamp

    def _serialize_fallback(self, record: dict[str, Any]) -> bytes:
        stringified: list[str] = []
        safe = _sanitize(record, stringified, depth=0)
        safe["audit_note"] = {"stringified_types": sorted(set(stringified))}
        self.stats.serialization_fallbacks += 1
        log.warning("audit record had unserializable values: %s", sorted(set(stringified)))
        return orjson.dumps(safe, option=_ORJSON_OPTS)

    def _own_payload(self, kind: AuditEventType, operation: str, data: dict[str, Any]) -> _Held:
        day, stamp = self._now()
        rest = orjson.dumps(
            {"event_type": kind.value, "operation": operation, "additional_data": data},
            default=_json_default,
            option=_ORJSON_OPTS,
        )
        payload = b'{"timestamp":"%s",%s' % (stamp.encode(), rest[1:-1])
        return _Held(day, payload, kind.value, stamp)

    # ------------------------------------------------------------- writing

    def _commit_slow(self, payload: bytes, kind: str) -> None:
        """Rollover, first write, or the trail was unwritable: write or hold ``payload``."""
        stamp = payload[len(chain.TIMESTAMP_PREFIX) : len(chain.TIMESTAMP_PREFIX) + 27].decode()
        item = _Held(self._state.ts_day, payload, kind, stamp)
        if self._closed:
            self._drop(item)
            log.warning("audit record %s logged after close() was dropped", kind)
            return
        if self._state.slow:
            self._drain()
            if self._state.slow:
                self._hold(item)
                return
        try:
            self._write(item.day, item.payload)
        except OSError as exc:
            self._on_write_error(exc)
            self._hold(item)

    def _native_commit_slow(self, payload: bytes, kind: str) -> None:
        """The C writer's careful case (its lock is held): as in ``log_event``."""
        try:
            self._commit_slow(payload, kind)
        except Exception as error:  # the logger must never break trading
            self.stats.internal_errors += 1
            log.exception("audit logger internal error: %s", error)

    def _native_write_failed(self, exc: OSError, payload: bytes, kind: str) -> None:
        """The C writer's write failed (its lock is held): as in ``log_event``."""
        try:
            self._on_write_failure(exc, payload, kind)
        except Exception as error:  # the logger must never break trading
            self.stats.internal_errors += 1
            log.exception("audit logger internal error: %s", error)

    def _on_write_failure(self, exc: OSError, payload: bytes, kind: str) -> None:
        """The hot path's write failed: undo any partial bytes, then hold the record."""
        if self._state.fd is not None:
            self._after_failed_write(self._state.fd, exc)
        self._on_write_error(exc)
        stamp = payload[len(chain.TIMESTAMP_PREFIX) : len(chain.TIMESTAMP_PREFIX) + 27].decode()
        self._hold(_Held(self._state.ts_day, payload, kind, stamp))

    def _write(self, day: str, payload: bytes) -> None:
        fd = self._fd_for(day)
        line, digest = self._sealer.seal(payload, self._run_tag, self._state.seq, self._state.prev)
        try:
            written = os.write(fd, line)
        except OSError as exc:
            self._after_failed_write(fd, exc)
            raise
        if written != len(line):
            short = OSError(errno.ENOSPC, "short write to audit file")
            self._after_failed_write(fd, short)
            raise short
        self._state.size += written
        self._state.seq += 1
        self._state.prev = digest
        self._state.unsynced += 1
        self._state.written += 1

    def _after_failed_write(self, fd: int, exc: OSError) -> None:
        """Remove a partial line so a later write never follows torn bytes. Out of space,
        the descriptor is kept for the retry; any other error (EBADF, EIO, EPERM, EROFS)
        retires it, so the retry reopens the file (and fails at open while it must)."""
        try:
            if os.fstat(fd).st_size != self._state.size:
                os.ftruncate(fd, self._state.size)
        except OSError:
            self._retire_fd()  # cannot repair now: a reopen refuses a torn file until restart
            return
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            self._retire_fd()

    def _fd_for(self, day: str) -> int:
        if self._state.fd is not None and day == self._state.fd_day:
            return self._state.fd
        if self._state.fd is not None:
            self._retire_fd()
        self.audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.audit_dir / f"{self.file_prefix}{day}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        size = os.fstat(fd).st_size
        if size and _last_byte(path, size) != b"\n":
            os.close(fd)
            raise OSError(errno.EIO, f"{path.name} ends with a torn line; repaired at next start")
        if size == 0:
            self._dir_created_file = True
        self._state.fd, self._state.fd_day, self._state.size = fd, day, size
        return fd

    def _retire_fd(self) -> None:
        if self._state.fd is not None:
            self._retired_fds.append(self._state.fd)
        self._state.fd = None
        self._state.fd_day = ""

    def _on_write_error(self, exc: OSError) -> None:
        self.stats.write_errors += 1
        self._state.slow = True
        if self._outage is None:
            _, stamp = self._now()
            self._outage = _Outage(
                since=stamp, first_error=errno.errorcode.get(exc.errno or 0, str(exc))
            )
            log.warning("audit trail not writable (%s); holding records in memory", exc)
        self._outage.write_errors += 1

    def _hold(self, item: _Held) -> None:
        if len(self._held) >= self._buffer_limit:
            self._drop(item)
            return
        self._held.append(item)
        self.stats.held += 1
        if self._outage is not None:
            self._outage.held += 1

    def _drop(self, item: _Held) -> None:
        self.stats.dropped += 1
        self.stats.dropped_by_type[item.event_type] += 1
        outage = self._outage
        if outage is not None:
            outage.dropped += 1
            outage.dropped_by_type[item.event_type] += 1
            outage.first_dropped = outage.first_dropped or item.timestamp
            outage.last_dropped = item.timestamp

    def _drain(self) -> None:
        """Write held records in order, then one audit_gap describing the outage."""
        try:
            written = 0
            for item in self._held:
                self._write(item.day, item.payload)
                written += 1
            self._held.clear()
        except OSError as exc:
            del self._held[:written]
            self._on_write_error(exc)
            return
        if self._outage is not None:
            try:
                self._write_gap_record(self._outage)
            except OSError as exc:
                self._on_write_error(exc)
                return
        self._state.slow = self._closed

    def _write_gap_record(self, outage: _Outage) -> None:
        data: dict[str, Any] = {
            "reason": "audit_trail_unwritable",
            "unwritable_since": outage.since,
            "first_error": outage.first_error,
            "write_errors": outage.write_errors,
            "held_then_written": outage.held,
            "dropped_records": outage.dropped,
            "dropped_by_type": dict(outage.dropped_by_type),
        }
        if outage.dropped:
            data["first_dropped_timestamp"] = outage.first_dropped
            data["last_dropped_timestamp"] = outage.last_dropped
        item = self._own_payload(AuditEventType.AUDIT_GAP, "write_audit_record", data)
        self._write(item.day, item.payload)
        self._outage = None
        log.warning(
            "audit trail writable again; %d records held then written, %d dropped",
            outage.held,
            outage.dropped,
        )

    # ----------------------------------------------------- durability thread

    def _sync_loop(self) -> None:
        last_checkpoint = time.monotonic()
        while not self._stop.wait(self._fsync_interval):
            try:
                with self._lock:
                    if self._state.slow and not self._closed:
                        self._drain()
                self._sync_once()
                if time.monotonic() - last_checkpoint >= self._checkpoint_interval:
                    last_checkpoint = time.monotonic()
                    self._checkpoint()
            except Exception:
                self.stats.internal_errors += 1
                log.exception("audit sync thread error")

    def _sync_once(self) -> None:
        with self._lock:
            fd, retired = self._state.fd, self._retired_fds
            self._retired_fds = []
            count, self._state.unsynced = self._state.unsynced, 0
            seq, head, file_day = self._state.seq - 1, self._state.prev, self._state.fd_day
            new_file, self._dir_created_file = self._dir_created_file, False
        for old in retired:
            self._fsync(old, count)
            with contextlib.suppress(OSError):
                os.close(old)
        if fd is None:
            return
        if _was_unlinked(fd):
            self._recover_unlinked(fd)
            return
        if not count:
            return
        if new_file:
            _fsync_directory(self.audit_dir)
        if self._fsync(fd, count) and seq >= 0:
            self._write_anchor(file_day, seq, head.decode())

    def _fsync(self, fd: int, count: int) -> bool:
        try:
            os.fdatasync(fd)
            self.stats.fsyncs += 1
            return True
        except OSError as exc:
            self.stats.fsync_errors += 1
            log.error("audit fsync failed (%s); %d records may not be durable", exc, count)
            self.log_event(
                AuditEventType.AUDIT_GAP,
                "fsync_audit_file",
                error={"errno": exc.errno, "message": str(exc)},
                additional_data={"reason": "fsync_failed", "records_not_durable": count},
            )
            return False

    def _recover_unlinked(self, fd: int) -> None:
        """The day file (or the directory) was deleted under us. The open descriptor
        still reaches the data, so copy it into a re-created file (bulk outside the
        lock, the rest under it) and carry on: the chain stays intact."""
        source = f"/proc/self/fd/{fd}"
        with self._lock:
            day, size = self._state.fd_day, self._state.size
        path = self.audit_dir / f"{self.file_prefix}{day}.jsonl"
        tmp = self.audit_dir / f".{path.name}.recover"
        try:
            self.audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(source, "rb") as src:
                out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                try:
                    copied = _copy_range(src, out, 0, size)
                    with self._lock:
                        if self._state.fd != fd:
                            return  # rolled over meanwhile: the old day is closed anyway
                        copied += _copy_range(src, out, size, self._state.size)
                        os.replace(tmp, path)
                        new_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                        self._retired_fds.append(fd)
                        self._state.fd = new_fd
                        self._state.unsynced += 1
                        self._dir_created_file = True
                        self._relock_directory()
                finally:
                    os.close(out)
        except OSError as exc:
            log.error("audit file %s was deleted and could not be restored: %s", path.name, exc)
            with self._lock:
                if self._state.fd == fd:
                    self._retire_fd()  # the next write re-creates the file; verify shows the break
            self.stats.recoveries += 1
            return
        self.stats.recoveries += 1
        log.error("audit file %s was deleted while open; restored %d bytes", path.name, copied)
        self.log_event(
            AuditEventType.AUDIT_RECOVERED,
            "restore_deleted_audit_file",
            additional_data={
                "reason": "audit_file_deleted",
                "file": path.name,
                "bytes_restored": copied,
            },
        )

    def _relock_directory(self) -> None:
        """After the directory was deleted, hold the lock of the re-created one too."""
        lock_path = self.audit_dir / chain.LOCK_FILE
        try:
            if os.stat(lock_path).st_ino == os.fstat(self._lock_fd).st_ino:
                return
        except OSError:
            pass
        with contextlib.suppress(OSError, AuditDirectoryLocked):
            old = self._lock_fd
            self._lock_fd = self._acquire_directory_lock()
            os.close(old)

    def _checkpoint(self) -> None:
        with self._lock:
            seq, head, day, size = (
                self._state.seq - 1,
                self._state.prev.decode(),
                self._state.fd_day,
                self._state.size,
            )
        if seq < 0 or seq == self._last_checkpoint_seq:
            return
        self._last_checkpoint_seq = seq + 1  # the checkpoint itself takes the next seq
        self.log_event(
            AuditEventType.AUDIT_CHECKPOINT,
            "checkpoint",
            additional_data={
                "covers_seq": seq,
                "covers_hash": head,
                "file": f"{self.file_prefix}{day}.jsonl",
                "file_bytes": size,
                "records_this_run": self.stats.written,
                "keyed": self._sealer.keyed,
            },
        )

    def _write_anchor(self, day: str, seq: int, head: str) -> None:
        """Head anchor outside the day files: a truncated tail shows up as missing seqs."""
        anchor: dict[str, object] = {
            "version": 1,
            "file": f"{self.file_prefix}{day}.jsonl",
            "seq": seq,
            "hash": head,
            "run_id": self.run_id,
        }
        anchor["mac"] = self._sealer.digest(chain.anchor_message(anchor)).decode()
        tmp = self.audit_dir / (chain.ANCHOR_FILE + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, orjson.dumps(anchor) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.audit_dir / chain.ANCHOR_FILE)
        except OSError as exc:
            log.warning("could not update audit head anchor: %s", exc)

    # ------------------------------------------------------------- startup

    def _acquire_directory_lock(self) -> int:
        path = self.audit_dir / chain.LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AuditDirectoryLocked(
                f"audit directory {self.audit_dir} is already being written by another "
                f"process ({owner or 'unknown owner'}); only one writer per directory is "
                "allowed: stop the other bot or use another --audit-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} run_id={self.run_id}\n".encode(), 0)
        return fd

    def _resume_chain(self) -> list[tuple[AuditEventType, str, dict[str, Any]]]:
        """Continue the chain from the last record on disk, repairing a torn tail."""
        notes: list[tuple[AuditEventType, str, dict[str, Any]]] = []
        for path in reversed(chain.trail_files(self.audit_dir, self.file_prefix)):
            if path.name.endswith(".gz"):
                with gzip.open(path, "rb") as fh:
                    data = fh.read()
            else:
                repaired = _repair_torn_tail(path)
                if repaired is not None:
                    self.stats.recoveries += 1
                    notes.append((AuditEventType.AUDIT_RECOVERED, "repair_torn_line", repaired))
                with open(path, "rb") as fh:
                    data = _read_tail(fh)
            last = _last_sealed_line(data)
            if last is not None:
                seq, digest, stamp = last
                self._state.seq, self._state.prev = seq + 1, digest
                with contextlib.suppress(ValueError):
                    self._state.last_ns = chain.timestamp_ns(stamp)  # time never goes back
                break
        anchor = chain.read_anchor(self.audit_dir)
        anchor_seq = anchor.get("seq") if anchor is not None else None
        if isinstance(anchor_seq, int) and anchor_seq >= self._state.seq:
            notes.append(
                (
                    AuditEventType.AUDIT_GAP,
                    "resume_chain",
                    {
                        "reason": "trail_shorter_than_head_anchor",
                        "anchor_seq": anchor_seq,
                        "last_seq_on_disk": self._state.seq - 1,
                        "missing_records": anchor_seq - self._state.seq + 1,
                    },
                )
            )
            log.error(
                "audit trail ends at seq %d but its head anchor records seq %d: "
                "records were removed from the end of the trail",
                self._state.seq - 1,
                anchor_seq,
            )
        return notes


# ------------------------------------------------------------------ helpers


def _as_object(value: Any) -> Any:
    """SPEC §4 wants JSON objects in the data fields: wrap anything else."""
    return value if isinstance(value, Mapping) else {"value": value}


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1)


def _was_unlinked(fd: int) -> bool:
    try:
        return os.fstat(fd).st_nlink == 0
    except OSError:
        return False


def _fsync_directory(directory: Path) -> None:
    """Make a newly created day file's directory entry durable."""
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _copy_range(src: Any, out: int, start: int, end: int) -> int:
    src.seek(start)
    copied = 0
    while copied < end - start:
        chunk = src.read(min(1 << 20, end - start - copied))
        if not chunk:
            break
        os.write(out, chunk)
        copied += len(chunk)
    return copied


def _read_tail(fh: Any, chunk: int = 1 << 16) -> bytes:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    start = max(0, size - chunk)
    while True:
        fh.seek(start)
        data: bytes = fh.read()
        if start == 0 or data.count(b"\n") >= 2:
            return data
        start = max(0, start - chunk)


def _last_sealed_line(data: bytes) -> tuple[int, bytes, str] | None:
    """(seq, hash, timestamp) of the last complete sealed line in ``data``."""
    for line in reversed(data.splitlines(keepends=True)):
        parsed = chain.parse_seal(line)
        if parsed is not None:
            stamp = line[len(chain.TIMESTAMP_PREFIX) : len(chain.TIMESTAMP_PREFIX) + 27]
            return parsed[0], parsed[2], stamp.decode("ascii", errors="replace")
    return None


def _repair_torn_tail(path: Path) -> dict[str, Any] | None:
    """Cut bytes after the last newline (a write torn by a crash); describe what was cut."""
    with open(path, "r+b") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return None
        data = _read_tail(fh)
        if data.endswith(b"\n"):
            return None
        cut_at = size - (len(data) - (data.rfind(b"\n") + 1))
        torn = data[data.rfind(b"\n") + 1 :]
        fh.truncate(cut_at)
        os.fsync(fh.fileno())
    log.warning("repaired torn last line of %s (%d bytes removed)", path.name, len(torn))
    return {
        "reason": "torn_last_line",
        "file": path.name,
        "truncated_at_byte": cut_at,
        "torn_bytes": len(torn),
        "torn_preview": torn[:200].decode("utf-8", errors="replace"),
    }


def _json_default(obj: Any) -> Any:
    """orjson handles str/int/float/bool/None/dict/list/tuple/datetime/date/enum/UUID/numpy."""
    if isinstance(obj, Decimal):
        # Exact digits as a JSON number; NaN/Infinity become null like floats do.
        return orjson.Fragment(str(obj).encode()) if obj.is_finite() else None
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError


def _sanitize(value: Any, stringified: list[str], depth: int) -> Any:
    """JSON-safe deep copy: known types converted, anything else stringified and noted."""
    if depth > 32:
        stringified.append("nesting_too_deep")
        return "<nesting too deep>"
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:  # what orjson writes as a number
            return value
        stringified.append("int beyond 64 bits")
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {_key(k): _sanitize(v, stringified, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(v, stringified, depth + 1) for v in value]
    try:
        return orjson.loads(orjson.dumps(value, default=_json_default, option=_ORJSON_OPTS))
    except (TypeError, orjson.JSONEncodeError):
        stringified.append(type(value).__name__)
        try:
            return str(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def _key(key: Any) -> Any:
    return key if isinstance(key, (str, int, float, bool)) or key is None else str(key)


def _is_secret_key(key: Any) -> bool:
    known = _KEY_IS_SECRET.get(key)
    if known is None:
        known = isinstance(key, str) and bool(_SECRET_KEY_RE.search(key))
        if len(_KEY_IS_SECRET) < _MEMO_LIMIT:
            _KEY_IS_SECRET[key] = known
            if not known and isinstance(key, str):
                _SAFE_KEYS.add(key)
    return known


def _has_secret_key(value: Any) -> bool:
    if type(value) is dict:
        for key, inner in value.items():
            if _is_secret_key(key) or (type(inner) in _CONTAINERS and _has_secret_key(inner)):
                return True
        return False
    if type(value) in _CONTAINERS:
        return any(_has_secret_key(v) for v in value)
    return False


def _redact_payload(payload: bytes, stats: AuditStats) -> bytes:
    """``payload`` with the value of every secret-named key, at any depth, replaced."""
    record = orjson.loads(payload)
    if not _has_secret_key(record):
        return payload
    stats.redactions += 1
    return orjson.dumps(_redact(record))


def _redact(value: Any) -> Any:
    if type(value) is dict:
        return {k: REDACTED if _is_secret_key(k) else _redact(v) for k, v in value.items()}
    if type(value) is list:
        return [_redact(v) for v in value]
    return value
