"""chain.timestamp_seconds: the one timestamp check every reader calls (SPEC §4)."""

from __future__ import annotations

import calendar

import pytest

from bot.audit.chain import timestamp_seconds

GOOD = "2026-11-26T15:04:05.123456Z"


def test_a_spec_timestamp_gives_its_epoch_seconds() -> None:
    expected = calendar.timegm((2026, 11, 26, 15, 4, 5)) + 0.123456
    assert timestamp_seconds(GOOD) == pytest.approx(expected)
    assert timestamp_seconds("2026-11-26T15:04:05Z") == calendar.timegm((2026, 11, 26, 15, 4, 5))
    assert timestamp_seconds("2016-12-31T23:59:60.5Z") is not None  # a leap second


@pytest.mark.parametrize(
    "stamp",
    [
        GOOD + "\n",  # `$` alone would accept it, and the seconds would not parse
        "\n" + GOOD,
        GOOD[:-1],  # no Z
        GOOD.replace("T", " "),
        "2026-02-30T10:00:00Z",  # no such day
        "2026-11-26T24:00:00Z",
        "2026-11-26T15:04:61Z",
        "2026-11-26T15:04:05.1234567Z",  # beyond microseconds
        "1999-12-31T23:59:59Z",  # before MIN_YEAR
        "2999-01-01T00:00:00Z",  # a clock far in the future
        "２０２６-11-26T15:04:05Z",  # digits, but not ASCII ones
        None,
        1764169445.0,
    ],
)
def test_anything_else_is_refused_not_raised(stamp: object) -> None:
    assert timestamp_seconds(stamp) is None


def test_the_year_bound_holds_for_a_minute_seen_before() -> None:
    """The per-minute memo must not let a cached minute skip the caller's year bound."""
    assert timestamp_seconds(GOOD) is not None
    assert timestamp_seconds(GOOD, max_year=2025) is None
    assert timestamp_seconds(GOOD, max_year=2026) is not None
