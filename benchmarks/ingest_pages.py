"""Each dashboard page's data for benchmarks/dashboard_ingest.py: what its view asks of the
store, over 24 h and over the whole trail, timed at a fresh data version.

``--pages-only`` runs only this, on the kept day indexes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks.child import ROOT
from benchmarks.trailgen import CACHE, START, TrailWriter, appender, cut_appended


def page_queries(store: Any, rules: Any, start: float, end: float) -> dict[str, Any]:
    """Per dashboard page, what its view asks of the store for one window (dashboard/views/
    *.py, without the figures): name -> a function computing it."""
    from dashboard import metrics
    from dashboard.panels import AlertMonitor
    from dashboard.viewstate import display_bucket

    step = display_bucket(end - start)
    table = 1000  # TABLE_LIMIT of the signals and events pages

    def overview() -> Any:
        counts = store.counts(start, end)
        return (
            metrics.funnel(counts),
            store.last_times(),
            store.integrity,
            store.control_state(),
            store.series(start, end, step_seconds=step),
            store.capped_quantities(start, end),
        )

    def signals() -> Any:
        ids = store.recent_trace_ids(50)
        return (
            store.rejection_reasons(start, end),
            store.counts(start, end),
            store.series(start, end, step_seconds=step),
            store.signals(start, end, limit=table),
            store.trace(ids[0]) if ids else [],
        )

    def results() -> Any:
        return (
            store.results(start, end, step_seconds=step),
            store.equity(start, end, step_seconds=step),
            store.open_positions(),
        )

    def orders() -> Any:
        return (
            metrics.order_outcome_rows(store.order_outcomes(start, end)),
            store.rejection_reason_series(start, end, step_seconds=step),
        )

    def alerts() -> Any:  # the rules evaluated over the trail (the server's monitor thread)
        monitor = AlertMonitor(rules, clock=lambda: end)
        monitor.evaluate(store)
        return monitor.states()

    def events() -> Any:
        return store.recent(table, start=start, end=end)

    def trail() -> Any:
        return store.read_stats, store.integrity, store.integrity_by_bot()

    return {
        "overview": overview,
        "signals": signals,
        "results": results,
        "orders": orders,
        "alerts": alerts,
        "events": events,
        "trail": trail,
    }


def measure_pages(store: Any, writer: TrailWriter, runs: int = 5) -> None:
    """Each page's data at a fresh data version (10 records appended before each run, so
    nothing memoized for the previous version is reused), over 24 h and the whole trail."""
    from dashboard.alert_rules import load_rules

    rules = load_rules(ROOT / "dashboard" / "alerts.toml")
    times: dict[tuple[str, str], list[float]] = {}
    windows = ("24 h", "all (4 days)")
    sample: Any = None
    for _ in range(runs):
        writer.write_records(10, mean_gap=0.5)
        for fh in writer.files.values():
            fh.flush()
        store.refresh()
        end = (store.last_event_time or START) + 1
        for window, start in zip(windows, (end - 86_400, START - 5 * 86_400), strict=True):
            for name, compute in page_queries(store, rules, start, end).items():
                t = time.perf_counter()
                value = compute()
                times.setdefault((window, name), []).append(time.perf_counter() - t)
                if name == "results" and start < end - 86_400:
                    sample = value[0]
    print(f"\nper page's data (median of {runs} runs at new data versions; target <= 200 ms)")
    print(f"  {'page':<10}" + "".join(f"{w:>26}" for w in windows))
    worst = 0.0
    for name in page_queries(store, rules, 0, 1):
        cells = []
        for window in windows:
            median = sorted(times[(window, name)])[runs // 2] * 1e3
            worst = max(worst, median)
            cells.append(f"{median:8.1f} ms ({median / 200:4.2f} of target)")
        print(f"  {name:<10}" + "".join(f"{c:>26}" for c in cells))
    verdict = "met" if worst <= 200 else "NOT met"
    print(f"  slowest page {worst:.1f} ms: target <= 200 ms {verdict} ({200 / worst:.1f}x margin)")
    if sample is not None:
        print(
            f"  (results, whole trail: {sample.trades:,} trades, {sample.wins:,} wins,"
            f" exits {sample.exits}, net {sample.net_pnl:,.2f})"
        )


def measure_pages_only(directory: Path) -> None:
    """``--pages-only``: load the cached trail on the kept day indexes, time the pages."""
    from dashboard.store import TrailStore

    os.environ["AUDIT_CACHE_DIR"] = str(CACHE)
    store = TrailStore(directory)
    t = time.perf_counter()
    store.refresh()
    print(f"  load with the whole history (this process) {time.perf_counter() - t:6.2f} s")
    sizes = {p: p.stat().st_size for p in directory.glob("audit_*")}
    writer = appender(directory)
    try:
        measure_pages(store, writer)
    finally:
        writer.close()
        store.stop()
        cut_appended(directory, sizes)
