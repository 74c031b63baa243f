"""The dashboard's aggregates: day indexes plus the newest records, and every query over them.

No threads and no locks here: ``TrailStore`` (dashboard/store.py) owns one
``Aggregates`` and calls it under its lock. What a record contributes is decided by
``bot.audit.dayindex.DayIndex.add`` alone; this module only keeps those indexes (one
per trail and day: minutes for a trail's newest days, hours beyond, so memory follows
the time span, not the number of records) and answers windows over them:

* whole buckets come from the indexes; a bucket cut by a window edge is counted
  exactly from the index of the newest records (``exact_*``) when that reaches back
  so far, else by its start;
* the newest records are kept as their lines (recent table, trace LRU), parsed when
  asked for.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter, methodcaller
from typing import Any

import orjson

from bot.audit.dayextras import (
    EXIT_KINDS,
    FEE,
    LOSSES,
    NET,
    PNL,
    R_BOT,
    R_ENTRY,
    R_EXIT,
    R_EXIT_KIND,
    R_FILL,
    R_OUTCOME,
    R_PNL,
    R_REASON,
    R_SIDE,
    R_SYMBOL,
    R_TRACE,
    R_TS,
    SLIPPAGE_BPS,
    SLIPPED,
    T_BOT,
    T_FEES,
    T_PRICE,
    T_QTY,
    T_REALIZED,
    T_SIDE,
    T_SYMBOL,
    T_TS,
    TRADES,
    WINS,
    slippage_bps,
)
from bot.audit.dayindex import DAY, DayIndex, Key, day_start
from bot.audit.reader import Record

Rows = list[list[Any]]


@dataclass(frozen=True)
class SymbolResult:
    realized_pnl: float = 0.0
    fees: float = 0.0
    net_pnl: float = 0.0
    wins: int = 0
    losses: int = 0
    trades: int = 0


@dataclass(frozen=True)
class Slippage:
    ts: float
    bot: str
    symbol: str
    trace_id: str
    side: str
    signal_price: float
    fill_price: float
    bps: float  # positive: filled worse than the signal's entry price


@dataclass(frozen=True)
class Results:
    """Trading results over a window (SPEC §9), derived from the trail alone."""

    realized_pnl: float
    fees: float
    net_pnl: float
    trades: int
    wins: int
    losses: int
    exits: dict[str, int]
    by_symbol: dict[str, SymbolResult]
    cumulative: list[tuple[float, float]]
    slippage: list[Slippage]  # the newest entries, newest first (a bounded list)
    mean_slippage_bps: float | None  # over every entry of the window


@dataclass(frozen=True)
class Position:
    bot: str
    symbol: str
    side: str
    quantity: float
    entry_price: float
    opened_at: float
    trace_id: str


@dataclass(frozen=True)
class SignalRow:
    time: float
    bot: str
    symbol: str
    side: str
    strategy: str
    trace_id: str
    outcome: str  # traded | rejected | capped | failed | pending
    reason: str | None
    entry_price: float | None
    fill_price: float | None
    exit_price: float | None
    exit_kind: str | None
    pnl: float | None


@dataclass(frozen=True)
class Protection:
    name: str
    symbol: str | None
    until: float | None
    ts: float
    details: dict[str, Any]


@dataclass(frozen=True)
class ControlState:
    bot: str
    state: str  # active | reducing | halted
    since: float | None
    reason: str
    source: str
    protections: list[Protection] = field(default_factory=list)


def _slippage(row: list[Any]) -> Slippage | None:
    bps = slippage_bps(row[R_SIDE], row[R_ENTRY], row[R_FILL])
    if bps is None:
        return None
    return Slippage(
        row[R_TS],
        row[R_BOT],
        row[R_SYMBOL],
        row[R_TRACE],
        row[R_SIDE],
        row[R_ENTRY],
        row[R_FILL],
        bps,
    )


class Aggregates:
    """Day indexes by (trail, day) plus the newest records; see the module docstring."""

    def __init__(
        self,
        *,
        recent_limit: int,
        trace_limit: int,
        trace_events_limit: int,
        exact_limit: int,
    ) -> None:
        self.days: dict[tuple[str, str], DayIndex] = {}
        self._order: list[tuple[int, str, str]] = []  # (day start, trail, day), sorted
        self._recent_limit = recent_limit
        self._trace_limit = trace_limit
        self._trace_events_limit = trace_events_limit
        self._exact_limit = exact_limit
        self.exact_ts: list[float] = []
        self.exact_keys: list[Key] = []
        self.exact_floor = -math.inf  # newest timestamp not in the exact index
        # (ts, bot, event_type, symbol, line), kept to recent_limit
        self.recent: deque[tuple[float, str, str, str, bytes]] = deque()
        self.traces: OrderedDict[str, list[tuple[float, bytes]]] = OrderedDict()

    # -------------------------------------------------------------- days

    def put_day(self, index: DayIndex) -> None:
        """Add or replace the index of one trail's day."""
        key = (index.trail, index.day)
        if key not in self.days:
            bisect.insort(self._order, (day_start(index.day), index.trail, index.day))
        self.days[key] = index

    def drop_day(self, trail: str, day: str) -> None:
        """Forget a day (its file is read again): its counts and its newest records."""
        dropped = self.days.pop((trail, day), None)
        if dropped is None:
            return
        bots = {trail, *dropped.last_event}
        self._order.remove((day_start(day), trail, day))
        lo = day_start(day)
        hi = lo + DAY
        keep = [
            i
            for i, (ts, key) in enumerate(zip(self.exact_ts, self.exact_keys, strict=True))
            if not (lo <= ts < hi and key[0] in bots)
        ]
        self.exact_ts = [self.exact_ts[i] for i in keep]
        self.exact_keys = [self.exact_keys[i] for i in keep]
        self.recent = deque(r for r in self.recent if not (lo <= r[0] < hi and r[1] in bots))
        for trace_id in list(self.traces):
            events = [e for e in self.traces[trace_id] if not lo <= e[0] < hi]
            if events:
                self.traces[trace_id] = events
            else:
                del self.traces[trace_id]

    def indexes(
        self, start: float = -math.inf, end: float = math.inf, bots: Iterable[str] | None = None
    ) -> Iterator[DayIndex]:
        """The day indexes overlapping [start, end), oldest first."""
        for first, trail, day in self._order:
            if first + DAY <= start or first >= end:
                continue
            yield self.days[(trail, day)]

    # -------------------------------------------------------------- newest records

    def note(
        self, stamps: list[float], keys: list[Key], records: list[Record], lines: list[bytes]
    ) -> None:
        """Records (in file order, with their timestamps, keys and lines) that went
        through the per-record path: exact index, recent table, traces."""
        self.exact_ts.extend(stamps)
        self.exact_keys.extend(keys)
        self.recent.extend(
            zip(stamps, map(_BOT, keys), map(_KIND, keys), map(_SYMBOL, keys), lines, strict=True)
        )
        trace_ids = list(map(_TRACE_ID, records))
        batch: dict[str, list[tuple[float, bytes]]] = {}  # each trace's events in this batch
        for trace_id, ts, line in zip(trace_ids, stamps, lines, strict=True):
            if trace_id:
                events = batch.get(trace_id)
                if events is None:
                    batch[trace_id] = [(ts, line)]
                else:
                    events.append((ts, line))
        traces, room = self.traces, self._trace_events_limit
        # the traces in the order of their last record here: the LRU order of per-record notes
        for trace_id in reversed(dict.fromkeys(reversed(trace_ids))):
            new = batch.get(trace_id)
            if new is None:
                continue  # no trace id
            events = traces.get(trace_id)
            if events is None:
                events = traces[trace_id] = []
            else:
                traces.move_to_end(trace_id)
            events.extend(new[: room - len(events)])
        while len(traces) > self._trace_limit:
            traces.popitem(last=False)

    def trim(self) -> None:
        """Keep the bounded containers bounded (amortized: in large steps)."""
        for _ in range(len(self.recent) - self._recent_limit):
            self.recent.popleft()
        excess = len(self.exact_ts) - self._exact_limit
        if excess > self._exact_limit // 4:
            self.exact_floor = max(self.exact_floor, max(self.exact_ts[:excess]))
            del self.exact_ts[:excess]
            del self.exact_keys[:excess]

    def sort_exact(self) -> None:
        """Order the exact index by time (records of many trails arrive interleaved)."""
        if any(a > b for a, b in zip(self.exact_ts, self.exact_ts[1:], strict=False)):
            pairs = sorted(zip(self.exact_ts, self.exact_keys, strict=True), key=lambda p: p[0])
            self.exact_ts = [ts for ts, _ in pairs]
            self.exact_keys = [key for _, key in pairs]

    # -------------------------------------------------------------- counts

    def window(self, start: float, end: float, symbol: str | None, bot: str | None) -> Counter[Key]:
        """Key counts in [start, end): whole buckets from the indexes, cut buckets exactly
        from the exact index when it reaches back that far (else by bucket start)."""
        out: Counter[Key] = Counter()
        if end <= start:
            return out
        edges: list[tuple[float, float]] = []
        for first, trail, day in self._order:
            if first + DAY <= start or first >= end:
                continue
            index = self.days[(trail, day)]
            if start <= first and first + DAY <= end:  # the whole day
                _select(out, index.totals, symbol, bot)
                continue
            size = index.resolution
            for bucket, by_key in index.counts.items():
                if bucket + size <= start or bucket >= end:
                    continue
                if start <= bucket and bucket + size <= end:
                    _select(out, by_key, symbol, bot)
                    continue
                lo, hi = max(start, bucket), min(end, bucket + size)
                if lo > self.exact_floor:
                    edges.append((lo, hi))
                elif start <= bucket:
                    _select(out, by_key, symbol, bot)
        for lo, hi in edges:
            first = bisect.bisect_left(self.exact_ts, lo)
            stop = bisect.bisect_left(self.exact_ts, hi, first)
            for key in self.exact_keys[first:stop]:
                if (symbol is None or key[2] == symbol) and (bot is None or key[0] == bot):
                    out[key] += 1
        return out

    def slots(
        self, start: float, end: float, step: int
    ) -> tuple[list[float], Iterator[tuple[int, DayIndex, int]]]:
        """(slot starts, (slot number, index, bucket) of every bucket starting in a slot)."""
        first = math.floor(start / step) * step
        count = max(0, math.ceil((end - first) / step))
        starts = [float(first + i * step) for i in range(count)]

        def buckets() -> Iterator[tuple[int, DayIndex, int]]:
            for index in self.indexes(first, end):
                for bucket in index.counts:
                    if first <= bucket < end:
                        yield (bucket - first) // step, index, bucket

        return starts, buckets()

    def sums(
        self, start: float, end: float, symbol: str | None, bot: str | None
    ) -> Iterator[tuple[int, str, str, str, float]]:
        """(bucket, bot, symbol, measure, amount) of trading results with bucket in range."""
        for index in self.indexes(start, end):
            for bucket, by_key in index.sums.items():
                if start <= bucket < end:
                    for (row_bot, row_symbol, measure), n in by_key.items():
                        if (symbol is None or row_symbol == symbol) and (
                            bot is None or row_bot == bot
                        ):
                            yield bucket, row_bot, row_symbol, measure, n

    # -------------------------------------------------------------- results

    def cross_day_closes(self) -> list[tuple[float, str, str, str, float, str, float]]:
        """Trades opened on one day and closed on a later one, matched across the indexes:
        (exit ts, bot, symbol, exit kind, net PnL, trace_id, exit price)."""
        opened: dict[str, list[Any]] = {}
        closes = []
        for index in self.indexes():
            for trace_id, exit_ in index.cross_exits.items():
                ts, bot, symbol, kind, price, realized, fees = exit_
                trade = opened.pop(trace_id, None)
                if trade is not None:
                    realized += trade[T_REALIZED]
                    fees += trade[T_FEES]
                closes.append((ts, bot, symbol, kind, realized - fees, trace_id, price))
            opened.update(index.open_trades)
        return closes

    def open_positions(self, bot: str | None) -> list[Position]:
        opened: dict[str, list[Any]] = {}
        for index in self.indexes():
            for trace_id in index.cross_exits:
                opened.pop(trace_id, None)
            opened.update(index.open_trades)
        return [
            Position(t[T_BOT], t[T_SYMBOL], t[T_SIDE], t[T_QTY], t[T_PRICE], t[T_TS], trace_id)
            for trace_id, t in opened.items()
            if bot is None or t[T_BOT] == bot
        ]

    def results(
        self,
        start: float,
        end: float,
        symbol: str | None,
        bot: str | None,
        step: int,
        rows: Rows,
    ) -> Results:
        """Results over [start, end) by bucket; ``rows``: the newest signal rows of the
        window (for the list of entries' slippage; its mean comes from the sums)."""
        per_symbol: dict[str, dict[str, float]] = {}
        slipped: dict[str, float] = {SLIPPED: 0.0, SLIPPAGE_BPS: 0.0}
        exits: Counter[str] = Counter()
        net_by_slot: dict[int, float] = {}
        first = math.floor(start / step) * step

        def take(bucket: float, row_symbol: str, measure: str, n: float) -> None:
            figures = per_symbol.setdefault(row_symbol, {})
            figures[measure] = figures.get(measure, 0.0) + n
            if measure in EXIT_NAMES:
                exits[measure] += int(n)
            if measure in (PNL, FEE):
                slot = int((bucket - first) // step)
                net_by_slot[slot] = net_by_slot.get(slot, 0.0) + (n if measure == PNL else -n)

        for bucket, _, row_symbol, measure, n in self.sums(start, end, symbol, bot):
            if measure in slipped:
                slipped[measure] += n
            else:
                take(bucket, row_symbol, measure, n)
        for ts, row_bot, row_symbol, kind, net, _, _ in self.cross_day_closes():
            if (
                start <= ts < end
                and (symbol is None or row_symbol == symbol)
                and (bot is None or row_bot == bot)
            ):
                take(ts, row_symbol, TRADES, 1)
                take(ts, row_symbol, WINS if net > 0 else LOSSES, 1)
                take(ts, row_symbol, NET, net)
                take(ts, row_symbol, kind, 1)
        by_symbol = {
            name: SymbolResult(
                realized_pnl=f.get(PNL, 0.0),
                fees=f.get(FEE, 0.0),
                net_pnl=f.get(PNL, 0.0) - f.get(FEE, 0.0),
                wins=int(f.get(WINS, 0)),
                losses=int(f.get(LOSSES, 0)),
                trades=int(f.get(TRADES, 0)),
            )
            for name, f in sorted(per_symbol.items())
        }
        cumulative, running = [], 0.0
        for slot in sorted(net_by_slot):  # a step function: the slots where it moves
            running += net_by_slot[slot]
            cumulative.append((float(first + slot * step), running))
        slippage = [s for row in rows if (s := _slippage(row)) is not None]
        realized = sum(r.realized_pnl for r in by_symbol.values())
        fees = sum(r.fees for r in by_symbol.values())
        return Results(
            realized_pnl=realized,
            fees=fees,
            net_pnl=realized - fees,
            trades=sum(r.trades for r in by_symbol.values()),
            wins=sum(r.wins for r in by_symbol.values()),
            losses=sum(r.losses for r in by_symbol.values()),
            exits={kind: exits.get(kind, 0) for kind in EXIT_NAMES},
            by_symbol=by_symbol,
            cumulative=cumulative,
            slippage=slippage,
            mean_slippage_bps=(
                slipped[SLIPPAGE_BPS] / slipped[SLIPPED] if slipped[SLIPPED] else None
            ),
        )

    def complete_rows(self, rows: Rows) -> list[SignalRow]:
        """Signal rows with the exits of trades closed on a later day filled in."""
        closes = {c[5]: c for c in self.cross_day_closes()}
        out = []
        for row in rows:
            row = list(row)
            close = closes.get(row[R_TRACE])
            if close is not None and row[R_EXIT_KIND] is None:
                row[R_EXIT], row[R_EXIT_KIND], row[R_PNL] = close[6], close[3], close[4]
            out.append(SignalRow(*row[:13]))
        return out

    # -------------------------------------------------------------- control

    def control_state(self, now: float, bot: str | None) -> dict[str, ControlState]:
        states: dict[str, tuple[float, str, str, str, str]] = {}
        protections: dict[str, list[Protection]] = {}
        bots: set[str] = set()
        for index in self.indexes():
            states.update(index.states)
            bots.update(index.last_event)
            for ts, row_bot, name, scope, until, details in index.protections:
                if until is None or until > now:
                    protections.setdefault(row_bot, []).append(
                        Protection(name, scope, until, ts, details)
                    )
        out = {}
        for name in sorted(bots | set(states)):
            if bot is not None and name != bot:
                continue
            state = states.get(name)
            active = protections.get(name, [])
            if state is None:
                out[name] = ControlState(name, "active", None, "", "", active)
            else:
                ts, to, _, reason, source = state
                out[name] = ControlState(name, to or "active", ts, reason, source, active)
        return out

    # -------------------------------------------------------------- records

    def recent_records(
        self,
        limit: int,
        start: float | None,
        end: float | None,
        symbol: str | None,
        wanted: frozenset[str] | None,
        bot: str | None,
    ) -> list[Record]:
        found: list[bytes] = []
        for ts, row_bot, kind, row_symbol, line in reversed(self.recent):
            if len(found) >= limit:
                break
            if (start is not None and ts < start) or (end is not None and ts >= end):
                continue
            if (symbol is not None and row_symbol != symbol) or (
                bot is not None and row_bot != bot
            ):
                continue
            if wanted is not None and kind not in wanted:
                continue
            found.append(line)
        return [orjson.loads(line) for line in reversed(found)]


EXIT_NAMES = tuple(EXIT_KINDS.values())
_BOT, _KIND, _SYMBOL = itemgetter(0), itemgetter(1), itemgetter(2)
_TRACE_ID = methodcaller("get", "trace_id")


def _select(out: Counter[Key], by_key: dict[Key, int], symbol: str | None, bot: str | None) -> None:
    if symbol is None and bot is None:
        out.update(by_key)
        return
    for key, n in by_key.items():
        if (symbol is None or key[2] == symbol) and (bot is None or key[0] == bot):
            out[key] += n


def outcome_matches(row: list[Any], outcome: str | None, reason: str | None) -> bool:
    return (outcome is None or row[R_OUTCOME] == outcome) and (
        reason is None or row[R_REASON] == reason
    )
