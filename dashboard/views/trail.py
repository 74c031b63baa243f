"""Trail (SPEC §9): each bot's hash-chain integrity (verified on its own), and the lines
the reader could not use — by reason, and the latest ones with file, line and preview."""

from __future__ import annotations

import streamlit as st

from dashboard.views import frame
from dashboard.views.frame import Context


def page(ctx: Context) -> None:
    store = ctx.store
    stats, integrity = store.read_stats, store.integrity
    cols = st.columns(4)
    cols[0].metric("Malformed lines", stats.malformed)
    cols[1].metric("Truncations", stats.truncations)
    cols[2].metric("Replacements", stats.replacements)
    cols[3].metric("audit_gap records", integrity.gaps)
    st.dataframe(
        [
            {
                "bot": bot,
                "chain": "checking" if s.ok is None else "OK" if s.ok else "BROKEN",
                "records checked": s.checked_records,
                "audit_gap": s.gaps,
                "audit_recovered": s.recoveries,
                "days checked again": ", ".join(s.reverified_days),
                "first problem": s.problem,
            }
            for bot, s in store.integrity_by_bot().items()
        ],
        hide_index=True,
        key="integrity_by_bot",
    )
    st.caption(
        f"Audit directory `{ctx.settings.audit_dir}`: {stats.records} records read; hash chain "
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


if __name__ == "__main__":  # run by st.navigation as a page script
    page(frame.current())
