"""VenueCalls: every call to the exchange port retried, audited, and never a duplicate order.

* Reads (:meth:`VenueCalls.read`) are idempotent: a temporary error is retried
  with backoff (``RateLimitError`` waits ``retry_after``, ``ClockSkewError``
  resynchronises the clock first); the final failure is audited and raised.
* Orders (:meth:`VenueCalls.place`) are asked of the order gate (our trading
  state) first, then sent under their client order id until placed, rejected
  or out of attempts. A venue rejection is not retried, except when a
  duplicate refusal proves the order is already there or one of the bot's
  orphaned closePosition orders blocks it; an unknown outcome is resolved
  from the venue's records (:mod:`bot.execution.resolve`) before anything is
  sent again.
* Cancels made here are remembered, so the venue's echo of them is not
  audited a second time.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from bot.audit import AuditEventType, AuditLogger, trace
from bot.errors import (
    ClockSkewError,
    ExchangeError,
    OrderRefusedError,
    RateLimitError,
    TemporaryExchangeError,
    UnknownOutcomeError,
    VenueRejectedError,
)
from bot.exchange.base import Exchange
from bot.execution.client_ids import parse_client_order_id
from bot.execution.resolve import OutcomeResolver
from bot.execution.retry import OrderFailed, RetryPolicy, error_fields
from bot.models import OrderRequest, OrderResult, OrderStatus, OrderType, Position, SymbolFilters

T = TypeVar("T")

OrderGate = Callable[[OrderRequest], OrderRefusedError | None]
"""Asked before every order is sent: ``None`` lets it go; an error refuses it (SPEC §11)."""

DUPLICATE_CODES = frozenset({-4116, -4130})  # client id taken / closePosition order exists
_REMEMBERED_CANCELS = 10_000


class VenueCalls:
    """The exchange port behind retries and audit; shared by every part of execution."""

    def __init__(
        self,
        exchange: Exchange,
        audit: AuditLogger,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        gate: OrderGate | None,
    ) -> None:
        self.exchange = exchange
        self.audit = audit
        self.retry = retry
        self._sleep = sleep
        self._gate = gate
        self._resolver = OutcomeResolver(exchange, audit, retry, sleep)
        self._filters: dict[str, SymbolFilters] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()  # client ids we cancelled

    # ---------------------------------------------------------------- reads

    def read(self, operation: str, symbol: str | None, call: Callable[[], T]) -> T:
        """Run an idempotent call with retries; audit and re-raise the final failure."""
        attempt = 1
        while True:
            try:
                return call()
            except TemporaryExchangeError as exc:
                if attempt >= self.retry.max_attempts:
                    self.audit.log_api_error(
                        operation,
                        {**error_fields(exc), "attempts": attempt},
                        symbol=symbol,
                    )
                    raise
                self.before_retry(operation, symbol, exc, attempt)
                attempt += 1
            except ExchangeError as exc:
                self.audit.log_api_error(
                    operation, {**error_fields(exc), "attempts": attempt}, symbol=symbol
                )
                raise

    def filters(self, symbol: str) -> SymbolFilters:
        """The symbol's filters, read once (at startup, or on first use)."""
        cached = self._filters.get(symbol)
        if cached is None:
            cached = self.read(
                "get_symbol_filters", symbol, lambda: self.exchange.symbol_filters(symbol)
            )
            self._filters[symbol] = cached
        return cached

    def read_position(self, symbol: str) -> Position:
        """The position, retried like every read; not recorded (the supervisor polls it)."""
        return self.read("get_position", symbol, lambda: self.exchange.position(symbol))

    def open_orders(self, symbol: str) -> list[OrderResult]:
        """Every open order of the symbol at the venue, regular and algo (not audited: a read)."""
        return self.read("get_open_orders", symbol, lambda: self.exchange.open_orders(symbol))

    def audit_position(
        self, position: Position, operation: str, found: dict[str, Any] | None = None
    ) -> None:
        """The position as a ``position_query`` record; ``found``: what a check saw and did."""
        self.audit.log_event(
            AuditEventType.POSITION_QUERY,
            operation,
            symbol=position.symbol,
            response={
                "position_amount": position.amount,
                "entry_price": position.entry_price,
                "leverage": position.leverage,
                "unrealized_pnl": position.unrealized_pnl,
            },
            additional_data=found,
        )

    # -------------------------------------------------------------- cancels

    def cancel_order(self, symbol: str, cid: str, *, reason: str) -> OrderResult | None:
        """Cancel one order; audited when something was cancelled. ``None``: it was not open."""
        result = self.read("cancel_order", symbol, lambda: self.exchange.cancel_order(symbol, cid))
        if result is not None:
            self._cancelled[cid] = None
            while len(self._cancelled) > _REMEMBERED_CANCELS:
                self._cancelled.popitem(last=False)
            self.audit.log_event(
                AuditEventType.ORDER_CANCELLED,
                "cancel_order",
                symbol=symbol,
                order_data={
                    "order_type": result.order_type.value,
                    "side": result.side.value,
                    "client_order_id": cid,
                },
                response=result.as_audit(),
                additional_data={"reason": reason},
            )
        return result

    def cancelled_here(self, cid: str) -> bool:
        """Whether execution cancelled (and audited) the order, so the venue's
        later cancel event is not audited a second time."""
        return cid in self._cancelled

    # --------------------------------------------------------------- orders

    def place(
        self, operation: str, request: OrderRequest, *, before: Position | None = None
    ) -> OrderResult:
        """Send one order until placed, rejected, or out of attempts; never duplicate it.

        ``before``: the position before the order, for resolving an unknown
        outcome of a MARKET order from the position
        (:meth:`bot.execution.resolve.OutcomeResolver.resolve`).
        """
        refused = self._gate(request) if self._gate is not None else None
        if refused is not None:  # denied by our own controls: a risk decision, not the venue's
            self.audit.log_risk_rejection(
                request.symbol,
                refused.reason,
                str(refused),
                "trading_state",
                request.as_audit(),
                operation=operation,
            )
            raise OrderFailed(refused)
        attempt = 1
        while True:
            result: OrderResult | None
            try:
                result = self._send(request)
            except VenueRejectedError as exc:
                result = self._already_there(request, exc)
                if result is None and self._cleared_blocking(request, exc, attempt):
                    attempt += 1
                    continue
                if result is None:
                    self.audit.log_order_rejected(
                        request.symbol,
                        request.as_audit(),
                        {**error_fields(exc), "attempts": attempt},
                        operation=operation,
                    )
                    raise OrderFailed(exc) from exc
            except (UnknownOutcomeError, TemporaryExchangeError) as exc:
                # A temporary error on a POST (429, -1021, -1001, -1008, 503 "Service
                # Unavailable.", not sent) says the venue did not process it: send again.
                not_processed = isinstance(exc, TemporaryExchangeError)
                result = (
                    None
                    if not_processed
                    else self._resolver.resolve(operation, request, exc, before)
                )
                if result is None:
                    if attempt >= self.retry.max_attempts:
                        self.audit.log_api_error(
                            operation,
                            {**error_fields(exc), "attempts": attempt},
                            symbol=request.symbol,
                            order_data=request.as_audit(),
                        )
                        raise OrderFailed(exc) from exc
                    self.before_retry(operation, request.symbol, exc, attempt)
                    attempt += 1
                    continue
            self.audit.log_order_placed(
                request.symbol,
                request.as_audit(),
                {**result.as_audit(), "attempts": attempt},
                operation=operation,
            )
            return result

    def _already_there(self, request: OrderRequest, exc: VenueRejectedError) -> OrderResult | None:
        """A duplicate refusal that proves the order itself is open: it is placed.

        -4116 (client id taken) means the venue holds an open order under our
        id, even while its queries do not show it yet; -4130 (a closePosition
        order of that kind exists) counts when the open order is ours. That is
        how the resend of a protective order whose first send did arrive ends.
        """
        if exc.code not in DUPLICATE_CODES:
            return None
        try:
            found = self.exchange.query_order(request.symbol, request.client_order_id)
        except ExchangeError:
            found = None
        if found is not None and not found.status.is_final:
            return found
        if exc.code != -4116:
            return None
        return OrderResult(
            symbol=request.symbol,
            client_order_id=request.client_order_id,
            order_type=request.order_type,
            side=request.side,
            status=OrderStatus.NEW,
            quantity=request.quantity or 0.0,
            stop_price=request.stop_price,
            close_position=request.close_position,
            reduce_only=request.reduce_only,
        )

    def _cleared_blocking(
        self, request: OrderRequest, exc: VenueRejectedError, attempt: int
    ) -> bool:
        """-4130: an orphaned closePosition order of the bot's (another trade's) is in the way.

        It would act on this position with a price this trade never chose, so
        it is cancelled (reason ``blocks_new_order``) and the order sent again
        (once per attempt, within the usual bound). One placed by hand is left.
        """
        if exc.code != -4130 or attempt >= self.retry.max_attempts:
            return False
        try:
            listed = self.exchange.open_orders(request.symbol)
        except ExchangeError:
            return False
        blocking = [
            o
            for o in listed
            if o.close_position
            and o.order_type is request.order_type
            and o.side is request.side
            and o.client_order_id != request.client_order_id
            and parse_client_order_id(o.client_order_id) is not None
        ]
        for order in blocking:
            owner = parse_client_order_id(order.client_order_id)
            assert owner is not None
            with trace(owner[0]), contextlib.suppress(ExchangeError):  # under its own trade
                self.cancel_order(request.symbol, order.client_order_id, reason="blocks_new_order")
        return bool(blocking)

    def _send(self, request: OrderRequest) -> OrderResult:
        if request.order_type is OrderType.LIMIT:
            assert request.quantity is not None and request.price is not None
            return self.exchange.place_limit_ioc(
                request.symbol,
                request.side,
                request.quantity,
                request.price,
                request.client_order_id,
                reduce_only=request.reduce_only,
            )
        if request.order_type is OrderType.MARKET:
            assert request.quantity is not None
            return self.exchange.place_market_order(
                request.symbol,
                request.side,
                request.quantity,
                request.client_order_id,
                reduce_only=request.reduce_only,
            )
        assert request.stop_price is not None
        return self.exchange.place_conditional_order(
            request.symbol,
            request.side,
            request.order_type,
            request.stop_price,
            request.client_order_id,
        )

    # -------------------------------------------------------------- retries

    def before_retry(
        self, operation: str, symbol: str | None, exc: ExchangeError, attempt: int
    ) -> None:
        """Audit the coming retry, do what the error kind asks, wait."""
        delay = self.retry.delay(attempt)
        extra: dict[str, Any] = {}
        if isinstance(exc, RateLimitError):
            if exc.retry_after is not None:
                delay = exc.retry_after
            self.audit.log_event(
                AuditEventType.RATE_LIMIT,
                operation,
                symbol=symbol,
                error={**error_fields(exc), "retry_after": exc.retry_after},
            )
        elif isinstance(exc, ClockSkewError):
            delay = 0.0
            try:
                extra["clock_offset_ms"] = self.exchange.sync_clock()
            except ExchangeError as sync_exc:
                self.audit.log_api_error("sync_clock", error_fields(sync_exc), symbol=symbol)
        self.audit.log_event(
            AuditEventType.RETRY_ATTEMPT,
            operation,
            symbol=symbol,
            error=error_fields(exc),
            additional_data={
                "attempt": attempt + 1,
                "max_attempts": self.retry.max_attempts,
                "delay_seconds": delay,
                **extra,
            },
        )
        if delay > 0:
            self._sleep(delay)
