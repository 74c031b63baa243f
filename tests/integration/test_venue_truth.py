"""The venue's bad days, through the real python-binance client against the fake venue.

Each test switches on one behaviour Binance really shows (a stop that triggers
but does not fill, an algo service that forgets live orders, an order that is
processed but invisible, a close refused by PERCENT_PRICE, hedge and
Multi-Assets accounts, fills in several trades, the split websocket routes)
and asserts from the fake's own records: how long a position stood without a
working stop-loss (``FakeBinance.longest_unprotected``), how many orders the
venue accepted per client id (never a second entry), and that every fault and
every repair is in the audit trail under the trade's trace id.

The protection supervisor runs with a short interval; back-offs are shrunk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.__main__ import Bot
from bot.audit import AuditLogger, trace
from bot.config import load_settings
from bot.errors import ConfigError, TemporaryExchangeError, VenueRejectedError
from bot.exchange.binance import BinanceExchange
from bot.execution import OrderExecutionManager, RetryPolicy, TradeResult
from bot.models import MarginType, OrderSide, OrderStatus, OrderUpdate
from bot.supervisor import ProtectionSupervisor
from tests.fakebinance import API_KEY, API_SECRET, FakeBinance, Fault
from tests.integration.conftest import SIGNAL, make_exchange, read_trail
from tests.waiting import wait_until

TRACE = "7e57000000c0ffee"
ENTRY, TP, SL, CLOSE, REPLACED = (f"{TRACE}-{role}" for role in ("e", "tp", "sl", "x", "rs"))
ORDER, ALGO = "POST /fapi/v1/order", "POST /fapi/v1/algoOrder"
CLOSE_AT_MARKET = {"type": "MARKET", "reduceOnly": "true"}
FAST = RetryPolicy(
    max_attempts=3,
    backoff_base=0.05,
    backoff_max=0.2,
    resolve_window=1.0,
    resolve_window_protective=0.3,
    close_attempts=4,
)
RETRY_CYCLE = 4.0  # seconds: generous for one round of requests and back-offs on a loaded machine


@dataclass
class Rig:
    fake: FakeBinance
    exchange: BinanceExchange
    execution: OrderExecutionManager
    audit: AuditLogger
    audit_dir: Path

    def trail(self) -> list[dict[str, Any]]:
        self.audit.flush()
        return read_trail(self.audit_dir)

    def records(self, event_type: str, operation: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.trail()
            if r["event_type"] == event_type and operation in (None, r["operation"])
        ]

    def wait_for(self, event_type: str, operation: str) -> list[dict[str, Any]]:
        """The records, once the supervisor's thread wrote them (the venue changes first)."""
        return wait_until(
            lambda: self.records(event_type, operation), 20, f"{event_type} {operation}"
        )

    def supervisor(self, interval: float) -> ProtectionSupervisor:
        return ProtectionSupervisor(self.execution, self.audit, ["BTCUSDT"], interval=interval)

    def trade(self) -> None:
        result = self.execute()
        assert result.ok, result.error_message

    def execute(self) -> TradeResult:
        with trace(TRACE):  # as the engine runs it
            return self.execution.execute(SIGNAL, 0.01, TRACE)


@pytest.fixture
def rig(fake: FakeBinance, audit: AuditLogger, audit_dir: Path) -> Iterator[Rig]:
    exchange = make_exchange(fake, audit)
    execution = OrderExecutionManager(
        exchange, audit, leverage=10, margin_type=MarginType.ISOLATED, retry=FAST
    )
    exchange.sync_clock()
    execution.configure_symbol("BTCUSDT")
    try:
        yield Rig(fake, exchange, execution, audit, audit_dir)
    finally:
        exchange.close()


@pytest.fixture
def supervising() -> Iterator[Any]:
    """``supervising(supervisor)`` runs it on its own thread until the test ends."""
    stop = threading.Event()
    running: list[tuple[threading.Thread, ProtectionSupervisor]] = []

    def start(supervisor: ProtectionSupervisor) -> ProtectionSupervisor:
        thread = threading.Thread(target=supervisor.run, args=(stop,), daemon=True)
        thread.start()
        running.append((thread, supervisor))
        return supervisor

    yield start
    stop.set()
    for thread, supervisor in running:
        supervisor.wake()
        thread.join(timeout=10)


def accepted(fake: FakeBinance, cid: str) -> int:
    """How many orders the venue accepted under ``cid`` (regular + algo, not triggered ones)."""
    with fake.venue.lock:
        regular = sum(1 for o in fake.venue.orders if o.client_order_id == cid and not o.orig_type)
        algo = sum(1 for a in fake.venue.algo_orders if a.client_algo_id == cid)
    return regular + algo


def algo_status(fake: FakeBinance, cid: str) -> str:
    return next(
        a["algoStatus"] for a in fake.algo_orders_for("BTCUSDT") if a["clientAlgoId"] == cid
    )


def flat(fake: FakeBinance) -> bool:
    return fake.position_amount("BTCUSDT") == 0


# ------------------------------------------------------------- the supervisor


def test_stop_loss_rejected_at_trigger_is_repaired_at_once_from_the_event(
    rig: Rig, supervising: Any
) -> None:
    rig.fake.venue.trigger_faults.append("REJECTED")
    supervisor = rig.supervisor(interval=60.0)  # only the event can explain a quick repair
    rig.exchange.subscribe_order_updates(supervisor.on_order_update)
    assert rig.exchange.streams.wait_connected("user_data_stream", 10)
    rig.trade()
    supervising(supervisor)

    rig.fake.set_price("BTCUSDT", "48900")

    wait_until(lambda: flat(rig.fake), 20, "the unprotected position closed")
    assert algo_status(rig.fake, SL) == "REJECTED"
    assert rig.fake.longest_unprotected("BTCUSDT") < RETRY_CYCLE
    (noticed,) = rig.records("api_error", "stop_loss_lost")
    assert noticed["error"]["error_type"] == "stop_loss_rejected"
    assert noticed["trace_id"] == TRACE
    (found,) = rig.records("position_query", "protection_check")
    assert found["trace_id"] == TRACE
    assert found["additional_data"]["cause"] == "stop_loss_rejected"
    # The stop's price is behind the market: placed again it would trigger at once (-2021).
    (refused,) = rig.records("order_rejected", "replace_sl_order")
    assert refused["error"]["error_code"] == -2021
    (closed,) = rig.wait_for("order_placed", "close_unprotected_position")
    assert closed["trace_id"] == TRACE and closed["order_data"]["reduce_only"] is True
    wait_until(lambda: algo_status(rig.fake, TP) == "CANCELED", 10, "the take-profit cancelled")
    assert accepted(rig.fake, ENTRY) == 1


def test_triggered_stop_that_expires_is_found_without_the_user_stream(
    rig: Rig, supervising: Any
) -> None:
    rig.fake.venue.trigger_faults.append("EXPIRED")
    rig.trade()
    supervising(rig.supervisor(interval=1.0))  # no order stream subscribed at all

    rig.fake.set_price("BTCUSDT", "48900")

    wait_until(lambda: flat(rig.fake), 20, "the unprotected position closed")
    assert rig.fake.venue.incidents[-1][1] == "stop_expired"
    assert rig.fake.longest_unprotected("BTCUSDT") <= 1.0 + RETRY_CYCLE
    (found,) = rig.records("position_query", "protection_check")
    assert found["additional_data"]["cause"] == "no_stop_loss_listed"
    assert found["trace_id"] == TRACE
    assert rig.wait_for("order_placed", "close_unprotected_position")


def test_a_stop_loss_cancelled_by_hand_is_placed_again_at_its_price_at_once(
    rig: Rig, supervising: Any
) -> None:
    supervisor = rig.supervisor(interval=60.0)  # the cancel event wakes it
    rig.exchange.subscribe_order_updates(supervisor.on_order_update)
    assert rig.exchange.streams.wait_connected("user_data_stream", 10)
    rig.trade()
    supervising(supervisor)

    rig.fake.venue.cancel_algo_order({"clientAlgoId": SL})  # e.g. cancelled by hand

    wait_until(lambda: rig.fake.open_stop_losses("BTCUSDT"), 20, "a stop-loss again")
    (stop,) = rig.fake.open_stop_losses("BTCUSDT")
    assert (stop["clientAlgoId"], Decimal(stop["triggerPrice"])) == (REPLACED, Decimal(49000))
    assert rig.fake.position_amount("BTCUSDT") == Decimal("0.01")
    assert rig.fake.longest_unprotected("BTCUSDT") <= RETRY_CYCLE
    (found,) = rig.records("position_query", "protection_check")
    assert found["additional_data"]["action"] == "replace_stop_loss"
    assert found["additional_data"]["cause"] == "stop_loss_canceled"
    (placed,) = rig.wait_for("order_placed", "replace_sl_order")
    assert placed["trace_id"] == TRACE


def test_orphaned_orders_on_a_flat_symbol_are_cancelled(rig: Rig, supervising: Any) -> None:
    rig.trade()
    rig.fake.set_price("BTCUSDT", "52100")  # take-profit fills; nobody cancels the stop-loss
    assert flat(rig.fake) and algo_status(rig.fake, SL) == "NEW"

    supervising(rig.supervisor(interval=0.5))

    wait_until(lambda: algo_status(rig.fake, SL) == "CANCELED", 20, "the orphan cancelled")
    (cancelled,) = rig.wait_for("order_cancelled", "cancel_order")
    assert cancelled["additional_data"]["reason"] == "orphan_on_flat_symbol"
    assert cancelled["trace_id"] == TRACE


def test_a_trade_in_progress_is_not_taken_for_a_gap(rig: Rig) -> None:
    supervisor = rig.supervisor(interval=60.0)
    with rig.execution.symbol_lock("BTCUSDT"):
        assert supervisor.check_symbol("BTCUSDT") == "busy"
    assert supervisor.check_symbol("BTCUSDT") == "none"


# ------------------------------------------------------------- no false "gone"


def test_an_algo_service_that_forgets_a_live_stop_does_not_make_the_bot_forget_it(
    rig: Rig,
) -> None:
    rig.trade()
    rig.fake.venue.forget_algo_orders(30)

    found = rig.execution.query_order("BTCUSDT", SL)

    assert found is not None and found.status is OrderStatus.NEW
    assert [r.code for r in rig.fake.requests_to("GET /fapi/v1/algoOrder")][-1] == -2013
    with pytest.raises(TemporaryExchangeError):  # "unknown order", yet still listed
        rig.execution.cancel_order("BTCUSDT", SL, reason="test")
    assert algo_status(rig.fake, SL) == "NEW"
    retries = rig.records("retry_attempt", "cancel_order")
    assert len(retries) == FAST.max_attempts - 1
    (gave_up,) = rig.records("api_error", "cancel_order")
    assert "still lists it open" in gave_up["error"]["error_message"]


def test_a_cancel_answered_unknown_is_retried_until_the_order_is_gone(rig: Rig) -> None:
    rig.trade()
    rig.fake.venue.forget_algo_orders(0.1)

    cancelled = rig.execution.cancel_order("BTCUSDT", SL, reason="test")

    assert cancelled is not None
    assert algo_status(rig.fake, SL) == "CANCELED"
    assert rig.records("retry_attempt", "cancel_order")
    assert -2011 in [r.code for r in rig.fake.requests_to("DELETE /fapi/v1/algoOrder")]


# ------------------------------------------------------------- unknown outcomes


def test_an_entry_processed_but_invisible_is_never_sent_twice(rig: Rig) -> None:
    rig.fake.inject(ORDER, Fault.processed_but_invisible(5.0), match={"type": "MARKET"})

    rig.trade()

    assert accepted(rig.fake, ENTRY) == 1
    assert rig.fake.position_amount("BTCUSDT") == Decimal("0.01")
    resolved = [
        r for r in rig.records("api_error") if r["error"].get("resolution") == "found_at_venue"
    ]
    assert resolved and resolved[0]["error"]["found"]["executed_qty"] == 0.01
    assert len(rig.fake.open_stop_losses("BTCUSDT")) == 1


def test_minus_1000_with_a_4xx_status_is_an_unknown_outcome_resolved_before_a_resend(
    rig: Rig,
) -> None:
    fault = Fault.error(-1000, "An unknown error occurred while processing the request.")
    rig.fake.inject(ORDER, fault, match={"type": "MARKET"})

    rig.trade()

    assert [r.status for r in rig.fake.requests_to(ORDER)][:2] == [400, 200]
    assert accepted(rig.fake, ENTRY) == 1
    outcome = [r for r in rig.records("api_error") if r["error"].get("resolution")]
    assert [r["error"]["resolution"] for r in outcome] == ["query_venue_records", "not_at_venue"]
    assert rig.records("retry_attempt", "place_entry_order")


def test_a_stop_loss_resent_after_an_unknown_outcome_is_not_duplicated(rig: Rig) -> None:
    # Processed, then invisible longer than the protective window: the resend is refused
    # as a duplicate (-4116), which proves the first one stands.
    rig.fake.inject(ALGO, Fault.processed_but_invisible(5.0), match={"type": "STOP_MARKET"})

    rig.trade()

    assert accepted(rig.fake, SL) == 1
    assert [r.code for r in rig.fake.requests_to(ALGO)][-1] == -4116
    assert len(rig.fake.open_stop_losses("BTCUSDT")) == 1


def test_an_orphaned_stop_of_an_earlier_trade_does_not_block_the_new_one(rig: Rig) -> None:
    rig.fake.venue.new_algo_order(
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": "45000",
            "closePosition": "true",
            "clientAlgoId": "0ldtrade-sl",
        }
    )

    rig.trade()

    assert algo_status(rig.fake, "0ldtrade-sl") == "CANCELED"
    assert algo_status(rig.fake, SL) == "NEW"
    (cancelled,) = rig.records("order_cancelled", "cancel_order")
    assert cancelled["additional_data"]["reason"] == "blocks_new_order"
    assert cancelled["trace_id"] == "0ldtrade"


# ------------------------------------------------------------- protective close


def test_a_percent_price_refusal_falls_back_to_a_reduce_only_limit_ioc_inside_the_band(
    rig: Rig,
) -> None:
    rig.fake.inject(ALGO, Fault.margin_insufficient(), match={"type": "STOP_MARKET"}, times=10)
    rig.fake.inject(ORDER, Fault.percent_price(), match=CLOSE_AT_MARKET, times=50)

    result = rig.execute()

    assert not result.ok and not result.position_left_open
    assert flat(rig.fake)
    (refused,) = rig.records("order_rejected", "close_position")
    assert refused["error"]["error_code"] == -4131
    (fallback,) = rig.records("order_placed", "close_position_limit_ioc")
    assert fallback["trace_id"] == TRACE
    assert fallback["order_data"]["client_order_id"] == f"{TRACE}-xl"
    # PERCENT_PRICE is 0.95..1.05 of the mark (50 000): a SELL half-way into the band.
    assert fallback["order_data"]["price"] == 48_750.0
    assert fallback["order_data"]["reduce_only"] is True
    (ioc,) = [o for o in rig.fake.orders_for("BTCUSDT") if o["clientOrderId"] == f"{TRACE}-xl"]
    assert (ioc["type"], ioc["timeInForce"], ioc["status"]) == ("LIMIT", "IOC", "FILLED")
    rig.fake.faults.clear()


def test_a_close_refused_every_time_is_retried_with_backoff_then_alerts(rig: Rig) -> None:
    rig.fake.inject(ALGO, Fault.margin_insufficient(), match={"type": "STOP_MARKET"}, times=10)
    rig.fake.inject(ORDER, Fault.error(-2020, "Unable to fill."), match=CLOSE_AT_MARKET, times=50)

    result = rig.execute()

    assert result.position_left_open
    retried = [r["error"]["error_code"] for r in rig.records("retry_attempt", "close_position")]
    assert retried == [-2020] * (FAST.close_attempts - 1)
    alert = rig.records("api_error", "close_position")[-1]
    assert alert["error"]["severity"] == "critical"
    assert alert["error"]["attempts"] == FAST.close_attempts
    assert alert["trace_id"] == TRACE
    rig.fake.faults.clear()


# ------------------------------------------------------------- account modes


def start_bot(fake: FakeBinance, audit: AuditLogger, tmp_path: Path, *extra: str) -> Bot:
    settings = load_settings(
        ["--mode", "testnet", "--symbols", "BTCUSDT", "--intervals", "1m",
         "--audit-dir", str(tmp_path / "audit"), *extra],
        environ={
            "BINANCE_API_KEY": API_KEY,
            "BINANCE_API_SECRET": API_SECRET,
            "BINANCE_FUTURES_URL": fake.rest_url,
            "BINANCE_WS_URL": fake.ws_url,
        },
    )  # fmt: skip
    return Bot(settings, audit)


def sent_anything(fake: FakeBinance) -> list[str]:
    return [r.endpoint for r in fake.requests if r.method in ("POST", "DELETE", "PUT")]


def test_a_hedge_mode_account_is_refused_before_any_order(
    fake: FakeBinance, audit: AuditLogger, tmp_path: Path
) -> None:
    fake.venue.dual_side = True
    bot = start_bot(fake, audit, tmp_path)
    try:
        with pytest.raises(ConfigError, match="dualSidePosition"):
            bot.start()
    finally:
        bot.close()
    assert sent_anything(fake) == []


def test_in_hedge_mode_the_venue_refuses_one_way_orders_and_a_one_way_read_sees_the_empty_leg(
    rig: Rig,
) -> None:
    rig.fake.venue.dual_side = True
    with pytest.raises(VenueRejectedError) as refused:
        rig.exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, ENTRY)
    assert refused.value.code == -4061
    rig.fake.venue.new_order(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
         "positionSide": "LONG"}
    )  # fmt: skip
    assert rig.exchange.position("BTCUSDT").amount == 0  # the SHORT leg: why hedge is refused
    assert rig.fake.position_amount("BTCUSDT") == Decimal("0.01")


def test_the_bot_process_refuses_a_hedge_mode_account_with_exit_code_2(
    fake: FakeBinance, tmp_path: Path
) -> None:
    fake.venue.dual_side = True
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "BINANCE_"))}
    env.update(
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        BINANCE_API_KEY=API_KEY,
        BINANCE_API_SECRET=API_SECRET,
        BINANCE_FUTURES_URL=fake.rest_url,
        BINANCE_WS_URL=fake.ws_url,
    )
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--mode", "testnet", "--symbols", "BTCUSDT",
         "--intervals", "1m", "--audit-dir", str(tmp_path / "audit")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "dualSidePosition" in done.stderr
    stopped = read_trail(tmp_path / "audit")[-1]
    assert stopped["event_type"] == "bot_stopped"
    assert stopped["additional_data"]["exit_code"] == 2
    assert sent_anything(fake) == []


def test_multi_assets_mode_refuses_isolated_and_trades_crossed(
    fake: FakeBinance, audit: AuditLogger, tmp_path: Path
) -> None:
    fake.venue.multi_assets = True
    refused = start_bot(fake, audit, tmp_path)
    try:
        with pytest.raises(ConfigError, match="multiAssetsMargin"):
            refused.start()
    finally:
        refused.close()
    assert sent_anything(fake) == []

    config = tmp_path / "crossed.toml"
    config.write_text('[risk]\nmargin_type = "CROSSED"\n')
    crossed = start_bot(fake, audit, tmp_path, "--config", str(config))
    try:
        crossed.start()
    finally:
        crossed.close()
    with fake.venue.lock:
        assert fake.venue.positions["BTCUSDT"].margin_type == "CROSSED"


@pytest.mark.parametrize(
    ("margin_type", "leverage", "setting", "code"),
    [("CROSSED", 20, "margin_type_set", -4048), ("ISOLATED", 20, "leverage_set", -4161)],
    ids=["margin-type-4048", "leverage-4161"],
)
def test_an_inherited_position_is_reconciled_before_margin_and_leverage_are_set(
    fake: FakeBinance,
    audit: AuditLogger,
    audit_dir: Path,
    tmp_path: Path,
    margin_type: str,
    leverage: int,
    setting: str,
    code: int,
) -> None:
    with fake.venue.lock:  # a previous run's protected position, in a margin setup of its own
        position = fake.venue.positions["BTCUSDT"]
        position.margin_type, position.leverage = margin_type, leverage
    fake.venue.new_order(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
         "newClientOrderId": "0ldtrade-e"}
    )  # fmt: skip
    fake.venue.new_algo_order(
        {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
         "triggerPrice": "49000", "closePosition": "true", "clientAlgoId": "0ldtrade-sl"}
    )  # fmt: skip
    bot = start_bot(fake, audit, tmp_path)  # ISOLATED, leverage 10
    try:
        bot.start()
    finally:
        bot.close()

    audit.flush()
    records = read_trail(audit_dir)
    steps = [r["operation"] for r in records]
    assert steps.index("reconcile_startup") < steps.index(f"set_{setting.removesuffix('_set')}")
    (kept,) = [r for r in records if r["event_type"] == setting]
    assert kept["response"]["status"] == "kept_with_open_position"
    assert kept["response"]["error_code"] == code
    assert fake.position_amount("BTCUSDT") == Decimal("0.01")


# ------------------------------------------------------------- fills


def test_a_fill_in_several_trades_reports_the_sums(rig: Rig) -> None:
    rig.fake.venue.trades_per_fill = 3
    updates: list[OrderUpdate] = []
    rig.exchange.subscribe_order_updates(updates.append)
    assert rig.exchange.streams.wait_connected("user_data_stream", 10)
    rig.trade()

    rig.fake.set_price("BTCUSDT", "48900")

    filled = wait_until(
        lambda: [u for u in updates if u.client_order_id == SL and u.status is OrderStatus.FILLED],
        20,
        "the stop-loss fill",
    )
    trades = [t for t in rig.fake.venue.trades if t["client_order_id"] == SL]
    assert len(trades) == 3
    assert filled[0].realized_pnl == pytest.approx(float(sum(t["realized_pnl"] for t in trades)))
    assert filled[0].commission == pytest.approx(float(sum(t["commission"] for t in trades)))
    assert filled[0].realized_pnl != pytest.approx(float(trades[-1]["realized_pnl"]))
    assert filled[0].filled_quantity == pytest.approx(0.01)


# ------------------------------------------------------------- websocket routes


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ws/btcusdt@kline_1m", 404),  # legacy route, retired
        ("/stream?streams=btcusdt@kline_1m", 404),
        ("/private/stream?streams=btcusdt@kline_1m", 400),  # market data on the private route
    ],
)
def test_websockets_are_served_only_on_the_venue_routes(
    fake: FakeBinance, path: str, status: int
) -> None:
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    answer = requests.get(fake.rest_url + path, headers=headers, timeout=5)
    assert answer.status_code == status
