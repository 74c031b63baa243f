"""Orders (SPEC §9): outcomes per order type (placed, filled, cancelled, rejected) with
the rejection rate per type, and risk rejection reasons over time."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, metrics
from dashboard.views import frame
from dashboard.views.frame import Context


def page(ctx: Context) -> None:
    v = ctx.view
    outcomes = ctx.panel(
        "outcomes", lambda: ctx.store.order_outcomes(v.start, v.end, v.symbol, bot=v.bot)
    )
    left, right = st.columns(2)
    with left:
        frame.chart(ctx.panel("fig:outcomes", lambda: charts.order_outcomes(outcomes)), "outcomes")
    with right:
        reason_series = ctx.panel(
            "reason_series",
            lambda: ctx.store.rejection_reason_series(
                v.start, v.end, v.symbol, bot=v.bot, step_seconds=v.step
            ),
        )
        fig = ctx.panel(
            "fig:reasons_t",
            lambda: charts.rejection_reasons_over_time(reason_series, width=v.step),
        )
        frame.chart(fig, "reasons_t")
    if outcomes:
        st.dataframe(
            metrics.order_outcome_rows(outcomes),
            hide_index=True,
            key="outcome_rows",
            column_config={"rejection_rate": st.column_config.NumberColumn(format="percent")},
        )
    else:
        st.info(f"No orders in this range ({v.label}).")


if __name__ == "__main__":  # run by st.navigation as a page script
    page(frame.current())
