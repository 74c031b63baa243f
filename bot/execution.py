"""OrderExecutionManager: every call the bot makes to the exchange, retried and audited.

Why it looks like this:

* The exchange port raises only :mod:`bot.errors` kinds; here is the one
  place that decides what each kind means: temporary errors are retried a
  bounded number of times (``RateLimitError`` waits ``retry_after``,
  ``ClockSkewError`` resynchronises the clock first), venue rejections are
  not, and an unknown order outcome is resolved by querying the order by its
  client order id before anything is sent again.
* Client order ids derive from the trace id (``<trace>-e``, ``-tp``, ``-sl``,
  ``-x``), so every retry of one order reuses its id and the venue can never
  hold two of them; the engine maps fills back to traces the same way.
* A trade is "executed" only when entry, take-profit and stop-loss all stand.
  Otherwise the trade is unwound: conditional orders already placed are
  cancelled and an open position is closed at market (reduce-only), so no
  position stays without a stop-loss.
* A restart must not leave that rule behind: at startup
  :meth:`OrderExecutionManager.reconcile_symbol` reads each symbol's position
  and open orders, keeps a position protected by a stop-loss, closes one
  without (the same protective close) and cancels the bot's orphaned orders.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.audit import AuditEventType, AuditLogger, new_trace_id, trace
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
from bot.models import (
    Balance,
    MarginType,
    OrderRequest,
    OrderResult,
    OrderType,
    Position,
    Signal,
    SymbolFilters,
)

T = TypeVar("T")

OrderGate = Callable[[OrderRequest], OrderRefusedError | None]
"""Asked before every order is sent: ``None`` lets it go; an error refuses it (SPEC §11)."""

log = logging.getLogger("bot.execution")

ENTRY, TAKE_PROFIT, STOP_LOSS, PROTECTIVE_CLOSE = "e", "tp", "sl", "x"
_ROLES = (ENTRY, TAKE_PROFIT, STOP_LOSS, PROTECTIVE_CLOSE)
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_REMEMBERED_CANCELS = 10_000
SIBLING = {TAKE_PROFIT: STOP_LOSS, STOP_LOSS: TAKE_PROFIT}


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


def _trace_of(orders: list[OrderResult]) -> str | None:
    """The trace of the bot's own orders among ``orders``, its stop-loss's first."""
    parsed = [p for o in orders if (p := parse_client_order_id(o.client_order_id))]
    parsed.sort(key=lambda p: p[1] != STOP_LOSS)
    return parsed[0][0] if parsed else None


def _found(order: OrderResult) -> dict[str, Any]:
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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff for temporary errors."""

    max_attempts: int = 4
    backoff_base: float = 0.5  # seconds before the 2nd attempt; doubles each time
    backoff_max: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class TradeResult:
    """What happened to one signal's orders."""

    ok: bool
    entry: OrderResult | None = None
    take_profit: OrderResult | None = None
    stop_loss: OrderResult | None = None
    protective_close: OrderResult | None = None
    error_type: str = ""
    error_message: str = ""
    position_left_open: bool = False


class OrderFailed(Exception):
    """An order could not be placed; already audited. Internal to this module."""

    def __init__(self, error: ExchangeError) -> None:
        super().__init__(str(error))
        self.error = error


def _error_fields(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, VenueRejectedError):
        return {
            "error_type": type(exc).__name__,
            "error_code": exc.code,
            "error_message": exc.message,
        }
    fields: dict[str, Any] = {"error_type": type(exc).__name__, "error_message": str(exc)}
    if isinstance(exc, RateLimitError):
        fields["status"] = exc.status
    return fields


class OrderExecutionManager:
    """Places, queries and cancels orders through the exchange port, with retries and audit."""

    def __init__(
        self,
        exchange: Exchange,
        audit: AuditLogger,
        *,
        leverage: int,
        margin_type: MarginType = MarginType.ISOLATED,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        asset: str = "USDT",
        gate: OrderGate | None = None,
    ) -> None:
        self.exchange = exchange
        self._gate = gate
        self.leverage = leverage
        self.margin_type = margin_type
        self._audit = audit
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._asset = asset
        self._filters: dict[str, SymbolFilters] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()  # client ids we cancelled

    # -------------------------------------------------------------- startup

    def configure_symbol(self, symbol: str) -> SymbolFilters:
        """Read the symbol's filters, set margin type and leverage (audited). Raises on failure."""
        filters = self._read(
            "get_symbol_filters", symbol, lambda: self.exchange.symbol_filters(symbol)
        )
        self._filters[symbol] = filters
        self._read(
            "set_margin_type",
            symbol,
            lambda: self.exchange.set_margin_type(symbol, self.margin_type),
        )
        self._audit.log_event(
            AuditEventType.MARGIN_TYPE_SET,
            "set_margin_type",
            symbol=symbol,
            response={"margin_type": self.margin_type.value, "status": "success"},
        )
        applied = self._read(
            "set_leverage", symbol, lambda: self.exchange.set_leverage(symbol, self.leverage)
        )
        self._audit.log_event(
            AuditEventType.LEVERAGE_SET,
            "set_leverage",
            symbol=symbol,
            response={"leverage": applied, "status": "success"},
        )
        return filters

    def filters(self, symbol: str) -> SymbolFilters:
        """The symbol's filters, read once (at startup, or on first use)."""
        cached = self._filters.get(symbol)
        if cached is None:
            cached = self._read(
                "get_symbol_filters", symbol, lambda: self.exchange.symbol_filters(symbol)
            )
            self._filters[symbol] = cached
        return cached

    # -------------------------------------------------------------- queries

    def get_position(self, symbol: str) -> Position:
        position = self._read("get_position", symbol, lambda: self.exchange.position(symbol))
        self._audit_position(position, "get_position")
        return position

    def _audit_position(
        self, position: Position, operation: str, found: dict[str, Any] | None = None
    ) -> None:
        self._audit.log_event(
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

    def get_account_balance(self) -> Balance:
        balance = self._read(
            "get_account_balance", None, lambda: self.exchange.balance(self._asset)
        )
        self._audit.log_event(
            AuditEventType.BALANCE_QUERY,
            "get_account_balance",
            response={
                "asset": balance.asset,
                "wallet_balance": balance.wallet_balance,
                "available_balance": balance.available_balance,
            },
        )
        return balance

    def query_order(self, symbol: str, cid: str) -> OrderResult | None:
        """The order's state at the venue by client order id; ``None``: no such order."""
        return self._read("query_order", symbol, lambda: self.exchange.query_order(symbol, cid))

    def cancel_all_orders(self, symbol: str) -> int:
        """Cancel every open order of the symbol, regular and algo; audited as one event."""
        count = self._read(
            "cancel_all_orders", symbol, lambda: self.exchange.cancel_all_orders(symbol)
        )
        self._audit.log_event(
            AuditEventType.ORDER_CANCELLED,
            "cancel_all_orders",
            symbol=symbol,
            response={"cancelled_orders": count},
        )
        return count

    def cancel_order(self, symbol: str, cid: str, *, reason: str) -> OrderResult | None:
        """Cancel one order; audited when something was cancelled. ``None``: it was not open."""
        result = self._read("cancel_order", symbol, lambda: self.exchange.cancel_order(symbol, cid))
        if result is not None:
            self._cancelled[cid] = None
            while len(self._cancelled) > _REMEMBERED_CANCELS:
                self._cancelled.popitem(last=False)
            self._audit.log_event(
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
        """Whether this manager cancelled (and audited) the order, so the venue's
        later cancel event is not audited a second time."""
        return cid in self._cancelled

    # ------------------------------------------------------------- restarts

    def reconcile_symbol(self, symbol: str) -> list[OrderResult]:
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
        position = self._read("get_position", symbol, lambda: self.exchange.position(symbol))
        orders = self.open_orders(symbol)
        ours = [o for o in orders if parse_client_order_id(o.client_order_id) is not None]
        protected = position.is_protected_by(orders)
        if position.is_open:
            action = "adopt" if protected else "close_unprotected_position"
        else:
            action = "cancel_orphans" if ours else "none"
        summary = {
            "open_orders": [_found(o) for o in orders],
            "protected": protected if position.is_open else None,
            "action": action,
        }
        if action == "none":
            self._audit_position(position, "reconcile_startup", summary)
            return []
        with trace(_trace_of(ours) or new_trace_id()) as trace_id:
            self._audit_position(position, "reconcile_startup", summary)
            if action == "adopt":
                return ours
            if action == "close_unprotected_position":
                try:
                    self._close_at_market(position, trace_id, "close_unprotected_position")
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
                self.cancel_order(symbol, order.client_order_id, reason=reason)
            return []

    # --------------------------------------------------------------- trades

    def execute(self, signal: Signal, quantity: float, trace_id: str) -> TradeResult:
        """Entry at market, then take-profit and stop-loss; unwind on any failure."""
        filters = self.filters(signal.symbol)
        side = signal.signal_type.entry_side
        exit_side = signal.signal_type.exit_side
        entry_req = OrderRequest(
            signal.symbol,
            side,
            OrderType.MARKET,
            client_order_id(trace_id, ENTRY),
            quantity=filters.floor_quantity(quantity),
        )
        try:
            entry = self._place("place_entry_order", entry_req)
        except OrderFailed as failed:
            if isinstance(failed.error, (VenueRejectedError, OrderRefusedError)):
                return self._failed(failed.error)  # definitively not placed: nothing to unwind
            return self._unwind(signal, trace_id, failed.error, placed=[])

        placed: list[OrderResult] = []
        legs = (
            ("place_tp_order", OrderType.TAKE_PROFIT_MARKET, signal.take_profit, TAKE_PROFIT),
            ("place_sl_order", OrderType.STOP_MARKET, signal.stop_loss, STOP_LOSS),
        )
        for operation, order_type, price, role in legs:
            request = OrderRequest(
                signal.symbol,
                exit_side,
                order_type,
                client_order_id(trace_id, role),
                stop_price=filters.round_price(price),
                close_position=True,
            )
            try:
                placed.append(self._place(operation, request))
            except OrderFailed as failed:
                return self._unwind(signal, trace_id, failed.error, placed=placed, entry=entry)
        return TradeResult(ok=True, entry=entry, take_profit=placed[0], stop_loss=placed[1])

    # ------------------------------------------------------------ internals

    def _failed(
        self, error: ExchangeError, message: str | None = None, **fields: Any
    ) -> TradeResult:
        return TradeResult(
            ok=False,
            error_type=type(error).__name__,
            error_message=message or str(error),
            **fields,
        )

    def _unwind(
        self,
        signal: Signal,
        trace_id: str,
        error: ExchangeError,
        *,
        placed: list[OrderResult],
        entry: OrderResult | None = None,
    ) -> TradeResult:
        """Cancel this trade's conditional orders and close its position at market."""
        for order in placed:
            # A failed cancel is audited as api_error; a stale closePosition order
            # cannot open a position, so closing the position still comes first.
            with contextlib.suppress(ExchangeError):
                self.cancel_order(signal.symbol, order.client_order_id, reason="trade_unwound")
        try:
            position = self.get_position(signal.symbol)
        except ExchangeError:
            return self._failed(
                error,
                f"{error}; position unknown after failure, check it by hand",
                entry=entry,
                position_left_open=True,
            )
        if not position.is_open:
            return self._failed(error, entry=entry)
        try:
            closed = self._close_at_market(position, trace_id, "close_position")
        except OrderFailed as failed:
            return self._failed(
                error,
                (
                    f"{error}; protective close failed ({failed.error}): "
                    "position left OPEN without stop-loss"
                ),
                entry=entry,
                position_left_open=True,
            )
        return self._failed(
            error,
            f"{error}; position closed at market (protective close)",
            entry=entry,
            protective_close=closed,
        )

    def close_position(self, position: Position, trace_id: str, operation: str) -> OrderResult:
        """Close the whole open position reduce-only at market (``<trace>-x``), e.g. to flatten.

        Raises the ExchangeError that stopped it (already audited).
        """
        try:
            return self._close_at_market(position, trace_id, operation)
        except OrderFailed as failed:
            raise failed.error from None

    def open_orders(self, symbol: str) -> list[OrderResult]:
        """Every open order of the symbol at the venue, regular and algo (not audited: a read)."""
        return self._read("get_open_orders", symbol, lambda: self.exchange.open_orders(symbol))

    def _close_at_market(self, position: Position, trace_id: str, operation: str) -> OrderResult:
        """The protective close: the whole position, reduce-only MARKET ``<trace>-x``."""
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
        return self._place(operation, request)

    def _read(self, operation: str, symbol: str | None, call: Callable[[], T]) -> T:
        """Run an idempotent call with retries; audit and re-raise the final failure."""
        attempt = 1
        while True:
            try:
                return call()
            except TemporaryExchangeError as exc:
                if attempt >= self._retry.max_attempts:
                    self._audit.log_api_error(
                        operation,
                        {**_error_fields(exc), "attempts": attempt},
                        symbol=symbol,
                    )
                    raise
                self._before_retry(operation, symbol, exc, attempt)
                attempt += 1
            except ExchangeError as exc:
                self._audit.log_api_error(
                    operation, {**_error_fields(exc), "attempts": attempt}, symbol=symbol
                )
                raise

    def _place(self, operation: str, request: OrderRequest) -> OrderResult:
        """Send one order until placed, rejected, or out of attempts; never duplicate it."""
        refused = self._gate(request) if self._gate is not None else None
        if refused is not None:  # denied by our own controls: a risk decision, not the venue's
            self._audit.log_risk_rejection(
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
                self._audit.log_order_rejected(
                    request.symbol,
                    request.as_audit(),
                    {**_error_fields(exc), "attempts": attempt},
                    operation=operation,
                )
                raise OrderFailed(exc) from exc
            except (UnknownOutcomeError, TemporaryExchangeError) as exc:
                definitely_not_sent = isinstance(exc, (RateLimitError, ClockSkewError))
                result = None if definitely_not_sent else self._resolve(operation, request, exc)
                if result is None:
                    if attempt >= self._retry.max_attempts:
                        self._audit.log_api_error(
                            operation,
                            {**_error_fields(exc), "attempts": attempt},
                            symbol=request.symbol,
                            order_data=request.as_audit(),
                        )
                        raise OrderFailed(exc) from exc
                    self._before_retry(operation, request.symbol, exc, attempt)
                    attempt += 1
                    continue
            assert result is not None
            self._audit.log_order_placed(
                request.symbol,
                request.as_audit(),
                {**result.as_audit(), "attempts": attempt},
                operation=operation,
            )
            return result

    def _send(self, request: OrderRequest) -> OrderResult:
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

    def _resolve(
        self, operation: str, request: OrderRequest, cause: ExchangeError
    ) -> OrderResult | None:
        """Did the order arrive? Query it by client order id (retrying the query).

        Returns the live order, or ``None`` when the venue has no live order by
        that id and it is safe to send it again (with the same id).
        Raises :class:`OrderFailed` when even the query fails: the outcome
        stays unknown and the order must not be sent again.
        """
        self._audit.log_api_error(
            operation,
            {**_error_fields(cause), "resolution": "query_order_by_client_id"},
            symbol=request.symbol,
            order_data=request.as_audit(),
        )
        try:
            found = self.query_order(request.symbol, request.client_order_id)
        except ExchangeError as exc:
            raise OrderFailed(
                UnknownOutcomeError(
                    f"{cause}; order status still unknown after query failed ({exc})",
                    client_order_id=request.client_order_id,
                )
            ) from exc
        if found is not None and found.status.is_live:
            return found
        return None

    def _before_retry(
        self, operation: str, symbol: str | None, exc: ExchangeError, attempt: int
    ) -> None:
        """Audit the coming retry, do what the error kind asks, wait."""
        delay = self._retry.delay(attempt)
        extra: dict[str, Any] = {}
        if isinstance(exc, RateLimitError):
            if exc.retry_after is not None:
                delay = exc.retry_after
            self._audit.log_event(
                AuditEventType.RATE_LIMIT,
                operation,
                symbol=symbol,
                error={**_error_fields(exc), "retry_after": exc.retry_after},
            )
        elif isinstance(exc, ClockSkewError):
            delay = 0.0
            try:
                extra["clock_offset_ms"] = self.exchange.sync_clock()
            except ExchangeError as sync_exc:
                self._audit.log_api_error("sync_clock", _error_fields(sync_exc), symbol=symbol)
        self._audit.log_event(
            AuditEventType.RETRY_ATTEMPT,
            operation,
            symbol=symbol,
            error=_error_fields(exc),
            additional_data={
                "attempt": attempt + 1,
                "max_attempts": self._retry.max_attempts,
                "delay_seconds": delay,
                **extra,
            },
        )
        if delay > 0:
            self._sleep(delay)
