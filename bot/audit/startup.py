"""Starting a writer on a trail directory: the one-writer lock, resuming the chain, and
repairing a line torn by a crash (SPEC §7).

``acquire_lock`` refuses a second writer with a clear message. ``resume`` finds
where the chain continues (the last sealed line on disk), cuts a torn last line,
and compares the trail's end with the head anchor; what it found becomes records
(``audit_recovered``, ``audit_gap``) that the logger writes first.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.audit import chain
from bot.audit.events import AuditEventType

log = logging.getLogger("bot.audit")


class AuditDirectoryLocked(RuntimeError):
    """Another process already writes this audit directory (one writer per directory)."""


Note = tuple[AuditEventType, str, dict[str, Any]]
"""A record to write at start: (event type, operation, additional_data)."""


@dataclass
class Resumed:
    """Where the chain continues, and what start-up found."""

    seq: int = 0
    prev: bytes = chain.GENESIS_HASH.encode()
    last_ns: int = 0  # the last record's timestamp: the trail never goes back in time
    last_day: str = ""  # YYYYMMDD of the latest day file
    notes: list[Note] = field(default_factory=list)


def acquire_lock(directory: Path, run_id: str) -> int:
    """Hold the directory's writer lock (flock); AuditDirectoryLocked if another holds it."""
    fd = os.open(directory / chain.LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        raise AuditDirectoryLocked(
            f"audit directory {directory} is already being written by another "
            f"process ({owner or 'unknown owner'}); only one writer per directory is "
            "allowed: stop the other bot or use another --audit-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid={os.getpid()} run_id={run_id}\n".encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def resume(directory: Path, prefix: str) -> Resumed:
    """Continue the chain from the last record on disk, repairing a torn tail."""
    found = Resumed()
    files = chain.trail_files(directory, prefix)
    if files:
        found.last_day = chain.day_of_file(files[-1], prefix) or ""
    for path in reversed(files):
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            repaired = repair_torn_tail(path)
            if repaired is not None:
                found.notes.append((AuditEventType.AUDIT_RECOVERED, "repair_torn_line", repaired))
            with open(path, "rb") as fh:
                data = read_tail(fh)
        last = _last_sealed_line(data)
        if last is not None:
            seq, digest, stamp = last
            found.seq, found.prev = seq + 1, digest
            with contextlib.suppress(ValueError):
                found.last_ns = chain.timestamp_ns(stamp)
            break
    anchor = chain.read_anchor(directory)
    anchor_seq = anchor.get("seq") if anchor is not None else None
    if isinstance(anchor_seq, int) and anchor_seq >= found.seq:
        found.notes.append(
            (
                AuditEventType.AUDIT_GAP,
                "resume_chain",
                {
                    "reason": "trail_shorter_than_head_anchor",
                    "anchor_seq": anchor_seq,
                    "last_seq_on_disk": found.seq - 1,
                    "missing_records": anchor_seq - found.seq + 1,
                },
            )
        )
        log.error(
            "audit trail ends at seq %d but its head anchor records seq %d: "
            "records were removed from the end of the trail",
            found.seq - 1,
            anchor_seq,
        )
    return found


def read_tail(fh: Any, chunk: int = 1 << 16) -> bytes:
    """The end of a file, at least two lines of it (or all of it)."""
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
            start = len(chain.TIMESTAMP_PREFIX)
            stamp = line[start : start + chain.TIMESTAMP_LEN]
            return parsed[0], parsed[2], stamp.decode("ascii", errors="replace")
    return None


def repair_torn_tail(path: Path) -> dict[str, Any] | None:
    """Cut bytes after the last newline (a write torn by a crash); describe what was cut."""
    with open(path, "r+b") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return None
        data = read_tail(fh)
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
