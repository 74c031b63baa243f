"""How often a failed call is tried again, and how a failure is written down.

The exchange port raises only :mod:`bot.errors` kinds; the execution layer is
the one place that decides what each kind means: temporary errors are retried
a bounded number of times (:class:`RetryPolicy`), venue rejections are not,
and an order that could not be placed ends as :class:`OrderFailed` once its
failure is audited (with :func:`error_fields`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.errors import ExchangeError, RateLimitError, VenueRejectedError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff for temporary errors."""

    max_attempts: int = 4
    backoff_base: float = 0.5  # seconds before the 2nd attempt; doubles each time
    backoff_max: float = 8.0
    resolve_window: float = 30.0  # seconds to resolve an entry's unknown outcome
    # The same for closing/protective orders: short, since the venue refuses their
    # duplicates (-2022, -4116, -4130) and each second here is a second without a stop.
    resolve_window_protective: float = 0.5
    close_attempts: int = 6  # protective close attempts before the alert record

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))


class OrderFailed(Exception):
    """An order could not be placed; already audited. Internal to :mod:`bot.execution`."""

    def __init__(self, error: ExchangeError) -> None:
        super().__init__(str(error))
        self.error = error


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The audit record's fields for an error: its kind, code (venue) or status (rate limit)."""
    if isinstance(exc, VenueRejectedError):
        return {
            "error_type": type(exc).__name__,
            "error_code": exc.code,
            "error_message": exc.message,
        }
    fields: dict[str, Any] = {"error_type": type(exc).__name__, "error_message": str(exc)}
    if isinstance(exc, RateLimitError):
        fields["status"] = exc.status
    return fields
