"""Results (SPEC §9): what the bot made or lost, from the trail alone — realized PnL net
of fees (cumulative and per symbol), fees, wins and losses, exits by take-profit,
stop-loss or protective close, slippage of entry fills against the signal's price,
open positions (from fills) and equity (from balance queries)."""

from __future__ import annotations

import streamlit as st

from dashboard import charts
from dashboard.queries import SLIPPAGE_ROWS
from dashboard.views import frame
from dashboard.views.frame import Context, fmt_rate


def page(ctx: Context) -> None:
    v = ctx.view
    res = ctx.panel(
        "results",
        lambda: ctx.store.results(v.start, v.end, v.symbol, bot=v.bot, step_seconds=v.step),
    )
    row = st.columns(6)
    row[0].metric("Net PnL", f"{res.net_pnl:,.2f}", help="realized PnL minus fees, " + v.label)
    row[1].metric("Realized PnL", f"{res.realized_pnl:,.2f}")
    row[2].metric("Fees", f"{res.fees:,.2f}")
    row[3].metric("Trades closed", res.trades)
    row[4].metric(
        "Wins / losses",
        f"{res.wins} / {res.losses}",
        help=f"win rate {fmt_rate(res.wins / res.trades if res.trades else None)}",
    )
    row[5].metric(
        "Mean slippage",
        "—" if res.mean_slippage_bps is None else f"{res.mean_slippage_bps:.1f} bps",
        help="entry fill price against the signal's entry price; positive = worse",
    )
    left, right = st.columns(2)
    with left:
        frame.chart(
            ctx.panel("fig:pnl", lambda: charts.cumulative_pnl(res.cumulative)), "pnl_cumulative"
        )
    with right:
        frame.chart(
            ctx.panel(
                "fig:pnl_symbol",
                lambda: charts.pnl_by_symbol(
                    {s: (r.net_pnl, r.fees) for s, r in res.by_symbol.items()}
                ),
            ),
            "pnl_symbol",
        )
    left, right = st.columns(2)
    with left:
        frame.chart(ctx.panel("fig:exits", lambda: charts.exits(res.exits)), "exits")
    with right:
        points = ctx.panel(
            "equity", lambda: ctx.store.equity(v.start, v.end, bot=v.bot, step_seconds=v.step)
        )
        frame.chart(ctx.panel("fig:equity", lambda: charts.equity(points)), "equity")
    st.subheader("Per symbol")
    st.dataframe(
        [
            {
                "symbol": symbol,
                "net PnL": r.net_pnl,
                "realized PnL": r.realized_pnl,
                "fees": r.fees,
                "trades": r.trades,
                "wins": r.wins,
                "losses": r.losses,
                "win rate": r.wins / r.trades if r.trades else None,
            }
            for symbol, r in sorted(res.by_symbol.items())
        ],
        hide_index=True,
        key="results_by_symbol",
        column_config={"win rate": st.column_config.NumberColumn(format="percent")},
    )
    st.caption(
        "Exits: "
        + (", ".join(f"{k} {n}" for k, n in sorted(res.exits.items())) or "none")
        + f" ({v.label})."
    )
    st.subheader("Open positions")
    positions = ctx.panel("positions", lambda: ctx.store.open_positions(bot=v.bot))
    if positions:
        st.dataframe(
            [
                {
                    "bot": p.bot,
                    "symbol": p.symbol,
                    "side": p.side,
                    "quantity": p.quantity,
                    "entry price": p.entry_price,
                    "opened (UTC)": frame.fmt_time(p.opened_at),
                    "trace_id": p.trace_id,
                }
                for p in positions
            ],
            hide_index=True,
            key="positions",
        )
    else:
        st.caption("No open positions.")
    if res.slippage:
        st.subheader("Slippage of entry fills")
        st.caption(
            f"The newest {len(res.slippage)} filled entries (at most {SLIPPAGE_ROWS}); "
            "the mean above covers every entry in the window."
        )
        st.dataframe(
            [
                {
                    "time (UTC)": frame.fmt_time(s.ts),
                    "bot": s.bot,
                    "symbol": s.symbol,
                    "side": s.side,
                    "signal price": s.signal_price,
                    "fill price": s.fill_price,
                    "bps": s.bps,
                    "trace_id": s.trace_id,
                }
                for s in reversed(res.slippage)
            ],
            hide_index=True,
            key="slippage",
        )


if __name__ == "__main__":  # run by st.navigation as a page script
    page(frame.current())
