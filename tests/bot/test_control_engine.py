"""Trading controls in the engine's flow (SPEC §11), read back from the audit files written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bot.control.desk import ControlDesk
from bot.control.protections import PreTradeLimits, Protections, ProtectionSettings
from bot.control.restore import marked_lines, read_back, replay
from bot.control.server import Peer
from bot.control.state import Source, TradingState
from bot.models import SignalType

from .conftest import REJECTED, WIDE_STOP, Rig, build_rig, candle, flow

LONG = SignalType.LONG
ME = Peer(os.getpid(), os.getuid())


def of_type(rig: Rig, kind: str) -> list[dict[str, Any]]:
    return [r for r in rig.records() if r["event_type"] == kind]


def halt(rig: Rig) -> None:
    rig.guard.control.change(
        TradingState.HALTED, source=Source.OPERATOR, reason="test", operator="alice"
    )


def open_trade(rig: Rig, price: float = 50_000.0) -> None:
    rig.strategy.plan[price] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(price))
    assert rig.paper.position("BTCUSDT").is_open


def test_a_halted_bot_rejects_signals_with_trading_halted_and_sends_nothing(rig: Rig) -> None:
    halt(rig)
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_000.0))

    _, events = rig.only_trace()
    assert flow(events) == REJECTED
    error = events[-1]["error"]
    assert error["reason"] == "trading_halted"
    assert error["validation_failed"] == "trading_state"
    assert "alice" in error["message"]
    assert not of_type(rig, "order_placed")
    assert rig.exchange.client_ids_sent == []


def test_the_state_is_checked_before_any_other_risk_check(rig: Rig) -> None:
    open_trade(rig)
    rig.guard.control.change(TradingState.REDUCING, source=Source.OPERATOR, reason="t")
    rig.strategy.plan[50_100.0] = (LONG, WIDE_STOP, 0.04)
    rig.feed(candle(50_100.0))  # would also be refused as existing_position

    rejection = of_type(rig, "risk_rejection")[-1]
    assert rejection["error"]["reason"] == "trading_reducing"


def test_take_profit_and_stop_loss_still_work_while_reducing(rig: Rig) -> None:
    open_trade(rig)
    rig.guard.control.change(TradingState.REDUCING, source=Source.OPERATOR, reason="t")
    rig.feed(candle(48_000.0, minute=1, low=48_000.0))  # crosses the stop-loss at 49 000
    rig.feed(candle(48_000.0, minute=2))  # delivers the venue's updates

    assert not rig.paper.position("BTCUSDT").is_open
    fills = of_type(rig, "order_filled")
    assert [f["additional_data"]["role"] for f in fills] == ["e", "sl"]
    assert rig.paper.open_orders("BTCUSDT") == []  # the take-profit was cancelled


def test_an_order_the_halted_state_forbids_is_refused_before_it_is_sent(rig: Rig) -> None:
    halt(rig)
    rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
    signal = rig.strategy.evaluate([candle(50_000.0)])
    assert signal is not None
    result = rig.execution.execute(signal, 0.01, "trace-halted")

    assert not result.ok and result.error_type == "OrderRefusedError"
    assert rig.exchange.client_ids_sent == []
    refusal = of_type(rig, "risk_rejection")[-1]
    assert refusal["operation"] == "place_entry_order"
    assert refusal["error"]["reason"] == "trading_halted"
    assert refusal["order_data"]["client_order_id"] == "trace-halted-e"


def test_flatten_closes_every_position_cancels_every_order_and_halts(rig: Rig) -> None:
    open_trade(rig)
    desk = ControlDesk(rig.guard, rig.execution, ["BTCUSDT"], clock=rig.clock)
    replies = list(desk.handle({"command": "flatten", "reason": "going home"}, ME))

    assert replies[0]["ack"] is True and replies[0]["state"] == "halted"
    final = replies[-1]
    assert final["final"] and final["ok"] and final["flat"]
    assert final["positions_closed"] == 1 and final["orders_cancelled"] == 2
    assert final["time_to_flat_seconds"] >= 0
    assert not rig.paper.position("BTCUSDT").is_open
    assert rig.paper.open_orders("BTCUSDT") == []
    assert rig.guard.control.state is TradingState.HALTED
    close = [r for r in of_type(rig, "order_placed") if r["operation"] == "flatten"]
    assert len(close) == 1 and close[0]["order_data"]["reduce_only"] is True
    change = of_type(rig, "trading_state_changed")[-1]["additional_data"]
    assert change["reason"] == "flatten: going home" and change["operator"] == ME.user


def test_status_lists_state_positions_orders_and_locks(tmp_path: Path) -> None:
    rig = build_rig(tmp_path / "audit", protections=ProtectionSettings(cooldown=600.0))
    try:
        open_trade(rig)
        rig.guard.on_fill("ETHUSDT", "tp", 12.0, 0.1)  # as the engine reports an exit's fill
        desk = ControlDesk(rig.guard, rig.execution, ["BTCUSDT"])
        [status] = list(desk.handle({"command": "status"}, ME))
    finally:
        rig.audit.close()
    assert status["ok"] and status["state"] == "active"
    assert [p["symbol"] for p in status["positions"]] == ["BTCUSDT"]
    assert sorted(o["type"] for o in status["open_orders"]) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert [(lk["symbol"], lk["protection"]) for lk in status["locks"]] == [("ETHUSDT", "cooldown")]


def test_a_cooldown_after_an_exit_refuses_the_next_entry_on_that_symbol(tmp_path: Path) -> None:
    rig = build_rig(tmp_path / "audit", protections=ProtectionSettings(cooldown=600.0))
    try:
        open_trade(rig)
        rig.feed(candle(48_000.0, minute=1, low=48_000.0), candle(48_000.0, minute=2))
        rig.strategy.plan[48_100.0] = (LONG, WIDE_STOP, 0.04)
        rig.feed(candle(48_100.0, minute=3))
        triggered = of_type(rig, "protection_triggered")
        rejection = of_type(rig, "risk_rejection")[-1]
        rig.clock.advance(600.0)
        rig.strategy.plan[48_200.0] = (LONG, WIDE_STOP, 0.04)
        rig.feed(candle(48_200.0, minute=4))
        traded = of_type(rig, "trade_executed")
    finally:
        rig.audit.close()
    [trigger] = triggered
    assert trigger["symbol"] == "BTCUSDT"
    assert trigger["additional_data"]["protection"] == "cooldown"
    assert trigger["additional_data"]["until"] == rig.clock.now  # 600 s after the exit
    assert rejection["error"]["reason"] == "cooldown"
    assert len(traded) == 2  # after the cooldown the symbol trades again


def test_a_daily_loss_beyond_the_limit_reduces_the_bot_until_the_next_utc_day(
    tmp_path: Path,
) -> None:
    rig = build_rig(
        tmp_path / "audit", protections=ProtectionSettings(daily_loss_limit_percent=0.5)
    )
    try:
        open_trade(rig)  # risks 1 % of the balance
        rig.feed(candle(48_000.0, minute=1, low=48_000.0), candle(48_000.0, minute=2))
        for minute, price in ((3, 48_100.0), (4, 48_200.0)):
            rig.strategy.plan[price] = (LONG, WIDE_STOP, 0.04)
            rig.feed(candle(price, minute=minute))
        reasons = [r["error"]["reason"] for r in of_type(rig, "risk_rejection")]
        [trigger] = of_type(rig, "protection_triggered")
        state = rig.guard.control.last
    finally:
        rig.audit.close()
    assert reasons == ["daily_loss_limit", "trading_reducing"]
    data = trigger["additional_data"]
    assert data["protection"] == "daily_loss_limit" and data["symbol"] == "all"
    assert data["realized_pnl_today"] < -data["loss_limit"]
    assert state.state is TradingState.REDUCING and state.source is Source.PROTECTION
    assert state.until == 1_767_225_600.0 + 86_400


def test_the_max_order_notional_limit_refuses_a_large_entry(tmp_path: Path) -> None:
    rig = build_rig(tmp_path / "audit", limits=PreTradeLimits(max_order_notional=100.0))
    try:
        rig.strategy.plan[50_000.0] = (LONG, WIDE_STOP, 0.04)
        rig.feed(candle(50_000.0))
        _, events = rig.only_trace()
    finally:
        rig.audit.close()
    assert flow(events) == REJECTED
    assert events[-1]["error"]["reason"] == "max_order_notional"


def test_a_restart_reads_the_state_and_the_locks_back_from_the_trail(tmp_path: Path) -> None:
    audit_dir = tmp_path / "audit"
    rig = build_rig(audit_dir, protections=ProtectionSettings(cooldown=3600.0))
    open_trade(rig)
    rig.feed(candle(48_000.0, minute=1, low=48_000.0), candle(48_000.0, minute=2))
    halt(rig)
    rig.audit.close()

    found = read_back(audit_dir, since=0.0)
    assert found.state is not None
    assert (found.state.state, found.state.operator) == (TradingState.HALTED, "alice")
    protections = Protections(ProtectionSettings(cooldown=3600.0))
    replay(protections, found.records)
    lock = protections.symbol_lock("BTCUSDT", rig.clock.now + 10)
    assert lock is not None and lock.protection == "cooldown"


def test_the_read_back_finds_marked_lines_last_first_and_never_a_torn_one() -> None:
    data = b"a x\nb\nc y x\nd y\ne x-torn"
    assert list(marked_lines(data, (b"x", b"y"))) == [b"d y", b"c y x", b"a x"]
    assert list(marked_lines(b"x torn only", (b"x",))) == []
