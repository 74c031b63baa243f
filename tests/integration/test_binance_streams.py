"""Websockets: kline feed, user-data fills, and the stream supervisor's restarts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from bot.exchange.binance import BinanceExchange, StreamSpec, StreamSupervisor
from bot.market.binance import BinanceMarketFeed
from bot.models import Candle, OrderSide, OrderStatus, OrderType, OrderUpdate
from tests.fakebinance import FakeBinance
from tests.integration.conftest import STREAM_OPTIONS, make_exchange, read_trail
from tests.waiting import wait_until


class CandleCollector:
    """Runs ``feed.run`` on a thread and collects what it delivers."""

    def __init__(self, feed: BinanceMarketFeed) -> None:
        self.candles: list[Candle] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=feed.run, args=(self.candles.append, self.stop))

    def __enter__(self) -> CandleCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "feed.run did not return after stop was set"


@pytest.fixture
def feed(fake: FakeBinance, audit: AuditLogger) -> Iterator[BinanceMarketFeed]:
    market = BinanceMarketFeed(
        symbols=["BTCUSDT"],
        intervals=["1m", "5m"],
        base_url=fake.rest_url,
        ws_url=fake.ws_url,
        audit=audit,
        request_timeout=1.0,
        stream_options=STREAM_OPTIONS,
    )
    try:
        yield market
    finally:
        market.close()


def stream_errors(audit_dir: Path, operation: str) -> list[dict[str, Any]]:
    return [
        r
        for r in read_trail(audit_dir)
        if r["event_type"] == "api_error" and r["operation"] == operation
    ]


# ------------------------------------------------------------------ kline feed


def test_backfill_is_closed_candles_oldest_first(
    fake: FakeBinance, feed: BinanceMarketFeed
) -> None:
    candles = feed.backfill("BTCUSDT", "1m", 100)

    assert len(candles) == 100
    assert all(c.closed for c in candles)
    assert [c.open_time for c in candles] == sorted(c.open_time for c in candles)
    assert candles[-1].close_time < fake.now_ms()  # the still-open candle is left out
    assert candles[-1].open_time + 60_000 == fake.klines.current("BTCUSDT", "1m").open_time


def test_feed_backfills_then_streams_closed_candles_only(
    fake: FakeBinance, feed: BinanceMarketFeed
) -> None:
    history = feed.backfill("BTCUSDT", "1m", 100)
    feed.start()
    assert feed.streams.wait_connected("kline_stream", 10)

    with CandleCollector(feed) as got:
        fake.tick_kline("BTCUSDT", "1m", "50050")  # in progress: not delivered
        fake.close_kline("BTCUSDT", "1m", "50100", high="50200", low="49900")
        wait_until(lambda: got.candles, what="the closed candle")
        fake.close_kline("BTCUSDT", "5m", "50300")
        wait_until(lambda: len(got.candles) == 2, what="the 5m candle")

    one, five = got.candles
    assert len(history) == 100 and all(c.closed for c in history)
    assert (one.symbol, one.interval, one.closed) == ("BTCUSDT", "1m", True)
    assert (one.close, one.low) == (50_100.0, 49_900.0)
    assert one.high == max(50_200.0, one.open)
    assert one.open_time == history[-1].open_time + 60_000
    assert (five.interval, five.close) == ("5m", 50_300.0)


def test_feed_restarts_the_stream_after_the_sdk_gives_up_and_fills_the_gap(
    fake: FakeBinance, feed: BinanceMarketFeed, audit_dir: Path
) -> None:
    feed.backfill("BTCUSDT", "1m", 10)
    feed.start()
    assert feed.streams.wait_connected("kline_stream", 10)

    with CandleCollector(feed) as got:
        fake.refuse_websockets = True
        fake.drop_websockets()
        wait_until(
            lambda: any(
                r["error"]["error_type"] == "BinanceWebsocketUnableToConnect"
                for r in stream_errors(audit_dir, "kline_stream")
            ),
            timeout=15,
            what="the SDK to give up and the restart to be audited",
        )
        missed = fake.close_kline("BTCUSDT", "1m", "50500")  # nobody is connected
        fake.clock_skew_ms = 120_000  # time passed: the missed candle is history now
        fake.refuse_websockets = False
        wait_until(lambda: got.candles, timeout=15, what="the gap to be filled")
        assert feed.streams.wait_connected("kline_stream", 10)
        fake.close_kline("BTCUSDT", "1m", "50600")
        wait_until(lambda: len(got.candles) == 2, what="live candles after the restart")

    assert [c.open_time for c in got.candles] == [
        missed["k"]["t"],
        missed["k"]["t"] + 60_000,
    ]
    assert [c.close for c in got.candles] == [50_500.0, 50_600.0]
    restart = stream_errors(audit_dir, "kline_stream")[0]["error"]
    assert restart["action"] == "restart_stream"


def test_sdk_queue_overflow_restarts_the_stream_and_candles_keep_coming(
    fake: FakeBinance, audit: AuditLogger, audit_dir: Path
) -> None:
    small = BinanceMarketFeed(
        symbols=["BTCUSDT"],
        intervals=["1m"],
        base_url=fake.rest_url,
        ws_url=fake.ws_url,
        audit=audit,
        request_timeout=1.0,
        stream_options={**STREAM_OPTIONS, "max_queue_size": 3},
    )
    try:
        small.start()
        assert small.streams.wait_connected("kline_stream", 10)
        with CandleCollector(small) as got:
            fake.burst("BTCUSDT", "1m", 5000)  # far faster than the SDK queue is drained
            wait_until(lambda: small.streams.restarts["kline_stream"] >= 1, what="a restart")
            wait_until(lambda: fake.websocket_count() == 1, what="the stream to reconnect")
            assert small.streams.wait_connected("kline_stream", 10)
            fake.close_kline("BTCUSDT", "1m", "50100")
            wait_until(lambda: got.candles, what="a candle after the restart")
    finally:
        small.close()
    kinds = [e["error"]["error_type"] for e in stream_errors(audit_dir, "kline_stream")]
    assert "BinanceWebsocketQueueOverflow" in kinds
    assert [c.close for c in got.candles] == [50_100.0]


# ------------------------------------------------------------------ user data stream


@pytest.fixture
def updates(exchange: BinanceExchange) -> list[OrderUpdate]:
    received: list[OrderUpdate] = []
    exchange.subscribe_order_updates(received.append)
    assert exchange.streams.wait_connected("user_data_stream", 10)
    return received


def find(updates: list[OrderUpdate], cid: str, status: OrderStatus) -> OrderUpdate | None:
    return next((u for u in list(updates) if u.client_order_id == cid and u.status is status), None)


def test_user_stream_reports_entry_fill_stop_loss_fill_and_sibling_cancel(
    fake: FakeBinance, exchange: BinanceExchange, updates: list[OrderUpdate]
) -> None:
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "u1-e")
    exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.TAKE_PROFIT_MARKET, 52_000.0, "u1-tp"
    )
    exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 49_000.0, "u1-sl"
    )
    fake.set_price("BTCUSDT", "48900")
    stop = wait_until(lambda: find(updates, "u1-sl", OrderStatus.FILLED), what="the SL fill")
    exchange.cancel_order("BTCUSDT", "u1-tp")
    wait_until(lambda: find(updates, "u1-tp", OrderStatus.CANCELED), what="the TP cancel")

    entry = find(updates, "u1-e", OrderStatus.FILLED)
    assert entry is not None and (entry.filled_quantity, entry.avg_price) == (0.01, 50_000.0)
    assert entry.order_type is OrderType.MARKET and entry.commission > 0
    assert stop.order_type is OrderType.STOP_MARKET and stop.algo_id is not None
    assert (stop.side, stop.filled_quantity, stop.avg_price) == (OrderSide.SELL, 0.01, 48_900.0)
    assert stop.realized_pnl == pytest.approx(-11.0)
    fills = [u for u in updates if u.status is OrderStatus.FILLED]
    assert sorted(u.client_order_id for u in fills) == ["u1-e", "u1-sl"]  # each fill once


def test_expired_listen_key_restarts_the_user_stream_with_a_new_key(
    fake: FakeBinance, exchange: BinanceExchange, updates: list[OrderUpdate], audit_dir: Path
) -> None:
    fake.expire_listen_keys()
    wait_until(lambda: exchange.streams.restarts["user_data_stream"] >= 1, what="a restart")
    assert exchange.streams.wait_connected("user_data_stream", 10)
    wait_until(lambda: fake.websocket_count(user=True) == 1, what="one user stream")

    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "u2-e")

    wait_until(lambda: find(updates, "u2-e", OrderStatus.FILLED), what="the fill after restart")
    error = stream_errors(audit_dir, "user_data_stream")[0]["error"]
    assert error["error_type"] == "listenKeyExpired"
    assert len(fake.requests_to("POST /fapi/v1/listenKey")) == 2


def test_listen_key_is_kept_alive(fake: FakeBinance, audit: AuditLogger) -> None:
    adapter = make_exchange(fake, audit, keepalive_interval=0.1)
    try:
        adapter.subscribe_order_updates(lambda update: None)
        wait_until(lambda: fake.keepalives >= 2, what="two keepalives")
    finally:
        adapter.close()
    assert all(r.status == 200 for r in fake.requests_to("PUT /fapi/v1/listenKey"))


def test_closing_the_adapter_stops_its_threads(fake: FakeBinance, audit: AuditLogger) -> None:
    before = {t.name for t in threading.enumerate()}
    adapter = make_exchange(fake, audit)
    adapter.subscribe_order_updates(lambda update: None)
    assert adapter.streams.wait_connected("user_data_stream", 10)

    adapter.close()

    leftover = {t.name for t in threading.enumerate()} - before
    assert not leftover & {"binance-streams", "binance-order-updates"}
    wait_until(lambda: fake.websocket_count() == 0, what="the socket to close")


# ------------------------------------------------------------------ supervisor, in isolation


class ScriptedSocket:
    """Stands in for an SDK socket: replays messages, then idles like a quiet stream."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = list(messages)
        self.MAX_RECONNECTS = 5
        self.TIMEOUT = 10.0

    async def __aenter__(self) -> ScriptedSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def recv(self) -> dict[str, Any]:
        if self.messages:
            return self.messages.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "error_type", ["BinanceWebsocketQueueOverflow", "BinanceWebsocketUnableToConnect"]
)
def test_supervisor_restarts_once_per_fatal_error_and_audits_it(
    audit: AuditLogger, audit_dir: Path, error_type: str
) -> None:
    error = {"e": "error", "type": error_type, "m": "gave up"}
    scripts = [
        # the SDK's threaded manager would repeat the error forever: one restart is enough
        ScriptedSocket([{"n": 1}, error, error, error]),
        ScriptedSocket([{"e": "error", "type": "BinanceWebsocketClosed", "m": "x"}, {"n": 2}]),
    ]
    opened: list[ScriptedSocket] = []
    received: list[dict[str, Any]] = []

    def open_socket(manager: Any) -> ScriptedSocket:
        socket = scripts[len(opened)] if len(opened) < len(scripts) else ScriptedSocket([])
        opened.append(socket)
        return socket

    supervisor = StreamSupervisor(
        rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9", audit=audit, **STREAM_OPTIONS
    )
    try:
        supervisor.add(StreamSpec("test_stream", open_socket, received.append))
        wait_until(lambda: len(received) == 2, what="messages from both sockets")
    finally:
        supervisor.close()

    assert received == [{"n": 1}, {"n": 2}]  # transient SDK reconnect notices are not data
    assert supervisor.restarts["test_stream"] == 1 and len(opened) == 2
    errors = stream_errors(audit_dir, "test_stream")
    assert [e["error"]["error_type"] for e in errors] == [error_type]


def test_supervisor_restarts_a_silent_stream(audit: AuditLogger, audit_dir: Path) -> None:
    opened: list[ScriptedSocket] = []

    def open_socket(manager: Any) -> ScriptedSocket:
        opened.append(ScriptedSocket([{"n": len(opened)}]))
        return opened[-1]

    supervisor = StreamSupervisor(
        rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9", audit=audit, **STREAM_OPTIONS
    )
    try:
        supervisor.add(StreamSpec("quiet", open_socket, lambda m: None, stale_after=0.2))
        wait_until(lambda: len(opened) >= 3, what="restarts of the silent stream")
    finally:
        supervisor.close()
    assert stream_errors(audit_dir, "quiet")[0]["error"]["error_type"] == "BinanceStreamStale"
