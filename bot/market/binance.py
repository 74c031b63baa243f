"""BinanceMarketFeed: closed candles from Binance USD-M futures' public kline stream.

For ``--market binance``; needs no keys. History comes from REST klines
(``/fapi/v1/klines``, the still-open candle dropped); live candles from one
combined websocket stream (``<symbol>@kline_<interval>`` for every pair),
run by the same :class:`bot.exchange.binance.StreamSupervisor` the exchange
adapter uses, so restarts after the SDK gives up, queue overflows and silent
streams are handled (and audited) the same way.

Only closed candles are delivered, each exactly once and in time order per
symbol/interval: after every (re)connect the feed re-reads recent REST
klines and fills the gap the outage left, and anything not newer than the
last delivered candle is dropped. ``BINANCE_FUTURES_URL``/``BINANCE_WS_URL``
reach it as ``base_url``/``ws_url`` (scheme and host only).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from binance.client import Client

from bot.audit import AuditLogger
from bot.exchange.binance import (
    LIVE_REST_URL,
    LIVE_WS_URL,
    TESTNET_REST_URL,
    TESTNET_WS_URL,
    StreamSpec,
    StreamSupervisor,
    candle_from_event,
    closed_klines,
    translate_errors,
)
from bot.market.base import CandleHandler
from bot.models import Candle

GAP_FILL_LIMIT = 100  # candles re-read per symbol/interval after a (re)connect


class BinanceMarketFeed:
    """The :class:`bot.market.base.MarketFeed` port on Binance's public kline stream."""

    def __init__(
        self,
        *,
        symbols: Sequence[str],
        intervals: Sequence[str],
        testnet: bool = False,
        base_url: str | None = None,
        ws_url: str | None = None,
        audit: AuditLogger | None = None,
        request_timeout: float = 10.0,
        stale_after: float | None = 120.0,
        stream_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.symbols = [s.upper() for s in symbols]
        self.intervals = list(intervals)
        rest = (base_url or (TESTNET_REST_URL if testnet else LIVE_REST_URL)).rstrip("/")
        ws = (ws_url or (TESTNET_WS_URL if testnet else LIVE_WS_URL)).rstrip("/")
        self._client = Client(None, None, testnet=testnet, ping=False)
        self._client.FUTURES_URL = self._client.FUTURES_TESTNET_URL = rest + "/fapi"
        self._client.REQUEST_TIMEOUT = request_timeout
        self._streams = StreamSupervisor(
            rest_url=rest,
            ws_url=ws,
            testnet=testnet,
            audit=audit,
            request_timeout=request_timeout,
            **dict(stream_options or {}),
        )
        self._stale_after = stale_after
        self._candles: queue.Queue[Candle] = queue.Queue()
        self._last: dict[tuple[str, str], int] = {}  # last delivered open_time
        self._lock = threading.Lock()
        self._started = False

    @property
    def streams(self) -> StreamSupervisor:
        return self._streams

    def _server_now(self) -> int:
        with translate_errors("server_time"):
            return int(self._client.futures_time()["serverTime"])

    def backfill(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        candles = closed_klines(self._client, symbol, interval, limit, self._server_now())
        if candles:
            with self._lock:
                key = (symbol, interval)
                self._last[key] = max(self._last.get(key, 0), candles[-1].open_time)
        return candles

    def start(self) -> None:
        """Open the stream (``run`` does it too); idempotent."""
        if self._started:
            return
        self._started = True
        streams = [f"{s.lower()}@kline_{i}" for s in self.symbols for i in self.intervals]
        self._streams.add(
            StreamSpec(
                name="kline_stream",
                open=lambda bsm: bsm.futures_multiplex_socket(streams=streams),
                on_message=self._on_event,
                on_connected=self._fill_gap,
                stale_after=self._stale_after,
            )
        )

    def run(self, on_candle: CandleHandler, stop: threading.Event) -> None:
        self.start()
        while not stop.is_set():
            try:
                candle = self._candles.get(timeout=0.2)
            except queue.Empty:
                continue
            key = (candle.symbol, candle.interval)
            with self._lock:
                if candle.open_time <= self._last.get(key, -1):
                    continue  # already delivered (backfill, gap fill or a replayed event)
                self._last[key] = candle.open_time
            on_candle(candle)

    def close(self) -> None:
        self._streams.close()
        with contextlib.suppress(Exception):
            self._client.close_connection()

    # ------------------------------------------------------------ internals

    def _on_event(self, event: dict[str, Any]) -> None:
        candle = candle_from_event(event)
        if candle is not None and candle.closed:
            self._candles.put(candle)

    def _fill_gap(self) -> None:
        """After a (re)connect: queue closed candles the stream missed while down."""
        with self._lock:
            known = dict(self._last)
        if not known:
            return
        now = self._server_now()
        for (symbol, interval), last in known.items():
            for candle in closed_klines(self._client, symbol, interval, GAP_FILL_LIMIT, now):
                if candle.open_time > last:
                    self._candles.put(candle)
