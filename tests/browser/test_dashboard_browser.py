"""The dashboard in a real browser: `streamlit run dashboard/app.py` over a live trail.

Checks what only a browser can: the Overview draws the headline and the three mission
charts without a click; records appended by a running AuditLogger appear without a
reload (and an alert goes to firing); pages and filters live in the URL; a signal row
opens its trace; ``?trace=`` and ``?bot=`` work from a cold URL. Append -> visible is
measured against SPEC §9's 2 s deadline (best of three appends, since this runs on
shared, loaded machines); other waits use generous deadlines.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from tests.browser.conftest import ARTIFACTS, Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEADLINE_MS = 60_000  # generous, for everything but the append -> visible deadline
VISIBLE_WITHIN_S = 2.0  # SPEC §9
RULES = """
[[rules]]
name = "browser-rejections"
metric = "risk_rejection_rate"
window = "1h"
fire_above = 0.5
clear_below = 0.3
min_samples = 4
pending = "0s"
stale_after = "1h"
"""

METRIC_VALUE_JS = """
([label, expected]) => [...document.querySelectorAll('[data-testid="stMetric"]')].some(
  (m) => m.querySelector('[data-testid="stMetricLabel"]')?.innerText.trim() === label
    && m.querySelector('[data-testid="stMetricValue"]')?.innerText.trim() === expected)
"""


def write_signal(logger: AuditLogger, n: int, *, rejected: bool, symbol: str = "BTCUSDT") -> None:
    """One signal's events (SPEC §6): a rejected flow or a normal trade."""
    tid = f"browser{n:04d}{'r' if rejected else 'n'}"
    signal = {"signal_generated": True, "signal_type": "LONG", "entry_price": 100.0}
    logger.log_event("signal_processing", "process_signal", symbol, additional_data=signal,
                     trace_id=tid)  # fmt: skip
    if rejected:
        logger.log_risk_rejection(
            symbol, "existing_position", "already in a position", "position_check", signal,
            trace_id=tid,
        )  # fmt: skip
        return
    logger.log_event("risk_validation", "validate_risk", symbol, order_data=signal, trace_id=tid)
    logger.log_event(
        "position_size_calculated", "calculate_position_size", symbol,
        additional_data={"quantity": 0.5}, trace_id=tid,
    )  # fmt: skip
    for order_type in ("MARKET", "TAKE_PROFIT_MARKET", "STOP_MARKET"):
        logger.log_order_placed(symbol, {"order_type": order_type, "side": "BUY"}, trace_id=tid)
    logger.log_event("trade_executed", "execute_trade", symbol, trace_id=tid,
                     additional_data={"signal_type": "LONG", "quantity": 0.5})  # fmt: skip


def metric_shows(page: Any, label: str, value: str, timeout_ms: float = DEADLINE_MS) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(METRIC_VALUE_JS, arg=[label, value], polling=50, timeout=timeout_ms)
    except PlaywrightTimeout:
        shown = page.locator('[data-testid="stMetric"]').all_inner_texts()
        raise AssertionError(
            f"metric {label!r} never showed {value!r}; page shows {shown}"
        ) from None


def start_dashboard(
    streamlit_server: Callable[[Mapping[str, str]], Server], tmp_path: Path, audit_dir: Path
) -> Server:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    return streamlit_server(
        {
            "AUDIT_DIR": str(audit_dir),
            "ALERTS_DIR": str(tmp_path / "alerts"),
            "ALERT_RULES": str(rules),
        }
    )


def test_live_overview_in_headless_chromium(
    tmp_path: Path,
    streamlit_server: Callable[[Mapping[str, str]], Server],
    browser_page: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from playwright.sync_api import expect

    audit_dir = tmp_path / "audit"
    logger = AuditLogger(audit_dir, fsync_interval=3600, checkpoint_interval=1e9)
    try:
        logger.log_event("heartbeat", "heartbeat")
        for n in range(6):  # 4 trades, 2 risk rejections: rate 33 %, under 50 %
            write_signal(logger, n, rejected=n % 3 == 2)
        server = start_dashboard(streamlit_server, tmp_path, audit_dir)
        page = browser_page
        page.goto(server.url)

        # Without a click: headline, alert state, and the three mission charts.
        metric_shows(page, "Signals", "6", timeout_ms=90_000)
        metric_shows(page, "Trades", "4")
        metric_shows(page, "Risk rejection rate", "33.3%")
        metric_shows(page, "Integrity", "OK")
        expect(page.get_by_text("browser-rejections: normal")).to_be_visible()
        charts = page.locator('[data-testid="stPlotlyChart"]')
        for title in ("Signal flow", "Rejection rates", "Position-size capping"):
            expect(charts.filter(has_text=title).locator(".main-svg").first).to_be_visible()
        funnel = charts.filter(has_text="Signal flow")
        expect(funnel.locator("svg text", has_text="Passed risk")).to_be_visible()
        expect(page.get_by_text("6 Signals → 4 Passed risk (66.7%)")).to_be_visible()

        # Append while the page is open: visible without a reload, within 2 s; alert fires.
        page.evaluate("window.__sameDocument = true")
        latencies = []
        for n in range(6, 9):
            t0 = time.monotonic()
            write_signal(logger, n, rejected=True)
            metric_shows(page, "Signals", str(n + 1))
            latencies.append(time.monotonic() - t0)
        for n in range(9, 12):  # 8 of 12 rejected = 67 % > 50 %
            write_signal(logger, n, rejected=True)
        t0 = time.monotonic()
        page.wait_for_function(
            "(text) => document.body.innerText.includes(text)",
            arg="browser-rejections: firing",
            polling=50,
            timeout=DEADLINE_MS,
        )
        alert_latency = time.monotonic() - t0
        metric_shows(page, "Risk rejection rate", "66.7%")
        assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        (ARTIFACTS / "latency.txt").write_text(
            f"append->visible {', '.join(f'{x:.3f}' for x in latencies)} s; "
            f"alert firing visible {alert_latency:.3f}s\n"
        )
        with capsys.disabled():
            print(
                f"\n[browser] append -> visible in {', '.join(f'{x:.2f}' for x in latencies)} s "
                f"(alert state 'firing' visible after {alert_latency:.2f}s)"
            )
        assert min(latencies) <= VISIBLE_WITHIN_S, latencies

        # Filters live in the URL and go with the user to another page.
        symbol = page.locator('[data-testid="stSelectbox"]').filter(has_text="Symbol")
        symbol.click()
        page.get_by_role("option", name="BTCUSDT").click()
        expect(page).to_have_url(re.compile(r"[?&]symbol=BTCUSDT"))
        page.get_by_role("link", name="Signals").click()
        expect(page).to_have_url(re.compile(r"/signals\?.*symbol=BTCUSDT"))
        shared = page.url
        page.goto("about:blank")
        page.goto(shared)
        expect(page.get_by_role("combobox", name="Symbol")).to_have_value(
            "BTCUSDT", timeout=DEADLINE_MS
        )
        expect(page.get_by_text("12 signals (last 1h")).to_be_visible(timeout=DEADLINE_MS)

        # The event table downloads as CSV (what the filters select: BTCUSDT, no heartbeat).
        page.get_by_role("link", name="Events").click()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download CSV").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert len(rows) == 4 * 7 + 8 * 2  # trades: 7 events each; rejections: 2 each
        assert {r["symbol"] for r in rows} == {"BTCUSDT"}
        assert rows[0]["event_type"] == "risk_rejection"  # newest first
        assert "Traceback" not in server.log(), server.log()
    finally:
        logger.close()


def test_a_signal_row_opens_its_trace_and_a_trace_link_opens_cold(
    tmp_path: Path,
    streamlit_server: Callable[[Mapping[str, str]], Server],
    browser_page: Any,
) -> None:
    from playwright.sync_api import expect

    audit_dir = tmp_path / "audit"
    with AuditLogger(audit_dir, fsync_interval=3600, checkpoint_interval=1e9) as logger:
        write_signal(logger, 1, rejected=False)
        write_signal(logger, 2, rejected=True)  # the newest: the first row
    server = start_dashboard(streamlit_server, tmp_path, audit_dir)
    page = browser_page
    page.goto(server.url + "/signals")
    grid = page.locator('[data-testid="stDataFrame"]').filter(has_text="outcome")
    expect(grid).to_be_visible(timeout=90_000)
    expect(page.get_by_text("2 signals (last 1h")).to_be_visible()
    page.goto(server.url)  # settled (history checked) before selecting: no redraw coming
    metric_shows(page, "Integrity", "OK", timeout_ms=90_000)
    page.get_by_role("link", name="Signals").click()

    # Selecting the reason's bar lists the signals rejected for it.
    reasons = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="rejection reasons")
    click_centre(page, reasons.locator("g.trace.bars path").first)
    expect(page.get_by_role("combobox", name="Reason")).to_have_value(
        "existing_position", timeout=DEADLINE_MS
    )
    expect(page.get_by_text("1 signals (last 1h")).to_be_visible(timeout=DEADLINE_MS)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection box
    trace = page.get_by_role("combobox", name=re.compile("Trace id"))
    expect(trace).to_have_value("browser0002r", timeout=DEADLINE_MS)
    events = page.locator('[data-testid="stDataFrame"]').filter(has_text="event_type")
    expect(events).to_contain_text("risk_rejection", timeout=DEADLINE_MS)

    # The same trace from a cold URL on the default page: it opens on the Signals page.
    page.goto("about:blank")
    page.goto(server.url + "/?trace=browser0001n")
    expect(page.get_by_role("combobox", name=re.compile("Trace id"))).to_have_value(
        "browser0001n", timeout=DEADLINE_MS
    )
    expect(page).to_have_url(re.compile(r"/signals\?.*trace=browser0001n"), timeout=DEADLINE_MS)
    events = page.locator('[data-testid="stDataFrame"]').filter(has_text="event_type")
    expect(events).to_contain_text("trade_executed", timeout=DEADLINE_MS)
    page.screenshot(path=str(ARTIFACTS / "dashboard-trace.png"), full_page=True)


def click_centre(page: Any, locator: Any) -> None:
    """A real mouse click in the middle of an SVG shape (plotly listens above the shapes)."""
    locator.wait_for(timeout=DEADLINE_MS)
    box = locator.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def click_until_url(page: Any, locator: Any, url: re.Pattern[str]) -> None:
    """Click the shape until the page goes to ``url``: a click that lands while a slow
    machine is still redrawing the chart selects nothing, as it would for a user."""
    deadline = time.monotonic() + DEADLINE_MS / 1000
    while True:
        click_centre(page, locator)
        try:
            page.wait_for_url(url, timeout=5_000)
            return
        except Exception:  # playwright's TimeoutError: click again until the deadline
            if time.monotonic() > deadline:
                raise


def test_a_point_of_the_overview_rates_opens_that_buckets_signals(
    tmp_path: Path,
    streamlit_server: Callable[[Mapping[str, str]], Server],
    browser_page: Any,
) -> None:
    from playwright.sync_api import expect

    audit_dir = tmp_path / "audit"
    with AuditLogger(audit_dir, fsync_interval=3600, checkpoint_interval=1e9) as logger:
        write_signal(logger, 1, rejected=True)
    server = start_dashboard(streamlit_server, tmp_path, audit_dir)
    page = browser_page
    page.goto(server.url)
    metric_shows(page, "Integrity", "OK", timeout_ms=90_000)  # settled: no redraw coming
    rates = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="Rejection rates")
    click_until_url(
        page, rates.locator("g.trace.scatter path.point").first, re.compile(r"/signals")
    )
    expect(page.get_by_role("textbox", name="From (UTC)")).to_be_visible(timeout=DEADLINE_MS)
    expect(page.get_by_role("combobox", name="Outcome")).to_have_value("rejected")
    expect(page.get_by_text("1 signals (custom range")).to_be_visible(timeout=DEADLINE_MS)


def test_two_bots_are_shown_together_and_apart_from_a_cold_url(
    tmp_path: Path,
    streamlit_server: Callable[[Mapping[str, str]], Server],
    browser_page: Any,
) -> None:
    audit_dir = tmp_path / "audit"
    for bot, signals in (("alpha", 2), ("beta", 3)):
        with AuditLogger(audit_dir / bot, bot_id=bot, fsync_interval=3600) as logger:
            for n in range(signals):
                write_signal(logger, n, rejected=False)
    server = start_dashboard(streamlit_server, tmp_path, audit_dir)
    page = browser_page
    page.goto(server.url)
    metric_shows(page, "Signals", "5", timeout_ms=90_000)
    page.goto(server.url + "/?bot=beta")
    metric_shows(page, "Signals", "3")
    page.goto(server.url + "/?bot=alpha")
    metric_shows(page, "Signals", "2")
