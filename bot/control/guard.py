"""EntryGuard: the risk stage's first word on an entry — trading state, protections, limits.

:class:`bot.risk.RiskManager` asks it before its own checks (the state is the
very first, SPEC §11) and after sizing (the pre-trade limits need the
notional). It also hears every fill and balance of the bot (PnL and equity
come from the bot's own records, in every mode) and writes each protection
that trips as one ``protection_triggered`` record; a daily loss or drawdown
also moves the trading state to ``reducing`` with source ``protection``.
"""

from __future__ import annotations

import threading
from typing import Any

from bot.audit import AuditEventType, AuditLogger
from bot.clock import SYSTEM, Clock, iso_utc
from bot.control.protections import PreTradeLimits, Protections, Trigger, check_limits
from bot.control.state import Source, TradingControl, TradingState
from bot.models import Balance
from bot.risk import RiskRejection


class EntryGuard:
    def __init__(
        self,
        control: TradingControl,
        protections: Protections,
        limits: PreTradeLimits,
        audit: AuditLogger,
        *,
        clock: Clock = SYSTEM,
    ) -> None:
        self.control = control
        self.protections = protections
        self.limits = limits
        self._audit = audit
        self._clock = clock.time
        self._lock = threading.Lock()  # fills arrive on the venue's thread

    def before_entry(self, symbol: str, balance: Balance | None) -> RiskRejection | None:
        """State, then the account protections, then the symbol's locks."""
        refused = self.control.entry_refusal()
        if refused is not None:
            last = self.control.last
            by = last.operator or last.rule or last.source.value
            return RiskRejection(
                refused,
                f"bot is {self.control.state}, set by {by}: {last.reason}",
                "trading_state",
            )
        now = self._clock()
        with self._lock:
            if balance is not None:
                self.protections.on_balance(
                    balance.wallet_balance, balance.wallet_balance + balance.unrealized_pnl, now
                )
            tripped = self.protections.check_account(now)
            lock = self.protections.symbol_lock(symbol, now)
        if tripped is not None:
            self._record(tripped)
            self.control.tighten(
                TradingState.REDUCING,
                source=Source.PROTECTION,
                reason=tripped.message,
                rule=tripped.protection,
                until=tripped.until,
            )
            return RiskRejection(tripped.protection, tripped.message, tripped.protection)
        if lock is not None:
            return RiskRejection(
                lock.protection,
                f"{symbol} takes no entry until {iso_utc(lock.until)} ({lock.message})",
                lock.protection,
            )
        return None

    def limits_refusal(
        self, notional: float, entry: float, last_price: float | None
    ) -> RiskRejection | None:
        return check_limits(
            self.limits,
            notional=notional,
            entry=entry,
            last_price=last_price,
            orders_last_minute=self.control.orders_last_minute(),
        )

    def on_fill(self, symbol: str, role: str, realized_pnl: float, commission: float) -> None:
        with self._lock:
            tripped = self.protections.on_fill(
                symbol, role, realized_pnl, commission, self._clock()
            )
        for trigger in tripped:
            self._record(trigger)

    def resumed_by_operator(self, balance: Balance | None) -> None:
        equity = balance.wallet_balance + balance.unrealized_pnl if balance else None
        with self._lock:
            self.protections.operator_resumed(equity, self._clock())

    def status(self) -> dict[str, Any]:
        """Active protections and locks with their end, for ``control status``."""
        self.control.expire()
        with self._lock:
            locks = self.protections.active_locks(self._clock())
        last = self.control.last
        account = (
            [
                {
                    "protection": last.rule,
                    "symbol": "all",
                    "until": iso_utc(last.until),
                }
            ]
            if last.source is Source.PROTECTION and self.control.state is not TradingState.ACTIVE
            else []
        )
        return {
            "protections": account,
            "locks": [
                {
                    "protection": t.protection,
                    "symbol": t.symbol,
                    "until": iso_utc(t.until),
                }
                for t in locks
            ],
        }

    def _record(self, trigger: Trigger) -> None:
        self._audit.log_event(
            AuditEventType.PROTECTION_TRIGGERED,
            "check_protections",
            symbol=trigger.symbol,
            additional_data={**trigger.as_audit(), "message": trigger.message},
        )
