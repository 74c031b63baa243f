"""Counts, rates and rejection reasons over a time range (`python -m bot.audit summary`).

Fast on large trails because it does not parse JSON for most records: a
writer's line has a fixed prefix (`{"timestamp":"<27>","event_type":"`), so
timestamp and event type are byte slices. Only lines that need more (risk and
order rejections for their reasons, a symbol filter that is ambiguous,
lines not in the writer's layout) are parsed. Large files are split across
worker processes like `verify` does.

The four rates are SPEC §9's; dashboard/metrics.py has the same definitions
(bot.audit imports nothing from the rest of the project; a test keeps the two
in sync).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bot.audit import chain, pieces
from bot.audit.reader import open_trail_file, parse_line

# name -> (numerator event types, denominator event types), as in SPEC §9.
RATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "risk_rejection_rate": (("risk_rejection",), ("risk_validation", "risk_rejection")),
    "order_rejection_rate": (("order_rejected",), ("order_placed", "order_rejected")),
    "capping_rate": (("position_size_capped",), ("position_size_calculated",)),
    "execution_failure_rate": (
        ("trade_execution_failed",),
        ("trade_executed", "trade_execution_failed"),
    ),
}
_PARSED_TYPES = frozenset({b"risk_rejection", b"order_rejected"})
_TS = slice(len(chain.TIMESTAMP_PREFIX), len(chain.TIMESTAMP_PREFIX) + chain.TIMESTAMP_LEN)
_KEY_AT = _TS.stop


@dataclass
class Summary:
    """What `summary` prints; mergeable so files can be scanned in parallel."""

    counts: Counter[str] = field(default_factory=Counter)
    risk_reasons: Counter[str] = field(default_factory=Counter)
    order_errors: Counter[str] = field(default_factory=Counter)
    first: str | None = None
    last: str | None = None
    malformed: int = 0

    @property
    def records(self) -> int:
        return sum(self.counts.values())

    def rate(self, name: str) -> tuple[int, int, float | None]:
        """(numerator, denominator, rate or None without samples)."""
        numerator, denominator = RATES[name]
        num = sum(self.counts[t] for t in numerator)
        den = sum(self.counts[t] for t in denominator)
        return num, den, (num / den if den else None)

    def merge(self, other: Summary) -> None:
        self.counts.update(other.counts)
        self.risk_reasons.update(other.risk_reasons)
        self.order_errors.update(other.order_errors)
        self.malformed += other.malformed
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last


@dataclass
class _Task:
    path: str
    start: int
    end: int  # -1: whole (gz) file
    since: bytes | None
    until: bytes | None
    symbol: bytes | None


def summarize(
    directory: str | os.PathLike[str],
    since: str | None = None,
    until: str | None = None,
    symbol: str | None = None,
    workers: int | None = None,
) -> Summary:
    """Summary of records with ``since <= timestamp < until`` (ISO-8601 UTC strings, any
    prefix such as ``2026-11-26`` or ``2026-11-26T15``), optionally for one symbol."""
    files = chain.trail_files(Path(directory))
    lo = since.encode() if since else None
    hi = until.encode() if until else None
    count = pieces.worker_count(workers)
    tasks: list[_Task] = []
    for path in files:
        day = chain.day_of_file(path) or ""
        iso = f"{day[:4]}-{day[4:6]}-{day[6:]}".encode()
        # Every timestamp of this file starts with `<iso>T`, so it lies in [iso+"T", iso+"U").
        if (hi is not None and iso + b"T" >= hi) or (lo is not None and iso + b"U" <= lo):
            continue
        whole_day = (lo is None or lo <= iso + b"T") and (hi is None or iso + b"U" <= hi)
        task_lo, task_hi = (None, None) if whole_day else (lo, hi)
        sym = symbol.encode() if symbol else None
        tasks.extend(
            _Task(str(path), a, b, task_lo, task_hi, sym)
            for a, b in pieces.line_ranges(path, count)
        )
    parts = pieces.map_pieces(_scan_task, tasks, count)
    total = Summary()
    for part in parts:
        total.merge(part)
    return total


def _scan_task(task: _Task) -> Summary:
    if task.end < 0:
        with open_trail_file(Path(task.path)) as fh:
            data: bytes = fh.read()
    else:
        with open(task.path, "rb") as fh:
            fh.seek(task.start)
            data = fh.read(task.end - task.start)
    lines = data.split(b"\n")
    lines.pop()  # empty after the last newline, or a partial line still being written
    return _scan(lines, task.since, task.until, task.symbol)


def _scan(lines: list[bytes], lo: bytes | None, hi: bytes | None, symbol: bytes | None) -> Summary:
    out = Summary()
    counts: dict[bytes, int] = {}
    prefix, key, at = chain.TIMESTAMP_PREFIX, chain.EVENT_TYPE_KEY, chain.EVENT_TYPE_AT
    filtered = lo is not None or hi is not None or symbol is not None
    first: bytes | None = None
    last: bytes | None = None
    for line in lines:
        if not (line.startswith(prefix) and line.startswith(key, _KEY_AT)):
            _slow(line, out, lo, hi, symbol)
            continue
        if filtered:
            stamp = line[_TS]
            if (lo is not None and stamp < lo) or (hi is not None and stamp >= hi):
                continue
            if symbol is not None and _symbol_of(line) != symbol:
                continue
        kind = line[at : line.find(b'"', at)]
        counts[kind] = counts.get(kind, 0) + 1
        if kind in _PARSED_TYPES:
            _reasons(orjson.loads(line), out)
        if first is None:
            first = line
        last = line
    for kind, n in counts.items():
        out.counts[kind.decode()] += n
    if first is not None and last is not None:
        out.first, out.last = first[_TS].decode(), last[_TS].decode()
    return out


def _symbol_of(line: bytes) -> bytes | None:
    """The top-level symbol: it follows `operation`, before any nested object opens."""
    at = line.find(b',"symbol":"', chain.EVENT_TYPE_AT)
    if at < 0:
        return None
    if line.find(b"{", 1, at) >= 0:  # a nested object first: only JSON can tell
        value = orjson.loads(line).get("symbol")
        return value.encode() if isinstance(value, str) else None
    return line[at + 11 : line.find(b'"', at + 11)]


def _slow(line: bytes, out: Summary, lo: bytes | None, hi: bytes | None, sym: bytes | None) -> None:
    """A line not in the writer's layout: parse and validate it like any reader."""
    record = parse_line(line)
    if isinstance(record, str):
        out.malformed += 1
        return
    stamp = record["timestamp"]
    if (lo is not None and stamp.encode() < lo) or (hi is not None and stamp.encode() >= hi):
        return
    if sym is not None and record.get("symbol") != sym.decode():
        return
    out.counts[record["event_type"]] += 1
    _reasons(record, out)
    out.first = stamp if out.first is None or stamp < out.first else out.first
    out.last = stamp if out.last is None or stamp > out.last else out.last


def _reasons(record: dict[str, Any], out: Summary) -> None:
    error = record.get("error")
    if not isinstance(error, dict):
        return
    if record.get("event_type") == "risk_rejection":
        out.risk_reasons[str(error.get("reason", "unknown"))] += 1
    elif record.get("event_type") == "order_rejected":
        out.order_errors[f"{error.get('error_code')} {error.get('error_message', '')}".strip()] += 1
