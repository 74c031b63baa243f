"""What one day file contributes to the aggregates: the one rule, for history and live lines.

What the dashboard and ``summary`` derive from a day file — its counts per time
bucket, its trading results, its signals, its verified chain ends — is a ``DayIndex``,
fed in file order by ``DayIndex.add_many``: the one rule of what a record contributes,
used for a closed day indexed once (then kept by ``bot.audit.indexcache``) and for
each live line the dashboard reads. It counts every record here and hands the records
of some event types to their extras (``bot.audit.dayextras``: the trading results,
signal rows and control acts); ``bot.audit.dayfile`` reads a day file into an index.

A DayIndex holds, per bucket (minutes; hours once coarsened for old days):

* ``counts``: (bot, event_type, symbol, detail) -> records, where detail is the
  reason of a risk rejection or the order type of an order event;
* ``sums``: (bot, symbol, measure) -> amount, the trading results (realized PnL and
  fees per fill; trades, wins, losses, net PnL and exit kinds per closed trade; entry
  fills and their slippage in bps, in the bucket of their signal);
* ``errors``: (bot, symbol, "code message") -> order rejections by the venue's error;

besides the capped quantities, equity points, control acts, positions still open at
the end of the file, exits of trades opened on an earlier day, one row per signal,
the lines of every trace (byte offsets) and the chain ends with the verdict.
Everything is bounded by the day's time span, not by its number of records, except
the signal rows and trace offsets, which are kept in the ``detail`` part of the cache
entry and loaded only when asked for.
"""

from __future__ import annotations

import calendar
import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from typing import Any, cast

from bot.audit.chaincheck import ChainEnds
from bot.audit.dayextras import CAPPED_LIMIT, EXTRAS, PROTECTION_LIMIT, RISK_REJECTION, At
from bot.audit.reader import Record
from bot.audit.trails import bot_of

MINUTE, HOUR, DAY = 60, 3600, 86_400

Key = tuple[str, str, str, str]
"""(bot, event_type, symbol or "", detail or ""): the unit every count counts."""
SumKey = tuple[str, str, str]
"""(bot, symbol, measure): the unit every trading result sums."""

ORDER_OUTCOMES = {
    "order_placed": "placed",
    "order_rejected": "rejected",
    "order_filled": "filled",
    "order_cancelled": "cancelled",
}

CAPPED_SUMMARY = 500  # capped quantities the hour-level part of a cache entry holds (the newest)
MALFORMED_LIMIT = 50


def _rejection_reason(record: Record) -> str:
    error = record.get("error")
    reason = error.get("reason") if error else None
    return reason if isinstance(reason, str) else "unknown"


def _order_type(record: Record) -> str:
    for name in ("order_data", "response"):
        data = record.get(name)
        if data:
            kind = data.get("order_type") or data.get("type") or data.get("orderType")
            if isinstance(kind, str):
                return kind
    return "unknown"


_DETAIL_OF: dict[str, Callable[[Record], str]] = {
    RISK_REJECTION: _rejection_reason,
    **dict.fromkeys(ORDER_OUTCOMES, _order_type),
}
"""The detail a record is counted under: the reason of a risk rejection, the order type
of an order event; other event types have none ("")."""


# ------------------------------------------------------------------ the day index


@dataclass
class DayIndex:
    """What one day file of one trail contributes (see the module docstring)."""

    trail: str  # the trail's bot name (discover), for records without bot_id
    day: str  # YYYYMMDD
    resolution: int = MINUTE
    counts: dict[int, dict[Key, int]] = field(default_factory=dict)
    sums: dict[int, dict[SumKey, float]] = field(default_factory=dict)
    errors: dict[int, dict[tuple[str, str, str], int]] = field(default_factory=dict)
    capped: list[tuple[float, str, str, float, float]] = field(default_factory=list)
    equity: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    last_event: dict[str, float] = field(default_factory=dict)
    last_heartbeat: dict[str, float] = field(default_factory=dict)
    spans: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(bot, symbol) -> [first, last] timestamp of its records (summary's time span)."""
    states: dict[str, tuple[float, str, str, str, str]] = field(default_factory=dict)
    """bot -> (ts, to, from, reason, source) of its last trading_state_changed."""
    protections: list[tuple[float, str, str, str | None, float | None, dict[str, Any]]] = field(
        default_factory=list
    )
    """(ts, bot, protection, symbol or None, until or None, additional_data)."""
    open_trades: dict[str, list[Any]] = field(default_factory=dict)
    """trace_id -> [bot, symbol, side, quantity, entry_price, opened_at, realized, fees]."""
    cross_exits: dict[str, tuple[float, str, str, str, float, float, float]] = field(
        default_factory=dict
    )
    """trace_id -> (ts, bot, symbol, exit_kind, exit_price, realized, fees): exits whose
    entry is not in this file (a trade opened on an earlier day)."""
    chain: ChainEnds = field(default_factory=ChainEnds)
    records: int = 0
    totals: dict[Key, int] = field(default_factory=dict)
    """The day's counts summed over its buckets (a window holding the whole day)."""
    malformed: dict[str, int] = field(default_factory=dict)
    malformed_lines: list[tuple[int, str, str]] = field(default_factory=list)
    """(line number, reason, preview) of the first MALFORMED_LIMIT malformed lines."""
    offset: int = 0  # bytes of the file indexed (complete lines)
    lines: int = 0
    # detail: loaded on demand for days not indexed in this process
    signals: dict[str, list[Any]] | None = field(default_factory=dict)
    traces: dict[str, list[int]] | None = field(default_factory=dict)
    detail_counts: dict[int, dict[Key, int]] | None = None
    """Minute counts of a day whose ``counts`` were coarsened to hours."""

    # -------------------------------------------------------------- the rule

    def key_of(self, record: Record) -> Key:
        """The (bot, event_type, symbol, detail) a valid record is counted under."""
        kind: str = record["event_type"]
        detail_of = _DETAIL_OF.get(kind)
        return (
            bot_of(record.get("bot_id"), self.trail),
            kind,
            record.get("symbol") or "",
            detail_of(record) if detail_of is not None else "",
        )

    def add(self, record: Record, ts: float, offset: int = -1) -> Key:
        """Add one valid record (``ts``: its timestamp in epoch seconds) that starts at
        byte ``offset`` of the day file (-1: unknown); returns its key. See ``add_many``."""
        return self.add_many((record,), (ts,), (offset,) if offset >= 0 else None)[0]

    def add_many(
        self,
        records: Iterable[Record],
        stamps: Iterable[float],
        offsets: Iterable[int] | None = None,
    ) -> list[Key]:
        """Add valid records in file order (``stamps``: their timestamps in epoch seconds;
        ``offsets``: the byte of the day file where each starts, for trace lookups);
        returns their keys. The one rule of what a record contributes to the aggregates.

        Records come in batches so that counting runs in C: the keys of a run of records
        in one bucket are counted at once, the totals at the end."""
        resolution = self.resolution
        spans, last_event = self.spans, self.last_event
        traces = self.traces if offsets is not None else None
        keys: list[Key] = []
        append = keys.append
        key_of, extra_of_kind = self.key_of, EXTRAS.get
        lo = hi = 0  # the bucket [lo, hi) of the run of keys[start:]
        start = 0
        for record, ts, offset in zip(records, stamps, offsets or _NO_OFFSETS, strict=False):
            key = key_of(record)
            bot, kind, symbol, detail = key
            if not lo <= ts < hi:
                _count_run(self.counts, lo, keys, start)
                start = len(keys)
                lo = int(ts) // resolution * resolution  # ts > 0: int() floors
                hi = lo + resolution
            append(key)
            stamp: str = record["timestamp"]
            span = spans.get((bot, symbol))
            if span is None:
                spans[(bot, symbol)] = [stamp, stamp]
            elif stamp > span[1]:
                span[1] = stamp
            elif stamp < span[0]:
                span[0] = stamp
            last = last_event.get(bot)
            if last is None or ts > last:
                last_event[bot] = ts
            trace_id = record.get("trace_id")
            if trace_id and traces is not None:
                found = traces.get(trace_id)
                if found is None:
                    traces[trace_id] = [offset]
                else:
                    found.append(offset)
            extra = extra_of_kind(kind)
            if extra is not None:
                # At(...) without its Python-level __new__ (every live record)
                extra(self, record, _new(At, (ts, lo, bot, symbol, detail, trace_id)))
        _count_run(self.counts, lo, keys, start)
        _count_elements(self.totals, keys)
        self.records += len(keys)
        return keys

    def add_run(
        self,
        first: int,
        lines: list[bytes],
        parsed: list[Record | str],
        stamps: list[float],
        malformed: int,
        accept: Callable[[str], bool] | None = None,
    ) -> tuple[list[Key], list[Record], list[float], list[bytes]]:
        """Add lines that follow what this index holds, as ``reader.read_lines`` read them
        (``first``: the number of the first line): a malformed line is counted, a record
        added — when ``accept``, if given, takes its timestamp text (a part of a day).
        Returns the keys, records, timestamps and lines of the records added."""
        starts = list(accumulate(map(_PLUS_NEWLINE, map(len, lines)), initial=self.offset))
        records = cast(list[Record], parsed)
        taken, offsets = lines, starts
        if malformed or accept is not None:
            chosen = []
            for at, value in enumerate(parsed):
                if isinstance(value, str):
                    self.note_malformed(first + at, value, lines[at])
                elif accept is None or accept(value["timestamp"]):
                    chosen.append(at)
            records = [records[at] for at in chosen]
            stamps = [stamps[at] for at in chosen]
            taken = [lines[at] for at in chosen]
            offsets = [starts[at] for at in chosen]
        keys = self.add_many(records, stamps, offsets)
        self.offset = starts[-1]
        self.lines = first + len(lines) - 1
        return keys, records, stamps, taken

    def note_malformed(self, number: int, reason: str, line: bytes) -> None:
        """Count a malformed line (never fatal); the first few are kept with a preview."""
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        if len(self.malformed_lines) < MALFORMED_LIMIT:
            preview = line[:160].decode("utf-8", errors="replace")
            self.malformed_lines.append((number, reason, preview))

    # -------------------------------------------------------------- views

    def coarsened(self, resolution: int) -> DayIndex:
        """A copy whose buckets are ``resolution`` seconds (a multiple of this one's);
        the signal rows and trace offsets are left out (loaded on demand)."""
        if resolution == self.resolution and self.signals is None:
            return self

        def merge(source: dict[int, dict[Any, Any]]) -> dict[int, dict[Any, Any]]:
            out: dict[int, dict[Any, Any]] = {}
            for bucket, by_key in source.items():
                start = bucket // resolution * resolution
                into = out.get(start)
                if into is None:
                    out[start] = dict(by_key)
                    continue
                for key, n in by_key.items():
                    into[key] = into.get(key, 0) + n
            return out

        equity: dict[str, dict[int, tuple[float, float]]] = {}
        for bot, points in self.equity.items():
            coarse = equity[bot] = {}
            for bucket, point in sorted(points.items()):
                coarse[bucket // resolution * resolution] = point
        copy = DayIndex(self.trail, self.day)
        copy.__dict__.update(self.__dict__)
        copy.resolution = resolution
        copy.counts, copy.sums, copy.errors = (
            merge(self.counts),
            merge(self.sums),
            merge(self.errors),
        )
        copy.equity = equity
        copy.signals = copy.traces = None
        copy.detail_counts = None
        return copy

    # -------------------------------------------------------------- serialization

    def to_parts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(summary, detail): the hour-level part every reader loads, and the minute-level
        counts, signal rows and trace offsets loaded only when needed."""
        hourly = self.coarsened(HOUR) if self.resolution < HOUR else self
        summary = {
            "trail": self.trail,
            "day": self.day,
            "resolution": HOUR,
            **_buckets_out(hourly),
            "capped": self.capped[-CAPPED_SUMMARY:],
            "equity": {bot: _pairs_out(points) for bot, points in hourly.equity.items()},
            "last_event": self.last_event,
            "last_heartbeat": self.last_heartbeat,
            "spans": [[bot, symbol, *span] for (bot, symbol), span in self.spans.items()],
            "states": self.states,
            "protections": self.protections[-PROTECTION_LIMIT:],
            "open_trades": self.open_trades,
            "cross_exits": self.cross_exits,
            "chain": self.chain.__dict__,
            "records": self.records,
            "totals": [[*key, n] for key, n in self.totals.items()],
            "malformed": self.malformed,
            "malformed_lines": self.malformed_lines,
            "offset": self.offset,
            "lines": self.lines,
        }
        detail = {
            "resolution": self.resolution,
            **_buckets_out(self),
            "equity": {bot: _pairs_out(points) for bot, points in self.equity.items()},
            "capped": self.capped[-CAPPED_LIMIT:],
            "signals": self.signals or {},
            "traces": self.traces or {},
        }
        return summary, detail

    @classmethod
    def from_parts(cls, summary: dict[str, Any], detail: dict[str, Any] | None) -> DayIndex:
        """The index kept by ``to_parts``: at minute resolution with its rows when
        ``detail`` is given, else at hour resolution without them."""
        index = cls(summary["trail"], summary["day"])
        source = detail if detail is not None else summary
        index.resolution = source["resolution"]
        index.counts, index.sums, index.errors = _buckets_in(source)
        index.equity = {
            bot: {int(b): (float(t), float(v)) for b, t, v in points}
            for bot, points in source["equity"].items()
        }
        index.capped = [tuple(row) for row in source["capped"]]
        index.last_event = summary["last_event"]
        index.last_heartbeat = summary["last_heartbeat"]
        index.spans = {
            (bot, symbol): [first, last] for bot, symbol, first, last in summary["spans"]
        }
        index.states = {bot: tuple(s) for bot, s in summary["states"].items()}
        index.protections = [tuple(p) for p in summary["protections"]]
        index.open_trades = summary["open_trades"]
        index.cross_exits = {k: tuple(v) for k, v in summary["cross_exits"].items()}
        index.chain = ChainEnds(**summary["chain"])
        index.records, index.malformed = summary["records"], summary["malformed"]
        index.totals = {(b, k, s, d): n for b, k, s, d, n in summary["totals"]}
        index.malformed_lines = [tuple(m) for m in summary["malformed_lines"]]
        index.offset, index.lines = summary["offset"], summary["lines"]
        index.signals = detail["signals"] if detail is not None else None
        index.traces = detail["traces"] if detail is not None else None
        return index


_new = tuple.__new__
_NO_OFFSETS = repeat(-1)
_PLUS_NEWLINE = (1).__add__
# Counts an iterable's items into a dict in C (what Counter.update runs), one hash each.
_count_elements: Callable[[dict[Any, int], Iterable[Any]], None] = collections._count_elements  # type: ignore[attr-defined]


def _count_run(counts: dict[int, dict[Key, int]], bucket: int, keys: list[Key], start: int) -> None:
    """Count ``keys[start:]`` (a run of records in one bucket) into ``counts[bucket]``."""
    if start < len(keys):
        into = counts.get(bucket)
        if into is None:
            into = counts[bucket] = {}
        _count_elements(into, keys[start:] if start else keys)


def _buckets_out(index: DayIndex) -> dict[str, Any]:
    """Bucketed maps as lists: the keys once, then per bucket its key numbers and values
    (which load back with C-level loops: a day of minutes in a few milliseconds)."""
    out: dict[str, Any] = {}
    for name, source in (("counts", index.counts), ("sums", index.sums), ("errors", index.errors)):
        keys: dict[Any, int] = {}
        rows: list[Any] = []
        for bucket, by_key in source.items():
            numbers = [keys.setdefault(key, len(keys)) for key in by_key]
            rows.append((bucket, numbers, list(by_key.values())))
        out[name] = {"keys": list(keys), "rows": rows}
    return out


def _buckets_in(source: dict[str, Any]) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any]]:
    parts = []
    for name in ("counts", "sums", "errors"):
        keys = [tuple(key) for key in source[name]["keys"]]
        parts.append(
            {
                bucket: dict(zip(map(keys.__getitem__, numbers), values, strict=True))
                for bucket, numbers, values in source[name]["rows"]
            }
        )
    return parts[0], parts[1], parts[2]


def _pairs_out(points: dict[int, tuple[float, float]]) -> list[tuple[int, float, float]]:
    return [(bucket, ts, value) for bucket, (ts, value) in sorted(points.items())]


def day_start(day: str) -> int:
    """Epoch second of 00:00 UTC of ``YYYYMMDD``."""
    return calendar.timegm(time.strptime(day, "%Y%m%d"))
