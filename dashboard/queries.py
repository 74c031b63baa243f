"""The read side of the dashboard's store: every query the pages ask, over the aggregates.

``TrailStore`` (dashboard/store.py) is a ``StoreQueries``: it owns the aggregates,
the lock and the ingest, and this class holds the queries over them. Each query
takes the lock, reads the day indexes and the newest records
(``dashboard.aggregates``) and returns copies or immutable values; results of one
window are memoized per store ``version`` (the panels of one page view ask the same
window several times). Every query takes ``bot`` (None: all bots together).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from bot.audit.dayextras import R_BOT, R_FILL, R_SYMBOL, R_TS, RISK_REJECTION
from bot.audit.dayfile import iter_lines_at
from bot.audit.dayindex import MINUTE, ORDER_OUTCOMES
from bot.audit.indexcache import IndexCache
from bot.audit.reader import Record
from dashboard.aggregates import (
    Aggregates,
    ControlState,
    Position,
    Results,
    SignalRow,
    outcome_matches,
)

SLIPPAGE_ROWS = 200  # entries listed with their slippage (the newest; the mean is over all)


class StoreQueries:
    """Queries over the aggregates; the store provides what is declared here."""

    clock: Callable[[], float]
    version: int
    _lock: threading.Lock
    _agg: Aggregates
    _cache: IndexCache
    _capped_limit: int
    _memo_version: int
    _memo_results: dict[tuple[Any, ...], Any]

    def _day_file(self, trail: str, day: str) -> Path | None:
        """The day file of a trail's day (the store knows where trails are)."""
        raise NotImplementedError

    # -------------------------------------------------------------- count queries

    def _window(self, start: float, end: float, symbol: str | None, bot: str | None) -> Counter:  # type: ignore[type-arg]
        memo_key = ("window", start, end, symbol, bot)
        cached = self._memo(memo_key)
        if cached is None:
            cached = self._agg.window(start, end, symbol, bot)
            self._remember(memo_key, cached)
        return cached  # type: ignore[no-any-return]

    def counts(
        self, start: float, end: float, symbol: str | None = None, *, bot: str | None = None
    ) -> Counter[str]:
        """event_type -> number of records with timestamp in [start, end)."""
        out: Counter[str] = Counter()
        with self._lock:
            for key, n in self._window(start, end, symbol, bot).items():
                out[key[1]] += n
        return out

    def rejection_reasons(
        self, start: float, end: float, symbol: str | None = None, *, bot: str | None = None
    ) -> Counter[str]:
        """risk_rejection ``.error.reason`` -> count in [start, end)."""
        out: Counter[str] = Counter()
        with self._lock:
            for key, n in self._window(start, end, symbol, bot).items():
                if key[1] == RISK_REJECTION:
                    out[key[3]] += n
        return out

    def order_outcomes(
        self, start: float, end: float, symbol: str | None = None, *, bot: str | None = None
    ) -> Counter[tuple[str, str]]:
        """(order_type, placed/rejected/filled/cancelled) -> count in [start, end)."""
        out: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for key, n in self._window(start, end, symbol, bot).items():
                outcome = ORDER_OUTCOMES.get(key[1])
                if outcome is not None:
                    out[(key[3], outcome)] += n
        return out

    def series(
        self,
        start: float,
        end: float,
        symbol: str | None = None,
        event_types: Iterable[str] | None = None,
        *,
        step_seconds: int | None = None,
        bot: str | None = None,
    ) -> list[tuple[float, Counter[str]]]:
        """(slot start, event_type -> count) for every slot overlapping [start, end).

        Slots are ``step_seconds`` (default a minute) long; a bucket of an old day
        (an hour) falls in the slot holding its start."""
        wanted = None if event_types is None else frozenset(event_types)
        types, _ = self._views(start, end, symbol, step_seconds, bot)
        if wanted is None:
            return [(t, Counter(c)) for t, c in types]
        return [(t, Counter({k: n for k, n in c.items() if k in wanted})) for t, c in types]

    def rejection_reason_series(
        self,
        start: float,
        end: float,
        symbol: str | None = None,
        *,
        step_seconds: int | None = None,
        bot: str | None = None,
    ) -> list[tuple[float, Counter[str]]]:
        """(slot start, reason -> count) of risk rejections per slot."""
        _, reasons = self._views(start, end, symbol, step_seconds, bot)
        return [(t, Counter(c)) for t, c in reasons]

    def _views(
        self, start: float, end: float, symbol: str | None, step: int | None, bot: str | None
    ) -> tuple[list[tuple[float, dict[str, int]]], list[tuple[float, dict[str, int]]]]:
        step = max(MINUTE, (step or MINUTE) // MINUTE * MINUTE)
        with self._lock:
            memo_key = ("views", start, end, symbol, step, bot)
            cached = self._memo(memo_key)
            if cached is not None:
                return cached  # type: ignore[no-any-return]
            starts, buckets = self._agg.slots(start, end, step)
            types: list[dict[str, int]] = [{} for _ in starts]
            reasons: list[dict[str, int]] = [{} for _ in starts]
            for slot, index, bucket in buckets:
                kinds, why = types[slot], reasons[slot]
                for (row_bot, kind, row_symbol, detail), n in index.counts[bucket].items():
                    if (symbol is not None and row_symbol != symbol) or (
                        bot is not None and row_bot != bot
                    ):
                        continue
                    kinds[kind] = kinds.get(kind, 0) + n
                    if kind == RISK_REJECTION:
                        why[detail] = why.get(detail, 0) + n
            result = (
                list(zip(starts, types, strict=True)),
                list(zip(starts, reasons, strict=True)),
            )
            self._remember(memo_key, result)
            return result

    def capped_quantities(
        self, start: float, end: float, symbol: str | None = None, *, bot: str | None = None
    ) -> list[tuple[float, float, float]]:
        """(timestamp, requested_quantity, capped_quantity) of capping events, oldest first
        (the newest ``capped_limit``)."""
        out: list[tuple[float, float, float]] = []
        with self._lock:
            for index in self._agg.indexes(start, end):
                out.extend(
                    (ts, requested, capped)
                    for ts, row_bot, row_symbol, requested, capped in index.capped
                    if start <= ts < end
                    and (symbol is None or row_symbol == symbol)
                    and (bot is None or row_bot == bot)
                )
        out.sort(key=lambda row: row[0])
        return out[-self._capped_limit :]

    def totals(self, *, bot: str | None = None) -> Counter[str]:
        """event_type -> count over the whole trail read so far."""
        return self.counts(-math.inf, math.inf, bot=bot)

    def symbols(self, *, bot: str | None = None) -> list[str]:
        found: set[str] = set()
        with self._lock:
            for index in self._agg.indexes():
                for by_key in index.counts.values():
                    found.update(k[2] for k in by_key if k[2] and (bot is None or k[0] == bot))
        return sorted(found)

    def bots(self) -> list[str]:
        """Every bot seen in the trails (their bot_id, else the trail's name)."""
        found: set[str] = set()
        with self._lock:
            for index in self._agg.indexes():
                found.update(index.last_event)
        return sorted(found)

    # -------------------------------------------------------------- records and traces

    def recent(
        self,
        limit: int = 500,
        *,
        start: float | None = None,
        end: float | None = None,
        symbol: str | None = None,
        event_types: Iterable[str] | None = None,
        bot: str | None = None,
    ) -> list[Record]:
        """The newest matching records (at most ``limit``), newest last, each a new dict."""
        wanted = None if event_types is None else frozenset(event_types)
        with self._lock:
            return self._agg.recent_records(limit, start, end, symbol, wanted, bot)

    def trace(self, trace_id: str) -> list[Record]:
        """Every event of one trace, in trail order ([] when unknown).

        A trace the newest records hold from its signal on comes from memory; any
        other from the trace offsets of the day indexes (in memory for the days read
        here, else in the cache), read back from the day files."""
        with self._lock:
            lines = [line for _, line in self._agg.traces.get(trace_id, ())]
        records = [orjson.loads(line) for line in lines]
        if records and records[0].get("event_type") == "signal_processing":
            return records
        return self._trace_from_days(trace_id) or records

    def _trace_from_days(self, trace_id: str) -> list[Record]:
        with self._lock:
            days = [(index.trail, index.day, index.traces) for index in self._agg.indexes()]
        found: list[Record] = []
        for trail_name, day, offsets in reversed(days):
            path = self._day_file(trail_name, day)
            if path is None:
                continue
            if offsets is None:
                detail = self._cache.load_detail(path)
                offsets = detail["traces"] if detail is not None else {}
            at = offsets.get(trace_id)
            if at:
                found[:0] = [orjson.loads(line) for line in iter_lines_at(path, at)]
            elif found:
                break  # the trace began on the day after this one
        return found

    def recent_trace_ids(self, limit: int = 50, *, bot: str | None = None) -> list[str]:
        """Trace ids with the most recent activity first."""
        with self._lock:
            if bot is None:
                return list(islice(reversed(self._agg.traces), limit))
            out = []
            for trace_id in reversed(self._agg.traces):
                first = self._agg.traces[trace_id][0][1]
                if _bot_of_line(first) == bot:
                    out.append(trace_id)
                    if len(out) >= limit:
                        break
            return out

    # -------------------------------------------------------------- results and signals

    def results(
        self,
        start: float,
        end: float,
        symbol: str | None = None,
        *,
        bot: str | None = None,
        step_seconds: int | None = None,
    ) -> Results:
        """Realized PnL net of fees (cumulative per slot and per symbol), fees, wins and
        losses, exits by kind and the entries' slippage over [start, end)."""
        rows = self._rows(start, end, symbol, bot, None, None, SLIPPAGE_ROWS, filled=True)
        step = max(MINUTE, step_seconds or MINUTE)
        with self._lock:
            return self._agg.results(start, end, symbol, bot, step, rows)

    def open_positions(self, *, bot: str | None = None) -> list[Position]:
        """Positions opened by an entry fill and not yet closed by an exit fill."""
        with self._lock:
            return self._agg.open_positions(bot)

    def equity(
        self, start: float, end: float, *, bot: str | None = None, step_seconds: int | None = None
    ) -> list[tuple[float, str, float]]:
        """(ts, bot, wallet balance) from balance queries: the last one per slot and bot."""
        step = max(MINUTE, step_seconds or MINUTE)
        last: dict[tuple[int, str], tuple[float, float]] = {}
        with self._lock:
            for index in self._agg.indexes(start, end):
                for row_bot, points in index.equity.items():
                    if bot is not None and row_bot != bot:
                        continue
                    for ts, balance in points.values():
                        if start <= ts < end:
                            slot = int(ts // step)
                            if (slot, row_bot) not in last or last[(slot, row_bot)][0] <= ts:
                                last[(slot, row_bot)] = (ts, balance)
        return sorted((ts, row_bot, balance) for (_, row_bot), (ts, balance) in last.items())

    def signals(
        self,
        start: float,
        end: float,
        symbol: str | None = None,
        *,
        bot: str | None = None,
        outcome: str | None = None,
        reason: str | None = None,
        limit: int = 1000,
    ) -> list[SignalRow]:
        """One row per signal in [start, end), newest first (at most ``limit``)."""
        rows = self._rows(start, end, symbol, bot, outcome, reason, limit)
        with self._lock:
            return self._agg.complete_rows(rows)

    def _rows(
        self,
        start: float,
        end: float,
        symbol: str | None,
        bot: str | None,
        outcome: str | None,
        reason: str | None,
        limit: int,
        *,
        filled: bool = False,
    ) -> list[list[Any]]:
        """Signal rows newest first (``filled``: only those with an entry fill); days
        loaded at hour resolution read theirs from the cache entry (one day at a time,
        newest first, until ``limit``)."""
        with self._lock:
            days = [
                (index.trail, index.day, index.signals) for index in self._agg.indexes(start, end)
            ]
        out: list[list[Any]] = []
        for trail_name, day, signals in reversed(days):
            if len(out) >= limit:
                break
            if signals is None:
                path = self._day_file(trail_name, day)
                detail = self._cache.load_detail(path) if path is not None else None
                signals = detail["signals"] if detail is not None else {}
            with self._lock:
                picked = [
                    list(row)
                    for row in signals.values()
                    if start <= row[R_TS] < end
                    and (symbol is None or row[R_SYMBOL] == symbol)
                    and (bot is None or row[R_BOT] == bot)
                    and outcome_matches(row, outcome, reason)
                    and (not filled or row[R_FILL] is not None)
                ]
            picked.sort(key=lambda row: row[R_TS], reverse=True)
            out.extend(picked[: limit - len(out)])
        return out

    def control_state(self, *, bot: str | None = None) -> dict[str, ControlState]:
        """Per bot: its trading state (SPEC §11) and the protections still active now."""
        with self._lock:
            return self._agg.control_state(self.clock(), bot)

    # -------------------------------------------------------------- status

    def last_times(self, *, bot: str | None = None) -> tuple[float | None, float | None]:
        """(last record, last heartbeat) of one bot, or of all bots."""
        event: float | None = None
        beat: float | None = None
        with self._lock:
            for index in self._agg.indexes():
                for row_bot, ts in index.last_event.items():
                    if (bot is None or row_bot == bot) and (event is None or ts > event):
                        event = ts
                for row_bot, ts in index.last_heartbeat.items():
                    if (bot is None or row_bot == bot) and (beat is None or ts > beat):
                        beat = ts
        return event, beat

    @property
    def last_event_time(self) -> float | None:
        return self.last_times()[0]

    @property
    def last_heartbeat_time(self) -> float | None:
        return self.last_times()[1]

    # -------------------------------------------------------------- internals

    def _memo(self, key: tuple[Any, ...]) -> Any:
        """A query result computed at the current version, else None (lock held)."""
        if self._memo_version != self.version:
            self._memo_version = self.version
            self._memo_results.clear()
        return self._memo_results.get(key)

    def _remember(self, key: tuple[Any, ...], value: Any) -> None:
        if len(self._memo_results) > 64:
            self._memo_results.clear()
        self._memo_results[key] = value


def _bot_of_line(line: bytes) -> str | None:
    with contextlib.suppress(orjson.JSONDecodeError):
        value = orjson.loads(line).get("bot_id")
        return value if isinstance(value, str) else None
    return None
