"""The dashboard's pages (dashboard/app.py + dashboard/views/) under streamlit.testing.v1.AppTest.

Each test points AUDIT_DIR at a temporary trail written by the real AuditLogger
(fixtures from tests/dashboard/conftest.py) with times just before now, so the
default "1h" window covers it. The known trail (``make_trail`` with 20 flows
cycling normal/rejected/capped/failed over BTCUSDT and ETHUSDT) has:

* 20 signals, 15 risk validations, 5 risk rejections -> risk rejection rate 25 %
* 15 sizings, 5 capped -> capping rate 33.3 %
* 10 trades, 30 orders placed, 5 rejected -> order rejection rate 14.3 %

Pages are opened as a browser would: ``switch_page("views/<page>.py")`` is the URL
path, ``query_params`` the URL's query.
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

from bot.audit import AuditLogger
from bot.audit.chain import ALERTS_FILE_PREFIX
from dashboard.views.frame import fmt_time, shared_panels
from dashboard.viewstate import format_utc
from tests.dashboard.conftest import FakeClock, write_flow
from tests.dashboard.test_store_results import MIDNIGHT, write_known_trail
from tests.waiting import wait_until

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
FLOWS = 20


@pytest.fixture(autouse=True)
def _isolated_caches() -> Iterator[None]:
    """Each test gets its own store, monitor and panels; stores are stopped afterwards."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()  # on_release stops the store's and the monitor's threads
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


def run_app(query: dict[str, Any] | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(str(m.value) for m in at.metric if m.label == label)


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def figure(at: AppTest, title: str) -> dict[str, Any]:
    return next(f for f in figures(at) if f["layout"]["title"]["text"].startswith(title))


def table(at: AppTest, *columns: str) -> Any:
    """The first dataframe on the page having these columns (a pandas DataFrame)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def trace_named(fig: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in fig["data"] if t.get("name") == name)


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


# ---------------------------------------------------------------- overview


def test_overview_headline_numbers_match_the_known_trail(known_trail: Path) -> None:
    at = run_app()
    assert metric(at, "Signals") == "20"
    assert metric(at, "Trades") == "10"
    assert metric(at, "Risk rejection rate") == "25.0%"
    assert metric(at, "Order rejection rate") == "14.3%"
    assert metric(at, "Capping rate") == "33.3%"
    assert metric(at, "Malformed lines") == "0"
    assert metric(at, "Last heartbeat").endswith("ago")
    assert metric(at, "Integrity") in {"OK", "checking"}


def test_overview_shows_the_three_mission_charts_without_a_click(known_trail: Path) -> None:
    at = run_app()
    funnel = figure(at, "Signal flow")
    assert funnel["data"][0]["y"] == ["Signals", "Passed risk", "Sized", "Traded"]
    assert funnel["data"][0]["x"] == [20, 15, 15, 10]
    rates = figure(at, "Rejection rates")
    assert trace_named(rates, "risk-rejection-rate fires")["y"] == [0.5, 0.5]
    assert trace_named(rates, "order-rejection-rate clears")["y"] == [0.1, 0.1]
    legend = [t["name"] for t in rates["data"] if t.get("showlegend") is not False]
    assert legend == ["Risk rejection rate", "Order rejection rate", "Execution failure rate"]
    capping = figure(at, "Position-size capping")
    assert sum(trace_named(capping, "capped")["y"]) == 5
    quantities = figure(at, "Requested vs capped quantity")
    assert trace_named(quantities, "requested")["y"] == [2.0] * 5
    assert trace_named(quantities, "capped")["y"] == [1.5] * 5


def test_overview_writes_the_charts_numbers_as_text(known_trail: Path) -> None:
    text = captions(run_app())
    assert "20 Signals → 15 Passed risk (75.0%) → 15 Sized (100.0%) → 10 Traded (66.7%)" in text
    assert "risk rejection rate 25.0% (5/20)" in text
    assert "5 of 15 sizings capped (33.3%)" in text
    assert "requested 10 → capped 7.5" in text


def test_alert_badge_follows_the_rule_evaluated_by_the_server(
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
    at = run_app()
    assert metric(at, "Alerts firing") == "1"
    assert any(":red-badge[rejections: firing]" in m.value for m in at.markdown)
    at = run_app(page="alerts")
    states = table(at, "rule", "state")
    assert list(states["state"]) == ["firing"]
    assert list(states["samples"]) == [20]


def test_trading_state_and_active_locks_are_shown_with_their_end(
    dirs: dict[str, Path], trail_writer: Callable[..., Any]
) -> None:
    logger, _ = trail_writer(dirs["audit"], start=time.time() - 60)
    halted = {"from": "active", "to": "halted", "reason": "r", "source": "operator"}
    logger.log_event("trading_state_changed", "set_trading_state", additional_data=halted)
    until = time.time() + 3600
    lock = {"protection": "cooldown", "symbol": "BTCUSDT", "until": until}
    logger.log_event("protection_triggered", "protect", symbol="BTCUSDT", additional_data=lock)
    logger.close()
    at = run_app()
    assert any(":red-badge[bot: halted]" in m.value for m in at.markdown)
    locks = table(at, "protection", "until (UTC)")
    assert list(locks["protection"]) == ["cooldown"]
    assert list(locks["symbol"]) == ["BTCUSDT"]
    assert list(locks["until (UTC)"]) == [fmt_time(until)]


# ---------------------------------------------------------------- signals and traces


def test_signals_page_lists_one_row_per_signal_with_its_outcome(known_trail: Path) -> None:
    at = run_app(page="signals")
    rows = table(at, "outcome", "trace_id")
    assert len(rows) == FLOWS
    assert sorted(set(rows["outcome"])) == ["capped", "failed", "rejected", "traded"]
    assert (rows["outcome"] == "rejected").sum() == 5


def test_signals_are_filtered_by_outcome_and_reason_from_the_url(known_trail: Path) -> None:
    at = run_app({"outcome": "rejected", "reason": "existing_position"}, page="signals")
    rows = table(at, "outcome", "trace_id")
    assert list(set(rows["outcome"])) == ["rejected"]
    assert list(set(rows["reason"])) == ["existing_position"]
    assert len(rows) == 5
    reasons = figure(at, "Top")
    assert reasons["data"][0]["y"] == ["existing_position"]


def test_a_trace_in_the_url_opens_on_the_signals_page_in_order(known_trail: Path) -> None:
    at = run_app(page="signals")
    failed = table(at, "outcome", "trace_id").query("outcome == 'failed'")["trace_id"].iloc[0]
    at = run_app({"trace": failed})  # the default page hands the trace to the signals page
    events = list(table(at, "event_type", "operation")["event_type"])
    assert events == [
        "signal_processing",
        "risk_validation",
        "position_size_calculated",
        "order_rejected",
        "trade_execution_failed",
    ]
    assert at.selectbox(key="trace").value == failed


def test_an_unknown_trace_says_so(known_trail: Path) -> None:
    at = run_app({"trace": "no-such-trace"}, page="signals")
    assert any("No events with trace_id" in w.value for w in at.warning)


# ---------------------------------------------------------------- results, orders, events, trail


def test_results_page_equals_the_hand_computed_sums(dirs: dict[str, Path]) -> None:
    write_known_trail(dirs["audit"])  # a take-profit filled in two trades, over two days
    window = {"range": "custom", "from": format_utc(MIDNIGHT - 7200), "to": format_utc(4e9)}
    at = run_app(window, page="results")
    assert metric(at, "Net PnL") == "0.80"  # 2.0 + 1.0 - 1.5 - 0.5 realized, 0.20 fees
    assert metric(at, "Realized PnL") == "1.00"
    assert metric(at, "Fees") == "0.20"
    assert metric(at, "Trades closed") == "3"
    assert metric(at, "Wins / losses") == "1 / 2"
    per_symbol = table(at, "symbol", "net PnL").set_index("symbol")
    assert per_symbol.loc["BTCUSDT", "net PnL"] == pytest.approx(3.0 - 0.14)
    assert per_symbol.loc["ETHUSDT", "net PnL"] == pytest.approx(-2.0 - 0.06)
    exits = figure(at, "Exits")
    assert dict(zip(exits["data"][0]["x"], exits["data"][0]["y"], strict=True)) == {
        "take_profit": 1,
        "stop_loss": 1,
        "protective_close": 1,
    }
    assert list(table(at, "symbol", "entry price")["symbol"]) == ["BTCUSDT"]  # E is open
    assert figure(at, "Net PnL (cumulative")["data"][0]["y"][-1] == pytest.approx(0.8)


def test_orders_page_counts_outcomes_per_order_type(known_trail: Path) -> None:
    at = run_app(page="orders")
    outcomes = figure(at, "Order outcomes")
    placed = trace_named(outcomes, "placed")
    assert dict(zip(placed["x"], placed["y"], strict=True)) == {
        "MARKET": 10,
        "STOP_MARKET": 10,
        "TAKE_PROFIT_MARKET": 10,
    }
    rows = table(at, "order_type", "rejection_rate").set_index("order_type")
    assert rows.loc["MARKET", "rejection_rate"] == pytest.approx(5 / 15)


def test_event_table_is_filtered_by_symbol_and_event_type(known_trail: Path) -> None:
    at = run_app({"symbol": "ETHUSDT", "event": ["risk_rejection"]}, page="events")
    rows = table(at, "event_type", "symbol")
    assert len(rows) == 2  # rejected flows 5 and 13 are on ETHUSDT (flows 4-7, 12-15)
    assert set(rows["symbol"]) == {"ETHUSDT"}
    assert set(rows["event_type"]) == {"risk_rejection"}
    assert at.get("download_button")


def test_malformed_lines_are_counted_and_shown(known_trail: Path) -> None:
    (day_file,) = known_trail.glob("audit_*.jsonl")
    with day_file.open("ab") as fh:
        fh.write(b"this is not json\n")
        fh.write(b'{"timestamp": "2026-01-01T00:00:00.000000Z", "event_type": "bogus"}\n')
    at = run_app(page="trail")
    assert metric(at, "Malformed lines") == "2"
    assert set(table(at, "reason", "lines")["reason"]) == {"invalid_json", "unknown_event_type"}
    assert "this is not json" in set(table(at, "reason", "preview")["preview"])
    assert list(table(at, "bot", "chain")["bot"]) == ["bot"]


# ---------------------------------------------------------------- filters in the URL, many bots


def test_filters_are_read_from_the_url_and_kept_across_pages(known_trail: Path) -> None:
    at = run_app({"range": "6h", "symbol": "BTCUSDT"})
    assert at.selectbox(key="range").value == "6h"
    assert metric(at, "Signals") == "12"  # flows 0-3, 8-11, 16-19
    at.switch_page("views/signals.py").run()
    assert at.selectbox(key="symbol").value == "BTCUSDT"
    assert set(table(at, "outcome", "trace_id")["symbol"]) == {"BTCUSDT"}
    assert (at.query_params["range"], at.query_params["symbol"]) == ("6h", "BTCUSDT")


def test_a_custom_range_from_the_url_selects_that_window(known_trail: Path) -> None:
    at = run_app({"range": "custom", "from": "2001-01-01", "to": "2001-01-02T00:00:00Z"})
    assert at.text_input(key="from").value == "2001-01-01"
    assert metric(at, "Signals") == "0"


def test_bad_url_params_fall_back_to_defaults(known_trail: Path) -> None:
    at = run_app({"range": "5y", "symbol": "NOPE", "event": ["nonsense"]})
    assert at.selectbox(key="range").value == "1h"
    assert at.selectbox(key="symbol").value == "All"
    assert metric(at, "Signals") == "20"
    assert at.query_params == {}  # the bad values are removed from the URL


def test_an_unusable_custom_range_warns_and_shows_the_last_hour(known_trail: Path) -> None:
    at = run_app({"range": "custom", "from": "yesterday-ish"})
    assert any("Custom range" in w.value for w in at.warning)
    assert metric(at, "Signals") == "20"


def test_two_bots_are_shown_together_and_apart(dirs: dict[str, Path]) -> None:
    for bot, flows in (("alpha", 3), ("beta", 5)):
        clock = FakeClock(time.time() - 600)
        with AuditLogger(dirs["audit"] / bot, bot_id=bot, clock=clock) as logger:
            for _ in range(flows):
                write_flow(logger, clock, "normal")
    assert metric(run_app(), "Signals") == "8"
    at = run_app({"bot": "beta"})
    assert at.selectbox(key="bot").value == "beta"
    assert metric(at, "Signals") == "5"
    rows = table(run_app({"bot": "alpha"}, page="signals"), "outcome", "trace_id")
    assert set(rows["bot"]) == {"alpha"} and len(rows) == 3


# ---------------------------------------------------------------- empty, broken, live, shared


def test_every_page_of_an_empty_trail_renders_friendly_empty_states(
    dirs: dict[str, Path],
) -> None:
    for page in ("overview", "signals", "results", "orders", "alerts", "events", "trail"):
        at = run_app(page=page)
        for fig in figures(at):
            assert fig["layout"]["annotations"][0]["text"].startswith("No ")
    at = run_app()
    assert metric(at, "Signals") == "0"
    assert metric(at, "Last event") == "never"
    assert any("No audit records yet" in i.value for i in at.info)


def test_a_bad_rules_file_is_reported_without_breaking_the_page(
    known_trail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "bad.toml"
    rules.write_text('[[rules]]\nname = "x"\nmetric = "nonsense"\n')
    monkeypatch.setenv("ALERT_RULES", str(rules))
    assert metric(run_app(), "Alerts firing") == "rules error"
    at = run_app(page="alerts")
    assert any("nonsense" in e.value for e in at.error)


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


def test_tabs_with_the_same_view_share_one_computation(known_trail: Path) -> None:
    window = {"range": "custom", "from": format_utc(time.time() - 3600)}  # a fixed window
    first = run_app(window)
    store = first.session_state["_context"].store
    wait_until(lambda: store.integrity.ok, timeout=60, what="the history check")  # settled
    first.run()
    panels = shared_panels(str(known_trail))
    computed = panels.computed
    second = run_app(window)  # another tab, same data version and view
    assert metric(second, "Signals") == metric(first, "Signals") == "20"
    assert panels.computed == computed


def test_the_page_records_what_it_was_drawn_for(known_trail: Path, tmp_path: Path) -> None:
    """The watcher reruns a page only when this key moves: new records move it."""
    at = run_app()
    store = at.session_state["_context"].store
    wait_until(lambda: store.integrity.ok, timeout=60, what="the history check")  # settled
    ctx = at.run().session_state["_context"]
    drawn = ctx.live_key()
    assert ctx.live_key() == drawn  # nothing new: the page is not redrawn
    logger_clock = FakeClock(time.time() - 5)
    with AuditLogger(known_trail, clock=logger_clock, fsync_interval=3600) as logger:
        logger.log_event("heartbeat", "heartbeat")
    assert wait_until(lambda: ctx.live_key() != drawn, timeout=30)


def test_alert_history_is_a_timeline_shaded_on_the_rates_and_linked_to_its_window(
    known_trail: Path, dirs: dict[str, Path]
) -> None:
    fired_at = time.time() - 600
    alert = {"rule": "risk-rejection-rate", "metric": "risk_rejection_rate", "bot": "bot"}
    with AuditLogger(dirs["alerts"], file_prefix=ALERTS_FILE_PREFIX) as logger:
        logger.log_event(
            "alert_fired",
            "evaluate_alert_rule",
            additional_data={
                **alert,
                "at": fired_at,
                "active_since": fired_at,
                "pending_seconds": 120,
                "window_seconds": 900,
            },
        )
        logger.log_event(
            "alert_resolved", "evaluate_alert_rule", additional_data={**alert, "at": fired_at + 300}
        )
    rates = figure(run_app(), "Rejection rates")
    (band,) = rates["layout"]["shapes"]
    assert band["name"] == "risk-rejection-rate [bot] firing"
    at = run_app(page="alerts")
    timeline = figure(at, "Alert history")
    assert [t["name"] for t in timeline["data"]] == ["pending", "firing"]
    assert timeline["data"][1]["x"] == [pytest.approx(300_000, abs=1)]
    links = table(at, "rule", "window")["window"].dropna()
    assert list(links) == [
        f"signals?range=custom&from={format_utc(fired_at - 900)}&to={format_utc(fired_at + 1)}"
        "&bot=bot"
    ]
