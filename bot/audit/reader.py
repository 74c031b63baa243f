"""Reading the trail: whole-directory iteration and incremental following.

Shared by the command line (`tail`, `summary`) and the dashboard. Readers never
fail on bad data: a malformed line is counted with a reason and skipped; a
partial last line (a writer mid-append) is left for the next poll.
"""

from __future__ import annotations

import gzip
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple, cast

import orjson

from bot.audit import chain
from bot.audit.chain import MIN_YEAR as MIN_YEAR  # readers' year floor, re-exported
from bot.audit.chain import timestamp_seconds
from bot.audit.events import EVENT_TYPE_VALUES

Record = dict[str, Any]

MAX_LINE_BYTES = 1 << 20
_OBJECT_FIELDS = ("order_data", "response", "error", "additional_data")
_TEXT_FIELDS = ("symbol", "trace_id", "run_id", "bot_id")


_TEXT = (str, type(None))  # exact types: what orjson returns; anything else takes the slow path
_OBJECT = (dict, type(None))


def record_seconds(value: Any, max_year: int | None = None) -> float | str:
    """The timestamp (epoch seconds) of a usable audit record, or why ``value`` is not
    one: the one validation rule of every reader, which converts the timestamp once."""
    # Hot path (every live line): one expression of exact-type checks; only a record
    # that fails it goes through the checks below, which name the first problem.
    if type(value) is dict:
        get = value.get
        kind = get("event_type")
        if (
            type(kind) is str
            and kind in EVENT_TYPE_VALUES
            and type(get("operation")) is str
            and type(get("symbol")) in _TEXT
            and type(get("trace_id")) in _TEXT
            and type(get("run_id")) in _TEXT
            and type(get("bot_id")) in _TEXT
            and type(get("order_data")) in _OBJECT
            and type(get("response")) in _OBJECT
            and type(get("error")) in _OBJECT
            and type(get("additional_data")) in _OBJECT
        ):
            seconds = timestamp_seconds(get("timestamp"), max_year)
            if seconds is not None:
                return seconds
    reason = _invalid_reason(value, max_year)
    if reason is not None:
        return reason
    seconds = timestamp_seconds(value["timestamp"], max_year)
    assert seconds is not None  # _invalid_reason checked it
    return seconds


def _invalid_reason(value: Any, max_year: int | None) -> str | None:
    if not isinstance(value, dict):
        return "not_an_object"
    stamp = value.get("timestamp")
    if not isinstance(stamp, str):
        return "missing_field:timestamp" if stamp is None else "wrong_type:timestamp"
    if timestamp_seconds(stamp, max_year) is None:
        return "bad_timestamp"
    kind = value.get("event_type")
    if not isinstance(kind, str):
        return "missing_field:event_type" if kind is None else "wrong_type:event_type"
    if kind not in EVENT_TYPE_VALUES:
        return "unknown_event_type"
    if not isinstance(value.get("operation"), str):
        return "missing_field:operation" if "operation" not in value else "wrong_type:operation"
    for name in _TEXT_FIELDS:
        item = value.get(name)
        if item is not None and not isinstance(item, str):
            return f"wrong_type:{name}"
    for name in _OBJECT_FIELDS:
        item = value.get(name)
        if item is not None and not isinstance(item, dict):
            return f"wrong_type:{name}"
    return None


def read_line(
    line: bytes, max_year: int | None = None, max_line: int = MAX_LINE_BYTES
) -> tuple[Record, float] | str:
    """A validated record with its timestamp in epoch seconds, or the reason the line
    is malformed."""
    if len(line) > max_line:
        return "line_too_long"
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return _undecodable(line)
    seconds = record_seconds(value, max_year)
    return seconds if isinstance(seconds, str) else (value, seconds)


def _undecodable(line: bytes) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    return "invalid_json"


def read_lines(
    lines: list[bytes], max_year: int | None = None, max_line: int = MAX_LINE_BYTES
) -> tuple[list[Record | str], list[float], int]:
    """Complete lines (without newlines) read as ``read_line`` reads one, an empty line
    being malformed too: each line's record or why it is malformed, each record's
    timestamp (0.0 for a malformed line), and how many lines are malformed."""
    if lines and max(map(len, lines)) <= max_line:
        # All well-formed (the writer's lines): parsed and validated by maps, ~10 % less
        # than the loop below, which takes any batch with a malformed line and names why.
        try:
            values = list(map(orjson.loads, lines))
        except orjson.JSONDecodeError:
            pass
        else:
            checked = list(map(record_seconds, values, repeat(max_year)))
            if str not in set(map(type, checked)):
                return values, cast(list[float], checked), 0  # no reason among them
    parsed: list[Record | str] = []
    stamps: list[float] = []
    malformed = 0
    for line in lines:
        result = read_line(line, max_year, max_line) if line else "empty_line"
        if isinstance(result, str):
            parsed.append(result)
            stamps.append(0.0)
            malformed += 1
        else:
            parsed.append(result[0])
            stamps.append(result[1])
    return parsed, stamps, malformed


def parse_line(line: bytes, max_year: int | None = None) -> Record | str:
    """A validated record, or the reason the line is malformed."""
    parsed = read_line(line, max_year)
    return parsed if isinstance(parsed, str) else parsed[0]


@dataclass
class Malformed:
    file: str
    line: int
    reason: str
    preview: str


@dataclass
class ReadStats:
    """What a reader has seen; malformed lines are counted, never fatal."""

    records: int = 0
    malformed: int = 0
    malformed_by_reason: Counter[str] = field(default_factory=Counter)
    recent_malformed: deque[Malformed] = field(default_factory=lambda: deque(maxlen=50))
    truncations: int = 0
    replacements: int = 0

    def note_malformed(self, file: str, line_no: int, reason: str, line: bytes) -> None:
        self.malformed += 1
        self.malformed_by_reason[reason] += 1
        preview = line[:160].decode("utf-8", errors="replace")
        self.recent_malformed.append(Malformed(file, line_no, reason, preview))


def open_trail_file(path: Path) -> Any:
    """Binary file object for a day file, decompressing ``.jsonl.gz`` transparently."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line without newline) of every complete line; a torn tail is skipped."""
    with open_trail_file(path) as fh:
        data = fh.read()
    lines = data.split(b"\n")
    yield from enumerate(lines[:-1], start=1)


def iter_records(
    directory: str | os.PathLike[str], stats: ReadStats | None = None
) -> Iterator[Record]:
    """Every valid record of a trail directory, in chain order (files by day)."""
    stats = stats if stats is not None else ReadStats()
    max_year = time.gmtime().tm_year + 1
    for path in chain.trail_files(Path(directory)):
        for number, line in iter_lines(path):
            parsed = parse_line(line, max_year)
            if isinstance(parsed, str):
                stats.note_malformed(path.name, number, parsed, line)
            else:
                stats.records += 1
                yield parsed


class FollowedLine(NamedTuple):
    """One complete line as `TrailFollower.poll_lines` saw it (e.g. for `tail`)."""

    file: str
    number: int
    raw: bytes  # without the newline
    parsed: Record | str
    """The record, or why the line is malformed."""
    ts: float
    """The record's timestamp in epoch seconds (0.0 for a malformed line)."""


class FollowedRun(NamedTuple):
    """Consecutive complete lines of one day file, as `TrailFollower.poll_runs` read them
    in one go (``read_lines``): the live path takes them a run at a time."""

    file: str
    first: int
    """The number of the first line."""
    lines: list[bytes]
    """Without their newlines."""
    parsed: list[Record | str]
    """Each line's record, or why it is malformed."""
    ts: list[float]
    """Each record's timestamp in epoch seconds (0.0 for a malformed line)."""
    malformed: int
    """How many of the lines are malformed."""


@dataclass
class _Cursor:
    """Where we are in one day's file; keyed by day so `.jsonl` → `.jsonl.gz` is seamless."""

    path: Path
    inode: int
    offset: int = 0  # uncompressed bytes consumed, partial line included
    line_no: int = 0
    partial: bytes = b""
    skipping: bool = False  # inside an over-long line: discard up to the next newline
    gz_mtime: float = 0.0


class TrailFollower:
    """Incremental reader of an audit directory: each `poll` returns only new records.

    Follows day rollover, truncation (file shorter than what was read: read it
    again from the start) and replacement (new inode: likewise). A compressed
    day file continues where its plain predecessor stopped.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        chunk_bytes: int = 64 << 20,
        on_reset: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.stats = ReadStats()
        self._max_line = max_line_bytes
        self._chunk = chunk_bytes
        self._cursors: dict[str, _Cursor] = {}
        self._on_reset = on_reset  # called with the day (YYYYMMDD) before it is re-read

    def poll(self) -> list[Record]:
        """New complete, valid records since the last call, in file order."""
        return [line.parsed for line in self.poll_lines() if isinstance(line.parsed, dict)]

    def resume(self, path: Path, offset: int, line_no: int) -> None:
        """Continue ``path`` after ``offset`` uncompressed bytes (``line_no`` complete lines),
        e.g. after a bulk load read that much; the next poll reads only what follows."""
        day = chain.day_of_file(path)
        assert day is not None
        st = path.stat()
        cursor = _Cursor(path, st.st_ino, offset=offset, line_no=line_no)
        if path.name.endswith(".gz"):
            cursor.gz_mtime = st.st_mtime
        self._cursors[day] = cursor

    def skip_existing(self) -> None:
        """Start following from the end of what is on disk now (`tail -f`): complete lines
        already written are not returned; a partial last line is, once completed."""
        for path in chain.trail_files(self.directory):
            day = chain.day_of_file(path)
            assert day is not None
            try:
                st = path.stat()
                if path.name.endswith(".gz"):
                    cursor = _Cursor(path, st.st_ino, offset=1 << 62, gz_mtime=st.st_mtime)
                else:
                    with open(path, "rb") as fh:
                        data = fh.read()
                    end = data.rfind(b"\n") + 1
                    cursor = _Cursor(path, st.st_ino, offset=end, line_no=data.count(b"\n"))
            except FileNotFoundError:
                continue
            self._cursors[day] = cursor

    def poll_lines(self) -> list[FollowedLine]:
        """Every new complete line since the last call, malformed ones included."""
        return [
            FollowedLine(run.file, number, raw, parsed, ts)
            for run in self.poll_runs()
            for number, raw, parsed, ts in zip(
                range(run.first, run.first + len(run.lines)),
                run.lines,
                run.parsed,
                run.ts,
                strict=True,
            )
        ]

    def poll_runs(self) -> list[FollowedRun]:
        """``poll_lines``, a run of lines of one file at a time."""
        out: list[FollowedRun] = []
        max_year = time.gmtime().tm_year + 1
        for path in chain.trail_files(self.directory):
            day = chain.day_of_file(path)
            assert day is not None
            try:
                self._read_new(day, path, out, max_year)
            except FileNotFoundError:
                continue  # rotated or compressed between listing and open
        return out

    def _read_new(self, day: str, path: Path, out: list[FollowedRun], max_year: int) -> None:
        st = path.stat()
        cursor = self._cursors.get(day)
        gz = path.name.endswith(".gz")
        if cursor is None:
            cursor = self._cursors[day] = _Cursor(path, st.st_ino)
        elif cursor.path != path:
            if not (gz and not cursor.path.name.endswith(".gz")):
                self.stats.replacements += 1
                self._reset(day, cursor)
            cursor.path, cursor.inode = path, st.st_ino
        elif cursor.inode != st.st_ino:
            self.stats.replacements += 1
            self._reset(day, cursor)
            cursor.inode = st.st_ino
        elif not gz and st.st_size < cursor.offset:
            complete = cursor.offset - len(cursor.partial)
            if st.st_size >= complete:
                # Only the unfinished last line went away (a writer repairing a torn
                # tail): nothing that was consumed changed, so do not re-read the file.
                cursor.partial = cursor.partial[: st.st_size - complete]
                cursor.offset = st.st_size
            else:
                self.stats.truncations += 1
                self._reset(day, cursor)
        if gz:
            if cursor.offset and st.st_mtime <= cursor.gz_mtime:
                return
            with gzip.open(path, "rb") as fh:
                fh.seek(cursor.offset)
                data = fh.read()
            cursor.gz_mtime = st.st_mtime
        else:
            if st.st_size == cursor.offset:
                return
            with open(path, "rb") as fh:
                fh.seek(cursor.offset)
                data = fh.read(self._chunk)
        cursor.offset += len(data)
        self._consume(cursor, data, out, max_year)

    def _reset(self, day: str, cursor: _Cursor) -> None:
        if self._on_reset is not None:
            self._on_reset(day)
        cursor.offset = 0
        cursor.line_no = 0
        cursor.partial = b""
        cursor.skipping = False

    def _consume(self, cursor: _Cursor, data: bytes, out: list[FollowedRun], max_year: int) -> None:
        if cursor.partial:
            data = cursor.partial + data
        lines = data.split(b"\n")
        cursor.partial = lines.pop()
        name = cursor.path.name
        first = cursor.line_no + 1
        if cursor.skipping and lines:
            del lines[0]  # the end of an over-long line, counted when it began
            first += 1
            cursor.skipping = False
        cursor.line_no = first + len(lines) - 1
        if lines:
            parsed, stamps, malformed = read_lines(lines, max_year, self._max_line)
            stats = self.stats
            stats.records += len(lines) - malformed
            if malformed:
                for number, line, reason in zip(
                    range(first, first + len(lines)), lines, parsed, strict=True
                ):
                    if isinstance(reason, str):
                        stats.note_malformed(name, number, reason, line)
            out.append(FollowedRun(name, first, lines, parsed, stamps, malformed))
        if len(cursor.partial) > self._max_line:
            self.stats.note_malformed(name, cursor.line_no + 1, "line_too_long", cursor.partial)
            cursor.partial = b""
            cursor.skipping = True
