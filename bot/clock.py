"""The one clock contract: wall time, monotonic time and sleeping, injected, never looked up.

Built once at the composition root (:data:`SYSTEM`) and handed to every
component that reads time, so a test drives them all with one
:class:`FakeClock`. Components that take a plain callable (the audit logger's
``clock`` in epoch nanoseconds, the paper exchange's in seconds, the execution
manager's ``sleep``) are given this clock's bound methods: one source of time,
whatever shape a module needs.
"""

from __future__ import annotations

import time
from typing import Protocol, overload


class Clock(Protocol):
    def time(self) -> float:
        """Wall clock, epoch seconds (UTC)."""
        ...

    def time_ns(self) -> int:
        """Wall clock, epoch nanoseconds."""
        ...

    def monotonic(self) -> float:
        """Seconds for measuring intervals; never goes back."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clocks of the machine."""

    def time(self) -> float:
        return time.time()

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM: Clock = SystemClock()


@overload
def iso_utc(at: float) -> str: ...
@overload
def iso_utc(at: None) -> None: ...
def iso_utc(at: float | None) -> str | None:
    """Epoch seconds as an ISO-8601 UTC time to the second, for people (``...T14:00:00Z``)."""
    return None if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class FakeClock:
    """A clock that moves only when told (``advance``, or ``sleep``, which returns at once)."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return round(self.now * 1e9)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
