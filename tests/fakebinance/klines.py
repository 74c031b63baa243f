"""Candles of the fake venue: a deterministic history plus test-driven live candles.

``seed`` lays down ``count`` closed candles ending at the current interval
boundary and one open candle, from a seeded random walk (same seed, same
candles). ``close_current`` finalizes the open candle with the test's prices
and opens the next one; both changes are returned as websocket ``kline``
payloads for the server to publish. REST ``/fapi/v1/klines`` sees the same
series, open candle last, as Binance returns it.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from tests.fakebinance.params import VenueError
from tests.fakebinance.symbols import INTERVAL_MS


@dataclass(frozen=True)
class Kline:
    open_time: int
    interval_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool
    trades: int = 100

    @property
    def close_time(self) -> int:
        return self.open_time + self.interval_ms - 1

    def rest_row(self) -> list[Any]:
        quote = (self.volume * self.close).quantize(Decimal("0.0001"))
        return [
            self.open_time,
            str(self.open),
            str(self.high),
            str(self.low),
            str(self.close),
            str(self.volume),
            self.close_time,
            str(quote),
            self.trades,
            str(self.volume / 2),
            str(quote / 2),
            "0",
        ]

    def event(self, symbol: str, interval: str, event_time: int) -> dict[str, Any]:
        quote = (self.volume * self.close).quantize(Decimal("0.0001"))
        return {
            "e": "kline",
            "E": event_time,
            "s": symbol,
            "k": {
                "t": self.open_time,
                "T": self.close_time,
                "s": symbol,
                "i": interval,
                "f": 1,
                "L": self.trades,
                "o": str(self.open),
                "c": str(self.close),
                "h": str(self.high),
                "l": str(self.low),
                "v": str(self.volume),
                "n": self.trades,
                "x": self.closed,
                "q": str(quote),
                "V": str(self.volume / 2),
                "Q": str(quote / 2),
                "B": "0",
            },
        }


class KlineBook:
    """Per (symbol, interval) candle series; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], list[Kline]] = {}

    def seed(
        self,
        symbol: str,
        interval: str,
        *,
        now_ms: int,
        count: int,
        start_price: Decimal,
        seed: int,
        tick: Decimal = Decimal("0.1"),
    ) -> None:
        step = INTERVAL_MS[interval]
        current_open = now_ms - now_ms % step
        rng = random.Random(f"{seed}:{symbol}:{interval}")
        price = start_price
        rows: list[Kline] = []
        for i in range(count + 1):
            move = Decimal(str(round(rng.uniform(-0.004, 0.004), 6)))
            open_ = price
            close = (open_ * (1 + move)).quantize(tick)
            wick = (abs(close - open_) / 2 + tick).quantize(tick)
            rows.append(
                Kline(
                    open_time=current_open - (count - i) * step,
                    interval_ms=step,
                    open=open_,
                    high=max(open_, close) + wick,
                    low=min(open_, close) - wick,
                    close=close,
                    volume=Decimal(str(round(rng.uniform(5, 50), 3))),
                    closed=i < count,
                )
            )
            price = close
        with self._lock:
            self._series[(symbol, interval)] = rows

    def rows(
        self,
        symbol: str,
        interval: str,
        *,
        limit: int = 500,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> list[list[Any]]:
        if interval not in INTERVAL_MS:
            raise VenueError(-1120, "Invalid interval.")
        if not 1 <= limit <= 1500:
            raise VenueError(-1130, "Data sent for parameter 'limit' is not valid.")
        with self._lock:
            series = list(self._series.get((symbol, interval), ()))
        if start_time is not None:
            series = [k for k in series if k.open_time >= start_time]
            series = series[:limit]
        if end_time is not None:
            series = [k for k in series if k.open_time <= end_time]
        if start_time is None:
            series = series[-limit:]
        return [k.rest_row() for k in series]

    def current(self, symbol: str, interval: str) -> Kline:
        with self._lock:
            return self._series[(symbol, interval)][-1]

    def close_current(
        self,
        symbol: str,
        interval: str,
        *,
        close: Decimal,
        high: Decimal | None = None,
        low: Decimal | None = None,
        volume: Decimal = Decimal("10"),
    ) -> tuple[Kline, Kline]:
        """Close the open candle at ``close`` and open the next; returns (closed, opened)."""
        with self._lock:
            series = self._series[(symbol, interval)]
            live = series[-1]
            done = replace(
                live,
                close=close,
                high=max(high or close, live.open, close),
                low=min(low or close, live.open, close),
                volume=volume,
                closed=True,
            )
            nxt = Kline(
                open_time=live.open_time + live.interval_ms,
                interval_ms=live.interval_ms,
                open=close,
                high=close,
                low=close,
                close=close,
                volume=Decimal(0),
                closed=False,
                trades=0,
            )
            series[-1] = done
            series.append(nxt)
            return done, nxt

    def update_current(self, symbol: str, interval: str, *, price: Decimal) -> Kline:
        """A trade inside the open candle (an ``x: false`` update)."""
        with self._lock:
            series = self._series[(symbol, interval)]
            live = series[-1]
            series[-1] = replace(
                live,
                close=price,
                high=max(live.high, price),
                low=min(live.low, price),
                volume=live.volume + 1,
                trades=live.trades + 1,
            )
            return series[-1]
