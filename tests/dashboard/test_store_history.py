"""The history by day: kept by fingerprint, read again only when changed, many bots.

What a closed day contributes is kept outside the trail directory (the day index
cache); these tests restart stores on the same directory and cache and check what
they show and what they had to read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.audit import AuditLogger, chain
from bot.audit.reader import TrailFollower, iter_records
from bot.audit.trails import discover
from dashboard import history
from dashboard.store import TrailStore, epoch_seconds
from tests.dashboard.conftest import T0, FakeClock, write_flow
from tests.waiting import wait_until

DAY = 86_400
Writer = Callable[..., tuple[AuditLogger, FakeClock]]


def truth(directory: Path, bot: str | None = None) -> Counter[str]:
    return Counter(
        r["event_type"]
        for r in iter_records(directory)
        if bot is None or r.get("bot_id", "bot") == bot
    )


def days_trail(trail_writer: Writer, directory: Path, days: int = 4, flows: int = 6) -> FakeClock:
    """``flows`` signals of every kind on each of ``days`` UTC days."""
    first = (T0 // DAY - days + 1) * DAY
    logger, clock = trail_writer(directory, start=first + 3600)
    for day in range(days):
        clock.now = first + day * DAY + 3600
        for i in range(flows):
            logger.log_event("heartbeat", "heartbeat")
            write_flow(logger, clock, ("normal", "rejected", "capped", "failed")[i % 4])
            clock.advance(90)
    logger.close()
    return clock


@pytest.fixture
def lines_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the day files whose lines are read (by the follower or the indexer)."""
    read: list[str] = []
    poll = TrailFollower.poll_runs
    index = history.index_pending

    def spy_poll(self: TrailFollower) -> list:  # type: ignore[type-arg]
        runs = poll(self)
        read.extend(sorted({run.file for run in runs}))
        return runs

    def spy_index(pending: history.PendingDay, *args: object) -> object:
        read.append(pending.path.name)
        return index(pending, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(TrailFollower, "poll_runs", spy_poll)
    monkeypatch.setattr("dashboard.store.index_pending", spy_index)
    return read


def test_a_restart_reads_only_what_was_appended_since(
    tmp_path: Path,
    trail_writer: Writer,
    stores: Callable[..., TrailStore],
    lines_read: list[str],
) -> None:
    clock = days_trail(trail_writer, tmp_path)
    first = stores(tmp_path)
    first.refresh()
    first.stop()  # keeps the index of the newest day (a prefix of today's file)
    assert len(set(lines_read)) == 4  # the first start read every day
    lines_read.clear()
    logger, _ = trail_writer(tmp_path, start=clock.now)
    write_flow(logger, clock, "rejected")  # appended to today's file after the stop
    again = stores(tmp_path)
    again.refresh()
    newest = sorted(p.name for p in tmp_path.glob("audit_*.jsonl"))[-1]
    assert lines_read == [newest]
    assert again.totals() == truth(tmp_path)
    assert again.counts(0, 4e9, "BTCUSDT") == first.counts(0, 4e9, "BTCUSDT") + Counter(
        signal_processing=1, risk_rejection=1
    )
    assert again.integrity.ok is True
    assert again.integrity.checked_records == sum(truth(tmp_path).values())


def test_a_changed_closed_day_is_verified_again_and_named(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    days_trail(trail_writer, tmp_path)
    first = stores(tmp_path)
    first.refresh()
    first.stop()
    closed = sorted(tmp_path.glob("audit_*.jsonl"))[1]
    lines = closed.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"operation":"', b'"operation":"X', 1)[:-2] + b"\n"  # same size
    closed.write_bytes(b"".join(lines))
    again = stores(tmp_path)
    again.refresh()
    status = again.integrity
    assert status.ok is False
    assert status.problem is not None and f"{closed.name} line 3" in status.problem
    assert status.reverified_days == [closed.name]


def test_history_is_indexed_in_the_background_while_today_is_shown(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    days_trail(trail_writer, tmp_path, days=5)
    store = stores(tmp_path, tail_lines=0)
    store.start()  # returns once the newest day is read; older days follow
    newest = sorted(tmp_path.glob("audit_*.jsonl"))[-1]
    today = chain.day_of_file(newest)
    assert today is not None
    start = epoch_seconds(f"{today[:4]}-{today[4:6]}-{today[6:]}T00:00:00Z")
    today_truth = Counter(
        r["event_type"]
        for r in iter_records(tmp_path)
        if r["timestamp"].startswith(f"{today[:4]}-{today[4:6]}-{today[6:]}")
    )
    assert store.counts(start, start + DAY) == today_truth
    assert wait_until(lambda: not store.history_progress.running)
    progress = store.history_progress
    assert (progress.done_days, progress.total_days) == (4, 4)
    assert progress.done_bytes == progress.total_bytes > 0
    assert store.totals() == truth(tmp_path)
    assert wait_until(lambda: store.integrity.ok is True)


def test_large_days_are_indexed_in_worker_processes(
    tmp_path: Path,
    trail_writer: Writer,
    stores: Callable[..., TrailStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history.HistoryIndexer, "INLINE_BYTES", 0)  # every day is "large"
    days_trail(trail_writer, tmp_path, days=4)
    store = stores(tmp_path, tail_lines=0)
    store.start()
    assert wait_until(lambda: not store.history_progress.running, timeout=60)
    assert store.history_progress.done_days == 3
    assert store.totals() == truth(tmp_path)
    assert wait_until(lambda: store.integrity.ok is True)
    restarted = stores(tmp_path)
    restarted.refresh()
    assert restarted.history_progress.total_days == 0  # the workers kept what they did
    assert restarted.totals() == truth(tmp_path)


def test_old_days_are_kept_by_the_hour_recent_days_by_the_minute(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    clock = days_trail(trail_writer, tmp_path, days=4)
    store = stores(tmp_path, minute_days=2)
    store.refresh()
    first = (T0 // DAY - 3) * DAY
    old = store.series(first, first + DAY)
    recent = store.series(first + 3 * DAY, clock.now)
    assert {t % 3600 for t, c in old if c} == {0}  # hour buckets, at their start
    assert len([c for _, c in recent if c]) > 3  # minute buckets
    assert sum((c for _, c in old), Counter()) == Counter(
        r["event_type"]
        for r in iter_records(tmp_path)
        if first <= epoch_seconds(r["timestamp"]) < first + DAY
    )


def _foreign_trail(directory: Path, records: int = 3) -> None:
    """A trail written before bot_id existed: sealed lines without it."""
    directory.mkdir(parents=True)
    sealer, tag = chain.Sealer(), chain.run_tag("run-old")
    prev = chain.GENESIS_HASH.encode()
    with open(directory / "audit_20261118.jsonl", "wb") as fh:
        for seq in range(records):
            payload = json.dumps(
                {
                    "timestamp": f"2026-11-18T10:00:0{seq}.000000Z",
                    "event_type": "heartbeat",
                    "operation": "heartbeat",
                },
                separators=(",", ":"),
            ).encode()[:-1]
            line, prev = sealer.seal(payload, tag, seq, prev)
            fh.write(line)


def test_many_bots_are_read_together_and_apart_each_chain_on_its_own(
    tmp_path: Path, stores: Callable[..., TrailStore]
) -> None:
    for name, kind in (("alpha", "rejected"), ("beta", "normal")):
        clock = FakeClock()
        with AuditLogger(tmp_path / name, bot_id=name, clock=clock, fsync_interval=3600) as log:
            write_flow(log, clock, kind)
    _foreign_trail(tmp_path / "gamma")
    assert set(discover(tmp_path)) == {"alpha", "beta", "gamma"}
    store = stores(tmp_path)
    store.refresh()
    assert store.bots() == ["alpha", "beta", "gamma"]  # gamma: its subdirectory's name
    assert store.counts(0, 4e9, bot="alpha") == truth(tmp_path / "alpha")
    assert store.counts(0, 4e9, bot="beta")["trade_executed"] == 1
    assert store.counts(0, 4e9, bot="gamma") == Counter(heartbeat=3)
    every = truth(tmp_path / "alpha") + truth(tmp_path / "beta") + Counter(heartbeat=3)
    assert store.counts(0, 4e9) == every
    assert store.integrity_by_bot()["beta"].ok is True
    beta = next((tmp_path / "beta").glob("audit_*.jsonl"))
    data = beta.read_bytes()
    beta.write_bytes(data.replace(b"BTCUSDT", b"BTCUSDX", 1))
    edited = stores(tmp_path)
    edited.refresh()
    by_bot = edited.integrity_by_bot()
    assert by_bot["alpha"].ok is True and by_bot["gamma"].ok is True
    assert by_bot["beta"].ok is False
    assert edited.integrity.ok is False
