"""Trace ids: one id per signal, shared by every event of its flow (SPEC §4, §6).

A context variable, so a ``with trace():`` block marks the events of its thread or
task without passing the id through every call.
"""

from __future__ import annotations

import contextlib
import contextvars
import secrets
from collections.abc import Iterator

TRACE: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_trace", default=None)


def new_trace_id() -> str:
    """A short random id, safe inside Binance client order ids (``[A-Za-z0-9_-]``)."""
    return secrets.token_hex(8)


def current_trace_id() -> str | None:
    return TRACE.get()


@contextlib.contextmanager
def trace(trace_id: str | None = None) -> Iterator[str]:
    """Attach a trace id to every event logged inside the block (per thread/task)."""
    tid = trace_id or new_trace_id()
    token = TRACE.set(tid)
    try:
        yield tid
    finally:
        TRACE.reset(token)
