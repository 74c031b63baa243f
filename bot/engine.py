"""TradingEngine: closed candle → strategy → risk → sizing → execution, one trace per signal.

The flow of one signal, as SPEC §6 fixes it (queries and recovered errors
left out)::

    signal_processing → risk_rejection                                  (rejected)
    signal_processing → risk_validation → [position_size_capped] →
        position_size_calculated → order_placed ×3 → trade_executed      (normal / capped)
    signal_processing → risk_validation → position_size_calculated →
        order_placed / order_rejected ... → trade_execution_failed       (failed)

Every event of a flow carries the signal's trace id (``with trace(tid):``),
and so do the fills and cancels the exchange reports later: the trace id is
recovered from the client order id. Candles without a signal write nothing;
:meth:`TradingEngine.heartbeat` shows the bot is alive instead.

The engine follows the take-profit and stop-loss orders it left open (of its
trades, and those it adopted at startup, :meth:`TradingEngine.reconcile_at_startup`).
A venue's order stream loses what happens while it is down, so after every
(re)connect :meth:`TradingEngine.recover_missed_updates` queries them and
reports the fills and cancels the stream missed. Every fill or cancel is
audited once, whichever way it arrives (de-duplicated by client order id).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from bot.audit import AuditEventType, AuditLogger, new_trace_id, trace
from bot.clock import SYSTEM, Clock
from bot.errors import ExchangeError
from bot.execution import SIBLING, OrderExecutionManager, TradeResult, parse_client_order_id
from bot.models import Balance, Candle, OrderStatus, OrderUpdate, Position, Signal
from bot.risk import RiskManager
from bot.strategy import Strategy

log = logging.getLogger("bot.engine")

_REMEMBERED_ORDERS = 10_000


@dataclass
class EngineStats:
    candles: int = 0
    signals: int = 0
    risk_rejections: int = 0
    trades_executed: int = 0
    trades_failed: int = 0
    fills: int = 0


class TradingEngine:
    """Turns candles into audited trades. Thread-safe: feed and user-data threads may call in."""

    def __init__(
        self,
        *,
        strategy: Strategy,
        risk: RiskManager,
        execution: OrderExecutionManager,
        audit: AuditLogger,
        clock: Clock = SYSTEM,
    ) -> None:
        self._strategy = strategy
        self._clock = clock
        self._risk = risk
        self._execution = execution
        self._audit = audit
        self._history: dict[tuple[str, str], deque[Candle]] = {}
        self._lock = threading.RLock()
        self._finished: OrderedDict[str, None] = OrderedDict()  # client ids already reported
        self._open: dict[str, str] = {}  # client id -> symbol of the TP/SL followed
        self._last_price: dict[str, float] = {}  # symbol -> last close, for the price collar
        self._started = clock.monotonic()
        self.last_candle_close_time = 0
        self.stats = EngineStats()

    # ----------------------------------------------------------------- input

    def seed_history(self, candles: Iterable[Candle]) -> None:
        """Backfill: remember closed candles without evaluating them."""
        with self._lock:
            for candle in candles:
                if candle.closed:
                    self._candles_of(candle).append(candle)

    def on_candle(self, candle: Candle) -> None:
        """A candle update; only closed candles are evaluated."""
        if not candle.closed:
            return
        with self._lock:
            history = self._candles_of(candle)
            history.append(candle)
            self.stats.candles += 1
            self.last_candle_close_time = candle.close_time
            self._last_price[candle.symbol] = candle.close
            signal = self._strategy.evaluate(tuple(history))
            if signal is None:
                return
            with trace(new_trace_id()) as trace_id:
                self._process(signal, trace_id)

    def on_order_update(self, update: OrderUpdate) -> None:
        """A fill/cancel reported by the exchange: audit it under its trade's trace id."""
        self._report(update, "on_order_update")

    def reconcile_at_startup(self, symbols: Iterable[str]) -> None:
        """Take over what a previous run left at the venue, symbol by symbol.

        See :meth:`OrderExecutionManager.reconcile_symbol`: a protected position
        is kept and its take-profit/stop-loss followed from now on, one without
        a stop-loss is closed, orphaned orders are cancelled. Raises
        :class:`ExchangeError` when a symbol cannot be made safe.
        """
        for symbol in symbols:
            adopted = self._execution.reconcile_symbol(symbol)
            with self._lock:
                for order in adopted:
                    self._open[order.client_order_id] = symbol

    def recover_missed_updates(self) -> None:
        """After the order stream (re)connected: report what it missed while it was down.

        Queries every take-profit/stop-loss still followed; one that filled,
        was cancelled or expired meanwhile is reported as the stream would have
        (operation ``recover_missed_updates``; an order query carries no
        realised PnL or fee). A failed query is audited and skipped: the
        stream or the next reconnect tells. Never raises.
        """
        with self._lock:
            followed = list(self._open.items())
        for cid, symbol in followed:
            try:
                order = self._execution.query_order(symbol, cid)
            except ExchangeError:
                continue
            if order is None:  # the venue no longer knows it: nothing left to follow
                log.warning("%s: order %s unknown at the venue; no longer followed", symbol, cid)
                with self._lock:
                    self._open.pop(cid, None)
            elif order.status.is_final:
                self._report(OrderUpdate.of_result(order), "recover_missed_updates")

    def _report(self, update: OrderUpdate, operation: str) -> None:
        parsed = parse_client_order_id(update.client_order_id)
        if parsed is None:
            return  # not one of ours (placed by hand): not part of any trace
        trace_id, role = parsed
        with self._lock, trace(trace_id):
            if update.status.is_final:
                self._open.pop(update.client_order_id, None)
            if update.client_order_id in self._finished:
                return
            if update.status is OrderStatus.FILLED:
                self._remember(update.client_order_id)
                self.stats.fills += 1
                if self._risk.guard is not None:  # protections count PnL from our own fills
                    self._risk.guard.on_fill(
                        update.symbol, role, update.realized_pnl, update.commission
                    )
                self._audit.log_event(
                    AuditEventType.ORDER_FILLED,
                    operation,
                    symbol=update.symbol,
                    response=update.as_audit(),
                    additional_data={"role": role},
                )
                sibling = SIBLING.get(role)
                if sibling is not None:
                    self._cancel_sibling(update.symbol, f"{trace_id}-{sibling}", role)
            elif update.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
                self._remember(update.client_order_id)
                if self._execution.cancelled_here(update.client_order_id):
                    return  # our own cancel, already audited when we sent it
                self._audit.log_event(
                    AuditEventType.ORDER_CANCELLED,
                    operation,
                    symbol=update.symbol,
                    response=update.as_audit(),
                    additional_data={"role": role},
                )

    def heartbeat(self) -> None:
        """Proof of life, so a silent bot is visible on the dashboard."""
        if self._risk.guard is not None:
            self._risk.guard.control.expire()  # a protection's end is recorded without a signal
        s = self.stats
        self._audit.log_event(
            AuditEventType.HEARTBEAT,
            "heartbeat",
            additional_data={
                "uptime_seconds": round(self._clock.monotonic() - self._started, 3),
                "candles_processed": s.candles,
                "signals": s.signals,
                "risk_rejections": s.risk_rejections,
                "trades_executed": s.trades_executed,
                "trades_failed": s.trades_failed,
                "fills": s.fills,
                "last_candle_close_time": self.last_candle_close_time,
            },
        )

    # ------------------------------------------------------------- the flow

    def _process(self, signal: Signal, trace_id: str) -> None:
        self.stats.signals += 1
        self._audit.log_event(
            AuditEventType.SIGNAL_PROCESSING,
            "on_candle_closed",
            symbol=signal.symbol,
            additional_data={
                "signal_generated": True,
                "signal_type": signal.signal_type.value,
                "interval": signal.interval,
                "close_price": signal.close_price,
                "entry_price": signal.entry,
                "take_profit": signal.take_profit,
                "stop_loss": signal.stop_loss,
                "strategy": signal.strategy,
                "candle_close_time": signal.candle_close_time,
            },
        )
        try:
            filters = self._execution.filters(signal.symbol)
        except ExchangeError as exc:
            self._fail(signal, type(exc).__name__, f"symbol filters unavailable: {exc}")
            return
        position = self._position_or_none(signal.symbol)
        balance = self._balance_or_none()
        passed = self._risk.validate_risk(
            signal, position, balance, filters, self._last_price.get(signal.symbol)
        )
        if not passed or balance is None:  # validate_risk rejects a missing balance
            self.stats.risk_rejections += 1
            return
        size = self._risk.calculate_position_size(signal, balance, filters)
        result = self._execution.execute(signal, size.quantity, trace_id)
        if result.ok:
            self._executed(signal, result, size.quantity)
        else:
            self._fail(signal, result.error_type, result.error_message, result)

    def _executed(self, signal: Signal, result: TradeResult, quantity: float) -> None:
        assert result.entry is not None and result.take_profit and result.stop_loss
        self.stats.trades_executed += 1
        for order in (result.take_profit, result.stop_loss):
            self._open[order.client_order_id] = signal.symbol
        self._audit.log_event(
            AuditEventType.TRADE_EXECUTED,
            "execute_trade",
            symbol=signal.symbol,
            additional_data={
                "signal_type": signal.signal_type.value,
                "entry_price": result.entry.avg_price or signal.entry,
                "signal_entry_price": signal.entry,
                "quantity": result.entry.filled_quantity or quantity,
                "leverage": self._execution.leverage,
                "entry_order_id": result.entry.order_id,
                "take_profit_algo_id": result.take_profit.algo_id,
                "stop_loss_algo_id": result.stop_loss.algo_id,
                "take_profit": result.take_profit.stop_price,
                "stop_loss": result.stop_loss.stop_price,
                "tp_sl_count": 2,
            },
        )

    def _fail(
        self,
        signal: Signal,
        error_type: str,
        message: str,
        result: TradeResult | None = None,
    ) -> None:
        self.stats.trades_failed += 1
        data: dict[str, object] = {
            "signal_type": signal.signal_type.value,
            "entry_price": signal.entry,
            "error_type": error_type,
            "error_message": message,
        }
        if result is not None:
            data["entry_filled"] = result.entry is not None
            data["protective_close"] = result.protective_close is not None
            data["position_left_open"] = result.position_left_open
        if result is not None and result.position_left_open:
            log.error("%s: %s", signal.symbol, message)
        self._audit.log_event(
            AuditEventType.TRADE_EXECUTION_FAILED,
            "execute_trade",
            symbol=signal.symbol,
            error={"error_type": error_type, "error_message": message},
            additional_data=data,
        )

    # ------------------------------------------------------------ internals

    def _candles_of(self, candle: Candle) -> deque[Candle]:
        key = (candle.symbol, candle.interval)
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = deque(maxlen=self._strategy.history_needed)
        return history

    def _position_or_none(self, symbol: str) -> Position | None:
        """``None`` when the query failed (audited): the risk check then rejects."""
        try:
            return self._execution.get_position(symbol)
        except ExchangeError:
            return None

    def _balance_or_none(self) -> Balance | None:
        try:
            return self._execution.get_account_balance()
        except ExchangeError:
            return None

    def _cancel_sibling(self, symbol: str, cid: str, filled_role: str) -> None:
        if cid in self._finished:
            return
        try:
            cancelled = self._execution.cancel_order(
                symbol, cid, reason=f"sibling_{filled_role}_filled"
            )
        except ExchangeError:
            return  # audited as api_error; the venue's own cancel/expiry may still arrive
        if cancelled is not None:
            self._remember(cid)
            self._open.pop(cid, None)

    def _remember(self, cid: str) -> None:
        self._finished[cid] = None
        while len(self._finished) > _REMEMBERED_ORDERS:
            self._finished.popitem(last=False)
