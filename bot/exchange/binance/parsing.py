"""Venue JSON -> :mod:`bot.models` value objects. Pure: no I/O, no SDK import.

REST answers (regular and algo orders, exchangeInfo filters), websocket
events (klines, ``ORDER_TRADE_UPDATE``, ``ALGO_UPDATE``) and the decimal text
the venue expects. Fills: each ``ORDER_TRADE_UPDATE`` of a trade carries that
trade's realized PnL (``rp``) and commission (``n``); :class:`UserEventMapper`
sums them over every trade of the order, so the final FILLED update reports
the order's totals. Market quantities follow MARKET_LOT_SIZE (the bot sends
quantities only on MARKET orders).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bot.models import (
    Candle,
    OrderResult,
    OrderSide,
    OrderStatus,
    OrderType,
    OrderUpdate,
    SymbolFilters,
)

log = logging.getLogger("bot.exchange.binance")

CONDITIONAL_TYPES = frozenset({OrderType.TAKE_PROFIT_MARKET.value, OrderType.STOP_MARKET.value})


def decimal_text(value: float) -> str:
    """A float as the plain decimal string the venue expects (no exponent, no float noise)."""
    text = format(Decimal(repr(value)).normalize(), "f")
    return text if text != "-0" else "0"


def to_float(raw: Any, default: float = 0.0) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return default


def _int_or_none(raw: Any) -> int | None:
    try:
        return int(raw) if raw not in (None, "", 0, "0") else None
    except (TypeError, ValueError):
        return None


_ORDER_STATUS = {
    "NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}
_ALGO_STATUS = {
    "NEW": OrderStatus.NEW,
    "TRIGGERING": OrderStatus.TRIGGERED,
    "TRIGGERED": OrderStatus.TRIGGERED,
    "CANCELED": OrderStatus.CANCELED,
    "EXPIRED": OrderStatus.EXPIRED,
    "REJECTED": OrderStatus.REJECTED,
}


def _order_type(raw: Any) -> OrderType:
    try:
        return OrderType(str(raw))
    except ValueError:
        log.warning("order type %r is not one the bot places; reported as MARKET", raw)
        return OrderType.MARKET


def _status(table: Mapping[str, OrderStatus], raw: Any) -> OrderStatus:
    # An unknown status counts as live: treating it as dead could make the
    # execution layer resend an order that exists.
    return table.get(str(raw), OrderStatus.NEW)


def flag(raw: Any) -> bool:
    """A venue boolean, sent as JSON ``true`` or as the string ``"true"``."""
    return raw is True or str(raw).lower() == "true"


def order_result(raw: Mapping[str, Any]) -> OrderResult:
    """A regular order (``/fapi/v1/order``) as the port's value object."""
    stop = to_float(raw.get("stopPrice"))
    return OrderResult(
        symbol=str(raw["symbol"]),
        client_order_id=str(raw["clientOrderId"]),
        order_type=_order_type(raw.get("origType") or raw.get("type")),
        side=OrderSide(str(raw["side"])),
        status=_status(_ORDER_STATUS, raw.get("status")),
        order_id=_int_or_none(raw.get("orderId")),
        quantity=to_float(raw.get("origQty")),
        filled_quantity=to_float(raw.get("executedQty")),
        avg_price=to_float(raw.get("avgPrice")),
        stop_price=stop or None,
        update_time=int(raw.get("updateTime") or raw.get("time") or 0),
        close_position=flag(raw.get("closePosition")),
        reduce_only=flag(raw.get("reduceOnly")),
    )


def algo_order_result(raw: Mapping[str, Any]) -> OrderResult:
    """A conditional order of the Algo Order API as the port's value object."""
    executed = to_float(raw.get("executedQty"))
    algo_status = str(raw.get("algoStatus", ""))
    if algo_status == "FINISHED":
        status = OrderStatus.FILLED if executed else OrderStatus.EXPIRED
    else:
        status = _status(_ALGO_STATUS, algo_status)
    return OrderResult(
        symbol=str(raw["symbol"]),
        client_order_id=str(raw["clientAlgoId"]),
        order_type=_order_type(raw.get("orderType") or raw.get("type")),
        side=OrderSide(str(raw["side"])),
        status=status,
        order_id=_int_or_none(raw.get("actualOrderId")),
        algo_id=_int_or_none(raw.get("algoId")),
        quantity=to_float(raw.get("quantity")),
        filled_quantity=executed,
        avg_price=to_float(raw.get("avgPrice") or raw.get("actualPrice")),
        stop_price=to_float(raw.get("triggerPrice")) or None,
        update_time=int(raw.get("updateTime") or raw.get("createTime") or 0),
        close_position=flag(raw.get("closePosition")),
        reduce_only=flag(raw.get("reduceOnly")),
    )


def symbol_filters(info: Mapping[str, Any]) -> SymbolFilters:
    """PRICE_FILTER / LOT_SIZE / MARKET_LOT_SIZE / MIN_NOTIONAL of one exchangeInfo symbol.

    The bot sends quantities only on MARKET orders, which the venue checks
    against MARKET_LOT_SIZE: its step wins when it has one.
    """
    by_type = {f.get("filterType"): f for f in info.get("filters", [])}
    price = by_type.get("PRICE_FILTER", {})
    lot = by_type.get("LOT_SIZE", {})
    market_lot = by_type.get("MARKET_LOT_SIZE", {})
    notional = by_type.get("MIN_NOTIONAL", {})
    band = by_type.get("PERCENT_PRICE", {})
    max_qty = min(
        (q for q in (to_float(lot.get("maxQty")), to_float(market_lot.get("maxQty"))) if q > 0),
        default=float("inf"),
    )
    return SymbolFilters(
        symbol=str(info["symbol"]),
        tick_size=to_float(price.get("tickSize")),
        step_size=to_float(market_lot.get("stepSize")) or to_float(lot.get("stepSize")),
        min_qty=max(to_float(lot.get("minQty")), to_float(market_lot.get("minQty"))),
        min_notional=to_float(notional.get("notional", notional.get("minNotional"))),
        max_qty=max_qty,
        percent_price_up=to_float(band.get("multiplierUp")),
        percent_price_down=to_float(band.get("multiplierDown")),
    )


def candle_from_event(event: Mapping[str, Any]) -> Candle | None:
    """The candle of a websocket ``kline`` event, or None for anything else."""
    if event.get("e") != "kline" or "k" not in event:
        return None
    k = event["k"]
    return Candle(
        symbol=str(k.get("s") or event.get("s")),
        interval=str(k["i"]),
        open_time=int(k["t"]),
        open=float(k["o"]),
        high=float(k["h"]),
        low=float(k["l"]),
        close=float(k["c"]),
        volume=float(k["v"]),
        close_time=int(k["T"]),
        closed=bool(k["x"]),
    )


class UserEventMapper:
    """Turns user-data events into :class:`OrderUpdate`; remembers triggered algo orders.

    A conditional order reports through ``ALGO_UPDATE`` until it triggers;
    its fill then arrives as the ``ORDER_TRADE_UPDATE`` of a new market order,
    which is reported under the *algo* order's client id (``ai`` links them),
    so the bot sees "its" take-profit or stop-loss fill.
    """

    def __init__(self) -> None:
        self._triggered: dict[int, tuple[str, int | None, OrderType]] = {}
        self._sums: dict[int, tuple[Decimal, Decimal]] = {}  # order id -> (rp, n) so far

    def map(self, event: Mapping[str, Any]) -> OrderUpdate | None:
        kind = event.get("e")
        if kind == "ORDER_TRADE_UPDATE":
            return self._order(event)
        if kind == "ALGO_UPDATE":
            return self._algo(event)
        return None

    def _order(self, event: Mapping[str, Any]) -> OrderUpdate | None:
        o = event.get("o") or {}
        original = str(o.get("ot") or o.get("o"))
        order_id = _int_or_none(o.get("i"))
        linked = self._triggered.get(order_id or -1)
        if linked is not None:
            cid, algo_id, order_type = linked
        elif original in CONDITIONAL_TYPES or str(o.get("o")) in ("MARKET", "LIMIT"):
            cid, algo_id, order_type = str(o.get("c")), None, _order_type(original)
        else:
            return None  # order types the bot never places
        status = _status(_ORDER_STATUS, o.get("X"))
        if linked is not None and status is OrderStatus.NEW:
            return None  # the algo update already said TRIGGERED
        realized, commission = self._sums.get(order_id or -1, (Decimal(0), Decimal(0)))
        if str(o.get("x")) == "TRADE":
            realized += Decimal(str(o.get("rp") or 0))
            commission += Decimal(str(o.get("n") or 0))
        if status.is_final:
            self._triggered.pop(order_id or -1, None)
            self._sums.pop(order_id or -1, None)
        else:
            self._sums[order_id or -1] = (realized, commission)
        return OrderUpdate(
            symbol=str(o.get("s")),
            client_order_id=cid,
            order_type=order_type,
            side=OrderSide(str(o.get("S"))),
            status=status,
            order_id=order_id,
            algo_id=algo_id,
            filled_quantity=to_float(o.get("z")),
            avg_price=to_float(o.get("ap")),
            realized_pnl=float(realized),
            commission=float(commission),
            event_time=int(event.get("E") or 0),
        )

    def _algo(self, event: Mapping[str, Any]) -> OrderUpdate | None:
        o = event.get("o") or {}
        algo_status = str(o.get("X"))
        cid = str(o.get("caid"))
        algo_id = _int_or_none(o.get("aid"))
        order_type = _order_type(o.get("o"))
        actual = _int_or_none(o.get("ai"))
        if actual is not None and algo_status in ("TRIGGERING", "TRIGGERED"):
            self._triggered[actual] = (cid, algo_id, order_type)
        if algo_status == "TRIGGERING":
            return None
        if algo_status == "FINISHED":
            if to_float(o.get("aq")):
                return None  # the fill is reported by the triggered order's ORDER_TRADE_UPDATE
            status = OrderStatus.EXPIRED
        else:
            status = _status(_ALGO_STATUS, algo_status)
        return OrderUpdate(
            symbol=str(o.get("s")),
            client_order_id=cid,
            order_type=order_type,
            side=OrderSide(str(o.get("S"))),
            status=status,
            order_id=actual,
            algo_id=algo_id,
            filled_quantity=to_float(o.get("aq")),
            avg_price=to_float(o.get("ap")),
            event_time=int(event.get("E") or event.get("T") or 0),
        )
