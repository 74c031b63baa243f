"""dashboard.store.TrailStore: incremental ingest, robustness, aggregates, integrity
(its watcher and threads: test_store_watcher.py).

Waits are deadline-based (``wait_until``); nothing asserts on timing.
"""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.audit import AuditLogger
from dashboard.store import TrailStore
from tests.dashboard.conftest import FLOW_KINDS, T0, FakeClock, truth, write_flow

Writer = Callable[..., tuple[AuditLogger, FakeClock]]


def day_file(directory: Path) -> Path:
    files = sorted(directory.glob("audit_*.jsonl"))
    assert files, "no day file"
    return files[-1]


# ------------------------------------------------------------------ aggregates


def test_cold_load_aggregates_match_the_trail(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    clock = make_trail(tmp_path, flows=24)
    store = stores(tmp_path)
    assert store.refresh() == sum(truth(tmp_path).values())
    assert store.counts(0, 4e9) == truth(tmp_path)
    assert store.counts(0, 4e9, "ETHUSDT") == truth(tmp_path, symbol="ETHUSDT")
    assert store.rejection_reasons(0, 4e9) == Counter(existing_position=6)
    outcomes = store.order_outcomes(0, 4e9)
    # 6 normal + 6 capped flows place entry, TP and SL; 6 failed ones are rejected
    assert outcomes[("MARKET", "placed")] == 12 and outcomes[("MARKET", "rejected")] == 6
    assert outcomes[("STOP_MARKET", "placed")] == 12
    assert [q[1:] for q in store.capped_quantities(0, 4e9)] == [(2.0, 1.5)] * 6
    assert store.symbols() == ["BTCUSDT", "ETHUSDT"]
    assert store.last_event_time is not None and T0 < store.last_event_time < clock.now
    assert store.last_heartbeat_time is not None
    integrity = store.integrity
    assert integrity.ok is True and integrity.problem is None
    assert integrity.checked_records == sum(truth(tmp_path).values())


def test_trace_lists_every_event_of_one_signal_in_order(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    logger, clock = trail_writer(tmp_path)
    tid = write_flow(logger, clock, "capped")
    write_flow(logger, clock, "rejected")
    store = stores(tmp_path)
    store.refresh()
    assert [r["event_type"] for r in store.trace(tid)] == [
        "signal_processing",
        "risk_validation",
        "position_size_capped",
        "position_size_calculated",
        "order_placed",
        "order_placed",
        "order_placed",
        "trade_executed",
    ]
    assert store.recent_trace_ids()[1] == tid  # most recent activity first
    assert store.trace("no-such-trace") == []


def test_recent_is_newest_last_and_filtered(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    make_trail(tmp_path, flows=8)
    store = stores(tmp_path)
    store.refresh()
    records = store.recent(1000)
    stamps = [r["timestamp"] for r in records]
    assert stamps == sorted(stamps) and len(records) == sum(truth(tmp_path).values())
    rejected = store.recent(10, event_types=["risk_rejection"], symbol="BTCUSDT")
    assert [r["event_type"] for r in rejected] == ["risk_rejection"]
    assert len(store.recent(3)) == 3 and store.recent(3)[-1] == records[-1]
    store.recent(1)[0]["event_type"] = "changed"  # a copy: the store is unaffected
    assert store.recent(1)[0]["event_type"] != "changed"


def test_counts_are_exact_when_a_window_cuts_a_bucket(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    make_trail(tmp_path, flows=40, gap=3.0)
    store = stores(tmp_path)
    store.refresh()
    for start, end in ((T0 + 7.3, T0 + 101.9), (T0 + 61.5, T0 + 62.5), (T0 - 5, T0 + 30)):
        assert store.counts(start, end) == truth(tmp_path, start, end), (start, end)


def test_series_has_one_counter_per_bucket(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    clock = make_trail(tmp_path, flows=12)
    store = stores(tmp_path)
    store.refresh()
    start = T0 // 60 * 60
    series = store.series(start, clock.now)
    assert [t for t, _ in series] == [start + 60 * i for i in range(len(series))]
    assert sum((c for _, c in series), Counter()) == truth(tmp_path)
    only = store.series(start, clock.now, event_types=["risk_rejection"])
    assert sum((c for _, c in only), Counter()) == Counter(risk_rejection=3)
    reasons = store.rejection_reason_series(start, clock.now)
    assert sum((c for _, c in reasons), Counter()) == Counter(existing_position=3)


@pytest.fixture(params=["first read", "from the cache"])
def history(request: pytest.FixtureRequest) -> Callable[[Path], None]:
    """Runs a test with each way the history comes in: read for the first time, and
    from the day index cache that an earlier store on the same directory kept."""

    def prepare(directory: Path) -> None:
        if request.param == "from the cache":
            earlier = TrailStore(directory)
            earlier.refresh()
            earlier.stop()  # keeps the indexes of the days it read

    return prepare


def test_history_agrees_with_reading_every_record(
    tmp_path: Path,
    history: Callable[[Path], None],
    make_trail: Callable[..., FakeClock],
    stores: Callable[..., TrailStore],
) -> None:
    make_trail(tmp_path, flows=30)
    history(tmp_path)
    columnar, lines = stores(tmp_path, tail_lines=0), stores(tmp_path, tail_lines=10**9)
    columnar.refresh()
    lines.refresh()
    assert columnar.counts(0, 4e9) == lines.counts(0, 4e9)
    assert columnar.series(T0 - 60, T0 + 600) == lines.series(T0 - 60, T0 + 600)
    assert columnar.order_outcomes(0, 4e9) == lines.order_outcomes(0, 4e9)
    assert columnar.capped_quantities(0, 4e9) == lines.capped_quantities(0, 4e9)
    assert columnar.last_heartbeat_time == lines.last_heartbeat_time
    assert columnar.integrity.ok is True


# Lines a lax JSON reader might take: the history counts exactly what the live reader counts.
BULK_EDGE_CASES = {
    "number out of range": b'"additional_data":{"uptime":1e999}',
    "leading zero": b'"additional_data":{"uptime":01}',
    "lone surrogate": b'"additional_data":{"note":"\\ud800"}',
    "raw tab in a string": b'"additional_data":{"note":"a\tb"}',
    "trailing comma": b'"additional_data":{"uptime":1,}',
    "NUL byte": b'"additional_data":{"note":"a\x00b"}',
    "NaN inside a string (valid)": b'"additional_data":{"note":"NaN and Infinity"}',
    "long but acceptable line": b'"additional_data":{"note":"' + b"x" * 600_000 + b'"}',
    "line too long (valid JSON)": b'"additional_data":{"note":"' + b"x" * 1_100_000 + b'"}',
    "duplicate key (valid, last wins)": b'"symbol":"BTCUSDT","symbol":"ETHUSDT"',
    "wrong type in a nested detail": b'"order_data":{"order_type":5}',
}


@pytest.mark.parametrize("case", list(BULK_EDGE_CASES))
def test_history_judges_edge_cases_like_the_live_reader(
    tmp_path: Path,
    history: Callable[[Path], None],
    make_trail: Callable[..., FakeClock],
    stores: Callable[..., TrailStore],
    case: str,
) -> None:
    make_trail(tmp_path, flows=12)
    path = day_file(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    middle = len(lines) // 2
    odd = STAMP + b'"event_type":"heartbeat","operation":"x",' + BULK_EDGE_CASES[case] + b"}\n"
    path.write_bytes(b"".join([*lines[:middle], odd, *lines[middle:]]))
    history(tmp_path)
    bulk, per_line = stores(tmp_path, tail_lines=0), stores(tmp_path, tail_lines=10**9)
    bulk.refresh(verify_history=False)
    per_line.refresh(verify_history=False)
    assert bulk.totals() == per_line.totals() == truth(tmp_path)
    assert bulk.series(T0 - 60, T0 + 600) == per_line.series(T0 - 60, T0 + 600)
    assert bulk.order_outcomes(0, 4e9) == per_line.order_outcomes(0, 4e9)
    assert bulk.symbols() == per_line.symbols()
    b, p = bulk.read_stats, per_line.read_stats
    assert (b.records, dict(b.malformed_by_reason)) == (p.records, dict(p.malformed_by_reason))
    assert [(m.file, m.line) for m in b.recent_malformed] == [
        (m.file, m.line) for m in p.recent_malformed
    ]
    if p.malformed:  # and it names the right line
        assert [m.line for m in p.recent_malformed] == [middle + 1]


def test_gzipped_history_and_a_tail_over_two_files_match_the_line_reader(
    tmp_path: Path,
    history: Callable[[Path], None],
    make_trail: Callable[..., FakeClock],
    stores: Callable[..., TrailStore],
) -> None:
    """Gzipped history, the per-record tail spanning two files, the follower resuming
    after each: all as if read line by line."""
    old = tmp_path / "old"
    make_trail(old, flows=15, start=T0 - 86_400)
    plain = day_file(old)
    (tmp_path / (plain.name + ".gz")).write_bytes(gzip.compress(plain.read_bytes()))
    shutil.rmtree(old)  # a subdirectory with day files would be a second bot's trail
    make_trail(tmp_path, flows=25)
    with open(day_file(tmp_path), "ab") as fh:
        fh.write(STAMP[:20])  # a partial last line: the follower's
    history(tmp_path)
    today = day_file(tmp_path).read_bytes().count(b"\n")
    bulk = stores(tmp_path, tail_lines=today + 7)  # the tail reaches into the .gz file
    per_line = stores(tmp_path, tail_lines=10**9)
    bulk.refresh()
    per_line.refresh()
    assert bulk.totals() == per_line.totals() == truth(tmp_path)
    assert bulk.capped_quantities(0, 4e9) == per_line.capped_quantities(0, 4e9)
    assert bulk.recent(10**6) == per_line.recent(today + 7)  # the tail fills the table
    assert bulk.last_event_time == per_line.last_event_time
    assert bulk.integrity.ok is per_line.integrity.ok is True
    assert bulk.refresh() == 0  # resumed exactly where the load stopped
    with open(day_file(tmp_path), "ab") as fh:
        fh.write(b"\n")  # completes the partial line: malformed, counted once
    bulk.refresh()
    assert dict(bulk.read_stats.malformed_by_reason) == {"invalid_json": 1}


# ------------------------------------------------------------------ reading robustly


def test_a_partial_last_line_waits_for_its_end(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    logger, clock = trail_writer(tmp_path)
    write_flow(logger, clock, "rejected")
    path = day_file(tmp_path)
    data = path.read_bytes()
    last = data[data.rstrip(b"\n").rfind(b"\n") + 1 :]
    path.write_bytes(data[: -len(last)] + last[:25])
    store = stores(tmp_path)
    assert store.refresh() == 1
    assert store.refresh() == 0
    with open(path, "ab") as fh:
        fh.write(last[25:])
    assert store.refresh() == 1
    assert store.counts(0, 4e9) == Counter(signal_processing=1, risk_rejection=1)
    assert store.read_stats.malformed == 0 and store.integrity.ok is True


STAMP = b'{"timestamp":"2026-11-18T10:00:00.000000Z",'
MALFORMED = {
    "invalid_json": STAMP + b'"event_type": ',
    "not_utf8": STAMP + b'"event_type":"heartbeat","operation":"\xff\xfe"}',
    "wrong_type:symbol": STAMP + b'"event_type":"heartbeat","operation":"x","symbol":5}',
    "missing_field:operation": STAMP + b'"event_type":"heartbeat"}',
    "unknown_event_type": STAMP + b'"event_type":"lunch","operation":"x"}',
    "bad_timestamp": STAMP.replace(b"2026", b"2999") + b'"event_type":"heartbeat","operation":"x"}',
    "line_too_long": STAMP + b'"event_type":"heartbeat","operation":"' + b"x" * (3 << 20) + b'"}',
}
# not JSON (SPEC §4: no NaN/Infinity), though some bulk parsers accept them as numbers
NON_JSON_NUMBERS = [
    STAMP + b'"event_type":"heartbeat","operation":"x","additional_data":{"uptime":NaN}}',
    STAMP + b'"event_type":"heartbeat","operation":"x","additional_data":{"uptime":-Infinity}}',
]


@pytest.mark.parametrize("when", ["history", "live"])
def test_every_kind_of_malformed_line_is_counted_never_fatal(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore], when: str
) -> None:
    logger, clock = trail_writer(tmp_path)
    write_flow(logger, clock, "normal")
    store = stores(tmp_path, tail_lines=0)
    if when == "live":
        store.refresh()
    path = day_file(tmp_path)
    with open(path, "ab") as fh:
        for line in MALFORMED.values():
            fh.write(line + b"\n")
    write_flow(logger, clock, "rejected")
    store.refresh()
    stats = store.read_stats
    assert dict(stats.malformed_by_reason) == dict.fromkeys(MALFORMED, 1)
    assert stats.malformed == len(MALFORMED)
    assert store.counts(0, 4e9) == truth(tmp_path)
    assert store.counts(0, 4e9)["risk_rejection"] == 1
    integrity = store.integrity
    assert integrity.ok is False and integrity.problem is not None
    assert path.name in integrity.problem


@pytest.mark.parametrize("when", ["history", "live"])
def test_nan_and_infinity_are_invalid_json_in_bulk_and_live_reads(
    tmp_path: Path,
    history: Callable[[Path], None],
    make_trail: Callable[..., FakeClock],
    stores: Callable[..., TrailStore],
    when: str,
) -> None:
    make_trail(tmp_path, flows=8)
    history(tmp_path)
    store = stores(tmp_path, tail_lines=0)  # the history goes through the bulk parser only
    if when == "live":
        store.refresh()
    with open(day_file(tmp_path), "ab") as fh:
        fh.write(b"\n".join(NON_JSON_NUMBERS) + b"\n")
    store.refresh()
    assert dict(store.read_stats.malformed_by_reason) == {"invalid_json": len(NON_JSON_NUMBERS)}
    assert store.counts(0, 4e9) == truth(tmp_path)


def test_cold_load_and_incremental_ingest_build_the_same_aggregates(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    logger, clock = trail_writer(tmp_path)
    incremental = stores(tmp_path)
    incremental.refresh()
    for i in range(40):
        if i % 5 == 0:
            logger.log_event("heartbeat", "heartbeat")
        write_flow(logger, clock, FLOW_KINDS[i % 4], ("BTCUSDT", "ETHUSDT")[i % 3 == 0])
        clock.advance(11.0)
        incremental.refresh()  # one record batch at a time, through the live path
    cold = stores(tmp_path, tail_lines=0)  # everything through the bulk parser
    cold.refresh()
    start, end = T0 // 60 * 60 - 60, clock.now + 60
    assert cold.totals() == incremental.totals() == truth(tmp_path)
    for symbol in (None, "BTCUSDT", "ETHUSDT"):
        assert cold.counts(0, 4e9, symbol) == incremental.counts(0, 4e9, symbol)
        assert cold.series(start, end, symbol) == incremental.series(start, end, symbol)
        assert cold.rejection_reason_series(start, end, symbol) == (
            incremental.rejection_reason_series(start, end, symbol)
        )
        assert cold.order_outcomes(0, 4e9, symbol) == incremental.order_outcomes(0, 4e9, symbol)
        assert cold.capped_quantities(0, 4e9, symbol) == (
            incremental.capped_quantities(0, 4e9, symbol)
        )
    assert cold.symbols() == incremental.symbols()
    assert cold.last_event_time == incremental.last_event_time
    assert cold.last_heartbeat_time == incremental.last_heartbeat_time
    assert cold.integrity.ok is incremental.integrity.ok is True
    assert cold.integrity.checked_records == incremental.integrity.checked_records


def test_day_rollover_is_followed(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    midnight = (T0 // 86_400 + 1) * 86_400
    logger, clock = trail_writer(tmp_path, start=midnight - 3)
    write_flow(logger, clock, "rejected")
    store = stores(tmp_path)
    store.refresh()
    clock.now = midnight + 1
    write_flow(logger, clock, "normal")
    assert len(list(tmp_path.glob("audit_*.jsonl"))) == 2
    store.refresh()
    assert store.counts(0, 4e9) == truth(tmp_path)
    assert store.counts(midnight, midnight + 60)["trade_executed"] == 1
    assert store.integrity.ok is True


def test_truncated_file_is_read_again_without_double_counting(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    make_trail(tmp_path, flows=8)
    store = stores(tmp_path)
    store.refresh()
    path = day_file(tmp_path)
    data = path.read_bytes()
    cut = data.find(b"\n", len(data) // 2) + 1
    os.truncate(path, cut)
    store.refresh()
    assert store.read_stats.truncations == 1
    assert store.counts(0, 4e9) == truth(tmp_path)
    assert len(store.recent(10_000)) == sum(truth(tmp_path).values())


def test_replaced_file_is_read_again(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    make_trail(tmp_path, flows=8)
    store = stores(tmp_path)
    store.refresh()
    path = day_file(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    replacement = path.with_name("new.tmp")
    replacement.write_bytes(b"".join(lines[:5]))
    os.replace(replacement, path)
    store.refresh()
    assert store.read_stats.replacements == 1
    assert store.counts(0, 4e9) == truth(tmp_path)


def test_gzipped_history_is_read_and_compression_is_not_a_replacement(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    old = tmp_path / "old"
    logger, clock = trail_writer(old, start=T0 - 86_400)
    write_flow(logger, clock, "capped")
    logger.close()
    plain = day_file(old)
    gz = tmp_path / (plain.name + ".gz")
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    shutil.rmtree(old)  # a subdirectory with day files would be a second bot's trail
    logger, clock = trail_writer(tmp_path)
    write_flow(logger, clock, "rejected")
    store = stores(tmp_path)
    store.refresh()
    assert store.counts(0, 4e9)["position_size_capped"] == 1
    assert store.counts(0, 4e9) == truth(tmp_path)
    # today's file compressed by a rotation job: continues, nothing counted twice
    today = day_file(tmp_path)
    logger.close()
    compressed = today.with_name(today.name + ".gz")
    compressed.write_bytes(gzip.compress(today.read_bytes()))
    today.unlink()
    store.refresh()
    assert store.counts(0, 4e9) == truth(tmp_path)
    assert store.read_stats.replacements == 0


# ------------------------------------------------------------------ integrity


def test_an_edited_record_fails_integrity_and_names_the_line(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    make_trail(tmp_path, flows=4)
    path = day_file(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"BTCUSDT", b"BTCUSDX", 1)
    path.write_bytes(b"".join(lines))
    store = stores(tmp_path)
    store.refresh()
    integrity = store.integrity
    assert integrity.ok is False
    assert integrity.problem is not None and f"{path.name} line 4" in integrity.problem


def test_live_lines_are_checked_as_they_arrive_and_gaps_are_not_failures(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    logger, clock = trail_writer(tmp_path, hmac_key="k3y")
    write_flow(logger, clock, "normal")
    keyed, unkeyed = stores(tmp_path, hmac_key="k3y"), stores(tmp_path)
    keyed.refresh()
    unkeyed.refresh()
    logger.log_event("audit_gap", "write_audit_record", additional_data={"dropped_records": 2})
    logger.log_event("audit_recovered", "repair_torn_line", additional_data={"torn_bytes": 9})
    keyed.refresh()
    status = keyed.integrity
    assert status.ok is True and (status.gaps, status.recoveries) == (1, 1)
    assert status.checked_records == sum(truth(tmp_path).values())
    assert unkeyed.integrity.ok is False and "HMAC" in (unkeyed.integrity.problem or "")


def test_a_repaired_torn_tail_is_not_a_truncation(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    logger, clock = trail_writer(tmp_path)
    write_flow(logger, clock, "rejected")
    store = stores(tmp_path)
    store.refresh()
    path = day_file(tmp_path)
    size = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b'{"timestamp":"2026-11-18T10:00:00.0')  # a writer died mid-line
    store.refresh()
    os.truncate(path, size)  # the next writer's start-up repair cuts it off
    write_flow(logger, clock, "rejected")
    store.refresh()
    assert store.read_stats.truncations == 0
    assert store.counts(0, 4e9) == truth(tmp_path) == Counter(signal_processing=2, risk_rejection=2)


def test_series_step_merges_buckets(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    clock = make_trail(tmp_path, flows=30)
    store = stores(tmp_path)
    store.refresh()
    start = T0 // 3600 * 3600
    merged = store.series(start, clock.now, step_seconds=600)
    assert all(b - a == 600 for (a, _), (b, _) in itertools.pairwise(merged))
    assert sum((c for _, c in merged), Counter()) == truth(tmp_path)


def test_a_deleted_record_breaks_the_chain_at_the_next_line(
    tmp_path: Path, make_trail: Callable[..., FakeClock], stores: Callable[..., TrailStore]
) -> None:
    make_trail(tmp_path, flows=4)
    path = day_file(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[5]
    path.write_bytes(b"".join(lines))
    store = stores(tmp_path)
    store.refresh()
    integrity = store.integrity
    assert integrity.ok is False and integrity.problems == 1
    assert integrity.problem is not None and f"{path.name} line 6: prev" in integrity.problem
