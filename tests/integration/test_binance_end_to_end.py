"""The whole testnet-mode path against the fake venue, candle to audited trade and back.

BinanceMarketFeed (kline websocket) → TradingEngine → RiskManager →
OrderExecutionManager → BinanceExchange → FakeBinance; the stop-loss fill
comes back over the user-data stream and the engine cancels the sibling.
The strategy is a stub that signals once on the first closed candle, so the
test is about the plumbing, not about trading.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from bot.engine import TradingEngine
from bot.exchange.binance import BinanceExchange
from bot.execution import OrderExecutionManager, RetryPolicy
from bot.market.binance import BinanceMarketFeed
from bot.models import Candle, MarginType, Signal, SignalType
from bot.risk import RiskLimits, RiskManager
from tests.fakebinance import API_KEY, API_SECRET, FakeBinance, Fault
from tests.integration.conftest import (
    STREAM_OPTIONS,
    make_exchange,
    raw_trail_text,
    read_trail,
)
from tests.waiting import wait_until


class SignalOnce:
    """Goes long on the first closed candle it evaluates, with a 2 % stop and a 4 % target."""

    history_needed = 1

    def __init__(self) -> None:
        self.fired = False

    def evaluate(self, candles: Sequence[Candle]) -> Signal | None:
        if self.fired:
            return None
        self.fired = True
        last = candles[-1]
        return Signal(
            symbol=last.symbol,
            signal_type=SignalType.LONG,
            entry=last.close,
            take_profit=last.close * 1.04,
            stop_loss=last.close * 0.98,
            interval=last.interval,
            strategy="signal_once",
            close_price=last.close,
            candle_close_time=last.close_time,
        )


class Running:
    def __init__(self, feed: BinanceMarketFeed, engine: TradingEngine) -> None:
        self.stop = threading.Event()
        self._thread = threading.Thread(target=feed.run, args=(engine.on_candle, self.stop))

    def __enter__(self) -> Running:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def bot(
    fake: FakeBinance, audit: AuditLogger
) -> Iterator[tuple[TradingEngine, BinanceExchange, BinanceMarketFeed]]:
    exchange = make_exchange(fake, audit)
    feed = BinanceMarketFeed(
        symbols=["BTCUSDT"],
        intervals=["1m"],
        base_url=fake.rest_url,
        ws_url=fake.ws_url,
        audit=audit,
        request_timeout=1.0,
        stream_options=STREAM_OPTIONS,
    )
    execution = OrderExecutionManager(
        exchange,
        audit,
        leverage=5,
        margin_type=MarginType.ISOLATED,
        retry=RetryPolicy(max_attempts=3, backoff_base=0.01),
        sleep=lambda seconds: None,
    )
    engine = TradingEngine(
        strategy=SignalOnce(),
        risk=RiskManager(
            RiskLimits(risk_percent=1.0, max_position_percent=25.0, leverage=5), audit
        ),
        execution=execution,
        audit=audit,
    )
    exchange.sync_clock()
    execution.configure_symbol("BTCUSDT")
    exchange.subscribe_order_updates(engine.on_order_update)
    engine.seed_history(feed.backfill("BTCUSDT", "1m", 20))
    feed.start()
    assert exchange.streams.wait_connected("user_data_stream", 10)
    assert feed.streams.wait_connected("kline_stream", 10)
    try:
        yield engine, exchange, feed
    finally:
        feed.close()
        exchange.close()


def flow(records: list[dict[str, Any]], trace_id: str) -> list[str]:
    quiet = {"position_query", "balance_query", "api_error", "retry_attempt", "rate_limit"}
    return [
        r["event_type"]
        for r in records
        if r.get("trace_id") == trace_id and r["event_type"] not in quiet
    ]


def test_signal_to_trade_to_stop_loss_fill_over_the_venue(
    fake: FakeBinance, bot: Any, audit: AuditLogger, audit_dir: Path
) -> None:
    engine, _, feed = bot
    with Running(feed, engine):
        fake.close_kline("BTCUSDT", "1m", "50000")
        wait_until(lambda: engine.stats.trades_executed == 1, what="the trade")
        fake.set_price("BTCUSDT", "48900")  # through the 49 000 stop
        wait_until(lambda: fake.position_amount("BTCUSDT") == 0, what="the stop-loss fill")
        wait_until(
            lambda: any(r["event_type"] == "order_cancelled" for r in read_trail(audit_dir)),
            what="the take-profit to be cancelled",
        )

    records = read_trail(audit_dir)
    trace_id = next(r["trace_id"] for r in records if r["event_type"] == "trade_executed")
    kinds = flow(records, trace_id)
    assert kinds[:7] == [
        "signal_processing",
        "risk_validation",
        "position_size_calculated",
        "order_placed",
        "order_placed",
        "order_placed",
        "trade_executed",
    ]
    assert sorted(kinds[7:]) == ["order_cancelled", "order_filled", "order_filled"]
    sl_fill = next(
        r
        for r in records
        if r["event_type"] == "order_filled" and r["additional_data"]["role"] == "sl"
    )
    assert sl_fill["response"]["order_type"] == "STOP_MARKET"
    assert fake.venue.open_algo_orders({"symbol": "BTCUSDT"}) == []
    text = raw_trail_text(audit_dir)
    assert API_KEY not in text and API_SECRET not in text


def test_unplaceable_stop_loss_ends_in_trade_execution_failed_with_a_flat_position(
    fake: FakeBinance, bot: Any, audit_dir: Path
) -> None:
    engine, _, feed = bot
    fake.inject(
        "POST /fapi/v1/algoOrder", Fault.server_error(502), match={"type": "STOP_MARKET"}, times=10
    )
    with Running(feed, engine):
        fake.close_kline("BTCUSDT", "1m", "50000")
        wait_until(lambda: engine.stats.trades_failed == 1, what="the failed trade")

    records = read_trail(audit_dir)
    failed = next(r for r in records if r["event_type"] == "trade_execution_failed")
    assert failed["additional_data"]["protective_close"] is True
    assert failed["additional_data"]["position_left_open"] is False
    assert "protective close" in failed["additional_data"]["error_message"]
    assert fake.position_amount("BTCUSDT") == 0
    assert fake.venue.open_algo_orders({"symbol": "BTCUSDT"}) == []
    # What the user stream reports later (fills, cancels) may land after the verdict.
    synchronous = [r for r in records if r["operation"] != "on_order_update"]
    kinds = flow(synchronous, failed["trace_id"])
    assert kinds[:3] == ["signal_processing", "risk_validation", "position_size_calculated"]
    assert kinds[-1] == "trade_execution_failed"
    assert "order_placed" in kinds  # the entry, the take-profit and the protective close
