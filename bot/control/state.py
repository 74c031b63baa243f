"""Trading states (SPEC §11): which orders the bot may send, and who changed that, on the record.

::

    active ──halt/reduce (operator, alert, protection)──> halted / reducing
    reducing/halted ──resume (operator; alert with resume_on_resolve; a protection's end)──> active

* ``active``: every order.
* ``reducing``: no entry; take-profits, stop-losses (closePosition) and
  reduce-only closes still go out, so open trades end as planned.
* ``halted``: no new order at all except cancels and reduce-only market
  closes — the operator's ``flatten`` and the protective close the bot's
  never-unprotected rule (SPEC §3) asks for; a TP/SL placement is refused.

:func:`order_refusal` is that table, pure. :class:`TradingControl` holds the
current state for one bot process (thread-safe: the engine, the order path and
the control channel all ask it) and writes every change as one
``trading_state_changed`` record. Breakers only ever tighten the state; one
that resumes on resolve does so only while its own change is still the last.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from bot.audit import AuditEventType, AuditLogger
from bot.clock import SYSTEM, Clock
from bot.errors import OrderRefusedError
from bot.models import OrderRequest, OrderType


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"

    @property
    def strictness(self) -> int:
        return _STRICTNESS[self]


_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class Source(StrEnum):
    """Who changed the state (``.additional_data.source``)."""

    OPERATOR = "operator"
    ALERT = "alert"
    PROTECTION = "protection"
    STARTUP = "startup"


class OrderKind(StrEnum):
    ENTRY = "entry"  # opens or adds to a position
    EXIT_ORDER = "exit_order"  # take-profit / stop-loss with closePosition
    CLOSE = "close"  # reduce-only market (or limit IOC) order


_CONDITIONAL = frozenset({OrderType.TAKE_PROFIT_MARKET, OrderType.STOP_MARKET})


def kind_of(request: OrderRequest) -> OrderKind:
    """What an order can do: a reduce-only MARKET or LIMIT only closes; a TP/SL that
    closes is an exit order; anything else may open a position."""
    if request.order_type in _CONDITIONAL:
        closes = request.close_position or request.reduce_only
        return OrderKind.EXIT_ORDER if closes else OrderKind.ENTRY
    return OrderKind.CLOSE if request.reduce_only else OrderKind.ENTRY


def order_refusal(state: TradingState, kind: OrderKind) -> str | None:
    """The stable reason an order of ``kind`` may not be sent in ``state``, else ``None``."""
    if state is TradingState.REDUCING and kind is OrderKind.ENTRY:
        return "trading_reducing"
    if state is TradingState.HALTED and kind is not OrderKind.CLOSE:
        return "trading_halted"
    return None


@dataclass(frozen=True, slots=True)
class StateChange:
    """The state in force and the act that set it (as the trail records it)."""

    state: TradingState
    source: Source
    reason: str
    at: float  # epoch seconds
    operator: str | None = None
    rule: str | None = None  # alert rule or protection that set it
    until: float | None = None  # a protection's end, when it has one

    def as_audit(self, previous: TradingState) -> dict[str, Any]:
        return {"from": previous.value, "to": self.state.value, **self._act()}

    def _act(self) -> dict[str, Any]:
        data: dict[str, Any] = {"reason": self.reason, "source": self.source.value}
        if self.operator is not None:
            data["operator"] = self.operator
        if self.rule is not None:
            data["rule"] = self.rule
        if self.until is not None:
            data["until"] = self.until
        return data

    def as_startup(self, previous: TradingState, reason: str) -> dict[str, Any]:
        """The startup record of a bot that takes this act over: ``restored`` keeps who set
        it, so the next start (and a breaker's resume) still knows."""
        data: dict[str, Any] = {
            "from": previous.value,
            "to": self.state.value,
            "reason": reason,
            "source": Source.STARTUP.value,
        }
        if self is not INITIAL:
            data["restored"] = {**self._act(), "at": self.at}
        return data

    @classmethod
    def from_audit(cls, data: dict[str, Any], at: float) -> StateChange:
        """The act a ``trading_state_changed`` record stands for (for a startup record, the
        act it restored). Raises ValueError/KeyError/TypeError on a bad record."""
        act = data
        restored = data.get("restored")
        if data.get("source") == Source.STARTUP.value and isinstance(restored, dict):
            act, at = restored, float(restored.get("at", at))
        until = act.get("until")
        return cls(
            state=TradingState(data["to"]),
            source=Source(act["source"]),
            reason=str(act.get("reason", "")),
            at=at,
            operator=act.get("operator"),
            rule=act.get("rule"),
            until=float(until) if until is not None else None,
        )


INITIAL = StateChange(TradingState.ACTIVE, Source.STARTUP, "default", 0.0)


class TradingControl:
    """The bot's trading state; every change (and every command, even one that
    changes nothing) is one ``trading_state_changed`` record.

    Also the order gate of :class:`bot.execution.OrderExecutionManager`: it
    refuses what the state forbids and counts every order sent for the
    ``max_orders_per_minute`` limit.
    """

    def __init__(
        self,
        audit: AuditLogger,
        *,
        clock: Clock = SYSTEM,
        max_orders_per_minute: int | None = None,
    ) -> None:
        self._audit = audit
        self._clock = clock.time
        self._lock = threading.Lock()
        self._last = INITIAL
        self._max_orders = max_orders_per_minute
        self._sent: deque[float] = deque()

    @property
    def state(self) -> TradingState:
        return self._last.state

    @property
    def last(self) -> StateChange:
        return self._last

    def start(self, restored: StateChange | None) -> None:
        """At startup: take over the restored state and record it with source ``startup``.

        A protection's state whose end has passed is not taken over (active again).
        """
        now = self._clock()
        previous = restored or INITIAL
        if restored is None:
            kept, reason = INITIAL, "no earlier state on the trail"
        elif restored.until is not None and restored.until <= now:
            kept, reason = INITIAL, f"{restored.rule or restored.source} ended before this start"
        else:
            kept, reason = restored, f"restored from the trail (set by {restored.source})"
        with self._lock:
            # the restored act stays what the breakers compare against
            self._last = replace(kept, at=kept.at or now)
            self._audit.log_event(
                AuditEventType.TRADING_STATE_CHANGED,
                "set_trading_state",
                additional_data=kept.as_startup(previous.state, reason),
            )

    def change(
        self,
        to: TradingState,
        *,
        source: Source,
        reason: str,
        operator: str | None = None,
        rule: str | None = None,
        until: float | None = None,
    ) -> StateChange:
        """Set the state (recorded even when it stays the same: every act is on the record)."""
        act = StateChange(to, source, reason, self._clock(), operator, rule, until)
        with self._lock:
            previous = self._last.state
            self._last = act
            self._record(previous, act)
        return act

    def tighten(
        self,
        to: TradingState,
        *,
        source: Source,
        reason: str,
        rule: str,
        until: float | None = None,
    ) -> bool:
        """A breaker or protection: move to ``to`` only if that is stricter. True when changed."""
        with self._lock:
            if to.strictness <= self._last.state.strictness:
                return False
            previous = self._last.state
            self._last = StateChange(to, source, reason, self._clock(), rule=rule, until=until)
            self._record(previous, self._last)
            return True

    def release(self, *, source: Source, rule: str, reason: str) -> bool:
        """Back to active, but only while ``rule``'s own change is the last one. True when done."""
        with self._lock:
            last = self._last
            if last.rule != rule or last.source is not source or last.state is TradingState.ACTIVE:
                return False
            self._last = StateChange(TradingState.ACTIVE, source, reason, self._clock(), rule=rule)
            self._record(last.state, self._last)
            return True

    def expire(self) -> bool:
        """End a protection's state whose ``until`` has passed. True when it ended."""
        last = self._last
        if last.until is None or last.until > self._clock() or last.rule is None:
            return False
        return self.release(source=last.source, rule=last.rule, reason=f"{last.rule} ended")

    def entry_refusal(self) -> str | None:
        """Why no entry may be made now (``trading_halted`` / ``trading_reducing``), else None."""
        self.expire()
        return order_refusal(self.state, OrderKind.ENTRY)

    def orders_last_minute(self) -> int:
        with self._lock:
            self._forget_old(self._clock())
            return len(self._sent)

    def __call__(self, request: OrderRequest) -> OrderRefusedError | None:
        """The order gate: refuse what the state or the order rate forbids; count the rest."""
        kind = kind_of(request)
        reason = order_refusal(self.state, kind)
        if reason is not None:
            return OrderRefusedError(reason, f"{kind} order refused: bot is {self.state}")
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            if (
                self._max_orders is not None
                and kind is OrderKind.ENTRY
                and len(self._sent) >= self._max_orders
            ):
                return OrderRefusedError(
                    "order_rate_limit",
                    f"{len(self._sent)} orders in the last minute (limit {self._max_orders})",
                )
            self._sent.append(now)
        return None

    def _forget_old(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - 60.0:
            self._sent.popleft()

    def _record(self, previous: TradingState, act: StateChange) -> None:
        self._audit.log_event(
            AuditEventType.TRADING_STATE_CHANGED,
            "set_trading_state",
            additional_data=act.as_audit(previous),
        )
