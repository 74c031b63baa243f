"""When a cancel at the venue counts as the dead-man's switch firing, decided on an injected clock:
only after the countdown ran out since the last good refresh, never for the bot's own cancels, once
per order. The paper exchange is the venue (its countdown is a no-op)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.audit import AuditLogger
from bot.audit.testing import capture_audit
from bot.clock import FakeClock
from bot.deadman import DeadmanSwitch
from bot.exchange.paper import PaperExchange
from bot.models import Candle, OrderSide, OrderStatus, OrderType, OrderUpdate

COUNTDOWN = 10.0


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLogger]:
    logger = AuditLogger(audit_dir=tmp_path / "audit")
    try:
        yield logger
    finally:
        logger.close()


@pytest.fixture
def paper() -> PaperExchange:
    venue = PaperExchange(slippage_bps=0)
    venue.on_market_candle(Candle("BTCUSDT", "1m", 0, 50_000, 50_010, 49_990, 50_000, 1.0, 59_999))
    venue.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t1-e")
    venue.place_conditional_order("BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 45_000, "t1-sl")
    return venue


def cancelled(cid: str) -> OrderUpdate:
    return OrderUpdate("BTCUSDT", cid, OrderType.STOP_MARKET, OrderSide.SELL, OrderStatus.CANCELED)


def test_a_cancel_counts_as_the_switch_firing_only_after_the_countdown_ran_out(
    audit: AuditLogger, paper: PaperExchange
) -> None:
    clock = FakeClock()
    switch = DeadmanSwitch(
        paper, audit, ["BTCUSDT"], countdown=COUNTDOWN, clock=clock,
        cancelled_here=lambda cid: cid == "t1-tp",
    )  # fmt: skip
    with capture_audit(audit) as records:
        switch.beat()
        assert [r["additional_data"]["action"] for r in records.of_type("heartbeat")] == ["armed"]
        clock.advance(COUNTDOWN - 1)
        switch.on_order_update(cancelled("hand-1"))  # inside the countdown: cancelled by hand
        clock.advance(2)
        switch.on_order_update(cancelled("t1-tp"))  # the bot's own cancel
        switch.on_order_update(cancelled("t1-sl"))
        switch.on_order_update(cancelled("t1-sl"))  # the algo and its order may both report it
        switch.beat()  # a quiet refresh: nothing new on the record
    fired = [r for r in records.of_type("api_error") if r["operation"] == "deadman_fired"]
    assert [f["error"]["client_order_id"] for f in fired] == ["t1-sl"]
    assert fired[0]["error"]["seconds_since_refresh"] == COUNTDOWN + 1
    assert len(records.of_type("heartbeat")) == 1


def test_an_unarmed_symbol_never_fires(audit: AuditLogger) -> None:
    clock = FakeClock()
    switch = DeadmanSwitch(PaperExchange(), audit, ["BTCUSDT"], countdown=COUNTDOWN, clock=clock)
    with capture_audit(audit) as records:
        switch.beat()  # no open order: nothing armed
        clock.advance(10 * COUNTDOWN)
        switch.on_order_update(cancelled("hand-1"))
    assert list(records) == []


def test_a_countdown_must_be_positive(audit: AuditLogger) -> None:
    with pytest.raises(ValueError, match="positive"):
        DeadmanSwitch(PaperExchange(), audit, ["BTCUSDT"], countdown=0)
