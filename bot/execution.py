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
  It runs before margin type and leverage are set, so an inherited position
  (-4048 / -4161) cannot stop the bot before it is made safe.
* An unknown outcome is resolved from the venue's records over a bounded
  window (``RetryPolicy.resolve_window``: queries by client id with backoff,
  and the position compared with the one before the order): an entry is
  never sent again once the position moved its way. Orders that only close
  or protect (reduce-only, closePosition) use a short window: the venue
  refuses a duplicate of them (-2022, -4116, -4130), and such a refusal is
  checked against the open orders.
* The protective close is retried with backoff on temporary errors and on
  rejections that pass (-4131 PERCENT_PRICE, -2022 ...), re-reading the
  position each time; a position still open after the bound is recorded as
  an ``api_error`` with ``severity: critical``.
* Each trade's stop (trace id and stop price) is remembered per symbol
  (:meth:`OrderExecutionManager.stop_plan`) and every trade on a symbol holds
  its lock (:meth:`OrderExecutionManager.symbol_lock`), for the protection
  supervisor (:mod:`bot.supervisor`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.audit import AuditEventType, AuditLogger, new_trace_id, trace
from bot.errors import (
    ClockSkewError,
    ConfigError,
    ExchangeError,
    OrderRefusedError,
    RateLimitError,
    TemporaryExchangeError,
    UnknownOutcomeError,
    VenueRejectedError,
)
from bot.exchange.base import Exchange
from bot.models import (
    AccountModes,
    Balance,
    MarginType,
    OrderRequest,
    OrderResult,
    OrderSide,
    OrderStatus,
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
REPLACED_STOP = "rs"  # a stop-loss placed again by the protection supervisor
CLOSE_INSIDE_BAND = "xl"  # the protective close's reduce-only LIMIT IOC fallback
_ROLES = (ENTRY, TAKE_PROFIT, STOP_LOSS, PROTECTIVE_CLOSE, REPLACED_STOP, CLOSE_INSIDE_BAND)
STOP_ROLES = frozenset({STOP_LOSS, REPLACED_STOP})
# Rejections of a reduce-only close that may pass: PERCENT_PRICE band (thin book),
# "ReduceOnly Order is rejected" (the position changed meanwhile), "Unable to fill".
PERCENT_PRICE = -4131
CLOSE_RETRY_CODES = frozenset({PERCENT_PRICE, -2022, -2020})
# A margin type / leverage change refused because a position is open: kept as it is.
KEPT_WITH_POSITION_CODES = frozenset({-4048, -4161})
DUPLICATE_CODES = frozenset({-4116, -4130})  # client id taken / closePosition order exists
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_REMEMBERED_CANCELS = 10_000
SIBLING = {TAKE_PROFIT: STOP_LOSS, STOP_LOSS: TAKE_PROFIT, REPLACED_STOP: TAKE_PROFIT}


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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff for temporary errors."""

    max_attempts: int = 4
    backoff_base: float = 0.5  # seconds before the 2nd attempt; doubles each time
    backoff_max: float = 8.0
    resolve_window: float = 30.0  # seconds to resolve an entry's unknown outcome
    # The same for closing/protective orders: short, since the venue refuses their
    # duplicates (-2022, -4116, -4130) and each second here is a second without a stop.
    resolve_window_protective: float = 0.5
    close_attempts: int = 6  # protective close attempts before the alert record

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class StopPlan:
    """The stop-loss a symbol's position should have: its trade and price."""

    trace_id: str
    stop_price: float | None
    replaced: bool = False  # the supervisor already placed it again once


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
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._stop_plans: dict[str, StopPlan] = {}

    # ------------------------------------------------- protection bookkeeping

    def symbol_lock(self, symbol: str) -> threading.Lock:
        """Held while a trade or a repair acts on ``symbol``: one actor per symbol."""
        with self._locks_guard:
            return self._locks.setdefault(symbol, threading.Lock())

    def stop_plan(self, symbol: str) -> StopPlan | None:
        """The stop-loss the symbol's position should have, if a trade of this run set one."""
        return self._stop_plans.get(symbol)

    def set_stop_plan(self, symbol: str, plan: StopPlan | None) -> None:
        if plan is None:
            self._stop_plans.pop(symbol, None)
        else:
            self._stop_plans[symbol] = plan

    def check_account_modes(self) -> AccountModes:
        """Refuse (ConfigError, before any order) an account this bot cannot trade correctly.

        Hedge mode is refused: every order would need a positionSide, and
        reduce-only is refused there. Multi-Assets mode is traded with CROSSED
        margin, the only one it allows; with ISOLATED configured it is refused.
        """
        modes = self._read("get_account_modes", None, self.exchange.account_modes)
        if modes.hedge_mode:
            raise ConfigError(
                "the account is in hedge mode (Binance setting dualSidePosition=true, "
                "'Position Mode: Hedge'); this bot trades one-way mode only: switch the "
                "account's position mode to One-way and start again (no order was sent)"
            )
        if modes.multi_assets and self.margin_type is MarginType.ISOLATED:
            raise ConfigError(
                "the account is in Multi-Assets mode (Binance setting multiAssetsMargin=true), "
                "which allows CROSSED margin only, but risk.margin_type is ISOLATED: set "
                'risk.margin_type = "CROSSED" or switch Multi-Assets mode off (no order was sent)'
            )
        return modes

    # -------------------------------------------------------------- startup

    def configure_symbol(self, symbol: str) -> SymbolFilters:
        """Read the symbol's filters, set margin type and leverage (audited). Raises on failure."""
        filters = self.filters(symbol)
        try:
            self._read(
                "set_margin_type",
                symbol,
                lambda: self.exchange.set_margin_type(symbol, self.margin_type),
            )
            margin = {"margin_type": self.margin_type.value, "status": "success"}
        except VenueRejectedError as exc:
            margin = self._kept_with_position(symbol, exc, {"margin_type": self.margin_type.value})
        self._audit.log_event(
            AuditEventType.MARGIN_TYPE_SET, "set_margin_type", symbol=symbol, response=margin
        )
        try:
            applied = self._read(
                "set_leverage", symbol, lambda: self.exchange.set_leverage(symbol, self.leverage)
            )
            leverage = {"leverage": applied, "status": "success"}
        except VenueRejectedError as exc:
            leverage = self._kept_with_position(symbol, exc, {"leverage": self.leverage})
        self._audit.log_event(
            AuditEventType.LEVERAGE_SET, "set_leverage", symbol=symbol, response=leverage
        )
        return filters

    def _kept_with_position(
        self, symbol: str, exc: VenueRejectedError, wanted: dict[str, Any]
    ) -> dict[str, Any]:
        """A setting the venue will not change under an open position: kept, not fatal."""
        if exc.code not in KEPT_WITH_POSITION_CODES:
            raise exc
        position = self.read_position(symbol)
        if not position.is_open:
            raise exc
        return {
            **wanted,
            "status": "kept_with_open_position",
            "position_amount": position.amount,
            "error_code": exc.code,
            "error_message": exc.message,
        }

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
        position = self.read_position(symbol)
        self.audit_position(position, "get_position")
        return position

    def read_position(self, symbol: str) -> Position:
        """The position, retried like every read; not recorded (the supervisor polls it)."""
        return self._read("get_position", symbol, lambda: self.exchange.position(symbol))

    def audit_position(
        self, position: Position, operation: str, found: dict[str, Any] | None = None
    ) -> None:
        """The position as a ``position_query`` record; ``found``: what a check saw and did."""
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
            "open_orders": [describe_order(o) for o in orders],
            "protected": protected if position.is_open else None,
            "action": action,
        }
        if action == "none":
            self.audit_position(position, "reconcile_startup", summary)
            return []
        with trace(trace_of_orders(ours) or new_trace_id()) as trace_id:
            self.audit_position(position, "reconcile_startup", summary)
            if action == "adopt":
                stop = next(
                    (o for o in ours if o.client_order_id.rpartition("-")[2] in STOP_ROLES), None
                )
                self.set_stop_plan(symbol, StopPlan(trace_id, stop.stop_price if stop else None))
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
            entry = self._place("place_entry_order", entry_req, before=before)
        except OrderFailed as failed:
            if isinstance(failed.error, (VenueRejectedError, OrderRefusedError)):
                return self._failed(failed.error)  # definitively not placed: nothing to unwind
            return self._unwind(signal, trace_id, failed.error, placed=[])
        except ExchangeError as exc:  # the position before could not be read: nothing sent
            return self._failed(exc)

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
            return self._place(operation, request)
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
            return self._close_at_market(position, trace_id, operation)
        except OrderFailed as failed:
            raise failed.error from None

    def open_orders(self, symbol: str) -> list[OrderResult]:
        """Every open order of the symbol at the venue, regular and algo (not audited: a read)."""
        return self._read("get_open_orders", symbol, lambda: self.exchange.open_orders(symbol))

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
                closed = self._close_at_market(position, trace_id, "close_position")
            except OrderFailed as failed:
                close_failure = failed.error
        for order in placed:  # a failed cancel is audited; the supervisor removes orphans
            with contextlib.suppress(ExchangeError):
                self.cancel_order(signal.symbol, order.client_order_id, reason="trade_unwound")
        if position is None:
            return self._failed(
                error,
                f"{error}; position unknown after failure, check it by hand",
                entry=entry,
                position_left_open=True,
            )
        if close_failure is not None:
            return self._failed(
                error,
                (
                    f"{error}; protective close failed ({close_failure}): "
                    "position left OPEN without stop-loss"
                ),
                entry=entry,
                position_left_open=True,
            )
        if not position.is_open:
            return self._failed(error, entry=entry)
        return self._failed(
            error,
            f"{error}; position closed at market (protective close)",
            entry=entry,
            protective_close=closed,
        )

    def _close_at_market(
        self, position: Position, trace_id: str, operation: str
    ) -> OrderResult | None:
        """The protective close: the whole position, reduce-only MARKET ``<trace>-x``.

        Retried with backoff on temporary errors and on rejections that pass
        (:data:`CLOSE_RETRY_CODES`), re-reading the position before each retry;
        ``None`` when it is flat by then. Out of attempts, an ``api_error`` with
        ``severity: critical`` says the position is open without a stop-loss.
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
                return self._place(operation, request, before=position)
            except OrderFailed as failed:
                error = failed.error
                passes = isinstance(error, TemporaryExchangeError | UnknownOutcomeError) or (
                    isinstance(error, VenueRejectedError) and error.code in CLOSE_RETRY_CODES
                )
                if isinstance(error, VenueRejectedError) and error.code == PERCENT_PRICE:
                    closed = self._close_inside_band(position, trace_id, operation)
                    if closed is not None:
                        return closed
                if not passes or attempt >= self._retry.close_attempts:
                    self._audit.log_api_error(
                        operation,
                        {
                            **_error_fields(error),
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
                self._before_retry(operation, position.symbol, error, attempt)
                attempt += 1
            with contextlib.suppress(ExchangeError):  # a failed read keeps the last one known
                position = self.read_position(position.symbol)
            if not position.is_open:
                return None

    def _close_inside_band(
        self, position: Position, trace_id: str, operation: str
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
            price=self.filters(position.symbol).limit_inside_band(mark, side.exit_side),
        )
        try:
            result = self._place(f"{operation}_limit_ioc", request, before=position)
            after = self.read_position(position.symbol)
        except (OrderFailed, ExchangeError):  # audited; the market close is tried again
            return None
        return None if after.is_open else result

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

    def _place(
        self, operation: str, request: OrderRequest, *, before: Position | None = None
    ) -> OrderResult:
        """Send one order until placed, rejected, or out of attempts; never duplicate it.

        ``before``: the position before the order, for resolving an unknown
        outcome of a MARKET order from the position (see :meth:`_resolve`).
        """
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
                result = self._already_there(request, exc)
                if result is None and self._cleared_blocking(request, exc, attempt):
                    attempt += 1
                    continue
                if result is None:
                    self._audit.log_order_rejected(
                        request.symbol,
                        request.as_audit(),
                        {**_error_fields(exc), "attempts": attempt},
                        operation=operation,
                    )
                    raise OrderFailed(exc) from exc
            except (UnknownOutcomeError, TemporaryExchangeError) as exc:
                # A temporary error on a POST (429, -1021, -1001, -1008, 503 "Service
                # Unavailable.", not sent) says the venue did not process it: send again.
                not_processed = isinstance(exc, TemporaryExchangeError)
                result = None if not_processed else self._resolve(operation, request, exc, before)
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
            self._audit.log_order_placed(
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
        if exc.code != -4130 or attempt >= self._retry.max_attempts:
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

    def _resolve(
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
            {**_error_fields(cause), "resolution": "query_venue_records"},
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
            found = self.exchange.query_order(request.symbol, request.client_order_id)
            failed: ExchangeError | None = None
        except ExchangeError as exc:
            found, failed = None, exc
        if found is not None:
            return found
        if before is not None and request.quantity is not None:
            after = self.exchange.position(request.symbol)
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
