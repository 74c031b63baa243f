"""What the fake venue trades: its symbols, their filters and the candle intervals.

A :class:`SymbolSpec` is one USD-M perpetual as ``exchangeInfo`` describes it;
the checks here are its PRICE_FILTER and LOT_SIZE / MARKET_LOT_SIZE filters,
applied to every order (regular and algo) with Binance's codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.fakebinance.params import VenueError

# Listed in exchangeInfo; placed only through the Algo Order service (-4120 on /fapi/v1/order).
CONDITIONAL_TYPES = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)
# The candle intervals the fake serves (klines.py), in milliseconds.
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


def check_quantity(spec: SymbolSpec, qty: Decimal, *, market: bool) -> None:
    if qty <= 0:
        raise VenueError(-4003, "Quantity less than or equal to zero.")
    if qty % spec.step_size:
        raise VenueError(-1111, "Precision is over the maximum defined for this asset.")
    if qty < spec.min_qty:
        raise VenueError(-4003, "Quantity less than or equal to zero.")
    if qty > (spec.market_max_qty if market else spec.max_qty):
        raise VenueError(-4005, "Quantity greater than max quantity.")


def check_price(spec: SymbolSpec, price: Decimal) -> None:
    if price <= 0:
        raise VenueError(-4013, "Price less than min price.")
    if price % spec.tick_size:
        raise VenueError(-1111, "Precision is over the maximum defined for this asset.")


def exchange_info(specs: Iterable[SymbolSpec], now: int) -> dict[str, Any]:
    """GET /fapi/v1/exchangeInfo at server time ``now``."""
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
        "symbols": [_symbol_info(s) for s in specs],
    }


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
