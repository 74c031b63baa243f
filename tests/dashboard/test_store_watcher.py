"""dashboard.store.TrailStore's watcher and threads: appended records seen without a
refresh, many tabs on one watcher, waiting for a new version, a directory that appears.

Waits are deadline-based (``wait_until``); nothing asserts on timing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from watchdog.observers.api import BaseObserver

from bot.audit import AuditLogger
from dashboard.store import TrailStore
from tests.dashboard.conftest import T0, FakeClock, truth, write_flow
from tests.waiting import wait_until

Writer = Callable[..., tuple[AuditLogger, FakeClock]]


@pytest.mark.parametrize("polling", [False, True], ids=["watchdog", "polling"])
def test_the_watcher_sees_appended_records(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore], polling: bool
) -> None:
    logger, clock = trail_writer(tmp_path)
    write_flow(logger, clock, "rejected")
    store = stores(tmp_path, polling=polling)
    store.start()
    assert store.counts(0, 4e9)["risk_rejection"] == 1
    write_flow(logger, clock, "normal")
    assert wait_until(lambda: store.counts(0, 4e9)["trade_executed"] == 1)
    assert store.counts(0, 4e9) == truth(tmp_path)
    assert wait_until(lambda: store.integrity.ok is True)


def test_many_tabs_share_one_watcher_and_stop_cleans_up(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    logger, clock = trail_writer(tmp_path)
    write_flow(logger, clock, "normal")
    store = stores(tmp_path)
    errors: list[BaseException] = []
    done = threading.Event()

    def tab() -> None:
        try:
            store.start()  # every tab's script run calls it; only the first starts anything
            while not done.is_set():
                store.counts(0, 4e9)
                store.series(T0 - 60, T0 + 600)
                store.recent(50, symbol="BTCUSDT")
                store.trace(next(iter(store.recent_trace_ids(1)), ""))
                _ = store.read_stats, store.integrity
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # daemon tabs, stopped in `finally`: a failed assertion must not leave them spinning
    tabs = [threading.Thread(target=tab, daemon=True) for _ in range(6)]
    for t in tabs:
        t.start()
    try:
        for kind in ("rejected", "capped", "failed"):
            write_flow(logger, clock, kind)
        expected = truth(tmp_path)
        # start() shows what is at hand before it starts the watcher: wait for both
        assert wait_until(lambda: store.counts(0, 4e9) == expected and store.running)
        observers = [
            t for t in threading.enumerate() if isinstance(t, BaseObserver) and t.is_alive()
        ]
        ingest = [t for t in threading.enumerate() if t.name == "trail-ingest"]
        assert len(observers) == 1 and len(ingest) == 1
    finally:
        done.set()
        for t in tabs:
            t.join(timeout=30)
    assert not errors
    store.stop()
    store.stop()  # idempotent
    assert not observers[0].is_alive() and not ingest[0].is_alive()
    assert not store.running


def test_wait_for_version_wakes_on_new_data(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    logger, clock = trail_writer(tmp_path)
    write_flow(logger, clock, "rejected")
    store = stores(tmp_path)
    store.start()
    version = store.version
    write_flow(logger, clock, "rejected")
    assert store.wait_for_version(version, timeout=15)
    assert wait_until(lambda: store.counts(0, 4e9)["risk_rejection"] == 2)


def test_a_missing_directory_is_empty_until_it_appears(
    tmp_path: Path, trail_writer: Writer, stores: Callable[..., TrailStore]
) -> None:
    audit_dir = tmp_path / "later"
    store = stores(audit_dir)
    store.start()
    assert store.counts(0, 4e9) == Counter()
    assert wait_until(lambda: store.integrity.ok is True)  # nothing to check is fine
    logger, clock = trail_writer(audit_dir)
    write_flow(logger, clock, "rejected")
    assert wait_until(lambda: store.counts(0, 4e9)["risk_rejection"] == 1)
