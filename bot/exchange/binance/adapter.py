"""BinanceExchange: the exchange port on Binance USD-M futures, through python-binance.

Calls go through the synchronous ``binance.client.Client`` (injected, or built
here) with a ``requests`` timeout. ``base_url`` (BINANCE_FUTURES_URL, scheme
and host only) replaces python-binance's ``FUTURES_URL``/``FUTURES_TESTNET_URL``
class attributes on the instance (``<base_url>/fapi`` — the SDK appends
``/v1/...``). The client is built with ``ping=False``: python-binance's
constructor would otherwise ping the *spot* API, which the override does not
cover. Conditional orders go through the Algo Order API
(``futures_create_algo_order``, ``/fapi/v1/algoOrder``); the legacy order
endpoint answers -4120 for them. Cancel-all cancels regular and algo orders.

The algo service is known to answer -2013 / -2011 ("no such order") for
orders it holds, for minutes at a time. So "no such order" from it is checked
against the open-order lists before it is believed: a query returns the order
as listed, and a cancel that the venue calls unknown while the order is still
listed raises :class:`~bot.errors.TemporaryExchangeError`, which the execution
layer retries (bounded, audited) until the order is really gone.

The adapter audits only what only it sees (stream restarts and keepalive
failures, in :mod:`.streams`); orders, retries and errors are audited by the
execution layer.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from binance.client import Client

from bot.audit import AuditLogger
from bot.errors import TemporaryExchangeError, UnknownOutcomeError, VenueRejectedError
from bot.exchange.base import OrderUpdateHandler
from bot.exchange.binance.errors import translate_errors, unless_no_such_order
from bot.exchange.binance.parsing import (
    CONDITIONAL_TYPES,
    UserEventMapper,
    algo_order_result,
    decimal_text,
    flag,
    order_result,
    symbol_filters,
    to_float,
)
from bot.exchange.binance.streams import StreamSpec, StreamSupervisor
from bot.models import (
    AccountModes,
    Balance,
    MarginType,
    OrderResult,
    OrderSide,
    OrderType,
    OrderUpdate,
    Position,
    SymbolFilters,
)

log = logging.getLogger("bot.exchange.binance")

LIVE_REST_URL = "https://fapi.binance.com"
TESTNET_REST_URL = "https://testnet.binancefuture.com"
LIVE_WS_URL = "wss://fstream.binance.com"
TESTNET_WS_URL = "wss://fstream.binancefuture.com"
MARGIN_TYPE_UNCHANGED = -4046


class BinanceExchange:
    """The :class:`bot.exchange.base.Exchange` port on Binance USD-M futures."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        testnet: bool = False,
        base_url: str | None = None,
        ws_url: str | None = None,
        audit: AuditLogger | None = None,
        request_timeout: float = 10.0,
        recv_window: int = 5000,
        stream_options: Mapping[str, Any] | None = None,
        client: Client | None = None,
    ) -> None:
        self.testnet = testnet
        self._secrets = (api_key, api_secret)
        self._rest_url = (base_url or (TESTNET_REST_URL if testnet else LIVE_REST_URL)).rstrip("/")
        self._ws_url = (ws_url or (TESTNET_WS_URL if testnet else LIVE_WS_URL)).rstrip("/")
        self._client = client or Client(api_key, api_secret, testnet=testnet, ping=False)
        self._client.FUTURES_URL = self._client.FUTURES_TESTNET_URL = self._rest_url + "/fapi"
        self._client.REQUEST_TIMEOUT = request_timeout
        self._client.REQUEST_RECVWINDOW = recv_window
        self._filters: dict[str, SymbolFilters] = {}
        self._leverage: dict[str, int] = {}
        self._margin: dict[str, MarginType] = {}
        self._handlers: list[OrderUpdateHandler] = []
        self._on_connected: list[Callable[[], None]] = []
        self._mapper = UserEventMapper()
        self._updates: queue.Queue[OrderUpdate | None] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._streams = StreamSupervisor(
            rest_url=self._rest_url,
            ws_url=self._ws_url,
            api_key=api_key,
            testnet=testnet,
            audit=audit,
            request_timeout=request_timeout,
            secrets=self._secrets,
            **dict(stream_options or {}),
        )
        self._closed = False

    @property
    def name(self) -> str:
        return "binance-testnet" if self.testnet else "binance"

    @property
    def streams(self) -> StreamSupervisor:
        return self._streams

    def _call(
        self,
        operation: str,
        method: str,
        *,
        order_post: bool = False,
        client_order_id: str | None = None,
        **params: Any,
    ) -> Any:
        with translate_errors(
            operation,
            order_post=order_post,
            client_order_id=client_order_id,
            secrets=self._secrets,
        ):
            return getattr(self._client, method)(**params)

    # ---------------------------------------------------------------- clock

    def server_time(self) -> int:
        return int(self._call("server_time", "futures_time")["serverTime"])

    def sync_clock(self) -> int:
        before = time.time() * 1000
        server = self.server_time()
        after = time.time() * 1000
        offset = int(server - (before + after) / 2)
        self._client.timestamp_offset = offset
        return offset

    # -------------------------------------------------------- configuration

    def symbol_filters(self, symbol: str) -> SymbolFilters:
        if symbol not in self._filters:
            info = self._call("symbol_filters", "futures_exchange_info")
            for entry in info.get("symbols", []):
                self._filters[str(entry["symbol"])] = symbol_filters(entry)
        try:
            return self._filters[symbol]
        except KeyError:
            raise VenueRejectedError(-1121, "Invalid symbol.") from None

    def set_leverage(self, symbol: str, leverage: int) -> int:
        raw = self._call(
            "set_leverage", "futures_change_leverage", symbol=symbol, leverage=leverage
        )
        applied = int(raw.get("leverage", leverage))
        self._leverage[symbol] = applied
        return applied

    def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        try:
            self._call(
                "set_margin_type",
                "futures_change_margin_type",
                symbol=symbol,
                marginType=margin_type.value,
            )
        except VenueRejectedError as exc:
            if exc.code != MARGIN_TYPE_UNCHANGED:
                raise
        self._margin[symbol] = margin_type

    def account_modes(self) -> AccountModes:
        dual = self._call("account_modes", "futures_get_position_mode")
        multi = self._call("account_modes", "futures_get_multi_assets_mode")
        return AccountModes(
            hedge_mode=flag(dual.get("dualSidePosition")),
            multi_assets=flag(multi.get("multiAssetsMargin")),
        )

    # -------------------------------------------------------------- queries

    def balance(self, asset: str = "USDT") -> Balance:
        rows = self._call("balance", "futures_account_balance")
        for row in rows:
            if row.get("asset") == asset:
                return Balance(
                    asset=asset,
                    wallet_balance=to_float(row.get("balance")),
                    available_balance=to_float(row.get("availableBalance")),
                    unrealized_pnl=to_float(row.get("crossUnPnl")),
                )
        return Balance(asset=asset, wallet_balance=0.0, available_balance=0.0)

    def position(self, symbol: str) -> Position:
        rows = self._call("position", "futures_position_information", symbol=symbol)
        row = next((r for r in rows if r.get("symbol") == symbol), None)
        leverage = self._leverage.get(symbol, 1)
        margin = self._margin.get(symbol, MarginType.CROSSED)
        if row is None:
            return Position(symbol=symbol, leverage=leverage, margin_type=margin)
        if row.get("leverage"):  # v2 shape; v3 leaves leverage and margin type out
            leverage = int(to_float(row["leverage"], leverage))
        if row.get("marginType"):
            isolated = str(row["marginType"]).lower() == "isolated"
            margin = MarginType.ISOLATED if isolated else MarginType.CROSSED
        return Position(
            symbol=symbol,
            amount=to_float(row.get("positionAmt")),
            entry_price=to_float(row.get("entryPrice")),
            leverage=leverage,
            margin_type=margin,
            unrealized_pnl=to_float(row.get("unRealizedProfit")),
            mark_price=to_float(row.get("markPrice")),
        )

    def open_orders(self, symbol: str) -> list[OrderResult]:
        regular = self._call("open_orders", "futures_get_open_orders", symbol=symbol)
        algo = self._call("open_orders", "futures_get_open_algo_orders", symbol=symbol)
        return [order_result(r) for r in regular] + [algo_order_result(a) for a in algo]

    def query_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        regular = unless_no_such_order(
            lambda: order_result(
                self._call(
                    "query_order",
                    "futures_get_order",
                    symbol=symbol,
                    origClientOrderId=client_order_id,
                )
            )
        )
        if regular is not None:
            return regular
        algo = unless_no_such_order(
            lambda: algo_order_result(
                self._call(
                    "query_order",
                    "futures_get_algo_order",
                    symbol=symbol,
                    clientAlgoId=client_order_id,
                )
            )
        )
        return algo if algo is not None else self._listed(symbol, client_order_id)

    def _listed(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """The order as the open-order lists show it: the check on a "no such order" answer."""
        return next(
            (o for o in self.open_orders(symbol) if o.client_order_id == client_order_id), None
        )

    # --------------------------------------------------------------- orders

    def place_market_order(
        self,
        symbol: str,
        side: OrderSide,
        quantity: float,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> OrderResult:
        return self._new_order(
            "place_market_order",
            client_order_id,
            reduce_only,
            symbol=symbol,
            side=side.value,
            type=OrderType.MARKET.value,
            quantity=decimal_text(quantity),
        )

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
        return self._new_order(
            "place_limit_ioc",
            client_order_id,
            reduce_only,
            symbol=symbol,
            side=side.value,
            type=OrderType.LIMIT.value,
            timeInForce="IOC",
            quantity=decimal_text(quantity),
            price=decimal_text(price),
        )

    def _new_order(
        self, operation: str, client_order_id: str, reduce_only: bool, **params: Any
    ) -> OrderResult:
        """POST /fapi/v1/order with our client id, answered with the fill (``RESULT``)."""
        if reduce_only:
            params["reduceOnly"] = "true"
        raw = self._call(
            operation,
            "futures_create_order",
            order_post=True,
            client_order_id=client_order_id,
            newClientOrderId=client_order_id,
            newOrderRespType="RESULT",
            **params,
        )
        return self._parsed(order_result, raw, client_order_id)

    def place_conditional_order(
        self,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        stop_price: float,
        client_order_id: str,
    ) -> OrderResult:
        if order_type.value not in CONDITIONAL_TYPES:
            raise ValueError(f"{order_type} is not a conditional order type")
        raw = self._call(
            "place_conditional_order",
            "futures_create_algo_order",
            order_post=True,
            client_order_id=client_order_id,
            algoType="CONDITIONAL",
            symbol=symbol,
            side=side.value,
            type=order_type.value,
            triggerPrice=decimal_text(stop_price),
            closePosition="true",
            workingType="CONTRACT_PRICE",
            clientAlgoId=client_order_id,
        )
        return self._parsed(algo_order_result, raw, client_order_id)

    @staticmethod
    def _parsed(
        parse: Callable[[Mapping[str, Any]], OrderResult], raw: Any, client_order_id: str
    ) -> OrderResult:
        """Parse an order answer; an unreadable one leaves the outcome unknown."""
        try:
            return parse(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise UnknownOutcomeError(
                f"order answer unreadable ({type(exc).__name__}: {exc})",
                client_order_id=client_order_id,
            ) from None

    def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        # Conditional orders first: the bot cancels take-profit/stop-loss siblings far
        # more often than anything else.
        def cancel_algo() -> OrderResult:
            self._call(
                "cancel_order",
                "futures_cancel_algo_order",
                symbol=symbol,
                clientAlgoId=client_order_id,
            )
            return algo_order_result(
                self._call(
                    "cancel_order",
                    "futures_get_algo_order",
                    symbol=symbol,
                    clientAlgoId=client_order_id,
                )
            )

        algo = unless_no_such_order(cancel_algo)
        if algo is not None:
            return algo
        regular = unless_no_such_order(
            lambda: order_result(
                self._call(
                    "cancel_order",
                    "futures_cancel_order",
                    symbol=symbol,
                    origClientOrderId=client_order_id,
                )
            )
        )
        if regular is not None:
            return regular
        if self._listed(symbol, client_order_id) is not None:
            raise TemporaryExchangeError(
                f"cancel_order: the venue answered 'unknown order' for {client_order_id}, "
                "but still lists it open"
            )
        return None

    def cancel_all_orders(self, symbol: str) -> int:
        count = len(self.open_orders(symbol))
        self._call("cancel_all_orders", "futures_cancel_all_open_orders", symbol=symbol)
        self._call("cancel_all_orders", "futures_cancel_all_algo_open_orders", symbol=symbol)
        return count

    def set_cancel_countdown(self, symbol: str, milliseconds: int) -> None:
        # The answer only echoes the request ({"symbol", "countdownTime"}): nothing to read.
        self._call(
            "set_cancel_countdown",
            "futures_countdown_cancel_all",
            symbol=symbol,
            countdownTime=milliseconds,
        )

    # --------------------------------------------------------------- events

    def subscribe_order_updates(
        self, handler: OrderUpdateHandler, *, on_connected: Callable[[], None] | None = None
    ) -> None:
        self._handlers.append(handler)
        if on_connected is not None:
            self._on_connected.append(on_connected)
        if self._dispatcher is not None:
            return
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="binance-order-updates", daemon=True
        )
        self._dispatcher.start()
        self._streams.add(
            StreamSpec(
                name="user_data_stream",
                open=lambda bsm: bsm.futures_user_socket(),
                on_message=self._on_user_event,
                on_connected=self._user_stream_connected,
                keepalive=True,
            )
        )

    def _user_stream_connected(self) -> None:
        """After every (re)connect: subscribers look up what the stream missed meanwhile."""
        for callback in list(self._on_connected):
            try:
                callback()
            except Exception:  # a subscriber bug must not restart the stream
                log.exception("order stream reconnect handler failed")

    def _on_user_event(self, event: dict[str, Any]) -> None:
        update = self._mapper.map(event)
        if update is not None:
            self._updates.put(update)

    def _dispatch(self) -> None:
        """Deliver updates on our own thread so a slow handler never stalls the socket."""
        while True:
            update = self._updates.get()
            if update is None:
                return
            for handler in list(self._handlers):
                try:
                    handler(update)
                except Exception:
                    log.exception("order update handler failed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._streams.close()
        if self._dispatcher is not None:
            self._updates.put(None)
            self._dispatcher.join(timeout=5)
        with contextlib.suppress(Exception):
            self._client.close_connection()
