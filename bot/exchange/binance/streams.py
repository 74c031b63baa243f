"""Websockets (:class:`StreamSupervisor`), shared by the exchange adapter and the market feed.

python-binance's own async ``BinanceSocketManager`` on a private event loop
thread, NOT its ``ThreadedWebsocketManager``. The manager's ``FSTREAM_URL``
instance attribute can be pointed at BINANCE_WS_URL, and its ``AsyncClient``
(used for the listenKey) at BINANCE_FUTURES_URL, which the threaded manager
does not allow (it builds both internally, and ``AsyncClient.create`` pings
the spot API). python-binance 1.0.37 appends the venue's routes itself:
``market/stream?streams=...`` for klines, ``private/ws/<listenKey>`` for the
user stream. We keep the SDK's reconnect logic and add what it lacks:

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
  messages flow again: the kline feed refills missed candles from REST
  (:func:`closed_klines`), the order-update subscriber looks up the orders it
  tracks (``query_order``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from binance.async_client import AsyncClient
from binance.exceptions import BinanceAPIException, ReadLoopClosed
from binance.ws.streams import BinanceSocketManager

from bot.audit import AuditEventType, AuditLogger
from bot.exchange.binance.errors import scrub, translate_errors
from bot.models import Candle

log = logging.getLogger("bot.exchange.binance")


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
