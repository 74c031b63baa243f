"""Retries: only temporary errors, bounded, audited, and never a duplicate order."""

from __future__ import annotations

from bot.errors import (
    ClockSkewError,
    RateLimitError,
    TemporaryExchangeError,
    UnknownOutcomeError,
    VenueRejectedError,
)
from bot.models import SignalType

from .conftest import NORMAL, WIDE_STOP, Rig, candle, flow, is_stop_loss


def trade_once(rig: Rig) -> tuple[str, list[dict]]:
    rig.strategy.plan[50_000.0] = (SignalType.LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))
    return rig.only_trace()


def test_rate_limit_waits_retry_after_then_trades(rig: Rig) -> None:
    rig.exchange.fail("place_market_order", RateLimitError("429", retry_after=3.5, status=429))

    _, events = trade_once(rig)

    assert rig.sleeps == [3.5]
    assert flow(events) == NORMAL
    limited = next(e for e in events if e["event_type"] == "rate_limit")
    assert limited["error"]["retry_after"] == 3.5
    assert limited["error"]["status"] == 429
    retry = next(e for e in events if e["event_type"] == "retry_attempt")
    assert retry["additional_data"]["delay_seconds"] == 3.5
    assert retry["additional_data"]["attempt"] == 2


def test_rate_limit_without_retry_after_backs_off_exponentially(rig: Rig) -> None:
    rig.exchange.fail(
        "place_market_order",
        RateLimitError("418", status=418),
        RateLimitError("418", status=418),
    )
    _, events = trade_once(rig)
    assert rig.sleeps == [0.5, 1.0]
    assert flow(events) == NORMAL


def test_clock_skew_resyncs_the_clock_and_retries_at_once(rig: Rig) -> None:
    rig.exchange.fail("place_conditional_order", ClockSkewError("-1021 Timestamp outside"))

    _, events = trade_once(rig)

    assert rig.exchange.clock_syncs == 1
    assert rig.sleeps == []
    assert flow(events) == NORMAL
    retry = next(e for e in events if e["event_type"] == "retry_attempt")
    assert retry["additional_data"]["clock_offset_ms"] == 1234


def test_unknown_outcome_of_an_entry_that_arrived_is_resolved_by_query(rig: Rig) -> None:
    rig.exchange.fail_after("place_market_order", UnknownOutcomeError("503 unknown"))

    trace_id, events = trade_once(rig)

    assert flow(events) == NORMAL
    assert rig.exchange.calls.count("place_market_order") == 1
    assert rig.exchange.calls.count("query_order") == 1
    assert len(rig.orders_with_id(f"{trace_id}-e")) == 1
    assert rig.paper.position("BTCUSDT").amount == events[-1]["additional_data"]["quantity"]


def test_unknown_outcome_of_an_order_that_never_arrived_is_sent_again_with_the_same_id(
    rig: Rig,
) -> None:
    rig.exchange.fail("place_conditional_order", UnknownOutcomeError("timeout"), when=is_stop_loss)

    trace_id, events = trade_once(rig)

    assert flow(events) == NORMAL
    sl_attempts = [
        e["order_data"]["client_order_id"]
        for e in events
        if e["operation"] == "place_sl_order" and "order_data" in e
    ]
    assert set(sl_attempts) == {f"{trace_id}-sl"}
    assert len(rig.orders_with_id(f"{trace_id}-sl")) == 1


def test_an_unresolvable_entry_outcome_is_never_resent(rig: Rig) -> None:
    rig.exchange.fail_after("place_market_order", UnknownOutcomeError("503 unknown"))
    rig.exchange.fail("query_order", *[TemporaryExchangeError("502") for _ in range(30)])

    trace_id, events = trade_once(rig)

    # The order query never answers, but the position moved by the entry's quantity:
    # that is the fill, so the entry is not sent again and the trade goes on.
    assert rig.exchange.client_ids_sent == [f"{trace_id}-e", f"{trace_id}-tp", f"{trace_id}-sl"]
    assert flow(events) == NORMAL


def test_temporary_errors_are_retried_a_bounded_number_of_times(rig: Rig) -> None:
    rig.exchange.fail("place_market_order", *[RateLimitError("429") for _ in range(5)])

    _, events = trade_once(rig)

    assert rig.exchange.calls.count("place_market_order") == 3  # max_attempts
    assert flow(events)[-1] == "trade_execution_failed"
    gave_up = [e for e in events if e["event_type"] == "api_error"][-1]
    assert gave_up["error"]["attempts"] == 3


def test_venue_rejections_are_not_retried(rig: Rig) -> None:
    rig.exchange.fail("place_market_order", VenueRejectedError(-4164, "notional too small"))

    _, events = trade_once(rig)

    assert rig.exchange.calls.count("place_market_order") == 1
    assert rig.sleeps == []
    assert [e["event_type"] for e in events].count("retry_attempt") == 0


def test_a_failed_position_query_rejects_the_signal_instead_of_trading_blind(rig: Rig) -> None:
    rig.exchange.fail("position", *[TemporaryExchangeError("timeout") for _ in range(3)])

    _, events = trade_once(rig)

    assert flow(events) == ["signal_processing", "risk_rejection"]
    assert events[-1]["error"]["reason"] == "position_unavailable"
