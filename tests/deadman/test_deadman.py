"""The dead-man's switch (countdownCancelAll) against the fake Binance, with the real python-binance
client: sent and refreshed while a symbol has open orders, stopped when it has none and at shutdown,
and — when the bot falls silent — fired by the venue, which cancels the orders and is recorded."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.audit import AuditLogger
from bot.audit.testing import CapturedRecords, capture_audit
from bot.deadman import DeadmanSwitch
from bot.exchange.binance import BinanceExchange
from bot.models import OrderSide, OrderType
from tests.bot.conftest import BotProcess, fake_venue_env
from tests.fakebinance import FakeBinance
from tests.fakebinance.faults import Fault
from tests.fakebinance.server import RequestRecord
from tests.waiting import wait_until

COUNTDOWN = 2.5  # seconds; refreshed every REFRESH: a stall of 2 s on a loaded machine is no firing
REFRESH = 0.2
COUNTDOWN_MS = str(round(COUNTDOWN * 1000))
ENDPOINT = "POST /fapi/v1/countdownCancelAll"


class Running:
    """A switch on its own thread, stopped (and optionally disarmed) by the test."""

    def __init__(self, switch: DeadmanSwitch) -> None:
        self.switch = switch
        self.stop = threading.Event()
        self.thread = threading.Thread(target=switch.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def running(exchange: BinanceExchange, audit: AuditLogger) -> Iterator[Running]:
    switch = DeadmanSwitch(
        exchange, audit, ["BTCUSDT", "ETHUSDT"], countdown=COUNTDOWN, refresh=REFRESH
    )
    exchange.subscribe_order_updates(switch.on_order_update)
    run = Running(switch)
    try:
        yield run
    finally:
        run.halt()


def resting_order(fake: FakeBinance, cid: str = "hand-limit-1") -> str:
    """A LIMIT GTC buy far below the market: an open order that nothing fills."""
    fake.venue.new_order(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.010", "price": "40000.00", "newClientOrderId": cid}
    )  # fmt: skip
    return cid


def order_status(fake: FakeBinance, cid: str) -> str:
    return next(str(o["status"]) for o in fake.orders_for("BTCUSDT") if o["clientOrderId"] == cid)


def sent(fake: FakeBinance, symbol: str, countdown: str) -> list[RequestRecord]:
    """The countdowns the venue accepted for ``symbol`` with that countdownTime (ms)."""
    return [
        r
        for r in fake.requests_to(ENDPOINT)
        if r.params.get("symbol") == symbol and r.params.get("countdownTime") == countdown
        and r.status == 200
    ]  # fmt: skip


def sends(fake: FakeBinance, symbol: str, countdown: str) -> int:
    return len(sent(fake, symbol, countdown))


def switch_records(records: CapturedRecords, action: str) -> list[dict[str, object]]:
    return [
        r
        for r in records.of_type("heartbeat")
        if r["operation"] == "deadman_switch" and r["additional_data"]["action"] == action
    ]


def test_countdown_is_sent_per_symbol_with_open_orders_refreshed_and_recorded_once(
    fake: FakeBinance, audit: AuditLogger, exchange: BinanceExchange
) -> None:
    cid = resting_order(fake)
    switch = DeadmanSwitch(
        exchange, audit, ["BTCUSDT", "ETHUSDT"], countdown=COUNTDOWN, refresh=REFRESH
    )
    with capture_audit(audit) as records:
        run = Running(switch)
        try:
            # refreshed for longer than one countdown: the venue never fires
            def refreshed_past_countdown() -> bool:
                done = sent(fake, "BTCUSDT", COUNTDOWN_MS)
                return len(done) > 2 and done[-1].at - done[0].at > 1.2 * COUNTDOWN

            wait_until(refreshed_past_countdown, 60, "refreshes for longer than the countdown")
            assert "BTCUSDT" in fake.venue.countdowns
            assert order_status(fake, cid) == "NEW"
            assert sends(fake, "ETHUSDT", COUNTDOWN_MS) == 0  # no open order there: no countdown
            armed = switch_records(records, "armed")
            assert len(armed) == 1  # the first arming, not every refresh
            assert armed[0]["symbol"] == "BTCUSDT"
            assert armed[0]["additional_data"]["countdown_ms"] == round(COUNTDOWN * 1000)

            fake.venue.cancel_order({"symbol": "BTCUSDT", "origClientOrderId": cid})
            wait_until(lambda: sends(fake, "BTCUSDT", "0") == 1, 30, "the countdown stopped")
            assert fake.venue.countdowns == {}
            # the venue saw the stop before the bot read its answer and recorded it
            disarmed = wait_until(
                lambda: switch_records(records, "disarmed"), 30, "the disarming on the record"
            )
            assert [d["additional_data"]["reason"] for d in disarmed] == ["no_open_orders"]
        finally:
            run.halt()
    assert not records.of_type("api_error")


def test_silent_bot_the_venue_cancels_the_orders_not_the_position_and_it_is_recorded(
    fake: FakeBinance, audit: AuditLogger, exchange: BinanceExchange, running: Running
) -> None:
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "bot-entry-1")
    exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 45_000.0, "bot-stop-1"
    )
    with capture_audit(audit) as records:
        cid = resting_order(fake)
        wait_until(lambda: sends(fake, "BTCUSDT", COUNTDOWN_MS) >= 2, 30, "the countdown running")
        # the bot falls silent: every refresh fails from now on
        fake.inject(ENDPOINT, Fault.server_error(503), times=10_000)
        wait_until(lambda: order_status(fake, cid) == "CANCELED", 30, "the venue's cancel")
        assert any(kind == "countdown_fired" for _, kind, _ in fake.venue.incidents)
        fired = wait_until(
            lambda: [r for r in records.of_type("api_error") if r["operation"] == "deadman_fired"],
            30,
            "the firing on the record",
        )
        failures = wait_until(
            lambda: (
                [
                    r["error"]
                    for r in records.of_type("api_error")
                    if r["operation"] == "deadman_switch"
                ]
                if any(
                    r["error"]["countdown_lapsed"]
                    for r in records.of_type("api_error")
                    if r["operation"] == "deadman_switch"
                )
                else None
            ),
            30,
            "the lapsed refreshes on the record",
        )
    assert fired[0]["symbol"] == "BTCUSDT"
    assert fired[0]["error"]["severity"] == "critical"
    assert fired[0]["error"]["seen_in"] == "order_update"
    assert fired[0]["error"]["client_order_id"] == cid
    assert fired[0]["error"]["seconds_since_refresh"] >= COUNTDOWN
    # many failed refreshes, two records: the first failure and the lapse
    assert len(fake.requests_to(ENDPOINT)) > 4
    assert [f["countdown_lapsed"] for f in failures] == [False, True]
    assert running.thread.is_alive()  # failures are retried, never raised
    # the venue's switch closes nothing; on this fake the algo stop-loss is not reached either
    assert fake.position_amount("BTCUSDT") == Decimal("0.010")
    assert [s["clientAlgoId"] for s in fake.open_stop_losses("BTCUSDT")] == ["bot-stop-1"]


def test_a_firing_the_stream_missed_is_found_at_the_venue_once_the_bot_is_heard_again(
    fake: FakeBinance, audit: AuditLogger, exchange: BinanceExchange
) -> None:
    # no order stream for the switch: as when the network was lost for REST and stream alike
    switch = DeadmanSwitch(exchange, audit, ["BTCUSDT"], countdown=COUNTDOWN, refresh=REFRESH)
    cid = resting_order(fake)
    with capture_audit(audit) as records:
        run = Running(switch)
        try:
            wait_until(lambda: "BTCUSDT" in fake.venue.countdowns, 30, "the countdown armed")
            fake.inject(ENDPOINT, Fault.server_error(503), times=10_000)
            wait_until(lambda: order_status(fake, cid) == "CANCELED", 30, "the venue's cancel")
            fake.faults.clear()  # the bot is heard again
            fired = wait_until(
                lambda: [r for r in records if r["operation"] == "deadman_fired"],
                30,
                "the firing on the record",
            )
            wait_until(lambda: switch_records(records, "disarmed"), 30, "nothing left to guard")
        finally:
            run.halt()
    assert [f["error"]["client_order_id"] for f in fired] == [cid]
    assert fired[0]["error"]["seen_in"] == "order_query"
    assert fired[0]["error"]["seconds_since_refresh"] >= COUNTDOWN


def test_clean_shutdown_stops_the_countdown_so_nothing_is_cancelled_later(
    fake: FakeBinance, audit: AuditLogger, exchange: BinanceExchange, running: Running
) -> None:
    cid = resting_order(fake)
    with capture_audit(audit) as records:
        wait_until(lambda: "BTCUSDT" in fake.venue.countdowns, 30, "the countdown armed")
        running.halt()
        running.switch.disarm_all()
        assert fake.venue.countdowns == {}
        last = [r for r in fake.requests_to(ENDPOINT) if r.params.get("symbol") == "BTCUSDT"][-1]
        assert last.params["countdownTime"] == "0"
        disarmed = switch_records(records, "disarmed")
        assert [d["additional_data"]["reason"] for d in disarmed] == ["shutdown"]
    # two countdowns later the order still stands
    deadline = fake.now_ms() + 2 * 1000 * COUNTDOWN
    wait_until(lambda: fake.now_ms() > deadline, 10, "two countdowns")
    assert order_status(fake, cid) == "NEW"


def test_a_refused_countdown_is_recorded_once_retried_and_armed_later(
    fake: FakeBinance, audit: AuditLogger, exchange: BinanceExchange
) -> None:
    resting_order(fake)
    fake.inject(ENDPOINT, Fault.error(-1003, "Too many requests."), times=3)
    switch = DeadmanSwitch(exchange, audit, ["BTCUSDT"], countdown=COUNTDOWN, refresh=REFRESH)
    with capture_audit(audit) as records:
        run = Running(switch)
        try:
            armed = wait_until(lambda: switch_records(records, "armed"), 30, "the arming")
        finally:
            run.halt()
    errors = [r for r in records.of_type("api_error") if r["operation"] == "deadman_switch"]
    assert len(errors) == 1 and errors[0]["error"]["failures"] == 1
    assert armed[0]["additional_data"]["after_failures"] == 3


@pytest.mark.slow
def test_a_testnet_bot_sends_the_countdown_and_stops_it_when_it_stops(tmp_path: Path) -> None:
    """The issue's "the countdown heartbeat is sent": the bot process, configured with
    ``[execution] deadman_seconds``, arms the symbol that has an open order and stops the
    countdown at a clean shutdown (SIGTERM)."""
    config = tmp_path / "bot.toml"
    config.write_text("[execution]\ndeadman_seconds = 5\n")
    with FakeBinance() as fake:
        bot = BotProcess(
            tmp_path,
            *("--mode", "testnet", "--symbols", "BTCUSDT", "--intervals", "1m"),
            *("--config", str(config)),
            env=fake_venue_env(fake.rest_url, fake.ws_url),
        )
        try:
            wait_until(
                lambda: any(r["event_type"] == "heartbeat" for r in bot.records()), 60, "startup"
            )
            resting_order(fake)
            wait_until(lambda: sends(fake, "BTCUSDT", "5000") >= 2, 30, "the countdown refreshed")
            bot.proc.send_signal(signal.SIGTERM)
            assert bot.wait(timeout=60) == 0
            assert sends(fake, "BTCUSDT", "0") == 1
            assert fake.venue.countdowns == {}
            actions = [
                (r["symbol"], r["additional_data"]["action"])
                for r in bot.records()
                if r["operation"] == "deadman_switch"
            ]
            assert actions == [("BTCUSDT", "armed"), ("BTCUSDT", "disarmed")]
        finally:
            bot.stop()
