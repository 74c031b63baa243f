"""The venue's bad days that tests switch on by time: an amnesiac algo service, invisible orders.

Both are off by default. ``forget_algo_orders(seconds)``: the algo service
answers -2013 / -2011 for orders that exist, while ``openAlgoOrders`` still
lists them. ``hide(cid, seconds)``: an order processed but invisible to
queries and open-order lists (the server does it after a 503 -1000 fault).
The other switches are plain attributes read where they act
(``trigger_faults`` in ``algo.py``, ``trades_per_fill`` in ``orders.py``,
``dual_side`` / ``multi_assets`` in ``account.py``). Each switch on is noted
in ``incidents``.
"""

from __future__ import annotations

from tests.fakebinance.state import VenueState


class BadDays(VenueState):
    """Switches with a deadline, and the checks the order services make against them."""

    def forget_algo_orders(self, seconds: float) -> None:
        """The algo service answers -2013/-2011 for existing orders for ``seconds``."""
        with self.lock:
            self.algo_amnesia_until = self._clock() + int(seconds * 1000)
            self.incidents.append((self._clock(), "algo_amnesia", ""))

    def hide(self, cid: str, seconds: float) -> None:
        """Order ``cid`` exists but queries and open lists do not show it for ``seconds``."""
        with self.lock:
            self.hidden_until[cid] = self._clock() + int(seconds * 1000)
            self.incidents.append((self._clock(), "hidden_order", cid))

    def _hidden(self, cid: str) -> bool:
        return self.hidden_until.get(cid, 0) > self._clock()

    def _algo_amnesia(self) -> bool:
        return self.algo_amnesia_until > self._clock()
