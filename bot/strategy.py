"""Strategies: closed candles in, a :class:`~bot.models.Signal` (or nothing) out.

Pure functions of the candle history: no I/O, no clock, no state between
calls, so the same candles always give the same signal and any strategy can
be swapped in through the :class:`Strategy` protocol.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.models import Candle, Signal, SignalType


class Strategy(Protocol):
    """Turns the closed-candle history of one symbol/interval into a signal."""

    @property
    def name(self) -> str: ...

    @property
    def history_needed(self) -> int:
        """Closed candles needed before a signal can be produced."""
        ...

    def evaluate(self, candles: Sequence[Candle]) -> Signal | None:
        """Signal on the last candle of ``candles`` (oldest first), or ``None``."""
        ...


def ema(values: Sequence[float], period: int) -> list[float]:
    """Exponential moving average, seeded with the simple average of the first ``period``."""
    if len(values) < period:
        return []
    alpha = 2.0 / (period + 1)
    current = sum(values[:period]) / period
    out = [current]
    for value in values[period:]:
        current += alpha * (value - current)
        out.append(current)
    return out


def average_true_range(candles: Sequence[Candle], period: int) -> float:
    """Wilder's ATR over the last candles; 0.0 when there are too few."""
    if len(candles) <= period:
        return 0.0
    ranges = [
        max(c.high - c.low, abs(c.high - prev.close), abs(c.low - prev.close))
        for prev, c in itertools.pairwise(candles)
    ]
    atr = sum(ranges[:period]) / period
    for tr in ranges[period:]:
        atr += (tr - atr) / period
    return atr


@dataclass(frozen=True, slots=True)
class EmaCrossStrategy:
    """Fast/slow EMA crossover; take-profit and stop-loss at multiples of ATR.

    LONG when the fast EMA crosses above the slow one on the last candle,
    SHORT when it crosses below. Entry is the close; TP/SL are
    ``entry ± take_profit_atr × ATR`` and ``entry ∓ stop_loss_atr × ATR``.
    Only the last ``history_needed`` candles are read, so the cost per
    candle is bounded.
    """

    fast_period: int = 3
    slow_period: int = 8
    atr_period: int = 14
    take_profit_atr: float = 4.0
    stop_loss_atr: float = 2.0
    name: str = "ema_cross"

    @property
    def history_needed(self) -> int:
        return max(self.slow_period * 3, self.atr_period * 2) + 2

    def evaluate(self, candles: Sequence[Candle]) -> Signal | None:
        window = candles[-self.history_needed :]
        if len(window) < self.history_needed:
            return None
        closes = [c.close for c in window]
        fast = ema(closes, self.fast_period)
        slow = ema(closes, self.slow_period)
        before = fast[-2] - slow[-2]
        now = fast[-1] - slow[-1]
        if before <= 0 < now:
            signal_type = SignalType.LONG
        elif before >= 0 > now:
            signal_type = SignalType.SHORT
        else:
            return None
        last = window[-1]
        atr = average_true_range(window, self.atr_period)
        direction = 1.0 if signal_type is SignalType.LONG else -1.0
        return Signal(
            symbol=last.symbol,
            signal_type=signal_type,
            entry=last.close,
            take_profit=last.close + direction * self.take_profit_atr * atr,
            stop_loss=last.close - direction * self.stop_loss_atr * atr,
            interval=last.interval,
            strategy=self.name,
            close_price=last.close,
            candle_close_time=last.close_time,
        )
