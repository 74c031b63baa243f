"""SimulatedMarket: synthetic candles, deterministic for a seed, faster than real time.

Each symbol's 1-minute candles come from a random walk whose volatility
switches between calm, normal and wild regimes and whose drift wanders, so
a crossover strategy sees trends, reversals, tight stops (calm regimes, where
sizing gets capped) and wide ones. Longer intervals (5m, 15m, 1h, ...) are
aggregated from the 1-minute candles, so they agree with each other. The
same seed always gives the same prices; ``speed`` is how many simulated
seconds pass per real second (60: a 1m candle closes every second; 0: as
fast as possible).
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.errors import ConfigError
from bot.market.base import CandleHandler
from bot.models import Candle

MINUTE_MS = 60_000
INTERVAL_MINUTES = {
    "1m": 1,
    "3m": 3,
    "5m": 5,
    "15m": 15,
    "30m": 30,
    "1h": 60,
    "2h": 120,
    "4h": 240,
    "6h": 360,
    "8h": 480,
    "12h": 720,
    "1d": 1440,
}
START_PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "BNBUSDT": 600.0, "SOLUSDT": 150.0}
_REGIMES = (0.4, 1.0, 2.2)  # volatility multipliers: calm, normal, wild
_SUBSTEPS = 6  # price path points inside one minute, for high/low


@dataclass
class _Walk:
    """One symbol's price process."""

    rng: random.Random
    price: float
    volatility: float
    regime: int = 1
    drift: float = 0.0

    def next_minute(self) -> tuple[float, float, float, float, float]:
        if self.rng.random() < 0.04:
            self.regime = self.rng.randrange(len(_REGIMES))
        self.drift = 0.9 * self.drift + self.rng.gauss(0.0, 0.1 * self.volatility)
        sigma = self.volatility * _REGIMES[self.regime] / _SUBSTEPS**0.5
        open_ = self.price
        high = low = open_
        price = open_
        for _ in range(_SUBSTEPS):
            price *= 1.0 + self.drift / _SUBSTEPS + self.rng.gauss(0.0, sigma)
            high, low = max(high, price), min(low, price)
        wick = abs(self.rng.gauss(0.0, 0.3 * sigma))
        self.price = price
        volume = round(self.rng.uniform(5.0, 50.0) * _REGIMES[self.regime], 3)
        return open_, high * (1 + wick), low * (1 - wick), price, volume


def _aggregate(minutes: Sequence[Candle], interval: str, minutes_per: int) -> Candle:
    first, last = minutes[0], minutes[-1]
    return Candle(
        symbol=first.symbol,
        interval=interval,
        open_time=first.open_time,
        open=first.open,
        high=max(c.high for c in minutes),
        low=min(c.low for c in minutes),
        close=last.close,
        volume=round(sum(c.volume for c in minutes), 3),
        close_time=first.open_time + minutes_per * MINUTE_MS - 1,
    )


def _round_price(price: float) -> float:
    return round(price, 2 if price >= 10 else 4)


class SimulatedMarket:
    """Implements :class:`bot.market.base.MarketFeed` with synthetic data."""

    def __init__(
        self,
        symbols: Sequence[str],
        intervals: Sequence[str],
        *,
        seed: int = 42,
        speed: float = 60.0,
        volatility: float = 0.0015,
        history: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for interval in intervals:
            if interval not in INTERVAL_MINUTES:
                allowed = ", ".join(INTERVAL_MINUTES)
                raise ConfigError(
                    f"intervals: {interval!r} cannot be simulated (allowed: {allowed})"
                )
        self.symbols = list(symbols)
        self.intervals = sorted(intervals, key=INTERVAL_MINUTES.__getitem__)
        self._speed = speed
        self._clock = clock
        self._walks = {
            s: _Walk(
                random.Random(seed * 1_000_003 + zlib.crc32(s.encode())),
                START_PRICES.get(s, 100.0),
                volatility,
            )
            for s in self.symbols
        }
        longest = max(INTERVAL_MINUTES[i] for i in self.intervals)
        history_minutes = history * longest
        now_minute = int(clock() * 1000) // (longest * MINUTE_MS) * (longest * MINUTE_MS)
        self._next_open = now_minute - history_minutes * MINUTE_MS
        self._pending: dict[tuple[str, str], list[Candle]] = {}
        self._history: dict[tuple[str, str], list[Candle]] = {}
        for _ in range(history_minutes):
            for candle in self._step():
                self._history.setdefault((candle.symbol, candle.interval), []).append(candle)

    def backfill(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        candles = self._history.get((symbol, interval), [])
        return candles[-limit:] if limit > 0 else []

    def run(self, on_candle: CandleHandler, stop: threading.Event) -> None:
        period = 60.0 / self._speed if self._speed > 0 else 0.0
        deadline = time.monotonic()
        while not stop.is_set():
            for candle in self._step():
                on_candle(candle)
            if period:
                deadline += period
                stop.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Nothing to release."""

    def _step(self) -> list[Candle]:
        """One simulated minute: the closed 1m candles, plus longer ones that close now."""
        open_time = self._next_open
        self._next_open += MINUTE_MS
        out: list[Candle] = []
        for symbol, walk in self._walks.items():
            o, h, low, c, v = walk.next_minute()
            minute = Candle(
                symbol,
                "1m",
                open_time,
                _round_price(o),
                _round_price(h),
                _round_price(low),
                _round_price(c),
                v,
                open_time + MINUTE_MS - 1,
            )
            for interval in self.intervals:
                n = INTERVAL_MINUTES[interval]
                if n == 1:
                    out.append(minute)
                    continue
                bucket = self._pending.setdefault((symbol, interval), [])
                if bucket and bucket[0].open_time // (n * MINUTE_MS) != open_time // (
                    n * MINUTE_MS
                ):
                    bucket.clear()  # started mid-bucket: drop the partial one
                bucket.append(minute)
                if (open_time + MINUTE_MS) % (n * MINUTE_MS) == 0:
                    out.append(_aggregate(bucket, interval, n))
                    bucket.clear()
        return out
