"""Trading results, signals and control state, derived from the trail alone (SPEC §9, §11).

One known trail, its figures computed by hand: a take-profit filled in two trades, a
stop-loss, a trade opened on one day and closed by the protective close on the next,
a position still open, a rejection and a failure. The store must give the same
figures whether it read the trail itself or a restart found it in the day index cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from dashboard.store import SignalRow, TrailStore
from tests.dashboard.conftest import T0, FakeClock

DAY = 86_400
MIDNIGHT = (T0 // DAY + 1) * DAY  # day 1 ends, day 2 begins


class _Trail:
    def __init__(self, logger: AuditLogger, clock: FakeClock) -> None:
        self.log, self.clock = logger, clock

    def event(self, kind: str, trace: str | None, symbol: str | None, **fields: Any) -> None:
        self.log.log_event(kind, kind, symbol=symbol, trace_id=trace, **fields)
        self.clock.advance(1)

    def signal(self, trace: str, symbol: str, side: str, entry: float) -> None:
        data = {"signal_generated": True, "signal_type": side, "entry_price": entry}
        self.event("signal_processing", trace, symbol, additional_data={**data, "strategy": "s1"})

    def executed(self, trace: str, symbol: str, capped: bool = False) -> None:
        self.event("risk_validation", trace, symbol)
        if capped:
            self.event(
                "position_size_capped",
                trace,
                symbol,
                additional_data={"requested_quantity": 4.0, "capped_quantity": 2.0},
            )
        self.event("position_size_calculated", trace, symbol)
        self.event("trade_executed", trace, symbol, additional_data={"entry_price": 0})

    def fill(self, trace: str, symbol: str, role: str, side: str, **response: float) -> None:
        self.event(
            "order_filled",
            trace,
            symbol,
            response={"side": side, "status": "FILLED", **response},
            additional_data={"role": role},
        )


def write_known_trail(directory: Path) -> None:
    clock = FakeClock(MIDNIGHT - 3600)
    with AuditLogger(directory, clock=clock, fsync_interval=3600) as logger:
        t = _Trail(logger, clock)
        t.event("balance_query", None, None, response={"wallet_balance": 1000.0})
        # A: long BTCUSDT, take-profit filled in two trades
        t.signal("A", "BTCUSDT", "LONG", 100.0)
        t.executed("A", "BTCUSDT")
        t.fill("A", "BTCUSDT", "e", "BUY", executed_qty=1, avg_price=100.5, commission=0.05)
        t.fill("A", "BTCUSDT", "tp", "SELL", executed_qty=0.6, avg_price=103, realized_pnl=2.0,
               commission=0.05)  # fmt: skip
        t.fill("A", "BTCUSDT", "tp", "SELL", executed_qty=1, avg_price=103, realized_pnl=1.0,
               commission=0.03)  # fmt: skip
        # B: short ETHUSDT, capped, stopped out
        t.signal("B", "ETHUSDT", "SHORT", 50.0)
        t.executed("B", "ETHUSDT", capped=True)
        t.fill("B", "ETHUSDT", "e", "SELL", executed_qty=2, avg_price=49.9, commission=0.02)
        t.fill("B", "ETHUSDT", "sl", "BUY", executed_qty=2, avg_price=50.65, realized_pnl=-1.5,
               commission=0.02)  # fmt: skip
        # C: rejected; D: failed at the venue
        t.signal("C", "BTCUSDT", "LONG", 100.0)
        t.event("risk_rejection", "C", "BTCUSDT", error={"reason": "existing_position"})
        t.signal("D", "ETHUSDT", "LONG", 50.0)
        t.event("risk_validation", "D", "ETHUSDT")
        t.event("order_rejected", "D", "ETHUSDT", error={"error_code": -2019})
        t.event("trade_execution_failed", "D", "ETHUSDT", additional_data={"error_type": "margin"})
        # E: still open; F: opened today, closed tomorrow by the protective close
        t.signal("E", "BTCUSDT", "LONG", 101.0)
        t.executed("E", "BTCUSDT")
        t.fill("E", "BTCUSDT", "e", "BUY", executed_qty=0.5, avg_price=101, commission=0.01)
        t.signal("F", "ETHUSDT", "LONG", 60.0)
        t.executed("F", "ETHUSDT")
        t.fill("F", "ETHUSDT", "e", "BUY", executed_qty=1, avg_price=60, commission=0.01)
        clock.now = MIDNIGHT + 60
        t.fill("F", "ETHUSDT", "x", "SELL", executed_qty=1, avg_price=59.5, realized_pnl=-0.5,
               commission=0.01)  # fmt: skip
        t.event("balance_query", None, None, response={"wallet_balance": 1000.8})
        t.event(
            "trading_state_changed",
            None,
            None,
            additional_data={"from": "active", "to": "halted", "reason": "r", "source": "operator"},
        )
        t.event(
            "protection_triggered",
            None,
            "BTCUSDT",
            additional_data={"protection": "cooldown", "until": "2099-01-01T00:00:00.000000Z"},
        )
        t.event(
            "protection_triggered",
            None,
            None,
            additional_data={"protection": "max_drawdown", "until": "2000-01-01T00:00:00.000000Z"},
        )


@pytest.fixture(params=["read", "restarted", "restarted, old days by the hour"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TrailStore]:
    write_known_trail(tmp_path / "audit")
    options: dict[str, Any] = {"cache_dir": tmp_path / "cache", "clock": lambda: MIDNIGHT + 600}
    if request.param != "read":
        earlier = TrailStore(tmp_path / "audit", **options)
        earlier.refresh()
        earlier.stop()
    if request.param.endswith("hour"):
        options["minute_days"] = 1
    made = TrailStore(tmp_path / "audit", **options)
    made.refresh()
    yield made
    made.stop()


def test_results_equal_the_hand_computed_sums(store: TrailStore) -> None:
    results = store.results(0, 4e9)
    assert results.realized_pnl == pytest.approx(2.0 + 1.0 - 1.5 - 0.5)
    assert results.fees == pytest.approx(0.05 + 0.05 + 0.03 + 0.02 + 0.02 + 0.01 + 0.01 + 0.01)
    assert results.net_pnl == pytest.approx(1.0 - 0.20)
    assert (results.trades, results.wins, results.losses) == (3, 1, 2)
    assert results.exits == {"take_profit": 1, "stop_loss": 1, "protective_close": 1}
    btc, eth = results.by_symbol["BTCUSDT"], results.by_symbol["ETHUSDT"]
    assert btc.net_pnl == pytest.approx(3.0 - 0.14) and (btc.wins, btc.trades) == (1, 1)
    assert eth.net_pnl == pytest.approx(-2.0 - 0.06) and (eth.losses, eth.trades) == (2, 2)
    assert results.cumulative[-1][1] == pytest.approx(results.net_pnl)
    bps = {s.trace_id: s.bps for s in results.slippage}
    assert bps == pytest.approx({"A": 50.0, "B": 20.0, "E": 0.0, "F": 0.0})
    day_two = store.results(MIDNIGHT, 4e9)
    assert (day_two.trades, day_two.losses, day_two.exits["protective_close"]) == (1, 1, 1)
    assert day_two.net_pnl == pytest.approx(-0.5 - 0.01)
    assert store.results(0, 4e9, bot="other").trades == 0


def test_signals_have_their_outcome_and_result(store: TrailStore) -> None:
    rows = {row.trace_id: row for row in store.signals(0, 4e9)}
    assert [row.trace_id for row in store.signals(0, 4e9)] == ["F", "E", "D", "C", "B", "A"]
    a, b, c, d, e, f = (rows[k] for k in "ABCDEF")
    assert (a.outcome, a.exit_kind, a.exit_price, a.fill_price) == (
        "traded",
        "take_profit",
        103,
        100.5,
    )
    assert a.pnl == pytest.approx(3.0 - 0.13)
    assert (b.outcome, b.exit_kind) == ("capped", "stop_loss")
    assert b.pnl == pytest.approx(-1.5 - 0.04)
    assert (c.outcome, c.reason, c.pnl) == ("rejected", "existing_position", None)
    assert (d.outcome, d.reason) == ("failed", "margin")
    assert (e.outcome, e.exit_kind, e.pnl) == ("traded", None, None)
    assert (f.exit_kind, f.exit_price) == ("protective_close", 59.5)
    assert f.pnl == pytest.approx(-0.5 - 0.02)
    assert isinstance(a, SignalRow) and (a.side, a.strategy, a.entry_price) == ("LONG", "s1", 100)
    rejected = store.signals(0, 4e9, outcome="rejected", reason="existing_position")
    assert [row.trace_id for row in rejected] == ["C"]
    assert [row.trace_id for row in store.signals(0, 4e9, symbol="ETHUSDT", limit=2)] == ["F", "D"]


def test_open_positions_equity_and_control_state(store: TrailStore) -> None:
    positions = store.open_positions()
    assert [(p.trace_id, p.symbol, p.side, p.quantity, p.entry_price) for p in positions] == [
        ("E", "BTCUSDT", "BUY", 0.5, 101)
    ]
    assert [(bot, balance) for _, bot, balance in store.equity(0, 4e9)] == [
        ("bot", 1000.0),
        ("bot", 1000.8),
    ]
    control = store.control_state()["bot"]
    assert (control.state, control.source, control.reason) == ("halted", "operator", "r")
    assert [(p.name, p.symbol) for p in control.protections] == [("cooldown", "BTCUSDT")]
    assert control.protections[0].until == 4_070_908_800.0  # 2099-01-01, not "no end"


def test_a_trace_of_an_older_day_is_found_through_the_day_index(store: TrailStore) -> None:
    # F began before midnight; only its exit is among the newest records kept in memory
    events = [(r["event_type"], r.get("additional_data", {}).get("role")) for r in store.trace("F")]
    assert events[0] == ("signal_processing", None)
    assert events[-1] == ("order_filled", "x")
    assert len(events) == 6


def test_a_trace_whose_start_is_not_in_memory_is_read_whole_from_the_day_files(
    tmp_path: Path,
) -> None:
    clock = FakeClock(MIDNIGHT - 600)
    audit, options = tmp_path / "audit", {"cache_dir": tmp_path / "cache", "tail_lines": 0}
    with AuditLogger(audit, clock=clock, fsync_interval=3600) as logger:
        t = _Trail(logger, clock)
        t.signal("G", "BTCUSDT", "LONG", 10.0)
        t.executed("G", "BTCUSDT")
        t.fill("G", "BTCUSDT", "e", "BUY", executed_qty=1, avg_price=10, commission=0.01)
    store = TrailStore(audit, **options)  # type: ignore[arg-type]
    store.refresh()
    store.stop()
    restarted = TrailStore(audit, **options)  # type: ignore[arg-type]
    restarted.refresh()  # nothing of G in memory: tail_lines=0
    clock.now = MIDNIGHT + 5
    with AuditLogger(audit, clock=clock, fsync_interval=3600) as logger:
        _Trail(logger, clock).fill("G", "BTCUSDT", "sl", "SELL", executed_qty=1, avg_price=9,
                                   realized_pnl=-1.0, commission=0.01)  # fmt: skip
    restarted.refresh()  # the exit arrives live, on the next day
    kinds = [r["event_type"] for r in restarted.trace("G")]
    assert kinds[0] == "signal_processing" and kinds[-1] == "order_filled"
    assert len(kinds) == 6
    restarted.stop()
