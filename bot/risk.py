"""Risk checks and position sizing: may this signal trade, and how big?

The decisions are pure functions (:func:`check_signal`, :func:`size_position`)
so they can be tested as a table; :class:`RiskManager` wraps them and writes
every outcome to the audit trail (SPEC §4: ``risk_validation`` /
``risk_rejection`` / ``position_size_capped`` / ``position_size_calculated``).

Before any of its own checks it asks the :class:`~bot.control.guard.EntryGuard`
(when one is wired): the trading state first (SPEC §11), then protections; after
sizing, the pre-trade limits.

Sizing rule: risk ``risk_percent`` of the available balance between entry
and stop-loss, but never more notional than ``max_position_percent`` of the
balance times leverage (so the margin used stays within that percentage).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.audit import AuditEventType, AuditLogger
from bot.models import Balance, Position, Signal, SignalType, SymbolFilters

if TYPE_CHECKING:
    from bot.control.guard import EntryGuard


@dataclass(frozen=True, slots=True)
class RiskLimits:
    risk_percent: float  # of the available balance, lost if the stop-loss is hit
    max_position_percent: float  # of the balance, as margin (notional / leverage)
    leverage: int


@dataclass(frozen=True, slots=True)
class RiskRejection:
    """Why a signal may not trade. ``reason`` is a stable snake_case code."""

    reason: str
    message: str
    validation_failed: str


@dataclass(frozen=True, slots=True)
class PositionSize:
    quantity: float  # rounded down to the step size
    requested_quantity: float  # what the risk budget alone would buy
    capped: bool
    max_quantity: float
    account_balance: float
    entry_price: float
    stop_loss_price: float
    leverage: int
    risk_amount: float
    sl_distance_percent: float


def _reject(reason: str, message: str, check: str) -> RiskRejection:
    return RiskRejection(reason=reason, message=message, validation_failed=check)


def size_position(
    signal: Signal, balance: float, limits: RiskLimits, filters: SymbolFilters
) -> PositionSize | RiskRejection:
    """The quantity for ``signal``, or why none is possible."""
    entry = filters.round_price(signal.entry)
    stop = filters.round_price(signal.stop_loss)
    if not (math.isfinite(balance) and balance > 0):
        return _reject(
            "insufficient_balance", f"available balance is {balance}", "balance_positive"
        )
    distance = abs(entry - stop) if math.isfinite(entry - stop) else 0.0
    if distance == 0.0 or entry <= 0:
        return _reject(
            "zero_stop_distance",
            f"stop-loss {stop} is no distance from entry {entry} after rounding to the tick",
            "stop_distance_positive",
        )
    risk_amount = balance * limits.risk_percent / 100
    requested = risk_amount / distance
    max_quantity = balance * limits.max_position_percent / 100 * limits.leverage / entry
    capped = requested > max_quantity
    quantity = filters.floor_quantity(min(requested, max_quantity, filters.max_qty))
    if quantity < filters.min_qty or quantity <= 0:
        return _reject(
            "below_min_quantity",
            f"quantity {quantity} is below the minimum {filters.min_qty}",
            "min_quantity",
        )
    if quantity * entry < filters.min_notional:
        return _reject(
            "below_min_notional",
            f"notional {quantity * entry:.2f} is below the minimum {filters.min_notional}",
            "min_notional",
        )
    return PositionSize(
        quantity=quantity,
        requested_quantity=requested,
        capped=capped,
        max_quantity=max_quantity,
        account_balance=balance,
        entry_price=entry,
        stop_loss_price=stop,
        leverage=limits.leverage,
        risk_amount=risk_amount,
        sl_distance_percent=distance / entry * 100,
    )


def check_signal(
    signal: Signal,
    position: Position | None,
    balance: Balance | None,
    limits: RiskLimits,
    filters: SymbolFilters,
    after_sizing: Callable[[PositionSize], RiskRejection | None] | None = None,
) -> RiskRejection | None:
    """The first failed check, in a fixed order, or ``None`` when the signal may trade.

    ``after_sizing``: checks of the sized entry (the pre-trade limits), last.
    """
    if position is None:
        return _reject(
            "position_unavailable", "could not confirm the symbol has no position", "no_position"
        )
    if position.is_open:
        return _reject(
            "existing_position",
            f"{position.symbol} already has a position of {position.amount}",
            "no_position",
        )
    long = signal.signal_type is SignalType.LONG
    entry, tp, sl = signal.entry, signal.take_profit, signal.stop_loss
    if not all(math.isfinite(p) and p > 0 for p in (entry, tp, sl)):
        return _reject(
            "invalid_price", f"entry {entry}, TP {tp}, SL {sl} must be positive", "prices_valid"
        )
    if (tp <= entry) if long else (tp >= entry):
        where = "above" if long else "below"
        return _reject(
            "invalid_take_profit",
            f"{signal.signal_type.value} take-profit {tp} must be {where} entry {entry}",
            "take_profit_side",
        )
    if (sl >= entry) if long else (sl <= entry):
        where = "below" if long else "above"
        return _reject(
            "invalid_stop_loss",
            f"{signal.signal_type.value} stop-loss {sl} must be {where} entry {entry}",
            "stop_loss_side",
        )
    if balance is None:
        return _reject(
            "balance_unavailable", "could not read the account balance", "balance_positive"
        )
    sized = size_position(signal, balance.available_balance, limits, filters)
    if isinstance(sized, RiskRejection):
        return sized
    return after_sizing(sized) if after_sizing is not None else None


class RiskManager:
    """Audited risk decisions; one per bot, sharing the process's AuditLogger."""

    def __init__(
        self, limits: RiskLimits, audit: AuditLogger, guard: EntryGuard | None = None
    ) -> None:
        self.limits = limits
        self._audit = audit
        self.guard = guard

    def validate_risk(
        self,
        signal: Signal,
        position: Position | None,
        balance: Balance | None,
        filters: SymbolFilters,
        last_price: float | None = None,
    ) -> bool:
        """True when the signal may trade; either way the outcome is audited.

        ``last_price``: the symbol's last market price, for the price collar.
        """
        guard = self.guard
        rejection = None if guard is None else guard.before_entry(signal.symbol, balance)
        if rejection is None:
            rejection = check_signal(
                signal,
                position,
                balance,
                self.limits,
                filters,
                None
                if guard is None
                else lambda sized: guard.limits_refusal(
                    sized.quantity * sized.entry_price, sized.entry_price, last_price
                ),
            )
        if rejection is not None:
            self._audit.log_risk_rejection(
                signal.symbol,
                rejection.reason,
                rejection.message,
                rejection.validation_failed,
                signal.as_audit(),
            )
            return False
        self._audit.log_event(
            AuditEventType.RISK_VALIDATION,
            "validate_risk",
            symbol=signal.symbol,
            order_data=signal.as_audit(),
            additional_data={
                "validation_passed": True,
                "position_amount": position.amount if position else 0.0,
                "available_balance": balance.available_balance if balance else 0.0,
            },
        )
        return True

    def calculate_position_size(
        self, signal: Signal, balance: Balance, filters: SymbolFilters
    ) -> PositionSize:
        """The audited size of a signal that passed :meth:`validate_risk`.

        Audits ``position_size_capped`` (when the cap applied) and then
        ``position_size_calculated``. Raises ``ValueError`` for a signal that
        :meth:`validate_risk` would have rejected: call that first.
        """
        sized = size_position(signal, balance.available_balance, self.limits, filters)
        if isinstance(sized, RiskRejection):
            raise ValueError(f"{sized.reason}: {sized.message}; call validate_risk first")
        if sized.capped:
            self._audit.log_event(
                AuditEventType.POSITION_SIZE_CAPPED,
                "calculate_position_size",
                symbol=signal.symbol,
                additional_data={
                    "requested_quantity": sized.requested_quantity,
                    "capped_quantity": sized.quantity,
                    "max_quantity": sized.max_quantity,
                    "max_position_percent": self.limits.max_position_percent,
                    "leverage": sized.leverage,
                    "account_balance": sized.account_balance,
                },
            )
        self._audit.log_event(
            AuditEventType.POSITION_SIZE_CALCULATED,
            "calculate_position_size",
            symbol=signal.symbol,
            additional_data={
                "account_balance": sized.account_balance,
                "entry_price": sized.entry_price,
                "stop_loss_price": sized.stop_loss_price,
                "leverage": sized.leverage,
                "risk_amount": sized.risk_amount,
                "risk_percent": self.limits.risk_percent,
                "sl_distance_percent": sized.sl_distance_percent,
                "requested_quantity": sized.requested_quantity,
                "quantity": sized.quantity,
                "capped": sized.capped,
            },
        )
        return sized
