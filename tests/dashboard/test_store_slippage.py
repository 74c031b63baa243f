"""The results' mean slippage comes from the day indexes' sums, the same whether a day
was indexed in this process, loaded from the cache, or loaded by the hour."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.store import TrailStore
from tests.dashboard.test_store_results import MIDNIGHT, write_known_trail


@pytest.mark.parametrize("minute_days", [2, 1])
def test_mean_slippage_is_over_every_entry_of_the_window(tmp_path: Path, minute_days: int) -> None:
    write_known_trail(tmp_path / "audit")
    for _ in range(2):  # indexed, then read back from the cache
        store = TrailStore(
            tmp_path / "audit",
            cache_dir=tmp_path / "cache",
            clock=lambda: MIDNIGHT + 600,
            minute_days=minute_days,
        )
        try:
            store.refresh()
            everything = store.results(0, 4e9)
            assert everything.mean_slippage_bps == pytest.approx((50.0 + 20.0 + 0.0 + 0.0) / 4)
            assert [s.trace_id for s in everything.slippage] == ["F", "E", "B", "A"]
            assert store.results(0, 4e9, symbol="ETHUSDT").mean_slippage_bps == pytest.approx(10)
            assert store.results(0, 4e9, bot="other").mean_slippage_bps is None
        finally:
            store.stop()
