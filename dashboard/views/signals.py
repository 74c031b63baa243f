"""Signals (SPEC §9): one row per signal with its outcome and, once closed, its result;
selecting a row opens its trace (every event of one trace_id, in order).

Ways in: ``?trace=<id>`` opens a trace directly; selecting a bar of the reasons chart
filters the rows by that reason; selecting a point of the rates chart (here or on the
Overview) narrows the window to that bucket. Filters live in the URL (``outcome=``,
``reason=``, ``trace=``) beside the sidebar's.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import charts
from dashboard.views import events, frame, overview
from dashboard.views.frame import ALL, Context

OUTCOMES = [ALL, "traded", "capped", "rejected", "failed", "pending"]
TABLE_LIMIT = 1000
ROWS_KEY = "_signal_trace_ids"  # session state: trace ids of the rows on screen, in order


def page(ctx: Context) -> None:
    v = ctx.view
    reasons = ctx.panel(
        "reasons", lambda: ctx.store.rejection_reasons(v.start, v.end, v.symbol, bot=v.bot)
    )
    left, right = st.columns(2)
    with left:
        fig = ctx.panel("fig:reasons", lambda: charts.rejection_reasons(reasons))
        frame.chart(
            fig,
            "signals_reasons",
            on_select=lambda: pick_reason("signals_reasons"),
            selection_mode="points",
        )
    with right:
        overview.rejection_rates(ctx, key="signals_rates")
    signal_table(ctx, sorted(reasons))
    trace_view(ctx)


# ------------------------------------------------------------------ selections


def pick_reason(key: str) -> None:
    """Callback of the reasons chart: show the rejected signals of the selected reason."""
    points = st.session_state[key].selection.points
    if points and points[0].get("y") not in (None, charts.OTHER):
        st.session_state["reason"] = points[0]["y"]
        st.session_state["outcome"] = "rejected"


# ------------------------------------------------------------------ the table


def signal_table(ctx: Context, reasons: list[str]) -> None:
    v = ctx.view
    left, right = st.columns(2)
    outcome = left.selectbox("Outcome", OUTCOMES, key="outcome", bind="query-params")
    reason = right.selectbox(
        "Reason", [ALL, *reasons], key="reason", bind="query-params", accept_new_options=True
    )
    chosen_outcome = None if outcome in (None, ALL) else outcome
    chosen_reason = None if reason in (None, ALL) else reason
    rows = ctx.panel(
        "signals",
        lambda: ctx.store.signals(
            v.start,
            v.end,
            v.symbol,
            bot=v.bot,
            outcome=chosen_outcome,
            reason=chosen_reason,
            limit=TABLE_LIMIT,
        ),
        chosen_outcome,
        chosen_reason,
    )
    if not rows:
        st.info(f"No signals match ({v.label}).")
        return
    st.caption(
        f"{len(rows)} signals ({v.label}; newest first, at most {TABLE_LIMIT}). "
        "Select a row to open its trace below."
    )
    st.session_state[ROWS_KEY] = [row.trace_id for row in rows]
    st.dataframe(
        [signal_row(row) for row in rows],
        hide_index=True,
        key="signals_table",
        on_select=open_selected_trace,
        selection_mode="single-row",
        column_config={
            "pnl": st.column_config.NumberColumn(format="%.2f"),
            "time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        },
    )


def signal_row(row: Any) -> dict[str, Any]:
    return {
        "time": charts.utc(row.time),
        "bot": row.bot,
        "symbol": row.symbol,
        "side": row.side,
        "strategy": row.strategy,
        "outcome": row.outcome,
        "reason": row.reason,
        "entry": row.entry_price,
        "fill": row.fill_price,
        "exit": row.exit_price,
        "exit kind": row.exit_kind,
        "pnl": row.pnl,
        "trace_id": row.trace_id,
    }


def open_selected_trace() -> None:
    """Callback of the table: the selected row's trace goes into ``?trace=``."""
    rows = st.session_state["signals_table"].selection.rows
    ids = st.session_state.get(ROWS_KEY, [])
    if rows and rows[0] < len(ids):
        st.session_state["trace"] = ids[rows[0]]


# ------------------------------------------------------------------ the trace


def trace_view(ctx: Context) -> None:
    st.subheader("Trace")
    recent = ctx.panel("trace_ids", lambda: ctx.store.recent_trace_ids(50, bot=ctx.view.bot))
    # a link's or a selected row's trace may be older than the recent ones
    asked = st.session_state.get("trace") or st.query_params.get("trace")
    trace_id = st.selectbox(
        "Trace id (select a signal above, choose a recent one, or paste any id)",
        recent if asked is None or asked in recent else [asked, *recent],
        index=None,
        key="trace",
        bind="query-params",
        accept_new_options=True,
        placeholder="choose or paste a trace_id",
    )
    if not trace_id:
        st.info("Select a signal to see every event of its flow, in order.")
        return
    records = ctx.panel("trace", lambda: ctx.store.trace(trace_id), trace_id)
    if not records:
        st.warning(f"No events with trace_id `{trace_id}` in the trail read so far.")
        return
    st.dataframe(events.event_rows(records), hide_index=True, key="trace_table")
    with st.expander("Raw records"):
        st.json(records, expanded=False)


if __name__ == "__main__":  # run by st.navigation as a page script
    page(frame.current())
