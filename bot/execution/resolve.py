"""An order's unknown outcome, resolved from the venue's records before anything is sent again.

When the venue cannot say whether an order arrived (a timeout, 503 "execution
status unknown"), sending it again could open a second position. So the
order is looked for over a bounded window (``RetryPolicy.resolve_window``):
queried by its client id with backoff, and for a MARKET order the position is
compared with the one before it. An entry is never sent again once the
position moved its way. Orders that only close or protect (reduce-only,
closePosition) use a short window: the venue refuses a duplicate of them
(-2022, -4116, -4130), and such a refusal is checked against the open orders
(:mod:`bot.execution.calls`).
"""

from __future__ import annotations

from collections.abc import Callable

from bot.audit import AuditLogger
from bot.errors import ExchangeError, UnknownOutcomeError
from bot.exchange.base import Exchange
from bot.execution.retry import OrderFailed, RetryPolicy, error_fields
from bot.models import OrderRequest, OrderResult, OrderSide, OrderStatus, Position


class OutcomeResolver:
    """Asks the venue whether an order whose outcome is unknown happened."""

    def __init__(
        self,
        exchange: Exchange,
        audit: AuditLogger,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
    ) -> None:
        self._exchange = exchange
        self._audit = audit
        self._retry = retry
        self._sleep = sleep

    def resolve(
        self,
        operation: str,
        request: OrderRequest,
        cause: ExchangeError,
        before: Position | None,
    ) -> OrderResult | None:
        """Did the order happen? Ask the venue's records over a bounded window.

        Queries the order by client id (which also looks at the open-order
        lists) with backoff until the pauses add up to the window, and for a
        MARKET order compares the position with ``before``. Returns the order
        when the venue shows it (a position that moved the order's way counts
        as its fill: never send it again), or
        ``None`` when the venue's records showed no such order for the whole
        window (an entry's ``resolve_window``; closing and protective orders
        use ``resolve_window_protective``, as the venue refuses duplicates of
        them) and it may be sent again under the same id. Raises
        :class:`OrderFailed` when the records could not be read at the end:
        the outcome stays unknown and nothing is sent again.
        """
        self._audit.log_api_error(
            operation,
            {**error_fields(cause), "resolution": "query_venue_records"},
            symbol=request.symbol,
            order_data=request.as_audit(),
        )
        entry = not (request.reduce_only or request.close_position)
        window = self._retry.resolve_window if entry else self._retry.resolve_window_protective
        waited, delay, looks = 0.0, max(self._retry.backoff_base, 0.05), 0
        while True:
            looks += 1
            try:
                found = self._venue_record(request, before)
                unreadable: ExchangeError | None = None
            except ExchangeError as exc:
                found, unreadable = None, exc
            if found is not None:
                self._audit_resolution(operation, request, "found_at_venue", looks, found)
                return found if found.status.is_live or found.filled_quantity else None
            if waited >= window:
                break
            pause = min(delay, window - waited)
            self._sleep(pause)
            waited += pause
            delay = min(delay * 2, self._retry.backoff_max)
        if unreadable is not None:
            raise OrderFailed(
                UnknownOutcomeError(
                    f"{cause}; order status still unknown after {window:g}s "
                    f"(venue records unreadable: {unreadable})",
                    client_order_id=request.client_order_id,
                )
            )
        self._audit_resolution(operation, request, "not_at_venue", looks, None)
        return None

    def _venue_record(self, request: OrderRequest, before: Position | None) -> OrderResult | None:
        """The order as the venue records it now: by client id, else by the position's move.

        Raises the query's error when neither view could tell.
        """
        try:
            found = self._exchange.query_order(request.symbol, request.client_order_id)
            failed: ExchangeError | None = None
        except ExchangeError as exc:
            found, failed = None, exc
        if found is not None:
            return found
        if before is not None and request.quantity is not None:
            after = self._exchange.position(request.symbol)
            direction = 1.0 if request.side is OrderSide.BUY else -1.0
            moved = (after.amount - before.amount) * direction
            if moved > 0:
                filled = min(moved, request.quantity)
                return OrderResult(
                    symbol=request.symbol,
                    client_order_id=request.client_order_id,
                    order_type=request.order_type,
                    side=request.side,
                    status=OrderStatus.FILLED
                    if filled >= request.quantity
                    else OrderStatus.PARTIALLY_FILLED,
                    quantity=request.quantity,
                    filled_quantity=filled,
                    avg_price=after.entry_price if after.is_open else 0.0,
                )
        if failed is not None:
            raise failed
        return None

    def _audit_resolution(
        self,
        operation: str,
        request: OrderRequest,
        outcome: str,
        looks: int,
        found: OrderResult | None,
    ) -> None:
        """How an unknown outcome ended (``retry_attempt`` follows when it is sent again)."""
        self._audit.log_api_error(
            operation,
            {
                "error_type": "UnknownOutcomeResolved",
                "resolution": outcome,
                "queries": looks,
                **({"found": found.as_audit()} if found is not None else {}),
            },
            symbol=request.symbol,
            order_data=request.as_audit(),
        )
