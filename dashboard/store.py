"""TrailStore: the dashboard's one watcher, one ingest thread and incremental aggregates.

What lives here and why:

* **One watcher per server process.** ``start()`` loads the history once, then runs
  one watchdog observer (``PollingObserver`` with ``polling=True``, for network and
  bind mounts where inotify sees nothing) and one ingest thread that also polls
  every ``poll_interval`` as a safety net. The UI wraps the store in
  ``st.cache_resource`` so every browser tab shares it; ``start()`` is idempotent
  and ``stop()`` is registered with ``atexit``. Worker threads never touch
  streamlit; queries take a lock and return copies. ``version`` grows whenever
  something new was ingested, so the UI can skip work while it is unchanged.
* **Only appended bytes are read** — through ``bot.audit.reader.TrailFollower``,
  which owns partial lines, day rollover, truncation, replacement and ``.jsonl.gz``
  history. Malformed lines are counted in ``read_stats``, never fatal. When a file
  is truncated or replaced and must be read again, what came from its day is
  dropped first so nothing is counted twice.
* **Bounded aggregates.** Per time bucket a small counter keyed by
  ``(event_type, symbol, detail)`` where detail is the rejection reason of a
  ``risk_rejection`` or the ``order_type`` of an order event, plus symbol-free
  rollups of the same bucket; every panel is a projection of these counters, so
  memory grows with the time span covered (a few hundred bytes per active
  bucket), never with the number of records. Besides: a bounded deque of recent
  records (tables), a bounded LRU of traces, a bounded deque of capped
  quantities, and a bounded time-ordered index of the newest records so that
  window edges cutting a bucket are exact (older edges: bucket resolution).
* **Integrity, incrementally.** Each new line is checked against the hash chain
  (``bot.audit.chain``: digest of the body, ``prev`` linkage, ``seq`` + 1) as it
  arrives. The history is checked once, in slices, by the ingest thread after
  the cold load, so the dashboard is usable at once; ``integrity.ok`` is ``None``
  until that pass has finished. ``audit_gap`` / ``audit_recovered`` are counted,
  not failures.

Cold load: ``_bulk_load`` reads the history with the bulk parsers of
``dashboard.history`` (the C counter, else pyarrow, ~8 MB pieces on two threads,
doubtful pieces line by line); why those parsers, the candidates measured and how the
load uses both CPUs are explained there.

The live path (``_publish``): new lines are read by the C field reader
(``bot/audit/native/_bulk.c``, through ``TrailFollower``'s ``quick``), which returns
only what the aggregates need, without a dict per record; a line it does not vouch for
is parsed and validated as before. Records are kept as their lines for the recent
table and the traces and parsed when asked for. The counters are updated once per
distinct (bucket, key) of the batch, what the bounded containers push out is freed
after publishing, cyclic garbage collection waits until the batch is published, and a
reader blocked in ``wait_for_version`` gets the GIL before the chain check. Per 1,000
records that leaves ~0.6 ms from the write to the watchdog handler, ~2 ms in
``TrailFollower.poll_lines`` and ~1.2-1.5 ms here: ~4 ms from write to visible
(it was ~9-16 ms with orjson and a dict per record).
"""

from __future__ import annotations

import atexit
import bisect
import calendar
import contextlib
import gc
import logging
import math
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from bot.audit import chain, native
from bot.audit.events import EVENT_TYPE_VALUES
from bot.audit.reader import (
    MIN_YEAR,
    FollowedLine,
    ReadStats,
    Record,
    TrailFollower,
    open_trail_file,
)
from bot.audit.verify import scan_lines
from dashboard.history import (
    CAPPED,
    HEARTBEAT,
    ORDER_OUTCOMES,
    RISK_REJECTION,
    ROLES,
    ColumnarChunk,
    DayFile,
    Key,
    add_counts,
    give_back,
    parse_piece,
    parse_tail,
    release_memory,
)

log = logging.getLogger("dashboard.store")

_DETAILED = frozenset((RISK_REJECTION, *ORDER_OUTCOMES))  # kinds whose key has a detail
_GAP = "audit_gap"
_RECOVERED = "audit_recovered"
_DAY = 86_400
_HISTORY_SLICE = 20_000  # lines the ingest thread verifies between two polls
_HANDOFF_SECONDS = 0.0002  # the ingest thread's pause after publishing, when a reader waits
_IN_FLIGHT = 4  # cold-load pieces read ahead of the one being merged


@dataclass
class IntegrityStatus:
    """Whether the hash chain verifies; gaps and crash repairs are reported, not failures."""

    ok: bool | None = None  # None: history not checked yet
    checked_records: int = 0
    problem: str | None = None  # the first problem found
    gaps: int = 0  # audit_gap records
    recoveries: int = 0  # audit_recovered records
    problems: int = 0


# ------------------------------------------------------------------ timestamps

_MINUTES: dict[str, int] = {}


def epoch_seconds(stamp: str) -> float:
    """Epoch seconds of a validated SPEC §4 timestamp (``2026-11-26T15:04:05.123456Z``).

    Raises ValueError for an impossible date (the reader checks the shape only)."""
    minute = stamp[:16]
    base = _MINUTES.get(minute)
    if base is None:
        base = calendar.timegm(time.strptime(minute, "%Y-%m-%dT%H:%M"))
        if len(_MINUTES) > 100_000:
            _MINUTES.clear()
        _MINUTES[minute] = base
    seconds = float(stamp[17:-1])
    if not 0 <= seconds < 61:
        raise ValueError(stamp)
    return base + seconds


def record_detail(event_type: str, record: Record) -> str:
    """The reason of a risk rejection, the order type of an order event, else ""."""
    if event_type == RISK_REJECTION:
        error = record.get("error")
        reason = error.get("reason") if error else None
        return reason if isinstance(reason, str) else "unknown"
    if event_type in ORDER_OUTCOMES:
        for name in ("order_data", "response"):
            data = record.get(name)
            if data:
                kind = data.get("order_type") or data.get("type") or data.get("orderType")
                if isinstance(kind, str):
                    return kind
        return "unknown"
    return ""


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


LineFields = tuple[float, str, str, str, str | None, float, float]
"""What the aggregates read of a record: (epoch seconds, event_type, symbol or "",
detail, trace_id, requested and capped quantity of a capped record, else 0.0)."""


def record_fields(record: Record) -> LineFields:
    """The LineFields of a parsed record; ValueError for an impossible timestamp."""
    ts = epoch_seconds(record["timestamp"])
    kind: str = record["event_type"]
    requested = capped = 0.0
    if kind == CAPPED:
        data = record.get("additional_data") or {}
        requested = _number(data.get("requested_quantity"))
        capped = _number(data.get("capped_quantity"))
    detail = record_detail(kind, record) if kind in _DETAILED else ""
    return ts, kind, record.get("symbol") or "", detail, record.get("trace_id"), requested, capped


def line_fields(lines: list[bytes], max_year: int) -> list[LineFields | None]:
    """The LineFields of each line, read by the C field reader (no dict per record), or
    None where the line must be parsed and validated as usual (TrailFollower's quick)."""
    assert native.bulk is not None
    fields: list[LineFields | None] = native.bulk.fields(
        lines, MIN_YEAR, max_year, EVENT_TYPE_VALUES, *ROLES
    )
    return fields


# ------------------------------------------------------------------ integrity


class _ChainChecker:
    """Incremental hash-chain verification; history first, then live lines in order.

    Runs of lines go through the verifier's own check (``bot.audit.verify.scan_lines``);
    only a line it refuses takes the slow path, which says what is wrong and re-anchors
    the chain on that line so one bad line is reported once."""

    _BATCH = 20_000

    def __init__(self, hmac_key: bytes | None) -> None:
        self.status = IntegrityStatus()
        self._key = hmac_key
        self._sealer = chain.Sealer(hmac_key)
        self._seq: int | None = None  # of the last checked record
        self._hash: bytes | None = None
        self._file = ""
        self._day_start: dict[str, tuple[int | None, bytes | None]] = {}
        self._history: Iterator[tuple[str, int, bytes]] | None = None
        self._pending: deque[tuple[str, int, bytes]] = deque()

    @property
    def history_pending(self) -> bool:
        return self._history is not None

    def set_history(self, plan: list[tuple[Path, int]]) -> None:
        self._history = _history_lines(plan)

    def advance_history(self, budget: int | None) -> None:
        """Verify up to ``budget`` history lines (all when None); then the queued live ones."""
        if self._history is None:
            return
        left = budget
        while left is None or left > 0:
            size = self._BATCH if left is None else min(left, self._BATCH)
            batch = list(islice(self._history, size))
            self._check_lines(batch)
            if len(batch) < size:  # history exhausted
                self._history = None
                self._check_lines(list(self._pending))
                self._pending.clear()
                if self.status.ok is None:
                    self.status.ok = True
                return
            if left is not None:
                left -= size

    def feed(self, lines: list[FollowedLine]) -> None:
        """Check new lines in order (queued while the history check is pending)."""
        items = [(line.file, line.number, line.raw) for line in lines]
        if self._history is not None:
            self._pending.extend(items)
        else:
            self._check_lines(items)

    def rewind(self, day: str) -> None:
        """A day file is read again from its start: check it against the chain as it stood."""
        # lines already queued from that day will be read again
        self._pending = deque(
            item for item in self._pending if chain.day_of_file(Path(item[0])) != day
        )
        self._seq, self._hash = self._day_start.get(day, (None, None))
        self._file = ""

    def _check_lines(self, items: list[tuple[str, int, bytes]]) -> None:
        start, total = 0, len(items)
        while start < total:
            file = items[start][0]
            stop = start
            while stop < total and items[stop][0] == file:
                stop += 1
            self._enter(file)
            self._check_run(items[start:stop])
            start = stop

    def _check_run(self, run: list[tuple[str, int, bytes]]) -> None:
        """Lines of one file, in order."""
        raws = [raw for _, _, raw in run]
        at = 0
        while at < len(raws):
            if self._seq is None or self._hash is None:
                self._check_one(*run[at])  # nothing to link to yet: take the line's word
                at += 1
                continue
            bad, seq, prev = scan_lines(raws[at:], self._seq + 1, self._hash, self._key)
            good = (len(raws) - at) if bad is None else bad
            self.status.checked_records += good
            self._seq, self._hash = seq - 1, prev
            if bad is None:
                return
            self._check_one(*run[at + bad])
            at += bad + 1

    def _enter(self, file: str) -> None:
        if file != self._file:
            self._file = file
            day = chain.day_of_file(Path(file))
            if day is not None:
                self._day_start.setdefault(day, (self._seq, self._hash))

    def _check_one(self, file: str, number: int, raw: bytes) -> None:
        """Say exactly what is wrong with a line, then continue the chain from it."""
        seal = chain.parse_seal(raw)
        if seal is None:
            self._fail(file, number, "not a sealed audit record (edited or torn)")
            self._seq = self._hash = None
            return
        seq, prev, digest = seal
        if self._sealer.digest(chain.body_of(raw)) != digest:
            hint = "" if self._sealer.keyed else " (or the trail is HMAC-sealed: set the key)"
            self._fail(file, number, f"hash does not match the content: edited{hint}")
        elif self._hash is not None and prev != self._hash:
            self._fail(file, number, "prev does not link to the previous record")
        elif self._seq is not None and seq != self._seq + 1:
            self._fail(file, number, f"seq {seq} follows {self._seq}: inserted/deleted/reordered")
        self._seq, self._hash = seq, digest
        self.status.checked_records += 1

    def _fail(self, file: str, number: int, what: str) -> None:
        self.status.problems += 1
        self.status.ok = False
        if self.status.problem is None:
            self.status.problem = f"{file} line {number}: {what}"


def _history_lines(plan: list[tuple[Path, int]]) -> Iterator[tuple[str, int, bytes]]:
    """(file, line number, line) of the first ``end`` bytes of each file, read in chunks."""
    for path, end in plan:
        candidates = [path, path.with_name(path.name + ".gz")]
        for candidate in candidates:
            try:
                fh = open_trail_file(candidate)
                break
            except FileNotFoundError:
                continue
        else:
            continue
        with fh:
            consumed, number, partial = 0, 0, b""
            while consumed < end:
                chunk = fh.read(min(4 << 20, end - consumed))
                if not chunk:
                    break
                consumed += len(chunk)
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    number += 1
                    yield path.name, number, line


# ------------------------------------------------------------------ watching


class _WakeOnChange(FileSystemEventHandler):
    """Wakes the ingest thread when a day file (or the directory) changes."""

    def __init__(self, wake: threading.Event) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        names = [event.src_path, getattr(event, "dest_path", "")]
        if event.is_directory or any(
            chain.DAY_FILE_RE.match(os.path.basename(os.fsdecode(n))) for n in names if n
        ):
            self._wake.set()


_WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileModifiedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,
    DirCreatedEvent,
]


# ------------------------------------------------------------------ the store


class TrailStore:
    """Live, incrementally maintained view of one audit directory (see the module doc)."""

    def __init__(
        self,
        audit_dir: str | os.PathLike[str],
        *,
        polling: bool = False,
        poll_interval: float = 1.0,
        bucket_seconds: int = 60,
        recent_limit: int = 5000,
        clock: Callable[[], float] = time.time,
        hmac_key: bytes | str | None = None,
        trace_limit: int = 2000,
        trace_events_limit: int = 500,
        capped_limit: int = 20_000,
        exact_limit: int = 200_000,
        tail_lines: int | None = None,
    ) -> None:
        if bucket_seconds <= 0 or _DAY % bucket_seconds:
            raise ValueError("bucket_seconds must divide a day (e.g. 10, 60, 300)")
        self.audit_dir = Path(audit_dir)
        self.polling = polling
        self.poll_interval = poll_interval
        self.bucket_seconds = bucket_seconds
        self.clock = clock
        self._recent_limit = recent_limit
        self._trace_limit = trace_limit
        self._trace_events_limit = trace_events_limit
        self._exact_limit = exact_limit
        # newest history lines loaded record by record (recent table, traces, exact edges)
        self._tail_lines = tail_lines if tail_lines is not None else max(recent_limit, 10_000)
        key = hmac_key.encode() if isinstance(hmac_key, str) else hmac_key

        self._lock = threading.Lock()  # aggregates
        self._ingest_lock = threading.Lock()  # follower + checker: one ingest at a time
        self._lifecycle = threading.Lock()
        self._check_lock = threading.Lock()  # the chain checker
        self._changed = threading.Condition(self._lock)
        self._follower = TrailFollower(
            self.audit_dir,
            on_reset=self._on_reset,
            quick=line_fields if native.bulk is not None else None,
        )
        self._stats: ReadStats = self._follower.stats
        self._checker = _ChainChecker(key)
        self._loaded = False

        self._buckets: dict[int, dict[Key, int]] = {}
        # symbol-free rollups of the same buckets, so whole-trail series are cheap
        self._bucket_types: dict[int, dict[str, int]] = {}
        self._bucket_reasons: dict[int, dict[str, int]] = {}
        self._memo_version = -1
        self._memo_results: dict[tuple[Any, ...], Any] = {}
        self._totals: Counter[str] = Counter()
        self._keys: dict[Key, Key] = {}
        self._exact_ts: list[float] = []
        self._exact_keys: list[Key] = []
        self._exact_floor = -math.inf  # newest timestamp dropped from the exact index
        # Records are kept as their lines and parsed when asked for (a dict costs ~4x the
        # line's memory, and building one per live record ~1.5 us).
        # (ts, event_type, symbol, line), kept to recent_limit by _apply:
        self._recent: deque[tuple[float, str, str, bytes]] = deque()
        self._traces: OrderedDict[str, list[tuple[float, bytes]]] = OrderedDict()
        self._capped: deque[tuple[float, str, float, float]] = deque(maxlen=capped_limit)
        self._symbols: set[str] = set()
        self._evicted: list[Any] = []  # pushed out of recent/traces, freed after publishing
        self._waiters = 0  # threads in wait_for_version
        self.version = 0
        self.last_event_time: float | None = None
        self.last_heartbeat_time: float | None = None
        self.ingest_errors = 0

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Load history, then watch. Idempotent: a second call (another tab) does nothing."""
        with self._lifecycle:
            if self._thread is not None:
                return
            self._stop.clear()
            self.refresh(verify_history=False)
            self._start_observer()
            self._thread = threading.Thread(target=self._run, name="trail-ingest", daemon=True)
            self._thread.start()
            atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the observer and the ingest thread and wait for them. Idempotent."""
        with self._lifecycle:
            self._stop.set()
            self._wake.set()
            observer, self._observer = self._observer, None
            thread, self._thread = self._thread, None
            if observer is not None:
                observer.stop()
                observer.join(timeout=10)
            if thread is not None:
                thread.join(timeout=30)
            atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start_observer(self) -> None:
        if self._observer is not None or not self.audit_dir.is_dir():
            return  # a directory that appears later is picked up by the periodic poll
        observer: BaseObserver = (
            PollingObserver(timeout=self.poll_interval) if self.polling else Observer()
        )
        observer.name = "trail-watch"
        observer.daemon = True
        try:
            observer.schedule(
                _WakeOnChange(self._wake), str(self.audit_dir), event_filter=_WATCHED_EVENTS
            )
            observer.start()
        except OSError as exc:  # e.g. inotify watch limit: the periodic poll still works
            log.warning(
                "cannot watch %s (%s); polling every %ss", self.audit_dir, exc, self.poll_interval
            )
            return
        self._observer = observer

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = self._checker.history_pending
            if not busy:
                self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._refresh(history_budget=_HISTORY_SLICE)
                observer = self._observer
                if observer is not None and not observer.is_alive():
                    # e.g. the watched directory was removed: watch again once it is back
                    self._observer = None
                    observer.stop()
                if self._observer is None and not self._stop.is_set():
                    self._start_observer()
            except Exception:
                self.ingest_errors += 1
                log.exception("audit trail ingest failed; retrying at the next poll")

    # -------------------------------------------------------------- ingest

    def refresh(self, *, verify_history: bool = True) -> int:
        """Ingest whatever is new now (cold load on first call); returns records ingested.

        With ``verify_history`` the one-off hash check of the history also completes
        here (tests, benchmarks, the headless alerts loop); ``start()`` passes False and
        lets the ingest thread do it in slices. Until that check has run, the lines
        that arrive are queued for it, so a caller polling with False must not do so
        forever."""
        return self._refresh(history_budget=None if verify_history else 0)

    def _refresh(self, history_budget: int | None) -> int:
        with self._ingest_lock:
            if not self._loaded:
                # The load allocates millions of acyclic tuples: collecting cycles meanwhile
                # only costs time (about 5-10 % of the load, measured).
                collecting = gc.isenabled()
                gc.disable()
                try:
                    count = self._bulk_load()
                finally:
                    if collecting:
                        gc.enable()
                self._loaded = True
            else:
                # A batch allocates several tracked containers per record: a cycle
                # collection meanwhile (0.3-2 ms per 1,000 records, and ~60 ms for a full
                # one, measured) is postponed until the batch has been published.
                collecting = gc.isenabled()
                gc.disable()
                try:
                    lines = self._follower.poll_lines()
                    count = self._publish(lines)
                finally:
                    if collecting:
                        gc.enable()
                if lines:
                    with self._lock:
                        self._evicted.clear()  # freed now, not while publishing
                        self._trim_exact()
                    with self._check_lock:
                        self._checker.feed(lines)  # the integrity status is read live
            if history_budget != 0 and self._checker.history_pending:
                with self._check_lock:
                    self._checker.advance_history(history_budget)
                self._bump()
            return count

    def _bulk_load(self) -> int:
        """Read every complete line of the history and position the follower after it.

        The newest ``tail_lines`` lines go through the per-record path (they fill the
        recent table and the trace LRU); everything older only feeds the counters, via
        the columnar parser, piece by piece on two threads (pyarrow, numpy and libc
        release the GIL) that also reduce each piece to per-bucket counts, while this
        one reads ahead and adds the finished pieces in trail order."""
        paths = chain.trail_files(self.audit_dir)
        files: dict[Path, DayFile] = {}
        tails: dict[Path, int] = {}
        remaining = self._tail_lines
        for path in reversed(paths):
            if remaining <= 0:
                break
            with contextlib.suppress(FileNotFoundError):
                day = files[path] = DayFile(path)
                tails[path], found = day.tail_start(remaining)
                remaining -= found
        plan: list[tuple[Path, int]] = []
        count = 0
        max_year = time.gmtime().tm_year + 1
        keys = self._keys  # the workers intern keys in it (dict.setdefault is atomic)
        lines_of: dict[Path, int] = {}
        Parsed = ColumnarChunk | tuple[list[bytes], list[Record | str]]
        # (file, read buffer to reuse, job, whether it is the file's last step)
        steps: deque[tuple[DayFile, bytearray | None, Future[Parsed], bool]] = deque()
        free: list[bytearray] = []  # read buffers to reuse

        def finish() -> int:
            """Take the oldest step: a piece (columnar, or line by line when doubtful) or
            the per-record tail of a file, then the follower's resume point."""
            day, buffer, job, last = steps.popleft()
            path, number = day.path, lines_of.get(day.path, 0)
            result = job.result()
            if isinstance(result, ColumnarChunk):
                self._stats.records += result.rows
                lines_of[path] = number + result.rows
                taken = self._take_columns(result)
            else:
                lines = self._followed(path.name, number, *result)
                lines_of[path] = number + len(lines)
                taken = self._apply(lines)
                with self._lock:
                    self._evicted.clear()
                    self._trim_exact()
            give_back(free, buffer)
            if last:
                day.close()
                with contextlib.suppress(FileNotFoundError):
                    self._follower.resume(path, day.end, lines_of[path])
                    plan.append((path, day.end))
            return taken

        opened: list[DayFile] = list(files.values())
        try:
            with ThreadPoolExecutor(2, thread_name_prefix="trail-cold-load") as pool:
                for path in paths:
                    day_file = files.pop(path, None)
                    if day_file is None:
                        try:
                            day_file = DayFile(path)
                        except FileNotFoundError:
                            continue
                        opened.append(day_file)
                    for data, start, end in day_file.pieces(tails.get(path), free):
                        job = pool.submit(
                            parse_piece, data, start, end, self.bucket_seconds, max_year, keys
                        )
                        buffer = data if isinstance(data, bytearray) else None
                        steps.append((day_file, buffer, job, False))
                        while len(steps) > _IN_FLIGHT:
                            count += finish()
                    # the per-record tail: parsed on the pool, alongside the last pieces
                    tail = day_file.rest().split(b"\n")[:-1] if path in tails else []
                    job = pool.submit(parse_tail, tail, max_year)
                    steps.append((day_file, None, job, True))
                while steps:
                    count += finish()
        finally:
            for day_file in opened:
                day_file.close()
        free.clear()
        release_memory()
        with self._check_lock:
            self._checker.set_history(plan)
        self._bump()
        return count

    def _followed(
        self, name: str, first: int, lines: list[bytes], parsed: list[Record | str]
    ) -> list[FollowedLine]:
        """``lines`` of file ``name`` after line ``first``, as parsed by parse_lines; the
        malformed ones are counted here, in trail order."""
        out: list[FollowedLine] = []
        stats = self._stats
        for number, (line, record) in enumerate(zip(lines, parsed, strict=True), start=first + 1):
            if isinstance(record, str):
                stats.note_malformed(name, number, record, line)
            else:
                stats.records += 1
            out.append(FollowedLine(name, number, line, record))
        return out

    def _take_columns(self, columns: ColumnarChunk) -> int:
        """Add the aggregates of a columnar piece (buckets hold a few hundred groups)."""
        with self._lock:
            for number, by_key in columns.counts:
                add_counts(self._buckets, number, by_key)
            for number, by_kind in columns.kinds:
                add_counts(self._bucket_types, number, by_kind)
            for number, by_reason in columns.reasons:
                add_counts(self._bucket_reasons, number, by_reason)
            self._totals.update(columns.totals)
            self._capped.extend(columns.capped)
            self._symbols.update(columns.symbols)
            if columns.last_ts is not None and (
                self.last_event_time is None or columns.last_ts > self.last_event_time
            ):
                self.last_event_time = columns.last_ts
            if columns.last_heartbeat is not None and (
                self.last_heartbeat_time is None
                or columns.last_heartbeat > self.last_heartbeat_time
            ):
                self.last_heartbeat_time = columns.last_heartbeat
            # The exact index only covers what went through the per-record path.
            self._exact_floor = max(self._exact_floor, columns.last_ts or -math.inf)
        return columns.rows

    def _publish(self, lines: list[FollowedLine]) -> int:
        """Add new lines to the aggregates and make them visible (the chain check follows)."""
        if not lines:
            return 0
        count = self._apply(lines)
        self._bump()
        if self._waiters:
            # Let a reader blocked in wait_for_version take the GIL now rather than at the
            # next forced switch (up to 5 ms, i.e. after the chain check).
            time.sleep(_HANDOFF_SECONDS)
        return count

    def _apply(self, lines: list[FollowedLine]) -> int:
        """Add the valid records of ``lines`` to every aggregate; the caller publishes them
        (``_bump``). The live hot path: the store's containers are bound to locals once per
        batch, the counters are updated once per distinct (bucket, key) of the batch, and
        what the bounded containers push out is kept in ``_evicted`` to be freed after
        publishing (freeing ~5 old records per new one cost ~1 ms per 1,000)."""
        size = self.bucket_seconds
        keys, exact_ts, exact_keys = self._keys, self._exact_ts, self._exact_keys
        recent, traces, evicted = self._recent, self._traces, self._evicted
        trace_limit, trace_events_limit = self._trace_limit, self._trace_events_limit
        intern = keys.setdefault
        add_ts, add_key, add_recent = exact_ts.append, exact_keys.append, recent.append
        trace_of, touch, add_capped = traces.get, traces.move_to_end, self._capped.append
        slots: list[tuple[int, Key]] = []
        slot = slots.append
        with self._lock:
            first = len(exact_ts)
            last_beat = self.last_heartbeat_time
            for line in lines:
                fields = line.parsed
                if isinstance(fields, str):
                    continue
                if isinstance(fields, dict):  # not read by the C field reader
                    try:
                        fields = record_fields(fields)
                    except (ValueError, TypeError):
                        self._stats.records -= 1
                        self._stats.note_malformed(
                            line.file, line.number, "bad_timestamp", line.raw
                        )
                        continue
                ts, kind, symbol, detail, trace_id, requested, capped = fields
                key = (kind, symbol, detail)
                key = intern(key, key)
                slot((int(ts // size), key))
                add_ts(ts)
                add_key(key)
                add_recent((ts, kind, symbol, line.raw))
                if kind == HEARTBEAT:
                    if last_beat is None or ts > last_beat:
                        last_beat = ts
                elif kind == CAPPED:
                    add_capped((ts, symbol, requested, capped))
                if trace_id:
                    events = trace_of(trace_id)
                    if events is None:
                        events = traces[trace_id] = []
                        if len(traces) > trace_limit:
                            evicted.append(traces.popitem(last=False))
                    else:
                        touch(trace_id)
                    if len(events) < trace_events_limit:
                        events.append((ts, line.raw))
            self.last_heartbeat_time = last_beat
            for _ in range(len(recent) - self._recent_limit):
                evicted.append(recent.popleft())
            if not slots:
                return 0
            for (number, key), n in Counter(slots).items():
                self._count(number, key, n)
                if key[1]:
                    self._symbols.add(key[1])
            newest = max(exact_ts[first:])
            if self.last_event_time is None or newest > self.last_event_time:
                self.last_event_time = newest
        return len(slots)

    def _count(self, number: int, key: Key, n: int) -> None:
        """Add ``n`` records of ``key`` to bucket ``number`` and to its rollups."""
        bucket = self._buckets.get(number)
        if bucket is None:
            bucket = self._buckets[number] = {}
            self._bucket_types[number] = {}
        bucket[key] = bucket.get(key, 0) + n
        kind = key[0]
        kinds = self._bucket_types[number]
        kinds[kind] = kinds.get(kind, 0) + n
        self._totals[kind] += n
        if kind == RISK_REJECTION:
            reasons = self._bucket_reasons.setdefault(number, {})
            reasons[key[2]] = reasons.get(key[2], 0) + n

    def _trim_exact(self) -> None:
        excess = len(self._exact_ts) - self._exact_limit
        if excess > self._exact_limit // 4:  # amortized: trim in large steps
            self._exact_floor = max(self._exact_floor, max(self._exact_ts[:excess]))
            del self._exact_ts[:excess]
            del self._exact_keys[:excess]

    def _on_reset(self, day: str) -> None:
        """A day file shrank or was replaced and is read again: forget what came from it."""
        lo = calendar.timegm(time.strptime(day, "%Y%m%d"))
        hi = lo + _DAY
        with self._check_lock:
            self._checker.rewind(day)
        with self._lock:
            for number in [b for b in self._buckets if lo <= b * self.bucket_seconds < hi]:
                for key, n in self._buckets.pop(number).items():
                    self._totals[key[0]] -= n
                self._bucket_types.pop(number, None)
                self._bucket_reasons.pop(number, None)
            keep = [i for i, ts in enumerate(self._exact_ts) if not lo <= ts < hi]
            self._exact_ts = [self._exact_ts[i] for i in keep]
            self._exact_keys = [self._exact_keys[i] for i in keep]
            self._recent = deque(item for item in self._recent if not lo <= item[0] < hi)
            self._capped = deque(
                (item for item in self._capped if not lo <= item[0] < hi),
                maxlen=self._capped.maxlen,
            )
            for trace_id in list(self._traces):
                events = [e for e in self._traces[trace_id] if not lo <= e[0] < hi]
                if events:
                    self._traces[trace_id] = events
                else:
                    del self._traces[trace_id]

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

    # -------------------------------------------------------------- queries

    def counts(self, start: float, end: float, symbol: str | None = None) -> Counter[str]:
        """event_type -> number of records with timestamp in [start, end)."""
        out: Counter[str] = Counter()
        with self._lock:
            for key, n in self._window(start, end, symbol).items():
                out[key[0]] += n
        return out

    def rejection_reasons(
        self, start: float, end: float, symbol: str | None = None
    ) -> Counter[str]:
        """risk_rejection ``.error.reason`` -> count in [start, end)."""
        out: Counter[str] = Counter()
        with self._lock:
            for key, n in self._window(start, end, symbol).items():
                if key[0] == RISK_REJECTION:
                    out[key[2]] += n
        return out

    def order_outcomes(
        self, start: float, end: float, symbol: str | None = None
    ) -> Counter[tuple[str, str]]:
        """(order_type, placed/rejected/filled/cancelled) -> count in [start, end)."""
        out: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for key, n in self._window(start, end, symbol).items():
                outcome = ORDER_OUTCOMES.get(key[0])
                if outcome is not None:
                    out[(key[2], outcome)] += n
        return out

    def series(
        self,
        start: float,
        end: float,
        symbol: str | None = None,
        event_types: Iterable[str] | None = None,
        *,
        step_seconds: int | None = None,
    ) -> list[tuple[float, Counter[str]]]:
        """(bucket start, event_type -> count) for every bucket overlapping [start, end).

        ``step_seconds`` (a multiple of ``bucket_seconds``) merges buckets for long ranges."""
        wanted = None if event_types is None else frozenset(event_types)
        with self._lock:
            starts, types, _ = self._views(start, end, symbol, step_seconds)
            if wanted is None:
                return [(t, Counter(c)) for t, c in zip(starts, types, strict=True)]
            return [
                (t, Counter({k: n for k, n in c.items() if k in wanted}))
                for t, c in zip(starts, types, strict=True)
            ]

    def rejection_reason_series(
        self,
        start: float,
        end: float,
        symbol: str | None = None,
        *,
        step_seconds: int | None = None,
    ) -> list[tuple[float, Counter[str]]]:
        """(bucket start, reason -> count) of risk rejections per bucket."""
        with self._lock:
            starts, _, reasons = self._views(start, end, symbol, step_seconds)
            return [(t, Counter(c)) for t, c in zip(starts, reasons, strict=True)]

    def capped_quantities(
        self, start: float, end: float, symbol: str | None = None
    ) -> list[tuple[float, float, float]]:
        """(timestamp, requested_quantity, capped_quantity) of capping events, oldest first."""
        with self._lock:
            return [
                (ts, requested, capped)
                for ts, sym, requested, capped in self._capped
                if start <= ts < end and (symbol is None or sym == symbol)
            ]

    def recent(
        self,
        limit: int = 500,
        *,
        start: float | None = None,
        end: float | None = None,
        symbol: str | None = None,
        event_types: Iterable[str] | None = None,
    ) -> list[Record]:
        """The newest matching records (at most ``limit``), newest last, each a new dict."""
        wanted = None if event_types is None else frozenset(event_types)
        found: list[bytes] = []
        with self._lock:
            for ts, kind, record_symbol, line in reversed(self._recent):
                if len(found) >= limit:
                    break
                if start is not None and ts < start:
                    continue
                if end is not None and ts >= end:
                    continue
                if symbol is not None and record_symbol != symbol:
                    continue
                if wanted is not None and kind not in wanted:
                    continue
                found.append(line)
        return [orjson.loads(line) for line in reversed(found)]

    def trace(self, trace_id: str) -> list[Record]:
        """Every event of one trace, in trail order ([] when unknown or evicted).

        Traces are kept for records ingested one by one: everything live, and the
        newest ``tail_lines`` records of the history (older history only feeds the
        counters), so a trace that began before that cut shows its later events."""
        with self._lock:
            lines = [line for _, line in self._traces.get(trace_id, ())]
        return [orjson.loads(line) for line in lines]

    def recent_trace_ids(self, limit: int = 50) -> list[str]:
        """Trace ids with the most recent activity first."""
        with self._lock:
            return list(islice(reversed(self._traces), limit))

    def symbols(self) -> list[str]:
        with self._lock:
            return sorted(self._symbols)

    def totals(self) -> Counter[str]:
        """event_type -> count over the whole trail read so far."""
        with self._lock:
            return +self._totals

    @property
    def read_stats(self) -> ReadStats:
        """A snapshot of what the reader has seen (malformed lines, truncations, ...)."""
        for _ in range(5):  # the ingest thread may be counting right now: copy again
            with contextlib.suppress(RuntimeError):
                return self._copy_stats()
        with self._ingest_lock:
            return self._copy_stats()

    def _copy_stats(self) -> ReadStats:
        s = self._stats
        return ReadStats(
            records=s.records,
            malformed=s.malformed,
            malformed_by_reason=Counter(s.malformed_by_reason),
            recent_malformed=deque(s.recent_malformed, maxlen=s.recent_malformed.maxlen),
            truncations=s.truncations,
            replacements=s.replacements,
        )

    @property
    def integrity(self) -> IntegrityStatus:
        with self._check_lock:
            status = replace(self._checker.status)
        with self._lock:
            return replace(status, gaps=self._totals[_GAP], recoveries=self._totals[_RECOVERED])

    # -------------------------------------------------------------- internals

    def _memo(self, key: tuple[Any, ...]) -> Any:
        """A query result computed at the current version (the panels of one page view
        ask the same window several times), else None. Call with the lock held."""
        if self._memo_version != self.version:
            self._memo_version = self.version
            self._memo_results.clear()
        return self._memo_results.get(key)

    def _remember(self, key: tuple[Any, ...], value: Any) -> None:
        if len(self._memo_results) > 64:
            self._memo_results.clear()
        self._memo_results[key] = value

    def _window(self, start: float, end: float, symbol: str | None) -> Counter[Key]:
        """Key counts in [start, end): whole buckets from the counters, cut buckets exactly
        from the recent index when it reaches back that far (else by bucket start).
        Shared (memoized): callers must not modify it."""
        memo_key = ("window", start, end, symbol)
        cached: Counter[Key] | None = self._memo(memo_key)
        if cached is not None:
            return cached
        out: Counter[Key] = Counter()
        size = self.bucket_seconds
        first_full, last_full = math.ceil(start / size), math.floor(end / size)
        if end <= start:
            pass
        elif first_full > last_full:
            self._partial(start, end, symbol, out)
        else:
            self._partial(start, first_full * size, symbol, out)
            self._full_buckets(first_full, last_full, symbol, out)
            self._partial(last_full * size, end, symbol, out)
        self._remember(memo_key, out)
        return out

    def _chosen(self, first: int, stop: int) -> list[int]:
        """Bucket numbers in [first, stop) that hold data, in order."""
        buckets = self._buckets
        if stop - first > len(buckets):
            return sorted(b for b in buckets if first <= b < stop)
        return [b for b in range(first, stop) if b in buckets]

    def _full_buckets(self, first: int, stop: int, symbol: str | None, out: Counter[Key]) -> None:
        buckets = self._buckets
        for number in self._chosen(first, stop):
            counter = buckets[number]
            if symbol is None:
                out.update(counter)
                continue
            for key, n in counter.items():
                if key[1] == symbol:
                    out[key] += n

    def _partial(self, lo: float, hi: float, symbol: str | None, out: Counter[Key]) -> None:
        if hi <= lo:
            return
        if lo > self._exact_floor:
            first = bisect.bisect_left(self._exact_ts, lo)
            stop = bisect.bisect_left(self._exact_ts, hi, first)
            for key in self._exact_keys[first:stop]:
                if symbol is None or key[1] == symbol:
                    out[key] += 1
            return
        number = math.floor(lo / self.bucket_seconds)
        if number * self.bucket_seconds == lo:  # the bucket starts inside the window
            self._full_buckets(number, number + 1, symbol, out)

    def _views(
        self, start: float, end: float, symbol: str | None, step_seconds: int | None
    ) -> tuple[list[float], list[dict[str, int]], list[dict[str, int]]]:
        """(slot starts, event_type counts, rejection reason counts) per slot; memoized."""
        memo_key = ("views", start, end, symbol, step_seconds)
        cached = self._memo(memo_key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        size = self.bucket_seconds
        step = max(1, (step_seconds or size) // size)
        first = math.floor(start / size) // step * step
        stop = max(first, math.ceil(end / size))
        starts = [float(b * size) for b in range(first, stop, step)]
        types: list[dict[str, int]] = [{} for _ in starts]
        reasons: list[dict[str, int]] = [{} for _ in starts]
        for number in self._chosen(first, stop):
            slot = (number - first) // step
            kinds, why = types[slot], reasons[slot]
            if symbol is None:  # the symbol-free rollups kept at ingest
                for kind, n in self._bucket_types[number].items():
                    kinds[kind] = kinds.get(kind, 0) + n
                for reason, n in self._bucket_reasons.get(number, {}).items():
                    why[reason] = why.get(reason, 0) + n
                continue
            for key, n in self._buckets[number].items():
                if key[1] != symbol:
                    continue
                kinds[key[0]] = kinds.get(key[0], 0) + n
                if key[0] == RISK_REJECTION:
                    why[key[2]] = why.get(key[2], 0) + n
        result = (starts, types, reasons)
        self._remember(memo_key, result)
        return result
