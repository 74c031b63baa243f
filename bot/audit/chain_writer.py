"""The chain writer: stamps, seals and ``write(2)``s records, one at a time, in order.

It owns the chain state (next seq, last hash, the open day file) under one lock.
``append`` is the hot path: a record's fields come in as bytes (record.py), get
their timestamp — never earlier than the last one, so the trail never goes back in
time — are sealed (``chain.Sealer.seal``, the one place a record is sealed) and
written before it returns (SPEC §7: a returned record survives a kill).

Everything unusual leaves the hot path for ``_commit_slow``: the first write, a
new UTC day (a new file; the closed day is queued for its digest seal), held
records, and write failures. A failed write is undone (a partial line is cut
off) and the record goes to the outage buffer; the next write drains it first.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bot.audit import chain
from bot.audit.events import AuditEventType
from bot.audit.outage import Held, OutageBuffer
from bot.audit.record import OPTIONS, json_default
from bot.audit.stats import AuditStats

log = logging.getLogger("bot.audit")


class ChainWriter:
    """One trail directory's chain state and its lock (``lock``); see the module docstring.

    The durability thread reads and advances ``unsynced``, ``retired_fds`` and
    ``new_file`` under ``lock``, and takes ``closed_days`` (days to seal)."""

    def __init__(
        self,
        directory: Path,
        file_prefix: str,
        sealer: chain.Sealer,
        tag: bytes,
        clock: Callable[[], int],
        buffer: OutageBuffer,
        stats: AuditStats,
    ) -> None:
        self.directory = directory
        self.file_prefix = file_prefix
        self.lock = threading.Lock()
        self.seq = 0  # next record's seq
        self.prev = chain.GENESIS_HASH.encode()  # hash of the last record
        self.last_ns = 0  # latest timestamp used
        self.last_day = ""  # the latest day file of the trail (closed when a later one opens)
        self.fd: int | None = None  # the open day file
        self.fd_day = ""
        self.size = 0  # bytes in the open day file
        self.unsynced = 0  # records written since the last fdatasync
        self.retired_fds: list[int] = []  # closed-day or failed descriptors, to fsync and close
        self.new_file = False  # a day file was created: its directory entry needs an fsync
        self.closed_days: list[str] = []  # days whose file closed; sealed by durability
        self.closed = False
        self.buffer = buffer
        self._seal = sealer.seal
        self._tag = tag
        self._clock = clock
        self._stats = stats
        self._slow = False  # held records, an outage or closed: every call takes _commit_slow
        self._ts_sec = -1
        self._ts_prefix = b""  # b'{"timestamp":"YYYY-MM-DDTHH:MM:SS' of _ts_sec
        self._ts_day = ""

    # ------------------------------------------------------------ hot path

    def append(self, fields: bytes, kind: str) -> None:
        """Stamp, seal and write one record (``fields``: record.encode's bytes)."""
        with self.lock:
            now = self._tick()
            second, micros = divmod(now // 1000, 1_000_000)
            if second != self._ts_sec:
                self._ts_sec = second
                self._ts_prefix, self._ts_day = chain.second_prefix(second)
            payload = chain.STAMPED % (self._ts_prefix, micros, fields)
            fd = self.fd
            if self._slow or fd is None or self.fd_day != self._ts_day:
                self._commit_slow(Held(self._ts_day, payload, kind, _stamp(payload)))
                return
            line, digest = self._seal(payload, self._tag, self.seq, self.prev)
            try:
                written = os.write(fd, line)
            except OSError as exc:
                written = -1
                failure = exc
            if written != len(line):
                if written >= 0:
                    failure = OSError(errno.ENOSPC, "short write to audit file")
                self._on_write_failure(failure, Held(self._ts_day, payload, kind, _stamp(payload)))
                return
            self.size += written
            self.seq += 1
            self.prev = digest
            self.unsynced += 1
            self._stats.written += 1

    # ---------------------------------------------------------- careful path

    def drain(self) -> None:
        """Write held records in order, then one ``audit_gap`` describing the outage (lock held)."""
        if not self._slow or self.closed:
            return
        buffer = self.buffer
        written = 0
        try:
            for item in buffer.held:
                self._write(item.day, item.payload)
                written += 1
            buffer.held.clear()
        except OSError as exc:
            del buffer.held[:written]
            self._on_write_error(exc)
            return
        if buffer.outage is not None:
            try:
                gap = self._own(
                    AuditEventType.AUDIT_GAP, "write_audit_record", buffer.outage.gap_data()
                )
                self._write(gap.day, gap.payload)
            except OSError as exc:
                self._on_write_error(exc)
                return
            buffer.close_outage()
        self._slow = False

    def close(self) -> None:
        """Write what can be written; records logged later are dropped (lock held)."""
        self.drain()
        self.closed = True
        self._slow = True
        if not self.buffer.empty:
            held = len(self.buffer.held)
            dropped = self.buffer.outage.dropped if self.buffer.outage else 0
            log.error("audit trail closed with %d records unwritable", held + dropped)

    def release(self) -> None:
        """Close every descriptor, after the last sync (lock held)."""
        for fd in [*self.retired_fds, *([self.fd] if self.fd is not None else [])]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.retired_fds.clear()
        self.fd, self.fd_day = None, ""

    def retire_fd(self) -> None:
        """Stop writing the open descriptor (the next write reopens the day file)."""
        if self.fd is not None:
            self.retired_fds.append(self.fd)
        self.fd, self.fd_day = None, ""

    def _commit_slow(self, item: Held) -> None:
        """Rollover, first write, or the trail was unwritable: write or hold ``item``."""
        if self.closed:
            self.buffer.drop(item)
            log.warning("audit record %s logged after close() was dropped", item.event_type)
            return
        if self._slow:
            self.drain()
            if self._slow:
                self.buffer.hold(item)
                return
        try:
            self._write(item.day, item.payload)
        except OSError as exc:
            self._on_write_error(exc)
            self.buffer.hold(item)

    def _on_write_failure(self, exc: OSError, item: Held) -> None:
        """The hot path's write failed: undo any partial bytes, then hold the record."""
        if self.fd is not None:
            self._after_failed_write(self.fd, exc)
        self._on_write_error(exc)
        self.buffer.hold(item)

    def _write(self, day: str, payload: bytes) -> None:
        fd = self._fd_for(day)
        line, digest = self._seal(payload, self._tag, self.seq, self.prev)
        try:
            written = os.write(fd, line)
        except OSError as exc:
            self._after_failed_write(fd, exc)
            raise
        if written != len(line):
            short = OSError(errno.ENOSPC, "short write to audit file")
            self._after_failed_write(fd, short)
            raise short
        self.size += written
        self.seq += 1
        self.prev = digest
        self.unsynced += 1
        self._stats.written += 1

    def _after_failed_write(self, fd: int, exc: OSError) -> None:
        """Remove a partial line so a later write never follows torn bytes. Out of space,
        the descriptor is kept for the retry; any other error (EBADF, EIO, EPERM, EROFS)
        retires it, so the retry reopens the file (and fails at open while it must)."""
        try:
            if os.fstat(fd).st_size != self.size:
                os.ftruncate(fd, self.size)
        except OSError:
            self.retire_fd()  # cannot repair now: a reopen refuses a torn file until restart
            return
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            self.retire_fd()

    def _fd_for(self, day: str) -> int:
        if self.fd is not None and day == self.fd_day:
            return self.fd
        if self.fd is not None:
            self.retire_fd()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{self.file_prefix}{day}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        size = os.fstat(fd).st_size
        if size and _last_byte(path, size) != b"\n":
            os.close(fd)
            raise OSError(errno.EIO, f"{path.name} ends with a torn line; repaired at next start")
        if size == 0:
            self.new_file = True
        if self.last_day and day > self.last_day:
            self.closed_days.append(self.last_day)
        self.last_day = max(self.last_day, day)
        self.fd, self.fd_day, self.size = fd, day, size
        return fd

    def _on_write_error(self, exc: OSError) -> None:
        self._slow = True
        self.buffer.note_error(exc, chain.format_timestamp(self._tick()))

    def _tick(self) -> int:
        """The clock in epoch ns, never earlier than the last record: the trail never goes
        back in time (lock held)."""
        now = self._clock()
        if now < self.last_ns:
            now = self.last_ns
        self.last_ns = now
        return now

    def _own(self, kind: AuditEventType, operation: str, data: dict[str, Any]) -> Held:
        """A record of the writer about itself, written under the lock it already holds."""
        now = self._tick()
        prefix, day = chain.second_prefix(now // 1_000_000_000)
        rest = orjson.dumps(
            {"event_type": kind.value, "operation": operation, "additional_data": data},
            default=json_default,
            option=OPTIONS,
        )
        payload = chain.STAMPED % (prefix, now // 1000 % 1_000_000, rest[1:-1])
        return Held(day, payload, kind.value, _stamp(payload))


def _last_byte(path: Path, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1)


def _stamp(payload: bytes) -> str:
    start = len(chain.TIMESTAMP_PREFIX)
    return payload[start : start + chain.TIMESTAMP_LEN].decode()
