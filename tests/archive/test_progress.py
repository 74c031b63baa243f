"""Progress of long archive and verify runs: a bar redrawn in place on a terminal, plain
lines (one per day) otherwise, so logs of a timer stay readable."""

from __future__ import annotations

import io

from bot.audit.archive import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_bar_is_redrawn_and_lines_go_above_it() -> None:
    out = Terminal()
    progress = Progress(total=10_000_000, stream=out)
    progress.label = "audit_20261126.jsonl"
    progress.advance(5_000_000)
    progress.line("[1/2] archived bot 20261126: audit_20261126.jsonl")
    progress.close()
    text = out.getvalue()
    assert "\r[###############               ]  50% 5.0/10.0 MB" in text
    assert "audit_20261126.jsonl" in text
    assert "\r\x1b[K[1/2] archived bot 20261126: audit_20261126.jsonl\n" in text
    assert text.endswith("\r\x1b[K")


def test_elsewhere_only_plain_lines() -> None:
    out = io.StringIO()
    progress = Progress(total=10, stream=out)
    progress.advance(5)
    progress.line("[1/2] archived bot 20261126: audit_20261126.jsonl")
    progress.advance(5)
    progress.close()
    assert out.getvalue() == "[1/2] archived bot 20261126: audit_20261126.jsonl\n"
