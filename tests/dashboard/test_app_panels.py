"""What the dashboard server computes once for every viewer (dashboard/panels.py), the
alert history's periods (dashboard/metrics.py) and how charts draw them."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.audit import AuditLogger
from dashboard import charts
from dashboard.alert_rules import parse_rules
from dashboard.metrics import Period, alert_periods
from dashboard.panels import AlertMonitor, SharedPanels
from dashboard.store import TrailStore
from tests.dashboard.conftest import FakeClock, write_flow
from tests.waiting import wait_until

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RULES = """
[[rules]]
name = "rejections"
metric = "risk_rejection_rate"
window = "1h"
fire_above = 0.5
clear_below = 0.3
min_samples = 2
stale_after = "1d"
"""


def test_a_panel_is_computed_once_per_key_whoever_asks() -> None:
    panels = SharedPanels()
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert [panels.get(("counts", 1), compute) for _ in range(3)] == [1, 1, 1]
    assert panels.get(("counts", 2), compute) == 2
    assert panels.computed == 2


def test_the_drawn_version_moves_at_most_once_per_hold() -> None:
    panels = SharedPanels(hold=3600)
    assert panels.version(5) == 5
    assert panels.version(6) == 5  # tabs refreshing meanwhile share version 5's panels
    assert SharedPanels(hold=0).version(6) == 6


def test_the_least_recently_used_panels_are_dropped() -> None:
    panels = SharedPanels(max_entries=2)
    for key in "abc":
        panels.get(key, lambda key=key: key)
    panels.get("a", lambda: "again")
    assert panels.computed == 4


def test_the_monitor_thread_evaluates_the_rules_when_the_trail_changes(
    tmp_path: Path, trail_writer: Callable[..., Any]
) -> None:
    logger, clock = trail_writer(tmp_path, start=time.time() - 60)
    write_flow(logger, clock, "normal")
    logger.flush()
    store = TrailStore(tmp_path, cache_dir=tmp_path / "cache")
    store.start()
    monitor = AlertMonitor(parse_rules(RULES), interval=0.2)
    try:
        monitor.start(store)
        assert str(monitor.states()["rejections"].state) == "nodata"  # one sample of 2
        version = monitor.version
        for _ in range(3):
            write_flow(logger, clock, "rejected")
        logger.flush()
        wait_until(lambda: str(monitor.states()["rejections"].state) == "firing", 30, "firing")
        assert monitor.version > version
    finally:
        monitor.stop()
        store.stop()


def test_each_bot_has_its_own_rule_states(tmp_path: Path) -> None:
    for bot, kind in (("alpha", "rejected"), ("beta", "normal")):
        clock = FakeClock(time.time() - 60)
        with AuditLogger(tmp_path / bot, bot_id=bot, clock=clock) as logger:
            for _ in range(3):
                write_flow(logger, clock, kind)
    store = TrailStore(tmp_path, cache_dir=tmp_path / "cache")
    store.refresh()
    monitor = AlertMonitor(parse_rules(RULES))
    monitor.evaluate(store)
    states = {name: str(s.state) for name, s in monitor.states().items()}
    assert states == {"rejections [alpha]": "firing", "rejections [beta]": "normal"}
    store.stop()


def test_a_monitor_without_rules_reports_why_and_evaluates_nothing() -> None:
    monitor = AlertMonitor(None, error="bad rules")
    assert monitor.states() == {}
    assert monitor.error == "bad rules"


def _alert(kind: str, at: float, **data: Any) -> dict[str, Any]:
    return {"event_type": kind, "additional_data": {"rule": "r", "at": at, **data}}


def test_alert_history_becomes_pending_and_firing_periods() -> None:
    history = [
        _alert("alert_fired", T0 + 120, active_since=T0 + 120, pending_seconds=120, metric="m"),
        _alert("alert_fired", T0 + 3720, active_since=T0 + 120),  # a repeat: same period
        _alert("alert_resolved", T0 + 4000),
        _alert("alert_fired", T0 + 5000, bot="beta"),  # still firing
    ]
    assert alert_periods(history, now=T0 + 6000) == [
        Period("r", "pending", T0, T0 + 120, "m"),
        Period("r", "firing", T0 + 120, T0 + 4000, "m"),
        Period("r [beta]", "firing", T0 + 5000, T0 + 6000, ""),
    ]


def test_firing_periods_are_shaded_on_the_rates_chart_and_thresholds_stay_out_of_the_legend() -> (
    None
):
    series = [(T0 + 60 * i, Counter(risk_validation=1, risk_rejection=1)) for i in range(10)]
    fig = charts.rates_over_time(
        series,
        ["risk_rejection_rate"],
        [charts.Threshold("risk_rejection_rate", 0.5, "fires", "fire")],
        firing=[Period("r", "firing", T0 + 120, T0 + 300), Period("old", "firing", 0, 60)],
    )
    (band,) = fig.layout.shapes
    assert (band.x0, band.x1, band.name) == (charts.utc(T0 + 120), charts.utc(T0 + 300), "r firing")
    assert [t.name for t in fig.data if t.showlegend is not False] == ["Risk rejection rate"]


def test_the_alert_timeline_has_a_row_per_rule_and_a_bar_per_state() -> None:
    periods = [Period("r", "pending", T0, T0 + 120), Period("r", "firing", T0 + 120, T0 + 400)]
    fig = charts.alert_timeline(periods, T0, T0 + 3600)
    assert [t.name for t in fig.data] == ["pending", "firing"]
    assert list(fig.data[1].x) == [280_000]  # ms
    assert not charts.alert_timeline(periods, T0 + 500, T0 + 900).data
