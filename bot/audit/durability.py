"""Durability, off the hot path: batched fdatasync, the head anchor, checkpoints, day seals.

One background thread (``Durability.run``) wakes every ``fsync_interval``:

* drains held records when the trail may be writable again;
* ``fdatasync``s what was written since the last round (outside the writer's
  lock) and only then advances the head anchor (``.audit.head.json``), so the
  anchor never claims a record that is not on disk. An fsync error is recorded
  as ``audit_gap`` (SPEC §7: reported, never silently retried as success);
* restores a day file deleted while open (the descriptor still reaches its data);
* writes an ``audit_checkpoint`` every ``checkpoint_interval``;
* seals each closed day (SPEC §12): an ``audit_checkpoint`` with operation
  ``seal_day`` carrying the day's digest (bot.audit.digest.day_digest), once its
  file is closed and synced, so a day file, its digest and the next day's chain
  vouch for each other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bot.audit import chain, startup
from bot.audit.chain_writer import ChainWriter
from bot.audit.digest import day_digest
from bot.audit.events import AuditEventType
from bot.audit.stats import AuditStats

log = logging.getLogger("bot.audit")

LogEvent = Callable[..., None]


class Durability:
    """The writer's background duties; ``log`` is the facade's ``log_event``."""

    def __init__(
        self,
        writer: ChainWriter,
        *,
        sealer: chain.Sealer,
        run_id: str,
        lock_fd: int,
        log_event: LogEvent,
        stats: AuditStats,
        fsync_interval: float,
        checkpoint_interval: float,
    ) -> None:
        self.writer = writer
        self.lock_fd = lock_fd
        self._sealer = sealer
        self._run_id = run_id
        self._log = log_event
        self._stats = stats
        self._fsync_interval = fsync_interval
        self._checkpoint_interval = checkpoint_interval
        self._last_checkpoint_seq = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        last_checkpoint = time.monotonic()
        while not self._stop.wait(self._fsync_interval):
            try:
                with self.writer.lock:
                    self.writer.drain()
                self.sync()
                self.seal_closed_days()
                if time.monotonic() - last_checkpoint >= self._checkpoint_interval:
                    last_checkpoint = time.monotonic()
                    self.checkpoint()
            except Exception:
                self._stats.internal_errors += 1
                log.exception("audit sync thread error")

    # -------------------------------------------------------------- fsync

    def sync(self) -> None:
        """fdatasync what was written since the last call, then advance the anchor."""
        writer = self.writer
        with writer.lock:
            fd, retired = writer.fd, writer.retired_fds
            writer.retired_fds = []
            count, writer.unsynced = writer.unsynced, 0
            seq, head, file_day = writer.seq - 1, writer.prev, writer.fd_day
            new_file, writer.new_file = writer.new_file, False
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
            _fsync_directory(writer.directory)
        if self._fsync(fd, count) and seq >= 0:
            self._write_anchor(file_day, seq, head.decode())

    def _fsync(self, fd: int, count: int) -> bool:
        try:
            os.fdatasync(fd)
            self._stats.fsyncs += 1
            return True
        except OSError as exc:
            self._stats.fsync_errors += 1
            log.error("audit fsync failed (%s); %d records may not be durable", exc, count)
            self._log(
                AuditEventType.AUDIT_GAP,
                "fsync_audit_file",
                error={"errno": exc.errno, "message": str(exc)},
                additional_data={"reason": "fsync_failed", "records_not_durable": count},
            )
            return False

    def _write_anchor(self, day: str, seq: int, head: str) -> None:
        """Head anchor outside the day files: a truncated tail shows up as missing seqs."""
        anchor: dict[str, object] = {
            "version": 1,
            "file": f"{self.writer.file_prefix}{day}.jsonl",
            "seq": seq,
            "hash": head,
            "run_id": self._run_id,
        }
        anchor["mac"] = self._sealer.digest(chain.anchor_message(anchor)).decode()
        directory = self.writer.directory
        tmp = directory / (chain.ANCHOR_FILE + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, orjson.dumps(anchor) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, directory / chain.ANCHOR_FILE)
        except OSError as exc:
            log.warning("could not update audit head anchor: %s", exc)

    # --------------------------------------------------------- checkpoints

    def checkpoint(self) -> None:
        """An ``audit_checkpoint`` covering the chain so far (unless nothing was written)."""
        writer = self.writer
        with writer.lock:
            seq, head, day, size = writer.seq - 1, writer.prev.decode(), writer.fd_day, writer.size
        if seq < 0 or seq == self._last_checkpoint_seq:
            return
        self._last_checkpoint_seq = seq + 1  # the checkpoint itself takes the next seq
        self._log(
            AuditEventType.AUDIT_CHECKPOINT,
            "checkpoint",
            additional_data={
                "covers_seq": seq,
                "covers_hash": head,
                "file": f"{writer.file_prefix}{day}.jsonl",
                "file_bytes": size,
                "records_this_run": self._stats.written,
                "keyed": self._sealer.keyed,
            },
        )

    def seal_closed_days(self) -> None:
        """Seal each day whose file closed since the last call (after ``sync``)."""
        writer = self.writer
        with writer.lock:
            days, writer.closed_days = writer.closed_days, []
        for day in days:
            path = writer.directory / f"{writer.file_prefix}{day}.jsonl"
            try:
                digest: dict[str, Any] = day_digest(path)
            except (OSError, ValueError) as exc:
                log.error("could not digest closed audit day %s: %s", day, exc)
                continue
            self._log(
                AuditEventType.AUDIT_CHECKPOINT, "seal_day", additional_data={"digest": digest}
            )

    # ------------------------------------------------------ deleted files

    def _recover_unlinked(self, fd: int) -> None:
        """The day file (or the directory) was deleted under us. The open descriptor
        still reaches the data, so copy it into a re-created file (bulk outside the
        lock, the rest under it) and carry on: the chain stays intact."""
        writer = self.writer
        source = f"/proc/self/fd/{fd}"
        with writer.lock:
            day, size = writer.fd_day, writer.size
        path = writer.directory / f"{writer.file_prefix}{day}.jsonl"
        tmp = writer.directory / f".{path.name}.recover"
        try:
            writer.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(source, "rb") as src:
                out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                try:
                    copied = _copy_range(src, out, 0, size)
                    with writer.lock:
                        if writer.fd != fd:
                            return  # rolled over meanwhile: the old day is closed anyway
                        copied += _copy_range(src, out, size, writer.size)
                        os.replace(tmp, path)
                        new_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                        writer.retired_fds.append(fd)
                        writer.fd = new_fd
                        writer.unsynced += 1
                        writer.new_file = True
                        self._relock_directory()
                finally:
                    os.close(out)
        except OSError as exc:
            log.error("audit file %s was deleted and could not be restored: %s", path.name, exc)
            with writer.lock:
                if writer.fd == fd:
                    writer.retire_fd()  # the next write re-creates the file; verify shows it
            self._stats.recoveries += 1
            return
        self._stats.recoveries += 1
        log.error("audit file %s was deleted while open; restored %d bytes", path.name, copied)
        self._log(
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
        lock_path = self.writer.directory / chain.LOCK_FILE
        try:
            if os.stat(lock_path).st_ino == os.fstat(self.lock_fd).st_ino:
                return
        except OSError:
            pass
        with contextlib.suppress(OSError, startup.AuditDirectoryLocked):
            old = self.lock_fd
            self.lock_fd = startup.acquire_lock(self.writer.directory, self._run_id)
            os.close(old)


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
