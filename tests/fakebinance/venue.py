"""The fake venue's state: symbols, prices, orders, algo orders, positions and balance.

Pure, synchronous and thread-safe (one re-entrant lock), so the HTTP layer in
``server.py`` and the test thread (``set_price``, assertions) can both touch it.
Business errors are raised as :class:`VenueError` carrying the Binance code and
message; the HTTP layer turns them into Binance-style JSON errors. User-data
events (ORDER_TRADE_UPDATE, ALGO_UPDATE, ACCOUNT_UPDATE) go to ``emit``.

Behaviour modelled on Binance USD-M futures in one-way mode:

* MARKET orders fill at once at the symbol's current price (taker fee 0.04 %).
  The default response type is ACK (status NEW, nothing executed yet), as on
  Binance; ``newOrderRespType=RESULT`` returns the fill.
* LIMIT orders rest and fill when the price crosses them; with
  ``timeInForce=IOC`` they fill at once at the market price when it crosses
  them and expire otherwise.
* Conditional types (STOP_MARKET, TAKE_PROFIT_MARKET, ...) are refused on
  ``/fapi/v1/order`` with -4120 and live in the Algo Order service instead;
  they trigger when ``set_price`` crosses their ``triggerPrice``. A triggered
  order's sibling stays open (the bot cancels it), like on the venue. A second
  closePosition order of one type and side is refused with -4130.

The venue's bad days, each switched on by a test (all off by default):

* ``trigger_faults``: the next stop-losses to trigger end ``REJECTED`` (the
  algo order, reason in ``rm``) or ``EXPIRED`` (the triggered market order),
  leaving the position open;
* ``forget_algo_orders(seconds)``: the algo service answers -2013 / -2011 for
  orders that exist, while ``openAlgoOrders`` still lists them;
* ``hide(cid, seconds)``: an order processed but invisible to queries and
  open-order lists (the server does it after a 503 -1000 fault);
* ``trades_per_fill``: market orders fill in that many trades, each with its
  own ``rp`` / ``n``;
* ``dual_side`` (hedge mode: -4061 without positionSide, -1106 for
  reduceOnly, two legs in positionRisk) and ``multi_assets`` (-4168 for
  ISOLATED).

``countdownCancelAll`` (the dead-man's switch) keeps one timer per symbol
(``countdowns``: symbol -> server ms when it fires); the server calls
:meth:`Venue.expire_countdowns` every 50 ms, which cancels the symbol's open
regular orders (ORDER_TRADE_UPDATE CANCELED pushed, as for any cancel) and
leaves positions alone. Binance documents "all open orders of the symbol"
and keeps conditional orders in the separate Algo Service with its own
cancel-all endpoint; whether the countdown reaches them is not documented, so
``countdown_cancels_algo = True`` models the other reading.

``protection_timeline`` records, after every change, whether each symbol's
position stands without a working stop-loss, so tests measure unprotected
time from the venue's own records (:meth:`Venue.unprotected_spans`).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

Params = Mapping[str, str]
Emit = Callable[[dict[str, Any]], None]

TAKER_FEE = Decimal("0.0004")
CONDITIONAL_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
ALGO_TYPES_SUPPORTED = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET"})
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
INTERVAL_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


class VenueError(Exception):
    """A business error answered as ``{"code": code, "msg": msg}`` with HTTP ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    price: Decimal
    base_asset: str = ""
    quote_asset: str = "USDT"

    @property
    def price_precision(self) -> int:
        return max(0, -self.tick_size.normalize().as_tuple().exponent)  # type: ignore[operator]

    @property
    def quantity_precision(self) -> int:
        return max(0, -self.step_size.normalize().as_tuple().exponent)  # type: ignore[operator]


DEFAULT_SYMBOLS = (
    SymbolSpec(
        "BTCUSDT",
        tick_size=Decimal("0.10"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("1000"),
        market_max_qty=Decimal("120"),
        min_notional=Decimal("100"),
        price=Decimal("50000.00"),
        base_asset="BTC",
    ),
    SymbolSpec(
        "ETHUSDT",
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("10000"),
        market_max_qty=Decimal("2000"),
        min_notional=Decimal("20"),
        price=Decimal("3000.00"),
        base_asset="ETH",
    ),
)


@dataclass
class Position:
    symbol: str
    amount: Decimal = Decimal(0)  # signed: > 0 long, < 0 short
    entry_price: Decimal = Decimal(0)
    leverage: int = 20
    margin_type: str = "CROSSED"
    update_time: int = 0


@dataclass
class Order:
    """A regular order; ``record()`` is its Binance JSON shape."""

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal
    reduce_only: bool
    close_position: bool
    time_in_force: str
    created: int
    status: str = "NEW"
    executed_qty: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    update_time: int = 0
    orig_type: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_order_id,
            "price": str(self.price),
            "avgPrice": str(self.avg_price),
            "origQty": str(self.quantity),
            "executedQty": str(self.executed_qty),
            "cumQty": str(self.executed_qty),
            "cumQuote": str(self.executed_qty * self.avg_price),
            "timeInForce": self.time_in_force,
            "type": self.type,
            "reduceOnly": self.reduce_only,
            "closePosition": self.close_position,
            "side": self.side,
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": self.orig_type or self.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": self.created,
            "updateTime": self.update_time or self.created,
        }


@dataclass
class AlgoOrder:
    """A conditional order held by the Algo service; ``record()`` is its JSON shape."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    type: str
    trigger_price: Decimal
    quantity: Decimal
    close_position: bool
    reduce_only: bool
    created: int
    status: str = "NEW"
    actual_order_id: str = ""
    executed_qty: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    trigger_time: int = 0
    update_time: int = 0
    params: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "algoId": self.algo_id,
            "clientAlgoId": self.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": self.type,
            "symbol": self.symbol,
            "side": self.side,
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": str(self.quantity),
            "algoStatus": self.status,
            "actualOrderId": self.actual_order_id,
            "actualPrice": str(self.avg_price),
            "avgPrice": str(self.avg_price),
            "executedQty": str(self.executed_qty),
            "triggerPrice": str(self.trigger_price),
            "price": "0",
            "icebergQuantity": None,
            "tpTriggerPrice": "0",
            "tpPrice": "0",
            "slTriggerPrice": "0",
            "slPrice": "0",
            "tpOrderType": "",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": "CONTRACT_PRICE",
            "priceMatch": "NONE",
            "closePosition": self.close_position,
            "priceProtect": False,
            "reduceOnly": self.reduce_only,
            "createTime": self.created,
            "updateTime": self.update_time or self.created,
            "triggerTime": self.trigger_time,
            "goodTillDate": 0,
        }


def _decimal(params: Params, name: str, *, required: bool = True) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.") from None
    if not value.is_finite():
        raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def mandatory(name: str) -> VenueError:
    return VenueError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _flag(params: Params, name: str) -> bool:
    return params.get(name, "false").lower() == "true"


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


class Venue:
    """Exchange state machine. Every public method takes the lock."""

    def __init__(
        self,
        *,
        clock: Callable[[], int],
        emit: Emit,
        symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS,
        balance: Decimal = Decimal("10000"),
    ) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self._emit = emit
        self.symbols = {s.symbol: s for s in symbols}
        self.prices = {s.symbol: s.price for s in symbols}
        self.wallet = balance
        self.positions = {s.symbol: Position(s.symbol) for s in symbols}
        self.orders: list[Order] = []
        self.algo_orders: list[AlgoOrder] = []
        self.unique_client_ids = "open"  # or "all"
        self.trigger_faults: list[str] = []  # "REJECTED" / "EXPIRED", for the next stops
        self.trades_per_fill = 1
        self.dual_side = False
        self.multi_assets = False
        self.algo_amnesia_until = 0  # server ms
        self.hidden_until: dict[str, int] = {}  # client id -> server ms
        self.incidents: list[tuple[int, str, str]] = []  # (server ms, kind, client id)
        self.trades: list[dict[str, Any]] = []  # every fill, one row per trade
        self.protection_timeline: list[tuple[int, str, bool]] = []  # (ms, symbol, unprotected)
        self.countdowns: dict[str, int] = {}  # symbol -> server ms when countdownCancelAll fires
        self.countdown_cancels_algo = False
        self._order_ids = itertools.count(8_000_000_001)
        self._algo_ids = itertools.count(3_000_000_001)
        self._trade_ids = itertools.count(100_001)

    # ------------------------------------------------------------ queries

    def spec(self, symbol: str | None) -> SymbolSpec:
        if not symbol:
            raise mandatory("symbol")
        try:
            return self.symbols[symbol]
        except KeyError:
            raise VenueError(-1121, "Invalid symbol.") from None

    def exchange_info(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "timezone": "UTC",
            "serverTime": now,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [self._symbol_info(s) for s in self.symbols.values()],
        }

    @staticmethod
    def _symbol_info(s: SymbolSpec) -> dict[str, Any]:
        return {
            "symbol": s.symbol,
            "pair": s.symbol,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "baseAsset": s.base_asset,
            "quoteAsset": s.quote_asset,
            "marginAsset": s.quote_asset,
            "pricePrecision": s.price_precision,
            "quantityPrecision": s.quantity_precision,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "triggerProtect": "0.0500",
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": str(s.tick_size),
                    "maxPrice": "4529764",
                    "tickSize": str(s.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": str(s.min_qty),
                    "maxQty": str(s.max_qty),
                    "stepSize": str(s.step_size),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": str(s.min_qty),
                    "maxQty": str(s.market_max_qty),
                    "stepSize": str(s.step_size),
                },
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": str(s.min_notional)},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": ["LIMIT", "MARKET", *sorted(CONDITIONAL_TYPES)],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    def unrealized(self, symbol: str) -> Decimal:
        pos = self.positions[symbol]
        return (self.prices[symbol] - pos.entry_price) * pos.amount if pos.amount else Decimal(0)

    def used_margin(self) -> Decimal:
        return sum(
            (abs(p.amount) * p.entry_price / p.leverage for p in self.positions.values()),
            Decimal(0),
        )

    def available(self) -> Decimal:
        with self.lock:
            upnl = sum((self.unrealized(s) for s in self.symbols), Decimal(0))
            return self.wallet + min(upnl, Decimal(0)) - self.used_margin()

    def balances(self) -> list[dict[str, Any]]:
        with self.lock:
            upnl = sum((self.unrealized(s) for s in self.symbols), Decimal(0))
            available = self.available()
            return [
                {
                    "accountAlias": "SgsR",
                    "asset": "USDT",
                    "balance": str(self.wallet),
                    "crossWalletBalance": str(self.wallet),
                    "crossUnPnl": str(upnl),
                    "availableBalance": str(available),
                    "maxWithdrawAmount": str(available),
                    "marginAvailable": True,
                    "updateTime": self._clock(),
                }
            ]

    def position_risk(self, symbol: str | None, *, only_open: bool) -> list[dict[str, Any]]:
        with self.lock:
            if symbol:
                self.spec(symbol)
            out = []
            for pos in self.positions.values():
                if symbol and pos.symbol != symbol:
                    continue
                if only_open and not pos.amount:
                    continue
                mark = self.prices[pos.symbol]
                out.append(
                    {
                        "symbol": pos.symbol,
                        "positionSide": "BOTH",
                        "positionAmt": _fmt(pos.amount),
                        "entryPrice": _fmt(pos.entry_price),
                        "breakEvenPrice": _fmt(pos.entry_price),
                        "markPrice": str(mark),
                        "unRealizedProfit": _fmt(self.unrealized(pos.symbol)),
                        "liquidationPrice": "0",
                        "isolatedMargin": "0",
                        "notional": _fmt(pos.amount * mark),
                        "marginAsset": "USDT",
                        "isolatedWallet": "0",
                        "initialMargin": _fmt(abs(pos.amount) * mark / pos.leverage),
                        "maintMargin": "0",
                        "positionInitialMargin": _fmt(abs(pos.amount) * mark / pos.leverage),
                        "openOrderInitialMargin": "0",
                        "adl": 0,
                        "bidNotional": "0",
                        "askNotional": "0",
                        "leverage": str(pos.leverage),
                        "marginType": "cross" if pos.margin_type == "CROSSED" else "isolated",
                        "isAutoAddMargin": "false",
                        "maxNotionalValue": "1000000",
                        "updateTime": pos.update_time,
                    }
                )
            return [leg for row in out for leg in self._legs(row)] if self.dual_side else out

    @staticmethod
    def _legs(row: dict[str, Any]) -> list[dict[str, Any]]:
        """Hedge mode: a LONG and a SHORT row per symbol; the one-way amount sits in its leg."""
        amount = Decimal(row["positionAmt"])
        long_leg = {**row, "positionSide": "LONG", "positionAmt": _fmt(max(amount, Decimal(0)))}
        short_leg = {**row, "positionSide": "SHORT", "positionAmt": _fmt(min(amount, Decimal(0)))}
        return [short_leg, long_leg]

    def account(self) -> dict[str, Any]:
        with self.lock:
            bal = self.balances()[0]
            return {
                "totalInitialMargin": str(self.used_margin()),
                "totalMaintMargin": "0",
                "totalWalletBalance": bal["balance"],
                "totalUnrealizedProfit": bal["crossUnPnl"],
                "totalMarginBalance": str(self.wallet + Decimal(bal["crossUnPnl"])),
                "totalPositionInitialMargin": str(self.used_margin()),
                "totalOpenOrderInitialMargin": "0",
                "totalCrossWalletBalance": bal["balance"],
                "totalCrossUnPnl": bal["crossUnPnl"],
                "availableBalance": bal["availableBalance"],
                "maxWithdrawAmount": bal["maxWithdrawAmount"],
                "assets": [
                    {
                        "asset": "USDT",
                        "walletBalance": bal["balance"],
                        "unrealizedProfit": bal["crossUnPnl"],
                        "marginBalance": str(self.wallet + Decimal(bal["crossUnPnl"])),
                        "availableBalance": bal["availableBalance"],
                        "maxWithdrawAmount": bal["maxWithdrawAmount"],
                        "updateTime": bal["updateTime"],
                    }
                ],
                "positions": self.position_risk(None, only_open=True),
            }

    # ------------------------------------------------------- configuration

    def change_leverage(self, params: Params) -> dict[str, Any]:
        with self.lock:
            spec = self.spec(params.get("symbol"))
            raw = params.get("leverage")
            if not raw:
                raise mandatory("leverage")
            if not raw.isdigit() or not 1 <= int(raw) <= 125:
                raise VenueError(-4028, f"Leverage {raw} is not valid")
            pos = self.positions[spec.symbol]
            if pos.amount and pos.margin_type == "ISOLATED" and int(raw) < pos.leverage:
                raise VenueError(
                    -4161,
                    "Leverage reduction is not supported in Isolated Margin Mode "
                    "with open positions.",
                )
            pos.leverage = int(raw)
            return {"leverage": int(raw), "maxNotionalValue": "1000000", "symbol": spec.symbol}

    def change_margin_type(self, params: Params) -> dict[str, Any]:
        with self.lock:
            spec = self.spec(params.get("symbol"))
            wanted = (params.get("marginType") or "").upper()
            if wanted == "CROSS":
                wanted = "CROSSED"
            if wanted not in ("ISOLATED", "CROSSED"):
                raise mandatory("marginType")
            pos = self.positions[spec.symbol]
            if pos.margin_type == wanted:
                raise VenueError(-4046, "No need to change margin type.")
            if self.multi_assets and wanted == "ISOLATED":
                raise VenueError(
                    -4168, "Unable to adjust to isolated-margin mode under the Multi-Assets mode."
                )
            if pos.amount:
                raise VenueError(-4048, "Margin type cannot be changed if there exists position.")
            pos.margin_type = wanted
            return {"code": 200, "msg": "success"}

    def position_mode(self) -> dict[str, Any]:
        return {"dualSidePosition": self.dual_side}

    def multi_assets_mode(self) -> dict[str, Any]:
        return {"multiAssetsMargin": self.multi_assets}

    def _check_position_side(self, params: Params) -> None:
        """Hedge mode wants LONG/SHORT on every order and refuses reduceOnly."""
        side = params.get("positionSide", "BOTH")
        if self.dual_side and side not in ("LONG", "SHORT"):
            raise VenueError(-4061, "Order's position side does not match user's setting.")
        if not self.dual_side and side != "BOTH":
            raise VenueError(-4061, "Order's position side does not match user's setting.")
        if self.dual_side and "reduceOnly" in params:
            raise VenueError(-1106, "Parameter 'reduceOnly' sent when not required.")

    # ------------------------------------------------- switchable bad days

    def forget_algo_orders(self, seconds: float) -> None:
        """The algo service answers -2013/-2011 for existing orders for ``seconds``."""
        with self.lock:
            self.algo_amnesia_until = self._clock() + int(seconds * 1000)
            self.incidents.append((self._clock(), "algo_amnesia", ""))

    def hide(self, cid: str, seconds: float) -> None:
        """Order ``cid`` exists but queries and open lists do not show it for ``seconds``."""
        with self.lock:
            self.hidden_until[cid] = self._clock() + int(seconds * 1000)
            self.incidents.append((self._clock(), "hidden_order", cid))

    def _hidden(self, cid: str) -> bool:
        return self.hidden_until.get(cid, 0) > self._clock()

    def _algo_amnesia(self) -> bool:
        return self.algo_amnesia_until > self._clock()

    # ------------------------------------------------ protection timeline

    def _unprotected(self, symbol: str) -> bool:
        pos = self.positions[symbol]
        if not pos.amount:
            return False
        exit_side = "SELL" if pos.amount > 0 else "BUY"
        stops = [
            a
            for a in self.algo_orders
            if a.symbol == symbol
            and a.status == "NEW"
            and a.type == "STOP_MARKET"
            and a.side == exit_side
        ]
        covered = sum((a.quantity for a in stops if a.reduce_only), Decimal(0))
        return not (any(a.close_position for a in stops) or covered >= abs(pos.amount))

    def _note(self, symbol: str) -> None:
        """Record whether ``symbol`` stands unprotected now (only changes are kept)."""
        state = self._unprotected(symbol)
        last = next((s for _, sym, s in reversed(self.protection_timeline) if sym == symbol), False)
        if state != last:
            self.protection_timeline.append((self._clock(), symbol, state))

    def unprotected_spans(self, symbol: str) -> list[tuple[int, int]]:
        """(start ms, end ms) of every time ``symbol`` had a position without a stop-loss."""
        with self.lock:
            spans: list[tuple[int, int]] = []
            start: int | None = None
            for at, sym, state in self.protection_timeline:
                if sym != symbol:
                    continue
                if state and start is None:
                    start = at
                elif not state and start is not None:
                    spans.append((start, at))
                    start = None
            if start is not None:
                spans.append((start, self._clock()))
            return spans

    # ------------------------------------------------------------- orders

    def _check_client_id(self, cid: str) -> None:
        """Binance: "a unique id among open orders" — a filled order's id may be reused.

        So a blind resend of a filled MARKET order *does* create a second order
        here, as on the venue; tests catch that through ``orders``. With
        ``unique_client_ids="all"`` every id ever used is refused instead.
        """
        if not CLIENT_ID_RE.match(cid):
            raise VenueError(-4015, "Client order id is not valid.")
        strict = self.unique_client_ids == "all"
        taken = any(
            o.client_order_id == cid and (strict or o.status == "NEW") for o in self.orders
        ) or any(
            a.client_algo_id == cid and (strict or a.status == "NEW") for a in self.algo_orders
        )
        if taken:
            raise VenueError(-4116, "ClientOrderId is duplicated.")

    def _check_quantity(self, spec: SymbolSpec, qty: Decimal, *, market: bool) -> None:
        if qty <= 0:
            raise VenueError(-4003, "Quantity less than or equal to zero.")
        if qty % spec.step_size:
            raise VenueError(-1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty:
            raise VenueError(-4003, "Quantity less than or equal to zero.")
        if qty > (spec.market_max_qty if market else spec.max_qty):
            raise VenueError(-4005, "Quantity greater than max quantity.")

    def _check_price(self, spec: SymbolSpec, price: Decimal) -> None:
        if price <= 0:
            raise VenueError(-4013, "Price less than min price.")
        if price % spec.tick_size:
            raise VenueError(-1111, "Precision is over the maximum defined for this asset.")

    def new_order(self, params: Params) -> dict[str, Any]:
        """POST /fapi/v1/order."""
        with self.lock:
            spec = self.spec(params.get("symbol"))
            side = params.get("side", "")
            if side not in ("BUY", "SELL"):
                raise mandatory("side")
            kind = params.get("type", "")
            if not kind:
                raise mandatory("type")
            if kind in CONDITIONAL_TYPES:
                raise VenueError(
                    -4120,
                    "Order type not supported for this endpoint. "
                    "Please use the Algo Order API endpoints instead.",
                )
            if kind not in ("MARKET", "LIMIT"):
                raise VenueError(-1116, "Invalid orderType.")
            self._check_position_side(params)
            cid = params.get("newClientOrderId") or f"fake-{next(self._trade_ids)}"
            self._check_client_id(cid)
            qty = _decimal(params, "quantity")
            assert qty is not None
            self._check_quantity(spec, qty, market=kind == "MARKET")
            reduce_only = _flag(params, "reduceOnly")
            price = Decimal(0)
            if kind == "LIMIT":
                price_value = _decimal(params, "price")
                assert price_value is not None
                price = price_value
                self._check_price(spec, price)
                if not params.get("timeInForce"):
                    raise mandatory("timeInForce")
            reference = price if kind == "LIMIT" else self.prices[spec.symbol]
            if not reduce_only and qty * reference < spec.min_notional:
                raise VenueError(
                    -4164,
                    f"Order's notional must be no smaller than {_fmt(spec.min_notional)} "
                    "(unless you choose reduce only).",
                )
            signed = qty if side == "BUY" else -qty
            pos = self.positions[spec.symbol]
            if reduce_only and (not pos.amount or (pos.amount > 0) == (signed > 0)):
                raise VenueError(-2022, "ReduceOnly Order is rejected.")
            increase = self._increase(pos, signed)
            if increase:
                needed = increase * reference / pos.leverage + increase * reference * TAKER_FEE
                if needed > self.available():
                    raise VenueError(-2019, "Margin is insufficient.")
            now = self._clock()
            order = Order(
                order_id=next(self._order_ids),
                client_order_id=cid,
                symbol=spec.symbol,
                side=side,
                type=kind,
                quantity=qty,
                price=price,
                reduce_only=reduce_only,
                close_position=False,
                time_in_force=params.get("timeInForce", "GTC"),
                created=now,
                params=dict(params),
            )
            self.orders.append(order)
            ack = order.record()
            self._order_event(order, "NEW", "NEW")
            if kind == "MARKET":
                self._fill(order, self.prices[spec.symbol])
            elif order.time_in_force == "IOC":  # takes what crosses now, the rest expires
                market = self.prices[spec.symbol]
                if market <= price if side == "BUY" else market >= price:
                    self._fill(order, market)
                else:
                    order.status = "EXPIRED"
                    self._order_event(order, "EXPIRED", "EXPIRED")
            self._note(spec.symbol)
            if params.get("newOrderRespType", "ACK") == "RESULT":
                return order.record()
            return ack

    @staticmethod
    def _increase(pos: Position, signed: Decimal) -> Decimal:
        """How much of ``signed`` grows the absolute position."""
        if not pos.amount or (pos.amount > 0) == (signed > 0):
            return abs(signed)
        return max(Decimal(0), abs(signed) - abs(pos.amount))

    def _fill(self, order: Order, price: Decimal) -> None:
        pos = self.positions[order.symbol]
        qty = order.quantity - order.executed_qty
        signed = qty if order.side == "BUY" else -qty
        if order.reduce_only or order.close_position:
            if not pos.amount or (pos.amount > 0) == (signed > 0):
                order.status = "EXPIRED"
                order.update_time = self._clock()
                self._order_event(order, "EXPIRED", "EXPIRED")
                return
            qty = min(qty, abs(pos.amount))
        for part in self._trade_sizes(order.symbol, qty):
            self._fill_trade(order, part, price)

    def _trade_sizes(self, symbol: str, qty: Decimal) -> list[Decimal]:
        """``qty`` cut into ``trades_per_fill`` step-aligned trades (the last takes the rest)."""
        step = self.symbols[symbol].step_size
        count = max(1, self.trades_per_fill)
        part = (qty / count // step) * step
        if not part:
            return [qty]
        return [part] * (count - 1) + [qty - part * (count - 1)]

    def _fill_trade(self, order: Order, qty: Decimal, price: Decimal) -> None:
        pos = self.positions[order.symbol]
        signed = qty if order.side == "BUY" else -qty
        realized = Decimal(0)
        if pos.amount and (pos.amount > 0) != (signed > 0):
            closed = min(abs(signed), abs(pos.amount))
            direction = 1 if pos.amount > 0 else -1
            realized = (price - pos.entry_price) * closed * direction
        new_amount = pos.amount + signed
        if not new_amount:
            pos.entry_price = Decimal(0)
        elif not pos.amount or (pos.amount > 0) != (new_amount > 0):
            pos.entry_price = price
        elif (pos.amount > 0) == (signed > 0):
            pos.entry_price = (pos.entry_price * abs(pos.amount) + price * qty) / abs(new_amount)
        pos.amount = new_amount
        fee = (qty * price * TAKER_FEE).quantize(Decimal("0.00000001"))
        self.wallet += realized - fee
        now = self._clock()
        pos.update_time = now
        order.executed_qty += qty
        order.avg_price = price
        done = order.executed_qty >= order.quantity or not pos.amount
        order.status = "FILLED" if done else "PARTIALLY_FILLED"
        order.update_time = now
        self.trades.append(
            {
                "client_order_id": order.client_order_id,
                "order_id": order.order_id,
                "qty": qty,
                "price": price,
                "commission": fee,
                "realized_pnl": realized,
            }
        )
        self._order_event(
            order,
            "TRADE",
            order.status,
            last_qty=qty,
            last_price=price,
            fee=fee,
            realized=realized,
        )
        self._emit(
            {
                "e": "ACCOUNT_UPDATE",
                "E": now,
                "T": now,
                "a": {
                    "m": "ORDER",
                    "B": [{"a": "USDT", "wb": str(self.wallet), "cw": str(self.wallet), "bc": "0"}],
                    "P": [
                        {
                            "s": pos.symbol,
                            "pa": _fmt(pos.amount),
                            "ep": _fmt(pos.entry_price),
                            "bep": _fmt(pos.entry_price),
                            "cr": _fmt(realized),
                            "up": _fmt(self.unrealized(pos.symbol)),
                            "mt": "cross" if pos.margin_type == "CROSSED" else "isolated",
                            "iw": "0",
                            "ps": "BOTH",
                        }
                    ],
                },
            }
        )

    def _order_event(
        self,
        order: Order,
        execution: str,
        status: str,
        *,
        last_qty: Decimal = Decimal(0),
        last_price: Decimal = Decimal(0),
        fee: Decimal = Decimal(0),
        realized: Decimal = Decimal(0),
    ) -> None:
        now = self._clock()
        self._emit(
            {
                "e": "ORDER_TRADE_UPDATE",
                "E": now,
                "T": now,
                "o": {
                    "s": order.symbol,
                    "c": order.client_order_id,
                    "S": order.side,
                    "o": order.type,
                    "f": order.time_in_force,
                    "q": str(order.quantity),
                    "p": str(order.price),
                    "ap": str(order.avg_price),
                    "sp": "0",
                    "x": execution,
                    "X": status,
                    "i": order.order_id,
                    "l": str(last_qty),
                    "z": str(order.executed_qty),
                    "L": str(last_price),
                    "N": "USDT",
                    "n": str(fee),
                    "T": now,
                    "t": next(self._trade_ids) if execution == "TRADE" else 0,
                    "b": "0",
                    "a": "0",
                    "m": False,
                    "R": order.reduce_only,
                    "wt": "CONTRACT_PRICE",
                    "ot": order.orig_type or order.type,
                    "ps": "BOTH",
                    "cp": order.close_position,
                    "rp": _fmt(realized),
                    "pP": False,
                    "si": 0,
                    "ss": 0,
                    "V": "EXPIRE_MAKER",
                    "pm": "NONE",
                    "gtd": 0,
                },
            }
        )

    def find_order(self, params: Params) -> Order:
        symbol = self.spec(params.get("symbol")).symbol
        oid, cid = params.get("orderId"), params.get("origClientOrderId")
        if not oid and not cid:
            raise VenueError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        for order in self.orders:
            if order.symbol != symbol:
                continue
            if (oid and str(order.order_id) == oid) or (cid and order.client_order_id == cid):
                if self._hidden(order.client_order_id):
                    break
                return order
        raise VenueError(-2013, "Order does not exist.")

    def get_order(self, params: Params) -> dict[str, Any]:
        with self.lock:
            return self.find_order(params).record()

    def cancel_order(self, params: Params) -> dict[str, Any]:
        with self.lock:
            order = self.find_order(params)
            if order.status != "NEW":
                raise VenueError(-2011, "Unknown order sent.")
            self._cancel(order)
            return order.record()

    def _cancel(self, order: Order) -> None:
        order.status = "CANCELED"
        order.update_time = self._clock()
        self._order_event(order, "CANCELED", "CANCELED")
        self._note(order.symbol)

    def open_orders(self, params: Params) -> list[dict[str, Any]]:
        with self.lock:
            symbol = params.get("symbol")
            return [
                o.record()
                for o in self.orders
                if o.status == "NEW"
                and (not symbol or o.symbol == symbol)
                and not self._hidden(o.client_order_id)
            ]

    def cancel_all(self, params: Params) -> dict[str, Any]:
        with self.lock:
            symbol = self.spec(params.get("symbol")).symbol
            for order in self.orders:
                if order.symbol == symbol and order.status == "NEW":
                    self._cancel(order)
            return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ---------------------------------------------------------- algo orders

    def new_algo_order(self, params: Params) -> dict[str, Any]:
        """POST /fapi/v1/algoOrder (algoType CONDITIONAL)."""
        with self.lock:
            algo_type = params.get("algoType")
            if not algo_type:
                raise mandatory("algoType")
            if algo_type != "CONDITIONAL":
                raise VenueError(-4500, "Invalid algoType.")
            spec = self.spec(params.get("symbol"))
            side = params.get("side", "")
            if side not in ("BUY", "SELL"):
                raise mandatory("side")
            kind = params.get("type", "")
            if not kind:
                raise mandatory("type")
            if kind not in ALGO_TYPES_SUPPORTED:
                raise VenueError(-1116, "Invalid orderType.")
            self._check_position_side(params)
            cid = params.get("clientAlgoId") or f"fakealgo-{next(self._trade_ids)}"
            self._check_client_id(cid)
            trigger = _decimal(params, "triggerPrice")
            assert trigger is not None
            self._check_price(spec, trigger)
            close_position = _flag(params, "closePosition")
            qty = _decimal(params, "quantity", required=not close_position)
            if close_position and qty is not None:
                raise VenueError(
                    -4136, "Target strategy invalid for orderType MARKET,closePosition true"
                )
            if qty is not None:
                self._check_quantity(spec, qty, market=True)
            if self._would_trigger(kind, side, trigger, self.prices[spec.symbol]):
                raise VenueError(-2021, "Order would immediately trigger.")
            if close_position and any(
                a.symbol == spec.symbol
                and a.side == side
                and a.type == kind
                and a.close_position
                and a.status == "NEW"
                for a in self.algo_orders
            ):
                raise VenueError(
                    -4130,
                    "An open stop or take profit order with GTE and closePosition "
                    "in the direction is existing.",
                )
            now = self._clock()
            algo = AlgoOrder(
                algo_id=next(self._algo_ids),
                client_algo_id=cid,
                symbol=spec.symbol,
                side=side,
                type=kind,
                trigger_price=trigger,
                quantity=qty or Decimal(0),
                close_position=close_position,
                reduce_only=_flag(params, "reduceOnly"),
                created=now,
                params=dict(params),
            )
            self.algo_orders.append(algo)
            self._algo_event(algo)
            self._note(spec.symbol)
            return algo.record()

    @staticmethod
    def _would_trigger(kind: str, side: str, trigger: Decimal, price: Decimal) -> bool:
        stop = kind.startswith("STOP")
        # A SELL stop fires when the price falls to it; a SELL take-profit when it rises to it.
        falls_to = (side == "SELL") == stop
        return price <= trigger if falls_to else price >= trigger

    def _algo_event(self, algo: AlgoOrder, reason: str = "") -> None:
        now = self._clock()
        self._emit(
            {
                "e": "ALGO_UPDATE",
                "T": now,
                "E": now,
                "o": {
                    "caid": algo.client_algo_id,
                    "aid": algo.algo_id,
                    "at": "CONDITIONAL",
                    "o": algo.type,
                    "s": algo.symbol,
                    "S": algo.side,
                    "ps": "BOTH",
                    "f": "GTC",
                    "q": str(algo.quantity),
                    "X": algo.status,
                    "ai": algo.actual_order_id,
                    "ap": str(algo.avg_price),
                    "aq": str(algo.executed_qty),
                    "act": "MARKET" if algo.actual_order_id else "",
                    "tp": str(algo.trigger_price),
                    "p": "0",
                    "V": "EXPIRE_MAKER",
                    "wt": "CONTRACT_PRICE",
                    "pm": "NONE",
                    "cp": algo.close_position,
                    "pP": False,
                    "R": algo.reduce_only,
                    "tt": algo.trigger_time,
                    "gtd": 0,
                    "rm": reason,
                },
            }
        )

    def find_algo(self, params: Params) -> AlgoOrder:
        aid, cid = params.get("algoId"), params.get("clientAlgoId")
        if not aid and not cid:
            raise VenueError(
                -1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!"
            )
        if self._algo_amnesia():
            raise VenueError(-2013, "Order does not exist.")
        for algo in self.algo_orders:
            if (aid and str(algo.algo_id) == aid) or (cid and algo.client_algo_id == cid):
                if self._hidden(algo.client_algo_id):
                    break
                return algo
        raise VenueError(-2013, "Order does not exist.")

    def get_algo_order(self, params: Params) -> dict[str, Any]:
        with self.lock:
            return self.find_algo(params).record()

    def cancel_algo_order(self, params: Params) -> dict[str, Any]:
        with self.lock:
            if self._algo_amnesia():
                raise VenueError(-2011, "Unknown order sent.")
            algo = self.find_algo(params)
            if algo.status != "NEW":
                raise VenueError(-2011, "Unknown order sent.")
            self._cancel_algo(algo)
            return {
                "algoId": algo.algo_id,
                "clientAlgoId": algo.client_algo_id,
                "code": "200",
                "msg": "success",
            }

    def _cancel_algo(self, algo: AlgoOrder) -> None:
        algo.status = "CANCELED"
        algo.update_time = self._clock()
        self._algo_event(algo)
        self._note(algo.symbol)

    def open_algo_orders(self, params: Params) -> list[dict[str, Any]]:
        with self.lock:
            symbol = params.get("symbol")
            return [
                a.record()
                for a in self.algo_orders
                if a.status == "NEW"
                and (not symbol or a.symbol == symbol)
                and not self._hidden(a.client_algo_id)
            ]

    def cancel_all_algo(self, params: Params) -> dict[str, Any]:
        with self.lock:
            symbol = self.spec(params.get("symbol")).symbol
            for algo in self.algo_orders:
                if algo.symbol == symbol and algo.status == "NEW":
                    self._cancel_algo(algo)
            return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ------------------------------------------------- dead-man's switch

    def countdown_cancel_all(self, params: Params) -> dict[str, Any]:
        """POST /fapi/v1/countdownCancelAll: (re)start the symbol's timer; 0 stops it."""
        with self.lock:
            symbol = self.spec(params.get("symbol")).symbol
            raw = params.get("countdownTime")
            if not raw:
                raise mandatory("countdownTime")
            if not raw.isdigit():
                raise VenueError(-1100, "Illegal characters found in parameter 'countdownTime'.")
            countdown = int(raw)
            if countdown:
                self.countdowns[symbol] = self._clock() + countdown
            else:
                self.countdowns.pop(symbol, None)
            return {"symbol": symbol, "countdownTime": str(countdown)}

    def expire_countdowns(self) -> None:
        """Fire every lapsed timer: the symbol's open orders are cancelled, positions stay."""
        with self.lock:
            now = self._clock()
            for symbol, fires_at in list(self.countdowns.items()):
                if fires_at > now:
                    continue
                del self.countdowns[symbol]
                self.incidents.append((now, "countdown_fired", symbol))
                self.cancel_all({"symbol": symbol})
                if self.countdown_cancels_algo:
                    self.cancel_all_algo({"symbol": symbol})

    # -------------------------------------------------------------- market

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move the market: fill crossing LIMIT orders, then trigger crossing algo orders."""
        with self.lock:
            self.spec(symbol)
            self.prices[symbol] = price
            for order in list(self.orders):
                if order.symbol != symbol or order.status != "NEW" or order.type != "LIMIT":
                    continue
                crosses = price <= order.price if order.side == "BUY" else price >= order.price
                if crosses:
                    self._fill(order, order.price)
            for algo in list(self.algo_orders):
                if algo.symbol != symbol or algo.status != "NEW":
                    continue
                if self._would_trigger(algo.type, algo.side, algo.trigger_price, price):
                    self._trigger(algo, price)
            self._note(symbol)

    def _trigger(self, algo: AlgoOrder, price: Decimal) -> None:
        pos = self.positions[algo.symbol]
        now = self._clock()
        algo.trigger_time = now
        algo.update_time = now
        algo.status = "TRIGGERING"
        self._algo_event(algo)
        qty = abs(pos.amount) if algo.close_position else algo.quantity
        closes = pos.amount and (pos.amount > 0) == (algo.side == "SELL")
        if not qty or (algo.close_position and not closes):
            algo.status = "EXPIRED"
            self._algo_event(algo)
            self._note(algo.symbol)
            return
        fault = ""
        if algo.type == "STOP_MARKET" and self.trigger_faults:
            fault = self.trigger_faults.pop(0)
        if fault == "REJECTED":
            algo.status = "REJECTED"
            self.incidents.append((now, "stop_rejected", algo.client_algo_id))
            self._algo_event(algo, reason="Margin is insufficient.")
            self._note(algo.symbol)
            return
        order = Order(
            order_id=next(self._order_ids),
            client_order_id=algo.client_algo_id,
            symbol=algo.symbol,
            side=algo.side,
            type="MARKET",
            quantity=qty,
            price=Decimal(0),
            reduce_only=algo.reduce_only or algo.close_position,
            close_position=algo.close_position,
            time_in_force="GTC",
            created=now,
            orig_type=algo.type,
        )
        self.orders.append(order)
        algo.actual_order_id = str(order.order_id)
        algo.status = "TRIGGERED"
        self._algo_event(algo)
        self._order_event(order, "NEW", "NEW")
        if fault == "EXPIRED":
            self.incidents.append((now, "stop_expired", algo.client_algo_id))
            order.status = "EXPIRED"
            self._order_event(order, "EXPIRED", "EXPIRED")
        else:
            self._fill(order, price)
        algo.executed_qty = order.executed_qty
        algo.avg_price = order.avg_price
        algo.status = "FINISHED"
        algo.update_time = self._clock()
        self._algo_event(algo)
        self._note(algo.symbol)
