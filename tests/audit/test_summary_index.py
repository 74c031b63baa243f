"""`summary` on the day index: kept days are not read again, cut days are read exactly,
and it counts what the dashboard counts (one rule: bot.audit.dayindex)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bot.audit import AuditLogger, summary
from bot.audit.reader import iter_records
from bot.audit.summary import summarize
from dashboard.store import TrailStore

DAY = 86_400
T0 = 1_795_000_000.0


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> int:
        return int(self.now * 1e9)


def three_days(directory: Path) -> None:
    clock = _Clock((T0 // DAY - 2) * DAY + 60)
    with AuditLogger(directory, clock=clock, fsync_interval=3600) as logger:
        for day in range(3):
            clock.now = (T0 // DAY - 2 + day) * DAY + 60
            for i in range(30):
                symbol = ("BTCUSDT", "ETHUSDT")[i % 2]
                logger.log_event("signal_processing", "process_signal", symbol=symbol)
                if i % 3:
                    logger.log_risk_rejection(symbol, "existing_position", "m", "check", {})
                else:
                    logger.log_event("risk_validation", "validate_risk", symbol=symbol)
                clock.now += 600


def truth(directory: Path, lo: str = "", hi: str = "~", symbol: str | None = None) -> Counter[str]:
    return Counter(
        r["event_type"]
        for r in iter_records(directory)
        if lo <= r["timestamp"] < hi and (symbol is None or r.get("symbol") == symbol)
    )


def test_a_second_summary_reads_no_day_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_days(tmp_path / "audit")
    cache = tmp_path / "cache"
    first = summarize(tmp_path / "audit", cache_dir=cache, workers=1)
    assert first.counts == truth(tmp_path / "audit")

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a kept day was read again")

    monkeypatch.setattr(summary, "index_file", no_reading)
    again = summarize(tmp_path / "audit", cache_dir=cache, workers=1, symbol="ETHUSDT")
    assert again.counts == truth(tmp_path / "audit", symbol="ETHUSDT")
    assert again.risk_reasons == Counter(existing_position=again.counts["risk_rejection"])


def test_a_range_that_cuts_a_day_counts_exactly(tmp_path: Path) -> None:
    three_days(tmp_path / "audit")
    days = sorted(r["timestamp"][:10] for r in iter_records(tmp_path / "audit"))
    lo, hi = f"{days[0]}T02:13", f"{days[-1]}T01:07:30"
    result = summarize(tmp_path / "audit", lo, hi, cache_dir=tmp_path / "cache", workers=1)
    assert result.counts == truth(tmp_path / "audit", lo, hi)
    assert result.first is not None and result.first >= lo
    assert result.last is not None and result.last < hi


def test_summary_counts_what_the_dashboard_counts(tmp_path: Path) -> None:
    three_days(tmp_path / "audit")
    store = TrailStore(tmp_path / "audit", cache_dir=tmp_path / "cache")
    store.refresh()
    store.stop()
    assert summarize(tmp_path / "audit", cache_dir=tmp_path / "cache").counts == store.totals()
