"""What every page shares: settings, the server's resources, the sidebar filters, live refresh.

* Resources (one per server process, for every tab, ``st.cache_resource``): the
  ``TrailStore`` (watcher + ingest thread), the ``AlertMonitor`` (its own thread
  evaluates the rules on the ingest side), the ``SharedPanels`` cache and the alert
  history reader. Worker threads never call ``st.*``.
* Filters: sidebar widgets bound to the URL (``bind="query-params"``), so every page
  of a shared link shows the same range, symbol, bot and event types; a bad value in
  the URL is dropped and the widget falls back to its default.
* Live refresh (issue 14): pages are drawn by ordinary runs, not by timers. One tiny
  fragment per tab (``watch``) wakes every second and compares a cheap key — the
  store's version, the alert states' version, the window, the alert history's
  signature, the coarse "last event" ages — with the key the page was drawn for. Only
  when it differs does it rerun the page; otherwise it draws nothing and sends nothing.
  The page's panels and figures come from ``SharedPanels``, so N tabs with the same
  view compute them once per change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas  # noqa: F401  (see below)
import streamlit as st

from bot.audit import AuditEventType
from dashboard import charts
from dashboard.alert_engine import RuleState
from dashboard.alert_rules import DEFAULT_RULES_FILE, load_rules
from dashboard.panels import AlertHistory, AlertMonitor, SharedPanels
from dashboard.store import TrailStore
from dashboard.viewstate import DEFAULT_RANGE, PRESETS, Filters, View, make_filters

T = TypeVar("T")

# pandas is imported here, once, before any page runs: st.dataframe imports it lazily,
# and plotly uses whatever sys.modules holds, so a tab drawing a chart while another
# tab's table was first importing pandas failed with "partially initialized module
# 'pandas'" (seen in the browser tests on a loaded machine).

REFRESH_SECONDS = 1.0
CONTEXT_KEY = "_context"  # session state: this run's Context, for the page script
ALL = "All"
EVENT_TYPES = [e.value for e in AuditEventType]
STATE_COLORS = {
    "firing": "red",
    "pending": "orange",
    "recovering": "violet",
    "normal": "green",
    "nodata": "gray",
    "active": "green",
    "reducing": "orange",
    "halted": "red",
}


@dataclass(frozen=True)
class Settings:
    audit_dir: str
    alerts_dir: str
    rules_path: str
    polling: bool

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            audit_dir=os.environ.get("AUDIT_DIR", "logs/audit"),
            alerts_dir=os.environ.get("ALERTS_DIR", "logs/alerts"),
            rules_path=os.environ.get("ALERT_RULES", str(DEFAULT_RULES_FILE)),
            polling=os.environ.get("AUDIT_POLLING", "").lower() in {"1", "true", "yes"},
        )


# ------------------------------------------------------------------ server resources


@st.cache_resource(show_spinner="Reading the audit trail…", on_release=lambda s: s.stop())
def trail_store(audit_dir: str, polling: bool) -> TrailStore:
    """The one store (watcher + ingest thread) of this server process, for every tab."""
    store = TrailStore(audit_dir, polling=polling)
    store.start()
    return store


@st.cache_resource(on_release=lambda m: m.stop())
def alert_monitor(rules_path: str, audit_dir: str, polling: bool) -> AlertMonitor:
    """One engine per (rules, trail), evaluated by its own thread: states span tabs."""
    try:
        monitor = AlertMonitor(load_rules(rules_path))
    except (OSError, ValueError) as exc:  # a bad rules file must not take the screen down
        return AlertMonitor(None, error=str(exc))
    monitor.start(trail_store(audit_dir, polling))
    return monitor


@st.cache_resource
def shared_panels(audit_dir: str) -> SharedPanels:
    return SharedPanels()


@st.cache_resource
def alert_history(alerts_dir: str) -> AlertHistory:
    return AlertHistory(alerts_dir)


@dataclass
class Context:
    """What a page is drawn from: the resources, the filters and the resolved window."""

    settings: Settings
    store: TrailStore
    monitor: AlertMonitor
    panels: SharedPanels
    history: AlertHistory
    filters: Filters
    now: float
    view: View
    version: int  # the data version this run draws (SharedPanels.version)

    def panel(self, name: str, compute: Callable[[], T], *extra: Hashable) -> T:
        """``compute()`` once per data version, view and ``extra``, for every tab."""
        return self.panels.get((name, self.version, self.view, *extra), compute)

    def live_key(self, version: int | None = None) -> tuple[Hashable, ...]:
        """What the page on screen depends on; the page is redrawn when it changes.
        ``version``: the data version drawn (default: the one a run would draw now)."""
        if version is None:
            version = self.panels.version(self.store.version)
        view = self.filters.view(time.time())
        last_event, last_beat = self.store.last_times(bot=view.bot)
        now = time.time()
        progress = self.store.history_progress
        return (
            version,
            (progress.running, progress.done_days),
            self.monitor.version,
            view,
            self.history.signature(),
            age_label(None if last_event is None else now - last_event),
            age_label(None if last_beat is None else now - last_beat),
        )


def context() -> Context:
    settings = Settings.from_env()
    store = trail_store(settings.audit_dir, settings.polling)
    monitor = alert_monitor(settings.rules_path, settings.audit_dir, settings.polling)
    filters = sidebar_filters(store, settings)
    now = time.time()
    panels = shared_panels(settings.audit_dir)
    ctx = Context(
        settings,
        store,
        monitor,
        panels,
        alert_history(settings.alerts_dir),
        filters,
        now,
        filters.view(now),
        panels.version(store.version),
    )
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


# ------------------------------------------------------------------ sidebar and live refresh


def sidebar_filters(store: TrailStore, settings: Settings) -> Filters:
    with st.sidebar:
        st.header("Filters")
        range_key = st.selectbox(
            "Time range",
            list(PRESETS),
            index=list(PRESETS).index(DEFAULT_RANGE),
            key="range",
            bind="query-params",
        )
        start_text = end_text = ""
        if range_key == "custom":
            start_text = st.text_input("From (UTC)", key="from", bind="query-params")
            end_text = st.text_input("To (UTC)", key="to", bind="query-params", placeholder="now")
        bots = store.bots()
        bot = None
        if len(bots) > 1:
            bot = st.selectbox("Bot", [ALL, *bots], key="bot", bind="query-params")
        symbol = st.selectbox("Symbol", [ALL, *store.symbols()], key="symbol", bind="query-params")
        events = st.multiselect(
            "Event types (event table)",
            EVENT_TYPES,
            key="event",
            bind="query-params",
            placeholder="all types",
        )
        filters, warning = make_filters(
            settings.audit_dir,
            range_key or DEFAULT_RANGE,
            start_text,
            end_text,
            None if symbol in (None, ALL) else symbol,
            events,
            None if bot in (None, ALL) else bot,
        )
        if warning:
            st.warning(warning)
        view = filters.view(time.time())
        st.caption(f"{fmt_time(view.start)} → {fmt_time(view.end)} UTC")
        st.caption("The view is kept in the URL: copy it to share this view.")
        progress = store.history_progress
        if progress.running:
            st.caption(
                f"Reading older days: {progress.done_days} of {progress.total_days}; their "
                "numbers fill in as they are read."
            )
    return filters


@st.fragment(run_every=REFRESH_SECONDS)
def watch(ctx: Context, drawn: tuple[Hashable, ...]) -> None:
    """Every second: redraw the page only if what it shows has changed (draws nothing)."""
    if ctx.live_key() != drawn:
        st.rerun()


def page_file(name: str) -> str:
    """A page's script, relative to app.py (st.navigation runs it as ``__main__``)."""
    return f"views/{name}.py"


def current() -> Context:
    """The Context app.py made for this run (what a page script draws from)."""
    ctx: Context = st.session_state[CONTEXT_KEY]
    return ctx


def switch_to(name: str, **state: str) -> None:
    """Open another page. ``state``: widget values for that page (e.g. ``trace``), set
    before its widgets exist and put in the URL; the sidebar's filters keep their values.

    Streamlit refuses to set (or clear) a widget-bound URL parameter directly, so only
    ``state`` is passed (never None, which would clear the bound ones)."""
    for key, value in state.items():
        st.session_state[key] = value
    st.switch_page(page_file(name), query_params=state)


# ------------------------------------------------------------------ formatting


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def age_label(age: float | None) -> str:
    """A coarse age ("<1 min ago", "5 min ago"): it changes at most once a minute, so an
    idle page is not redrawn every second just to move a clock."""
    if age is None:
        return "never"
    if age < 60:
        return "<1 min ago"
    if age < 7200:
        return f"{age // 60:.0f} min ago"
    if age < 172800:
        return f"{age / 3600:.1f} h ago"
    return f"{age / 86400:.0f} d ago"


def fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def bucket_label(step: float) -> str:
    return f"{step / 3600:g} h" if step >= 3600 else f"{step / 60:g} min"


def chart(fig: Any, key: str, **selection: Any) -> Any:
    """Draw a (shared, cached) figure; with ``on_select=...`` return the selection event."""
    return st.plotly_chart(fig, key=key, config={"displaylogo": False}, **selection)


def state_badges(states: dict[str, RuleState]) -> str:
    return " ".join(
        f":{STATE_COLORS.get(str(s.state), 'gray')}-badge[{name}: {s.state}]"
        for name, s in states.items()
    )


def thresholds(monitor: AlertMonitor, metric_names: Sequence[str]) -> list[charts.Threshold]:
    """The fire and clear lines of every rule on these metrics."""
    out: list[charts.Threshold] = []
    for rule in monitor.rules or []:
        if rule.metric not in metric_names:
            continue
        scope = f" [{rule.symbol}]" if rule.symbol else ""
        out.append(
            charts.Threshold(rule.metric, rule.fire_above, f"{rule.name}{scope} fires", "fire")
        )
        if rule.clear_below != rule.fire_above:
            out.append(
                charts.Threshold(
                    rule.metric, rule.clear_below, f"{rule.name}{scope} clears", "clear"
                )
            )
    return out
