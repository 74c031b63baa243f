"""The event flows of SPEC §6, read back from the audit files the engine wrote."""

from __future__ import annotations

from bot.errors import TemporaryExchangeError, VenueRejectedError
from bot.models import OrderType, SignalType

from .conftest import (
    CAPPED,
    NORMAL,
    REJECTED,
    TIGHT_STOP,
    WIDE_STOP,
    Rig,
    candle,
    flow,
    is_stop_loss,
)

LONG, SHORT = SignalType.LONG, SignalType.SHORT


def test_a_signal_with_a_wide_stop_follows_the_normal_flow(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))

    trace_id, events = rig.only_trace()
    assert flow(events) == NORMAL
    placed = [e for e in events if e["event_type"] == "order_placed"]
    assert [e["order_data"]["order_type"] for e in placed] == [
        "MARKET",
        "TAKE_PROFIT_MARKET",
        "STOP_MARKET",
    ]
    assert [e["order_data"]["side"] for e in placed] == ["BUY", "SELL", "SELL"]
    assert [e["order_data"]["client_order_id"] for e in placed] == [
        f"{trace_id}-e",
        f"{trace_id}-tp",
        f"{trace_id}-sl",
    ]
    executed = events[-1]["additional_data"]
    assert executed["signal_type"] == "LONG"
    assert executed["tp_sl_count"] == 2
    assert executed["quantity"] > 0
    assert executed["leverage"] == 10
    assert executed["entry_order_id"] == placed[0]["response"]["order_id"]


def test_signal_processing_carries_the_signal(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (SHORT, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))

    _, events = rig.only_trace()
    data = events[0]["additional_data"]
    assert events[0]["event_type"] == "signal_processing"
    assert data["signal_generated"] is True
    assert data["signal_type"] == "SHORT"
    assert data["interval"] == "1m"
    assert data["close_price"] == 50_000.0
    assert data["entry_price"] == 50_000.0
    assert data["take_profit"] < 50_000.0 < data["stop_loss"]
    assert data["strategy"] == "scripted"


def test_a_signal_with_a_tight_stop_is_capped_then_traded(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (LONG, TIGHT_STOP, 0.01)
    rig.feed(candle(50_000.0))

    _, events = rig.only_trace()
    assert flow(events) == CAPPED
    capped = next(e for e in events if e["event_type"] == "position_size_capped")
    data = capped["additional_data"]
    assert data["capped_quantity"] < data["requested_quantity"]
    assert data["max_position_percent"] == 20.0
    assert data["leverage"] == 10
    assert data["account_balance"] == 10_000.0
    # 20 % of 10 000 as margin at 10x is 20 000 notional: 0.4 BTC at 50 000.
    assert data["capped_quantity"] == 0.4


def test_a_second_signal_while_in_a_position_is_rejected(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.strategy.plan[50_100.0] = (SHORT, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0), candle(50_100.0, minute=1))

    flows = [flow(events) for events in rig.traces().values()]
    assert flows == [NORMAL, REJECTED]
    rejection = rig.records()[-1]
    assert rejection["event_type"] == "risk_rejection"
    assert rejection["error"]["reason"] == "existing_position"
    assert rejection["error"]["validation_failed"] == "no_position"
    assert rejection["error"]["message"]
    assert rejection["order_data"]["signal_type"] == "SHORT"


def test_a_long_signal_with_take_profit_below_entry_is_rejected(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, -0.01)
    rig.feed(candle(50_000.0))

    _, events = rig.only_trace()
    assert flow(events) == REJECTED
    assert events[-1]["error"]["reason"] == "invalid_take_profit"


def test_an_entry_refused_by_the_venue_is_a_failed_trade_with_the_venue_code(rig: Rig) -> None:
    rig.exchange.fail("place_market_order", VenueRejectedError(-2019, "Margin is insufficient."))
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))

    _, events = rig.only_trace()
    assert flow(events) == [
        "signal_processing",
        "risk_validation",
        "position_size_calculated",
        "order_rejected",
        "trade_execution_failed",
    ]
    rejected = events[-2]
    assert rejected["order_data"]["order_type"] == "MARKET"
    assert rejected["order_data"]["side"] == "BUY"
    assert rejected["error"]["error_code"] == -2019
    assert rejected["error"]["error_message"] == "Margin is insufficient."
    failed = events[-1]["additional_data"]
    assert failed["signal_type"] == "LONG"
    assert failed["entry_price"] == 50_000.0
    assert failed["error_type"] == "VenueRejectedError"
    assert "Margin is insufficient." in failed["error_message"]
    assert not rig.paper.position("BTCUSDT").is_open


def test_a_rejected_stop_loss_closes_the_position_at_market(rig: Rig) -> None:
    rig.exchange.fail(
        "place_conditional_order",
        VenueRejectedError(-2021, "Order would immediately trigger."),
        when=is_stop_loss,
    )
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))

    trace_id, events = rig.only_trace()
    assert flow(events) == [
        "signal_processing",
        "risk_validation",
        "position_size_calculated",
        "order_placed",  # entry
        "order_placed",  # take-profit
        "order_rejected",  # stop-loss
        "order_placed",  # protective close, first: no second without a stop is wasted
        "order_cancelled",  # the take-profit, no longer wanted
        "trade_execution_failed",
    ]
    close = events[-3]
    assert close["operation"] == "close_position"
    assert close["order_data"]["client_order_id"] == f"{trace_id}-x"
    assert close["order_data"]["reduce_only"] is True
    failed = events[-1]["additional_data"]
    assert "protective close" in failed["error_message"]
    assert failed["protective_close"] is True
    assert failed["position_left_open"] is False
    assert not rig.paper.position("BTCUSDT").is_open
    assert rig.paper._state.conditionals == {}

    rig.feed(candle(50_000.0, minute=1))  # the venue's own cancel event arrives later
    later = [e["event_type"] for e in rig.traces()[trace_id]]
    assert later.count("order_cancelled") == 1, "the unwind's cancel is audited once"


def test_a_stop_loss_failing_on_every_retry_also_ends_in_a_protective_close(rig: Rig) -> None:
    outage = [TemporaryExchangeError("502 Bad Gateway") for _ in range(3)]
    rig.exchange.fail("place_conditional_order", *outage, when=is_stop_loss)
    rig.exchange.fail("query_order", TemporaryExchangeError("502"), TemporaryExchangeError("502"))
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))

    _, events = rig.only_trace()
    types = [e["event_type"] for e in events]
    assert types.count("retry_attempt") >= 2
    assert "api_error" in types
    assert flow(events)[-3:] == ["order_placed", "order_cancelled", "trade_execution_failed"]
    assert not rig.paper.position("BTCUSDT").is_open
    assert len(rig.orders_with_id(events[0]["trace_id"] + "-sl")) == 0


def test_take_profit_fill_is_traced_and_the_stop_loss_cancelled(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))
    rig.feed(candle(51_000.0, minute=1, high=52_500.0))

    trace_id, events = rig.only_trace()
    done = next(i for i, e in enumerate(events) if e["event_type"] == "trade_executed")
    after = events[done + 1 :]
    kinds = [(e["event_type"], e["additional_data"].get("role")) for e in after]
    assert kinds == [("order_filled", "e"), ("order_filled", "tp"), ("order_cancelled", None)]
    assert after[2]["order_data"]["client_order_id"] == f"{trace_id}-sl"
    assert all(e["trace_id"] == trace_id for e in after)
    assert not rig.paper.position("BTCUSDT").is_open
    assert rig.paper.balance().wallet_balance > 10_000.0

    rig.feed(candle(51_000.0, minute=2))  # the venue's own cancel event arrives later
    assert len(rig.traces()[trace_id]) == len(events)


def test_stop_loss_fill_is_traced_and_the_take_profit_cancelled(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (SHORT, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))
    rig.feed(candle(50_500.0, minute=1, high=51_500.0))

    trace_id, events = rig.only_trace()
    filled = [e for e in events if e["event_type"] == "order_filled"]
    assert [e["response"]["order_type"] for e in filled] == ["MARKET", "STOP_MARKET"]
    assert events[-1]["event_type"] == "order_cancelled"
    assert events[-1]["order_data"]["client_order_id"] == f"{trace_id}-tp"
    assert rig.paper.balance().wallet_balance < 10_000.0


def test_candles_without_a_signal_write_nothing(rig: Rig) -> None:
    before = len(rig.records())
    rig.feed(*(candle(50_000.0 + i, minute=i) for i in range(1, 50)))
    assert len(rig.records()) == before


def test_heartbeat_reports_progress(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0), candle(50_001.0, minute=1))
    rig.engine.heartbeat()

    beat = rig.records()[-1]
    assert beat["event_type"] == "heartbeat"
    assert "trace_id" not in beat
    assert beat["additional_data"]["candles_processed"] == 2
    assert beat["additional_data"]["trades_executed"] == 1


def test_stop_loss_order_is_a_close_position_stop_market(rig: Rig) -> None:
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))
    trace_id, _ = rig.only_trace()
    (sl,) = rig.orders_with_id(f"{trace_id}-sl")
    assert sl.order_type is OrderType.STOP_MARKET
    assert sl.algo_id is not None
    assert sl.stop_price == 49_000.0
