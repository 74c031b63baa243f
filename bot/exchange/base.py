"""The exchange port: what trading code may ask of a futures venue.

Two implementations: :class:`bot.exchange.paper.PaperExchange` (in-process,
fills against market data) and ``bot.exchange.binance`` (python-binance
against Binance USD-M futures, the only importer of the SDK). Trading code
(execution, engine) depends on this Protocol only.

Rules every implementation follows:

* It speaks only :mod:`bot.models` types and raises only :mod:`bot.errors`
  errors; SDK, HTTP and JSON errors are translated at the boundary.
* It never writes the audit trail and never retries: retries, backoff and
  auditing belong to :class:`bot.execution.OrderExecutionManager`, which
  sees the error kind and decides.
* One-way position mode; USDT margin; ``symbol`` is the venue's name, e.g.
  ``BTCUSDT``. :meth:`Exchange.account_modes` tells when the account is set
  otherwise, so the bot can refuse to start before it sends any order.
* Conditional orders (TAKE_PROFIT_MARKET / STOP_MARKET with closePosition)
  go through the venue's Algo Order API on Binance; their results carry
  ``algo_id``.

Construction is the implementation's business; the composition root builds
the Binance adapter as ``BinanceExchange(api_key=..., api_secret=...,
testnet=..., base_url=..., ws_url=...)`` where the URLs (scheme and host
only) override the venue defaults when not ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bot.models import (
    AccountModes,
    Balance,
    MarginType,
    OrderResult,
    OrderSide,
    OrderType,
    OrderUpdate,
    Position,
    SymbolFilters,
)

OrderUpdateHandler = Callable[[OrderUpdate], None]


class Exchange(Protocol):
    """A USD-M futures venue as the bot needs it."""

    @property
    def name(self) -> str:
        """Short venue name for the audit trail, e.g. ``paper``, ``binance-testnet``."""
        ...

    # ---------------------------------------------------------------- clock

    def server_time(self) -> int:
        """The venue's current time in ms since the epoch (UTC)."""
        ...

    def sync_clock(self) -> int:
        """Measure and store the offset (server - local, ms) used to sign requests.

        Called at startup and after a :class:`~bot.errors.ClockSkewError`.
        Returns the new offset.
        """
        ...

    # -------------------------------------------------------- configuration

    def symbol_filters(self, symbol: str) -> SymbolFilters:
        """The symbol's tick size, step size, minimum quantity and notional (exchangeInfo).

        Raises :class:`~bot.errors.VenueRejectedError` for an unknown symbol.
        """
        ...

    def set_leverage(self, symbol: str, leverage: int) -> int:
        """Set the symbol's initial leverage; returns the leverage now in force."""
        ...

    def set_margin_type(self, symbol: str, margin_type: MarginType) -> None:
        """Set ISOLATED or CROSSED margin for the symbol.

        "No need to change margin type" (Binance -4046) is success, not an error.
        """
        ...

    def account_modes(self) -> AccountModes:
        """Whether the account is in hedge mode and/or Multi-Assets mode."""
        ...

    # -------------------------------------------------------------- queries

    def balance(self, asset: str = "USDT") -> Balance:
        """Wallet and available balance of one margin asset."""
        ...

    def position(self, symbol: str) -> Position:
        """The symbol's position; a flat position has ``amount == 0``."""
        ...

    def open_orders(self, symbol: str) -> list[OrderResult]:
        """Every open order of the symbol, regular and conditional (algo).

        Results carry ``close_position`` / ``reduce_only`` as the venue has them,
        so a caller can tell whether a stop-loss protects a position.
        """
        ...

    def query_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """Look an order up by client order id, regular or conditional (algo).

        Returns ``None`` when the venue has no such order (Binance -2013), so a
        caller resolving an :class:`~bot.errors.UnknownOutcomeError` can tell
        "never arrived" from "arrived".
        """
        ...

    # --------------------------------------------------------------- orders

    def place_market_order(
        self,
        symbol: str,
        side: OrderSide,
        quantity: float,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> OrderResult:
        """Send a MARKET order; ``quantity`` is already rounded to the step size.

        Returns once the venue accepted it (normally FILLED, with the average
        price). Raises :class:`~bot.errors.UnknownOutcomeError` when the POST's
        fate is unknown; never resends by itself.
        """
        ...

    def place_limit_ioc(
        self,
        symbol: str,
        side: OrderSide,
        quantity: float,
        price: float,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> OrderResult:
        """Send a LIMIT order with time in force IOC: what crosses fills at once, the rest expires.

        The protective close's fallback when a market close is refused by the
        PERCENT_PRICE filter. Same error contract as :meth:`place_market_order`.
        """
        ...

    def place_conditional_order(
        self,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        stop_price: float,
        client_order_id: str,
    ) -> OrderResult:
        """Send a TAKE_PROFIT_MARKET or STOP_MARKET order with closePosition=true.

        ``stop_price`` is already rounded to the tick size. On Binance this
        goes through the Algo Order API; the result carries ``algo_id`` and
        status NEW. Same error contract as :meth:`place_market_order`.
        """
        ...

    def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """Cancel one open order (regular or algo) by client order id.

        Returns the cancelled order, or ``None`` when it is no longer open
        (already filled, cancelled or unknown) — the goal "not open" holds.
        """
        ...

    def cancel_all_orders(self, symbol: str) -> int:
        """Cancel every open order of the symbol, regular and algo; returns how many."""
        ...

    def set_cancel_countdown(self, symbol: str, milliseconds: int) -> None:
        """Arm (or refresh) the venue's dead-man's switch for ``symbol``; 0 stops it.

        Unless called again within ``milliseconds``, the venue cancels the
        symbol's open orders by itself (it never closes a position). Binance:
        ``countdownCancelAll``; a venue without one (paper) does nothing.
        """
        ...

    # --------------------------------------------------------------- events

    def subscribe_order_updates(
        self, handler: OrderUpdateHandler, *, on_connected: Callable[[], None] | None = None
    ) -> None:
        """Call ``handler`` for every order state change of this account.

        Fills of entries, take-profits and stop-losses, cancels and expiries.
        A venue's stream loses what happens while it is down, so
        ``on_connected`` is called after every (re)connect of the stream, the
        first one included: the subscriber queries what it may have missed
        (``query_order``). Both may be called from another thread; they must
        not raise.
        """
        ...

    def close(self) -> None:
        """Stop background streams and release connections. Idempotent."""
        ...
