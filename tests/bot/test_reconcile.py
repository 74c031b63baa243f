"""Restarts on the paper venue: what a previous run left open, and updates a stream missed.

The venue is seeded through its own API as a crashed run would have left it,
then the engine starts as ``Bot.start`` does it: reconcile every symbol, then
subscribe to order updates with ``on_connected`` (the paper venue calls it at
once). Everything is read back from the audit files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.errors import VenueRejectedError
from bot.models import (
    Candle,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
    SignalType,
)

from .conftest import WIDE_STOP, Rig, build_rig, candle

BUY, SELL = OrderSide.BUY, OrderSide.SELL
TP, SL = OrderType.TAKE_PROFIT_MARKET, OrderType.STOP_MARKET
OLD_TP = ("old-tp", SELL, TP, 52_000.0)  # a long's take-profit and stop-loss, trace "old"
OLD_SL = ("old-sl", SELL, SL, 49_000.0)
HAND_STOP = ("manual1", SELL, SL, 49_000.0)  # not an id the bot makes

Seeded = tuple[str, OrderSide, OrderType, float]


@pytest.fixture
def restarted(tmp_path: Path) -> Iterator[Rig]:
    """A paper venue with a running market, and an engine not yet subscribed to it."""
    built = build_rig(tmp_path / "audit", subscribe=False)
    yield built
    built.audit.close()


def seed(rig: Rig, amount: float, orders: tuple[Seeded, ...]) -> None:
    """Leave a position and open TP/SL at the venue, as a run that crashed would."""
    if amount:
        side = BUY if amount > 0 else SELL
        rig.paper.place_market_order("BTCUSDT", side, abs(amount), "old-e")
    for cid, side, order_type, stop in orders:
        rig.paper.place_conditional_order("BTCUSDT", side, order_type, stop, cid)
    rig.paper.on_market_candle(candle(50_000.0))  # that run's updates went to nobody


def start(rig: Rig) -> None:
    """What Bot.start does after configuring the symbols."""
    rig.engine.reconcile_at_startup(["BTCUSDT"])
    subscribe(rig)


def subscribe(rig: Rig) -> None:
    rig.paper.subscribe_order_updates(
        rig.engine.on_order_update, on_connected=rig.engine.recover_missed_updates
    )


def summary_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [r for r in records if r["operation"] == "reconcile_startup"]
    assert found["event_type"] == "position_query"
    return found


def open_ids(rig: Rig) -> list[str]:
    return sorted(o.client_order_id for o in rig.paper.open_orders("BTCUSDT"))


# ------------------------------------------------------------------ startup


@dataclass(frozen=True)
class Case:
    name: str
    amount: float  # seeded BTCUSDT position, > 0 long
    orders: tuple[Seeded, ...]
    action: str
    trace: str | None  # "old" (from the orders found), "fresh", or None (no trace)
    closed: bool = False
    cancelled: tuple[tuple[str, str], ...] = ()  # (client id, reason)
    left_open: tuple[str, ...] = ()


CASES = [
    Case(
        "a long protected by its stop-loss is adopted as it is",
        0.1,
        (OLD_TP, OLD_SL),
        "adopt",
        "old",
        left_open=("old-sl", "old-tp"),
    ),
    Case(
        "a long protected by a stop placed by hand is adopted under a fresh trace",
        0.1,
        (HAND_STOP,),
        "adopt",
        "fresh",
        left_open=("manual1",),
    ),
    Case(
        "a long with only its take-profit is closed and the take-profit cancelled",
        0.1,
        (OLD_TP,),
        "close_unprotected_position",
        "old",
        closed=True,
        cancelled=(("old-tp", "trade_unwound"),),
    ),
    Case(
        "a long without any order is closed under a fresh trace",
        0.1,
        (),
        "close_unprotected_position",
        "fresh",
        closed=True,
    ),
    Case(
        "a short whose stop sits on the wrong side is closed",
        -0.1,
        (OLD_SL,),
        "close_unprotected_position",
        "old",
        closed=True,
        cancelled=(("old-sl", "trade_unwound"),),
    ),
    Case(
        "orphaned take-profit and stop-loss of a flat symbol are cancelled",
        0.0,
        (OLD_TP, OLD_SL),
        "cancel_orphans",
        "old",
        cancelled=(("old-sl", "orphan_after_restart"), ("old-tp", "orphan_after_restart")),
    ),
    Case(
        "a stop placed by hand on a flat symbol is left alone",
        0.0,
        (HAND_STOP,),
        "none",
        None,
        left_open=("manual1",),
    ),
    Case("a flat symbol without orders needs nothing", 0.0, (), "none", None),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_startup_reconciliation(restarted: Rig, case: Case) -> None:
    seed(restarted, case.amount, case.orders)
    start(restarted)

    records = restarted.records()
    found = summary_of(records)
    assert found["symbol"] == "BTCUSDT"
    assert found["response"]["position_amount"] == case.amount
    data = found["additional_data"]
    assert data["action"] == case.action
    assert data["protected"] == (case.action == "adopt" if case.amount else None)
    assert sorted(o["client_order_id"] for o in data["open_orders"]) == sorted(
        cid for cid, *_ in case.orders
    )
    if case.trace is None:
        assert "trace_id" not in found
    elif case.trace == "old":
        assert found["trace_id"] == "old"
    else:
        assert found["trace_id"] not in (None, "old")

    trace_id = found.get("trace_id")
    after = [r for r in records[records.index(found) + 1 :] if r.get("trace_id") == trace_id]
    placed = [r for r in after if r["event_type"] == "order_placed"]
    cancelled = [r for r in after if r["event_type"] == "order_cancelled"]
    if case.closed:
        (close,) = placed
        assert close["operation"] == "close_unprotected_position"
        assert close["order_data"] == {
            "order_type": "MARKET",
            "side": "SELL" if case.amount > 0 else "BUY",
            "client_order_id": f"{trace_id}-x",
            "quantity": abs(case.amount),
            "reduce_only": True,
        }
        assert restarted.paper.position("BTCUSDT").amount == 0.0
    else:
        assert placed == []
        assert restarted.paper.position("BTCUSDT").amount == case.amount
    assert sorted(
        (r["order_data"]["client_order_id"], r["additional_data"]["reason"]) for r in cancelled
    ) == sorted(case.cancelled)
    assert open_ids(restarted) == sorted(case.left_open)


def test_an_unprotected_position_that_cannot_be_closed_stops_the_startup(restarted: Rig) -> None:
    seed(restarted, 0.1, (OLD_TP,))
    refusal = VenueRejectedError(-2022, "ReduceOnly Order is rejected.")
    restarted.exchange.fail("place_market_order", *[refusal] * 10)  # every retry of the close

    with pytest.raises(VenueRejectedError):
        restarted.engine.reconcile_at_startup(["BTCUSDT"])

    records = restarted.records()
    alert = records[-1]
    assert alert["event_type"] == "api_error" and alert["error"]["severity"] == "critical"
    rejected = records[-2]
    assert rejected["event_type"] == "order_rejected"
    assert rejected["operation"] == "close_unprotected_position"
    assert rejected["trace_id"] == "old"
    assert rejected["error"]["error_code"] == -2022
    assert restarted.paper.position("BTCUSDT").amount == 0.1


# ---------------------------------------------------------- missed updates


def events_of(rig: Rig, trace_id: str, since: int) -> list[tuple[str, str, str]]:
    """(event type, operation, client order id) of the trace's order events after ``since``."""
    return [
        (
            r["event_type"],
            r["operation"],
            (r.get("order_data") or r.get("response") or {}).get("client_order_id", ""),
        )
        for r in rig.records()[since:]
        if r.get("trace_id") == trace_id and r["event_type"] in ("order_filled", "order_cancelled")
    ]


@pytest.mark.parametrize(
    ("origin", "crossing", "filled", "sibling"),
    [
        ("adopted", candle(52_100.0, minute=1), "tp", "sl"),
        ("adopted", candle(48_900.0, minute=1), "sl", "tp"),
        ("traded", candle(52_100.0, minute=1), "tp", "sl"),
        ("traded", candle(48_900.0, minute=1), "sl", "tp"),
    ],
)
def test_a_fill_the_stream_missed_is_reported_once_after_it_connects(
    restarted: Rig, origin: str, crossing: Candle, filled: str, sibling: str
) -> None:
    rig = restarted
    if origin == "adopted":
        seed(rig, 0.1, (OLD_TP, OLD_SL))
        rig.engine.reconcile_at_startup(["BTCUSDT"])
        trace_id = "old"
    else:
        rig.strategy.plan[50_000.0] = (SignalType.LONG, WIDE_STOP, 0.04)
        rig.feed(candle(50_000.0))
        trace_id = next(r["trace_id"] for r in rig.records() if "trace_id" in r)
    since = len(rig.records())
    rig.paper.on_market_candle(crossing)  # fills while nobody listens: the update is lost
    assert rig.paper.position("BTCUSDT").amount == 0.0

    subscribe(rig)  # (re)connected: the engine looks up what it follows
    rig.paper.on_market_candle(candle(50_000.0, minute=2))  # the venue's cancel event comes
    rig.engine.recover_missed_updates()  # a later reconnect finds nothing new

    assert events_of(rig, trace_id, since) == [
        ("order_filled", "recover_missed_updates", f"{trace_id}-{filled}"),
        ("order_cancelled", "cancel_order", f"{trace_id}-{sibling}"),
    ]
    assert open_ids(rig) == []


def test_recovery_reports_nothing_while_the_orders_stand(restarted: Rig) -> None:
    seed(restarted, 0.1, (OLD_TP, OLD_SL))
    start(restarted)
    before = len(restarted.records())

    restarted.engine.recover_missed_updates()

    assert len(restarted.records()) == before
    assert open_ids(restarted) == ["old-sl", "old-tp"]


# ------------------------------------------------------- what "protected" means


def stop(
    side: OrderSide,
    *,
    close_position: bool = False,
    reduce_only: bool = False,
    quantity: float = 0.0,
    order_type: OrderType = SL,
    symbol: str = "BTCUSDT",
) -> OrderResult:
    return OrderResult(
        symbol=symbol,
        client_order_id="x1",
        order_type=order_type,
        side=side,
        status=OrderStatus.NEW,
        quantity=quantity,
        stop_price=49_000.0,
        close_position=close_position,
        reduce_only=reduce_only,
    )


@pytest.mark.parametrize(
    ("amount", "orders", "protected"),
    [
        (0.1, [stop(SELL, close_position=True)], True),
        (-0.1, [stop(BUY, close_position=True)], True),
        (0.1, [stop(BUY, close_position=True)], False),  # wrong side
        (0.1, [stop(SELL, close_position=True, order_type=TP)], False),  # a target, no stop
        (0.1, [stop(SELL, close_position=True, symbol="ETHUSDT")], False),
        (0.1, [stop(SELL, reduce_only=True, quantity=0.1)], True),
        (0.1, [stop(SELL, reduce_only=True, quantity=0.05)] * 2, True),
        (0.1, [stop(SELL, reduce_only=True, quantity=0.05)], False),  # half the position
        (0.1, [stop(SELL, quantity=0.1)], False),  # not reduce-only: may open a short
        (0.1, [], False),
        (0.0, [], True),
    ],
)
def test_a_position_is_protected_only_by_a_stop_that_closes_all_of_it(
    amount: float, orders: list[OrderResult], protected: bool
) -> None:
    assert Position("BTCUSDT", amount=amount).is_protected_by(orders) is protected
