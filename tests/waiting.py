"""Waiting in tests: poll a condition until it holds or a deadline passes, never a bare sleep.

Deadlines are generous (a loaded 2-core CI machine is slow); the poll interval
only bounds how late a test notices that the condition already holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 20.0,
    what: str = "the condition",
    interval: float = 0.02,
) -> T:
    """The first truthy value of ``condition()``; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
