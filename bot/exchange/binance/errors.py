"""Venue and SDK errors -> :mod:`bot.errors` kinds, in ONE place: :func:`translate_errors`.

::

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

Nothing here logs the API key, the secret or a signature: error texts are
scrubbed (:func:`scrub`), and :class:`SignatureScrubber` rewrites the SDK's and
urllib3's log records.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator

import requests
from binance.exceptions import BinanceAPIException, BinanceRequestException

from bot.errors import (
    ClockSkewError,
    ExchangeError,
    RateLimitError,
    TemporaryExchangeError,
    UnknownOutcomeError,
    VenueRejectedError,
)
from bot.models import OrderResult

NO_SUCH_ORDER = frozenset({-2013, -2011})  # "Order does not exist." / "Unknown order sent."
# "Internal error; unable to process your request." / "Server is currently overloaded ...":
# the request was not processed, whatever the endpoint.
NOT_EXECUTED_CODES = frozenset({-1001, -1008})
# "An unknown error occurred while processing the request." / "Unexpected response from the
# message bus" / "Timeout waiting for response from backend server": execution status
# unknown, whatever the HTTP status that carries them.
UNKNOWN_OUTCOME_CODES = frozenset({-1000, -1006, -1007})
UNKNOWN_OUTCOME_STATUSES = frozenset({408})  # backend timeout behind the gateway

_SIGNATURE_RE = re.compile(r"(signature=)[^&\s'\"]+", re.I)


def unless_no_such_order(attempt: Callable[[], OrderResult]) -> OrderResult | None:
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
