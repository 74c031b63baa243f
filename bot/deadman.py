"""DeadmanSwitch: the venue cancels our open orders by itself if the bot stops talking to it.

Binance's ``countdownCancelAll`` keeps a timer per symbol: unless it is sent
again within ``countdownTime``, the venue cancels the symbol's open orders (it
never closes a position). So while a symbol has open orders (as the venue
lists them, regular and algo), this switch sends the countdown again every
quarter of it (Binance's own example: every 30 s for 120 s), and stops the
timer (``countdownTime=0``) once the symbol has no open order left and at a
clean shutdown. A bot that dies, hangs or loses the venue leaves no order
working for longer than the countdown. Which orders the venue's timer reaches
(the Algo Service's conditional orders?) is the venue's business: see
docs/binance.md, and why ``[execution] deadman_seconds`` is off by default.

What goes on the record (changes, not every refresh: a send every few
seconds per symbol would drown the trail):

* ``heartbeat``, operation ``deadman_switch``, ``.additional_data.action``
  ``armed`` (the first good send for a symbol, and the first after failures)
  or ``disarmed`` (no open order left, or shutdown), with ``countdown_ms``;
* ``api_error``, operation ``deadman_switch``: the first failed send of a
  streak, and once more when the failures have lasted past the countdown
  (``countdown_lapsed``: the venue may have cancelled the symbol's orders).
  Every round tries again; a failure never stops trading;
* ``api_error``, operation ``deadman_fired``, ``severity: critical``: an
  order of an armed symbol was CANCELED at the venue, the bot did not ask for
  it, and the countdown had run out since the last good send — the switch
  fired. Seen in the order stream (``seen_in: order_update``) or, since the
  stream is often down with the rest, at the first good send after a lapse:
  an order listed before it, gone now, that the venue reports CANCELED
  (``seen_in: order_query``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.audit import AuditEventType, AuditLogger
from bot.clock import SYSTEM, Clock
from bot.errors import ExchangeError
from bot.exchange.base import Exchange
from bot.models import OrderResult, OrderStatus, OrderUpdate

log = logging.getLogger("bot.deadman")

OPERATION = "deadman_switch"
REFRESHES_PER_COUNTDOWN = 4


@dataclass
class _Timer:
    """One symbol's countdown as this bot last set it."""

    sent_at: float  # monotonic time at the start of the last good send
    orders: frozenset[str] = frozenset()  # client ids listed open just before it
    failures: int = 0
    lapse_recorded: bool = False


class DeadmanSwitch:
    """Keeps the venue's cancel countdown running per symbol with open orders (module doc)."""

    def __init__(
        self,
        exchange: Exchange,
        audit: AuditLogger,
        symbols: Iterable[str],
        *,
        countdown: float,
        refresh: float | None = None,
        clock: Clock = SYSTEM,
        cancelled_here: Callable[[str], bool] = lambda cid: False,
    ) -> None:
        if countdown <= 0:
            raise ValueError("countdown must be positive")
        self._exchange = exchange
        self._audit = audit
        self._symbols = list(symbols)
        self._countdown_ms = round(countdown * 1000)
        self._refresh = refresh if refresh is not None else countdown / REFRESHES_PER_COUNTDOWN
        self._clock = clock
        self._cancelled_here = cancelled_here
        self._lock = threading.Lock()
        self._armed: dict[str, _Timer] = {}
        self._failing: dict[str, int] = {}  # symbol -> failed sends in a row while not armed
        self._fired: set[str] = set()  # client ids already reported

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        """One round now, then one every refresh interval, until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.beat()
            except Exception:  # a bug here must not end the heartbeat, nor trading
                log.exception("dead-man's switch round failed")
            stop.wait(self._refresh)

    def beat(self) -> None:
        """One round: every symbol's countdown sent, refreshed or stopped as its orders need."""
        for symbol in self._symbols:
            self._beat(symbol)

    def disarm_all(self) -> None:
        """At a clean shutdown: stop every timer this run set, so nothing is cancelled later."""
        with self._lock:
            armed = list(self._armed)
        for symbol in armed:
            self._send(symbol, 0, reason="shutdown")

    # --------------------------------------------------------------- events

    def on_order_update(self, update: OrderUpdate) -> None:
        """A cancel nobody here asked for, after the countdown ran out: the switch fired."""
        if update.status is not OrderStatus.CANCELED or self._cancelled_here(
            update.client_order_id
        ):
            return
        with self._lock:
            timer = self._armed.get(update.symbol)
            if timer is None:
                return
            silent = self._clock.monotonic() - timer.sent_at
        if silent * 1000 >= self._countdown_ms:
            self._report_firing(update, silent, "order_update")

    # ------------------------------------------------------------ internals

    def _report_firing(self, order: OrderUpdate | OrderResult, silent: float, seen: str) -> None:
        """One critical record per order the venue's switch cancelled."""
        with self._lock:
            if order.client_order_id in self._fired:
                return
            self._fired.add(order.client_order_id)
        self._audit.log_api_error(
            "deadman_fired",
            {
                "error_type": "countdown_cancel_all_fired",
                "error_message": (
                    "the venue cancelled an open order: the dead-man's switch fired "
                    f"after {silent:.1f} s without a refresh (positions are not closed by it)"
                ),
                "severity": "critical",
                "client_order_id": order.client_order_id,
                "order_type": order.order_type.value,
                "countdown_ms": self._countdown_ms,
                "seconds_since_refresh": round(silent, 3),
                "seen_in": seen,
            },
            symbol=order.symbol,
        )

    def _beat(self, symbol: str) -> None:
        try:
            listed = frozenset(o.client_order_id for o in self._exchange.open_orders(symbol))
        except ExchangeError as exc:
            self._failed(symbol, exc)
            return
        with self._lock:
            armed = symbol in self._armed
            if not listed and not armed:
                self._failing.pop(symbol, None)  # nothing to guard: a failed arming is moot
        if listed:
            self._send(symbol, self._countdown_ms, listed=listed)
        elif armed:
            self._send(symbol, 0, reason="no_open_orders")

    def _send(
        self,
        symbol: str,
        countdown_ms: int,
        *,
        listed: frozenset[str] = frozenset(),
        reason: str = "",
    ) -> None:
        started = self._clock.monotonic()
        try:
            self._exchange.set_cancel_countdown(symbol, countdown_ms)
        except ExchangeError as exc:
            self._failed(symbol, exc)
            return
        with self._lock:
            timer = self._armed.get(symbol)
            after = timer.failures if timer is not None else self._failing.pop(symbol, 0)
            if countdown_ms:
                self._armed[symbol] = _Timer(sent_at=started, orders=listed)
            else:
                self._armed.pop(symbol, None)
        if timer is not None and (started - timer.sent_at) * 1000 >= self._countdown_ms:
            self._look_for_firing(symbol, timer.orders - listed, started - timer.sent_at)
        if countdown_ms and timer is not None and not after:
            return  # a quiet refresh
        details: dict[str, object] = {"action": "armed" if countdown_ms else "disarmed"}
        details["countdown_ms"] = self._countdown_ms
        if countdown_ms:
            details |= {"refresh_seconds": self._refresh, "open_orders": len(listed)}
        else:
            details["reason"] = reason
        if after:
            details["after_failures"] = after
        self._audit.log_event(
            AuditEventType.HEARTBEAT, OPERATION, symbol=symbol, additional_data=details
        )

    def _look_for_firing(self, symbol: str, gone: frozenset[str], silent: float) -> None:
        """After a lapse, the orders listed before it and gone now: cancelled, and not by us?

        The stream that would have told is often down with the rest (a lost
        network is what the switch is for), so the venue's records are asked.
        """
        for cid in sorted(gone):
            if self._cancelled_here(cid):
                continue
            try:
                order = self._exchange.query_order(symbol, cid)
            except ExchangeError as exc:
                log.warning("dead-man's switch: cannot look %s up: %s", cid, exc)
                continue
            if order is not None and order.status is OrderStatus.CANCELED:
                self._report_firing(order, silent, "order_query")

    def _failed(self, symbol: str, error: ExchangeError) -> None:
        """Record the first failure of a streak, and the moment it outlasts the countdown."""
        log.warning("dead-man's switch for %s: %s", symbol, error)
        with self._lock:
            timer = self._armed.get(symbol)
            if timer is None:
                failures = self._failing[symbol] = self._failing.get(symbol, 0) + 1
                silent, lapsed, record = None, False, failures == 1
            else:
                timer.failures += 1
                failures = timer.failures
                silent = self._clock.monotonic() - timer.sent_at
                lapsed = silent * 1000 >= self._countdown_ms
                record = failures == 1 or (lapsed and not timer.lapse_recorded)
                timer.lapse_recorded = timer.lapse_recorded or lapsed
        if not record:
            return
        fields: dict[str, object] = {
            "error_type": type(error).__name__,
            "error_message": str(error),
            "failures": failures,
            "countdown_ms": self._countdown_ms,
            "countdown_lapsed": lapsed,
        }
        if silent is not None:
            fields["seconds_since_refresh"] = round(silent, 3)
        self._audit.log_api_error(OPERATION, fields, symbol=symbol)
