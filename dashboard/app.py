"""The dashboard (SPEC §9): the entry point that frames every page.

Run from the repository root: ``streamlit run dashboard/app.py`` (the Procfile's
``dashboard`` process). Environment: ``AUDIT_DIR`` (default ``logs/audit``; one trail,
or one subdirectory per bot), ``ALERTS_DIR`` (default ``logs/alerts``),
``ALERT_RULES`` (default ``dashboard/alerts.toml``), ``AUDIT_POLLING=1`` to poll
instead of using filesystem events (network or bind-mounted filesystems).

Each run: the sidebar filters (bound to the URL), then the chosen page
(``st.navigation``; every page has its own URL and ``dashboard/views/`` holds them),
then the one-second watcher that redraws the page only when what it shows changed
(``dashboard.views.frame``). ``?trace=<id>`` on any page opens that trace on the
Signals page.
"""

from __future__ import annotations

import streamlit as st

from dashboard.views import frame

PAGES: list[tuple[str, str, str, str]] = [
    # (page file, title, icon, help)
    ("overview", "Overview", ":material/dashboard:",
     "Headline numbers, alert and trading states, signal flow, rejection rates, capping."),
    ("signals", "Signals", ":material/list:",
     "Every signal with its outcome and result; select one to open its trace."),
    ("results", "Results", ":material/payments:",
     "Realized PnL net of fees, wins and losses, exits, slippage, positions, equity."),
    ("orders", "Orders", ":material/receipt_long:",
     "Order outcomes per order type and rejection reasons over time."),
    ("alerts", "Alerts", ":material/notifications:",
     "Alert rules' states now and their history as a timeline."),
    ("events", "Events", ":material/table:",
     "The filterable event table, with CSV download."),
    ("trail", "Trail", ":material/verified:",
     "Integrity of each bot's hash chain and malformed lines."),
]  # fmt: skip


def main() -> None:
    st.set_page_config(page_title="Audit trail dashboard", page_icon="📒", layout="wide")
    ctx = frame.context()
    drawn = ctx.live_key(ctx.version)
    current = st.navigation(
        [
            st.Page(frame.page_file(name), title=title, icon=icon, help=text, default=i == 0)
            for i, (name, title, icon, text) in enumerate(PAGES)
        ]
    )
    if "trace" in st.query_params and current.url_path != "signals":
        frame.switch_to("signals", trace=st.query_params["trace"])
    st.title(f"Trading bot audit trail — {current.title}")
    current.run()
    frame.watch(ctx, drawn)


if __name__ == "__main__":  # streamlit runs the script as __main__; tests may import it
    main()
