"""Trading states (SPEC §11): who may send which order, and every change on the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from bot.clock import FakeClock
from bot.control.state import (
    OrderKind,
    Source,
    StateChange,
    TradingControl,
    TradingState,
    kind_of,
    order_refusal,
)
from bot.models import OrderRequest, OrderSide, OrderType

from .conftest import read_trail

ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
ENTRY, EXIT_ORDER, CLOSE = OrderKind.ENTRY, OrderKind.EXIT_ORDER, OrderKind.CLOSE


@pytest.mark.parametrize(
    ("state", "kind", "refusal"),
    [
        (ACTIVE, ENTRY, None),
        (ACTIVE, EXIT_ORDER, None),
        (ACTIVE, CLOSE, None),
        (REDUCING, ENTRY, "trading_reducing"),
        (REDUCING, EXIT_ORDER, None),  # take-profits and stop-losses still go out
        (REDUCING, CLOSE, None),
        (HALTED, ENTRY, "trading_halted"),
        (HALTED, EXIT_ORDER, "trading_halted"),  # no new order at all ...
        (HALTED, CLOSE, None),  # ... except closes (flatten, the protective close)
    ],
)
def test_which_orders_each_state_lets_through(
    state: TradingState, kind: OrderKind, refusal: str | None
) -> None:
    assert order_refusal(state, kind) == refusal


ENTRY_ORDER = OrderRequest("BTCUSDT", OrderSide.BUY, OrderType.MARKET, "t-e", quantity=1.0)
CLOSE_ORDER = OrderRequest(
    "BTCUSDT", OrderSide.SELL, OrderType.MARKET, "t-x", quantity=1.0, reduce_only=True
)
STOP_ORDER = OrderRequest(
    "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, "t-sl", stop_price=1.0, close_position=True
)


LIMIT_CLOSE = OrderRequest(
    "BTCUSDT", OrderSide.SELL, OrderType.LIMIT, "t-xl", quantity=1.0, price=1.0, reduce_only=True
)
LIMIT_ENTRY = OrderRequest(
    "BTCUSDT", OrderSide.BUY, OrderType.LIMIT, "t-e", quantity=1.0, price=1.0
)


@pytest.mark.parametrize(
    ("request_", "kind"),
    [
        (ENTRY_ORDER, ENTRY),
        (CLOSE_ORDER, CLOSE),
        (STOP_ORDER, EXIT_ORDER),
        (LIMIT_CLOSE, CLOSE),  # the protective close's IOC fallback still closes when halted
        (LIMIT_ENTRY, ENTRY),
    ],
)
def test_an_order_request_is_classified_by_what_it_can_do(
    request_: OrderRequest, kind: OrderKind
) -> None:
    assert kind_of(request_) is kind


@pytest.fixture
def audit(tmp_path: Path) -> Any:
    logger = AuditLogger(tmp_path / "audit", fsync_interval=0.05)
    yield logger
    logger.close()


def changes(audit: AuditLogger) -> list[dict[str, Any]]:
    audit.flush()
    return [
        r["additional_data"]
        for r in read_trail(audit.audit_dir)
        if r["event_type"] == "trading_state_changed"
    ]


def test_an_operator_change_is_recorded_with_from_to_reason_source_and_user(
    audit: AuditLogger,
) -> None:
    control = TradingControl(audit, clock=FakeClock())
    control.change(HALTED, source=Source.OPERATOR, reason="news at 14:00", operator="alice")

    assert control.state is HALTED
    assert changes(audit) == [
        {
            "from": "active",
            "to": "halted",
            "reason": "news at 14:00",
            "source": "operator",
            "operator": "alice",
        }
    ]


def test_a_breaker_only_tightens_and_resumes_only_its_own_change(audit: AuditLogger) -> None:
    control = TradingControl(audit, clock=FakeClock())
    assert control.tighten(REDUCING, source=Source.ALERT, reason="r", rule="a")
    assert control.tighten(HALTED, source=Source.ALERT, reason="r", rule="b")
    assert not control.tighten(REDUCING, source=Source.ALERT, reason="r", rule="a")  # looser
    assert not control.release(source=Source.ALERT, rule="a", reason="resolved")  # b acted since
    assert control.state is HALTED
    assert control.release(source=Source.ALERT, rule="b", reason="resolved")
    assert control.state is ACTIVE
    assert [(c["to"], c.get("rule")) for c in changes(audit)] == [
        ("reducing", "a"),
        ("halted", "b"),
        ("active", "b"),
    ]


def test_an_operator_act_after_a_breaker_is_not_undone_by_its_resolution(
    audit: AuditLogger,
) -> None:
    control = TradingControl(audit, clock=FakeClock())
    control.tighten(HALTED, source=Source.ALERT, reason="r", rule="a")
    control.change(HALTED, source=Source.OPERATOR, reason="keep it", operator="alice")
    assert not control.release(source=Source.ALERT, rule="a", reason="resolved")
    assert control.state is HALTED


def test_a_protection_state_ends_by_itself_at_its_until(audit: AuditLogger) -> None:
    clock = FakeClock()
    control = TradingControl(audit, clock=clock)
    control.tighten(
        REDUCING,
        source=Source.PROTECTION,
        reason="loss",
        rule="daily_loss_limit",
        until=clock.now + 60,
    )
    clock.advance(59)
    assert control.entry_refusal() == "trading_reducing"
    clock.advance(1)
    assert control.entry_refusal() is None
    assert changes(audit)[-1] == {
        "from": "reducing",
        "to": "active",
        "reason": "daily_loss_limit ended",
        "source": "protection",
        "rule": "daily_loss_limit",
    }


@pytest.mark.parametrize(
    ("restored", "now", "state", "reason"),
    [
        (None, 100.0, ACTIVE, "no earlier state on the trail"),
        (
            StateChange(HALTED, Source.OPERATOR, "x", 10.0, operator="bob"),
            100.0,
            HALTED,
            "restored from the trail (set by operator)",
        ),
        (
            StateChange(REDUCING, Source.PROTECTION, "x", 10.0, rule="cooldown", until=50.0),
            100.0,
            ACTIVE,
            "cooldown ended before this start",
        ),
    ],
)
def test_every_start_records_its_state_with_source_startup(
    audit: AuditLogger,
    restored: StateChange | None,
    now: float,
    state: TradingState,
    reason: str,
) -> None:
    control = TradingControl(audit, clock=FakeClock(now))
    control.start(restored)
    assert control.state is state
    record = changes(audit)[-1]
    assert (record["to"], record["source"], record["reason"]) == (state.value, "startup", reason)


def test_the_gate_refuses_entries_beyond_the_order_rate_but_never_closes(
    audit: AuditLogger,
) -> None:
    clock = FakeClock()
    control = TradingControl(audit, clock=clock, max_orders_per_minute=3)
    assert [control(ENTRY_ORDER) for _ in range(3)] == [None, None, None]
    refused = control(ENTRY_ORDER)
    assert refused is not None and refused.reason == "order_rate_limit"
    assert control(CLOSE_ORDER) is None
    clock.advance(60.0)
    assert control(ENTRY_ORDER) is None


def test_the_gate_refuses_what_the_state_forbids(audit: AuditLogger) -> None:
    control = TradingControl(audit, clock=FakeClock())
    control.change(HALTED, source=Source.OPERATOR, reason="x", operator="alice")
    refused = control(STOP_ORDER)
    assert refused is not None and refused.reason == "trading_halted"


def test_who_set_the_state_survives_any_number_of_restarts(audit: AuditLogger) -> None:
    act = StateChange(HALTED, Source.ALERT, "rejections", 10.0, rule="orders")
    for _ in range(3):  # each start reads back the record the previous start wrote
        control = TradingControl(audit, clock=FakeClock(100.0))
        control.start(act)
        record = changes(audit)[-1]
        assert record["source"] == "startup"
        act = StateChange.from_audit(record, at=100.0)
    assert act == StateChange(HALTED, Source.ALERT, "rejections", 10.0, rule="orders")
    assert control.release(source=Source.ALERT, rule="orders", reason="resolved")
