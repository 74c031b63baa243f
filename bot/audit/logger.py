"""AuditLogger: the one writer of the hash-chained JSON Lines trail (SPEC §7).

Why it looks like this:

* ``log_event`` serializes, seals and ``write(2)``s the line before returning,
  so a killed process never loses an acknowledged record; ``fdatasync`` runs
  on a background thread at a bounded interval, outside the write lock.
* It never raises into trading code. Anything that goes wrong (serialization,
  disk full, permissions, a deleted directory) is counted in ``stats``, logged
  as a warning, and later written into the trail itself (``audit_gap`` /
  ``audit_recovered``) so the gap is part of the evidence.
* Records that cannot be written are held *before* they are chained; dropping
  one when the hold buffer is full therefore never breaks the chain.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import gzip
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from bot.audit import chain
from bot.audit.events import AuditEventType

log = logging.getLogger("bot.audit")

EventType = AuditEventType | str
JsonObject = Mapping[str, Any]

_TRACE: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_trace", default=None)
_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_SECRET_KEY_RE = re.compile(r"api[_-]?key|secret|signature|password|passphrase|token|hmac", re.I)
_KEY_IS_SECRET: dict[str, bool] = {}  # memo: record keys repeat, the regex is slow
REDACTED = "[REDACTED]"
_FIELDS = ("order_data", "response", "error", "additional_data")
_CONTAINERS = (dict, list, tuple)


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
    internal_errors: int = 0
    dropped_by_type: Counter[str] = field(default_factory=Counter)


@dataclass
class _Held:
    day: str
    payload: bytes
    event_type: str
    timestamp: str


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
        """``file_prefix`` names the day files (``<prefix>YYYYMMDD.jsonl``): the alerts
        process writes its own trail, in the same format, as ``alerts_YYYYMMDD.jsonl``."""
        self.audit_dir = Path(audit_dir)
        self.file_prefix = file_prefix
        self.run_id = run_id or f"run-{secrets.token_hex(6)}"
        self.stats = AuditStats()
        if isinstance(hmac_key, str):
            hmac_key = hmac_key.encode()
        self._sealer = chain.Sealer(hmac_key)
        self._run_tag = chain.run_tag(self.run_id)
        self._clock = clock
        self._fsync_interval = fsync_interval
        self._checkpoint_interval = checkpoint_interval
        self._buffer_limit = buffer_limit
        self._redact_values = tuple(v.encode() for v in redact_values if v)
        self._lock = threading.Lock()
        self._closed = False

        self._fd: int | None = None
        self._fd_day = ""
        self._size = 0
        self._retired_fds: list[int] = []
        self._since_sync: list[bytes] = []
        self._seq = 0
        self._prev = chain.GENESIS_HASH.encode()
        self._last_ns = 0
        self._ts_sec = -1
        self._ts_prefix = ""
        self._ts_day = ""
        self._held: deque[_Held] = deque()
        self._dropped: list[_Held] = []
        self._failing_since: str | None = None
        self._last_checkpoint_seq = -1

        self.audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
            kind = event_type.value if isinstance(event_type, AuditEventType) else event_type
            tid = trace_id or _TRACE.get()
            with self._lock:
                if self._closed:
                    self._count_drop(kind)
                    log.warning("audit record %s logged after close() was dropped", kind)
                    return
                day, stamp = self._timestamp()
                record: dict[str, Any] = {
                    "timestamp": stamp,
                    "event_type": kind,
                    "operation": operation,
                }
                if symbol is not None:
                    record["symbol"] = symbol
                if tid is not None:
                    record["trace_id"] = tid
                if order_data is not None:
                    record["order_data"] = order_data
                if response is not None:
                    record["response"] = response
                if error is not None:
                    record["error"] = error
                if additional_data is not None:
                    record["additional_data"] = additional_data
                self._commit(_Held(day, self._serialize(record), kind, stamp))
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
            self._drain()
        self._sync_once()

    def close(self) -> None:
        """Checkpoint, fsync, update the anchor and release the directory. Idempotent."""
        if self._closed:
            return
        self._stop.set()
        self._syncer.join(timeout=10)
        self._checkpoint()
        with self._lock:
            self._drain()
            self._closed = True
        self._sync_once()
        with self._lock:
            if self._held or self._dropped:
                log.error(
                    "audit trail closed with %d records unwritable",
                    len(self._held) + len(self._dropped),
                )
            for fd in [*self._retired_fds, *([self._fd] if self._fd is not None else [])]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._retired_fds.clear()
            self._fd = None
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
    def head(self) -> tuple[int, str]:
        """(next seq, hash of the last written record)."""
        with self._lock:
            return self._seq, self._prev.decode()

    # --------------------------------------------------------- serializing

    def _timestamp(self) -> tuple[str, str]:
        now = max(self._clock(), self._last_ns)  # never let the trail go back in time
        self._last_ns = now
        sec, ns = divmod(now, 1_000_000_000)
        if sec != self._ts_sec:
            moment = datetime.fromtimestamp(sec, UTC)
            self._ts_sec = sec
            self._ts_prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._ts_day = moment.strftime("%Y%m%d")
        return self._ts_day, "%s.%06dZ" % (self._ts_prefix, ns // 1000)

    def _serialize(self, record: dict[str, Any]) -> bytes:
        try:
            payload = orjson.dumps(record, default=_json_default, option=_ORJSON_OPTS)
        except (TypeError, orjson.JSONEncodeError):
            stringified: list[str] = []
            safe = _sanitize(record, stringified, depth=0)
            safe["audit_note"] = {"stringified_types": sorted(set(stringified))}
            self.stats.serialization_fallbacks += 1
            log.warning("audit record had unserializable values: %s", sorted(set(stringified)))
            payload = orjson.dumps(safe, option=_ORJSON_OPTS)
        if _any_secret_key(record):
            payload = orjson.dumps(_redact(orjson.loads(payload)), option=_ORJSON_OPTS)
        for value in self._redact_values:
            if value in payload:
                payload = payload.replace(value, REDACTED.encode())
        return payload

    # ------------------------------------------------------------- writing

    def _commit(self, item: _Held) -> None:
        if self._held or self._dropped:
            self._drain()
            if self._held or self._dropped:
                self._hold(item)
                return
        try:
            self._write(item.day, item.payload)
        except OSError as exc:
            self._on_write_error(exc)
            self._hold(item)

    def _write(self, day: str, payload: bytes) -> None:
        fd = self._fd_for(day)
        line, digest = self._sealer.seal(payload, self._run_tag, self._seq, self._prev)
        try:
            written = os.write(fd, line)
        except OSError:
            self._truncate_to_known_size(fd)
            raise
        if written != len(line):
            self._truncate_to_known_size(fd)
            raise OSError(errno.ENOSPC, "short write to audit file")
        self._size += written
        self._seq += 1
        self._prev = digest
        self._since_sync.append(line)
        self.stats.written += 1

    def _truncate_to_known_size(self, fd: int) -> None:
        """Remove a partial line so a later write never follows torn bytes."""
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            # Cannot repair now: reopen later, which re-runs the torn-tail repair.
            self._retire_fd()

    def _fd_for(self, day: str) -> int:
        if self._fd is not None and day == self._fd_day:
            return self._fd
        if self._fd is not None:
            self._retire_fd()
        self.audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.audit_dir / f"{self.file_prefix}{day}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        size = os.fstat(fd).st_size
        if size and _last_byte(fd, size) != b"\n":
            os.close(fd)
            raise OSError(errno.EIO, f"{path.name} ends with a torn line; repaired at next start")
        self._fd, self._fd_day, self._size = fd, day, size
        return fd

    def _retire_fd(self) -> None:
        if self._fd is not None:
            self._retired_fds.append(self._fd)
        self._fd = None
        self._fd_day = ""

    def _on_write_error(self, exc: OSError) -> None:
        self.stats.write_errors += 1
        if self._failing_since is None:
            self._failing_since = self._ts_prefix
            log.warning("audit trail not writable (%s); holding records in memory", exc)

    def _hold(self, item: _Held) -> None:
        self._held.append(item)
        self.stats.held += 1
        while len(self._held) > self._buffer_limit:
            dropped = self._held.popleft()
            self._dropped.append(dropped)
            self.stats.dropped += 1
            self.stats.dropped_by_type[dropped.event_type] += 1

    def _count_drop(self, kind: str) -> None:
        self.stats.dropped += 1
        self.stats.dropped_by_type[kind] += 1

    def _drain(self) -> None:
        """Write held records, then an audit_gap for any that had to be dropped."""
        try:
            while self._held:
                item = self._held[0]
                self._write(item.day, item.payload)
                self._held.popleft()
            if self._dropped or self._failing_since is not None:
                self._write_gap_record()
        except OSError as exc:
            self._on_write_error(exc)

    def _write_gap_record(self) -> None:
        dropped = self._dropped
        data: dict[str, Any] = {
            "reason": "audit_trail_unwritable",
            "unwritable_since": self._failing_since,
            "write_errors": self.stats.write_errors,
            "dropped_records": len(dropped),
            "dropped_by_type": dict(Counter(d.event_type for d in dropped)),
        }
        if dropped:
            data["first_dropped_timestamp"] = dropped[0].timestamp
            data["last_dropped_timestamp"] = dropped[-1].timestamp
        day, stamp = self._timestamp()
        payload = self._serialize(
            {
                "timestamp": stamp,
                "event_type": AuditEventType.AUDIT_GAP.value,
                "operation": "write_audit_record",
                "additional_data": data,
            }
        )
        self._write(day, payload)
        self._dropped = []
        self._failing_since = None
        log.warning("audit trail writable again; %d records were dropped", len(dropped))

    # ----------------------------------------------------- durability thread

    def _sync_loop(self) -> None:
        last_checkpoint = time.monotonic()
        while not self._stop.wait(self._fsync_interval):
            try:
                with self._lock:
                    if self._held or self._dropped:
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
            fd, retired = self._fd, self._retired_fds
            self._retired_fds = []
            lines, self._since_sync = self._since_sync, []
            seq, head, file_day = self._seq - 1, self._prev, self._fd_day
        for old in retired:
            self._fsync(old, len(lines))
            with contextlib.suppress(OSError):
                os.close(old)
        if fd is None or not lines:
            return
        if self._file_was_unlinked(fd):
            self._rewrite_unlinked(fd, lines)
            return
        if self._fsync(fd, len(lines)) and seq >= 0:
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

    def _file_was_unlinked(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_nlink == 0
        except OSError:
            return True

    def _rewrite_unlinked(self, fd: int, lines: list[bytes]) -> None:
        """The day file (or the directory) was deleted under us: re-create it and
        write again the records acknowledged since the last sync, so none is lost."""
        with self._lock:
            if self._fd == fd:
                self._retire_fd()
            pending = lines + self._since_sync
            self._since_sync = []
            try:
                target = self._fd_for(self._ts_day)
                for line in pending:
                    os.write(target, line)
                    self._size += len(line)
                self._since_sync.extend(pending)
            except OSError as exc:
                self._on_write_error(exc)
                self.stats.dropped += len(pending)
                pending = []
        log.error("audit file was deleted while open; re-created it with %d records", len(pending))
        self.log_event(
            AuditEventType.AUDIT_RECOVERED,
            "reopen_audit_file",
            additional_data={"reason": "audit_file_deleted", "records_rewritten": len(pending)},
        )

    def _checkpoint(self) -> None:
        with self._lock:
            seq, head, day, size = self._seq - 1, self._prev.decode(), self._fd_day, self._size
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
        anchor = {
            "version": 1,
            "file": f"{self.file_prefix}{day}.jsonl",
            "seq": seq,
            "hash": head,
            "run_id": self.run_id,
        }
        anchor["mac"] = self._sealer.digest(chain.anchor_message(anchor)).decode()
        tmp = self.audit_dir / (chain.ANCHOR_FILE + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
                f"process ({owner or 'unknown'}); one writer per directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} run_id={self.run_id}\n".encode(), 0)
        return fd

    def _resume_chain(self) -> list[tuple[AuditEventType, str, dict[str, Any]]]:
        """Continue the chain from the last record on disk, repairing a torn tail."""
        notes: list[tuple[AuditEventType, str, dict[str, Any]]] = []
        for path in reversed(chain.trail_files(self.audit_dir, self.file_prefix)):
            if path.suffix == ".gz":
                with gzip.open(path, "rb") as fh:
                    data = fh.read()
                last = _last_sealed_line(data)
            else:
                repaired = _repair_torn_tail(path)
                if repaired is not None:
                    notes.append((AuditEventType.AUDIT_RECOVERED, "repair_torn_line", repaired))
                with open(path, "rb") as fh:
                    data = _read_tail(fh)
                last = _last_sealed_line(data)
            if last is not None:
                self._seq = last[0] + 1
                self._prev = last[1]
                break
        anchor = chain.read_anchor(self.audit_dir)
        if anchor is not None and isinstance(anchor.get("seq"), int):
            if anchor["seq"] >= self._seq:
                notes.append(
                    (
                        AuditEventType.AUDIT_GAP,
                        "resume_chain",
                        {
                            "reason": "trail_shorter_than_head_anchor",
                            "anchor_seq": anchor["seq"],
                            "last_seq_on_disk": self._seq - 1,
                            "missing_records": anchor["seq"] - self._seq + 1,
                        },
                    )
                )
        return notes


# ------------------------------------------------------------------ helpers


def _last_byte(fd: int, size: int) -> bytes:
    return os.pread(fd, 1, size - 1)


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


def _last_sealed_line(data: bytes) -> tuple[int, bytes] | None:
    """(seq, hash) of the last complete sealed line in ``data``."""
    for line in reversed(data.splitlines(keepends=True)):
        parsed = chain.parse_seal(line)
        if parsed is not None:
            return parsed
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
        "file": path.name,
        "truncated_at_byte": cut_at,
        "torn_bytes": len(torn),
        "torn_preview": torn[:200].decode("utf-8", errors="replace"),
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    raise TypeError


def _sanitize(value: Any, stringified: list[str], depth: int) -> Any:
    """JSON-safe deep copy: known types converted, anything else stringified and noted."""
    if depth > 32:
        stringified.append("nesting_too_deep")
        return "<nesting too deep>"
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _sanitize(v, stringified, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(v, stringified, depth + 1) for v in value]
    try:
        converted = orjson.loads(orjson.dumps(value, default=_json_default, option=_ORJSON_OPTS))
        return converted
    except (TypeError, orjson.JSONEncodeError):
        stringified.append(type(value).__name__)
        try:
            return str(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    known = _KEY_IS_SECRET.get(key)
    if known is None:
        known = bool(_SECRET_KEY_RE.search(key))
        if len(_KEY_IS_SECRET) < 10_000:
            _KEY_IS_SECRET[key] = known
    return known


def _any_secret_key(record: dict[str, Any]) -> bool:
    for name in _FIELDS:
        value = record.get(name)
        if value is not None and _has_secret_key(value):
            return True
    return False


def _has_secret_key(value: Any) -> bool:
    """Hot path: plain ``dict``/``list`` checks, because ABC isinstance is slow."""
    if type(value) is dict:
        memo = _KEY_IS_SECRET
        for key, inner in value.items():
            secret = memo.get(key)
            if secret is None:
                secret = _is_secret_key(key)
            if secret or (type(inner) in _CONTAINERS and _has_secret_key(inner)):
                return True
        return False
    if type(value) in _CONTAINERS:
        return any(
            _has_secret_key(v) for v in (value.values() if isinstance(value, Mapping) else value)
        )
    return False


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if _is_secret_key(k) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
