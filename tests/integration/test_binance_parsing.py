"""bot.exchange.binance.parsing: venue JSON to the bot's value objects, table by table.

Pure functions and one small state machine (the user-event mapper), so no
server is needed: the inputs are the venue's documented shapes.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.exchange.binance.parsing import (
    UserEventMapper,
    algo_order_result,
    decimal_text,
    order_result,
    symbol_filters,
)
from bot.models import OrderSide, OrderStatus, OrderType


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.001, "0.001"),
        (50000.0, "50000"),
        (1e-8, "0.00000001"),
        (0.1 + 0.2, "0.30000000000000004"),
    ],
)
def test_decimal_text_has_no_exponent(value: float, text: str) -> None:
    assert decimal_text(value) == text


ALGO = {
    "algoId": 3000000001,
    "clientAlgoId": "t-sl",
    "orderType": "STOP_MARKET",
    "symbol": "BTCUSDT",
    "side": "SELL",
    "triggerPrice": "49000",
    "closePosition": True,
    "reduceOnly": False,
}


@pytest.mark.parametrize(
    ("algo_status", "executed", "status"),
    [
        ("NEW", "0", OrderStatus.NEW),
        ("TRIGGERING", "0", OrderStatus.TRIGGERED),
        ("TRIGGERED", "0", OrderStatus.TRIGGERED),
        ("FINISHED", "0.01", OrderStatus.FILLED),
        ("FINISHED", "0", OrderStatus.EXPIRED),  # triggered, nothing filled
        ("REJECTED", "0", OrderStatus.REJECTED),
        ("CANCELED", "0", OrderStatus.CANCELED),
        ("SOMETHING_NEW", "0", OrderStatus.NEW),  # unknown counts as live: never resend over it
    ],
)
def test_algo_order_statuses(algo_status: str, executed: str, status: OrderStatus) -> None:
    parsed = algo_order_result({**ALGO, "algoStatus": algo_status, "executedQty": executed})
    assert parsed.status is status
    assert (parsed.algo_id, parsed.stop_price, parsed.close_position) == (3000000001, 49000.0, True)


def test_regular_order_fields() -> None:
    parsed = order_result(
        {
            "orderId": 8000000001,
            "symbol": "BTCUSDT",
            "status": "PARTIALLY_FILLED",
            "clientOrderId": "t-e",
            "origQty": "0.010",
            "executedQty": "0.004",
            "avgPrice": "50000.5",
            "type": "MARKET",
            "side": "BUY",
            "reduceOnly": "true",
            "updateTime": 5,
        }
    )
    assert parsed.status is OrderStatus.PARTIALLY_FILLED
    assert (parsed.quantity, parsed.filled_quantity, parsed.avg_price) == (0.01, 0.004, 50000.5)
    assert parsed.reduce_only and parsed.order_type is OrderType.MARKET


def test_symbol_filters_take_market_lot_size_and_the_percent_price_band() -> None:
    parsed = symbol_filters(
        {
            "symbol": "XUSDT",
            "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": "0.1"},
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.001",
                    "maxQty": "1000",
                    "stepSize": "0.001",
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.01",
                    "maxQty": "100",
                    "stepSize": "0.01",
                },
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.05", "multiplierDown": "0.95"},
            ],
        }
    )
    assert (parsed.step_size, parsed.min_qty, parsed.max_qty) == (0.01, 0.01, 100.0)
    assert parsed.limit_inside_band(50_000.0, OrderSide.SELL) == 48_750.0
    assert parsed.limit_inside_band(50_000.0, OrderSide.BUY) == 51_250.0


def trade(status: str, qty: str, rp: str, fee: str, *, order_id: int = 7, **extra: Any) -> dict:
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": 1,
        "o": {
            "s": "BTCUSDT", "c": "t-e", "S": "SELL", "o": "MARKET", "ot": "MARKET", "x": "TRADE",
            "X": status, "i": order_id, "z": qty, "ap": "49000", "rp": rp, "n": fee, **extra,
        },
    }  # fmt: skip


def test_a_fill_in_several_trades_reports_the_sums_once_filled() -> None:
    mapper = UserEventMapper()
    first = mapper.map(trade("PARTIALLY_FILLED", "0.004", "-4.0", "0.0784"))
    second = mapper.map(trade("PARTIALLY_FILLED", "0.007", "-3.0", "0.0588"))
    last = mapper.map(trade("FILLED", "0.010", "-3.0", "0.0588"))
    assert first is not None and second is not None and last is not None
    assert last.status is OrderStatus.FILLED
    assert last.realized_pnl == pytest.approx(-10.0)
    assert last.commission == pytest.approx(0.196)
    assert last.filled_quantity == 0.01
    # the next order starts from zero
    again = mapper.map(trade("FILLED", "0.010", "1.0", "0.1", order_id=8))
    assert again is not None and (again.realized_pnl, again.commission) == (1.0, 0.1)


def algo_event(status: str, **extra: Any) -> dict:
    return {
        "e": "ALGO_UPDATE",
        "E": 2,
        "o": {
            "caid": "t-sl", "aid": 3000000001, "o": "STOP_MARKET", "s": "BTCUSDT", "S": "SELL",
            "X": status, "ai": "", "ap": "0", "aq": "0", **extra,
        },
    }  # fmt: skip


def test_a_triggered_stop_reports_under_the_stop_loss_client_id() -> None:
    mapper = UserEventMapper()
    assert mapper.map(algo_event("TRIGGERING", ai="9")) is None
    triggered = mapper.map(algo_event("TRIGGERED", ai="9"))
    assert triggered is not None and triggered.status is OrderStatus.TRIGGERED
    filled = mapper.map(trade("FILLED", "0.010", "-10", "0.2", order_id=9, c="x123"))
    assert filled is not None
    assert (filled.client_order_id, filled.order_type) == ("t-sl", OrderType.STOP_MARKET)
    assert mapper.map(algo_event("FINISHED", ai="9", aq="0.010")) is None  # told by the fill


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ([algo_event("REJECTED", rm="Margin is insufficient.")], OrderStatus.REJECTED),
        ([algo_event("FINISHED", ai="9")], OrderStatus.EXPIRED),
    ],
    ids=["rejected", "finished-unfilled"],
)
def test_a_stop_that_did_not_fill_is_reported_as_such(
    events: list[dict], status: OrderStatus
) -> None:
    mapper = UserEventMapper()
    updates = [mapper.map(e) for e in events]
    assert updates[-1] is not None and updates[-1].status is status
    assert updates[-1].client_order_id == "t-sl"


def test_the_triggered_market_order_expiring_is_reported_under_the_stop() -> None:
    mapper = UserEventMapper()
    mapper.map(algo_event("TRIGGERED", ai="9"))
    expired = mapper.map(
        {"e": "ORDER_TRADE_UPDATE", "E": 3, "o": {"s": "BTCUSDT", "c": "x9", "S": "SELL",
         "o": "MARKET", "ot": "STOP_MARKET", "x": "EXPIRED", "X": "EXPIRED", "i": 9, "z": "0"}}
    )  # fmt: skip
    assert expired is not None
    assert (expired.client_order_id, expired.status) == ("t-sl", OrderStatus.EXPIRED)
