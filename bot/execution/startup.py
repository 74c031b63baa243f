"""Before the first trade: an account the bot can trade, its symbols set up, and what a
previous run left at the venue made safe.

* :func:`check_account_modes` refuses an account in hedge mode, or in
  Multi-Assets mode with ISOLATED margin configured, before any order.
* :func:`reconcile_symbol` reads each symbol's position and open orders,
  keeps a position protected by a stop-loss, closes one without (the
  protective close of :mod:`bot.execution.closing`) and cancels the bot's
  orphaned orders. It runs before :func:`configure_symbol` sets margin type
  and leverage, so an inherited position (-4048 / -4161) cannot stop the bot
  before it is made safe.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.audit import AuditEventType, new_trace_id, trace
from bot.errors import ConfigError, VenueRejectedError
from bot.execution.calls import VenueCalls
from bot.execution.client_ids import STOP_ROLES, parse_client_order_id, trace_of_orders
from bot.execution.closing import close_at_market
from bot.execution.retry import OrderFailed
from bot.execution.stops import StopPlan, SymbolBook
from bot.models import AccountModes, MarginType, OrderResult, SymbolFilters

log = logging.getLogger("bot.execution")

# A margin type / leverage change refused because a position is open: kept as it is.
KEPT_WITH_POSITION_CODES = frozenset({-4048, -4161})


def check_account_modes(calls: VenueCalls, margin_type: MarginType) -> AccountModes:
    """Refuse (ConfigError, before any order) an account this bot cannot trade correctly.

    Hedge mode is refused: every order would need a positionSide, and
    reduce-only is refused there. Multi-Assets mode is traded with CROSSED
    margin, the only one it allows; with ISOLATED configured it is refused.
    """
    modes = calls.read("get_account_modes", None, calls.exchange.account_modes)
    if modes.hedge_mode:
        raise ConfigError(
            "the account is in hedge mode (Binance setting dualSidePosition=true, "
            "'Position Mode: Hedge'); this bot trades one-way mode only: switch the "
            "account's position mode to One-way and start again (no order was sent)"
        )
    if modes.multi_assets and margin_type is MarginType.ISOLATED:
        raise ConfigError(
            "the account is in Multi-Assets mode (Binance setting multiAssetsMargin=true), "
            "which allows CROSSED margin only, but risk.margin_type is ISOLATED: set "
            'risk.margin_type = "CROSSED" or switch Multi-Assets mode off (no order was sent)'
        )
    return modes


def configure_symbol(
    calls: VenueCalls, symbol: str, margin_type: MarginType, leverage: int
) -> SymbolFilters:
    """Read the symbol's filters, set margin type and leverage (audited). Raises on failure."""
    filters = calls.filters(symbol)
    try:
        calls.read(
            "set_margin_type",
            symbol,
            lambda: calls.exchange.set_margin_type(symbol, margin_type),
        )
        margin = {"margin_type": margin_type.value, "status": "success"}
    except VenueRejectedError as exc:
        margin = _kept_with_position(calls, symbol, exc, {"margin_type": margin_type.value})
    calls.audit.log_event(
        AuditEventType.MARGIN_TYPE_SET, "set_margin_type", symbol=symbol, response=margin
    )
    try:
        applied = calls.read(
            "set_leverage", symbol, lambda: calls.exchange.set_leverage(symbol, leverage)
        )
        leverage_set = {"leverage": applied, "status": "success"}
    except VenueRejectedError as exc:
        leverage_set = _kept_with_position(calls, symbol, exc, {"leverage": leverage})
    calls.audit.log_event(
        AuditEventType.LEVERAGE_SET, "set_leverage", symbol=symbol, response=leverage_set
    )
    return filters


def _kept_with_position(
    calls: VenueCalls, symbol: str, exc: VenueRejectedError, wanted: dict[str, Any]
) -> dict[str, Any]:
    """A setting the venue will not change under an open position: kept, not fatal."""
    if exc.code not in KEPT_WITH_POSITION_CODES:
        raise exc
    position = calls.read_position(symbol)
    if not position.is_open:
        raise exc
    return {
        **wanted,
        "status": "kept_with_open_position",
        "position_amount": position.amount,
        "error_code": exc.code,
        "error_message": exc.message,
    }


def describe_order(order: OrderResult) -> dict[str, Any]:
    """An open order as the startup reconciliation records it."""
    return {
        **order.as_audit(),
        "order_type": order.order_type.value,
        "side": order.side.value,
        "stop_price": order.stop_price,
        "quantity": order.quantity,
        "close_position": order.close_position,
        "reduce_only": order.reduce_only,
        "placed_by_bot": parse_client_order_id(order.client_order_id) is not None,
    }


def reconcile_symbol(calls: VenueCalls, book: SymbolBook, symbol: str) -> list[OrderResult]:
    """At startup: take over what a previous run left at the venue for ``symbol``.

    Reads the position and every open order (regular and algo) and records
    them as one ``position_query`` (operation ``reconcile_startup``; the
    orders, whether a stop-loss protects the position and the ``action``
    taken in ``additional_data``), under the trace id of the bot's own
    orders found (from their client ids, the stop-loss's first), else a
    fresh one; a flat symbol without orders of the bot gets no trace.
    Then, audited under that trace:

    * ``adopt`` — open and protected by a stop-loss
      (:meth:`bot.models.Position.is_protected_by`): left as it is. The
      bot's own take-profit/stop-loss are returned so the caller follows
      their fills and cancels like those of a trade of this run.
    * ``close_unprotected_position`` — open WITHOUT a stop-loss: closed at
      once with the protective close (reduce-only MARKET ``<trace>-x``,
      ``order_placed``), then the bot's orders left on the symbol are
      cancelled (``order_cancelled``, reason ``trade_unwound``). Not a new
      stop instead: the trade's stop price was lost with the previous run,
      and any rule for a new one (a distance from the entry or from the
      current price) risks an amount the trade never chose, can be
      refused as "would immediately trigger", and keeps a position open
      that no run of the bot decided to hold. Closing needs no guess, is
      what SPEC §3 already does when a stop-loss cannot be placed, and
      leaves nothing unprotected.
    * ``cancel_orphans`` — flat, but orders of the bot still open: a
      take-profit or stop-loss with closePosition would act on the next
      position, so each is cancelled (reason ``orphan_after_restart``).
    * ``none`` — flat and nothing of the bot's open.

    Orders placed by hand are recorded, never touched (a stop of theirs
    does protect the position). Raises :class:`ExchangeError` (audited)
    when the venue cannot be read or its state made safe: the bot must not
    start trading next to an unprotected position.
    """
    position = calls.read_position(symbol)
    orders = calls.open_orders(symbol)
    ours = [o for o in orders if parse_client_order_id(o.client_order_id) is not None]
    protected = position.is_protected_by(orders)
    if position.is_open:
        action = "adopt" if protected else "close_unprotected_position"
    else:
        action = "cancel_orphans" if ours else "none"
    summary = {
        "open_orders": [describe_order(o) for o in orders],
        "protected": protected if position.is_open else None,
        "action": action,
    }
    if action == "none":
        calls.audit_position(position, "reconcile_startup", summary)
        return []
    with trace(trace_of_orders(ours) or new_trace_id()) as trace_id:
        calls.audit_position(position, "reconcile_startup", summary)
        if action == "adopt":
            stop = next(
                (o for o in ours if o.client_order_id.rpartition("-")[2] in STOP_ROLES), None
            )
            book.set_stop_plan(symbol, StopPlan(trace_id, stop.stop_price if stop else None))
            return ours
        if action == "close_unprotected_position":
            try:
                close_at_market(calls, position, trace_id, "close_unprotected_position")
            except OrderFailed as failed:
                log.error(
                    "%s: position of %s left OPEN without stop-loss: %s",
                    symbol,
                    position.amount,
                    failed.error,
                )
                raise failed.error from None
        reason = "orphan_after_restart" if action == "cancel_orphans" else "trade_unwound"
        for order in ours:
            calls.cancel_order(symbol, order.client_order_id, reason=reason)
        return []
