"""BinanceExchange: the exchange port on Binance USD-M futures, through python-binance.

This module (with ``bot/market/binance.py``) is the only place that imports
``binance``. Everything the SDK, ``requests`` or the venue can throw is
translated into :mod:`bot.errors` in ONE place, :func:`translate_errors`::

    HTTP 429 / 418, code -1003          -> RateLimitError(retry_after=Retry-After header)
    code -1021                          -> ClockSkewError
    -1001, -1008, 503 "Service Unavailable."
                                        -> TemporaryExchangeError (not processed)
    order POST: other 5xx, 408, -1000, -1006, -1007 (whatever the HTTP
      status), read timeout, connection lost after sending
                                        -> UnknownOutcomeError(client_order_id)
    the same on reads and cancels,
      connection refused, connect timeout -> TemporaryExchangeError
    any other venue code                -> VenueRejectedError(code, msg unchanged)

Calls go through the real synchronous ``binance.client.Client`` with a
``requests`` timeout. ``base_url`` (BINANCE_FUTURES_URL, scheme and host only)
replaces python-binance's ``FUTURES_URL``/``FUTURES_TESTNET_URL`` class
attributes on the instance (``<base_url>/fapi`` — the SDK appends
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

Fills: each ``ORDER_TRADE_UPDATE`` of a trade carries that trade's realized
PnL (``rp``) and commission (``n``); :class:`UserEventMapper` sums them over
every trade of the order, so the final FILLED update reports the order's
totals. Market quantities follow MARKET_LOT_SIZE (the bot sends quantities
only on MARKET orders).

Websockets (:class:`StreamSupervisor`): python-binance's own async
``BinanceSocketManager`` on a private event loop thread, NOT its
``ThreadedWebsocketManager``. The manager's ``FSTREAM_URL`` instance attribute
can be pointed at BINANCE_WS_URL, and its ``AsyncClient`` (used for the
listenKey) at BINANCE_FUTURES_URL, which the threaded manager does not allow
(it builds both internally, and ``AsyncClient.create`` pings the spot API).
We keep the SDK's reconnect logic and add what it lacks:

* when it gives up reconnecting (``BinanceWebsocketUnableToConnect``, after
  which its threaded manager would flood callbacks with error dicts), when its
  queue overflows (``BinanceWebsocketQueueOverflow``), when the read loop is
  gone (``ReadLoopClosed``), when a stream falls silent for too long, or when
  the listenKey expired, the stream is torn down and reopened with bounded
  exponential backoff, and the restart is audited (``api_error``, operation
  ``user_data_stream`` / ``kline_stream``);
* the listenKey is kept alive here (PUT every ``keepalive_interval``), so a
  failing keepalive is audited and leads to a fresh key; the SDK's own timer
  is disabled;
* a stream loses what is published while it is down, so after every
  (re)connect, ours or the SDK's own, the stream's ``on_connected`` runs before
  messages flow again: the kline feed refills missed candles from REST, the
  order-update subscriber looks up the orders it tracks (``query_order``).

The adapter audits only what only it sees (stream restarts and keepalive
failures); orders, retries and errors are audited by the execution layer.
Nothing here logs or audits the API key, the secret or a signature: error
texts are scrubbed before they leave this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from binance.async_client import AsyncClient
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException, ReadLoopClosed
from binance.ws.streams import BinanceSocketManager

from bot.audit import AuditEventType, AuditLogger
from bot.errors import (
    ClockSkewError,
    ExchangeError,
    RateLimitError,
    TemporaryExchangeError,
    UnknownOutcomeError,
    VenueRejectedError,
)
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

log = logging.getLogger("bot.exchange.binance")

LIVE_REST_URL = "https://fapi.binance.com"
TESTNET_REST_URL = "https://testnet.binancefuture.com"
LIVE_WS_URL = "wss://fstream.binance.com"
TESTNET_WS_URL = "wss://fstream.binancefuture.com"

NO_SUCH_ORDER = frozenset({-2013, -2011})  # "Order does not exist." / "Unknown order sent."
MARGIN_TYPE_UNCHANGED = -4046
# "Internal error; unable to process your request." / "Server is currently overloaded ...":
# the request was not processed, whatever the endpoint.
NOT_EXECUTED_CODES = frozenset({-1001, -1008})
# "An unknown error occurred while processing the request." / "Unexpected response from the
# message bus" / "Timeout waiting for response from backend server": execution status
# unknown, whatever the HTTP status that carries them.
UNKNOWN_OUTCOME_CODES = frozenset({-1000, -1006, -1007})
UNKNOWN_OUTCOME_STATUSES = frozenset({408})  # backend timeout behind the gateway
CONDITIONAL_TYPES = frozenset({OrderType.TAKE_PROFIT_MARKET.value, OrderType.STOP_MARKET.value})


# --------------------------------------------------------------------------- errors

_SIGNATURE_RE = re.compile(r"(signature=)[^&\s'\"]+", re.I)


def _unless_no_such_order(attempt: Callable[[], OrderResult]) -> OrderResult | None:
    """The attempt's order, or None when the venue answers that there is no such order."""
    try:
        return attempt()
    except VenueRejectedError as exc:
        if exc.code in NO_SUCH_ORDER:
            return None
        raise


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` without signatures or the given secret values (URLs in errors carry them)."""
    text = _SIGNATURE_RE.sub(r"\1[REDACTED]", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


class SignatureScrubber(logging.Filter):
    """Rewrites log records so no request signature reaches a handler.

    urllib3 logs every request line (query string included, hence the
    ``signature``) at DEBUG; a bot run with ``--log-level debug`` must still
    not write it anywhere.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's problem, not ours
            return True
        if "signature=" in message.lower():
            record.msg, record.args = scrub(message), None
        return True


_SCRUBBED_LOGGERS = ("urllib3.connectionpool", "binance.base_client", "binance.client")
for _name in _SCRUBBED_LOGGERS:
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, SignatureScrubber) for f in _logger.filters):
        _logger.addFilter(SignatureScrubber())


def _retry_after(exc: BinanceAPIException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _never_sent(exc: requests.RequestException) -> bool:
    """A network error that happened before the request left this host."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    text = repr(exc)
    return isinstance(exc, requests.ConnectionError) and (
        "NewConnectionError" in text or "Failed to establish a new connection" in text
    )


def translate_api_exception(
    exc: BinanceAPIException,
    operation: str,
    *,
    order_post: bool = False,
    client_order_id: str | None = None,
) -> ExchangeError:
    """The :mod:`bot.errors` kind of one venue error answer (see the module docstring)."""
    status = int(getattr(exc, "status_code", 0) or 0)
    code = int(exc.code or 0)
    message = str(exc.message or "")
    if status in (418, 429) or code == -1003:
        return RateLimitError(
            f"{operation}: HTTP {status} {code}: {message}",
            retry_after=_retry_after(exc),
            status=status or 429,
        )
    if code == -1021:
        return ClockSkewError(f"{operation}: {code}: {message}")
    described = f"{operation}: HTTP {status} {code}: {message}"
    if code in NOT_EXECUTED_CODES or (status == 503 and message == "Service Unavailable."):
        return TemporaryExchangeError(described)
    if status >= 500 or status in UNKNOWN_OUTCOME_STATUSES or code in UNKNOWN_OUTCOME_CODES:
        if order_post:
            return UnknownOutcomeError(described, client_order_id=client_order_id)
        return TemporaryExchangeError(described)
    return VenueRejectedError(code, message)


@contextlib.contextmanager
def translate_errors(
    operation: str,
    *,
    order_post: bool = False,
    client_order_id: str | None = None,
    secrets: tuple[str, ...] = (),
) -> Iterator[None]:
    """The one place where SDK and network exceptions become :mod:`bot.errors` kinds.

    ``order_post``: the call creates an order, so a lost answer means the
    outcome is unknown (the venue may have executed it), not "try again".
    """
    try:
        yield
    except BinanceAPIException as exc:
        raise translate_api_exception(
            exc, operation, order_post=order_post, client_order_id=client_order_id
        ) from None
    except BinanceRequestException as exc:  # a 2xx answer that is not JSON
        message = f"{operation}: unreadable answer: {scrub(str(exc.message), secrets)[:200]}"
        if order_post:
            raise UnknownOutcomeError(message, client_order_id=client_order_id) from None
        raise TemporaryExchangeError(message) from None
    except requests.RequestException as exc:
        message = f"{operation}: {type(exc).__name__}: {scrub(str(exc), secrets)[:300]}"
        if order_post and not _never_sent(exc):
            raise UnknownOutcomeError(message, client_order_id=client_order_id) from None
        raise TemporaryExchangeError(message) from None
    except (OSError, ValueError) as exc:  # socket-level or JSON decoding trouble below requests
        message = f"{operation}: {type(exc).__name__}: {scrub(str(exc), secrets)[:300]}"
        if order_post:
            raise UnknownOutcomeError(message, client_order_id=client_order_id) from None
        raise TemporaryExchangeError(message) from None


# ----------------------------------------------------------------- venue -> models


def decimal_text(value: float) -> str:
    """A float as the plain decimal string the venue expects (no exponent, no float noise)."""
    text = format(Decimal(repr(value)).normalize(), "f")
    return text if text != "-0" else "0"


def _float(raw: Any, default: float = 0.0) -> float:
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


def _flag(raw: Any) -> bool:
    """A venue boolean, sent as JSON ``true`` or as the string ``"true"``."""
    return raw is True or str(raw).lower() == "true"


def order_result(raw: Mapping[str, Any]) -> OrderResult:
    """A regular order (``/fapi/v1/order``) as the port's value object."""
    stop = _float(raw.get("stopPrice"))
    return OrderResult(
        symbol=str(raw["symbol"]),
        client_order_id=str(raw["clientOrderId"]),
        order_type=_order_type(raw.get("origType") or raw.get("type")),
        side=OrderSide(str(raw["side"])),
        status=_status(_ORDER_STATUS, raw.get("status")),
        order_id=_int_or_none(raw.get("orderId")),
        quantity=_float(raw.get("origQty")),
        filled_quantity=_float(raw.get("executedQty")),
        avg_price=_float(raw.get("avgPrice")),
        stop_price=stop or None,
        update_time=int(raw.get("updateTime") or raw.get("time") or 0),
        close_position=_flag(raw.get("closePosition")),
        reduce_only=_flag(raw.get("reduceOnly")),
    )


def algo_order_result(raw: Mapping[str, Any]) -> OrderResult:
    """A conditional order of the Algo Order API as the port's value object."""
    executed = _float(raw.get("executedQty"))
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
        quantity=_float(raw.get("quantity")),
        filled_quantity=executed,
        avg_price=_float(raw.get("avgPrice") or raw.get("actualPrice")),
        stop_price=_float(raw.get("triggerPrice")) or None,
        update_time=int(raw.get("updateTime") or raw.get("createTime") or 0),
        close_position=_flag(raw.get("closePosition")),
        reduce_only=_flag(raw.get("reduceOnly")),
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
        (q for q in (_float(lot.get("maxQty")), _float(market_lot.get("maxQty"))) if q > 0),
        default=float("inf"),
    )
    return SymbolFilters(
        symbol=str(info["symbol"]),
        tick_size=_float(price.get("tickSize")),
        step_size=_float(market_lot.get("stepSize")) or _float(lot.get("stepSize")),
        min_qty=max(_float(lot.get("minQty")), _float(market_lot.get("minQty"))),
        min_notional=_float(notional.get("notional", notional.get("minNotional"))),
        max_qty=max_qty,
        percent_price_up=_float(band.get("multiplierUp")),
        percent_price_down=_float(band.get("multiplierDown")),
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


def closed_klines(client: Any, symbol: str, interval: str, limit: int, now_ms: int) -> list[Candle]:
    """The latest ``limit`` closed candles via REST, oldest first.

    Without ``endTime`` the venue's last row is always the candle in progress
    (time buckets exist even without trades), so it is dropped whatever the
    clocks say; rows whose close time is not yet past ``now_ms`` are dropped too.
    """
    if limit <= 0:
        return []
    with translate_errors("klines"):
        rows = client.futures_klines(symbol=symbol, interval=interval, limit=min(limit + 1, 1500))
    candles = [Candle.from_kline_row(symbol, interval, row) for row in rows[:-1]]
    return [c for c in candles if c.close_time < now_ms][-limit:]


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
            filled_quantity=_float(o.get("z")),
            avg_price=_float(o.get("ap")),
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
            if _float(o.get("aq")):
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
            filled_quantity=_float(o.get("aq")),
            avg_price=_float(o.get("ap")),
            event_time=int(event.get("E") or event.get("T") or 0),
        )


# --------------------------------------------------------------------------- streams


class _Restart(Exception):
    """Tear the stream down and open it again; ``kind`` names the reason."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


# The SDK reports these and reconnects by itself: not a reason to restart.
_TRANSIENT_STREAM_ERRORS = frozenset(
    {
        "BinanceWebsocketClosed",
        "ConnectionClosedError",
        "ConnectionClosedOK",
        "IncompleteReadError",
        "gaierror",
    }
)


@dataclass(frozen=True)
class StreamSpec:
    """One supervised stream.

    ``open`` builds the SDK socket from a fresh ``BinanceSocketManager``;
    ``on_message`` gets every payload (combined-stream envelopes removed) on the
    stream thread and must be quick; ``on_connected`` runs in a worker thread
    after every (re)connect, ours and the SDK's own, before the next message is
    delivered (e.g. to backfill what a gap lost).
    """

    name: str
    open: Callable[[Any], Any]
    on_message: Callable[[dict[str, Any]], None]
    on_connected: Callable[[], None] | None = None
    stale_after: float | None = None
    keepalive: bool = False


_RESYNC_POLL = 0.05  # seconds between looks at a reconnecting SDK socket


def _sdk_streaming(socket: Any) -> bool:
    """Whether an SDK socket is connected again (python-binance 1.0.37: ``ws_state``, ``ws``)."""
    state = getattr(socket, "ws_state", None)
    conn = getattr(socket, "ws", None)
    return (
        getattr(state, "name", "") == "STREAMING"
        and conn is not None
        and getattr(getattr(conn, "state", None), "name", "") == "OPEN"
    )


def _drain(socket: Any) -> list[Any]:
    """What is left in an SDK socket's queue (python-binance 1.0.37: ``_queue``)."""
    pending = getattr(socket, "_queue", None)
    items: list[Any] = []
    while pending is not None:
        try:
            items.append(pending.get_nowait())
        except (asyncio.QueueEmpty, AttributeError):
            break
    return items


class StreamSupervisor:
    """python-binance socket manager on a private loop thread, with restarts and audit."""

    def __init__(
        self,
        *,
        rest_url: str,
        ws_url: str,
        api_key: str | None = None,
        testnet: bool = False,
        audit: AuditLogger | None = None,
        request_timeout: float = 10.0,
        max_reconnects: int = 5,
        restart_backoff: float = 1.0,
        restart_backoff_max: float = 30.0,
        keepalive_interval: float = 30 * 60.0,
        max_queue_size: int = 100,
        read_timeout: float = 1.0,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._rest_url = rest_url.rstrip("/")
        self._ws_url = ws_url.rstrip("/") + "/"
        self._api_key = api_key
        self._testnet = testnet
        self._audit = audit
        self._request_timeout = request_timeout
        self._max_reconnects = max_reconnects
        self._backoff = restart_backoff
        self._backoff_max = restart_backoff_max
        self._keepalive_interval = keepalive_interval
        self._max_queue_size = max_queue_size
        self._read_timeout = read_timeout
        self._secrets = secrets
        self.restarts: Counter[str] = Counter()
        self.keepalives = 0
        self._connected: dict[str, threading.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            ready = threading.Event()
            loop = asyncio.new_event_loop()
            self._loop = loop

            def run() -> None:
                asyncio.set_event_loop(loop)
                try:
                    loop.run_until_complete(self._make_client())
                finally:
                    ready.set()
                loop.run_forever()
                loop.run_until_complete(self._teardown())
                loop.close()

            self._thread = threading.Thread(target=run, name="binance-streams", daemon=True)
            self._thread.start()
            ready.wait(10)

    def add(self, spec: StreamSpec) -> None:
        """Start supervising ``spec`` (starts the thread on first use)."""
        self.start()
        loop = self._loop
        assert loop is not None
        self._connected.setdefault(spec.name, threading.Event())

        def launch() -> None:
            self._tasks.append(loop.create_task(self._supervise(spec)))

        loop.call_soon_threadsafe(launch)

    def wait_connected(self, name: str, timeout: float) -> bool:
        """Block until stream ``name`` is connected (tests, startup)."""
        event = self._connected.setdefault(name, threading.Event())
        return event.wait(timeout)

    def close(self) -> None:
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return
            self._stopping = True
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            self._thread = None

    async def _make_client(self) -> None:
        # Built directly, not with AsyncClient.create(), which pings the spot API.
        client = AsyncClient(api_key=self._api_key, testnet=self._testnet)
        client.FUTURES_URL = client.FUTURES_TESTNET_URL = self._rest_url + "/fapi"
        client.REQUEST_TIMEOUT = self._request_timeout
        self._client = client

    async def _teardown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._read_timeout * 3 + 2)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close_connection()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)

    # ---------------------------------------------------------- supervision

    def _manager(self) -> Any:
        # A fresh manager per (re)start: the SDK caches sockets in it, also broken ones.
        bsm = BinanceSocketManager(
            self._client, user_timeout=10 * 365 * 24 * 3600, max_queue_size=self._max_queue_size
        )
        bsm.FSTREAM_URL = bsm.FSTREAM_TESTNET_URL = bsm.FSTREAM_DEMO_URL = self._ws_url
        return bsm

    async def _supervise(self, spec: StreamSpec) -> None:
        failures = 0
        while not self._stopping:
            healthy = [False]
            try:
                await self._run_once(spec, healthy)
                return
            except asyncio.CancelledError:
                return
            except _Restart as restart:
                kind, message = restart.kind, restart.message
            except Exception as exc:  # connect failures and anything the SDK throws
                kind, message = type(exc).__name__, str(exc)
            if self._stopping:
                return
            if healthy[0]:
                failures = 0
            delay = min(self._backoff * 2**failures, self._backoff_max)
            failures += 1
            self.restarts[spec.name] += 1
            self._audit_stream_error(spec.name, kind, message, delay)
            await asyncio.sleep(delay)

    def _audit_stream_error(self, name: str, kind: str, message: str, delay: float) -> None:
        text = scrub(message, self._secrets)[:300]
        log.warning("%s: %s (%s); restarting in %.1fs", name, kind, text, delay)
        if self._audit is not None:
            self._audit.log_event(
                AuditEventType.API_ERROR,
                name,
                error={
                    "error_type": kind,
                    "error_message": text,
                    "action": "restart_stream",
                    "restart": self.restarts[name],
                    "delay_seconds": delay,
                },
            )

    async def _run_once(self, spec: StreamSpec, healthy: list[bool]) -> None:
        socket = spec.open(self._manager())
        socket.MAX_RECONNECTS = self._max_reconnects
        socket.TIMEOUT = self._read_timeout  # bounds how long closing a socket takes
        connected = self._connected[spec.name]
        async with socket:
            connected.set()
            try:
                if spec.on_connected is not None:
                    await asyncio.get_running_loop().run_in_executor(None, spec.on_connected)
                jobs = [asyncio.ensure_future(self._pump(spec, socket, healthy))]
                if spec.keepalive:
                    jobs.append(asyncio.ensure_future(self._keep_alive(socket)))
                try:
                    done, _ = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for job in jobs:
                        job.cancel()
                    await asyncio.gather(*jobs, return_exceptions=True)
                for job in done:
                    job.result()  # re-raise _Restart
            finally:
                connected.clear()

    async def _pump(self, spec: StreamSpec, socket: Any, healthy: list[bool]) -> None:
        # After the SDK lost its connection it reconnects by itself, and what the
        # stream carried in between is gone: once it streams again, on_connected
        # runs as after our own restarts, before the next message is delivered.
        resync = False
        while not self._stopping:
            if resync and _sdk_streaming(socket):
                resync = False
                assert spec.on_connected is not None
                await asyncio.get_running_loop().run_in_executor(None, spec.on_connected)
            timeout = _RESYNC_POLL if resync else spec.stale_after
            try:
                if timeout:
                    msg = await asyncio.wait_for(socket.recv(), timeout)
                else:
                    msg = await socket.recv()
            except TimeoutError:
                if resync:
                    continue  # still reconnecting; the SDK bounds its own attempts
                raise _Restart(
                    "BinanceStreamStale", f"no message for {spec.stale_after}s"
                ) from None
            except ReadLoopClosed as exc:
                # The SDK refuses to hand out what it still buffers once its read loop
                # ended, including the error saying why: take both from its queue.
                for leftover in _drain(socket):
                    self._handle(spec, leftover, healthy)
                raise _Restart("ReadLoopClosed", str(exc)) from None
            if self._handle(spec, msg, healthy) and spec.on_connected is not None:
                resync = True

    @staticmethod
    def _handle(spec: StreamSpec, msg: Any, healthy: list[bool]) -> bool:
        """Deliver one SDK message, or raise :class:`_Restart` for a fatal one.

        Returns True when the message says the SDK lost its connection (it reconnects).
        """
        if not isinstance(msg, dict):
            return False
        if msg.get("e") == "error":
            kind = str(msg.get("type"))
            if kind in _TRANSIENT_STREAM_ERRORS:
                log.info("%s: %s (SDK reconnects)", spec.name, kind)
                return True
            raise _Restart(kind, str(msg.get("m", "")))
        data = msg["data"] if "stream" in msg and isinstance(msg.get("data"), dict) else msg
        if data.get("e") == "listenKeyExpired":
            raise _Restart("listenKeyExpired", "the venue expired the listen key")
        if "result" in data and "id" in data:
            return False  # answer to a SUBSCRIBE-style command
        healthy[0] = True
        try:
            spec.on_message(data)
        except Exception:  # a consumer bug must not kill the stream
            log.exception("%s: message handler failed", spec.name)
        return False

    async def _keep_alive(self, socket: Any) -> None:
        while not self._stopping:
            await asyncio.sleep(self._keepalive_interval)
            listen_key = getattr(socket, "_listen_key", None)
            if not listen_key:
                continue
            try:
                await self._client.futures_stream_keepalive(listenKey=listen_key)
                self.keepalives += 1
            except BinanceAPIException as exc:
                raise _Restart("ListenKeyKeepaliveFailed", f"{exc.code}: {exc.message}") from None
            except Exception as exc:  # network: try again next interval, say so
                log.warning("listenKey keepalive failed: %s", type(exc).__name__)
                if self._audit is not None:
                    self._audit.log_event(
                        AuditEventType.API_ERROR,
                        "user_data_stream_keepalive",
                        error={
                            "error_type": type(exc).__name__,
                            "error_message": scrub(str(exc), self._secrets)[:300],
                        },
                    )


# -------------------------------------------------------------------------- adapter


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
    ) -> None:
        self.testnet = testnet
        self._secrets = (api_key, api_secret)
        self._rest_url = (base_url or (TESTNET_REST_URL if testnet else LIVE_REST_URL)).rstrip("/")
        self._ws_url = (ws_url or (TESTNET_WS_URL if testnet else LIVE_WS_URL)).rstrip("/")
        self._client = Client(api_key, api_secret, testnet=testnet, ping=False)
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
            hedge_mode=_flag(dual.get("dualSidePosition")),
            multi_assets=_flag(multi.get("multiAssetsMargin")),
        )

    # -------------------------------------------------------------- queries

    def balance(self, asset: str = "USDT") -> Balance:
        rows = self._call("balance", "futures_account_balance")
        for row in rows:
            if row.get("asset") == asset:
                return Balance(
                    asset=asset,
                    wallet_balance=_float(row.get("balance")),
                    available_balance=_float(row.get("availableBalance")),
                    unrealized_pnl=_float(row.get("crossUnPnl")),
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
            leverage = int(_float(row["leverage"], leverage))
        if row.get("marginType"):
            isolated = str(row["marginType"]).lower() == "isolated"
            margin = MarginType.ISOLATED if isolated else MarginType.CROSSED
        return Position(
            symbol=symbol,
            amount=_float(row.get("positionAmt")),
            entry_price=_float(row.get("entryPrice")),
            leverage=leverage,
            margin_type=margin,
            unrealized_pnl=_float(row.get("unRealizedProfit")),
            mark_price=_float(row.get("markPrice")),
        )

    def open_orders(self, symbol: str) -> list[OrderResult]:
        regular = self._call("open_orders", "futures_get_open_orders", symbol=symbol)
        algo = self._call("open_orders", "futures_get_open_algo_orders", symbol=symbol)
        return [order_result(r) for r in regular] + [algo_order_result(a) for a in algo]

    def query_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        regular = _unless_no_such_order(
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
        algo = _unless_no_such_order(
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

        algo = _unless_no_such_order(cancel_algo)
        if algo is not None:
            return algo
        regular = _unless_no_such_order(
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
