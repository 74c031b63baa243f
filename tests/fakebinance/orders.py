"""Regular orders (``/fapi/v1/order``): checks, matching and fills, as in one-way mode.

* MARKET orders fill at once at the symbol's current price (taker fee 0.04 %).
  The default response type is ACK (status NEW, nothing executed yet), as on
  Binance; ``newOrderRespType=RESULT`` returns the fill.
* LIMIT orders rest and fill when the price crosses them (``set_price`` in
  ``venue.py``); with ``timeInForce=IOC`` they fill at once at the market
  price when it crosses them and expire otherwise.
* Conditional types (STOP_MARKET, TAKE_PROFIT_MARKET, ...) are refused with
  -4120: they live in the Algo Order service (``algo.py``), whose triggered
  orders fill here as MARKET orders.
* ``trades_per_fill`` (a switch, 1 by default): market orders fill in that many
  trades, each with its own ``rp`` / ``n``.

Every fill moves the position and the wallet and pushes ORDER_TRADE_UPDATE and
ACCOUNT_UPDATE; every trade is kept in ``trades``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from tests.fakebinance.account import Account
from tests.fakebinance.baddays import BadDays
from tests.fakebinance.params import Params, VenueError, decimal_param, flag, fmt, mandatory
from tests.fakebinance.records import Order, Position
from tests.fakebinance.symbols import CONDITIONAL_TYPES, check_price, check_quantity
from tests.fakebinance.timeline import ProtectionTimeline

TAKER_FEE = Decimal("0.0004")
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


class OrderBook(Account, BadDays, ProtectionTimeline):
    """Place, fill, query and cancel regular orders."""

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
            qty = decimal_param(params, "quantity")
            assert qty is not None
            check_quantity(spec, qty, market=kind == "MARKET")
            reduce_only = flag(params, "reduceOnly")
            price = Decimal(0)
            if kind == "LIMIT":
                price_value = decimal_param(params, "price")
                assert price_value is not None
                price = price_value
                check_price(spec, price)
                if not params.get("timeInForce"):
                    raise mandatory("timeInForce")
            reference = price if kind == "LIMIT" else self.prices[spec.symbol]
            if not reduce_only and qty * reference < spec.min_notional:
                raise VenueError(
                    -4164,
                    f"Order's notional must be no smaller than {fmt(spec.min_notional)} "
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
                            "pa": fmt(pos.amount),
                            "ep": fmt(pos.entry_price),
                            "bep": fmt(pos.entry_price),
                            "cr": fmt(realized),
                            "up": fmt(self.unrealized(pos.symbol)),
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
        trade_id = next(self._trade_ids) if execution == "TRADE" else 0
        self._emit(
            order.update_event(
                execution,
                status,
                now=self._clock(),
                trade_id=trade_id,
                last_qty=last_qty,
                last_price=last_price,
                fee=fee,
                realized=realized,
            )
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
