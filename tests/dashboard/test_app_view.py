"""View state of the dashboard (dashboard/viewstate.py): filters to time windows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dashboard.viewstate import Filters, first_day_start, make_filters, parse_utc

NOW = datetime(2026, 11, 26, 12, 30, 20, tzinfo=UTC).timestamp()
END = datetime(2026, 11, 26, 12, 31, tzinfo=UTC).timestamp()  # end of the current minute


def test_a_relative_window_keeps_moving_with_the_clock() -> None:
    filters = Filters(range_key="1h")
    first, later = filters.view(NOW), filters.view(NOW + 600)
    assert (first.start, first.end) == (END - 3600, END)
    assert (later.start, later.end) == (END + 600 - 3600, END + 600)


def test_the_window_only_changes_once_a_minute() -> None:
    filters = Filters(range_key="15m")
    assert filters.view(NOW) == filters.view(NOW + 30)


def test_a_custom_range_is_fixed_and_an_open_end_means_now() -> None:
    filters, warning = make_filters("", "custom", "2026-11-26 10:00", "", "BTCUSDT", [])
    assert warning is None
    view = filters.view(NOW)
    assert view.start == datetime(2026, 11, 26, 10, tzinfo=UTC).timestamp()
    assert view.end == END
    assert view.symbol == "BTCUSDT"


def test_an_unusable_custom_range_falls_back_to_the_default_with_a_warning() -> None:
    for start, end in (("garbage", ""), ("2026-11-26 10:00", "2026-11-26 09:00"), ("", "")):
        filters, warning = make_filters("", "custom", start, end, None, [])
        assert warning is not None
        assert filters.range_key == "1h"
        assert filters.symbol is None


def test_all_starts_at_midnight_of_the_oldest_day_file(tmp_path: Path) -> None:
    (tmp_path / "audit_20261120.jsonl.gz").write_bytes(b"")
    (tmp_path / "audit_20261126.jsonl").write_bytes(b"")
    view = Filters(range_key="all", audit_dir=str(tmp_path)).view(NOW)
    assert view.start == datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    assert first_day_start(str(tmp_path / "missing")) is None
    assert Filters(range_key="all", audit_dir=str(tmp_path / "missing")).view(NOW).start == (
        END - 3600
    )


def test_utc_times_are_parsed_leniently() -> None:
    assert parse_utc("2026-11-26T12:00:00Z") == parse_utc("2026-11-26 12:00")
    assert parse_utc("2026-11-26T14:00:00+02:00") == parse_utc("2026-11-26 12:00")
    assert parse_utc("2026-11-26") == datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert parse_utc("yesterday") is None
