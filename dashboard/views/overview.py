"""Overview (the default page, SPEC §9): without a click, the headline numbers, the alert
states, the trading state, and the three charts the product exists for — signal flow,
rejection rates over time with the alert thresholds, capping frequency over time with
requested vs capped. Each chart's numbers are also written out as text.

Selecting a point of the rates chart opens the Signals page on that time bucket.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import charts, metrics
from dashboard.views import frame
from dashboard.views.frame import Context, fmt_rate
from dashboard.viewstate import format_utc, parse_utc

REJECTION_RATES = ["risk_rejection_rate", "order_rejection_rate", "execution_failure_rate"]
# the signals behind a point of each rate line (an order rejection ends a signal as failed)
OUTCOME_OF_METRIC = {
    "risk_rejection_rate": "rejected",
    "order_rejection_rate": "failed",
    "execution_failure_rate": "failed",
}
GOTO_SIGNALS = "_goto_signals"  # session state: a rates point was selected on the Overview


def page(ctx: Context) -> None:
    headline(ctx)
    trading_state(ctx)
    left, right = st.columns(2)
    with left:
        signal_flow(ctx)
    with right:
        rejection_rates(ctx, key="overview_rates", open_signals=True)
    capping(ctx)
    if st.session_state.pop(GOTO_SIGNALS, False):
        frame.switch_to("signals")  # the selection's filters are already set


def window_counts(ctx: Context) -> Any:
    v = ctx.view
    return ctx.panel("counts", lambda: ctx.store.counts(v.start, v.end, v.symbol, bot=v.bot))


def window_series(ctx: Context) -> Any:
    v = ctx.view
    return ctx.panel(
        "series",
        lambda: ctx.store.series(v.start, v.end, v.symbol, bot=v.bot, step_seconds=v.step),
    )


def headline(ctx: Context) -> None:
    v, store = ctx.view, ctx.store
    counts = window_counts(ctx)
    last_event, last_beat = store.last_times(bot=v.bot)
    integrity = store.integrity
    numbers = metrics.headline(
        counts,
        now=ctx.now,
        last_event_time=last_event,
        last_heartbeat_time=last_beat,
        integrity_ok=integrity.ok,
        integrity_problem=integrity.problem,
        malformed_lines=store.read_stats.malformed,
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
            fmt_rate(getattr(numbers, name)),
            help=f"{num} {' + '.join(spec.numerator)} / {den} "
            f"({' + '.join(spec.denominator)}), {v.label}",
        )
    row2 = st.columns(5)
    row2[0].metric(
        "Last event",
        frame.age_label(numbers.seconds_since_last_event),
        help=f"newest record: {frame.fmt_time(last_event)} UTC",
    )
    row2[1].metric(
        "Last heartbeat",
        frame.age_label(numbers.seconds_since_heartbeat),
        help=f"{frame.fmt_time(last_beat)} UTC; the bot writes one every 60 s",
    )
    ok = numbers.integrity_ok
    row2[2].metric(
        "Integrity",
        "checking" if ok is None else "OK" if ok else "BROKEN",
        help=numbers.integrity_problem
        or f"hash chain of {integrity.checked_records} records; audit_gap {integrity.gaps}, "
        f"audit_recovered {integrity.recoveries} (details: Trail page)",
    )
    row2[3].metric("Malformed lines", numbers.malformed_lines, help="details: Trail page")
    states = ctx.monitor.states()
    if ctx.monitor.rules is None:
        row2[4].metric("Alerts firing", "rules error", help=ctx.monitor.error)
    else:
        firing = sum(1 for s in states.values() if str(s.state) == "firing")
        row2[4].metric("Alerts firing", firing, help="details: Alerts page")
        st.markdown(frame.state_badges(states))
    if last_event is None:
        st.info(
            f"No audit records yet in `{ctx.settings.audit_dir}`. Start the bot "
            "(`python -m bot`): records appear here within a couple of seconds."
        )


def trading_state(ctx: Context) -> None:
    """Each bot's trading state and its active protections and locks, with their end."""
    controls = ctx.panel("control", lambda: ctx.store.control_state(bot=ctx.view.bot))
    if not controls:
        return
    st.markdown(
        "**Trading state** "
        + " ".join(
            f":{frame.STATE_COLORS.get(c.state, 'gray')}-badge[{bot}: {c.state}]"
            + (f" since {frame.fmt_time(c.since)} UTC ({c.source}: {c.reason})" if c.since else "")
            for bot, c in controls.items()
        )
    )
    locks = [
        {
            "bot": bot,
            "protection": p.name,
            "symbol": p.symbol or "all symbols",
            "until (UTC)": frame.fmt_time(p.until) if p.until else "until reset",
            "triggered (UTC)": frame.fmt_time(p.ts),
        }
        for bot, c in controls.items()
        for p in c.protections
    ]
    if locks:
        st.dataframe(locks, hide_index=True, key="locks")


def signal_flow(ctx: Context) -> None:
    stages = metrics.funnel(window_counts(ctx))
    fig = ctx.panel(
        "fig:funnel", lambda: charts.signal_funnel([(s.label, s.count) for s in stages])
    )
    frame.chart(fig, "funnel")
    st.caption(funnel_text(stages))


def funnel_text(stages: list[metrics.FunnelStage]) -> str:
    """``20 Signals → 15 Passed risk (75.0%) → …``: the funnel as text."""
    parts = [f"{stages[0].count} {stages[0].label}"] if stages else []
    parts += [f"{s.count} {s.label} ({fmt_rate(s.conversion)})" for s in stages[1:]]
    return " → ".join(parts)


def rejection_rates(ctx: Context, *, key: str, open_signals: bool = False) -> None:
    """The rates chart with thresholds and firing periods. Selecting a point narrows the
    filters to its bucket (and, with ``open_signals``, opens the Signals page there)."""
    v = ctx.view
    series = window_series(ctx)
    periods = alert_periods(ctx)
    fig = ctx.panel(
        "fig:rates",
        lambda: charts.rates_over_time(
            series,
            REJECTION_RATES,
            frame.thresholds(ctx.monitor, REJECTION_RATES),
            width=v.step,
            firing=[p for p in periods if p.state == "firing" and p.metric in REJECTION_RATES],
        ),
        ctx.history.signature(),
    )

    def picked() -> None:
        if pick_bucket(key, v.step, fig) is not None and open_signals:
            st.session_state[GOTO_SIGNALS] = True

    frame.chart(fig, key, on_select=picked, selection_mode="points")
    counts = window_counts(ctx)
    st.caption(
        f"Per {frame.bucket_label(v.step)}; {v.label}: "
        + "; ".join(
            f"{metrics.RATE_METRICS[m].label.lower()} {fmt_rate(metrics.rate(m, counts))} "
            f"({'/'.join(map(str, metrics.rate_parts(m, counts)))})"
            for m in REJECTION_RATES
        )
        + ". Dashed: an alert rule fires above; dotted: it clears below; red bands: firing. "
        "Select a point to see that bucket's signals."
    )


def alert_periods(ctx: Context) -> list[metrics.Period]:
    """Pending and firing periods from the alerts process's history (shared)."""
    return ctx.panel(
        "alert_periods",
        lambda: metrics.alert_periods(ctx.history.records(), ctx.view.end),
        ctx.history.signature(),
    )


def pick_bucket(key: str, step: float, fig: Any) -> dict[str, str] | None:
    """Callback of a rates chart: narrow the filters to the selected point's bucket and the
    signals behind that rate. Returns those URL parameters (None without a usable point)."""
    points = st.session_state[key].selection.points
    start = parse_utc(str(points[0].get("x", ""))) if points else None
    if start is None:
        return None
    params = {"range": "custom", "from": format_utc(start), "to": format_utc(start + step)}
    curve = points[0].get("curve_number")
    meta = fig.data[curve].meta if isinstance(curve, int) and curve < len(fig.data) else None
    outcome = OUTCOME_OF_METRIC.get((meta or {}).get("metric", ""))
    if outcome is not None:
        params["outcome"] = outcome
    for name, value in params.items():
        st.session_state[name] = value
    return params


def capping(ctx: Context) -> None:
    v = ctx.view
    series = window_series(ctx)
    points = ctx.panel(
        "capped", lambda: ctx.store.capped_quantities(v.start, v.end, v.symbol, bot=v.bot)
    )
    periods = alert_periods(ctx)
    left, right = st.columns(2)
    with left:
        fig = ctx.panel(
            "fig:capping",
            lambda: charts.capping_over_time(
                series,
                frame.thresholds(ctx.monitor, ["capping_rate"]),
                width=v.step,
                firing=[p for p in periods if p.state == "firing" and p.metric == "capping_rate"],
            ),
            ctx.history.signature(),
        )
        frame.chart(fig, "capping")
    with right:
        frame.chart(ctx.panel("fig:capped_qty", lambda: charts.requested_vs_capped(points)), "qty")
    counts = window_counts(ctx)
    capped, sized = metrics.rate_parts("capping_rate", counts)
    requested = sum(r for _, r, _ in points)
    kept = sum(c for _, _, c in points)
    st.caption(
        f"{capped} of {sized} sizings capped ({fmt_rate(metrics.rate('capping_rate', counts))}), "
        f"{v.label}; requested {requested:g} → capped {kept:g} in total."
    )


if __name__ == "__main__":  # run by st.navigation as a page script
    page(frame.current())
