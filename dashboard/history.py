"""The history of a trail at start-up: what comes from the day index cache, what must be read.

A restart reads only what changed (SPEC §9): for each day file of a trail,
``plan_trail`` looks up the kept index by fingerprint (``bot.audit.dayindex.IndexCache``).

* A match is used as it is: minutes for the trail's newest ``minute_days`` days, hours
  beyond (only the hour-level part of the entry is read), so memory follows the time
  span shown rather than the number of records.
* An entry for a prefix of the file (today's file, grown since) is continued: the
  follower resumes where the entry ends.
* The newest file without an entry is read by the follower, like new lines.
* Older days without an entry (a first start on a large history, or a changed day,
  which is then verified again) are ``PendingDay``s, indexed one by one off the
  ingest path (``index_pending``) while the dashboard already shows what it has;
  ``HistoryProgress`` says how far that is.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from bot.audit import chain
from bot.audit.dayfile import index_file
from bot.audit.dayindex import HOUR, MINUTE, DayIndex
from bot.audit.indexcache import Fingerprint, IndexCache
from bot.audit.reader import TrailFollower, open_trail_file

log = logging.getLogger("dashboard.history")


@dataclass
class HistoryProgress:
    """How far the first indexing of old days is (``running`` while days are left)."""

    done_days: int = 0
    total_days: int = 0
    done_bytes: int = 0
    total_bytes: int = 0
    running: bool = False


@dataclass
class PendingDay:
    """A day file to index off the ingest path (no usable cache entry)."""

    trail: str
    path: Path
    fingerprint: Fingerprint
    resolution: int

    @property
    def day_name(self) -> str:
        """YYYYMMDD."""
        return chain.day_of_file(self.path) or ""


@dataclass
class TrailPlan:
    loaded: list[DayIndex] = field(default_factory=list)
    pending: list[PendingDay] = field(default_factory=list)
    unread: Path | None = None  # the newest file, left to the follower
    changed: list[str] = field(default_factory=list)  # kept for another fingerprint


def _complete_end(path: Path) -> tuple[int, bool]:
    """(offset just after the last complete line, whether the file is gzipped)."""
    if path.name.endswith(".gz"):
        return 1 << 62, True
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        pos = size
        while pos > 0:
            step = min(pos, 1 << 16)
            pos -= step
            fh.seek(pos)
            block = fh.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                return pos + cut + 1, False
    return 0, False


def plan_trail(
    trail: str,
    directory: Path,
    cache: IndexCache,
    follower: TrailFollower,
    minute_days: int,
) -> TrailPlan:
    """Load what the cache holds for ``trail``'s day files and position ``follower``
    after it; the newest file without an entry is left to the follower, older ones
    are returned as pending."""
    plan = TrailPlan()
    files = chain.trail_files(directory)
    for position, path in enumerate(files):
        day = chain.day_of_file(path)
        assert day is not None
        recent = position >= len(files) - minute_days
        try:
            fingerprint = Fingerprint.of(path)
        except FileNotFoundError:
            continue
        newest = position == len(files) - 1
        index, _ = cache.lookup(path, fingerprint, detail=recent, growing=newest)
        if index is not None:
            if index.resolution == MINUTE and not recent:
                index = index.coarsened(HOUR)
            plan.loaded.append(index)
            with contextlib.suppress(FileNotFoundError):
                if path.name.endswith(".gz"):
                    follower.resume(path, 1 << 62, index.lines)
                else:
                    follower.resume(path, index.offset, index.lines)
        elif newest:
            plan.unread = path  # the follower reads it from its start, like new lines
            if cache.has_entry(path):
                plan.changed.append(path.name)
        else:
            changed = cache.has_entry(path)
            if changed:
                plan.changed.append(path.name)
            plan.pending.append(PendingDay(trail, path, fingerprint, MINUTE if recent else HOUR))
            with contextlib.suppress(FileNotFoundError):
                end, _ = _complete_end(path)
                follower.resume(path, end, 0)
    return plan


def count_lines(path: Path) -> int:
    """Complete lines of a day file."""
    with open_trail_file(path) as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(8 << 20), b""))


def index_pending(pending: PendingDay, cache: IndexCache, hmac_key: bytes | None) -> DayIndex:
    """Index one pending day, keep it in the cache, and return it at its resolution."""
    end = None if pending.path.name.endswith(".gz") else pending.fingerprint.size
    index = index_file(pending.path, pending.trail, hmac_key, end=end)
    cache.keep(pending.path, index, pending.fingerprint)
    return index.coarsened(pending.resolution)


class HistoryIndexer:
    """Indexes the pending days: a small day in this process, large ones in ``workers``
    worker processes, so that neither the ingest thread nor the GIL waits for a first
    indexing of a long history (started by spawn: the dashboard process has threads)."""

    INLINE_BYTES = 16 << 20  # a day file up to this size is indexed in this process

    def __init__(
        self,
        cache: IndexCache,
        hmac_key: bytes | None,
        *,
        workers: int = 2,
    ) -> None:
        self.pending: list[PendingDay] = []
        self.progress = HistoryProgress()
        self._cache, self._key = cache, hmac_key
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[Future[DayIndex], PendingDay] = {}

    @property
    def busy(self) -> bool:
        return bool(self.pending or self._running)

    def trails_left(self) -> set[str]:
        """The trails with days still to index (safe to call from any thread: it only
        copies the containers, which is atomic under the GIL)."""
        days = list(self.pending) + list(self._running.values())
        return {day.trail for day in days}

    def add(self, days: list[PendingDay]) -> None:
        self.pending.extend(days)
        self.progress.total_days += len(days)
        self.progress.total_bytes += sum(day.fingerprint.size for day in days)
        self.progress.running = self.busy

    def advance(self, *, wait: bool) -> list[tuple[PendingDay, DayIndex | None]]:
        """Days indexed since the last call (None: the file went away). Without ``wait``,
        at most one small day is indexed here and large ones are handed to the workers;
        with it, every pending day is done before returning."""
        done: list[tuple[PendingDay, DayIndex | None]] = []
        inline_left = None if wait else 1
        for day in list(self.pending):
            small = day.fingerprint.size <= self.INLINE_BYTES or self._workers <= 0
            if small and inline_left != 0:
                self.pending.remove(day)
                done.append((day, self._inline(day)))
                inline_left = None if inline_left is None else inline_left - 1
            elif not small and len(self._running) < self._workers:
                self.pending.remove(day)
                self._running[self._submit(day)] = day
        while self._running:
            finished = [job for job in self._running if job.done()]
            if not finished and not wait:
                break
            if not finished:
                finished = [next(as_completed(self._running))]
            for job in finished:
                day = self._running.pop(job)
                try:
                    done.append((day, job.result()))
                except FileNotFoundError:
                    done.append((day, None))
                except BrokenProcessPool:
                    # e.g. a worker could not start: index in this process from now on
                    log.warning("history workers failed; indexing %s here", day.path.name)
                    self._workers = 0
                    done.append((day, self._inline(day)))
            for day in [d for d in self.pending if d.fingerprint.size > self.INLINE_BYTES]:
                if len(self._running) >= self._workers:
                    break
                self.pending.remove(day)
                self._running[self._submit(day)] = day
        for day, _ in done:
            self.progress.done_days += 1
            self.progress.done_bytes += day.fingerprint.size
        self.progress.running = self.busy
        return done

    def _inline(self, day: PendingDay) -> DayIndex | None:
        try:
            return index_pending(day, self._cache, self._key)
        except FileNotFoundError:
            return None

    def _submit(self, day: PendingDay) -> Future[DayIndex]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool.submit(index_pending, day, self._cache, self._key)

    def close(self) -> None:
        """Stop the workers (a day being indexed is indexed again at the next start)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for day in self._running.values():
            self.pending.append(day)
        self._running.clear()
