"""The venue's records: positions, regular orders and algo orders, in Binance's JSON shapes.

Each order knows its two faces: ``record()`` is what REST queries answer and
``update_event()`` what the user-data stream pushes (ORDER_TRADE_UPDATE,
ALGO_UPDATE) — plain data, so the state machine decides *when* and these
decide only *what it looks like*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.fakebinance.params import fmt


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

    def update_event(
        self,
        execution: str,
        status: str,
        *,
        now: int,
        trade_id: int,
        last_qty: Decimal,
        last_price: Decimal,
        fee: Decimal,
        realized: Decimal,
    ) -> dict[str, Any]:
        """The ORDER_TRADE_UPDATE push: execution type ``execution`` (x), status ``status`` (X)."""
        return {
            "e": "ORDER_TRADE_UPDATE",
            "E": now,
            "T": now,
            "o": {
                "s": self.symbol,
                "c": self.client_order_id,
                "S": self.side,
                "o": self.type,
                "f": self.time_in_force,
                "q": str(self.quantity),
                "p": str(self.price),
                "ap": str(self.avg_price),
                "sp": "0",
                "x": execution,
                "X": status,
                "i": self.order_id,
                "l": str(last_qty),
                "z": str(self.executed_qty),
                "L": str(last_price),
                "N": "USDT",
                "n": str(fee),
                "T": now,
                "t": trade_id,
                "b": "0",
                "a": "0",
                "m": False,
                "R": self.reduce_only,
                "wt": "CONTRACT_PRICE",
                "ot": self.orig_type or self.type,
                "ps": "BOTH",
                "cp": self.close_position,
                "rp": fmt(realized),
                "pP": False,
                "si": 0,
                "ss": 0,
                "V": "EXPIRE_MAKER",
                "pm": "NONE",
                "gtd": 0,
            },
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

    def update_event(self, *, now: int, reason: str) -> dict[str, Any]:
        """The ALGO_UPDATE push; ``reason`` is its ``rm`` (why a trigger was rejected)."""
        return {
            "e": "ALGO_UPDATE",
            "T": now,
            "E": now,
            "o": {
                "caid": self.client_algo_id,
                "aid": self.algo_id,
                "at": "CONDITIONAL",
                "o": self.type,
                "s": self.symbol,
                "S": self.side,
                "ps": "BOTH",
                "f": "GTC",
                "q": str(self.quantity),
                "X": self.status,
                "ai": self.actual_order_id,
                "ap": str(self.avg_price),
                "aq": str(self.executed_qty),
                "act": "MARKET" if self.actual_order_id else "",
                "tp": str(self.trigger_price),
                "p": "0",
                "V": "EXPIRE_MAKER",
                "wt": "CONTRACT_PRICE",
                "pm": "NONE",
                "cp": self.close_position,
                "pP": False,
                "R": self.reduce_only,
                "tt": self.trigger_time,
                "gtd": 0,
                "rm": reason,
            },
        }
