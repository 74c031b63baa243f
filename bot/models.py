"""The bot's value objects: candles, signals, symbol filters, orders, positions, fills.

Frozen dataclasses shared by every component and by the exchange port, so no
venue type (python-binance dicts, REST field names) leaks into trading code.
Prices and quantities are floats; rounding to a symbol's filters goes through
``Decimal`` (see :class:`SymbolFilters`) so 0.1 + 0.2 never reaches the venue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any


class SignalType(StrEnum):
    """Direction of a trade idea (and of a position)."""

    LONG = "LONG"
    SHORT = "SHORT"

    @property
    def entry_side(self) -> OrderSide:
        return OrderSide.BUY if self is SignalType.LONG else OrderSide.SELL

    @property
    def exit_side(self) -> OrderSide:
        return OrderSide.SELL if self is SignalType.LONG else OrderSide.BUY


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    """Order types the bot sends; the values are Binance's names."""

    MARKET = "MARKET"
    LIMIT = "LIMIT"  # only as the protective close's IOC fallback
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"
    STOP_MARKET = "STOP_MARKET"


class OrderStatus(StrEnum):
    """Order lifecycle states, regular and conditional (algo) orders alike."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    TRIGGERED = "TRIGGERED"  # a conditional order fired; its market order follows
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"

    @property
    def is_live(self) -> bool:
        """Accepted by the venue and not (yet) dead: counts as "placed"."""
        return self in _LIVE_STATUSES

    @property
    def is_final(self) -> bool:
        """Nothing more will happen to the order: filled, cancelled, expired or rejected."""
        return self in _FINAL_STATUSES


_LIVE_STATUSES = frozenset(
    {OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.TRIGGERED}
)
_FINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
)


class MarginType(StrEnum):
    ISOLATED = "ISOLATED"
    CROSSED = "CROSSED"


@dataclass(frozen=True, slots=True)
class Candle:
    """One kline. ``closed`` is False for an in-progress update of the current candle."""

    symbol: str
    interval: str
    open_time: int  # ms since epoch, UTC
    open: float
    high: float
    low: float
    close: float
    volume: float
    close_time: int  # ms since epoch, UTC (Binance: open_time + interval - 1)
    closed: bool = True

    @classmethod
    def from_kline_row(cls, symbol: str, interval: str, row: Sequence[Any]) -> Candle:
        """A closed candle from Binance's kline layout, shared by the REST answer and the
        public data dumps: ``[open_time, open, high, low, close, volume, close_time, ...]``.
        Times in microseconds (dumps since 2025) are brought to milliseconds."""
        return cls(
            symbol=symbol,
            interval=interval,
            open_time=_epoch_ms(row[0]),
            open=float(row[1]),
            high=float(row[2]),
            low=float(row[3]),
            close=float(row[4]),
            volume=float(row[5]),
            close_time=_epoch_ms(row[6]),
        )


_MICROSECONDS = 10**14  # an epoch time above this is in microseconds (year 5138 in ms)


def _epoch_ms(value: Any) -> int:
    stamp = int(value)
    return stamp // 1000 if stamp > _MICROSECONDS else stamp


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's trade idea: enter at ``entry``, exit at ``take_profit`` or ``stop_loss``."""

    symbol: str
    signal_type: SignalType
    entry: float
    take_profit: float
    stop_loss: float
    interval: str
    strategy: str
    close_price: float
    candle_close_time: int

    def as_audit(self) -> dict[str, Any]:
        """The signal as it appears in ``order_data`` of risk events."""
        return {
            "signal_type": self.signal_type.value,
            "entry_price": self.entry,
            "take_profit": self.take_profit,
            "stop_loss": self.stop_loss,
            "interval": self.interval,
            "strategy": self.strategy,
        }


def _dec(value: float) -> Decimal:
    return Decimal(repr(value))


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """A symbol's trading rules (Binance exchangeInfo PRICE_FILTER, LOT_SIZE, MIN_NOTIONAL)."""

    symbol: str
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float
    max_qty: float = float("inf")
    percent_price_up: float = 0.0  # PERCENT_PRICE multipliers around the mark price (0: unknown)
    percent_price_down: float = 0.0

    def round_price(self, price: float) -> float:
        """Nearest multiple of the tick size."""
        tick = _dec(self.tick_size)
        return float((_dec(price) / tick).to_integral_value(ROUND_HALF_UP) * tick)

    def limit_inside_band(self, mark_price: float, side: OrderSide) -> float:
        """An aggressive limit price the PERCENT_PRICE band still allows: half-way into it.

        A SELL below the mark (a BUY above it) crosses every bid (ask) down
        (up) to there; without a known band, 2 % from the mark.
        """
        if side is OrderSide.SELL:
            room = (1.0 - self.percent_price_down) if self.percent_price_down else 0.04
            return self.round_price(mark_price * (1.0 - room / 2))
        room = (self.percent_price_up - 1.0) if self.percent_price_up else 0.04
        return self.round_price(mark_price * (1.0 + room / 2))

    def floor_quantity(self, quantity: float) -> float:
        """Largest multiple of the step size not above ``quantity`` (never round risk up)."""
        step = _dec(self.step_size)
        return float((_dec(quantity) / step).to_integral_value(ROUND_DOWN) * step)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the bot asks the venue for; ``stop_price`` only for conditional orders."""

    symbol: str
    side: OrderSide
    order_type: OrderType
    client_order_id: str
    quantity: float | None = None
    stop_price: float | None = None
    reduce_only: bool = False
    close_position: bool = False
    price: float | None = None  # LIMIT only (time in force IOC)

    def as_audit(self) -> dict[str, Any]:
        """The request as it appears in ``order_data`` of order events."""
        data: dict[str, Any] = {
            "order_type": self.order_type.value,
            "side": self.side.value,
            "client_order_id": self.client_order_id,
        }
        if self.quantity is not None:
            data["quantity"] = self.quantity
        if self.stop_price is not None:
            data["stop_price"] = self.stop_price
        if self.price is not None:
            data["price"] = self.price
            data["time_in_force"] = "IOC"
        if self.reduce_only:
            data["reduce_only"] = True
        if self.close_position:
            data["close_position"] = True
        return data


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The venue's view of one order.

    Regular orders carry ``order_id``; conditional orders placed through the
    Algo Order API carry ``algo_id`` (and ``order_id`` only once triggered).
    """

    symbol: str
    client_order_id: str
    order_type: OrderType
    side: OrderSide
    status: OrderStatus
    order_id: int | None = None
    algo_id: int | None = None
    quantity: float = 0.0
    filled_quantity: float = 0.0
    avg_price: float = 0.0
    stop_price: float | None = None
    update_time: int = 0  # ms since epoch
    close_position: bool = False
    reduce_only: bool = False

    def as_audit(self) -> dict[str, Any]:
        """The result as it appears in ``response`` of order events."""
        data: dict[str, Any] = {
            "status": self.status.value,
            "client_order_id": self.client_order_id,
        }
        if self.order_id is not None:
            data["order_id"] = self.order_id
        if self.algo_id is not None:
            data["algo_id"] = self.algo_id
        if self.filled_quantity:
            data["executed_qty"] = self.filled_quantity
            data["avg_price"] = self.avg_price
        return data


@dataclass(frozen=True, slots=True)
class Position:
    """One-way-mode position; ``amount`` is signed like Binance's ``positionAmt``."""

    symbol: str
    amount: float = 0.0
    entry_price: float = 0.0
    leverage: int = 1
    margin_type: MarginType = MarginType.CROSSED
    unrealized_pnl: float = 0.0
    mark_price: float = 0.0  # 0: not known

    @property
    def is_open(self) -> bool:
        return self.amount != 0.0

    @property
    def side(self) -> SignalType | None:
        if self.amount > 0:
            return SignalType.LONG
        if self.amount < 0:
            return SignalType.SHORT
        return None

    def is_protected_by(self, orders: Iterable[OrderResult]) -> bool:
        """Whether open ``orders`` hold a stop-loss for this whole position.

        A STOP_MARKET on the closing side counts when it closes the position
        (closePosition), or reduce-only ones together cover its amount. A flat
        position needs none.
        """
        side = self.side
        if side is None:
            return True
        stops = [
            o
            for o in orders
            if o.symbol == self.symbol
            and o.order_type is OrderType.STOP_MARKET
            and o.side is side.exit_side
            and not o.status.is_final
        ]
        covered = sum(o.quantity - o.filled_quantity for o in stops if o.reduce_only)
        return any(o.close_position for o in stops) or covered >= abs(self.amount)


@dataclass(frozen=True, slots=True)
class AccountModes:
    """Account-wide settings that change how orders must be sent.

    ``hedge_mode``: separate LONG and SHORT positions per symbol (Binance
    ``dualSidePosition``); ``multi_assets``: one margin pool over several
    assets (Binance ``multiAssetsMargin``), which allows CROSSED margin only.
    """

    hedge_mode: bool = False
    multi_assets: bool = False


@dataclass(frozen=True, slots=True)
class Balance:
    """Futures wallet for one margin asset (USDT)."""

    asset: str
    wallet_balance: float
    available_balance: float
    unrealized_pnl: float = 0.0


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order changed state at the venue (user data stream / paper fill).

    Delivered to subscribers of ``Exchange.subscribe_order_updates``: a fill
    of an entry, a triggered take-profit or stop-loss, a cancel or expiry.
    """

    symbol: str
    client_order_id: str
    order_type: OrderType
    side: OrderSide
    status: OrderStatus
    order_id: int | None = None
    algo_id: int | None = None
    filled_quantity: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    commission: float = 0.0
    event_time: int = 0  # ms since epoch

    @classmethod
    def of_result(cls, order: OrderResult) -> OrderUpdate:
        """The update an order query's answer stands for (realised PnL and fees unknown: 0)."""
        return cls(
            symbol=order.symbol,
            client_order_id=order.client_order_id,
            order_type=order.order_type,
            side=order.side,
            status=order.status,
            order_id=order.order_id,
            algo_id=order.algo_id,
            filled_quantity=order.filled_quantity,
            avg_price=order.avg_price,
            event_time=order.update_time,
        )

    def as_audit(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status.value,
            "order_type": self.order_type.value,
            "side": self.side.value,
            "client_order_id": self.client_order_id,
            "executed_qty": self.filled_quantity,
            "avg_price": self.avg_price,
            "realized_pnl": self.realized_pnl,
            "commission": self.commission,
            "event_time": self.event_time,
        }
        if self.order_id is not None:
            data["order_id"] = self.order_id
        if self.algo_id is not None:
            data["algo_id"] = self.algo_id
        return data
