"""Fault injection for the fake venue: queued, per endpoint, optionally per parameter.

A test queues faults on an endpoint key such as ``"POST /fapi/v1/order"``::

    fake.inject("POST /fapi/v1/order", Fault.server_error(502))
    fake.inject("POST /fapi/v1/algoOrder", Fault.rate_limited(retry_after=1),
                match={"type": "STOP_MARKET"}, times=2)

Each matching request consumes one use of the first matching fault (FIFO).
A fault either replaces the request (the venue never sees it: ``execute=False``)
or runs after the venue processed it (``execute=True``: the order *did* go
through, the client only sees the error) — the "unknown outcome" cases.
``delay`` holds the answer back; longer than the client timeout it is a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """One injected failure. Build with the classmethods; fields are the raw knobs."""

    kind: str
    status: int = 500
    code: int | None = None
    msg: str = ""
    body: str | None = None  # raw (non-JSON) body instead of {"code", "msg"}
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    execute: bool = False  # process the request at the venue before answering with the fault
    hide_for: float = 0.0  # with execute: the order stays invisible to queries this long

    def payload(self) -> dict[str, Any] | None:
        if self.code is None:
            return None
        return {"code": self.code, "msg": self.msg}

    # ----------------------------------------------------------- presets

    @classmethod
    def server_error(cls, status: int = 502, *, execute: bool = False) -> Fault:
        """A bare 5xx from a proxy/gateway: HTML body, no Binance code."""
        return cls(
            "server_error",
            status=status,
            body=f"<html><body><h1>{status} Bad Gateway</h1></body></html>",
            headers={"Content-Type": "text/html"},
            execute=execute,
        )

    @classmethod
    def timeout(cls, seconds: float, *, execute: bool = False) -> Fault:
        """Hold the answer ``seconds`` (set it above the client's timeout)."""
        return cls("timeout", status=200, delay=seconds, execute=execute)

    @classmethod
    def rate_limited(cls, retry_after: int = 1) -> Fault:
        return cls(
            "rate_limited",
            status=429,
            code=-1003,
            msg="Too many requests; current limit of IP is 2400 requests per minute. "
            "Please use the websocket for live updates to avoid polling the API.",
            headers={"Retry-After": str(retry_after)},
        )

    @classmethod
    def banned(cls, retry_after: int = 2) -> Fault:
        return cls(
            "banned",
            status=418,
            code=-1003,
            msg="Way too many requests; IP banned until 1764172800000. "
            "Please use the websocket for live updates to avoid bans.",
            headers={"Retry-After": str(retry_after)},
        )

    @classmethod
    def clock_skew(cls) -> Fault:
        return cls(
            "clock_skew",
            status=400,
            code=-1021,
            msg="Timestamp for this request is outside of the recvWindow.",
        )

    @classmethod
    def margin_insufficient(cls) -> Fault:
        return cls("margin_insufficient", status=400, code=-2019, msg="Margin is insufficient.")

    @classmethod
    def notional_too_small(cls, minimum: int = 100) -> Fault:
        return cls(
            "notional_too_small",
            status=400,
            code=-4164,
            msg=f"Order's notional must be no smaller than {minimum} "
            "(unless you choose reduce only).",
        )

    @classmethod
    def unknown_outcome(cls, *, execute: bool = True) -> Fault:
        """503 -1007: Binance's "send status unknown"; by default the order went through."""
        return cls(
            "unknown_outcome",
            status=503,
            code=-1007,
            msg="Timeout waiting for response from backend server. "
            "Send status unknown; execution status unknown.",
            execute=execute,
        )

    @classmethod
    def processed_but_invisible(cls, seconds: float, *, status: int = 503) -> Fault:
        """-1000 after the venue processed the order, which queries then miss for ``seconds``."""
        return cls(
            "processed_but_invisible",
            status=status,
            code=-1000,
            msg="An unknown error occurred while processing the request.",
            execute=True,
            hide_for=seconds,
        )

    @classmethod
    def percent_price(cls) -> Fault:
        """-4131: a market order's price would leave the PERCENT_PRICE band (thin book).

        Queue it with ``match={"type": "MARKET", "reduceOnly": "true"}`` for closes.
        """
        return cls(
            "percent_price",
            status=400,
            code=-4131,
            msg="The counterparty's best price does not meet the PERCENT_PRICE filter limit.",
        )

    @classmethod
    def error(cls, code: int, msg: str, status: int = 400, *, execute: bool = False) -> Fault:
        return cls("error", status=status, code=code, msg=msg, execute=execute)


@dataclass
class _Queued:
    fault: Fault
    match: dict[str, str]
    remaining: int


class FaultQueue:
    """Thread-safe FIFO of faults per endpoint key (``"METHOD /path"``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[_Queued]] = {}
        self.fired: list[tuple[str, str]] = []  # (endpoint, fault kind), in order

    def add(
        self,
        endpoint: str,
        fault: Fault,
        *,
        times: int = 1,
        match: Mapping[str, str] | None = None,
    ) -> None:
        method, _, path = endpoint.partition(" ")
        key = f"{method.upper()} {path}"
        with self._lock:
            self._queues.setdefault(key, []).append(_Queued(fault, dict(match or {}), times))

    def take(self, endpoint: str, params: Mapping[str, str]) -> Fault | None:
        with self._lock:
            queue = self._queues.get(endpoint, [])
            for item in queue:
                if all(params.get(k) == v for k, v in item.match.items()):
                    item.remaining -= 1
                    if item.remaining <= 0:
                        queue.remove(item)
                    self.fired.append((endpoint, item.fault.kind))
                    return item.fault
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(item.remaining for q in self._queues.values() for item in q)

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
