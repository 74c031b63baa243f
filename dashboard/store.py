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

Cold load: why pyarrow.json. Figures from ``benchmarks/dashboard_ingest.py
--parsers`` on one 112 MB day file of 229,139 generated records (2 CPUs shared
with other jobs, load ~2; CPU seconds, as wall time swung with that load):

===================================================  =====  ======
candidate                                            CPU s  wall s
===================================================  =====  ======
orjson.loads per line                                1.93   1.94
reader.parse_line per line (orjson + validation)     2.60   2.60
pandas.read_json(lines=True)                         5.27   5.27
pandas.read_json(lines=True, engine=pyarrow)         2.89   2.11
pyarrow.json.read_json, all fields                   2.54   1.32
**pyarrow.json.read_json, needed fields**            0.68   0.34
same + validation + aggregates (columnar_aggregate)  0.89   0.61
polars.read_ndjson, same needed fields               0.49   0.26
DuckDB read_json, needed fields, grouped in SQL      0.41   0.31
===================================================  =====  ======

A per-line Python parser cannot load a million records in seconds here (about
2-2.6 CPU s per 229k lines before any aggregation). pyarrow with an explicit
schema of only the needed fields (``BULK_SCHEMA``; the rest is skipped but still
checked to be JSON) is 3-4x cheaper, is already a dependency, and fails on a
wrong type where polars quietly turns a number into a string — so a chunk with
any doubtful line falls back to the exact per-line parser, which names each bad
line. polars and DuckDB parse 25-40 % cheaper; that did not outweigh a new
~30-60 MB dependency with laxer typing, but DuckDB is the next step if the cold
load must get faster.

Re-measured on the whole 1,000,000-record benchmark trail (490 MB, 5 files, load
~0.5): pyarrow needed fields 2.32 s wall / 4.13 CPU s, polars 1.68 / 3.03, DuckDB
read_json grouped in SQL 1.06 / 1.63 (1.12 / 1.79 with the fields read as JSON so
their types can be checked). Only DuckDB fits a 2 s cold load on 2 CPUs, but its
reader accepts what orjson rejects — NaN/nan/inf/Infinity, 1e999, trailing commas —
takes the first of duplicate keys (orjson the last) and casts numbers to text; a
byte prefilter for all of these costs ~0.08 s per pattern per 112 MB. A DuckDB
cold loader made exactly as strict (fields read as JSON and type-checked in SQL,
NaN/overflow patterns, a file-size check against the compact re-serialization to
catch trailing commas and duplicate keys, doubtful files sent to the line parser)
passed every store test but took 2.4-2.9 s wall / 4.0-5.0 CPU s and kept 2.5x the
memory: not adopted. pyarrow is strict but for NaN/Inf/Infinity: a chunk containing
``NaN`` or ``Inf`` anywhere goes line by line, so those lines are counted as
``invalid_json`` as the live reader counts them.

How the cold load uses both CPUs (1M records, 490 MB, 5 files; the shared 2-CPU
machine varies by +-20 % between runs, figures are typical). A profile of the
previous version (3.35 s wall / 4.9 CPU s) showed, besides pyarrow's parse: a
0.7 CPU s ``bytes.find`` for NaN/Inf holding the GIL, whole-file reads (0.3-0.9 s of
page faults), a 0.15 s newline count, 0.4-1.3 s of per-group dict updates on the
thread that also had to read ahead, and a 0.1 s per-record tail at the end. Now:

* the files are read with ``pread`` in ~8 MB pieces into reused buffers (_DayFile);
  two threads each parse a whole piece (one pyarrow block: ~10 % cheaper than 1 MB
  blocks) and aggregate it down to per-bucket dicts, so this thread only adds a few
  hundred groups per piece; a doubtful piece is parsed line by line on those threads;
* the byte checks release the GIL: numpy for non-ASCII bytes and the newline count,
  libc's memchr for NUL bytes and over-long lines, and glibc's strstr for NaN/Inf
  (0.05 CPU s for 490 MB, against 0.53 for memmem and 0.68 for ``bytes.find``);
* the per-record tail (the newest ``tail_lines``) is parsed on the pool while the
  last pieces are, and only applied in trail order at the end.

Result: ~1.6-1.9 s wall / ~3.0-3.5 CPU s, peak RSS ~320 MB, ~120 MB of RSS kept
(as before; ~200 MB unless the allocators' caches are given back at the end). Of
that, pyarrow's parse of the needed fields is ~2.0 CPU s: 1.4 of it is tokenizing
the JSON at all (an empty schema), so the rest of the load is within ~1 CPU s of
the parser's floor.
Re-measured on the whole trail, one thread each: pyarrow needed fields 2.16 CPU s,
polars.read_ndjson with the same explicit schema 2.41 (ts + type only: 1.18) —
still no reason for polars. Stripping the 150-byte seal from every line first
would save only 17 % of the parse.

The live path (``_publish``): the counters are updated once per distinct (bucket,
key) of the batch, what the bounded containers push out is freed after publishing,
cyclic garbage collection waits until the batch is published, and a reader blocked
in ``wait_for_version`` gets the GIL before the chain check. What remains per 1,000
records is ~0.5 ms from the write to the watchdog handler, ~5.5-7 ms in
``TrailFollower.poll_lines`` (read, orjson, validation: the reader's own cost) and
~2.3-3 ms here.
"""

from __future__ import annotations

import atexit
import bisect
import calendar
import contextlib
import ctypes
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
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

from bot.audit import chain
from bot.audit.events import EVENT_TYPE_VALUES
from bot.audit.reader import (
    MAX_LINE_BYTES,
    FollowedLine,
    ReadStats,
    Record,
    TrailFollower,
    open_trail_file,
    parse_line,
)
from bot.audit.verify import scan_lines

log = logging.getLogger("dashboard.store")

Key = tuple[str, str, str]
"""(event_type, symbol or "", detail or ""): the unit every aggregate counts."""

ORDER_OUTCOMES = {
    "order_placed": "placed",
    "order_rejected": "rejected",
    "order_filled": "filled",
    "order_cancelled": "cancelled",
}
_RISK_REJECTION = "risk_rejection"
_DETAILED = frozenset((_RISK_REJECTION, *ORDER_OUTCOMES))  # kinds whose key has a detail
_CAPPED = "position_size_capped"
_HEARTBEAT = "heartbeat"
_GAP = "audit_gap"
_RECOVERED = "audit_recovered"
_DAY = 86_400
_HISTORY_SLICE = 20_000  # lines the ingest thread verifies between two polls
_HANDOFF_SECONDS = 0.0002  # the ingest thread's pause after publishing, when a reader waits


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
    if event_type == _RISK_REJECTION:
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


# ------------------------------------------------------------------ cold load, columnar

_DETAIL_FIELDS = [("order_type", pa.string()), ("type", pa.string()), ("orderType", pa.string())]
BULK_SCHEMA = pa.schema(
    [
        ("timestamp", pa.string()),
        ("event_type", pa.string()),
        ("operation", pa.string()),
        ("symbol", pa.string()),
        ("trace_id", pa.string()),
        ("run_id", pa.string()),
        ("order_data", pa.struct(_DETAIL_FIELDS)),
        ("response", pa.struct(_DETAIL_FIELDS)),
        ("error", pa.struct([("reason", pa.string())])),
        (
            "additional_data",
            pa.struct([("requested_quantity", pa.float64()), ("capped_quantity", pa.float64())]),
        ),
    ]
)
"""The fields the aggregates need; pyarrow still checks that every line is valid JSON."""

_BULK_PARSE = pa_json.ParseOptions(explicit_schema=BULK_SCHEMA, unexpected_field_behavior="ignore")
_BULK_CHUNK = 8 << 20  # bytes read, parsed and merged as one piece
# One block per piece (~10 % cheaper to parse than 1 MB blocks, measured); the cold-load
# threads parse pieces in parallel. Lines over MAX_LINE_BYTES are caught by _doubtful.
_BULK_READ = pa_json.ReadOptions(block_size=2 * _BULK_CHUNK, use_threads=False)
_LINE_WINDOW = MAX_LINE_BYTES // 2
_IN_FLIGHT = 4  # pieces read ahead of the one being merged
_TS_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"
_US = 1_000_000


def _load_libc() -> tuple[Any, Any] | None:
    """libc's (memchr, strstr), called through ctypes (which releases the GIL), or None."""
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(None)
        memchr, strstr = libc.memchr, libc.strstr
    except (OSError, AttributeError):
        return None
    memchr.restype = strstr.restype = ctypes.c_void_p
    memchr.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    strstr.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return memchr, strstr


_LIBC = _load_libc()


def _release_memory() -> None:
    """Give back what the cold load's buffers left cached in pyarrow's pool and in the C
    heap (~80 MB of RSS at 1M records, measured)."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            ctypes.CDLL(None).malloc_trim(0)  # glibc only


# pyarrow (RapidJSON) takes NaN, Inf and Infinity (signed or not) as numbers; orjson and
# SPEC §4 do not. A NUL byte is never valid in a line either.
_NOT_JSON = (b"NaN", b"Inf")


def _doubtful(data: bytes | bytearray, start: int, end: int, view: np.ndarray[Any, Any]) -> bool:
    """Whether ``data[start:end]`` (``view``) holds a NUL byte, ``NaN`` or ``Inf`` anywhere,
    even inside a string, or may hold a line over MAX_LINE_BYTES: such a chunk is then
    read line by line, which judges each line. (A line that long holds a whole aligned
    window of MAX_LINE_BYTES / 2 bytes without a newline.)

    With glibc, strstr is ~10x faster than memmem or ``bytes.find`` here (measured on
    490 MB: 0.05 vs 0.53 vs 0.68 CPU s for both words) and lets other threads run. It
    stops at the first NUL: after checking that the range holds none, it runs to the NUL
    that ends every ``bytes`` object (or that _DayFile writes after what it read), so
    ``data`` should not extend far past ``end`` (a word found there is ignored)."""
    windows = range(start, end - _LINE_WINDOW + 1, _LINE_WINDOW)
    if _LIBC is None:
        return any(data.find(word, start, end) >= 0 for word in (b"\0", *_NOT_JSON)) or any(
            data.find(b"\n", at, at + _LINE_WINDOW) < 0 for at in windows
        )
    memchr, strstr = _LIBC
    address = view.ctypes.data
    if memchr(address, 0, end - start) is not None:
        return True
    if any(memchr(address + at - start, 10, _LINE_WINDOW) is None for at in windows):
        return True
    for word in _NOT_JSON:
        found = strstr(address, word)
        if found is not None and found < address + end - start:
            return True
    return False


@dataclass
class ColumnarChunk:
    """Aggregates of one chunk of complete lines, computed by pyarrow without Python loops
    over the records: per bucket number, the counts the store keeps."""

    rows: int
    counts: list[tuple[int, dict[Key, int]]]  # (event_type, symbol, detail) -> n
    kinds: list[tuple[int, dict[str, int]]]  # event_type -> n
    reasons: list[tuple[int, dict[str, int]]]  # risk_rejection reason -> n
    totals: dict[str, int]  # event_type -> n
    capped: list[tuple[float, str, float, float]]
    last_ts: float | None
    last_heartbeat: float | None
    symbols: set[str]


def columnar_aggregate(
    chunk: bytes,
    bucket_seconds: int = 60,
    max_year: int | None = None,
    keys: dict[Key, Key] | None = None,
) -> ColumnarChunk | None:
    """Aggregates of ``chunk`` (complete ``\\n``-terminated lines), or None when any line
    might be malformed — the caller then reads that chunk line by line, which names
    the reason of each bad line exactly. ``keys`` interns the (event_type, symbol,
    detail) tuples."""
    return _columnar(chunk, 0, len(chunk), bucket_seconds, max_year, keys)


def _columnar(
    data: bytes | bytearray,
    start: int,
    end: int,
    bucket_seconds: int,
    max_year: int | None,
    keys: dict[Key, Key] | None = None,
) -> ColumnarChunk | None:
    """columnar_aggregate of the complete lines ``data[start:end]``, without copying them.

    Runs on the cold-load threads: every step over the bytes or the records is numpy,
    libc or pyarrow code that releases the GIL; Python only sees the grouped counts."""
    if end <= start:
        return ColumnarChunk(0, [], [], [], {}, [], None, None, set())
    view = np.frombuffer(data, np.uint8, end - start, start)
    if view.max() >= 0x80:  # not pure ASCII: must be UTF-8 (pyarrow does not check)
        try:
            data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return None
    lines = int(np.count_nonzero(view == 10))
    if _doubtful(data, start, end, view):
        return None  # e.g. NaN: line by line, which counts such lines as invalid_json
    try:
        table = pa_json.read_json(
            pa.BufferReader(pa.py_buffer(data).slice(start, end - start)),
            read_options=_BULK_READ,
            parse_options=_BULK_PARSE,
        )
    except pa.ArrowException:
        return None
    rows = table.num_rows
    if rows != lines:  # pyarrow skips blank lines silently
        return None
    stamp, kind = table.column("timestamp"), table.column("event_type")
    if stamp.null_count or kind.null_count or table.column("operation").null_count:
        return None
    kinds = pc.dictionary_encode(kind.combine_chunks())
    kind_names: list[str] = kinds.dictionary.to_pylist()
    if not EVENT_TYPE_VALUES.issuperset(kind_names):
        return None  # an unknown event type: the per-line path names it
    limit = max_year if max_year is not None else time.gmtime().tm_year + 1
    try:
        if not pc.all(pc.match_substring_regex(stamp, _TS_PATTERN)).as_py():
            return None
        micros = pc.utf8_slice_codeunits(stamp, 0, -1).cast(pa.timestamp("us")).cast(pa.int64())
    except pa.ArrowException:
        return None  # e.g. month 13: let the per-line path name it
    oldest, newest = (value.as_py() for value in pc.min_max(micros).values())
    if oldest < _YEAR_2000_US or newest >= calendar.timegm((limit + 1, 1, 1, 0, 0, 0)) * _US:
        return None  # a year before 2000 or after ``limit``: the per-line path names it

    def kind_mask(*names: str) -> pa.Array:
        wanted = [kind_names.index(name) for name in names if name in kind_names]
        return pc.is_in(kinds.indices, value_set=pa.array(wanted, kinds.indices.type))

    rejected = kind_mask(_RISK_REJECTION)
    order_data, response = table.column("order_data"), table.column("response")
    order_type = pc.coalesce(
        *(pc.struct_field(order_data, name) for name, _ in _DETAIL_FIELDS),
        *(pc.struct_field(response, name) for name, _ in _DETAIL_FIELDS),
        pa.scalar("unknown"),
    )
    reason = pc.coalesce(pc.struct_field(table.column("error"), "reason"), pa.scalar("unknown"))
    detail = pc.if_else(
        rejected, reason, pc.if_else(kind_mask(*ORDER_OUTCOMES), order_type, pa.scalar(""))
    )
    symbol = pc.fill_null(table.column("symbol"), "")
    symbols = pc.dictionary_encode(symbol.combine_chunks())
    details = pc.dictionary_encode(detail.combine_chunks())
    n_symbols, n_details = len(symbols.dictionary), len(details.dictionary)
    # One integer code per (event_type, symbol, detail): grouping on (bucket, code) and
    # bringing back only integers is several times cheaper than strings (measured).
    code = pc.add(
        pc.multiply(kinds.indices.cast(pa.int64()), n_symbols * n_details),
        pc.add(pc.multiply(symbols.indices.cast(pa.int64()), n_details), details.indices),
    )
    bucket = pc.divide(micros, pa.scalar(bucket_seconds * _US, pa.int64()))  # >= 0
    grouped = (
        pa.table({"b": bucket, "k": code})
        .group_by(["b", "k"], use_threads=False)
        .aggregate([("b", "count")])
        .sort_by("b")
    )
    symbol_names: list[str] = symbols.dictionary.to_pylist()
    detail_names: list[str] = details.dictionary.to_pylist()
    intern = keys if keys is not None else {}
    names: dict[int, Key] = {}
    for number in pc.unique(grouped["k"]).to_pylist():
        k, rest = divmod(number, n_symbols * n_details)
        key = (kind_names[k], symbol_names[rest // n_details], detail_names[rest % n_details])
        names[number] = intern.setdefault(key, key)
    group_keys = [names[number] for number in grouped["k"].to_pylist()]
    group_counts = grouped["b_count"].to_pylist()
    counts = [
        (number, dict(zip(group_keys[lo:hi], group_counts[lo:hi], strict=True)))
        for number, lo, hi in _segments(grouped["b"].to_numpy())
    ]
    # the rollups per bucket and event type / rejection reason, from the ~1% as many groups
    group_kind = pc.divide(grouped["k"], n_symbols * n_details)
    by_kind = _per_bucket(grouped["b"], group_kind, grouped["b_count"], kind_names)
    reasons: list[tuple[int, dict[str, int]]] = []
    if _RISK_REJECTION in kind_names:
        mask = pc.equal(group_kind, kind_names.index(_RISK_REJECTION))
        reasons = _per_bucket(
            pc.filter(grouped["b"], mask),
            pc.filter(pc.remainder(grouped["k"], n_details), mask),
            pc.filter(grouped["b_count"], mask),
            detail_names,
        )
    totals: dict[str, int] = {}
    for _, by in by_kind:
        for name, n in by.items():
            totals[name] = totals.get(name, 0) + n
    capped: list[tuple[float, str, float, float]] = []
    if _CAPPED in kind_names:
        mask = kind_mask(_CAPPED)
        extra = pc.filter(table.column("additional_data"), mask)
        capped = [
            (us / 1e6, sym, req or 0.0, cap or 0.0)
            for us, sym, req, cap in zip(
                pc.filter(micros, mask).to_pylist(),
                pc.filter(symbol, mask).to_pylist(),
                pc.struct_field(extra, "requested_quantity").to_pylist(),
                pc.struct_field(extra, "capped_quantity").to_pylist(),
                strict=True,
            )
        ]
    last_beat = None
    if _HEARTBEAT in kind_names:
        last_beat = pc.max(pc.filter(micros, kind_mask(_HEARTBEAT))).as_py()
    return ColumnarChunk(
        rows=rows,
        counts=counts,
        kinds=by_kind,
        reasons=reasons,
        totals=totals,
        capped=capped,
        last_ts=newest / 1e6,
        last_heartbeat=last_beat / 1e6 if last_beat is not None else None,
        symbols={s for s in symbol_names if s},
    )


def _parse_each(lines: list[bytes], max_year: int) -> list[Record | str]:
    """Each line parsed and validated (reader.parse_line), or why it is malformed."""
    out: list[Record | str] = []
    for line in lines:
        if not line:
            out.append("empty_line")
        elif len(line) > MAX_LINE_BYTES:
            out.append("line_too_long")
        else:
            out.append(parse_line(line, max_year))
    return out


def _parse_tail(lines: list[bytes], max_year: int) -> tuple[list[bytes], list[Record | str]]:
    return lines, _parse_each(lines, max_year)


def _piece(
    data: bytes | bytearray,
    start: int,
    end: int,
    bucket_seconds: int,
    max_year: int,
    keys: dict[Key, Key],
) -> ColumnarChunk | tuple[list[bytes], list[Record | str]]:
    """A cold-load piece: its columnar aggregates or, when a line is doubtful, its lines
    parsed one by one (which names each bad line), both on the cold-load threads."""
    columns = _columnar(data, start, end, bucket_seconds, max_year, keys)
    if columns is not None:
        return columns
    lines = bytes(data[start:end]).split(b"\n")[:-1]
    return lines, _parse_each(lines, max_year)


def _per_bucket(
    numbers: pa.Array | pa.ChunkedArray,
    labels: pa.Array | pa.ChunkedArray,
    counts: pa.Array | pa.ChunkedArray,
    names: Any,
) -> list[tuple[int, dict[Any, int]]]:
    """[(bucket number, {names[label]: summed count})] in bucket order."""
    summed = (
        pa.table({"b": numbers, "l": labels, "n": counts})
        .group_by(["b", "l"], use_threads=False)
        .aggregate([("n", "sum")])
        .sort_by("b")
    )
    named = [names[label] for label in summed["l"].to_pylist()]
    sums = summed["n_sum"].to_pylist()
    return [
        (number, dict(zip(named[lo:hi], sums[lo:hi], strict=True)))
        for number, lo, hi in _segments(summed["b"].to_numpy())
    ]


_YEAR_2000_US = calendar.timegm((2000, 1, 1, 0, 0, 0)) * _US


def _line_chunks(data: bytes, start: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) ranges of ``data[start:stop]`` of about ``size`` bytes, each ending just
    after a newline (``data[:stop]`` ends with one)."""
    while start < stop:
        end = data.find(b"\n", min(start + size, stop) - 1, stop)
        end = stop if end < 0 else end + 1
        yield start, end
        start = end


def _tail_start(data: bytes, lines: int) -> int:
    """Offset where the last ``lines`` complete lines of ``data`` begin (data ends with \\n)."""
    pos = len(data) - 1
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1


class _DayFile:
    """The complete lines of one day file for the cold load, read piece by piece.

    A plain file is read with ``pread`` in pieces of about ``_BULK_CHUNK`` bytes, so only
    the pieces in flight are in memory (reading a whole file into one buffer cost 3-8x
    more, in page faults); a ``.jsonl.gz`` one is decompressed whole. ``end`` is the
    offset just after the last line handed out: where the follower resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.end = 0
        self._fd: int | None = None
        self._data = b""
        if path.name.endswith(".gz"):
            with open_trail_file(path) as fh:
                data: bytes = fh.read()
            self._data = data[: data.rfind(b"\n") + 1]
        else:
            self._fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def tail_start(self, lines: int) -> tuple[int, int]:
        """(offset where the last ``lines`` complete lines begin, how many lines follow it)."""
        if self._fd is None:
            start = _tail_start(self._data, lines)
            return start, self._data.count(b"\n", start)
        pos = os.fstat(self._fd).st_size
        data = b""
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(pos, _BULK_CHUNK)
            pos -= step
            data = os.pread(self._fd, step, pos) + data
        data = data[: data.rfind(b"\n") + 1]
        start = _tail_start(data, lines)  # 0 only when pos is 0: the whole file is tail
        return pos + start, data.count(b"\n", start)

    def pieces(
        self, stop: int | None, free: list[bytearray]
    ) -> Iterator[tuple[bytes | bytearray, int, int]]:
        """(data, start, end): ranges of complete lines from ``end`` up to ``stop`` (just
        after a newline) or, without it, to the last complete line of the file.

        A plain file is read into buffers taken from ``free``, where the caller puts
        them back once done with a piece (fresh 8 MB buffers cost page faults: ~0.2 s of
        system time per 500 MB, measured)."""
        if self._fd is None:
            limit = len(self._data) if stop is None else min(stop, len(self._data))
            for start, end in _line_chunks(self._data, self.end, limit, _BULK_CHUNK):
                self.end = end
                yield self._data[start:end], 0, end - start  # a copy: see _doubtful
            return
        size = _BULK_CHUNK
        while stop is None or self.end < stop:
            want = size if stop is None else min(size, stop - self.end)
            buffer = free.pop() if free else bytearray(_BULK_CHUNK + 1)
            if len(buffer) <= want:
                buffer = bytearray(want + 1)
            read = os.preadv(self._fd, [memoryview(buffer)[:want]], self.end)
            buffer[read] = 0  # where _doubtful's strstr stops
            cut = buffer.rfind(b"\n", 0, read) + 1
            if not cut:
                free.append(buffer)
                if read < want:
                    return  # only a partial last line is left: it is the follower's
                size *= 2  # a line longer than a piece
                continue
            size = _BULK_CHUNK
            self.end += cut
            yield buffer, 0, cut

    def rest(self) -> bytes:
        """The complete lines from ``end`` to the end of the file (the per-record tail)."""
        if self._fd is None:
            data = self._data[self.end :]
        else:
            size = os.fstat(self._fd).st_size
            data = os.pread(self._fd, max(0, size - self.end), self.end)
            data = data[: data.rfind(b"\n") + 1]
        self.end += len(data)
        return data


def _segments(numbers: np.ndarray[Any, Any]) -> list[tuple[int, int, int]]:
    """(value, lo, hi): the runs of equal values of a sorted array."""
    if not len(numbers):
        return []
    bounds = [0, *(np.flatnonzero(numbers[1:] != numbers[:-1]) + 1).tolist(), len(numbers)]
    values = numbers[bounds[:-1]].tolist()
    return list(zip(values, bounds[:-1], bounds[1:], strict=True))


def _add_counts(target: dict[int, dict[Any, int]], number: int, counts: dict[Any, int]) -> None:
    into = target.get(number)
    if into is None:
        target[number] = counts
        return
    for name, n in counts.items():
        into[name] = into.get(name, 0) + n


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
        self._follower = TrailFollower(self.audit_dir, on_reset=self._on_reset)
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
        self._recent: deque[tuple[float, Record]] = deque()  # _apply keeps it to recent_limit
        self._traces: OrderedDict[str, list[Record]] = OrderedDict()
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
        files: dict[Path, _DayFile] = {}
        tails: dict[Path, int] = {}
        remaining = self._tail_lines
        for path in reversed(paths):
            if remaining <= 0:
                break
            with contextlib.suppress(FileNotFoundError):
                day = files[path] = _DayFile(path)
                tails[path], found = day.tail_start(remaining)
                remaining -= found
        plan: list[tuple[Path, int]] = []
        count = 0
        max_year = time.gmtime().tm_year + 1
        keys = self._keys  # the workers intern keys in it (dict.setdefault is atomic)
        lines_of: dict[Path, int] = {}
        Parsed = ColumnarChunk | tuple[list[bytes], list[Record | str]]
        # (file, read buffer to reuse, job, whether it is the file's last step)
        steps: deque[tuple[_DayFile, bytearray | None, Future[Parsed], bool]] = deque()
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
            if buffer is not None and len(buffer) == _BULK_CHUNK + 1:
                free.append(buffer)
            if last:
                day.close()
                with contextlib.suppress(FileNotFoundError):
                    self._follower.resume(path, day.end, lines_of[path])
                    plan.append((path, day.end))
            return taken

        opened: list[_DayFile] = list(files.values())
        try:
            with ThreadPoolExecutor(2, thread_name_prefix="trail-cold-load") as pool:
                for path in paths:
                    day_file = files.pop(path, None)
                    if day_file is None:
                        try:
                            day_file = _DayFile(path)
                        except FileNotFoundError:
                            continue
                        opened.append(day_file)
                    for data, start, end in day_file.pieces(tails.get(path), free):
                        job = pool.submit(
                            _piece, data, start, end, self.bucket_seconds, max_year, keys
                        )
                        buffer = data if isinstance(data, bytearray) else None
                        steps.append((day_file, buffer, job, False))
                        while len(steps) > _IN_FLIGHT:
                            count += finish()
                    # the per-record tail: parsed on the pool, alongside the last pieces
                    tail = day_file.rest().split(b"\n")[:-1] if path in tails else []
                    job = pool.submit(_parse_tail, tail, max_year)
                    steps.append((day_file, None, job, True))
                while steps:
                    count += finish()
        finally:
            for day_file in opened:
                day_file.close()
        free.clear()
        _release_memory()
        with self._check_lock:
            self._checker.set_history(plan)
        self._bump()
        return count

    def _followed(
        self, name: str, first: int, lines: list[bytes], parsed: list[Record | str]
    ) -> list[FollowedLine]:
        """``lines`` of file ``name`` after line ``first``, as parsed by _parse_each; the
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
                _add_counts(self._buckets, number, by_key)
            for number, by_kind in columns.kinds:
                _add_counts(self._bucket_types, number, by_kind)
            for number, by_reason in columns.reasons:
                _add_counts(self._bucket_reasons, number, by_reason)
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
        minutes, detailed, intern = _MINUTES, _DETAILED, keys.setdefault
        add_ts, add_key, add_recent = exact_ts.append, exact_keys.append, recent.append
        trace_of, touch, add_capped = traces.get, traces.move_to_end, self._capped.append
        slots: list[tuple[int, Key]] = []
        slot = slots.append
        with self._lock:
            first = len(exact_ts)
            last_beat = self.last_heartbeat_time
            for line in lines:
                record = line.parsed
                if isinstance(record, str):
                    continue
                try:
                    stamp: str = record["timestamp"]
                    base = minutes.get(stamp[:16])  # epoch_seconds, inlined
                    ts = epoch_seconds(stamp) if base is None else base + float(stamp[17:-1])
                except (ValueError, TypeError):
                    self._stats.records -= 1
                    self._stats.note_malformed(line.file, line.number, "bad_timestamp", line.raw)
                    continue
                kind: str = record["event_type"]
                symbol: str = record.get("symbol") or ""
                key = (kind, symbol, record_detail(kind, record) if kind in detailed else "")
                key = intern(key, key)
                slot((int(ts // size), key))
                add_ts(ts)
                add_key(key)
                add_recent((ts, record))
                if kind == _HEARTBEAT:
                    if last_beat is None or ts > last_beat:
                        last_beat = ts
                elif kind == _CAPPED:
                    data = record.get("additional_data") or {}
                    add_capped(
                        (
                            ts,
                            symbol,
                            _number(data.get("requested_quantity")),
                            _number(data.get("capped_quantity")),
                        )
                    )
                trace_id = record.get("trace_id")
                if trace_id:
                    events = trace_of(trace_id)
                    if events is None:
                        events = traces[trace_id] = []
                        if len(traces) > trace_limit:
                            evicted.append(traces.popitem(last=False))
                    else:
                        touch(trace_id)
                    if len(events) < trace_events_limit:
                        events.append(record)
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
        if kind == _RISK_REJECTION:
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
                events = [r for r in self._traces[trace_id] if not _in_day(r, day)]
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
                if key[0] == _RISK_REJECTION:
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
        """The newest matching records (at most ``limit``), newest last, as shallow copies."""
        wanted = None if event_types is None else frozenset(event_types)
        out: list[Record] = []
        with self._lock:
            for ts, record in reversed(self._recent):
                if len(out) >= limit:
                    break
                if start is not None and ts < start:
                    continue
                if end is not None and ts >= end:
                    continue
                if symbol is not None and record.get("symbol") != symbol:
                    continue
                if wanted is not None and record["event_type"] not in wanted:
                    continue
                out.append(dict(record))
        out.reverse()
        return out

    def trace(self, trace_id: str) -> list[Record]:
        """Every event of one trace, in trail order ([] when unknown or evicted).

        Traces are kept for records ingested one by one: everything live, and the
        newest ``tail_lines`` records of the history (older history only feeds the
        counters), so a trace that began before that cut shows its later events."""
        with self._lock:
            return [dict(r) for r in self._traces.get(trace_id, ())]

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
                if key[0] == _RISK_REJECTION:
                    why[key[2]] = why.get(key[2], 0) + n
        result = (starts, types, reasons)
        self._remember(memo_key, result)
        return result


def _in_day(record: Record, day: str) -> bool:
    stamp = record.get("timestamp", "")
    return isinstance(stamp, str) and stamp[:10].replace("-", "") == day
