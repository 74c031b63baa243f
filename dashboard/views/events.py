"""Events (SPEC §9): the newest events matching the filters, with a CSV download of
exactly that table. Control acts (``trading_state_changed``, ``protection_triggered``)
are events like any other and show here and in traces."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import streamlit as st

from dashboard.views import frame
from dashboard.views.frame import Context

TABLE_LIMIT = 1000
TABLE_COLUMNS = ["timestamp", "bot_id", "event_type", "symbol", "operation", "trace_id", "details"]


def page(ctx: Context) -> None:
    v = ctx.view
    records = ctx.panel(
        "events",
        lambda: ctx.store.recent(
            TABLE_LIMIT,
            start=v.start,
            end=v.end,
            symbol=v.symbol,
            event_types=v.event_types or None,
            bot=v.bot,
        ),
    )
    if not records:
        st.info(f"No events match the filters ({v.label}).")
        return
    rows = event_rows(reversed(records))  # newest first
    st.download_button(
        "Download CSV",
        data=lambda: rows_to_csv(rows),
        file_name="audit_events.csv",
        mime="text/csv",
        on_click="ignore",
        key="events_csv",
        help=f"The newest matching events (at most {TABLE_LIMIT}), newest first.",
    )
    st.caption(f"The newest {len(rows)} matching events ({v.label}; at most {TABLE_LIMIT}).")
    st.dataframe(rows, hide_index=True, key="events_table")


def event_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {name: r.get(name) for name in TABLE_COLUMNS[:-1]} | {"details": details(r)}
        for r in records
    ]


def details(record: Mapping[str, Any]) -> str:
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


if __name__ == "__main__":  # run by st.navigation as a page script
    page(frame.current())
