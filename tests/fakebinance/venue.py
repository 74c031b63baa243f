"""The fake Binance USD-M futures venue: its state machine, joined from parts by job.

Pure, synchronous and thread-safe (one re-entrant lock), so the HTTP layer in
``server.py`` and the test thread (``set_price``, assertions) can both touch it.
Business errors are raised as :class:`~tests.fakebinance.params.VenueError`
carrying the Binance code and message; the HTTP layer turns them into
Binance-style JSON errors. User-data events (ORDER_TRADE_UPDATE, ALGO_UPDATE,
ACCOUNT_UPDATE) go to ``emit``. The parts, each building on those before it:

* ``symbols.py`` what is traded, its filters; ``params.py`` request rules;
* ``records.py`` positions, orders, algo orders and their JSON shapes;
* ``state.py`` everything held, under the lock;
* ``account.py`` wallet, margin, positions, leverage and the account's modes;
* ``baddays.py`` the switches that make the venue misbehave for a while;
* ``timeline.py`` when a position stood without a working stop-loss;
* ``orders.py`` regular orders, matching and fills;
* ``algo.py`` the Algo Order service (TP/SL) and its triggers;
* here, what spans both kinds of order: the market moving (``set_price``) and
  the dead-man's switch.

``countdownCancelAll`` (the dead-man's switch) keeps one timer per symbol
(``countdowns``: symbol -> server ms when it fires); the server calls
:meth:`Venue.expire_countdowns` every 50 ms, which cancels the symbol's open
regular orders (ORDER_TRADE_UPDATE CANCELED pushed, as for any cancel) and
leaves positions alone. Binance documents "all open orders of the symbol"
and keeps conditional orders in the separate Algo Service with its own
cancel-all endpoint; whether the countdown reaches them is not documented, so
``countdown_cancels_algo = True`` models the other reading.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.fakebinance.algo import AlgoService
from tests.fakebinance.params import Params, VenueError, mandatory


class Venue(AlgoService):
    """Exchange state machine. Every public method takes the lock."""

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move the market: fill crossing LIMIT orders, then trigger crossing algo orders."""
        with self.lock:
            self.spec(symbol)
            self.prices[symbol] = price
            for order in list(self.orders):
                if order.symbol != symbol or order.status != "NEW" or order.type != "LIMIT":
                    continue
                crosses = price <= order.price if order.side == "BUY" else price >= order.price
                if crosses:
                    self._fill(order, order.price)
            for algo in list(self.algo_orders):
                if algo.symbol != symbol or algo.status != "NEW":
                    continue
                if self._would_trigger(algo.type, algo.side, algo.trigger_price, price):
                    self._trigger(algo, price)
            self._note(symbol)

    def countdown_cancel_all(self, params: Params) -> dict[str, Any]:
        """POST /fapi/v1/countdownCancelAll: (re)start the symbol's timer; 0 stops it."""
        with self.lock:
            symbol = self.spec(params.get("symbol")).symbol
            raw = params.get("countdownTime")
            if not raw:
                raise mandatory("countdownTime")
            if not raw.isdigit():
                raise VenueError(-1100, "Illegal characters found in parameter 'countdownTime'.")
            countdown = int(raw)
            if countdown:
                self.countdowns[symbol] = self._clock() + countdown
            else:
                self.countdowns.pop(symbol, None)
            return {"symbol": symbol, "countdownTime": str(countdown)}

    def expire_countdowns(self) -> None:
        """Fire every lapsed timer: the symbol's open orders are cancelled, positions stay."""
        with self.lock:
            now = self._clock()
            for symbol, fires_at in list(self.countdowns.items()):
                if fires_at > now:
                    continue
                del self.countdowns[symbol]
                self.incidents.append((now, "countdown_fired", symbol))
                self.cancel_all({"symbol": symbol})
                if self.countdown_cancels_algo:
                    self.cancel_all_algo({"symbol": symbol})
