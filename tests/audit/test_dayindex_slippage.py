"""Entry slippage kept as running sums in the day index (the results page needs no
signal rows for its mean): one entry per signal, a later record of the same order
replacing what the earlier one added."""

from __future__ import annotations

from typing import Any

import pytest

from bot.audit.dayextras import SLIPPAGE_BPS, SLIPPED
from bot.audit.dayindex import HOUR, DayIndex

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def record(kind: str, trace: str, seconds: float, **fields: Any) -> dict[str, Any]:
    stamp = f"2026-01-01T00:{int(seconds) // 60:02d}:{int(seconds) % 60:02d}.000Z"
    return {"event_type": kind, "trace_id": trace, "symbol": "BTCUSDT", "timestamp": stamp,
            **fields}  # fmt: skip


def entry(trace: str, seconds: float, side: str, price: float) -> dict[str, Any]:
    response = {"side": side, "executed_qty": 1, "avg_price": price}
    return record("order_filled", trace, seconds, response=response,
                  additional_data={"role": "e"})  # fmt: skip


def test_slippage_sums_count_each_entry_once_in_its_signal_bucket() -> None:
    index = DayIndex("bot", "20260101")
    for kind, trace, seconds, fields in (
        ("signal_processing", "A", 10, {"signal_type": "LONG", "entry_price": 100.0}),
        ("signal_processing", "B", 70, {"signal_type": "SHORT", "entry_price": 50.0}),
    ):
        index.add(record(kind, trace, seconds, additional_data=fields), T0 + seconds)
    index.add(entry("A", 130, "BUY", 100.5), T0 + 130)  # a partial fill: +50 bps
    index.add(entry("A", 140, "BUY", 100.2), T0 + 140)  # the order's cumulative price: +20
    index.add(entry("B", 150, "SELL", 49.9), T0 + 150)  # short filled lower: +20 bps
    minute_a, minute_b = index.sums[int(T0)], index.sums[int(T0) + 60]
    assert minute_a[("bot", "BTCUSDT", SLIPPED)] == 1
    assert minute_a[("bot", "BTCUSDT", SLIPPAGE_BPS)] == pytest.approx(20.0)
    assert minute_b[("bot", "BTCUSDT", SLIPPED)] == 1
    assert minute_b[("bot", "BTCUSDT", SLIPPAGE_BPS)] == pytest.approx(20.0)
    hour = DayIndex.from_parts(index.to_parts()[0], None).sums[int(T0) // HOUR * HOUR]
    assert hour[("bot", "BTCUSDT", SLIPPED)] == 2
    assert hour[("bot", "BTCUSDT", SLIPPAGE_BPS)] == pytest.approx(40.0)
