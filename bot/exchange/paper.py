"""PaperExchange: an in-process USD-M futures venue that fills against market data.

A second implementation of the exchange port (:mod:`bot.exchange.base`), not
``if paper:`` branches in trading code. It behaves like the venue where the
bot can tell the difference:

* market orders fill at once at the last price, moved against the taker by
  ``slippage_bps``, paying ``fee_rate`` of the notional;
* TAKE_PROFIT_MARKET / STOP_MARKET orders with closePosition wait until a
  candle's high/low crosses their stop price, then close the whole position
  (a stop-loss that gaps fills at the candle's open); when both are crossed in
  one candle the stop-loss is assumed to fire first;
* wallet balance, fees, realised PnL, per-symbol leverage and margin type,
  initial margin and available balance are tracked; the venue's rejections
  are raised with Binance's codes and texts (-2019 margin insufficient,
  -4164 notional too small, -2021 would immediately trigger, -2022
  reduce-only rejected, -4116 duplicate client order id, ...).

With ``faults=VenueFaults(rate, seed)`` (off by default; ``--venue-faults RATE`` in
paper mode) it also has weather, so a demo shows what the venue does to a real bot:
a share ``rate`` of order requests is refused or fails before anything happens —
entries with -2019 margin insufficient or -4164 notional too small (recorded, not
retried), any order with a temporary error or a 429 rate limit (retried by
execution). The draws are seeded: the same seed gives the same weather.

Order updates are queued and delivered on the next market-data tick
(:meth:`on_market_candle`), as the venue's user-data stream would deliver
them after the REST answer.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from bot.errors import RateLimitError, TemporaryExchangeError, VenueRejectedError
from bot.exchange.base import OrderUpdateHandler
from bot.models import (
    AccountModes,
    Balance,
    Candle,
    MarginType,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    SymbolFilters,
)

# Binance USD-M values (exchangeInfo, 2025) for the symbols people try first.
DEFAULT_FILTERS: Mapping[str, SymbolFilters] = {
    f.symbol: f
    for f in (
        SymbolFilters("BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100),
        SymbolFilters("ETHUSDT", tick_size=0.01, step_size=0.001, min_qty=0.001, min_notional=20),
        SymbolFilters("BNBUSDT", tick_size=0.01, step_size=0.01, min_qty=0.01, min_notional=5),
        SymbolFilters("SOLUSDT", tick_size=0.01, step_size=1.0, min_qty=1.0, min_notional=5),
        SymbolFilters("XRPUSDT", tick_size=0.0001, step_size=0.1, min_qty=0.1, min_notional=5),
    )
}
GENERIC_FILTERS = SymbolFilters(
    "*", tick_size=0.0001, step_size=0.001, min_qty=0.001, min_notional=5
)

_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
_KEPT_ORDERS = 10_000  # finished orders remembered for query_order (bounded memory)


@dataclass
class _Book:
    """Per-symbol account state."""

    leverage: int = 20
    margin_type: MarginType = MarginType.CROSSED
    amount: float = 0.0
    entry_price: float = 0.0
    last_price: float = 0.0


@dataclass
class _Conditional:
    result: OrderResult
    created_seq: int


@dataclass
class _State:
    wallet: float
    books: dict[str, _Book] = field(default_factory=dict)
    orders: OrderedDict[str, OrderResult] = field(default_factory=OrderedDict)  # recent, by cid
    conditionals: dict[str, _Conditional] = field(default_factory=dict)  # open, by cid


@dataclass(frozen=True)
class VenueFaults:
    """Demo weather: the share ``rate`` (0..1) of order requests that fail, seeded."""

    rate: float
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError(f"venue fault rate must be within 0..1, not {self.rate}")


class _Weather:
    """Draws the faults of VenueFaults; raises the venue's error for an unlucky request."""

    ENTRY = ("margin", "notional", "temporary", "rate_limit")
    OTHER = ("temporary", "rate_limit")  # exits and stops are retried, never refused

    def __init__(self, faults: VenueFaults) -> None:
        self._rate = faults.rate
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()

    def check(self, *, entry: bool) -> None:
        with self._lock:
            if self._rng.random() >= self._rate:
                return
            kind = self._rng.choice(self.ENTRY if entry else self.OTHER)
        if kind == "margin":
            raise VenueRejectedError(-2019, "Margin is insufficient.")
        if kind == "notional":
            raise VenueRejectedError(
                -4164, "Order's notional must be no smaller than 5 (unless you choose reduce only)."
            )
        if kind == "rate_limit":
            raise RateLimitError("paper venue weather: too many requests", retry_after=0.2)
        raise TemporaryExchangeError("paper venue weather: service unavailable, not processed")


class PaperExchange:
    """Simulated venue implementing :class:`bot.exchange.base.Exchange`."""

    name = "paper"

    def __init__(
        self,
        *,
        initial_balance: float = 10_000.0,
        fee_rate: float = 0.0004,
        slippage_bps: float = 2.0,
        filters: Mapping[str, SymbolFilters] = DEFAULT_FILTERS,
        asset: str = "USDT",
        clock: Callable[[], float] = time.time,
        faults: VenueFaults | None = None,
    ) -> None:
        self._weather = _Weather(faults) if faults is not None and faults.rate > 0 else None
        self._fee_rate = fee_rate
        self._slippage = slippage_bps / 10_000
        self._filters = dict(filters)
        self._asset = asset
        self._clock = clock
        self._state = _State(wallet=initial_balance)
        self._lock = threading.RLock()
        self._handlers: list[OrderUpdateHandler] = []
        self._pending: list[OrderUpdate] = []
        self._order_ids = itertools.count(8_000_000_001)
        self._algo_ids = itertools.count(4_000_000_001)
        self._seq = itertools.count()

    # ------------------------------------------------------- market data in

    def on_market_candle(self, candle: Candle) -> None:
        """Advance the market: deliver queued updates, then trigger TP/SL on this candle."""
        with self._lock:
            book = self._book(candle.symbol)
            updates = self._pending
            self._pending = []
            updates.extend(self._trigger(candle, book))
            book.last_price = candle.close
        self._dispatch(updates)

    # ---------------------------------------------------------------- clock

    def server_time(self) -> int:
        return int(self._clock() * 1000)

    def sync_clock(self) -> int:
        return 0  # same process, same clock

    # -------------------------------------------------------- configuration

    def symbol_filters(self, symbol: str) -> SymbolFilters:
        self._check_symbol(symbol)
        return self._filters.get(symbol) or replace(GENERIC_FILTERS, symbol=symbol)

    def set_leverage(self, symbol: str, leverage: int) -> int:
        self._check_symbol(symbol)
        if not 1 <= leverage <= 125:
            raise VenueRejectedError(-4028, f"Leverage {leverage} is not valid")
        with self._lock:
            self._book(symbol).leverage = leverage
        return leverage

    def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        self._check_symbol(symbol)
        with self._lock:
            book = self._book(symbol)
            if book.margin_type is not margin_type and book.amount != 0.0:
                raise VenueRejectedError(
                    -4048, "Margin type cannot be changed if there exists position."
                )
            book.margin_type = margin_type

    def account_modes(self) -> AccountModes:
        return AccountModes()  # one-way, single-asset: what the paper book models

    # -------------------------------------------------------------- queries

    def balance(self, asset: str = "USDT") -> Balance:
        with self._lock:
            if asset != self._asset:
                return Balance(asset, 0.0, 0.0)
            unrealized = sum(self._unrealized(b) for b in self._state.books.values())
            margin = sum(self._initial_margin(b) for b in self._state.books.values())
            cross_loss = sum(
                min(0.0, self._unrealized(b))
                for b in self._state.books.values()
                if b.margin_type is MarginType.CROSSED
            )
            wallet = self._state.wallet
            return Balance(asset, wallet, max(0.0, wallet - margin + cross_loss), unrealized)

    def position(self, symbol: str) -> Position:
        self._check_symbol(symbol)
        with self._lock:
            book = self._book(symbol)
            return Position(
                symbol=symbol,
                amount=book.amount,
                entry_price=book.entry_price,
                leverage=book.leverage,
                margin_type=book.margin_type,
                unrealized_pnl=self._unrealized(book),
                mark_price=book.last_price,
            )

    def open_orders(self, symbol: str) -> list[OrderResult]:
        self._check_symbol(symbol)
        with self._lock:  # market orders fill at once: only conditional orders stay open
            return [
                o.result for o in self._state.conditionals.values() if o.result.symbol == symbol
            ]

    def query_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        with self._lock:
            open_order = self._state.conditionals.get(client_order_id)
            order = open_order.result if open_order else self._state.orders.get(client_order_id)
        return order if order is not None and order.symbol == symbol else None

    # --------------------------------------------------------------- orders

    def place_limit_ioc(
        self,
        symbol: str,
        side: OrderSide,
        quantity: float,
        price: float,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> OrderResult:
        with self._lock:
            taker = self._taker_price(self._book(symbol).last_price, side)
        crosses = taker <= price if side is OrderSide.BUY else taker >= price
        if not crosses:  # nothing to take at that price: IOC expires unfilled
            return OrderResult(
                symbol,
                client_order_id,
                OrderType.LIMIT,
                side,
                OrderStatus.EXPIRED,
                quantity=quantity,
            )
        filled = self.place_market_order(
            symbol, side, quantity, client_order_id, reduce_only=reduce_only
        )
        return replace(filled, order_type=OrderType.LIMIT)

    def place_market_order(
        self,
        symbol: str,
        side: OrderSide,
        quantity: float,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> OrderResult:
        filters = self.symbol_filters(symbol)
        self._check_client_id(client_order_id)
        if self._weather is not None:
            self._weather.check(entry=not reduce_only)
        if quantity <= 0:
            raise VenueRejectedError(-4003, "Quantity less than or equal to zero.")
        if filters.floor_quantity(quantity) != quantity:
            raise VenueRejectedError(-1111, "Precision is over the maximum defined for this asset.")
        if quantity < filters.min_qty:
            raise VenueRejectedError(-1013, "Invalid quantity.")
        with self._lock:
            book = self._book(symbol)
            if book.last_price <= 0:
                raise TemporaryExchangeError(f"paper exchange has no price for {symbol} yet")
            signed = quantity if side is OrderSide.BUY else -quantity
            if reduce_only and (book.amount == 0 or (book.amount > 0) == (signed > 0)):
                raise VenueRejectedError(-2022, "ReduceOnly Order is rejected.")
            if reduce_only:
                signed = max(-abs(book.amount), min(abs(book.amount), signed))
            price = self._taker_price(book.last_price, side)
            notional = abs(signed) * price
            if not reduce_only and notional < filters.min_notional:
                raise VenueRejectedError(
                    -4164,
                    f"Order's notional must be no smaller than {filters.min_notional:g} "
                    "(unless you choose reduce only).",
                )
            increases = book.amount == 0 or (book.amount > 0) == (signed > 0)
            if increases:
                needed = notional / book.leverage + notional * self._fee_rate
                if needed > self.balance(self._asset).available_balance:
                    raise VenueRejectedError(-2019, "Margin is insufficient.")
            update = self._fill(symbol, book, signed, price, client_order_id, OrderType.MARKET)
            result = OrderResult(
                symbol=symbol,
                client_order_id=client_order_id,
                order_type=OrderType.MARKET,
                side=side,
                status=OrderStatus.FILLED,
                order_id=update.order_id,
                quantity=abs(signed),
                filled_quantity=abs(signed),
                avg_price=price,
                update_time=update.event_time,
            )
            self._remember(client_order_id, result)
            self._pending.append(update)
            return result

    def place_conditional_order(
        self,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        stop_price: float,
        client_order_id: str,
    ) -> OrderResult:
        filters = self.symbol_filters(symbol)
        self._check_client_id(client_order_id)
        if self._weather is not None:
            self._weather.check(entry=False)
        if order_type not in (OrderType.TAKE_PROFIT_MARKET, OrderType.STOP_MARKET):
            raise VenueRejectedError(-1116, "Invalid orderType.")
        if stop_price <= 0 or filters.round_price(stop_price) != stop_price:
            raise VenueRejectedError(-4014, "Price not increased by tick size.")
        with self._lock:
            book = self._book(symbol)
            if book.last_price <= 0:
                raise TemporaryExchangeError(f"paper exchange has no price for {symbol} yet")
            if self._would_trigger(side, order_type, stop_price, book.last_price, book.last_price):
                raise VenueRejectedError(-2021, "Order would immediately trigger.")
            result = OrderResult(
                symbol=symbol,
                client_order_id=client_order_id,
                order_type=order_type,
                side=side,
                status=OrderStatus.NEW,
                algo_id=next(self._algo_ids),
                stop_price=stop_price,
                update_time=self.server_time(),
                close_position=True,
            )
            self._remember(client_order_id, result)
            self._state.conditionals[client_order_id] = _Conditional(result, next(self._seq))
            return result

    def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        with self._lock:
            open_order = self._state.conditionals.get(client_order_id)
            if open_order is None or open_order.result.symbol != symbol:
                return None
            return self._cancel(client_order_id)

    def cancel_all_orders(self, symbol: str) -> int:
        with self._lock:
            cids = [c for c, o in self._state.conditionals.items() if o.result.symbol == symbol]
            for cid in cids:
                self._cancel(cid)
            return len(cids)

    def set_cancel_countdown(self, symbol: str, milliseconds: int) -> None:
        """Nothing to arm: the paper book lives and dies with the bot's process."""

    # --------------------------------------------------------------- events

    def subscribe_order_updates(
        self, handler: OrderUpdateHandler, *, on_connected: Callable[[], None] | None = None
    ) -> None:
        self._handlers.append(handler)
        if on_connected is not None:
            on_connected()  # in-process: connected at once, and never drops an update

    def close(self) -> None:
        with self._lock:
            self._handlers.clear()
            self._pending.clear()

    # ------------------------------------------------------------ internals

    def _check_symbol(self, symbol: str) -> None:
        if not _SYMBOL_RE.match(symbol):
            raise VenueRejectedError(-1121, "Invalid symbol.")

    def _check_client_id(self, cid: str) -> None:
        if not _CLIENT_ID_RE.match(cid):
            raise VenueRejectedError(-4015, "Client order id is not valid.")
        if cid in self._state.conditionals:
            raise VenueRejectedError(-4116, "ClientOrderId is duplicated.")

    def _book(self, symbol: str) -> _Book:
        book = self._state.books.get(symbol)
        if book is None:
            book = self._state.books[symbol] = _Book()
        return book

    def _taker_price(self, price: float, side: OrderSide) -> float:
        return (
            price * (1 + self._slippage) if side is OrderSide.BUY else price * (1 - self._slippage)
        )

    @staticmethod
    def _unrealized(book: _Book) -> float:
        return (book.last_price - book.entry_price) * book.amount if book.amount else 0.0

    @staticmethod
    def _initial_margin(book: _Book) -> float:
        return abs(book.amount) * book.entry_price / book.leverage

    @staticmethod
    def _would_trigger(
        side: OrderSide, order_type: OrderType, stop: float, low: float, high: float
    ) -> bool:
        """Whether a price range [low, high] crosses a conditional order's stop."""
        closes_long = side is OrderSide.SELL
        if (order_type is OrderType.STOP_MARKET) == closes_long:
            return low <= stop  # sell stop below / buy take-profit below
        return high >= stop  # sell take-profit above / buy stop above

    def _fill(
        self,
        symbol: str,
        book: _Book,
        signed: float,
        price: float,
        cid: str,
        order_type: OrderType,
    ) -> OrderUpdate:
        """Apply a fill to the book and wallet; returns the fill event."""
        realized = 0.0
        if book.amount and (book.amount > 0) != (signed > 0):
            closing = min(abs(signed), abs(book.amount))
            direction = 1.0 if book.amount > 0 else -1.0
            realized = (price - book.entry_price) * closing * direction
        new_amount = book.amount + signed
        if abs(new_amount) < 1e-12:
            book.amount, book.entry_price = 0.0, 0.0
        elif book.amount == 0 or (book.amount > 0) != (new_amount > 0):
            book.amount, book.entry_price = new_amount, price
        elif abs(new_amount) > abs(book.amount):
            cost = book.entry_price * abs(book.amount) + price * abs(signed)
            book.amount, book.entry_price = new_amount, cost / abs(new_amount)
        else:
            book.amount = new_amount
        commission = abs(signed) * price * self._fee_rate
        self._state.wallet += realized - commission
        return OrderUpdate(
            symbol=symbol,
            client_order_id=cid,
            order_type=order_type,
            side=OrderSide.BUY if signed > 0 else OrderSide.SELL,
            status=OrderStatus.FILLED,
            order_id=next(self._order_ids),
            filled_quantity=abs(signed),
            avg_price=price,
            realized_pnl=realized,
            commission=commission,
            event_time=self.server_time(),
        )

    def _trigger(self, candle: Candle, book: _Book) -> list[OrderUpdate]:
        """Fire the symbol's conditional orders crossed by the candle; stop-losses first."""
        crossed = sorted(
            (
                o
                for o in self._state.conditionals.values()
                if o.result.symbol == candle.symbol
                and self._would_trigger(
                    o.result.side,
                    o.result.order_type,
                    o.result.stop_price or 0.0,
                    candle.low,
                    candle.high,
                )
            ),
            key=lambda o: (o.result.order_type is not OrderType.STOP_MARKET, o.created_seq),
        )
        updates: list[OrderUpdate] = []
        for order in crossed:
            res = order.result
            del self._state.conditionals[res.client_order_id]
            closes = (book.amount > 0) == (res.side is OrderSide.SELL)
            if book.amount == 0 or not closes:
                expired = replace(res, status=OrderStatus.EXPIRED, update_time=self.server_time())
                self._remember(res.client_order_id, expired)
                updates.append(OrderUpdate.of_result(expired))
                continue
            stop = res.stop_price or candle.open
            if res.order_type is OrderType.STOP_MARKET:
                gapped = candle.open < stop if res.side is OrderSide.SELL else candle.open > stop
                stop = candle.open if gapped else stop
            price = self._taker_price(stop, res.side)
            fill = self._fill(
                res.symbol, book, -book.amount, price, res.client_order_id, res.order_type
            )
            fill = replace(fill, algo_id=res.algo_id)
            self._remember(
                res.client_order_id,
                replace(
                    res,
                    status=OrderStatus.FILLED,
                    order_id=fill.order_id,
                    quantity=fill.filled_quantity,
                    filled_quantity=fill.filled_quantity,
                    avg_price=price,
                    update_time=fill.event_time,
                ),
            )
            updates.append(fill)
        return updates

    def _cancel(self, cid: str) -> OrderResult:
        order = self._state.conditionals.pop(cid).result
        cancelled = replace(order, status=OrderStatus.CANCELED, update_time=self.server_time())
        self._remember(cid, cancelled)
        self._pending.append(OrderUpdate.of_result(cancelled))
        return cancelled

    def _remember(self, cid: str, order: OrderResult) -> None:
        orders = self._state.orders
        orders[cid] = order
        orders.move_to_end(cid)
        while len(orders) > _KEPT_ORDERS:
            orders.popitem(last=False)

    def _dispatch(self, updates: list[OrderUpdate]) -> None:
        for update in updates:
            for handler in list(self._handlers):
                handler(update)
