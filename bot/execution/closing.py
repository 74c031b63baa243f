"""The protective close: a position without its stop-loss is closed at market, whatever it takes.

Used when a trade cannot stand whole (its unwind), for a position a previous
run left without a stop-loss (startup reconciliation), to flatten, and by the
protection supervisor. The close is the whole position, reduce-only MARKET
``<trace>-x``, retried with backoff on temporary errors and on rejections that
pass (-4131 PERCENT_PRICE, -2022 ...), re-reading the position each time; a
PERCENT_PRICE refusal first tries a reduce-only LIMIT IOC inside the band
(``<trace>-xl``). A position still open after the bound is recorded as an
``api_error`` with ``severity: critical``.
"""

from __future__ import annotations

import contextlib

from bot.errors import (
    ExchangeError,
    TemporaryExchangeError,
    UnknownOutcomeError,
    VenueRejectedError,
)
from bot.execution.calls import VenueCalls
from bot.execution.client_ids import CLOSE_INSIDE_BAND, PROTECTIVE_CLOSE, client_order_id
from bot.execution.retry import OrderFailed, error_fields
from bot.models import OrderRequest, OrderResult, OrderType, Position

# Rejections of a reduce-only close that may pass: PERCENT_PRICE band (thin book),
# "ReduceOnly Order is rejected" (the position changed meanwhile), "Unable to fill".
PERCENT_PRICE = -4131
CLOSE_RETRY_CODES = frozenset({PERCENT_PRICE, -2022, -2020})


def close_at_market(
    calls: VenueCalls, position: Position, trace_id: str, operation: str
) -> OrderResult | None:
    """The protective close: the whole position, reduce-only MARKET ``<trace>-x``.

    Retried with backoff on temporary errors and on rejections that pass
    (:data:`CLOSE_RETRY_CODES`), re-reading the position before each retry;
    ``None`` when it is flat by then. Out of attempts, an ``api_error`` with
    ``severity: critical`` says the position is open without a stop-loss.
    Raises :class:`OrderFailed` (audited) when it stays open.
    """
    attempt = 1
    while True:
        side = position.side
        assert side is not None, "only an open position can be closed"
        request = OrderRequest(
            position.symbol,
            side.exit_side,
            OrderType.MARKET,
            client_order_id(trace_id, PROTECTIVE_CLOSE),
            quantity=abs(position.amount),
            reduce_only=True,
        )
        try:
            return calls.place(operation, request, before=position)
        except OrderFailed as failed:
            error = failed.error
            passes = isinstance(error, TemporaryExchangeError | UnknownOutcomeError) or (
                isinstance(error, VenueRejectedError) and error.code in CLOSE_RETRY_CODES
            )
            if isinstance(error, VenueRejectedError) and error.code == PERCENT_PRICE:
                closed = _close_inside_band(calls, position, trace_id, operation)
                if closed is not None:
                    return closed
            if not passes or attempt >= calls.retry.close_attempts:
                calls.audit.log_api_error(
                    operation,
                    {
                        **error_fields(error),
                        "attempts": attempt,
                        "severity": "critical",
                        "position_left_open": True,
                        "position_amount": position.amount,
                        "alert": "position open without stop-loss: close it by hand",
                    },
                    symbol=position.symbol,
                    order_data=request.as_audit(),
                )
                raise
            calls.before_retry(operation, position.symbol, error, attempt)
            attempt += 1
        with contextlib.suppress(ExchangeError):  # a failed read keeps the last one known
            position = calls.read_position(position.symbol)
        if not position.is_open:
            return None


def _close_inside_band(
    calls: VenueCalls, position: Position, trace_id: str, operation: str
) -> OrderResult | None:
    """The fallback when PERCENT_PRICE refuses a market close: a reduce-only LIMIT IOC.

    Priced half-way into the band from the mark price (``<trace>-xl``), so
    it takes what the book offers down (up) to there. The result when it
    left the position flat, else ``None`` (the market close is retried).
    """
    side = position.side
    assert side is not None
    mark = position.mark_price or position.entry_price
    request = OrderRequest(
        position.symbol,
        side.exit_side,
        OrderType.LIMIT,
        client_order_id(trace_id, CLOSE_INSIDE_BAND),
        quantity=abs(position.amount),
        reduce_only=True,
        price=calls.filters(position.symbol).limit_inside_band(mark, side.exit_side),
    )
    try:
        result = calls.place(f"{operation}_limit_ioc", request, before=position)
        after = calls.read_position(position.symbol)
    except (OrderFailed, ExchangeError):  # audited; the market close is tried again
        return None
    return None if after.is_open else result
