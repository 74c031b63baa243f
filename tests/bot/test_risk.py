"""Risk checks and sizing as tables: inputs, and the decision they must give."""

from __future__ import annotations

import pytest

from bot.models import Balance, Position, Signal, SignalType, SymbolFilters
from bot.risk import PositionSize, RiskLimits, RiskRejection, check_signal, size_position

BTC = SymbolFilters("BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100)
LIMITS = RiskLimits(risk_percent=1.0, max_position_percent=20.0, leverage=10)
FLAT = Position("BTCUSDT")
RICH = Balance("USDT", 10_000.0, 10_000.0)


def signal(side: str = "LONG", entry: float = 50_000.0, tp: float = 52_000.0, sl: float = 49_000.0):
    return Signal(
        symbol="BTCUSDT",
        signal_type=SignalType(side),
        entry=entry,
        take_profit=tp,
        stop_loss=sl,
        interval="1m",
        strategy="table",
        close_price=entry,
        candle_close_time=0,
    )


@pytest.mark.parametrize(
    ("case", "sig", "position", "reason"),
    [
        ("open long blocks", signal(), Position("BTCUSDT", amount=0.1), "existing_position"),
        ("open short blocks", signal(), Position("BTCUSDT", amount=-0.1), "existing_position"),
        ("unknown position", signal(), None, "position_unavailable"),
        ("long tp below entry", signal(tp=49_500.0), FLAT, "invalid_take_profit"),
        ("long tp at entry", signal(tp=50_000.0), FLAT, "invalid_take_profit"),
        ("long sl above entry", signal(sl=50_500.0), FLAT, "invalid_stop_loss"),
        ("long sl at entry", signal(sl=50_000.0), FLAT, "invalid_stop_loss"),
        (
            "short tp above entry",
            signal("SHORT", tp=51_000.0, sl=51_500.0),
            FLAT,
            "invalid_take_profit",
        ),
        (
            "short sl below entry",
            signal("SHORT", tp=48_000.0, sl=49_000.0),
            FLAT,
            "invalid_stop_loss",
        ),
        ("sl within half a tick", signal(sl=49_999.96), FLAT, "zero_stop_distance"),
        ("negative price", signal(sl=-1.0), FLAT, "invalid_price"),
        ("nan price", signal(tp=float("nan")), FLAT, "invalid_price"),
    ],
)
def test_signal_checks(case: str, sig: Signal, position: Position | None, reason: str) -> None:
    rejection = check_signal(sig, position, RICH, LIMITS, BTC)
    assert isinstance(rejection, RiskRejection), case
    assert rejection.reason == reason, case
    assert rejection.message and rejection.validation_failed


@pytest.mark.parametrize("side", ["LONG", "SHORT"])
def test_a_well_formed_signal_on_a_flat_book_passes(side: str) -> None:
    sig = signal() if side == "LONG" else signal("SHORT", tp=48_000.0, sl=51_000.0)
    assert check_signal(sig, FLAT, RICH, LIMITS, BTC) is None


def test_an_unreadable_balance_rejects() -> None:
    rejection = check_signal(signal(), FLAT, None, LIMITS, BTC)
    assert rejection is not None and rejection.reason == "balance_unavailable"


@pytest.mark.parametrize(
    ("case", "balance", "sl", "reason"),
    [
        ("zero balance", 0.0, 49_000.0, "insufficient_balance"),
        ("negative balance", -5.0, 49_000.0, "insufficient_balance"),
        ("zero stop distance", 10_000.0, 50_000.0, "zero_stop_distance"),
        ("stop rounds onto entry", 10_000.0, 50_000.04, "zero_stop_distance"),
        ("too small for the step", 1.0, 40_000.0, "below_min_quantity"),
        ("too small for min notional", 100.0, 49_000.0, "below_min_notional"),
    ],
)
def test_sizing_refusals(case: str, balance: float, sl: float, reason: str) -> None:
    sized = size_position(signal(sl=sl), balance, LIMITS, BTC)
    assert isinstance(sized, RiskRejection), case
    assert sized.reason == reason, case


@pytest.mark.parametrize(
    ("case", "sl", "quantity", "capped"),
    [
        # risk 100 USDT over a 1 000 stop: 0.1 BTC, well under the 0.4 BTC cap
        ("wide stop", 49_000.0, 0.1, False),
        # risk 100 over 250: exactly the cap (20 % x 10 x 10 000 / 50 000 = 0.4): not capped
        ("exactly at the cap", 49_750.0, 0.4, False),
        # risk 100 over 100: 1 BTC requested, capped to 0.4
        ("tight stop", 49_900.0, 0.4, True),
        # risk 100 over 300: 0.3333... floored to the 0.001 step
        ("floored to the step", 49_700.0, 0.333, False),
    ],
)
def test_sizing(case: str, sl: float, quantity: float, capped: bool) -> None:
    sized = size_position(signal(sl=sl), 10_000.0, LIMITS, BTC)
    assert isinstance(sized, PositionSize), case
    assert sized.quantity == quantity, case
    assert sized.capped is capped, case
    assert sized.risk_amount == 100.0
    assert sized.leverage == 10


def test_sizing_reports_the_stop_distance_in_percent() -> None:
    sized = size_position(signal(sl=49_000.0), 10_000.0, LIMITS, BTC)
    assert isinstance(sized, PositionSize)
    assert sized.sl_distance_percent == pytest.approx(2.0)
    assert sized.requested_quantity == pytest.approx(0.1)


def test_short_sizing_uses_the_distance_above_entry() -> None:
    sized = size_position(signal("SHORT", tp=48_000.0, sl=51_000.0), 10_000.0, LIMITS, BTC)
    assert isinstance(sized, PositionSize) and sized.quantity == 0.1


@pytest.mark.parametrize(
    ("price", "rounded"),
    [(50_000.04, 50_000.0), (50_000.05, 50_000.1), (0.30000000000000004, 0.3)],
)
def test_prices_round_to_the_nearest_tick(price: float, rounded: float) -> None:
    assert BTC.round_price(price) == rounded


@pytest.mark.parametrize(("qty", "floored"), [(0.1239, 0.123), (0.001, 0.001), (0.0009, 0.0)])
def test_quantities_round_down_to_the_step(qty: float, floored: float) -> None:
    assert BTC.floor_quantity(qty) == floored
