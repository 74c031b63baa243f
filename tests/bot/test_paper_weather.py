"""The paper exchange's demo weather (``VenueFaults``): seeded refusals, temporary errors
and rate limits, so a paper run shows what the venue does to a real bot."""

from __future__ import annotations

import pytest

from bot.errors import RateLimitError, TemporaryExchangeError, VenueRejectedError
from bot.exchange.paper import PaperExchange, VenueFaults
from bot.models import Candle, OrderSide, OrderType


def priced(faults: VenueFaults | None) -> PaperExchange:
    paper = PaperExchange(faults=faults)
    paper.on_market_candle(Candle("BTCUSDT", "1m", 0, 50_000, 50_000, 50_000, 50_000, 1.0, 59_999))
    return paper


def outcomes(paper: PaperExchange, orders: int, *, reduce_only: bool = False) -> list[str]:
    """What each of ``orders`` entry (or closing) requests met: the error's name or "ok"."""
    seen = []
    for n in range(orders):
        try:
            if reduce_only:
                paper.place_conditional_order(
                    "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 40_000.0, f"sl{n}"
                )
            else:
                paper.place_market_order("BTCUSDT", OrderSide.BUY, 0.002, f"e{n}")
            seen.append("ok")
        except VenueRejectedError as exc:
            seen.append(str(exc.code))
        except RateLimitError:
            seen.append("rate_limit")
        except TemporaryExchangeError:
            seen.append("temporary")
    return seen


def test_without_faults_every_order_goes_through() -> None:
    assert set(outcomes(priced(None), 20)) == {"ok"}
    assert set(outcomes(priced(VenueFaults(0.0)), 20)) == {"ok"}


def test_entries_meet_refusals_temporary_errors_and_rate_limits() -> None:
    seen = outcomes(priced(VenueFaults(1.0, seed=7)), 60)
    assert set(seen) == {"-2019", "-4164", "temporary", "rate_limit"}


def test_stops_and_exits_are_only_delayed_never_refused() -> None:
    seen = outcomes(priced(VenueFaults(1.0, seed=7)), 40, reduce_only=True)
    assert set(seen) == {"temporary", "rate_limit"}


def test_the_share_of_failed_orders_follows_the_rate_and_the_seed_repeats_it() -> None:
    first = outcomes(priced(VenueFaults(0.25, seed=3)), 400)
    assert 60 <= sum(o != "ok" for o in first) <= 140
    assert outcomes(priced(VenueFaults(0.25, seed=3)), 400) == first


def test_a_rate_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        VenueFaults(1.5)
