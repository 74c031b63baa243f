"""When a position stood without a working stop-loss, from the venue's own records.

After every change to a symbol's orders, algo orders or position, the venue
notes (``_note``) whether that symbol now holds a position that no open
STOP_MARKET on the exit side covers (a closePosition stop, or reduce-only stops
for at least the position). Only changes are kept in ``protection_timeline``,
so tests and the chaos run measure unprotected time from the venue's side
(:meth:`ProtectionTimeline.unprotected_spans`), not from what the bot believes.
"""

from __future__ import annotations

from decimal import Decimal

from tests.fakebinance.state import VenueState


class ProtectionTimeline(VenueState):
    """``_note`` after every change; ``unprotected_spans`` for the read-out."""

    def _unprotected(self, symbol: str) -> bool:
        pos = self.positions[symbol]
        if not pos.amount:
            return False
        exit_side = "SELL" if pos.amount > 0 else "BUY"
        stops = [
            a
            for a in self.algo_orders
            if a.symbol == symbol
            and a.status == "NEW"
            and a.type == "STOP_MARKET"
            and a.side == exit_side
        ]
        covered = sum((a.quantity for a in stops if a.reduce_only), Decimal(0))
        return not (any(a.close_position for a in stops) or covered >= abs(pos.amount))

    def _note(self, symbol: str) -> None:
        """Record whether ``symbol`` stands unprotected now (only changes are kept)."""
        state = self._unprotected(symbol)
        last = next((s for _, sym, s in reversed(self.protection_timeline) if sym == symbol), False)
        if state != last:
            self.protection_timeline.append((self._clock(), symbol, state))

    def unprotected_spans(self, symbol: str) -> list[tuple[int, int]]:
        """(start ms, end ms) of every time ``symbol`` had a position without a stop-loss."""
        with self.lock:
            spans: list[tuple[int, int]] = []
            start: int | None = None
            for at, sym, state in self.protection_timeline:
                if sym != symbol:
                    continue
                if state and start is None:
                    start = at
                elif not state and start is not None:
                    spans.append((start, at))
                    start = None
            if start is not None:
                spans.append((start, self._clock()))
            return spans
