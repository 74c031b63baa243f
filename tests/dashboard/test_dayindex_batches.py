"""The live path adds records in batches (``DayIndex.add_many``, ``Aggregates.note``): a
batch contributes exactly what its records contribute one at a time."""

from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

from bot.audit import AuditLogger
from bot.audit.dayindex import DayIndex
from bot.audit.reader import read_lines
from dashboard.aggregates import Aggregates
from tests.dashboard.conftest import FLOW_KINDS, SYMBOLS, FakeClock, write_flow

Writer = Callable[..., tuple[AuditLogger, FakeClock]]


def day_lines(directory: Path, trail_writer: Writer) -> list[bytes]:
    """A day of every flow kind, with entry and exit fills, balances and heartbeats."""
    logger, clock = trail_writer(directory)
    for i in range(24):
        if i % 3 == 0:
            logger.log_event("heartbeat", "heartbeat")
            logger.log_event("balance_query", "get_balance", response={"wallet_balance": 1e3 + i})
        symbol = SYMBOLS[(i // 4) % 2]
        trace = write_flow(logger, clock, FLOW_KINDS[i % 4], symbol)
        if FLOW_KINDS[i % 4] == "normal":
            for role, pnl in (("e", 0.0), ("tp" if i % 8 else "sl", 1.5 - i % 3)):
                logger.log_event(
                    "order_filled",
                    "order_update",
                    symbol=symbol,
                    trace_id=trace,
                    response={"side": "BUY", "executed_qty": 0.5, "avg_price": 100.0 + i,
                              "realized_pnl": pnl, "commission": 0.02},
                    additional_data={"role": role},
                )  # fmt: skip
                clock.advance(0.5)
        clock.advance(40)  # several minute buckets
    logger.close()
    (path,) = directory.glob("audit_*.jsonl")
    return path.read_bytes().split(b"\n")[:-1]


def test_a_batch_adds_what_its_records_add_one_at_a_time(
    tmp_path: Path, trail_writer: Writer
) -> None:
    lines = day_lines(tmp_path, trail_writer)
    records, stamps, malformed = read_lines(lines)
    assert malformed == 0
    offsets = list(accumulate((len(line) + 1 for line in lines), initial=0))
    one, batch = DayIndex("bot", "20261118"), DayIndex("bot", "20261118")
    keys = [one.add(r, ts, at) for r, ts, at in zip(records, stamps, offsets, strict=False)]
    assert batch.add_many(records, stamps, offsets) == keys
    assert batch.to_parts() == one.to_parts()
    assert one.sums and one.signals and one.traces and one.equity  # the extras were exercised


def test_notes_of_a_batch_leave_what_notes_of_each_record_leave(
    tmp_path: Path, trail_writer: Writer
) -> None:
    lines = day_lines(tmp_path, trail_writer)
    records, stamps, _ = read_lines(lines)
    keys = DayIndex("bot", "20261118").add_many(records, stamps)
    limits = {"recent_limit": 50, "trace_limit": 1000, "trace_events_limit": 4, "exact_limit": 10}
    one, batch = Aggregates(**limits), Aggregates(**limits)
    for note in zip(stamps, keys, records, lines, strict=True):
        one.note(*([part] for part in note))
    one.trim()
    batch.note(stamps, keys, records, lines)
    batch.trim()
    assert list(batch.recent) == list(one.recent)
    assert (batch.exact_ts, batch.exact_keys) == (one.exact_ts, one.exact_keys)
    assert list(batch.traces.items()) == list(one.traces.items())  # LRU order too
