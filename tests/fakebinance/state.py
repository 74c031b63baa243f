"""Everything the fake venue holds, under one lock: the base every part of the venue builds on.

The venue is one state machine cut into parts by job (account, orders, algo
orders, bad days, protection timeline; ``venue.py`` joins them). The parts
share this state rather than owning pieces of it because Binance's rules cross
them: a fill moves the position and the wallet, a trigger turns an algo order
into a regular one, and a test asserts on any of it under ``lock``. Tests read
and set these attributes directly (``venue.orders``, ``venue.dual_side = True``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tests.fakebinance.params import VenueError, mandatory
from tests.fakebinance.records import AlgoOrder, Order, Position
from tests.fakebinance.symbols import DEFAULT_SYMBOLS, SymbolSpec, exchange_info

Emit = Callable[[dict[str, Any]], None]


class VenueState:
    """The venue's books and switches. Every public method of the venue takes ``lock``."""

    def __init__(
        self,
        *,
        clock: Callable[[], int],
        emit: Emit,
        symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS,
        balance: Decimal = Decimal("10000"),
    ) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self._emit = emit
        self.symbols = {s.symbol: s for s in symbols}
        self.prices = {s.symbol: s.price for s in symbols}
        self.wallet = balance
        self.positions = {s.symbol: Position(s.symbol) for s in symbols}
        self.orders: list[Order] = []
        self.algo_orders: list[AlgoOrder] = []
        self.unique_client_ids = "open"  # or "all"
        self.trigger_faults: list[str] = []  # "REJECTED" / "EXPIRED", for the next stops
        self.trades_per_fill = 1
        self.dual_side = False
        self.multi_assets = False
        self.algo_amnesia_until = 0  # server ms
        self.hidden_until: dict[str, int] = {}  # client id -> server ms
        self.incidents: list[tuple[int, str, str]] = []  # (server ms, kind, client id)
        self.trades: list[dict[str, Any]] = []  # every fill, one row per trade
        self.protection_timeline: list[tuple[int, str, bool]] = []  # (ms, symbol, unprotected)
        self.countdowns: dict[str, int] = {}  # symbol -> server ms when countdownCancelAll fires
        self.countdown_cancels_algo = False
        self._order_ids = itertools.count(8_000_000_001)
        self._algo_ids = itertools.count(3_000_000_001)
        self._trade_ids = itertools.count(100_001)

    def spec(self, symbol: str | None) -> SymbolSpec:
        if not symbol:
            raise mandatory("symbol")
        try:
            return self.symbols[symbol]
        except KeyError:
            raise VenueError(-1121, "Invalid symbol.") from None

    def exchange_info(self) -> dict[str, Any]:
        return exchange_info(self.symbols.values(), self._clock())
