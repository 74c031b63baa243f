"""Alerts (SPEC §9, §10): every rule's state now (as this server's monitor evaluates it),
the history recorded by the ``alerts`` process as a timeline per rule (pending → firing →
resolved), and each notification with a link to the window that made it fire."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import charts
from dashboard.views import frame, overview
from dashboard.views.frame import Context
from dashboard.viewstate import format_utc


def page(ctx: Context) -> None:
    st.subheader("Alert states")
    if ctx.monitor.rules is None:
        st.error(f"Alert rules not loaded: {ctx.monitor.error}")
    else:
        st.caption(f"Rules from `{ctx.settings.rules_path}`, evaluated by this server.")
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
                    "since (UTC)": frame.fmt_time(s.since),
                    "reason": s.reason,
                }
                for name, s in ctx.monitor.states().items()
            ],
            hide_index=True,
            key="alert_states",
        )
    st.subheader("Alert history")
    history = ctx.history.records()
    if not history:
        st.info(
            f"No alert notifications recorded in `{ctx.settings.alerts_dir}` yet (the `alerts` "
            "process writes them: `python -m dashboard.alerts`)."
        )
        return
    v = ctx.view
    periods = overview.alert_periods(ctx)
    fig = ctx.panel(
        "fig:timeline",
        lambda: charts.alert_timeline(periods, v.start, v.end),
        ctx.history.signature(),
    )
    frame.chart(fig, "alert_timeline")
    st.dataframe(
        [history_row(r) for r in reversed(history)],
        hide_index=True,
        key="alert_history",
        column_config={
            "window": st.column_config.LinkColumn(
                "window",
                help="The signals of the window the rule evaluated",
                display_text="signals",
            )
        },
    )


def history_row(record: dict[str, Any]) -> dict[str, Any]:
    data = record.get("additional_data") or {}
    return {
        "timestamp": record.get("timestamp"),
        "event_type": record.get("event_type"),
        "rule": data.get("rule"),
        "bot": data.get("bot"),
        "value": data.get("value"),
        "text": data.get("text"),
        "window": window_link(data),
    }


def window_link(data: dict[str, Any]) -> str | None:
    """A link to the Signals page over the window a rule evaluated when it notified."""
    at, window = data.get("at"), data.get("window_seconds")
    if not isinstance(at, int | float) or not isinstance(window, int | float):
        return None
    params = {"range": "custom", "from": format_utc(at - window), "to": format_utc(at + 1)}
    if data.get("symbol"):
        params["symbol"] = str(data["symbol"])
    if data.get("bot"):
        params["bot"] = str(data["bot"])
    return "signals?" + "&".join(f"{k}={v}" for k, v in params.items())


if __name__ == "__main__":  # run by st.navigation as a page script
    page(frame.current())
