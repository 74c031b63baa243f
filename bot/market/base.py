"""The market-data port: where closed candles come from.

Implementations: ``sim.SimulatedMarket`` (synthetic, deterministic per
seed), ``replay.ReplayMarket`` (Binance kline CSV dumps) and
``binance`` (the venue's public kline stream; no keys). The composition root
builds the Binance feed as ``BinanceMarketFeed(symbols=..., intervals=...,
testnet=..., base_url=..., ws_url=...)`` where the URLs (scheme and host
only) override the venue defaults when not ``None``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from bot.models import Candle

CandleHandler = Callable[[Candle], None]


class MarketFeed(Protocol):
    """Candles for a fixed set of symbols and intervals, chosen at construction."""

    def backfill(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        """The latest ``limit`` closed candles before the stream starts, oldest first."""
        ...

    def run(self, on_candle: CandleHandler, stop: threading.Event) -> None:
        """Deliver candles to ``on_candle`` until ``stop`` is set or the data ends.

        Blocks the calling thread. Candles arrive in time order per
        symbol/interval; ``closed=False`` marks an in-progress update (a feed
        may send only closed candles). Must return within about a second of
        ``stop`` being set. Transient stream errors are the feed's to recover
        (reconnect); it raises :class:`~bot.errors.ExchangeError` only when it
        cannot continue.
        """
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...
