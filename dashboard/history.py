"""The cold load of the audit history: the columnar parser behind TrailStore.

Why it exists: the dashboard must open on a million records (~490 MB) in about 2 s,
which no per-line Python parser does (orjson alone costs ~8 CPU s). So the history is
read in pieces of ~8 MB (``PIECE_BYTES``) on two threads, and each piece is reduced to
per-bucket counts on the thread that read it (``parse_piece``), by three layers:

1. the C counter (``bot/audit/native/_bulk.c``, ``count_in_c``): a strict JSON reader
   that keeps only the fields counted and gives up on a piece at anything unusual.
   It made the cold load ~3x faster: 0.55-0.64 s wall / 1.0-1.2 CPU s and 162 MB peak
   RSS, against 1.64-1.86 s / 3.1-3.4 CPU s / 304-327 MB with the pyarrow layer alone
   (same 1M-record trail, alternating runs; 0.08 against 0.74 CPU s for one 59 MB file);
2. pyarrow, where the counter is not built or gave up (described below);
3. the strict per-line reader, for a piece that both give up on.

The pyarrow layer parses with a schema of only the fields the aggregates need
(``BULK_SCHEMA``). The byte checks
pyarrow does not make (NUL, NaN/Inf, over-long lines, invalid UTF-8) run outside the
GIL, in numpy and libc. A doubtful piece is re-read line by line by the strict reader
(``bot.audit.reader.parse_line``), which names each bad line, so a cold load counts
exactly what the live reader counts. ``TrailStore._bulk_load`` (dashboard/store.py)
drives the threads and adds the pieces in trail order; what follows is the store's.

Why pyarrow.json. First figures from ``benchmarks/dashboard_ingest.py --parsers`` on
one 112 MB day file of 229,139 generated records (2 CPUs shared with other jobs, load
~2; CPU seconds, as wall time swung with that load):

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
line.

polars looks cheaper in that table, but not on the whole 1,000,000-record trail: the
latest measurement there, one thread each, in CPU s, was pyarrow with the needed
fields 2.16, polars.read_ndjson with the same explicit schema 2.41 (timestamp and
event_type only: 1.18), msgspec per line 4.0, orjson per line 8.0. polars was
therefore not adopted (slower here, a new ~30-60 MB dependency, laxer typing).
Stripping the 150-byte seal from every line first would save only 17 % of the parse.

DuckDB read_json parses ~2x faster (whole trail, load ~0.5, grouped in SQL: 1.06 s
wall / 1.63 CPU s, or 1.12 / 1.79 with the fields read as JSON so their types can be
checked, against pyarrow's 2.32 / 4.13 at the time) and alone fits a 2 s cold load on
2 CPUs, but its reader is lax: it accepts what orjson rejects — NaN/nan/inf/Infinity,
1e999, trailing commas — takes the first of duplicate keys (orjson the last) and casts
numbers to text; a byte prefilter for all of these costs ~0.08 s per pattern per
112 MB. A DuckDB cold loader made exactly as strict (fields read as JSON and
type-checked in SQL, NaN/overflow patterns, a file-size check against the compact
re-serialization to catch trailing commas and duplicate keys, doubtful files sent to
the line parser) passed every store test but took 2.4-2.9 s wall / 4.0-5.0 CPU s and
kept 2.5x the memory: not adopted. pyarrow is strict but for NaN/Inf/Infinity: a chunk
containing ``NaN`` or ``Inf`` anywhere goes line by line, so those lines are counted
as ``invalid_json`` as the live reader counts them.

How the cold load uses both CPUs (1M records, 490 MB, 5 files; the shared 2-CPU
machine varies by +-20 % between runs, figures are typical). A profile of the
previous version (3.35 s wall / 4.9 CPU s) showed, besides pyarrow's parse: a
0.7 CPU s ``bytes.find`` for NaN/Inf holding the GIL, whole-file reads (0.3-0.9 s of
page faults), a 0.15 s newline count, 0.4-1.3 s of per-group dict updates on the
thread that also had to read ahead, and a 0.1 s per-record tail at the end. Now:

* the files are read with ``pread`` in ~8 MB pieces into reused buffers (DayFile);
  two threads each parse a whole piece (one pyarrow block: ~10 % cheaper than 1 MB
  blocks) and aggregate it down to per-bucket dicts, so the store's thread only adds a
  few hundred groups per piece; a doubtful piece is parsed line by line on those threads;
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
"""

from __future__ import annotations

import calendar
import contextlib
import ctypes
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from bot.audit import native
from bot.audit.events import EVENT_TYPE_VALUES
from bot.audit.reader import MAX_LINE_BYTES, MIN_YEAR, Record, open_trail_file, parse_line

# ------------------------------------------------------------------ what is counted
# Shared with the store's per-record path (dashboard.store imports them from here).

Key = tuple[str, str, str]
"""(event_type, symbol or "", detail or ""): the unit every aggregate counts."""

ORDER_OUTCOMES = {
    "order_placed": "placed",
    "order_rejected": "rejected",
    "order_filled": "filled",
    "order_cancelled": "cancelled",
}
RISK_REJECTION = "risk_rejection"
CAPPED = "position_size_capped"
HEARTBEAT = "heartbeat"
ROLES = (
    RISK_REJECTION.encode(),
    tuple(kind.encode() for kind in ORDER_OUTCOMES),
    CAPPED.encode(),
    HEARTBEAT.encode(),
)
"""The event types above as the C reader (bot/audit/native/_bulk.c) takes them."""


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
PIECE_BYTES = 8 << 20  # bytes read, parsed and merged as one piece
# One block per piece (~10 % cheaper to parse than 1 MB blocks, measured); the cold-load
# threads parse pieces in parallel. Lines over MAX_LINE_BYTES are caught by _doubtful.
_BULK_READ = pa_json.ReadOptions(block_size=2 * PIECE_BYTES, use_threads=False)
_LINE_WINDOW = MAX_LINE_BYTES // 2
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


def release_memory() -> None:
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
    that ends every ``bytes`` object (or that DayFile writes after what it read), so
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
    """columnar_aggregate of the complete lines ``data[start:end]``, without copying them:
    by the C counter when built, else (or when it gives up) by pyarrow.

    Runs on the cold-load threads: every step over the bytes or the records is C, numpy,
    libc or pyarrow code that releases the GIL; Python only sees the grouped counts."""
    if end <= start:
        return ColumnarChunk(0, [], [], [], {}, [], None, None, set())
    limit = max_year if max_year is not None else time.gmtime().tm_year + 1
    counted = count_in_c(data, start, end, bucket_seconds, limit, keys)
    if counted is not None:
        return counted
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

    rejected = kind_mask(RISK_REJECTION)
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
    if RISK_REJECTION in kind_names:
        mask = pc.equal(group_kind, kind_names.index(RISK_REJECTION))
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
    if CAPPED in kind_names:
        mask = kind_mask(CAPPED)
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
    if HEARTBEAT in kind_names:
        last_beat = pc.max(pc.filter(micros, kind_mask(HEARTBEAT))).as_py()
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


def count_in_c(
    data: bytes | bytearray,
    start: int,
    end: int,
    bucket_seconds: int,
    max_year: int,
    keys: dict[Key, Key] | None,
) -> ColumnarChunk | None:
    """The aggregates of ``data[start:end]`` by the C counter (bot/audit/native/_bulk.c,
    ~4x cheaper than pyarrow's parse), or None when it is not built or gave up on a line
    that the exact parsers must judge."""
    bulk = native.bulk
    if bulk is None:
        return None
    out = bulk.count(
        data,
        start,
        end,
        bucket_seconds * _US,
        MIN_YEAR,
        max_year,
        MAX_LINE_BYTES,
        *ROLES,
    )
    if out is None:
        return None
    rows, found, groups, capped_rows, last_us, beat_us = out
    if not EVENT_TYPE_VALUES.issuperset(kind for kind, _, _ in found):
        return None  # an unknown event type: the per-line path names it
    intern = keys if keys is not None else {}
    names: list[Key] = [intern.setdefault(key, key) for key in found]
    by_bucket: dict[int, dict[Key, int]] = {}
    triples = np.frombuffer(groups, np.int64).tolist()
    for i in range(0, len(triples), 3):  # buckets come in line order, mostly ascending
        bucket, key, n = triples[i : i + 3]
        into = by_bucket.get(bucket)
        if into is None:
            into = by_bucket[bucket] = {}
        name = names[key]
        into[name] = into.get(name, 0) + n
    counts = sorted(by_bucket.items())
    kinds: list[tuple[int, dict[str, int]]] = []
    reasons: list[tuple[int, dict[str, int]]] = []
    totals: dict[str, int] = {}
    for bucket, by_key in counts:
        per_kind: dict[str, int] = {}
        per_reason: dict[str, int] = {}
        for (kind, _, detail), n in by_key.items():
            per_kind[kind] = per_kind.get(kind, 0) + n
            if kind == RISK_REJECTION:
                per_reason[detail] = per_reason.get(detail, 0) + n
        kinds.append((bucket, per_kind))
        if per_reason:
            reasons.append((bucket, per_reason))
        for kind, n in per_kind.items():
            totals[kind] = totals.get(kind, 0) + n
    return ColumnarChunk(
        rows=rows,
        counts=counts,
        kinds=kinds,
        reasons=reasons,
        totals=totals,
        capped=[(us / 1e6, names[key][1], req, cap) for us, key, req, cap in capped_rows],
        last_ts=last_us / 1e6 if last_us >= 0 else None,
        last_heartbeat=beat_us / 1e6 if beat_us >= 0 else None,
        symbols={symbol for _, symbol, _ in names if symbol},
    )


def parse_lines(lines: list[bytes], max_year: int) -> list[Record | str]:
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


def parse_tail(lines: list[bytes], max_year: int) -> tuple[list[bytes], list[Record | str]]:
    return lines, parse_lines(lines, max_year)


def parse_piece(
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
    return lines, parse_lines(lines, max_year)


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


def give_back(free: list[bytearray], buffer: bytearray | None) -> None:
    """Return a read buffer of ``DayFile.pieces`` to the pool ``free`` once its piece is
    done; a buffer grown for an over-long line is dropped rather than kept."""
    if buffer is not None and len(buffer) == PIECE_BYTES + 1:
        free.append(buffer)


class DayFile:
    """The complete lines of one day file for the cold load, read piece by piece.

    A plain file is read with ``pread`` in pieces of about ``PIECE_BYTES`` bytes, so only
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
            step = min(pos, PIECE_BYTES)
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
            for start, end in _line_chunks(self._data, self.end, limit, PIECE_BYTES):
                self.end = end
                yield self._data[start:end], 0, end - start  # a copy: see _doubtful
            return
        size = PIECE_BYTES
        while stop is None or self.end < stop:
            want = size if stop is None else min(size, stop - self.end)
            buffer = free.pop() if free else bytearray(PIECE_BYTES + 1)
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
            size = PIECE_BYTES
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


def add_counts(target: dict[int, dict[Any, int]], number: int, counts: dict[Any, int]) -> None:
    into = target.get(number)
    if into is None:
        target[number] = counts
        return
    for name, n in counts.items():
        into[name] = into.get(name, 0) + n
