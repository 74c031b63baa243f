"""FakeBinance: a USD-M futures REST + websocket server on 127.0.0.1 for tests.

It runs an aiohttp application on its own event loop in a background thread,
on a free port, so the *real* python-binance ``Client`` (sync, requests) and
the websocket managers talk to it over real sockets. REST and websockets share
one port: ``rest_url`` is ``http://127.0.0.1:<port>`` and ``ws_url`` is
``ws://127.0.0.1:<port>`` (scheme and host only, the way ``BINANCE_FUTURES_URL``
and ``BINANCE_WS_URL`` are given to the bot).

This module holds the server's life (start, stop, the server clock) and what a
test does besides calling the API; the wire is built in two layers:
``streams.py`` (websocket routes and pushes) and, on it, ``rest.py``
(endpoints, request log, faults; keys, signatures and recvWindow checked as
Binance does, see ``auth.py``, against a server clock the test can skew by
``clock_skew_ms``).

What a test can do besides calling the API: move prices (``set_price``, which
triggers TP/SL algo orders and pushes user-data events), close candles
(``close_kline``), queue faults per endpoint (``inject``, see ``faults.py``),
drop or refuse websocket connections and expire listen keys (``streams.py``),
switch on the venue's bad days (``venue.trigger_faults``, ``venue.forget_algo_orders``,
``venue.dual_side`` ... see ``venue.py``), and read everything that happened
(``requests``, ``venue.orders``, ``venue.algo_orders``, ``venue.trades``,
``longest_unprotected``). Nothing is random except the seeded candle history,
so runs are repeatable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakebinance.auth import API_KEY, API_SECRET
from tests.fakebinance.faults import Fault, FaultQueue
from tests.fakebinance.klines import KlineBook
from tests.fakebinance.rest import RequestRecord, RestApi
from tests.fakebinance.streams import Connection
from tests.fakebinance.symbols import DEFAULT_SYMBOLS, SymbolSpec
from tests.fakebinance.venue import Venue


class FakeBinance(RestApi):
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
        self._conns: set[Connection] = set()
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


@contextlib.contextmanager
def running_fake(**kwargs: Any) -> Iterator[FakeBinance]:
    """``with running_fake() as fake:`` — a started server, always stopped."""
    fake = FakeBinance(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
