"""The dashboard screen (SPEC §9): layout only.

Run from the repository root: ``streamlit run dashboard/app.py`` (the Procfile's
``dashboard`` process). Environment: ``AUDIT_DIR`` (default ``logs/audit``),
``ALERTS_DIR`` (default ``logs/alerts``), ``ALERT_RULES`` (default
``dashboard/alerts.toml``), ``AUDIT_POLLING=1`` to poll instead of using
filesystem events (network or bind-mounted filesystems).

How the pieces fit:

* Data: one ``TrailStore`` per server process (``st.cache_resource``), shared by
  every browser tab. Its watcher and ingest threads read the trail; this
  script only queries the store's aggregates and never writes the trail.
  Worker threads never call ``st.*``.
* View state: the filter widgets are bound to URL query parameters
  (``bind="query-params"``), so a view can be shared as a link; a bad value in
  the URL is dropped by Streamlit and the widget falls back to its default.
* Live refresh: the headline and the open tab are ``st.fragment(run_every=1s)``
  functions. A tick only queries the store; panel data is recomputed only when
  ``store.version`` or the time window changed (``_memo``), so an idle
  dashboard re-sends identical elements and the page does not flicker.
* Figures come from ``dashboard.charts`` (plotly), rates from
  ``dashboard.metrics``, alert states from the same engine as the ``alerts``
  process (``dashboard.alerts``), evaluated here over the store's counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts the script's folder (dashboard/) on sys.path, not the
# repository root, so `import dashboard.…` and `import bot.…` would fail. Put the root first.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import streamlit as st  # noqa: E402

from bot.audit import AuditEventType, chain  # noqa: E402
from dashboard import charts, metrics  # noqa: E402
from dashboard.alerts import (  # noqa: E402
    DEFAULT_RULES_FILE,
    AlertEngine,
    load_rules,
    read_alert_history,
)
from dashboard.store import TrailStore  # noqa: E402

T = TypeVar("T")

REFRESH_SECONDS = 1.0
PRESETS: dict[str, float | None] = {
    "15m": 15 * 60,
    "1h": 3600,
    "6h": 6 * 3600,
    "24h": 86400,
    "7d": 7 * 86400,
    "all": None,
    "custom": None,
}
DEFAULT_RANGE = "1h"
ALL_SYMBOLS = "All symbols"
EVENT_TYPES = [e.value for e in AuditEventType]
TABLE_LIMIT = 1000
TABLE_COLUMNS = ["timestamp", "event_type", "symbol", "operation", "trace_id", "details"]
REJECTION_RATES = ["risk_rejection_rate", "order_rejection_rate", "execution_failure_rate"]
ACTIVITY_TYPES = ["signal_processing", "trade_executed", "risk_rejection", "trade_execution_failed"]
STATE_COLORS = {
    "firing": "red",
    "pending": "orange",
    "recovering": "violet",
    "normal": "green",
    "nodata": "gray",
}


# ------------------------------------------------------------------ settings and resources


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


@st.cache_resource(show_spinner="Reading the audit trail…", on_release=lambda s: s.stop())
def trail_store(audit_dir: str, polling: bool) -> TrailStore:
    """The one store (watcher + ingest thread) of this server process, for every tab."""
    store = TrailStore(audit_dir, polling=polling)
    store.start()
    return store


@dataclass
class AlertMonitor:
    """The alert engine of this server process; evaluated at most once per tick."""

    engine: AlertEngine | None
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    evaluated_at: float = 0.0

    def evaluate(self, store: TrailStore, now: float) -> None:
        if self.engine is None:
            return
        with self.lock:
            if now - self.evaluated_at < REFRESH_SECONDS / 2:
                return
            self.evaluated_at = now
            self.engine.evaluate(now, store.counts, store.last_event_time)


@st.cache_resource
def alert_monitor(rules_path: str, audit_dir: str) -> AlertMonitor:
    """One engine per (rules, trail): its states (pending, hysteresis) span reruns and tabs."""
    try:
        return AlertMonitor(AlertEngine(load_rules(rules_path)))
    except (OSError, ValueError) as exc:  # a bad rules file must not take the screen down
        return AlertMonitor(None, error=str(exc))


@st.cache_data(ttl=5, show_spinner=False)
def alert_history(alerts_dir: str) -> list[dict[str, Any]]:
    return list(read_alert_history(alerts_dir))


# ------------------------------------------------------------------ view state


@dataclass(frozen=True)
class View:
    """The window and filters every panel is computed for (hashable: a cache key)."""

    start: float
    end: float
    symbol: str | None
    event_types: tuple[str, ...]
    label: str

    @property
    def step(self) -> int:
        """Bucket width (seconds) of the time-series charts over this window."""
        return int(charts.display_bucket(self.end - self.start))


@dataclass(frozen=True)
class Filters:
    """What the user chose in the sidebar. Relative ranges are resolved into a View at
    every tick (``view(now)``), so "last 1h" keeps moving while the page stays open."""

    range_key: str = DEFAULT_RANGE
    custom_start: float | None = None
    custom_end: float | None = None  # None: up to now
    symbol: str | None = None
    event_types: tuple[str, ...] = ()
    audit_dir: str = ""

    def view(self, now: float) -> View:
        # Relative windows end at the end of the current minute, so the window (and every
        # memoized panel) changes once a minute instead of on every tick.
        end = (math.floor(now / 60) + 1) * 60
        if self.range_key == "custom" and self.custom_start is not None:
            stop = self.custom_end if self.custom_end is not None else end
            return View(self.custom_start, stop, self.symbol, self.event_types, "custom range")
        span = PRESETS.get(self.range_key)
        if span is None:  # "all": from midnight of the oldest day file
            first = first_day_start(self.audit_dir)
            start = first if first is not None and first < end else end - 3600
            return View(start, end, self.symbol, self.event_types, "all time")
        return View(end - span, end, self.symbol, self.event_types, f"last {self.range_key}")


def parse_utc(text: str) -> float | None:
    """Epoch seconds of ``2026-01-01``, ``2026-01-01 12:00`` or ISO-8601 (UTC); None if bad."""
    text = text.strip().replace(" ", "T")
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def first_day_start(audit_dir: str) -> float | None:
    """Midnight UTC of the oldest day file (a directory listing), or None."""
    for path in chain.trail_files(Path(audit_dir)):
        day = chain.day_of_file(path)
        if day is not None:
            return datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC).timestamp()
    return None


def make_filters(
    audit_dir: str, range_key: str, start_text: str, end_text: str, symbol: str, events: list[str]
) -> tuple[Filters, str | None]:
    """Filters from the widget values, and a warning when a custom range is unusable."""
    chosen = None if not symbol or symbol == ALL_SYMBOLS else symbol
    base = Filters(symbol=chosen, event_types=tuple(events), audit_dir=audit_dir)
    if range_key != "custom":
        return replace(base, range_key=range_key if range_key in PRESETS else DEFAULT_RANGE), None
    start, end = parse_utc(start_text), parse_utc(end_text)
    if start is not None and (not end_text.strip() or (end is not None and start < end)):
        return replace(base, range_key="custom", custom_start=start, custom_end=end), None
    return base, "Custom range needs From before To (UTC, e.g. 2026-01-01 12:00); showing 1h."


def sidebar_filters(store: TrailStore, settings: Settings) -> Filters:
    with st.sidebar:
        st.header("Filters")
        range_key = st.selectbox(
            "Time range", list(PRESETS), index=1, key="range", bind="query-params"
        )
        start_text = end_text = ""
        if range_key == "custom":
            start_text = st.text_input("From (UTC)", key="from", bind="query-params")
            end_text = st.text_input("To (UTC)", key="to", bind="query-params", placeholder="now")
        symbol = st.selectbox(
            "Symbol", [ALL_SYMBOLS, *store.symbols()], key="symbol", bind="query-params"
        )
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
            symbol or "",
            events,
        )
        if warning:
            st.warning(warning)
        view = filters.view(time.time())
        st.caption(f"{_fmt_time(view.start)} → {_fmt_time(view.end)} UTC")
        st.caption("The view is kept in the URL: copy it to share this view.")
    return filters


# ------------------------------------------------------------------ formatting


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_age(age: float | None) -> str:
    if age is None:
        return "never"
    if age < 1:
        return "<1 s ago"
    if age < 120:
        return f"{age:.0f} s ago"
    if age < 7200:
        return f"{age / 60:.0f} min ago"
    if age < 172800:
        return f"{age / 3600:.1f} h ago"
    return f"{age / 86400:.0f} d ago"


def _fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _memo(name: str, key: Hashable, compute: Callable[[], T]) -> T:
    """Per-session memo of the last value of a panel: recompute only when ``key`` changes."""
    cache: dict[str, tuple[Hashable, Any]] = st.session_state.setdefault("_panel_memo", {})
    hit = cache.get(name)
    if hit is not None and hit[0] == key:
        value: T = hit[1]
        return value
    value = compute()
    cache[name] = (key, value)
    return value


def _bucket_label(step: float) -> str:
    return f"{step / 3600:g} h" if step >= 3600 else f"{step / 60:g} min"


def _chart(fig: Any, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def _thresholds(monitor: AlertMonitor, metric_names: Sequence[str]) -> list[charts.Threshold]:
    if monitor.engine is None:
        return []
    out = []
    for rule in monitor.engine.rules:
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


# ------------------------------------------------------------------ panels
# Every panel below is a fragment: it reruns on its own every REFRESH_SECONDS, querying
# the store; `_memo` skips the queries while store.version and the window are unchanged.


@st.fragment(run_every=REFRESH_SECONDS)
def headline(
    store: TrailStore, monitor: AlertMonitor, filters: Filters, settings: Settings
) -> None:
    now = time.time()
    view = filters.view(now)
    monitor.evaluate(store, now)
    counts = _memo(
        "headline", (store.version, view), lambda: store.counts(view.start, view.end, view.symbol)
    )
    integrity, malformed = store.integrity, store.read_stats.malformed
    numbers = metrics.headline(
        counts,
        now=now,
        last_event_time=store.last_event_time,
        last_heartbeat_time=store.last_heartbeat_time,
        integrity_ok=integrity.ok,
        integrity_problem=integrity.problem,
        malformed_lines=malformed,
    )
    row1 = st.columns(5)
    row1[0].metric("Signals", numbers.signals, help="signal_processing events")
    row1[1].metric("Trades", numbers.trades, help="trade_executed events")
    for column, name in zip(
        row1[2:], ("risk_rejection_rate", "order_rejection_rate", "capping_rate"), strict=True
    ):
        num, den = metrics.rate_parts(name, counts)
        spec = metrics.RATE_METRICS[name]
        column.metric(
            spec.label,
            _fmt_rate(getattr(numbers, name)),
            help=f"{num} {' + '.join(spec.numerator)} / {den} "
            f"({' + '.join(spec.denominator)}), {view.label}",
        )
    row2 = st.columns(5)
    row2[0].metric("Last event", _fmt_age(numbers.seconds_since_last_event), help="newest record")
    row2[1].metric("Last heartbeat", _fmt_age(numbers.seconds_since_heartbeat))
    ok = numbers.integrity_ok
    row2[2].metric(
        "Integrity",
        "checking" if ok is None else "OK" if ok else "BROKEN",
        help=numbers.integrity_problem
        or f"hash chain of {integrity.checked_records} records; audit_gap {integrity.gaps}, "
        f"audit_recovered {integrity.recoveries}",
    )
    row2[3].metric("Malformed lines", numbers.malformed_lines, help="see the Trail tab")
    if monitor.engine is None:
        row2[4].metric("Alerts firing", "rules error", help=monitor.error)
    else:
        states = monitor.engine.states
        firing = sum(1 for s in states.values() if str(s.state) == "firing")
        row2[4].metric("Alerts firing", firing, help="see the Alerts tab")
        st.markdown(
            " ".join(
                f":{STATE_COLORS.get(str(s.state), 'gray')}-badge[{name}: {s.state}]"
                for name, s in states.items()
            )
        )
    if store.last_event_time is None:
        st.info(
            f"No audit records yet in `{settings.audit_dir}`. Start the bot "
            "(`python -m bot`): records appear here within a couple of seconds."
        )


@st.fragment(run_every=REFRESH_SECONDS)
def flow_tab(store: TrailStore, filters: Filters) -> None:
    view = filters.view(time.time())
    counts, series = _memo(
        "flow",
        (store.version, view),
        lambda: (
            store.counts(view.start, view.end, view.symbol),
            store.series(view.start, view.end, view.symbol, step_seconds=view.step),
        ),
    )
    left, right = st.columns(2)
    with left:
        stages = [(stage.label, stage.count) for stage in metrics.funnel(counts)]
        _chart(charts.signal_funnel(stages), "funnel")
    with right:
        _chart(
            charts.event_activity(series, ACTIVITY_TYPES, width=view.step),
            "activity",
        )


@st.fragment(run_every=REFRESH_SECONDS)
def rejections_tab(store: TrailStore, monitor: AlertMonitor, filters: Filters) -> None:
    view = filters.view(time.time())
    series, reasons, reason_series = _memo(
        "rejections",
        (store.version, view),
        lambda: (
            store.series(view.start, view.end, view.symbol, step_seconds=view.step),
            store.rejection_reasons(view.start, view.end, view.symbol),
            store.rejection_reason_series(
                view.start, view.end, view.symbol, step_seconds=view.step
            ),
        ),
    )
    _chart(
        charts.rates_over_time(
            series, REJECTION_RATES, _thresholds(monitor, REJECTION_RATES), width=view.step
        ),
        "rates",
    )
    st.caption(
        f"Rates per {_bucket_label(view.step)}; no point where there was no sample. Dashed and "
        "dotted lines: the alert rules' fire and clear thresholds (a rule evaluates the rate "
        "over its own trailing window)."
    )
    left, right = st.columns(2)
    with left:
        _chart(charts.rejection_reasons(reasons), "reasons")
    with right:
        _chart(charts.rejection_reasons_over_time(reason_series, width=view.step), "reasons_t")


@st.fragment(run_every=REFRESH_SECONDS)
def capping_tab(store: TrailStore, monitor: AlertMonitor, filters: Filters) -> None:
    view = filters.view(time.time())
    series, points = _memo(
        "capping",
        (store.version, view),
        lambda: (
            store.series(view.start, view.end, view.symbol, step_seconds=view.step),
            store.capped_quantities(view.start, view.end, view.symbol),
        ),
    )
    thresholds = _thresholds(monitor, ["capping_rate"])
    _chart(charts.capping_over_time(series, thresholds, width=view.step), "capping")
    _chart(charts.requested_vs_capped(points), "capped_qty")


@st.fragment(run_every=REFRESH_SECONDS)
def orders_tab(store: TrailStore, filters: Filters) -> None:
    view = filters.view(time.time())
    outcomes = _memo(
        "orders",
        (store.version, view),
        lambda: store.order_outcomes(view.start, view.end, view.symbol),
    )
    _chart(charts.order_outcomes(outcomes), "outcomes")
    if outcomes:
        st.dataframe(
            metrics.order_outcome_rows(outcomes),
            hide_index=True,
            key="outcome_rows",
            column_config={"rejection_rate": st.column_config.NumberColumn(format="percent")},
        )


@st.fragment(run_every=REFRESH_SECONDS)
def alerts_tab(monitor: AlertMonitor, settings: Settings) -> None:
    st.subheader("Alert states")
    if monitor.engine is None:
        st.error(f"Alert rules not loaded: {monitor.error}")
    else:
        now = time.time()
        st.caption(f"Rules from `{settings.rules_path}`, evaluated here on the trail.")
        st.dataframe(
            [
                {
                    "rule": name,
                    "state": str(s.state),
                    "metric": s.rule.metric + (f" [{s.rule.symbol}]" if s.rule.symbol else ""),
                    "value": s.value,
                    "samples": s.samples,
                    "fire above": s.fire_above,
                    "clear below": s.clear_below,
                    "since": _fmt_age(None if s.since is None else now - s.since),
                    "reason": s.reason,
                }
                for name, s in monitor.engine.states.items()
            ],
            hide_index=True,
            key="alert_states",
        )
    st.subheader("Alert history")
    history = alert_history(settings.alerts_dir)
    if not history:
        st.info(
            f"No alert notifications recorded in `{settings.alerts_dir}` yet (the `alerts` "
            "process writes them: `python -m dashboard.alerts`)."
        )
        return
    st.dataframe(
        [
            {
                "timestamp": r.get("timestamp"),
                "event_type": r.get("event_type"),
                "rule": (r.get("additional_data") or {}).get("rule"),
                "details": _details(r),
            }
            for r in reversed(history)
        ],
        hide_index=True,
        key="alert_history",
    )


@st.fragment(run_every=REFRESH_SECONDS)
def trace_tab(store: TrailStore) -> None:
    ids = _memo("trace_ids", store.version, lambda: store.recent_trace_ids(50))
    trace_id = st.selectbox(
        "Trace id (most recent first; paste any id)",
        ids,
        index=None,
        key="trace",
        bind="query-params",
        accept_new_options=True,
        placeholder="choose or paste a trace_id",
    )
    if not trace_id:
        st.info("Choose a trace to see every event of one signal's flow, in order.")
        return
    records = _memo("trace", (store.version, trace_id), lambda: store.trace(trace_id))
    if not records:
        st.warning(f"No events with trace_id `{trace_id}` in the trail read so far.")
        return
    st.dataframe(event_rows(records), hide_index=True, key="trace_table")
    with st.expander("Raw records"):
        st.json(records, expanded=False)


def events_tab(store: TrailStore, filters: Filters) -> None:
    """The CSV button sits outside the live fragment. Streamlit revokes a deferred
    download at every rerun of the fragment that drew it, so inside a once-a-second
    fragment a click on a busy machine could name a revoked file and download nothing;
    here it stays valid until the filters change, and the file is built when clicked."""
    st.download_button(
        "Download CSV",
        data=lambda: rows_to_csv(event_rows(reversed(matching_events(store, filters)))),
        file_name="audit_events.csv",
        mime="text/csv",
        on_click="ignore",
        key="events_csv",
        help=f"The newest matching events (at most {TABLE_LIMIT}), newest first.",
    )
    events_table(store, filters)


def matching_events(store: TrailStore, filters: Filters) -> list[dict[str, Any]]:
    view = filters.view(time.time())
    return store.recent(
        TABLE_LIMIT,
        start=view.start,
        end=view.end,
        symbol=view.symbol,
        event_types=view.event_types or None,
    )


@st.fragment(run_every=REFRESH_SECONDS)
def events_table(store: TrailStore, filters: Filters) -> None:
    view = filters.view(time.time())
    records = _memo("events", (store.version, view), lambda: matching_events(store, filters))
    if not records:
        st.info(f"No events match the filters ({view.label}).")
        return
    rows = event_rows(reversed(records))  # newest first
    st.caption(f"The newest {len(rows)} matching events ({view.label}; at most {TABLE_LIMIT}).")
    st.dataframe(rows, hide_index=True, key="events_table")


def event_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {name: r.get(name) for name in TABLE_COLUMNS[:-1]} | {"details": _details(r)}
        for r in records
    ]


def _details(record: Mapping[str, Any]) -> str:
    parts = {
        k: record[k]
        for k in ("order_data", "response", "error", "additional_data")
        if record.get(k)
    }
    return json.dumps(parts, separators=(",", ":"), default=str) if parts else ""


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@st.fragment(run_every=REFRESH_SECONDS)
def trail_tab(store: TrailStore, settings: Settings) -> None:
    stats, integrity = store.read_stats, store.integrity
    cols = st.columns(4)
    cols[0].metric("Malformed lines", stats.malformed)
    cols[1].metric("Truncations", stats.truncations)
    cols[2].metric("Replacements", stats.replacements)
    cols[3].metric("audit_gap records", integrity.gaps)
    st.caption(
        f"Audit directory `{settings.audit_dir}`: {stats.records} records read; hash chain "
        f"checked over {integrity.checked_records}; audit_recovered {integrity.recoveries}."
    )
    if integrity.ok is False:
        st.error(f"Integrity problem: {integrity.problem}")
    if not stats.malformed:
        st.success("No malformed lines.")
        return
    st.subheader("Malformed lines")
    left, right = st.columns([1, 3])
    left.dataframe(
        [{"reason": k, "lines": v} for k, v in stats.malformed_by_reason.most_common()],
        hide_index=True,
        key="malformed_reasons",
    )
    right.dataframe(
        [
            {"file": m.file, "line": m.line, "reason": m.reason, "preview": m.preview}
            for m in reversed(stats.recent_malformed)
        ],
        hide_index=True,
        key="malformed_recent",
    )


# ------------------------------------------------------------------ page


def main() -> None:
    st.set_page_config(page_title="Audit trail dashboard", page_icon="📒", layout="wide")
    settings = Settings.from_env()
    store = trail_store(settings.audit_dir, settings.polling)
    monitor = alert_monitor(settings.rules_path, settings.audit_dir)
    filters = sidebar_filters(store, settings)
    st.title("Trading bot audit trail")
    headline(store, monitor, filters, settings)
    panels: dict[str, Callable[[], None]] = {
        "Signal flow": lambda: flow_tab(store, filters),
        "Rejections": lambda: rejections_tab(store, monitor, filters),
        "Capping": lambda: capping_tab(store, monitor, filters),
        "Orders": lambda: orders_tab(store, filters),
        "Alerts": lambda: alerts_tab(monitor, settings),
        "Trace": lambda: trace_tab(store),
        "Events": lambda: events_tab(store, filters),
        "Trail": lambda: trail_tab(store, settings),
    }
    tabs = st.tabs(list(panels), key="tab", bind="query-params")
    for render, tab in zip(panels.values(), tabs, strict=True):
        if tab.open is not False:  # only the open tab runs (and refreshes)
            with tab:
                render()


if __name__ == "__main__":  # streamlit runs the script as __main__; tests may import it
    main()
