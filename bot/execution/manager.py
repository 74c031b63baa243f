"""OrderExecutionManager: the one object the bot's other parts use to trade and ask the venue.

A trade is "executed" only when entry, take-profit and stop-loss all stand.
Otherwise it is unwound: an open position is closed at market (reduce-only,
the protective close) and the conditional orders already placed are
cancelled, so no position stays without a stop-loss. Every call goes through
:class:`bot.execution.calls.VenueCalls` (retries, audit, no duplicates); the
startup steps, the protective close and the per-symbol book live in their
own modules, and this class puts them behind one stable interface.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.audit import AuditEventType, AuditLogger
from bot.errors import ExchangeError, OrderRefusedError, VenueRejectedError
from bot.exchange.base import Exchange
from bot.execution import startup
from bot.execution.calls import OrderGate, VenueCalls
from bot.execution.client_ids import (
    ENTRY,
    REPLACED_STOP,
    STOP_LOSS,
    TAKE_PROFIT,
    client_order_id,
)
from bot.execution.closing import close_at_market
from bot.execution.retry import OrderFailed, RetryPolicy
from bot.execution.stops import StopPlan, SymbolBook
from bot.models import (
    AccountModes,
    Balance,
    MarginType,
    OrderRequest,
    OrderResult,
    OrderSide,
    OrderType,
    Position,
    Signal,
    SymbolFilters,
)


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
        self.leverage = leverage
        self.margin_type = margin_type
        self._audit = audit
        self._asset = asset
        self._calls = VenueCalls(exchange, audit, retry or RetryPolicy(), sleep, gate)
        self._book = SymbolBook()

    # ------------------------------------------------- protection bookkeeping

    def symbol_lock(self, symbol: str) -> threading.Lock:
        """Held while a trade or a repair acts on ``symbol``: one actor per symbol."""
        return self._book.lock(symbol)

    def stop_plan(self, symbol: str) -> StopPlan | None:
        """The stop-loss the symbol's position should have, if a trade of this run set one."""
        return self._book.stop_plan(symbol)

    def set_stop_plan(self, symbol: str, plan: StopPlan | None) -> None:
        self._book.set_stop_plan(symbol, plan)

    # -------------------------------------------------------------- startup

    def check_account_modes(self) -> AccountModes:
        """Refuse (ConfigError, before any order) an account this bot cannot trade correctly."""
        return startup.check_account_modes(self._calls, self.margin_type)

    def configure_symbol(self, symbol: str) -> SymbolFilters:
        """Read the symbol's filters, set margin type and leverage (audited). Raises on failure."""
        return startup.configure_symbol(self._calls, symbol, self.margin_type, self.leverage)

    def reconcile_symbol(self, symbol: str) -> list[OrderResult]:
        """At startup: take over what a previous run left at the venue for ``symbol``
        (:func:`bot.execution.startup.reconcile_symbol`)."""
        return startup.reconcile_symbol(self._calls, self._book, symbol)

    def filters(self, symbol: str) -> SymbolFilters:
        """The symbol's filters, read once (at startup, or on first use)."""
        return self._calls.filters(symbol)

    # -------------------------------------------------------------- queries

    def get_position(self, symbol: str) -> Position:
        position = self._calls.read_position(symbol)
        self._calls.audit_position(position, "get_position")
        return position

    def read_position(self, symbol: str) -> Position:
        """The position, retried like every read; not recorded (the supervisor polls it)."""
        return self._calls.read_position(symbol)

    def audit_position(
        self, position: Position, operation: str, found: dict[str, Any] | None = None
    ) -> None:
        """The position as a ``position_query`` record; ``found``: what a check saw and did."""
        self._calls.audit_position(position, operation, found)

    def get_account_balance(self) -> Balance:
        balance = self._calls.read(
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
        return self._calls.read(
            "query_order", symbol, lambda: self.exchange.query_order(symbol, cid)
        )

    def open_orders(self, symbol: str) -> list[OrderResult]:
        """Every open order of the symbol at the venue, regular and algo (not audited: a read)."""
        return self._calls.open_orders(symbol)

    def cancel_all_orders(self, symbol: str) -> int:
        """Cancel every open order of the symbol, regular and algo; audited as one event."""
        count = self._calls.read(
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
        return self._calls.cancel_order(symbol, cid, reason=reason)

    def cancelled_here(self, cid: str) -> bool:
        """Whether execution cancelled (and audited) the order, so the venue's
        later cancel event is not audited a second time."""
        return self._calls.cancelled_here(cid)

    # --------------------------------------------------------------- trades

    def execute(self, signal: Signal, quantity: float, trace_id: str) -> TradeResult:
        """Entry at market, then take-profit and stop-loss; unwind on any failure.

        Holds the symbol's lock throughout, so the protection supervisor never
        takes a trade in progress for a gap.
        """
        with self.symbol_lock(signal.symbol):
            result = self._execute(signal, quantity, trace_id)
            if result.ok and result.stop_loss is not None:
                self.set_stop_plan(signal.symbol, StopPlan(trace_id, result.stop_loss.stop_price))
            return result

    def _execute(self, signal: Signal, quantity: float, trace_id: str) -> TradeResult:
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
            before = self.read_position(signal.symbol)
            entry = self._calls.place("place_entry_order", entry_req, before=before)
        except OrderFailed as failed:
            if isinstance(failed.error, (VenueRejectedError, OrderRefusedError)):
                return _failed(failed.error)  # definitively not placed: nothing to unwind
            return self._unwind(signal, trace_id, failed.error, placed=[])
        except ExchangeError as exc:  # the position before could not be read: nothing sent
            return _failed(exc)

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
                placed.append(self._calls.place(operation, request))
            except OrderFailed as failed:
                return self._unwind(signal, trace_id, failed.error, placed=placed, entry=entry)
        return TradeResult(ok=True, entry=entry, take_profit=placed[0], stop_loss=placed[1])

    def place_stop_loss(
        self, symbol: str, side: OrderSide, stop_price: float, trace_id: str, operation: str
    ) -> OrderResult:
        """A closePosition STOP_MARKET ``<trace>-rs`` placed again (the supervisor's repair).

        Raises the ExchangeError that stopped it (already audited).
        """
        request = OrderRequest(
            symbol,
            side,
            OrderType.STOP_MARKET,
            client_order_id(trace_id, REPLACED_STOP),
            stop_price=self.filters(symbol).round_price(stop_price),
            close_position=True,
        )
        try:
            return self._calls.place(operation, request)
        except OrderFailed as failed:
            raise failed.error from None

    def close_position(
        self, position: Position, trace_id: str, operation: str
    ) -> OrderResult | None:
        """Close the whole open position reduce-only at market (``<trace>-x``), e.g. to flatten.

        ``None`` when the position turned out flat already. Raises the
        ExchangeError that stopped it (already audited, an alert-level record
        when the position stays open).
        """
        try:
            return close_at_market(self._calls, position, trace_id, operation)
        except OrderFailed as failed:
            raise failed.error from None

    def _unwind(
        self,
        signal: Signal,
        trace_id: str,
        error: ExchangeError,
        *,
        placed: list[OrderResult],
        entry: OrderResult | None = None,
    ) -> TradeResult:
        """Close this trade's position at market, then cancel its conditional orders.

        The close comes first: every second counts while the position has no
        stop-loss, and a stale closePosition order cannot open a position.
        """
        try:
            position: Position | None = self.get_position(signal.symbol)
        except ExchangeError:
            position = None
        closed: OrderResult | None = None
        close_failure: ExchangeError | None = None
        if position is not None and position.is_open:
            try:
                closed = close_at_market(self._calls, position, trace_id, "close_position")
            except OrderFailed as failed:
                close_failure = failed.error
        for order in placed:  # a failed cancel is audited; the supervisor removes orphans
            with contextlib.suppress(ExchangeError):
                self.cancel_order(signal.symbol, order.client_order_id, reason="trade_unwound")
        if position is None:
            return _failed(
                error,
                f"{error}; position unknown after failure, check it by hand",
                entry=entry,
                position_left_open=True,
            )
        if close_failure is not None:
            return _failed(
                error,
                (
                    f"{error}; protective close failed ({close_failure}): "
                    "position left OPEN without stop-loss"
                ),
                entry=entry,
                position_left_open=True,
            )
        if not position.is_open:
            return _failed(error, entry=entry)
        return _failed(
            error,
            f"{error}; position closed at market (protective close)",
            entry=entry,
            protective_close=closed,
        )


def _failed(error: ExchangeError, message: str | None = None, **fields: Any) -> TradeResult:
    return TradeResult(
        ok=False,
        error_type=type(error).__name__,
        error_message=message or str(error),
        **fields,
    )
