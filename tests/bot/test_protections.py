"""Protections and pre-trade limits (SPEC §11) as pure rules, table by table."""

from __future__ import annotations

import pytest

from bot.control.protections import (
    PreTradeLimits,
    Protections,
    ProtectionSettings,
    StoplossGuard,
    check_limits,
    next_utc_midnight,
)

DAY = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOON = DAY + 12 * 3600


@pytest.mark.parametrize(
    ("fills", "trips"),
    [
        ([(-200.0, 0.0)], False),  # -2 % of 10 000: within a 3 % limit
        ([(-200.0, 0.0), (-99.0, 0.0)], False),  # -2.99 %
        ([(-200.0, 0.0), (-99.0, 2.0)], True),  # fees count: -3.01 %
        ([(-400.0, 0.0), (200.0, 0.0)], False),  # net of the day's wins
    ],
)
def test_the_daily_loss_limit_counts_realized_pnl_net_of_fees(
    fills: list[tuple[float, float]], trips: bool
) -> None:
    p = Protections(ProtectionSettings(daily_loss_limit_percent=3.0))
    p.on_balance(10_000.0, 10_000.0, NOON)
    for pnl, fee in fills:
        p.on_fill("BTCUSDT", "sl", pnl, fee, NOON)
    trigger = p.check_account(NOON)
    assert (trigger is not None) == trips
    if trigger is not None:
        assert trigger.protection == "daily_loss_limit"
        assert trigger.symbol is None
        assert trigger.until == DAY + 86_400  # reducing until the next UTC day
        assert trigger.figures["start_balance"] == 10_000.0
        assert p.check_account(NOON) is None  # trips once a day


def test_the_daily_loss_starts_again_on_the_next_utc_day() -> None:
    p = Protections(ProtectionSettings(daily_loss_limit_percent=1.0))
    p.on_balance(10_000.0, 10_000.0, NOON)
    p.on_fill("BTCUSDT", "sl", -500.0, 0.0, NOON)
    assert p.check_account(NOON) is not None
    tomorrow = NOON + 86_400
    p.on_balance(9_500.0, 9_500.0, tomorrow)
    assert p.check_account(tomorrow) is None


def test_the_day_starting_balance_excludes_fills_seen_before_the_first_balance() -> None:
    p = Protections(ProtectionSettings(daily_loss_limit_percent=5.0))
    p.on_fill("BTCUSDT", "sl", -400.0, 0.0, NOON)
    p.on_balance(9_600.0, 9_600.0, NOON)  # the loss is already in the wallet
    p.on_fill("BTCUSDT", "sl", -150.0, 0.0, NOON)
    trigger = p.check_account(NOON)
    assert trigger is not None and trigger.figures["start_balance"] == 10_000.0


@pytest.mark.parametrize(
    ("equities", "trips"),
    [
        ([10_000.0, 9_100.0], False),
        ([10_000.0, 9_000.0], True),  # exactly 10 %
        ([10_000.0, 11_000.0, 9_950.0], False),  # 9.5 % from the new peak
        ([10_000.0, 11_000.0, 9_900.0], True),
    ],
)
def test_max_drawdown_measures_equity_from_its_peak(equities: list[float], trips: bool) -> None:
    p = Protections(ProtectionSettings(max_drawdown_percent=10.0))
    trigger = None
    for equity in equities:
        p.on_balance(equity, equity, NOON)
        trigger = p.check_account(NOON) or trigger
    assert (trigger is not None) == trips
    if trigger is not None:
        assert trigger.protection == "max_drawdown" and trigger.until is None


def test_an_operator_resume_takes_the_current_equity_as_the_new_peak() -> None:
    p = Protections(ProtectionSettings(max_drawdown_percent=10.0))
    p.on_balance(10_000.0, 10_000.0, NOON)
    p.on_balance(8_000.0, 8_000.0, NOON)
    assert p.check_account(NOON) is not None
    p.operator_resumed(8_000.0, NOON)
    p.on_balance(7_500.0, 7_500.0, NOON)
    assert p.check_account(NOON) is None  # 6.25 % from the new peak


GUARD = ProtectionSettings(stoploss_guard=StoplossGuard(count=2, window=3600.0, lock=7200.0))


@pytest.mark.parametrize(
    ("exits", "locked"),
    [
        ([("sl", 0.0)], False),
        ([("sl", 0.0), ("sl", 600.0)], True),
        ([("sl", 0.0), ("tp", 600.0)], False),  # only stop-loss exits count ...
        ([("sl", 0.0), ("rs", 600.0)], True),  # ... a stop-loss placed again included
        ([("sl", 0.0), ("sl", 3600.0)], False),  # the first fell out of the window
    ],
)
def test_the_stoploss_guard_locks_a_symbol_after_count_stop_losses_in_the_window(
    exits: list[tuple[str, float]], locked: bool
) -> None:
    p = Protections(GUARD)
    tripped = []
    for role, offset in exits:
        tripped += p.on_fill("BTCUSDT", role, -10.0, 0.0, NOON + offset)
    last = NOON + exits[-1][1]
    lock = p.symbol_lock("BTCUSDT", last)
    assert (lock is not None) == locked
    assert p.symbol_lock("ETHUSDT", last) is None  # one symbol only
    if lock is not None:
        assert tripped[-1] == lock
        assert lock.until == last + 7200.0
        assert p.symbol_lock("BTCUSDT", last + 7200.0) is None


@pytest.mark.parametrize(
    ("role", "locks"),
    [("tp", True), ("sl", True), ("rs", True), ("x", True), ("xl", True), ("e", False)],
)
def test_a_cooldown_follows_every_exit_but_not_an_entry(role: str, locks: bool) -> None:
    p = Protections(ProtectionSettings(cooldown=300.0))
    tripped = p.on_fill("BTCUSDT", role, 5.0, 0.1, NOON)
    assert bool(tripped) == locks
    assert (p.symbol_lock("BTCUSDT", NOON + 299.0) is not None) == locks
    assert p.symbol_lock("BTCUSDT", NOON + 300.0) is None


def test_protections_that_are_not_set_never_trip() -> None:
    p = Protections(ProtectionSettings())
    p.on_balance(10_000.0, 10_000.0, NOON)
    for _ in range(10):
        assert p.on_fill("BTCUSDT", "sl", -5_000.0, 1.0, NOON) == []
    p.on_balance(1.0, 1.0, NOON)
    assert p.check_account(NOON) is None
    assert p.symbol_lock("BTCUSDT", NOON) is None


@pytest.mark.parametrize(
    ("limits", "notional", "entry", "last", "orders", "reason"),
    [
        (PreTradeLimits(), 1e9, 100.0, None, 10_000, None),
        (PreTradeLimits(max_order_notional=1000.0), 1000.0, 100.0, 100.0, 0, None),
        (PreTradeLimits(max_order_notional=1000.0), 1000.01, 100.0, 100.0, 0, "max_order_notional"),
        (PreTradeLimits(price_collar_percent=1.0), 10.0, 101.0, 100.0, 0, None),
        (PreTradeLimits(price_collar_percent=1.0), 10.0, 101.5, 100.0, 0, "price_collar"),
        (PreTradeLimits(price_collar_percent=1.0), 10.0, 98.9, 100.0, 0, "price_collar"),
        (PreTradeLimits(price_collar_percent=1.0), 10.0, 100.0, None, 0, "price_collar"),
        (PreTradeLimits(max_orders_per_minute=6), 10.0, 100.0, 100.0, 3, None),
        (PreTradeLimits(max_orders_per_minute=6), 10.0, 100.0, 100.0, 4, "order_rate_limit"),
    ],
)
def test_pre_trade_limits(
    limits: PreTradeLimits,
    notional: float,
    entry: float,
    last: float | None,
    orders: int,
    reason: str | None,
) -> None:
    refusal = check_limits(
        limits, notional=notional, entry=entry, last_price=last, orders_last_minute=orders
    )
    assert (refusal.reason if refusal else None) == reason


def test_next_utc_midnight() -> None:
    assert next_utc_midnight(NOON) == DAY + 86_400
    assert next_utc_midnight(DAY) == DAY + 86_400
