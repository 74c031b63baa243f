"""TrailStore: the dashboard's live view of every bot trail under one audit directory.

What it composes, and where each part lives:

* the trails: ``bot.audit.trails.discover`` (the directory itself, or one
  subdirectory per bot), each read by its own ``bot.audit.reader.TrailFollower``,
  which owns partial lines, day rollover, truncation, replacement and ``.jsonl.gz``;
* the history: ``dashboard.history`` loads what the day index cache holds and lists
  the days still to index, which ``step`` indexes one by one after the dashboard has
  shown what it has;
* the aggregates: ``dashboard.aggregates`` (no threads) over ``DayIndex``es, fed by
  ``DayIndex.add`` — the one rule of what a record contributes — for live lines too;
* the watcher and the ingest thread: ``dashboard.ingest``;
* integrity: each line is checked against the chain as it is indexed, and
  ``dashboard.integrity`` puts the verdicts of days and bots together;
* the queries the pages ask: ``dashboard.queries`` (the read side, inherited).

Queries take the lock and return copies; ``version`` grows whenever something new
was ingested, so the UI can skip work while it is unchanged. Every query takes
``bot`` (None: all bots). The UI wraps the store in ``st.cache_resource`` so every
browser tab shares it; ``start()`` is idempotent and ``stop()`` is registered with
``atexit``. Worker threads never touch streamlit.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.audit import chain
from bot.audit.chaincheck import ChainCheck
from bot.audit.dayfile import gc_paused
from bot.audit.dayindex import MINUTE, DayIndex
from bot.audit.indexcache import Fingerprint, IndexCache, default_cache_dir
from bot.audit.reader import (
    FollowedRun,
    Malformed,
    ReadStats,
    Record,
    TrailFollower,
    open_trail_file,
    read_line,
)
from bot.audit.trails import discover
from dashboard.aggregates import (
    Aggregates,
    ControlState,
    Position,
    Protection,
    Results,
    SignalRow,
    Slippage,
    SymbolResult,
)
from dashboard.history import (
    HistoryIndexer,
    HistoryProgress,
    PendingDay,
    count_lines,
    index_pending,
    plan_trail,
)
from dashboard.ingest import Ingest
from dashboard.integrity import IntegrityStatus, combined, trail_status
from dashboard.queries import StoreQueries

__all__ = [
    "ControlState",
    "HistoryProgress",
    "IntegrityStatus",
    "Position",
    "Protection",
    "Results",
    "SignalRow",
    "Slippage",
    "SymbolResult",
    "TrailStore",
    "epoch_seconds",
]

_GAP = "audit_gap"
_RECOVERED = "audit_recovered"
_HANDOFF_SECONDS = 0.0002  # the ingest thread's pause after publishing, when a reader waits
_KEEP_SECONDS = 60.0  # how often the index of a live day is written to the cache
_CHUNK_BYTES = 8 << 20  # the most a follower reads of one file per poll
_LARGE_POLL = 10_000  # a poll that returned this many lines may have more waiting


def epoch_seconds(stamp: str) -> float:
    """Epoch seconds of a SPEC §4 timestamp; ValueError when it is not one."""
    seconds = chain.timestamp_seconds(stamp)
    if seconds is None:
        raise ValueError(stamp)
    return seconds


class _Trail:
    """One bot's trail: its follower, the chain checks of its live days."""

    def __init__(self, name: str, directory: Path, on_reset: Callable[[str, str], None]) -> None:
        self.name = name
        self.directory = directory
        self.follower = TrailFollower(
            directory, chunk_bytes=_CHUNK_BYTES, on_reset=lambda day: on_reset(name, day)
        )
        self.checks: dict[str, ChainCheck] = {}
        self.reverified: set[str] = set()
        self.kept: dict[str, int] = {}  # day -> records when last written to the cache


class TrailStore(StoreQueries):
    """Live, incrementally maintained view of the trails under one audit directory."""

    def __init__(
        self,
        audit_dir: str | os.PathLike[str],
        *,
        polling: bool = False,
        poll_interval: float = 1.0,
        bucket_seconds: int = MINUTE,
        recent_limit: int = 5000,
        clock: Callable[[], float] = time.time,
        hmac_key: bytes | str | None = None,
        trace_limit: int = 2000,
        trace_events_limit: int = 500,
        capped_limit: int = 20_000,
        exact_limit: int = 200_000,
        tail_lines: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        minute_days: int = 2,
        history_workers: int = 2,
    ) -> None:
        if bucket_seconds != MINUTE:
            raise ValueError("bucket_seconds: the day index counts per minute (60)")
        self.audit_dir = Path(audit_dir)
        self.bucket_seconds = bucket_seconds
        self.clock = clock
        self._key = hmac_key.encode() if isinstance(hmac_key, str) else hmac_key
        self._cache = IndexCache(
            Path(cache_dir) if cache_dir is not None else default_cache_dir(os.environ), self._key
        )
        self._minute_days = max(1, minute_days)
        self._tail_lines = tail_lines if tail_lines is not None else recent_limit
        self._capped_limit = capped_limit
        self._agg = Aggregates(
            recent_limit=recent_limit,
            trace_limit=trace_limit,
            trace_events_limit=trace_events_limit,
            exact_limit=exact_limit,
        )
        self._lock = threading.Lock()  # the aggregates
        self._ingest_lock = threading.Lock()  # followers and chain checks: one ingest at a time
        self._lifecycle = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._trails: dict[str, _Trail] = {}
        self._history = HistoryIndexer(self._cache, self._key, workers=history_workers)
        self._memo_version = -1
        self._memo_results: dict[tuple[Any, ...], Any] = {}
        self._waiters = 0
        self._last_keep = time.monotonic()
        self.version = 0
        self._ingest = Ingest(
            self.audit_dir, self._step, polling=polling, poll_interval=poll_interval
        )

    # -------------------------------------------------------------- lifecycle

    @property
    def polling(self) -> bool:
        return self._ingest.polling

    @property
    def poll_interval(self) -> float:
        return self._ingest.poll_interval

    @property
    def ingest_errors(self) -> int:
        return self._ingest.errors

    def start(self) -> None:
        """Show what is at hand, then watch and index the rest of the history in the
        background. Idempotent: a second call (another tab) does nothing."""
        with self._lifecycle:
            if self._ingest.running:
                return
            self.refresh(verify_history=False)
            self._ingest.start()
            atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the observer and the ingest thread, keep the live days' indexes. Idempotent."""
        with self._lifecycle:
            self._ingest.stop()
            self._history.close()
            atexit.unregister(self.stop)
            with self._ingest_lock:
                self._keep_live()

    @property
    def running(self) -> bool:
        return self._ingest.running

    def _step(self) -> bool:
        """One turn of the ingest thread: new lines, then one pending day of history."""
        self._refresh(history_budget=1)
        if time.monotonic() - self._last_keep > _KEEP_SECONDS:
            with self._ingest_lock:
                self._keep_live()
        return bool(self._history.pending)

    # -------------------------------------------------------------- ingest

    def refresh(self, *, verify_history: bool = True) -> int:
        """Ingest whatever is new now; returns records ingested (the history's, the first
        time). With ``verify_history`` the days still to index are indexed here too
        (tests, benchmarks, the headless alerts loop); ``start()`` passes False and lets
        the ingest thread index them one by one."""
        return self._refresh(history_budget=None if verify_history else 0)

    def _refresh(self, history_budget: int | None) -> int:
        with self._ingest_lock:
            count = 0
            opened = []
            for name, directory in discover(self.audit_dir).items():
                if name not in self._trails:
                    count += self._open_trail(name, directory)
                    opened.append(self._trails[name])
            with gc_paused():  # collect after publishing
                for trail in self._trails.values():
                    while True:  # a large first read comes in pieces (chunk_bytes each)
                        runs = trail.follower.poll_runs()
                        count += self._publish(trail, runs)
                        if sum(len(run.lines) for run in runs) < _LARGE_POLL:
                            break
            for trail in opened:  # what a first start read is kept at once
                self._keep_trail(trail)
            if history_budget != 0 and self._history.busy:
                count += self._take_history(self._history.advance(wait=history_budget is None))
            return count

    def _open_trail(self, name: str, directory: Path) -> int:
        """A trail seen for the first time: its history from the cache, its tail."""
        trail = _Trail(name, directory, self._on_reset)
        self._trails[name] = trail
        plan = plan_trail(name, directory, self._cache, trail.follower, self._minute_days)
        # the days that hold the newest tail_lines records are indexed now: the recent
        # table and the traces are filled in trail order, oldest first
        tail = self._tail_lines
        if plan.unread is not None and tail > 0:
            with contextlib.suppress(FileNotFoundError):
                tail = max(0, tail - count_lines(plan.unread))
        want = tail
        by_day: dict[str, DayIndex | PendingDay] = {i.day: i for i in plan.loaded}
        by_day.update((p.day_name, p) for p in plan.pending)
        for day in sorted(by_day, reverse=True):
            if want <= 0:
                break
            item = by_day[day]
            if isinstance(item, PendingDay):
                plan.pending.remove(item)
                item = index_pending(item, self._cache, self._key)
                plan.loaded.append(item)
            want -= item.lines
        plan.loaded.sort(key=lambda index: index.day)
        count = 0
        with self._lock:
            for index in plan.loaded:
                self._agg.put_day(index)
                count += index.records
                trail.kept[index.day] = index.records  # as the cache holds it
        trail.reverified.update(plan.changed)
        self._history.add(plan.pending)
        self._load_tail(trail, [index for index in plan.loaded if index.offset], tail)
        self._bump()
        return count

    def _load_tail(self, trail: _Trail, loaded: list[DayIndex], want: int) -> None:
        """The newest ``want`` records of the indexed days go through the per-record view
        too (recent table, traces, exact window edges), without being counted again."""
        found: list[tuple[float, DayIndex, Record, bytes]] = []
        covered_all = True
        max_year = time.gmtime().tm_year + 1
        for index in reversed(loaded):
            if want <= 0:
                covered_all = False
                break
            path = _day_path(trail.directory, index.day)
            if path is None:
                covered_all = False
                continue
            lines = _last_lines(path, index.offset, want)
            if len(lines) < index.lines:
                covered_all = False
            want -= len(lines)
            for line in reversed(lines):
                parsed = read_line(line, max_year)
                if isinstance(parsed, str):
                    continue  # counted as malformed when the day was indexed
                record, ts = parsed
                found.append((ts, index, record, line))
        if not found:
            if loaded:
                with self._lock:
                    self._agg.exact_floor = max(
                        self._agg.exact_floor, max(_last_ts(index) for index in loaded)
                    )
            return
        found.reverse()
        with self._lock:
            stamps = [ts for ts, _, _, _ in found]
            keys = [index.key_of(record) for _, index, record, _ in found]
            records = [record for _, _, record, _ in found]
            self._agg.note(stamps, keys, records, [line for _, _, _, line in found])
            if not covered_all:
                self._agg.exact_floor = max(self._agg.exact_floor, found[0][0])
            self._agg.sort_exact()
            self._agg.trim()

    def _take_history(self, done: list[tuple[PendingDay, DayIndex | None]]) -> int:
        """Show the days the history indexer has finished."""
        count = 0
        with self._lock:
            for pending, index in done:
                if index is None:
                    continue
                trail = self._trails.get(pending.trail)
                if trail is not None:
                    with contextlib.suppress(FileNotFoundError):
                        if pending.path.stat().st_size == index.offset:
                            trail.follower.resume(pending.path, index.offset, index.lines)
                self._agg.put_day(index)
                self._agg.exact_floor = max(self._agg.exact_floor, _last_ts(index))
                count += index.records
        if done:
            self._bump()
        return count

    def _publish(self, trail: _Trail, runs: list[FollowedRun]) -> int:
        """Add new lines of one trail to its day indexes and make them visible."""
        if not runs:
            return 0
        count = 0
        days = []
        with self._lock:
            agg = self._agg
            for run in runs:
                day = chain.day_of_file(Path(run.file)) or ""
                index = agg.days.get((trail.name, day))
                if index is None:
                    index = DayIndex(trail.name, day)
                    agg.put_day(index)
                days.append((day, index))
                # ts: the reader converted it while validating
                keys, records, stamps, lines = index.add_run(
                    run.first, run.lines, run.parsed, run.ts, run.malformed
                )
                agg.note(stamps, keys, records, lines)
                count += len(keys)
            agg.trim()
        self._bump()
        if self._waiters:
            # let a reader blocked in wait_for_version take the GIL before the chain check
            time.sleep(_HANDOFF_SECONDS)
        for run, (day, index) in zip(runs, days, strict=True):
            check = trail.checks.get(day)
            if check is None or check.ends is not index.chain:
                check = trail.checks[day] = ChainCheck(self._key, index.chain)
            with self._lock:  # the integrity status reads the chain ends
                check.check(f"audit_{day}.jsonl", run.first, run.lines)
        return count

    def _on_reset(self, trail: str, day: str) -> None:
        """A day file shrank or was replaced and is read again: forget what came from it."""
        with self._lock:
            self._agg.drop_day(trail, day)
        owner = self._trails.get(trail)
        if owner is not None:
            owner.checks.pop(day, None)
            owner.reverified.add(f"audit_{day}.jsonl")

    def _keep_live(self) -> None:
        """Write the indexes of days read through the live path to the cache."""
        self._last_keep = time.monotonic()
        for trail in self._trails.values():
            self._keep_trail(trail)

    def _keep_trail(self, trail: _Trail) -> None:
        """Write the indexes of the trail's days read here that changed since kept."""
        for path in chain.trail_files(trail.directory):
            day = chain.day_of_file(path)
            assert day is not None
            with self._lock:
                index = self._agg.days.get((trail.name, day))
                if index is None or index.signals is None:
                    continue  # not read here (loaded from the cache as it was)
                if trail.kept.get(day) == index.records:
                    continue
                if path.name.endswith(".gz") or index.offset == 0:
                    continue
                try:
                    fingerprint = Fingerprint.of(path)
                except FileNotFoundError:
                    continue
                self._cache.keep(path, index, fingerprint)
                trail.kept[day] = index.records

    def _bump(self) -> None:
        with self._lock:
            self.version += 1
            self._changed.notify_all()

    def wait_for_version(self, version: int, timeout: float) -> bool:
        """Block until ``self.version > version`` or ``timeout`` seconds pass."""
        with self._changed:
            self._waiters += 1
            try:
                return self._changed.wait_for(lambda: self.version > version, timeout)
            finally:
                self._waiters -= 1

    def _day_file(self, trail: str, day: str) -> Path | None:
        owner = self._trails.get(trail)
        return _day_path(owner.directory, day) if owner is not None else None

    @property
    def history_progress(self) -> HistoryProgress:
        with self._lock:
            return replace(self._history.progress)

    @property
    def read_stats(self) -> ReadStats:
        """What the readers have seen: records, malformed lines by reason (history and
        live), truncations and replacements."""
        out = ReadStats()
        with self._lock:
            for index in self._agg.indexes():
                out.records += index.records
                for reason, n in index.malformed.items():
                    out.malformed += n
                    out.malformed_by_reason[reason] += n
                name = f"audit_{index.day}.jsonl"
                out.recent_malformed.extend(
                    Malformed(name, number, reason, preview)
                    for number, reason, preview in index.malformed_lines
                )
        for trail in list(self._trails.values()):  # ints read without the ingest lock
            out.truncations += trail.follower.stats.truncations
            out.replacements += trail.follower.stats.replacements
        return out

    def integrity_by_bot(self) -> dict[str, IntegrityStatus]:
        """The integrity status of each trail (SPEC §9: each bot's chain on its own)."""
        out: dict[str, IntegrityStatus] = {}
        # not under the ingest lock: a first start may hold it for seconds
        pending = self._history.trails_left()
        trails = list(self._trails.values())
        with self._lock:
            for trail in trails:
                days = [i for i in self._agg.indexes() if i.trail == trail.name]
                status = trail_status(days, trail.name in pending)
                for index in days:
                    for (_, kind, _, _), n in index.totals.items():  # the day's sums
                        if kind == _GAP:
                            status.gaps += n
                        elif kind == _RECOVERED:
                            status.recoveries += n
                status.reverified_days = sorted(trail.reverified)
                out[trail.name] = status
        return out

    @property
    def integrity(self) -> IntegrityStatus:
        """All trails together: intact only if every one is (None while history is
        still being indexed)."""
        statuses = self.integrity_by_bot()
        if not statuses:
            return IntegrityStatus(ok=True)
        return combined(statuses.values())


def _last_ts(index: DayIndex) -> float:
    return max(index.last_event.values(), default=-math.inf)


def _day_path(directory: Path, day: str) -> Path | None:
    for name in (f"audit_{day}.jsonl", f"audit_{day}.jsonl.gz"):
        path = directory / name
        if path.exists():
            return path
    return None


def _last_lines(path: Path, end: int, count: int) -> list[bytes]:
    """The last ``count`` complete lines before byte ``end`` (uncompressed) of a day file."""
    if path.name.endswith(".gz"):
        with open_trail_file(path) as fh:
            data = fh.read(end)
        return data[: data.rfind(b"\n") + 1].split(b"\n")[:-1][-count:] if count else []
    with open(path, "rb") as fh:
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= count:
            step = min(pos, 4 << 20)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
    if pos > 0:
        lines = lines[1:]  # the first may be cut
    return lines[-count:]
