"""The Algo Order service (``/fapi/v1/algoOrder``): conditional orders and how they trigger.

Binance moved STOP_MARKET / TAKE_PROFIT_MARKET (algoType CONDITIONAL) out of
``/fapi/v1/order`` into this service. An algo order triggers when the price
crosses its ``triggerPrice`` (``set_price`` in ``venue.py``) and becomes a
regular MARKET order that fills in ``orders.py``; a triggered order's sibling
stays open (the bot cancels it), like on the venue. A second closePosition
order of one type and side is refused with -4130.

Its bad days: ``trigger_faults`` (the next stop-losses to trigger end
``REJECTED`` — the algo order, reason in ``rm`` — or ``EXPIRED`` — the
triggered market order — leaving the position open), and the amnesia of
``forget_algo_orders`` (``baddays.py``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.fakebinance.orders import OrderBook
from tests.fakebinance.params import Params, VenueError, decimal_param, flag, mandatory
from tests.fakebinance.records import AlgoOrder, Order
from tests.fakebinance.symbols import check_price, check_quantity

ALGO_TYPES_SUPPORTED = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET"})


class AlgoService(OrderBook):
    """Place, query, cancel and trigger conditional (TP/SL) orders."""

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
            trigger = decimal_param(params, "triggerPrice")
            assert trigger is not None
            check_price(spec, trigger)
            close_position = flag(params, "closePosition")
            qty = decimal_param(params, "quantity", required=not close_position)
            if close_position and qty is not None:
                raise VenueError(
                    -4136, "Target strategy invalid for orderType MARKET,closePosition true"
                )
            if qty is not None:
                check_quantity(spec, qty, market=True)
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
                reduce_only=flag(params, "reduceOnly"),
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
        self._emit(algo.update_event(now=self._clock(), reason=reason))

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
