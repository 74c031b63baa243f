"""The fake's websockets: market and user-data streams, and how pushes reach them.

Websockets are served where the venue serves them since its 2026 split:
``/market/...`` for market streams such as klines, ``/public/...`` for book
streams, ``/private/...`` for the user-data stream (``/private/ws/<listenKey>``
or ``/private/ws?listenKey=``). The legacy routes (``/ws/...``, ``/stream?...``)
were retired and answer HTTP 404, and a stream asked for on the wrong route is
refused with HTTP 400; ``legacy_websocket_routes = True`` serves them again.
``refuse_websockets = True`` answers every upgrade with HTTP 503.

A push is queued per connection and written by that connection's own task on
the server loop, in order; pushes from test threads go through ``_call``.
Events published while no websocket is connected reach nobody, as on the venue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    streams: set[str]
    combined: bool
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)


class Websockets:
    """The websocket half of :class:`~tests.fakebinance.server.FakeBinance`."""

    # Set up by FakeBinance.__init__ / start(); the listen keys are issued over REST.
    listen_keys: dict[str, int]
    refuse_websockets: bool
    legacy_websocket_routes: bool
    _conns: set[Connection]
    _loop: asyncio.AbstractEventLoop | None
    now_ms: Callable[[], int]

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
        conn = Connection(ws, streams, combined)
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

    async def _ws_command(self, conn: Connection, text: str) -> None:
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

    async def _writer(self, conn: Connection) -> None:
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
