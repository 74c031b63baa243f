"""Restarts and stream outages over the real python-binance client and the fake venue.

Startup: the fake is seeded as a crashed run would leave it (a position, the
bot's TP/SL, orders placed by hand), then the bot's own composition
(``bot.__main__.Bot`` in testnet mode) starts against it. Outage: the user-data
stream is cut while the take-profit fills, so its events are lost as on the
venue; after the stream is back the engine finds the fill by querying.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import Bot
from bot.audit import AuditLogger
from bot.config import load_settings
from bot.engine import TradingEngine
from bot.exchange.binance import BinanceExchange
from bot.execution import OrderExecutionManager, RetryPolicy
from bot.models import Candle, MarginType, OrderStatus, OrderUpdate, Signal, SignalType
from bot.risk import RiskLimits, RiskManager
from tests.fakebinance import API_KEY, API_SECRET, FakeBinance
from tests.integration.conftest import make_exchange, read_trail
from tests.waiting import wait_until

# ------------------------------------------------------------------ seeding

ALGO = dict[str, str]
OLD_TP: ALGO = {"clientAlgoId": "old-tp", "type": "TAKE_PROFIT_MARKET", "triggerPrice": "52000"}
OLD_SL: ALGO = {"clientAlgoId": "old-sl", "type": "STOP_MARKET", "triggerPrice": "49000"}
HAND_STOP: ALGO = {  # reduce-only with a quantity, as people place them by hand
    "clientAlgoId": "manual1",
    "type": "STOP_MARKET",
    "triggerPrice": "49000",
    "quantity": "0.010",
    "reduceOnly": "true",
}


def seed(fake: FakeBinance, amount: str, orders: Sequence[ALGO]) -> None:
    """Leave the venue as a run of the bot (ISOLATED margin) that crashed would."""
    venue = fake.venue
    venue.change_margin_type({"symbol": "BTCUSDT", "marginType": "ISOLATED"})
    if amount != "0":
        side = "SELL" if amount.startswith("-") else "BUY"
        venue.new_order(
            {
                "symbol": "BTCUSDT",
                "side": side,
                "type": "MARKET",
                "quantity": amount.lstrip("-"),
                "newClientOrderId": "old-e",
            }
        )
    for order in orders:
        params = {"algoType": "CONDITIONAL", "symbol": "BTCUSDT", "side": "SELL", **order}
        if "quantity" not in order:
            params["closePosition"] = "true"
        venue.new_algo_order(params)


def algo_status(fake: FakeBinance) -> dict[str, str]:
    return {a["clientAlgoId"]: a["algoStatus"] for a in fake.algo_orders_for("BTCUSDT")}


class Seen:
    """A second subscriber: once it saw an update, the engine (subscribed first) has too."""

    def __init__(self) -> None:
        self.updates: list[OrderUpdate] = []
        self._lock = threading.Lock()

    def __call__(self, update: OrderUpdate) -> None:
        with self._lock:
            self.updates.append(update)

    def has(self, cid: str, status: OrderStatus) -> bool:
        with self._lock:
            return any(u.client_order_id == cid and u.status is status for u in self.updates)


@pytest.fixture
def started_bot(fake: FakeBinance, audit: AuditLogger, tmp_path: Path) -> Iterator[Any]:
    """A function that starts the bot's composition in testnet mode against ``fake``."""
    bots: list[Bot] = []

    def start() -> Bot:
        settings = load_settings(
            ["--mode", "testnet", "--symbols", "BTCUSDT", "--intervals", "1m",
             "--audit-dir", str(tmp_path / "audit")],
            environ={
                "BINANCE_API_KEY": API_KEY,
                "BINANCE_API_SECRET": API_SECRET,
                "BINANCE_FUTURES_URL": fake.rest_url,
                "BINANCE_WS_URL": fake.ws_url,
            },
        )  # fmt: skip
        bot = Bot(settings, audit)
        bots.append(bot)
        bot.start()
        return bot

    yield start
    for bot in bots:
        bot.close()


def reconciled(audit_dir: Path) -> dict[str, Any]:
    (found,) = [r for r in read_trail(audit_dir) if r["operation"] == "reconcile_startup"]
    return found


# ------------------------------------------------------------------ startup


@dataclass(frozen=True)
class Case:
    name: str
    amount: str
    orders: tuple[ALGO, ...]
    action: str
    position_after: str
    statuses: dict[str, str]  # algo orders at the venue afterwards
    cancelled: tuple[tuple[str, str], ...] = ()  # audited (client id, reason)


CASES = [
    Case(
        "a protected position is kept with its orders",
        "0.010",
        (OLD_TP, OLD_SL),
        "adopt",
        "0.010",
        {"old-tp": "NEW", "old-sl": "NEW"},
    ),
    Case(
        "a reduce-only stop placed by hand protects the position too",
        "0.010",
        (HAND_STOP,),
        "adopt",
        "0.010",
        {"manual1": "NEW"},
    ),
    Case(
        "a position with only a take-profit is closed at market",
        "0.010",
        (OLD_TP,),
        "close_unprotected_position",
        "0",
        {"old-tp": "CANCELED"},
        (("old-tp", "trade_unwound"),),
    ),
    Case(
        "orphans of a flat symbol are cancelled, a stop placed by hand is not",
        "0",
        (OLD_TP, OLD_SL, HAND_STOP),
        "cancel_orphans",
        "0",
        {"old-tp": "CANCELED", "old-sl": "CANCELED", "manual1": "NEW"},
        (("old-tp", "orphan_after_restart"), ("old-sl", "orphan_after_restart")),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_startup_reconciliation_at_the_venue(
    fake: FakeBinance, started_bot: Any, audit_dir: Path, case: Case
) -> None:
    seed(fake, case.amount, case.orders)

    started_bot()

    assert fake.position_amount("BTCUSDT") == Decimal(case.position_after)
    assert algo_status(fake) == case.statuses
    found = reconciled(audit_dir)
    assert found["additional_data"]["action"] == case.action
    assert {o["client_order_id"] for o in found["additional_data"]["open_orders"]} == {
        o["clientAlgoId"] for o in case.orders
    }
    records = [r for r in read_trail(audit_dir) if r.get("trace_id") == found["trace_id"]]
    cancelled = [
        (r["order_data"]["client_order_id"], r["additional_data"]["reason"])
        for r in records
        if r["event_type"] == "order_cancelled"
    ]
    assert sorted(cancelled) == sorted(case.cancelled)
    closes = [r for r in records if r["operation"] == "close_unprotected_position"]
    if case.action == "close_unprotected_position":
        (close,) = closes
        assert close["event_type"] == "order_placed"
        assert close["order_data"]["client_order_id"] == f"{found['trace_id']}-x"
        (sent,) = [o for o in fake.orders_for("BTCUSDT") if o["clientOrderId"].endswith("-x")]
        assert (sent["reduceOnly"], sent["status"], sent["side"]) == (True, "FILLED", "SELL")
    else:
        assert closes == []


def test_an_adopted_stop_loss_fill_is_audited_under_its_old_trace(
    fake: FakeBinance, started_bot: Any, audit_dir: Path
) -> None:
    seed(fake, "0.010", (OLD_TP, OLD_SL))
    bot = started_bot()
    seen = Seen()
    bot.venue.exchange.subscribe_order_updates(seen)
    assert bot.venue.exchange.streams.wait_connected("user_data_stream", 10)

    fake.set_price("BTCUSDT", "48900")

    wait_until(lambda: seen.has("old-tp", OrderStatus.CANCELED), what="the take-profit cancel")
    assert algo_status(fake) == {"old-tp": "CANCELED", "old-sl": "FINISHED"}
    old = [
        r
        for r in read_trail(audit_dir)
        if r.get("trace_id") == "old" and r["event_type"] != "position_query"
    ]
    # Reported by the stream, or by the look-up after connecting if that ran later: once.
    assert [r["event_type"] for r in old] == ["order_filled", "order_cancelled"]
    assert old[0]["additional_data"]["role"] == "sl"
    assert old[1]["order_data"]["client_order_id"] == "old-tp"


# ------------------------------------------------------------------ outage


class LongOnce:
    """Goes long on the first candle, 2 % stop (49 000), 4 % target (52 000)."""

    history_needed = 1

    def evaluate(self, candles: Sequence[Candle]) -> Signal | None:
        last = candles[-1]
        return Signal(
            symbol=last.symbol,
            signal_type=SignalType.LONG,
            entry=last.close,
            take_profit=last.close * 1.04,
            stop_loss=last.close * 0.98,
            interval=last.interval,
            strategy="long_once",
            close_price=last.close,
            candle_close_time=last.close_time,
        )


def engine_over(exchange: BinanceExchange, audit: AuditLogger) -> TradingEngine:
    execution = OrderExecutionManager(
        exchange,
        audit,
        leverage=5,
        margin_type=MarginType.ISOLATED,
        retry=RetryPolicy(max_attempts=3, backoff_base=0.01),
        sleep=lambda seconds: None,
    )
    execution.configure_symbol("BTCUSDT")
    return TradingEngine(
        strategy=LongOnce(),
        risk=RiskManager(
            RiskLimits(risk_percent=1.0, max_position_percent=25.0, leverage=5), audit
        ),
        execution=execution,
        audit=audit,
    )


@pytest.mark.parametrize(
    ("outage", "stream_options"),
    [
        # the SDK keeps trying (and gets back in by itself) ...
        ("sdk_reconnect", {"max_reconnects": 50}),
        # ... or gives up after one refused attempt and the supervisor restarts the stream
        ("supervisor_restart", {"max_reconnects": 2}),
    ],
)
def test_a_take_profit_filled_while_the_user_stream_was_down_is_audited_once(
    fake: FakeBinance,
    audit: AuditLogger,
    audit_dir: Path,
    outage: str,
    stream_options: dict[str, Any],
) -> None:
    exchange = make_exchange(fake, audit, **stream_options)
    try:
        engine = engine_over(exchange, audit)
        seen = Seen()
        engine.reconcile_at_startup(["BTCUSDT"])
        exchange.subscribe_order_updates(
            engine.on_order_update, on_connected=engine.recover_missed_updates
        )
        exchange.subscribe_order_updates(seen)
        assert exchange.streams.wait_connected("user_data_stream", 10)
        engine.on_candle(
            Candle("BTCUSDT", "1m", 0, 50_000.0, 50_000.0, 50_000.0, 50_000.0, 1.0, 59_999)
        )
        assert engine.stats.trades_executed == 1
        trace_id = next(r["trace_id"] for r in read_trail(audit_dir) if "trace_id" in r)
        entry, tp, sl = f"{trace_id}-e", f"{trace_id}-tp", f"{trace_id}-sl"
        wait_until(lambda: seen.has(entry, OrderStatus.FILLED), what="the entry fill event")

        fake.refuse_websockets = True
        fake.drop_websockets()
        wait_until(lambda: fake.websocket_count(user=True) == 0, what="the stream to be down")
        fake.set_price("BTCUSDT", "52100")  # the take-profit fills; its events reach nobody
        assert fake.position_amount("BTCUSDT") == 0
        if outage == "supervisor_restart":
            wait_until(
                lambda: exchange.streams.restarts["user_data_stream"] >= 1,
                timeout=20,
                what="the SDK to give up and the supervisor to restart the stream",
            )
        fake.refuse_websockets = False

        wait_until(lambda: algo_status(fake)[sl] == "CANCELED", timeout=30, what="the recovery")
        wait_until(lambda: seen.has(sl, OrderStatus.CANCELED), what="the venue's cancel event")
    finally:
        exchange.close()

    if outage == "sdk_reconnect":
        assert exchange.streams.restarts["user_data_stream"] == 0
    assert not seen.has(tp, OrderStatus.FILLED), "the stream itself never told of the fill"
    after = [
        (r["event_type"], r["operation"], (r.get("order_data") or r["response"])["client_order_id"])
        for r in read_trail(audit_dir)
        if r.get("trace_id") == trace_id and r["event_type"] in ("order_filled", "order_cancelled")
    ]
    assert after == [
        ("order_filled", "on_order_update", entry),
        ("order_filled", "recover_missed_updates", tp),
        ("order_cancelled", "cancel_order", sl),
    ]
    assert algo_status(fake)[tp] == "FINISHED"
