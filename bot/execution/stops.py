"""What the protection supervisor (:mod:`bot.supervisor`) shares with trades, per symbol.

Every trade on a symbol holds that symbol's lock, so the supervisor never
takes a trade in progress for a gap; and each trade's stop (trace id and stop
price) is remembered, so a lost stop-loss can be placed again at its price.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StopPlan:
    """The stop-loss a symbol's position should have: its trade and price."""

    trace_id: str
    stop_price: float | None
    replaced: bool = False  # the supervisor already placed it again once


class SymbolBook:
    """Per symbol: the lock one actor holds, and the stop plan of its position."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._stop_plans: dict[str, StopPlan] = {}

    def lock(self, symbol: str) -> threading.Lock:
        """Held while a trade or a repair acts on ``symbol``: one actor per symbol."""
        with self._locks_guard:
            return self._locks.setdefault(symbol, threading.Lock())

    def stop_plan(self, symbol: str) -> StopPlan | None:
        """The stop-loss the symbol's position should have, if a trade of this run set one."""
        return self._stop_plans.get(symbol)

    def set_stop_plan(self, symbol: str, plan: StopPlan | None) -> None:
        if plan is None:
            self._stop_plans.pop(symbol, None)
        else:
            self._stop_plans[symbol] = plan
