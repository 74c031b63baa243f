"""Client order ids: ``<trace_id>-<role>``, one per order of a trade.

Ids derive from the trace id (``<trace>-e``, ``-tp``, ``-sl``, ``-x``), so
every retry of one order reuses its id and the venue can never hold two of
them; the engine and the protection supervisor map orders and fills back to
their trade the same way. Pure: no I/O.
"""

from __future__ import annotations

import re

from bot.models import OrderResult

ENTRY, TAKE_PROFIT, STOP_LOSS, PROTECTIVE_CLOSE = "e", "tp", "sl", "x"
REPLACED_STOP = "rs"  # a stop-loss placed again by the protection supervisor
CLOSE_INSIDE_BAND = "xl"  # the protective close's reduce-only LIMIT IOC fallback
_ROLES = (ENTRY, TAKE_PROFIT, STOP_LOSS, PROTECTIVE_CLOSE, REPLACED_STOP, CLOSE_INSIDE_BAND)
STOP_ROLES = frozenset({STOP_LOSS, REPLACED_STOP})
SIBLING = {TAKE_PROFIT: STOP_LOSS, STOP_LOSS: TAKE_PROFIT, REPLACED_STOP: TAKE_PROFIT}
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


def client_order_id(trace_id: str, role: str) -> str:
    """``<trace_id>-<role>``; valid for Binance (``[.A-Z:/a-z0-9_-]{1,36}``)."""
    cid = f"{trace_id}-{role}"
    if role not in _ROLES or not _CLIENT_ID_RE.match(cid):
        raise ValueError(f"cannot build a client order id from {trace_id!r} and {role!r}")
    return cid


def parse_client_order_id(cid: str) -> tuple[str, str] | None:
    """(trace_id, role) of an id this bot made, else ``None`` (orders placed by hand)."""
    trace_id, _, role = cid.rpartition("-")
    if not trace_id or role not in _ROLES:
        return None
    return trace_id, role


def trace_of_orders(orders: list[OrderResult]) -> str | None:
    """The trace of the bot's own orders among ``orders``, its stop-loss's first."""
    parsed = [p for o in orders if (p := parse_client_order_id(o.client_order_id))]
    parsed.sort(key=lambda p: p[1] not in STOP_ROLES)
    return parsed[0][0] if parsed else None
