"""The fake's REST API: the endpoint table, the request log, and faults applied on the way.

Every request is logged (``RequestRecord``, signature and key left out), then
either served — key and signature checked per the endpoint's security (see
``auth.py``), handler run, a :class:`~tests.fakebinance.params.VenueError`
answered as Binance's ``{"code", "msg"}`` — or met by the next queued fault
for its endpoint (``faults.py``), which may still let the venue process it
(``execute=True``) and hide the order for a while. Most handlers are the
venue's own methods; candles, the ticker and listen keys are answered here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakebinance.auth import check_key, check_signature
from tests.fakebinance.faults import FaultQueue
from tests.fakebinance.klines import KlineBook
from tests.fakebinance.params import VenueError
from tests.fakebinance.streams import Websockets
from tests.fakebinance.venue import Venue

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


class RestApi(Websockets):
    """The REST half of :class:`~tests.fakebinance.server.FakeBinance`.

    Built on the websocket half: both share one port, so a request asking for an
    upgrade is handed to it, and the listen keys issued here open user streams there.
    """

    # Set up by FakeBinance.__init__.
    api_key: str
    api_secret: str
    venue: Venue
    klines: KlineBook
    faults: FaultQueue
    requests: list[RequestRecord]
    keepalives: int
    _listen_key_seq: itertools.count[int]
    _log_lock: threading.Lock
    _routes: dict[str, tuple[str, Handler]]

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
                check_key(request.headers.get("X-MBX-APIKEY"), self.api_key)
            clean = dict(params)
            if security == "SIGNED":
                check_signature(
                    params, raw_query, raw_body, secret=self.api_secret, now=self.now_ms()
                )
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
