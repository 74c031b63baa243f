"""ControlDesk: what the bot does with each control command (SPEC §11).

* ``halt`` / ``reduce`` / ``resume`` from an operator set the state and record
  it with the operator's OS user (taken from the socket's peer credentials,
  never from what the client says). From an alert breaker (``source =
  "alert"``, ``rule``) they only tighten the state, and ``resume`` only undoes
  the rule's own change (:meth:`TradingControl.release`).
* ``flatten`` (operators only) halts first — acknowledged at once — then
  cancels every open order of the bot's symbols (regular and algo), closes
  every position with a reduce-only market order, and repeats until the venue
  itself shows no position and no open order, or the deadline passes. The
  reply carries the time to flat.
* ``status``: state, who set it, positions, open orders, protections, locks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from bot.audit import new_trace_id, trace
from bot.clock import SYSTEM, Clock, iso_utc
from bot.control.guard import EntryGuard
from bot.control.server import Peer
from bot.control.state import Source, StateChange, TradingState
from bot.errors import ExchangeError
from bot.execution import OrderExecutionManager

log = logging.getLogger("bot.control")

_TARGET = {"halt": TradingState.HALTED, "reduce": TradingState.REDUCING}


def _final(ok: bool, **fields: Any) -> dict[str, Any]:
    return {"final": True, "ok": ok, **fields}


def _change(act: StateChange) -> dict[str, Any]:
    return {
        "state": act.state.value,
        "source": act.source.value,
        "reason": act.reason,
        "operator": act.operator,
        "rule": act.rule,
        "since": iso_utc(act.at),
    }


class ControlDesk:
    def __init__(
        self,
        guard: EntryGuard,
        execution: OrderExecutionManager,
        symbols: Sequence[str],
        *,
        flat_timeout: float = 60.0,
        clock: Clock = SYSTEM,
    ) -> None:
        self.guard = guard
        self.control = guard.control
        self.execution = execution
        self.symbols = list(symbols)
        self._flat_timeout = flat_timeout
        self._clock = clock
        self._cancelled = self._closed = 0  # of the flatten in progress

    def handle(self, message: dict[str, Any], peer: Peer) -> Iterator[dict[str, Any]]:
        command = message.get("command")
        source = message.get("source", Source.OPERATOR.value)
        rule = message.get("rule")
        given = message.get("reason")
        reason = given or f"{command} by {peer.user if rule is None else rule}"
        if source not in (Source.OPERATOR.value, Source.ALERT.value):
            yield _final(False, error=f"source must be operator or alert, not {source!r}")
            return
        if source == Source.ALERT.value and not (isinstance(rule, str) and rule):
            yield _final(False, error="an alert's command must name its rule")
            return
        if not isinstance(reason, str):
            yield _final(False, error="reason must be text")
            return
        log.info("control %s from %s (%s): %s", command, peer.user, source, reason)
        if command == "status":
            yield _final(True, **self.status())
        elif command in _TARGET:
            yield self._set(_TARGET[command], source, reason, rule, peer)
        elif command == "resume":
            yield self._resume(source, reason, rule, peer)
        elif command == "flatten" and source == Source.OPERATOR.value:
            act = self.control.change(
                TradingState.HALTED,
                source=Source.OPERATOR,
                reason=f"flatten: {given}" if given else reason,
                operator=peer.user,
            )
            yield {"ack": True, **_change(act)}
            yield _final(True, **self.flatten(), **_change(self.control.last))
        else:
            yield _final(False, error=f"unknown command {command!r} for source {source}")

    def _set(
        self, to: TradingState, source: str, reason: str, rule: str | None, peer: Peer
    ) -> dict[str, Any]:
        if source == Source.OPERATOR.value:
            self.control.change(to, source=Source.OPERATOR, reason=reason, operator=peer.user)
            return _final(True, changed=True, **_change(self.control.last))
        assert rule is not None
        changed = self.control.tighten(to, source=Source.ALERT, reason=reason, rule=rule)
        return _final(True, changed=changed, **_change(self.control.last))

    def _resume(self, source: str, reason: str, rule: str | None, peer: Peer) -> dict[str, Any]:
        if source == Source.OPERATOR.value:
            self.control.change(
                TradingState.ACTIVE, source=Source.OPERATOR, reason=reason, operator=peer.user
            )
            try:
                balance = self.execution.get_account_balance()
            except ExchangeError:
                balance = None
            self.guard.resumed_by_operator(balance)
            return _final(True, changed=True, **_change(self.control.last))
        assert rule is not None
        changed = self.control.release(source=Source.ALERT, rule=rule, reason=reason)
        return _final(True, changed=changed, **_change(self.control.last))

    def status(self) -> dict[str, Any]:
        positions: list[dict[str, Any]] = []
        orders: list[dict[str, Any]] = []
        errors: list[str] = []
        for symbol in self.symbols:
            try:
                position = self.execution.read_position(symbol)  # a look, not a decision:
                open_orders = self.execution.open_orders(symbol)  # not recorded
            except ExchangeError as exc:
                errors.append(f"{symbol}: {exc}")
                continue
            if position.is_open:
                positions.append(
                    {
                        "symbol": symbol,
                        "amount": position.amount,
                        "entry_price": position.entry_price,
                        "unrealized_pnl": position.unrealized_pnl,
                    }
                )
            orders.extend(
                {
                    "symbol": o.symbol,
                    "client_order_id": o.client_order_id,
                    "type": o.order_type.value,
                    "side": o.side.value,
                    "stop_price": o.stop_price,
                    "status": o.status.value,
                }
                for o in open_orders
            )
        return {
            **_change(self.control.last),
            "positions": positions,
            "open_orders": orders,
            **self.guard.status(),
            "errors": errors,
        }

    def flatten(self) -> dict[str, Any]:
        """Cancel, close, confirm at the venue; repeat until flat or the deadline."""
        started = self._clock.monotonic()
        self._cancelled, self._closed = 0, 0
        errors: list[str] = []
        while True:
            left: list[str] = []
            for symbol in self.symbols:
                try:
                    with self.execution.symbol_lock(symbol):  # no trade or repair meanwhile
                        self._flatten_symbol(symbol)
                    if self.execution.get_position(symbol).is_open or self.execution.open_orders(
                        symbol
                    ):
                        left.append(symbol)
                except ExchangeError as exc:
                    errors.append(f"{symbol}: {exc}")
                    left.append(symbol)
            elapsed = self._clock.monotonic() - started
            if not left or elapsed > self._flat_timeout:
                break
            self._clock.sleep(0.5)
        if left:
            log.error("flatten: not flat after %.1fs: %s", elapsed, ", ".join(left))
        return {
            "flat": not left,
            "not_flat": left,
            "orders_cancelled": self._cancelled,
            "positions_closed": self._closed,
            "time_to_flat_seconds": round(elapsed, 3),
            "errors": errors[-10:],
        }

    def _flatten_symbol(self, symbol: str) -> None:
        if self.execution.open_orders(symbol):
            self._cancelled += self.execution.cancel_all_orders(symbol)
        position = self.execution.get_position(symbol)
        if position.is_open:
            with trace(new_trace_id()) as trace_id:
                if self.execution.close_position(position, trace_id, "flatten") is not None:
                    self._closed += 1
