"""ProtectionSupervisor: every position's stop-loss confirmed at the venue, gaps repaired.

The bot promises that no position stands without a stop-loss (SPEC §3). Its
own memory and the user-data stream can both be wrong about that: a stop that
triggered but did not fill (the algo order REJECTED, the triggered market
order EXPIRED), a stop cancelled by hand, an event lost while the stream was
down. So at a bounded interval (``[execution] protection_check_seconds``, 10 s
by default) the supervisor reads what the venue lists — each symbol's open
orders (algo and regular) and position, by REST, so it works while the stream
is down — and per symbol:

* open and protected by a stop-loss: nothing (not recorded: a quiet check
  every few seconds would drown the trail);
* open WITHOUT a stop-loss (confirmed by a second read, since a stop may fill
  between two reads): a ``position_query`` record (operation
  ``protection_check``, ``.additional_data.action`` and ``.cause``), then the
  repair: the trade's stop placed again once (``<trace>-rs``) when this run
  knows its price, else — or when that fails — the protective close at
  market; after a close the bot's orders left on the symbol are cancelled;
* flat with orders of the bot still open (an orphaned take-profit or
  stop-loss, whose closePosition would act on the next position): each is
  cancelled, reason ``orphan_on_flat_symbol``.

Everything is recorded under the trade's trace id (from the bot's client ids
on the symbol, or the trade's stop plan). An order update saying a stop-loss
was REJECTED or EXPIRED is recorded at once (``api_error``, operation
``stop_loss_lost``) and wakes the supervisor for an immediate check; one
cancelled by someone else (by hand) only wakes it: the check records a gap if
there is one (the bot's own cancels may report before it knows of them).
A symbol whose lock is held (a trade in progress) is looked at again shortly.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from bot.audit import AuditLogger, new_trace_id, trace
from bot.errors import ExchangeError
from bot.execution import (
    STOP_ROLES,
    OrderExecutionManager,
    describe_order,
    parse_client_order_id,
    trace_of_orders,
)
from bot.models import OrderResult, OrderStatus, OrderUpdate, Position

log = logging.getLogger("bot.supervisor")

# A stop-loss that ends without filling: rejected or expired at trigger, or cancelled
# by someone else (the bot's own cancels are known to the execution manager).
LOST = frozenset({OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.CANCELED})
_BUSY_RETRY = 0.5  # seconds before a symbol that was busy is looked at again
_REMEMBERED = 10_000


@dataclass
class SupervisorStats:
    """What the supervisor found and did since it started."""

    rounds: int = 0
    gaps: int = 0
    stops_not_filled: int = 0
    stops_replaced: int = 0
    positions_closed: int = 0
    orphans_cancelled: int = 0
    failures: int = 0


class ProtectionSupervisor:
    """Confirms each symbol's protection at the venue and repairs gaps (see the module doc)."""

    def __init__(
        self,
        execution: OrderExecutionManager,
        audit: AuditLogger,
        symbols: Iterable[str],
        *,
        interval: float = 10.0,
    ) -> None:
        self._execution = execution
        self._audit = audit
        self._symbols = list(symbols)
        self._interval = interval
        self._wake = threading.Event()
        self._guard = threading.Lock()
        self._causes: dict[str, tuple[str, float]] = {}  # symbol -> (why it is checked, when)
        self._noticed: OrderedDict[str, None] = OrderedDict()  # stops already reported
        self.stats = SupervisorStats()

    # --------------------------------------------------------------- events

    def on_order_update(self, update: OrderUpdate) -> None:
        """A stop-loss REJECTED, EXPIRED or cancelled elsewhere: record it, check its symbol now."""
        parsed = parse_client_order_id(update.client_order_id)
        if parsed is None or parsed[1] not in STOP_ROLES or update.status not in LOST:
            return
        if self._execution.cancelled_here(update.client_order_id):
            return
        cause = f"stop_loss_{update.status.value.lower()}"
        if update.status is OrderStatus.CANCELED:
            self._wake_for(update.symbol, cause)
            return
        with self._guard:  # the algo and the triggered order may both report it
            if update.client_order_id in self._noticed:
                return
            self._noticed[update.client_order_id] = None
            while len(self._noticed) > _REMEMBERED:
                self._noticed.popitem(last=False)
        with trace(parsed[0]):
            self._audit.log_api_error(
                "stop_loss_lost",
                {
                    "error_type": cause,
                    "error_message": f"stop-loss {update.status.value}: the position may be open",
                    "client_order_id": update.client_order_id,
                },
                symbol=update.symbol,
            )
        self.stats.stops_not_filled += 1
        self._wake_for(update.symbol, cause)

    def _wake_for(self, symbol: str, cause: str) -> None:
        with self._guard:
            self._causes[symbol] = (cause, time.monotonic())
        self._wake.set()

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        """Check every symbol each interval (sooner when woken) until ``stop`` is set."""
        while not stop.is_set():
            self._wake.clear()  # a wake during the round below starts the next one at once
            busy = self.check_all()
            self._wake.wait(_BUSY_RETRY if busy else self._interval)

    def wake(self) -> None:
        """Check at once (also used to let :meth:`run` see its stop flag)."""
        self._wake.set()

    def check_all(self) -> bool:
        """One round over every symbol; True when a symbol was busy and waits for a retry."""
        self.stats.rounds += 1
        busy = False
        for symbol in self._symbols:
            try:
                busy |= self.check_symbol(symbol) == "busy"
            except ExchangeError as exc:  # audited where it happened; next round tries again
                self.stats.failures += 1
                log.warning("%s: protection check failed: %s", symbol, exc)
            except Exception:  # a bug here must not stop the checks of later rounds
                self.stats.failures += 1
                log.exception("%s: protection check failed", symbol)
        return busy

    def check_symbol(self, symbol: str) -> str:
        """Check and repair one symbol; returns the action taken (``busy``: skipped)."""
        lock = self._execution.symbol_lock(symbol)
        if not lock.acquire(blocking=False):
            return "busy"
        try:
            return self._check(symbol)
        finally:
            lock.release()

    # ------------------------------------------------------------- the check

    def _read(self, symbol: str) -> tuple[list[OrderResult], Position]:
        # Orders first: a stop that fills between the reads then shows as a flat
        # position with its order listed, never as an open position without one.
        orders = self._execution.open_orders(symbol)
        return orders, self._execution.read_position(symbol)

    def _check(self, symbol: str) -> str:
        started = time.monotonic()
        orders, position = self._read(symbol)
        if self._needs_action(orders, position):
            orders, position = self._read(symbol)  # confirm before acting
        needed = self._needs_action(orders, position)
        with self._guard:
            cause, at = self._causes.get(symbol, ("no_stop_loss_listed", 0.0))
            if needed or at < started:  # a cause newer than these reads waits for the next round
                self._causes.pop(symbol, None)
        if not needed:
            return "none"
        ours = [o for o in orders if parse_client_order_id(o.client_order_id) is not None]
        if position.is_open:
            return self._repair(position, orders, ours, cause)
        return self._cancel_orphans(position, orders, ours)

    @staticmethod
    def _needs_action(orders: list[OrderResult], position: Position) -> bool:
        if position.is_open:
            return not position.is_protected_by(orders)
        return any(parse_client_order_id(o.client_order_id) is not None for o in orders)

    def _record(
        self, position: Position, orders: list[OrderResult], action: str, cause: str
    ) -> None:
        self._execution.audit_position(
            position,
            "protection_check",
            {
                "protected": False if position.is_open else None,
                "action": action,
                "cause": cause,
                "open_orders": [describe_order(o) for o in orders],
            },
        )

    def _repair(
        self,
        position: Position,
        orders: list[OrderResult],
        ours: list[OrderResult],
        cause: str,
    ) -> str:
        symbol, side = position.symbol, position.side
        assert side is not None
        plan = self._execution.stop_plan(symbol)
        trace_id = trace_of_orders(ours) or (plan.trace_id if plan else None) or new_trace_id()
        replace = (
            plan is not None
            and plan.trace_id == trace_id
            and plan.stop_price is not None
            and not plan.replaced
        )
        action = "replace_stop_loss" if replace else "close_unprotected_position"
        self.stats.gaps += 1
        log.warning(
            "%s: position %s without stop-loss (%s): %s", symbol, position.amount, cause, action
        )
        with trace(trace_id):
            self._record(position, orders, action, cause)
            if replace:
                assert plan is not None and plan.stop_price is not None
                self._execution.set_stop_plan(symbol, dataclasses.replace(plan, replaced=True))
                try:
                    self._execution.place_stop_loss(
                        symbol, side.exit_side, plan.stop_price, trace_id, "replace_sl_order"
                    )
                    self.stats.stops_replaced += 1
                    return action
                except ExchangeError:  # audited; e.g. -2021: the price is past the stop
                    action = "close_unprotected_position"
            self._execution.close_position(position, trace_id, "close_unprotected_position")
            self.stats.positions_closed += 1
            self._execution.set_stop_plan(symbol, None)
            for order in ours:
                self._cancel(symbol, order, "trade_unwound")
        return action

    def _cancel_orphans(
        self, position: Position, orders: list[OrderResult], ours: list[OrderResult]
    ) -> str:
        with trace(trace_of_orders(ours) or new_trace_id()):
            self._record(position, orders, "cancel_orphans", "orders_left_on_flat_symbol")
        for order in ours:
            parsed = parse_client_order_id(order.client_order_id)
            assert parsed is not None
            with trace(parsed[0]):  # each order's cancel under its own trade
                self._cancel(position.symbol, order, "orphan_on_flat_symbol")
        self._execution.set_stop_plan(position.symbol, None)
        return "cancel_orphans"

    def _cancel(self, symbol: str, order: OrderResult, reason: str) -> None:
        try:
            if self._execution.cancel_order(symbol, order.client_order_id, reason=reason):
                self.stats.orphans_cancelled += 1
        except ExchangeError:  # audited; still listed, so the next round tries again
            self.stats.failures += 1
