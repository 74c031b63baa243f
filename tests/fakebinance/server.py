"""FakeBinance: a USD-M futures REST + websocket server on 127.0.0.1 for tests.

It runs an aiohttp application on its own event loop in a background thread,
on a free port, so the *real* python-binance ``Client`` (sync, requests) and
the websocket managers talk to it over real sockets. REST and websockets share
one port: ``rest_url`` is ``http://127.0.0.1:<port>`` and ``ws_url`` is
``ws://127.0.0.1:<port>`` (scheme and host only, the way ``BINANCE_FUTURES_URL``
and ``BINANCE_WS_URL`` are given to the bot).

What it checks like Binance does:

* ``X-MBX-APIKEY`` on signed and user-stream endpoints (-2014/-2015, HTTP 401);
* the HMAC-SHA256 ``signature`` over the raw query string concatenated with
  the raw body, excluding the signature itself (-1022);
* ``timestamp`` within ``recvWindow`` of the server clock (-1021), where the
  server clock can be skewed by the test (``clock_skew_ms``).

What a test can do besides calling the API: move prices (``set_price``, which
triggers TP/SL algo orders and pushes user-data events), close candles
(``close_kline``), queue faults per endpoint (``inject``, see ``faults.py``),
drop or refuse websocket connections, expire listen keys, switch on the
venue's bad days (``venue.trigger_faults``, ``venue.forget_algo_orders``,
``venue.dual_side`` ... see ``venue.py``), and read everything that happened
(``requests``, ``venue.orders``, ``venue.algo_orders``, ``venue.trades``,
``longest_unprotected``).

Websockets are served where the venue serves them since its 2026 split:
``/market/...`` for market streams such as klines, ``/public/...`` for book
streams, ``/private/...`` for the user-data stream (``/private/ws/<listenKey>``
or ``/private/ws?listenKey=``). The legacy routes (``/ws/...``, ``/stream?...``)
were retired and answer HTTP 404, and a stream asked for on the wrong route is
refused with HTTP 400; ``legacy_websocket_routes = True`` serves them again.
Nothing is random except the seeded candle history, so runs are repeatable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.fakebinance.faults import Fault, FaultQueue
from tests.fakebinance.klines import KlineBook
from tests.fakebinance.params import VenueError
from tests.fakebinance.symbols import DEFAULT_SYMBOLS, SymbolSpec
from tests.fakebinance.venue import Venue

API_KEY = "fake-api-key-0123456789"
API_SECRET = "fake-api-secret-9876543210"
MAX_RECV_WINDOW = 60_000
LISTEN_KEY_TTL_MS = 60 * 60 * 1000

Json = Any
Handler = Callable[[dict[str, str]], Json]


@dataclass
class RequestRecord:
    """One HTTP request as the fake saw it (signature and key left out)."""

    method: str
    path: str
    params: dict[str, str]
    status: int = 0
    code: int | None = None
    fault: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    streams: set[str]
    combined: bool
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


class FakeBinance:
    """Start with ``with FakeBinance() as fake:`` or ``start()``/``stop()``."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS,
        balance: Decimal = Decimal("10000"),
        seed: int = 7,
        kline_history: int = 150,
        intervals: tuple[str, ...] = ("1m", "5m"),
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.clock_skew_ms = 0
        self.faults = FaultQueue()
        self.requests: list[RequestRecord] = []
        self.venue = Venue(
            clock=self.now_ms, emit=self._emit_user_event, symbols=symbols, balance=balance
        )
        self.klines = KlineBook()
        for spec in symbols:
            for interval in intervals:
                self.klines.seed(
                    spec.symbol,
                    interval,
                    now_ms=self.now_ms(),
                    count=kline_history,
                    start_price=spec.price,
                    seed=seed,
                    tick=spec.tick_size,
                )
        self.refuse_websockets = False
        self.legacy_websocket_routes = False
        self.listen_keys: dict[str, int] = {}  # key -> expiry (server ms)
        self.keepalives = 0
        self._listen_key_seq = itertools.count(1)
        self._conns: set[_Conn] = set()
        self._log_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._routes = self._build_routes()

    # ------------------------------------------------------------ lifecycle

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}"

    def start(self) -> FakeBinance:
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup())
            except BaseException as exc:  # surfaced to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="fakebinance", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"fake Binance did not start: {failure}")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._loop = None
        self._thread = None

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        # cancelled with the other tasks at shutdown
        self._countdown_task = asyncio.ensure_future(self._countdown_timers())

    async def _countdown_timers(self) -> None:
        """Fire lapsed countdownCancelAll timers (Binance checks about every 10 ms)."""
        while True:
            await asyncio.sleep(0.05)
            self.venue.expire_countdowns()

    async def _shutdown(self) -> None:
        for conn in list(self._conns):
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(), 1)
        if self._runner is not None:
            await self._runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server loop (from any thread), in submission order."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing during teardown
            loop.call_soon_threadsafe(fn)

    def _submit(self, coro: Awaitable[None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]
        future.result(timeout=10)

    # ------------------------------------------------------------- clock

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_skew_ms

    # ------------------------------------------------------- test controls

    def inject(
        self,
        endpoint: str,
        fault: Fault,
        *,
        times: int = 1,
        match: Mapping[str, str] | None = None,
    ) -> None:
        """Queue ``fault`` for the next ``times`` requests to ``"METHOD /path"``."""
        self.faults.add(endpoint, fault, times=times, match=match)

    def set_price(self, symbol: str, price: Decimal | str | float) -> None:
        """Move the market; crossing LIMIT and TP/SL algo orders fill (user events pushed)."""
        self.venue.set_price(symbol, Decimal(str(price)))

    def close_kline(
        self,
        symbol: str,
        interval: str,
        close: Decimal | str | float,
        *,
        high: Decimal | str | float | None = None,
        low: Decimal | str | float | None = None,
        move_price: bool = True,
    ) -> dict[str, Any]:
        """Close the open candle (pushing ``x: true``) and open the next; returns the closed one."""
        to_dec = lambda v: None if v is None else Decimal(str(v))  # noqa: E731
        done, nxt = self.klines.close_current(
            symbol, interval, close=Decimal(str(close)), high=to_dec(high), low=to_dec(low)
        )
        if move_price:
            self.set_price(symbol, Decimal(str(close)))
        stream = f"{symbol.lower()}@kline_{interval}"
        now = self.now_ms()
        self._publish(stream, done.event(symbol, interval, now))
        self._publish(stream, nxt.event(symbol, interval, now))
        return done.event(symbol, interval, now)

    def tick_kline(self, symbol: str, interval: str, price: Decimal | str | float) -> None:
        """An in-progress update (``x: false``) of the open candle."""
        live = self.klines.update_current(symbol, interval, price=Decimal(str(price)))
        self._publish(
            f"{symbol.lower()}@kline_{interval}", live.event(symbol, interval, self.now_ms())
        )

    def burst(self, symbol: str, interval: str, count: int) -> None:
        """Push ``count`` open-candle updates back to back (queue-overflow tests)."""
        live = self.klines.current(symbol, interval)
        payload = json.dumps(live.event(symbol, interval, self.now_ms()))
        stream = f"{symbol.lower()}@kline_{interval}"
        self._call(lambda: self._broadcast_raw(stream, [payload] * count))

    def drop_websockets(self) -> None:
        """Close every websocket connection from the server side."""

        async def close_all() -> None:
            for conn in list(self._conns):
                conn.queue.put_nowait(None)
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=1001, message=b"going away")

        self._submit(close_all())

    def expire_listen_keys(self) -> None:
        """Expire every listen key: streams get ``listenKeyExpired`` and stop receiving."""
        keys = list(self.listen_keys)
        self.listen_keys.clear()
        now = self.now_ms()
        for key in keys:
            self._publish(key, {"e": "listenKeyExpired", "E": now, "listenKey": key})

    def websocket_count(self, *, user: bool | None = None) -> int:
        conns = list(self._conns)
        if user is None:
            return len(conns)
        return sum(1 for c in conns if any(self._is_listen_key(s) for s in c.streams) == user)

    # ------------------------------------------------------ test read-outs

    def requests_to(self, endpoint: str) -> list[RequestRecord]:
        with self._log_lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def orders_for(self, symbol: str) -> list[dict[str, Any]]:
        with self.venue.lock:
            return [o.record() for o in self.venue.orders if o.symbol == symbol]

    def algo_orders_for(self, symbol: str) -> list[dict[str, Any]]:
        with self.venue.lock:
            return [a.record() for a in self.venue.algo_orders if a.symbol == symbol]

    def position_amount(self, symbol: str) -> Decimal:
        with self.venue.lock:
            return self.venue.positions[symbol].amount

    def open_stop_losses(self, symbol: str) -> list[dict[str, Any]]:
        with self.venue.lock:
            return [
                a.record()
                for a in self.venue.algo_orders
                if a.symbol == symbol and a.status == "NEW" and a.type == "STOP_MARKET"
            ]

    def longest_unprotected(self, symbol: str) -> float:
        """Seconds of the longest time ``symbol`` held a position without a working stop-loss."""
        spans = self.venue.unprotected_spans(symbol)
        return max((end - start for start, end in spans), default=0) / 1000

    def client_order_ids(self) -> list[str]:
        """Every client id the venue accepted (regular and algo), in order."""
        with self.venue.lock:
            ids = [(o.created, o.client_order_id) for o in self.venue.orders if not o.orig_type]
            ids += [(a.created, a.client_algo_id) for a in self.venue.algo_orders]
            return [cid for _, cid in sorted(ids, key=lambda pair: pair[0])]

    # ----------------------------------------------------------------- REST

    def _build_routes(self) -> dict[str, tuple[str, Handler]]:
        """endpoint -> (security, handler); security is NONE, USER_STREAM or SIGNED."""
        v = self.venue
        return {
            "GET /fapi/v1/ping": ("NONE", lambda p: {}),
            "GET /fapi/v1/time": ("NONE", lambda p: {"serverTime": self.now_ms()}),
            "GET /fapi/v1/exchangeInfo": ("NONE", lambda p: v.exchange_info()),
            "GET /fapi/v1/klines": ("NONE", self._klines),
            "GET /fapi/v1/ticker/price": ("NONE", self._ticker_price),
            "POST /fapi/v1/listenKey": ("USER_STREAM", self._new_listen_key),
            "PUT /fapi/v1/listenKey": ("USER_STREAM", self._keepalive_listen_key),
            "DELETE /fapi/v1/listenKey": ("USER_STREAM", self._close_listen_key),
            "POST /fapi/v1/leverage": ("SIGNED", v.change_leverage),
            "POST /fapi/v1/marginType": ("SIGNED", v.change_margin_type),
            "GET /fapi/v2/balance": ("SIGNED", lambda p: v.balances()),
            "GET /fapi/v3/balance": ("SIGNED", lambda p: v.balances()),
            "GET /fapi/v2/account": ("SIGNED", lambda p: v.account()),
            "GET /fapi/v3/account": ("SIGNED", lambda p: v.account()),
            "GET /fapi/v2/positionRisk": (
                "SIGNED",
                lambda p: v.position_risk(p.get("symbol"), only_open=False),
            ),
            "GET /fapi/v3/positionRisk": (
                "SIGNED",
                lambda p: v.position_risk(p.get("symbol"), only_open=True),
            ),
            "POST /fapi/v1/order": ("SIGNED", v.new_order),
            "GET /fapi/v1/order": ("SIGNED", v.get_order),
            "DELETE /fapi/v1/order": ("SIGNED", v.cancel_order),
            "GET /fapi/v1/openOrders": ("SIGNED", v.open_orders),
            "DELETE /fapi/v1/allOpenOrders": ("SIGNED", v.cancel_all),
            "POST /fapi/v1/algoOrder": ("SIGNED", v.new_algo_order),
            "GET /fapi/v1/algoOrder": ("SIGNED", v.get_algo_order),
            "DELETE /fapi/v1/algoOrder": ("SIGNED", v.cancel_algo_order),
            "GET /fapi/v1/openAlgoOrders": ("SIGNED", v.open_algo_orders),
            "GET /fapi/v1/positionSide/dual": ("SIGNED", lambda p: v.position_mode()),
            "GET /fapi/v1/multiAssetsMargin": ("SIGNED", lambda p: v.multi_assets_mode()),
            "DELETE /fapi/v1/algoOpenOrders": ("SIGNED", v.cancel_all_algo),
            "POST /fapi/v1/countdownCancelAll": ("SIGNED", v.countdown_cancel_all),
        }

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        raw_query = request.rel_url.raw_query_string
        raw_body = (await request.read()).decode("utf-8", "replace")
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        if raw_body and request.content_type != "application/json":
            params.update(parse_qsl(raw_body, keep_blank_values=True))
        endpoint = f"{request.method} {request.path}"
        record = RequestRecord(
            request.method,
            request.path,
            {k: v for k, v in params.items() if k != "signature"},
        )
        with self._log_lock:
            self.requests.append(record)

        fault = self.faults.take(endpoint, params)
        if fault is None:
            status, body = self._serve(request, endpoint, params, raw_query, raw_body)
            return self._answer(record, status, body, {})
        record.fault = fault.kind
        executed = (
            self._serve(request, endpoint, params, raw_query, raw_body) if fault.execute else None
        )
        cid = params.get("newClientOrderId") or params.get("clientAlgoId")
        if executed is not None and executed[0] == 200 and fault.hide_for and cid:
            self.venue.hide(cid, fault.hide_for)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.kind == "timeout":
            if executed is not None:  # processed, only the answer was late
                return self._answer(record, executed[0], executed[1], {})
            return self._answer(record, 504, None, {}, raw="<html>504 Gateway Time-out</html>")
        return self._answer(record, fault.status, fault.payload(), fault.headers, raw=fault.body)

    def _serve(
        self,
        request: web.Request,
        endpoint: str,
        params: dict[str, str],
        raw_query: str,
        raw_body: str,
    ) -> tuple[int, Json]:
        """Authenticate and run the endpoint; returns (HTTP status, JSON body)."""
        route = self._routes.get(endpoint)
        if route is None:
            msg = f"Path {request.path}, Method {request.method} is invalid"
            return 404, {"code": -5000, "msg": msg}
        security, handler = route
        try:
            if security in ("USER_STREAM", "SIGNED"):
                self._check_key(request)
            clean = dict(params)
            if security == "SIGNED":
                self._check_signature(params, raw_query, raw_body)
                for name in ("signature", "timestamp", "recvWindow"):
                    clean.pop(name, None)
            return 200, handler(clean)
        except VenueError as exc:
            return exc.status, {"code": exc.code, "msg": exc.msg}

    def _answer(
        self,
        record: RequestRecord,
        status: int,
        body: Json,
        headers: Mapping[str, str],
        *,
        raw: str | None = None,
    ) -> web.Response:
        record.status = status
        if isinstance(body, dict) and isinstance(body.get("code"), int) and body["code"] < 0:
            record.code = body["code"]
        extra = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        if raw is not None:
            return web.Response(status=status, text=raw, headers=extra, content_type="text/html")
        return web.Response(
            status=status, text=json.dumps(body), content_type="application/json", headers=extra
        )

    def _check_key(self, request: web.Request) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise VenueError(-2014, "API-key format invalid.", status=401)
        if not hmac.compare_digest(key, self.api_key):
            raise VenueError(
                -2015,
                "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1",
                status=401,
            )

    def _check_signature(self, params: Mapping[str, str], raw_query: str, raw_body: str) -> None:
        signature = params.get("signature")
        if not signature:
            raise VenueError(
                -1102,
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
            )
        if "timestamp" not in params:
            raise VenueError(
                -1102,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            )
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", "5000"))
        except ValueError:
            raise VenueError(-1100, "Illegal characters found in parameter 'timestamp'.") from None
        if not 0 < recv_window <= MAX_RECV_WINDOW:
            raise VenueError(
                -4056 if recv_window > MAX_RECV_WINDOW else -1100,
                "recvWindow must be less than 60000",
            )
        total = _without_signature(raw_query) + _without_signature(raw_body)
        expected = hmac.new(self.api_secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise VenueError(-1022, "Signature for this request is not valid.")
        now = self.now_ms()
        if not (timestamp < now + 1000 and now - timestamp <= recv_window):
            raise VenueError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _klines(self, params: dict[str, str]) -> Json:
        symbol = self.venue.spec(params.get("symbol")).symbol
        interval = params.get("interval")
        if not interval:
            raise VenueError(
                -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
            )

        def number(name: str) -> int | None:
            raw = params.get(name)
            if raw is None:
                return None
            if not raw.lstrip("-").isdigit():
                raise VenueError(-1100, f"Illegal characters found in parameter '{name}'.")
            return int(raw)

        return self.klines.rows(
            symbol,
            interval,
            limit=number("limit") or 500,
            start_time=number("startTime"),
            end_time=number("endTime"),
        )

    def _ticker_price(self, params: dict[str, str]) -> Json:
        spec = self.venue.spec(params.get("symbol"))
        return {
            "symbol": spec.symbol,
            "price": str(self.venue.prices[spec.symbol]),
            "time": self.now_ms(),
        }

    def _new_listen_key(self, params: dict[str, str]) -> Json:
        now = self.now_ms()
        for key, expiry in self.listen_keys.items():
            if expiry > now:  # Binance hands back the active key and extends it
                self.listen_keys[key] = now + LISTEN_KEY_TTL_MS
                return {"listenKey": key}
        key = f"lk{next(self._listen_key_seq):04d}" + secrets.token_hex(26)
        self.listen_keys[key] = now + LISTEN_KEY_TTL_MS
        return {"listenKey": key}

    def _keepalive_listen_key(self, params: dict[str, str]) -> Json:
        key = params.get("listenKey") or next(iter(self.listen_keys), "")
        if key not in self.listen_keys:
            raise VenueError(-1125, "This listenKey does not exist.")
        self.listen_keys[key] = self.now_ms() + LISTEN_KEY_TTL_MS
        self.keepalives += 1
        return {"listenKey": key}

    def _close_listen_key(self, params: dict[str, str]) -> Json:
        key = params.get("listenKey") or next(iter(self.listen_keys), "")
        self.listen_keys.pop(key, None)
        return {}

    # ----------------------------------------------------------- websockets

    def _is_listen_key(self, name: str) -> bool:
        return name.startswith("lk") and "@" not in name

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        path, route = request.path, ""
        for prefix in ("/public", "/market", "/private"):
            if path.startswith(prefix + "/"):
                path, route = path[len(prefix) :], prefix
        if not route and not self.legacy_websocket_routes:
            return web.Response(status=404, text="not found")
        combined = path == "/stream"
        if combined:
            streams = {s for s in request.query.get("streams", "").split("/") if s}
        elif path == "/ws" and "listenKey" in request.query:
            streams = {request.query["listenKey"]}
        elif path.startswith("/ws/"):
            streams = {s for s in path[len("/ws/") :].split("/") if s}
        elif path == "/ws":
            streams = set()
        else:
            return web.Response(status=404, text="not found")
        if self.refuse_websockets:
            return web.Response(status=503, text="Service Unavailable")
        for name in streams:
            if self._is_listen_key(name) and name not in self.listen_keys:
                return web.Response(status=400, text="invalid listenKey")
            if route and (route == "/private") != self._is_listen_key(name):
                return web.Response(status=400, text=f"stream {name} is not served on {route}")
        ws = web.WebSocketResponse(heartbeat=None, autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, streams, combined)
        self._conns.add(conn)
        writer = asyncio.ensure_future(self._writer(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._ws_command(conn, msg.data)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._conns.discard(conn)
            conn.queue.put_nowait(None)
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
        return ws

    async def _ws_command(self, conn: _Conn, text: str) -> None:
        try:
            command = json.loads(text)
        except ValueError:
            return
        method, ident = command.get("method"), command.get("id")
        names = [str(s) for s in command.get("params") or []]
        if method == "SUBSCRIBE":
            conn.streams.update(names)
        elif method == "UNSUBSCRIBE":
            conn.streams.difference_update(names)
        result = sorted(conn.streams) if method == "LIST_SUBSCRIPTIONS" else None
        conn.queue.put_nowait(json.dumps({"result": result, "id": ident}))

    async def _writer(self, conn: _Conn) -> None:
        while True:
            text = await conn.queue.get()
            if text is None or conn.ws.closed:
                return
            try:
                await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def _publish(self, stream: str, payload: dict[str, Any]) -> None:
        self._call(lambda: self._broadcast_raw(stream, [json.dumps(payload)], payload))

    def _broadcast_raw(
        self, stream: str, texts: list[str], payload: dict[str, Any] | None = None
    ) -> None:
        for conn in list(self._conns):
            if stream not in conn.streams:
                continue
            for text in texts:
                if conn.combined:
                    text = f'{{"stream":"{stream}","data":{text}}}'
                conn.queue.put_nowait(text)

    def _emit_user_event(self, event: dict[str, Any]) -> None:
        for key in list(self.listen_keys):
            self._publish(key, event)


def _without_signature(raw: str) -> str:
    """The raw parameter string with its ``signature=...`` pair removed."""
    if "signature=" not in raw:
        return raw
    return "&".join(p for p in raw.split("&") if not p.startswith("signature="))


@contextlib.contextmanager
def running_fake(**kwargs: Any) -> Iterator[FakeBinance]:
    """``with running_fake() as fake:`` — a started server, always stopped."""
    fake = FakeBinance(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
