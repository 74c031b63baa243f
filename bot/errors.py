"""The bot's one error hierarchy; each docstring says what the caller should do.

Exchange adapters translate every SDK / HTTP / venue error into one of these at
the port boundary, so trading code never sees ``binance.exceptions`` or
``requests`` and decides only on the *kind* of failure::

    BotError
    ├── ConfigError                    bad option/config value: stop before trading
    └── ExchangeError                  anything the exchange port can raise
        ├── TemporaryExchangeError     retry with bounded backoff (5xx, network error on a read)
        │   ├── RateLimitError         429/418: wait ``retry_after`` (or backoff), then retry
        │   └── ClockSkewError         -1021: resynchronise the clock offset, then retry
        ├── UnknownOutcomeError        order POST may or may not have happened: query by
        │                              client order id, never blindly resend
        ├── VenueRejectedError         the venue said no (``code``/``message`` unchanged):
        │                              do not retry
        └── OrderRefusedError          our own trading state refused it before sending
                                       (SPEC §11): not sent, do not retry
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigError(BotError):
    """An option or config value is invalid. Stop before trading.

    The message names the key and says what is allowed, e.g.
    ``risk.leverage: 200 is out of range (allowed: integer 1..125)``.
    """


class ExchangeError(BotError):
    """Base of every error an exchange port implementation may raise.

    Catch a subclass to decide what to do; catching this base means "give up
    on this operation and record it".
    """


class TemporaryExchangeError(ExchangeError):
    """The request failed for a reason that may pass: retry with bounded backoff.

    Raised for 5xx answers and network errors on reads (and on cancels, which
    are idempotent). An order POST that timed out is *not* this: see
    :class:`UnknownOutcomeError`.
    """


class RateLimitError(TemporaryExchangeError):
    """The venue throttled us (HTTP 429, or 418 = IP banned for a while).

    Wait ``retry_after`` seconds when the venue said so (``Retry-After``
    header), otherwise back off; then retry. The request was not processed.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, status: int = 429):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class ClockSkewError(TemporaryExchangeError):
    """Our timestamp is outside the venue's recvWindow (code -1021).

    Resynchronise the clock offset (``Exchange.sync_clock``), then retry. The
    request was not processed.
    """


class UnknownOutcomeError(ExchangeError):
    """An order request may or may not have been executed.

    Raised for HTTP 503 "Unknown error, please check your request or try
    again later" / "execution status unknown" and for a timeout or dropped
    connection after an order POST was sent. Resolve it by querying the order
    by its client order id (``Exchange.query_order``); resend only if the
    venue has no such order, and always with the same client order id.
    """

    def __init__(self, message: str, *, client_order_id: str | None = None):
        super().__init__(message)
        self.client_order_id = client_order_id


class VenueRejectedError(ExchangeError):
    """The venue refused the request; retrying the same request cannot help.

    ``code`` and ``message`` are the venue's own, unchanged (e.g. -2019
    "Margin is insufficient.", -4164 notional too small, -4120 order type not
    supported on this endpoint). Record them as they are and do not retry.
    """

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class OrderRefusedError(ExchangeError):
    """The bot's trading state (SPEC §11) refused the order before it was sent.

    Nothing reached the venue; do not retry. ``reason`` is the stable code
    recorded with the refusal (``trading_halted``, ``trading_reducing``,
    ``order_rate_limit``). It is an ExchangeError so that every path that gives
    up on an order (unwinding a trade, a protective close) handles it as one.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
