"""Protections and pre-trade limits (SPEC §11): pure rules over the bot's own fills and balances.

Protections watch what already happened and stop entries for a while:

* ``daily_loss_limit`` — realized PnL net of fees since 00:00 UTC below minus
  ``daily_loss_limit_percent`` of the day's starting balance: the bot reduces
  until the next UTC day;
* ``max_drawdown`` — equity (wallet + unrealized) ``max_drawdown_percent``
  below its peak: the bot reduces until an operator resumes it (which also
  takes the current equity as the new peak);
* ``stoploss_guard`` — ``count`` stop-loss exits on one symbol within
  ``window``: that symbol takes no entry for ``lock``;
* ``cooldown`` — no entry on a symbol for this long after any exit.

Pre-trade limits judge one entry before it is sent: ``max_order_notional``,
``price_collar_percent`` (entry against the last price) and
``max_orders_per_minute`` (all orders of the bot; an entry needs three).

Nothing here reads a clock or writes a record: callers pass the time in and
record the :class:`Trigger` values they get back (``protection_triggered``).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.execution import CLOSE_INSIDE_BAND, PROTECTIVE_CLOSE, STOP_ROLES, TAKE_PROFIT
from bot.risk import RiskRejection

ORDERS_PER_ENTRY = 3  # entry, take-profit, stop-loss
EXIT_ROLES = STOP_ROLES | {TAKE_PROFIT, PROTECTIVE_CLOSE, CLOSE_INSIDE_BAND}


@dataclass(frozen=True, slots=True)
class StoplossGuard:
    count: int
    window: float  # seconds
    lock: float  # seconds


@dataclass(frozen=True, slots=True)
class ProtectionSettings:
    """``[protections]``; each one is off when ``None``."""

    daily_loss_limit_percent: float | None = None
    max_drawdown_percent: float | None = None
    stoploss_guard: StoplossGuard | None = None
    cooldown: float | None = None  # seconds

    @property
    def enabled(self) -> bool:
        return any(
            value is not None
            for value in (
                self.daily_loss_limit_percent,
                self.max_drawdown_percent,
                self.stoploss_guard,
                self.cooldown,
            )
        )

    @property
    def horizon(self) -> float:
        """How far back (seconds) fills matter to the symbol rules."""
        guard = self.stoploss_guard
        return max(guard.window if guard else 0.0, self.cooldown or 0.0)


@dataclass(frozen=True, slots=True)
class PreTradeLimits:
    """``[limits]``; each one is off when ``None``."""

    max_order_notional: float | None = None
    price_collar_percent: float | None = None
    max_orders_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Trigger:
    """A protection tripped: its name is also the rejection reason code."""

    protection: str
    symbol: str | None  # None: all symbols
    until: float | None  # epoch seconds; None: until an operator resumes
    figures: dict[str, Any]
    message: str

    def as_audit(self) -> dict[str, Any]:
        return {
            "protection": self.protection,
            "symbol": self.symbol or "all",
            "until": self.until,
            **self.figures,
        }


def next_utc_midnight(at: float) -> float:
    day = datetime.fromtimestamp(at, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


@dataclass
class _Day:
    starts: float = 0.0  # [starts, ends): the UTC day in epoch seconds
    ends: float = 0.0
    start_balance: float | None = None
    realized: float = 0.0  # net of fees
    tripped: bool = False  # tripped, or resumed by an operator: once per day


@dataclass
class Protections:
    """What the protections remember: today's PnL, the equity peak, recent exits, locks."""

    settings: ProtectionSettings
    _today: _Day = field(default_factory=_Day)
    _peak: float | None = None
    _equity: float | None = None
    _drawdown_tripped: bool = False
    _stop_losses: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    locks: dict[str, Trigger] = field(default_factory=dict)  # symbol -> lock in force

    # ------------------------------------------------------------- inputs

    def on_balance(self, wallet: float, equity: float, at: float) -> None:
        """A balance query's answer: the day's starting balance and the equity peak."""
        day = self._day(at)
        if day.start_balance is None:
            day.start_balance = wallet - day.realized  # what it was before today's fills
        self._equity = equity
        if self._peak is None or equity > self._peak:
            self._peak = equity

    def on_fill(
        self, symbol: str, role: str, realized_pnl: float, commission: float, at: float
    ) -> list[Trigger]:
        """A fill of the bot's order; returns the symbol locks it trips."""
        self._day(at).realized += realized_pnl - commission
        if role not in EXIT_ROLES:
            return []
        tripped: list[Trigger] = []
        guard = self.settings.stoploss_guard
        if guard is not None and role in STOP_ROLES:
            recent = self._stop_losses[symbol]
            recent.append(at)
            while recent and recent[0] <= at - guard.window:
                recent.popleft()
            if len(recent) >= guard.count:
                recent.clear()
                tripped.append(
                    Trigger(
                        "stoploss_guard",
                        symbol,
                        at + guard.lock,
                        {
                            "stop_losses": guard.count,
                            "window_seconds": guard.window,
                            "lock_seconds": guard.lock,
                        },
                        f"{guard.count} stop-losses on {symbol} within {guard.window:g}s",
                    )
                )
        if self.settings.cooldown:
            tripped.append(
                Trigger(
                    "cooldown",
                    symbol,
                    at + self.settings.cooldown,
                    {"cooldown_seconds": self.settings.cooldown, "exit_role": role},
                    f"cooldown after an exit on {symbol}",
                )
            )
        for trigger in tripped:
            self.lock(trigger)
        return tripped

    def lock(self, trigger: Trigger) -> None:
        """Keep a symbol lock (a new one, or one read back from the trail)."""
        if trigger.symbol is None or trigger.until is None:
            return
        held = self.locks.get(trigger.symbol)
        if held is None or (held.until or 0.0) <= trigger.until:
            self.locks[trigger.symbol] = trigger

    def note_tripped(self, protection: str, at: float) -> None:
        """A trigger read back from the trail: the daily loss limit trips once a day."""
        if protection == "daily_loss_limit":
            self._day(at).tripped = True

    def operator_resumed(self, equity: float | None, at: float) -> None:
        """An operator resumed: today's loss limit is spent, the peak starts again."""
        self._day(at).tripped = True
        self._peak = equity
        self._drawdown_tripped = False

    # ------------------------------------------------------------- checks

    def check_account(self, at: float) -> Trigger | None:
        """Daily loss or drawdown beyond its limit (each trips once), else None."""
        s = self.settings
        day = self._day(at)
        if (
            s.daily_loss_limit_percent is not None
            and not day.tripped
            and day.start_balance is not None
            and day.start_balance > 0
        ):
            limit = day.start_balance * s.daily_loss_limit_percent / 100
            if day.realized < -limit:
                day.tripped = True
                return Trigger(
                    "daily_loss_limit",
                    None,
                    next_utc_midnight(at),
                    {
                        "realized_pnl_today": day.realized,
                        "start_balance": day.start_balance,
                        "loss_limit": limit,
                        "daily_loss_limit_percent": s.daily_loss_limit_percent,
                    },
                    f"realized PnL today {day.realized:.2f} is below -{limit:.2f}",
                )
        return self._check_drawdown()

    def _check_drawdown(self) -> Trigger | None:
        limit = self.settings.max_drawdown_percent
        if limit is None or self._drawdown_tripped or not self._peak or self._equity is None:
            return None
        drawdown = (self._peak - self._equity) / self._peak * 100
        if drawdown < limit:
            return None
        self._drawdown_tripped = True
        return Trigger(
            "max_drawdown",
            None,
            None,
            {
                "equity": self._equity,
                "equity_peak": self._peak,
                "drawdown_percent": drawdown,
                "max_drawdown_percent": limit,
            },
            f"equity {self._equity:.2f} is {drawdown:.2f}% below its peak {self._peak:.2f}",
        )

    def symbol_lock(self, symbol: str, at: float) -> Trigger | None:
        lock = self.locks.get(symbol)
        if lock is not None and lock.until is not None and lock.until <= at:
            del self.locks[symbol]
            return None
        return lock

    def active_locks(self, at: float) -> list[Trigger]:
        return [t for s in list(self.locks) if (t := self.symbol_lock(s, at)) is not None]

    @property
    def equity_peak(self) -> float | None:
        return self._peak

    # ---------------------------------------------------------- internals

    def _day(self, at: float) -> _Day:
        if not self._today.starts <= at < self._today.ends:
            ends = next_utc_midnight(at)
            self._today = _Day(starts=ends - 86_400, ends=ends)
        return self._today


def check_limits(
    limits: PreTradeLimits,
    *,
    notional: float,
    entry: float,
    last_price: float | None,
    orders_last_minute: int,
) -> RiskRejection | None:
    """The first pre-trade limit an entry of ``notional`` at ``entry`` breaks, else None."""
    if limits.max_order_notional is not None and notional > limits.max_order_notional:
        return RiskRejection(
            "max_order_notional",
            f"notional {notional:.2f} is above the limit {limits.max_order_notional:g}",
            "max_order_notional",
        )
    collar = limits.price_collar_percent
    if collar is not None:
        if last_price is None or last_price <= 0:
            return RiskRejection(
                "price_collar", "no last price to check the entry against", "price_collar"
            )
        off = abs(entry - last_price) / last_price * 100
        if off > collar:
            return RiskRejection(
                "price_collar",
                f"entry {entry} is {off:.2f}% from the last price {last_price} "
                f"(collar {collar:g}%)",
                "price_collar",
            )
    most = limits.max_orders_per_minute
    if most is not None and orders_last_minute + ORDERS_PER_ENTRY > most:
        return RiskRejection(
            "order_rate_limit",
            f"{orders_last_minute} orders in the last minute; an entry needs "
            f"{ORDERS_PER_ENTRY} more (limit {most})",
            "max_orders_per_minute",
        )
    return None
