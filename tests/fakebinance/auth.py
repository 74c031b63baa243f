"""What Binance checks before it runs a request: the API key, the signature and the clock.

* ``X-MBX-APIKEY`` on signed and user-stream endpoints (-2014/-2015, HTTP 401);
* the HMAC-SHA256 ``signature`` over the raw query string concatenated with
  the raw body, excluding the signature itself (-1022);
* ``timestamp`` within ``recvWindow`` of the server clock (-1021); a
  ``recvWindow`` above 60 s is refused (-4056).

Pure functions over what the request carried, so the HTTP layer decides only
which endpoints need them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from tests.fakebinance.params import VenueError

API_KEY = "fake-api-key-0123456789"
API_SECRET = "fake-api-secret-9876543210"
MAX_RECV_WINDOW = 60_000


def check_key(key: str | None, api_key: str) -> None:
    """``key`` is the request's ``X-MBX-APIKEY`` header, if any."""
    if not key:
        raise VenueError(-2014, "API-key format invalid.", status=401)
    if not hmac.compare_digest(key, api_key):
        raise VenueError(
            -2015,
            "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1",
            status=401,
        )


def check_signature(
    params: Mapping[str, str], raw_query: str, raw_body: str, *, secret: str, now: int
) -> None:
    """``now`` is the server clock in ms."""
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
    expected = hmac.new(secret.encode(), total.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise VenueError(-1022, "Signature for this request is not valid.")
    if not (timestamp < now + 1000 and now - timestamp <= recv_window):
        raise VenueError(-1021, "Timestamp for this request is outside of the recvWindow.")


def _without_signature(raw: str) -> str:
    """The raw parameter string with its ``signature=...`` pair removed."""
    if "signature=" not in raw:
        return raw
    return "&".join(p for p in raw.split("&") if not p.startswith("signature="))
