"""The dashboard page (dashboard/app.py) under streamlit.testing.v1.AppTest.

Each test points AUDIT_DIR at a temporary trail written by the real AuditLogger
(fixtures from tests/dashboard/conftest.py) with times just before now, so the
default "1h" window covers it. The known trail (``make_trail`` with 20 flows
cycling normal/rejected/capped/failed over BTCUSDT and ETHUSDT) has:

* 20 signals, 15 risk validations, 5 risk rejections -> risk rejection rate 25 %
* 15 sizings, 5 capped -> capping rate 33.3 %
* 10 trades, 30 orders placed, 5 rejected -> order rejection rate 14.3 %
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.waiting import wait_until

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
FLOWS = 20


@pytest.fixture(autouse=True)
def _isolated_caches() -> Iterator[None]:
    """Each test gets its own store and alert engine; stores are stopped afterwards."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()  # on_release stops the store's threads
    st.cache_data.clear()


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    paths = {"audit": tmp_path / "audit", "alerts": tmp_path / "alerts"}
    monkeypatch.setenv("AUDIT_DIR", str(paths["audit"]))
    monkeypatch.setenv("ALERTS_DIR", str(paths["alerts"]))
    monkeypatch.delenv("ALERT_RULES", raising=False)
    return paths


@pytest.fixture
def known_trail(dirs: dict[str, Path], make_trail: Callable[..., Any]) -> Path:
    make_trail(dirs["audit"], flows=FLOWS, start=time.time() - 900)
    return dirs["audit"]


def run_app(query: dict[str, Any] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(str(m.value) for m in at.metric if m.label == label)


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def table(at: AppTest, *columns: str) -> Any:
    """The first dataframe on the page having these columns (a pandas DataFrame)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def trace_named(figure: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in figure["data"] if t.get("name") == name)


# ---------------------------------------------------------------- headline and charts


def test_headline_numbers_match_the_known_trail(known_trail: Path) -> None:
    at = run_app()
    assert metric(at, "Signals") == "20"
    assert metric(at, "Trades") == "10"
    assert metric(at, "Risk rejection rate") == "25.0%"
    assert metric(at, "Order rejection rate") == "14.3%"
    assert metric(at, "Capping rate") == "33.3%"
    assert metric(at, "Malformed lines") == "0"
    assert metric(at, "Last heartbeat").endswith("ago")
    assert metric(at, "Integrity") in {"OK", "checking"}


def test_integrity_turns_ok_once_the_history_is_verified(known_trail: Path) -> None:
    at = run_app()
    assert wait_until(lambda: metric(at.run(), "Integrity") == "OK", timeout=60)


def test_signal_flow_tab_draws_the_funnel_of_the_trail(known_trail: Path) -> None:
    at = run_app()
    funnel = next(f for f in figures(at) if f["data"] and f["data"][0]["type"] == "funnel")
    assert funnel["data"][0]["y"] == ["Signals", "Passed risk", "Sized", "Traded"]
    assert funnel["data"][0]["x"] == [20, 15, 15, 10]


def test_rejection_rates_chart_draws_the_alert_thresholds_from_the_rules(
    known_trail: Path,
) -> None:
    at = run_app({"tab": "Rejections"})
    rates = next(f for f in figures(at) if f["layout"]["title"]["text"] == "Rejection rates")
    names = [t["name"] for t in rates["data"]]
    assert "Risk rejection rate" in names
    assert trace_named(rates, "risk-rejection-rate fires")["y"] == [0.5, 0.5]
    assert trace_named(rates, "risk-rejection-rate clears")["y"] == [0.3, 0.3]
    assert trace_named(rates, "order-rejection-rate fires")["y"] == [0.2, 0.2]
    reasons = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("Top"))
    assert reasons["data"][0]["y"] == ["existing_position"]
    assert reasons["data"][0]["x"] == [5]


def test_capping_tab_shows_requested_vs_capped_quantities(known_trail: Path) -> None:
    at = run_app({"tab": "Capping"})
    quantities = next(
        f for f in figures(at) if f["layout"]["title"]["text"] == "Requested vs capped quantity"
    )
    assert trace_named(quantities, "requested")["y"] == [2.0] * 5
    assert trace_named(quantities, "capped")["y"] == [1.5] * 5
    capping = next(
        f for f in figures(at) if f["layout"]["title"]["text"] == "Position-size capping"
    )
    assert sum(trace_named(capping, "capped")["y"]) == 5
    assert trace_named(capping, "capping-rate fires")["yaxis"] == "y2"


def test_orders_tab_counts_outcomes_per_order_type(known_trail: Path) -> None:
    at = run_app({"tab": "Orders"})
    (outcomes,) = figures(at)
    placed = trace_named(outcomes, "placed")
    assert dict(zip(placed["x"], placed["y"], strict=True)) == {
        "MARKET": 10,
        "STOP_MARKET": 10,
        "TAKE_PROFIT_MARKET": 10,
    }
    rejected = trace_named(outcomes, "rejected")
    assert dict(zip(rejected["x"], rejected["y"], strict=True))["MARKET"] == 5
    rows = table(at, "order_type", "rejection_rate").set_index("order_type")
    assert rows.loc["MARKET", "placed"] == 10
    assert rows.loc["MARKET", "rejection_rate"] == pytest.approx(5 / 15)


def test_alert_states_are_listed_for_every_shipped_rule(known_trail: Path) -> None:
    at = run_app({"tab": "Alerts"})
    states = table(at, "rule", "state")
    assert list(states["rule"]) == [
        "risk-rejection-rate",
        "order-rejection-rate",
        "capping-rate",
        "execution-failure-rate",
        "trail-stale",
    ]
    assert set(states["state"]) <= {"normal", "pending", "firing", "recovering", "nodata"}


def test_alert_state_and_badge_follow_the_rule_on_the_trail(
    dirs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_trail: Callable[..., Any],
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rules]]\nname = "rejections"\nmetric = "risk_rejection_rate"\nwindow = "1h"\n'
        'fire_above = 0.2\nclear_below = 0.1\nmin_samples = 4\nstale_after = "1d"\n'
    )
    monkeypatch.setenv("ALERT_RULES", str(rules))
    make_trail(dirs["audit"], flows=FLOWS, start=time.time() - 900)  # 25 % > 20 %
    at = run_app({"tab": "Alerts"})
    states = table(at, "rule", "state")
    assert list(states["state"]) == ["firing"]
    assert list(states["samples"]) == [20]
    assert metric(at, "Alerts firing") == "1"
    assert any(":red-badge[rejections: firing]" in m.value for m in at.markdown)


# ---------------------------------------------------------------- trace and event table


def test_trace_view_lists_every_event_of_one_trace_in_order(known_trail: Path) -> None:
    at = run_app({"tab": "Trace"})
    newest = at.selectbox(key="trace").options[0]
    at = run_app({"tab": "Trace", "trace": newest})
    events = list(table(at, "event_type", "trace_id")["event_type"])
    assert events[0] == "signal_processing"
    assert len({*table(at, "event_type", "trace_id")["trace_id"]}) == 1
    # flow 20 (index 19) is "failed": signal, risk, sizing, order rejected, failure
    assert events == [
        "signal_processing",
        "risk_validation",
        "position_size_calculated",
        "order_rejected",
        "trade_execution_failed",
    ]


def test_event_table_is_filtered_by_symbol_and_event_type(known_trail: Path) -> None:
    at = run_app({"tab": "Events", "symbol": "ETHUSDT", "event": ["risk_rejection"]})
    rows = table(at, "event_type", "symbol")
    assert len(rows) == 2  # rejected flows 5 and 13 are on ETHUSDT (flows 4-7, 12-15)
    assert set(rows["symbol"]) == {"ETHUSDT"}
    assert set(rows["event_type"]) == {"risk_rejection"}
    assert at.get("download_button")


# ---------------------------------------------------------------- filters in the URL


def test_filters_are_read_from_the_url(known_trail: Path) -> None:
    at = run_app({"range": "6h", "symbol": "BTCUSDT", "event": ["heartbeat"], "tab": "Events"})
    assert at.selectbox(key="range").value == "6h"
    assert at.selectbox(key="symbol").value == "BTCUSDT"
    assert at.multiselect(key="event").value == ["heartbeat"]
    assert metric(at, "Signals") == "12"  # flows 0-3, 8-11, 16-19
    assert at.query_params == {
        "range": "6h",
        "symbol": "BTCUSDT",
        "event": "heartbeat",
        "tab": "Events",
    }


def test_a_custom_range_from_the_url_selects_that_window(known_trail: Path) -> None:
    at = run_app({"range": "custom", "from": "2001-01-01", "to": "2001-01-02T00:00:00Z"})
    assert at.text_input(key="from").value == "2001-01-01"
    assert metric(at, "Signals") == "0"


def test_bad_url_params_fall_back_to_defaults(known_trail: Path) -> None:
    at = run_app({"range": "5y", "symbol": "NOPE", "event": ["nonsense"], "tab": "Nowhere"})
    assert at.selectbox(key="range").value == "1h"
    assert at.selectbox(key="symbol").value == "All symbols"
    assert at.multiselect(key="event").value == []
    assert metric(at, "Signals") == "20"
    assert at.query_params == {}  # the bad values are removed from the URL


def test_an_unusable_custom_range_warns_and_shows_the_last_hour(known_trail: Path) -> None:
    at = run_app({"range": "custom", "from": "yesterday-ish"})
    assert any("Custom range" in w.value for w in at.warning)
    assert metric(at, "Signals") == "20"


def test_changing_a_filter_widget_changes_the_view(known_trail: Path) -> None:
    at = run_app()
    at.selectbox(key="symbol").select("ETHUSDT").run()
    assert metric(at, "Signals") == "8"  # flows 4-7, 12-15


# ---------------------------------------------------------------- empty and broken trails


def test_empty_trail_renders_friendly_empty_states(dirs: dict[str, Path]) -> None:
    for tab in ("Signal flow", "Rejections", "Capping", "Orders", "Alerts", "Trace", "Events"):
        at = run_app({"tab": tab})
        assert metric(at, "Signals") == "0"
        assert metric(at, "Risk rejection rate") == "—"
        assert metric(at, "Last event") == "never"
        assert any("No audit records yet" in i.value for i in at.info)
        for figure in figures(at):
            assert figure["layout"]["annotations"][0]["text"].startswith("No ")


def test_malformed_lines_are_counted_and_shown(known_trail: Path) -> None:
    (day_file,) = known_trail.glob("audit_*.jsonl")
    with day_file.open("ab") as fh:
        fh.write(b"this is not json\n")
        fh.write(b'{"timestamp": "2026-01-01T00:00:00.000000Z", "event_type": "bogus"}\n')
    at = run_app({"tab": "Trail"})
    assert metric(at, "Malformed lines") == "2"
    reasons = table(at, "reason", "lines")
    assert set(reasons["reason"]) == {"invalid_json", "unknown_event_type"}
    recent = table(at, "reason", "preview")
    assert "this is not json" in set(recent["preview"])


def test_a_bad_rules_file_is_reported_without_breaking_the_page(
    known_trail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "bad.toml"
    rules.write_text('[[rules]]\nname = "x"\nmetric = "nonsense"\n')
    monkeypatch.setenv("ALERT_RULES", str(rules))
    at = run_app({"tab": "Alerts"})
    assert metric(at, "Alerts firing") == "rules error"
    assert any("nonsense" in e.value for e in at.error)
    assert metric(at, "Signals") == "20"


# ---------------------------------------------------------------- live data


def test_new_records_show_up_on_the_next_run(
    dirs: dict[str, Path], trail_writer: Callable[..., Any]
) -> None:
    logger, clock = trail_writer(dirs["audit"], start=time.time() - 60)
    logger.log_event("heartbeat", "heartbeat")
    logger.flush()
    at = run_app()
    assert metric(at, "Signals") == "0"
    for _ in range(3):
        logger.log_event("signal_processing", "process_signal", symbol="BTCUSDT")
        clock.advance(1)
    logger.flush()
    assert wait_until(lambda: metric(at.run(), "Signals") == "3", timeout=30)
