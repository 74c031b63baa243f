"""Shared dashboard fixtures: fake time, realistic trails written by the real AuditLogger,
and a deadline-based wait (never a bare sleep).

* ``FakeClock``: an injectable clock; ``clock()`` is epoch ns (AuditLogger),
  ``clock.time()`` epoch seconds (TrailStore, alert engine).
* ``write_flow(logger, clock, kind, symbol)``: one signal's events as SPEC §6 lists
  them (``normal``, ``rejected``, ``capped``, ``failed``), with a fresh trace_id.
* ``trail_writer`` fixture: ``trail_writer(directory, start=T0)`` -> (AuditLogger,
  FakeClock), closed at teardown.
* ``make_trail`` fixture: ``make_trail(directory, flows=..., start=T0)`` writes a mixed
  trail (flows of every kind over two symbols, heartbeats) and closes the logger.
* ``stores`` fixture: ``stores(directory, **options)`` -> a TrailStore on the test's own
  index cache, stopped at teardown; ``truth(directory, ...)``: the trail's event counts
  read record by record, what a store's counts must equal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from bot.audit.reader import iter_records
from dashboard.store import TrailStore, epoch_seconds

T0 = 1_795_000_000.0  # 2026-11-18T09:46:40Z: a fixed, recent moment
SYMBOLS = ("BTCUSDT", "ETHUSDT")
FLOW_KINDS = ("normal", "rejected", "capped", "failed")


class FakeClock:
    """Injected time: ``clock()`` -> epoch ns, ``clock.time()`` -> epoch seconds."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return int(self.now * 1_000_000_000)

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_flow(
    logger: AuditLogger,
    clock: FakeClock,
    kind: str,
    symbol: str = "BTCUSDT",
    *,
    reason: str = "existing_position",
    step: float = 0.1,
    trace_id: str | None = None,
) -> str:
    """Write the events of one signal (SPEC §6) ``step`` seconds apart; returns its trace_id."""
    tid = trace_id or f"t{clock():x}{kind[:2]}"
    signal = {
        "signal_generated": True,
        "signal_type": "LONG",
        "interval": "1m",
        "close_price": 100.0,
        "entry_price": 100.0,
        "take_profit": 104.0,
        "stop_loss": 98.0,
        "strategy": "ema_cross",
    }

    def event(event_type: str, operation: str, **fields: Any) -> None:
        logger.log_event(event_type, operation, symbol=symbol, trace_id=tid, **fields)
        clock.advance(step)

    event("signal_processing", "process_signal", additional_data=signal)
    if kind == "rejected":
        logger.log_risk_rejection(
            symbol, reason, "already in a position", "position_check", signal, trace_id=tid
        )
        clock.advance(step)
        return tid
    event("risk_validation", "validate_risk", order_data=signal)
    if kind == "capped":
        event(
            "position_size_capped",
            "calculate_position_size",
            additional_data={
                "requested_quantity": 2.0,
                "capped_quantity": 1.5,
                "max_position_percent": 10.0,
                "leverage": 5,
                "account_balance": 1000.0,
            },
        )
    event(
        "position_size_calculated",
        "calculate_position_size",
        additional_data={
            "account_balance": 1000.0,
            "entry_price": 100.0,
            "stop_loss_price": 98.0,
            "leverage": 5,
            "risk_amount": 10.0,
            "sl_distance_percent": 2.0,
            "quantity": 1.5 if kind == "capped" else 0.5,
        },
    )
    if kind == "failed":
        logger.log_order_rejected(
            symbol,
            {"order_type": "MARKET", "side": "BUY", "quantity": 0.5},
            {"error_code": -2019, "error_message": "Margin is insufficient."},
            trace_id=tid,
        )
        clock.advance(step)
        event(
            "trade_execution_failed",
            "execute_trade",
            additional_data={
                "signal_type": "LONG",
                "entry_price": 100.0,
                "error_type": "order_rejected",
                "error_message": "Margin is insufficient.",
            },
        )
        return tid
    for order_type, side in (
        ("MARKET", "BUY"),
        ("TAKE_PROFIT_MARKET", "SELL"),
        ("STOP_MARKET", "SELL"),
    ):
        logger.log_order_placed(
            symbol,
            {"order_type": order_type, "side": side, "quantity": 0.5},
            {"status": "NEW"},
            trace_id=tid,
        )
        clock.advance(step)
    event(
        "trade_executed",
        "execute_trade",
        additional_data={
            "signal_type": "LONG",
            "entry_price": 100.0,
            "quantity": 0.5,
            "leverage": 5,
            "entry_order_id": 1,
            "tp_sl_count": 2,
        },
    )
    return tid


@pytest.fixture
def trail_writer() -> Iterator[Callable[..., tuple[AuditLogger, FakeClock]]]:
    """Factory of (AuditLogger, FakeClock) on a directory; every logger is closed at teardown."""
    loggers: list[AuditLogger] = []

    def make(
        directory: Path, start: float = T0, hmac_key: str | None = None
    ) -> tuple[AuditLogger, FakeClock]:
        clock = FakeClock(start)
        logger = AuditLogger(
            directory,
            clock=clock,
            hmac_key=hmac_key,
            fsync_interval=3600,
            checkpoint_interval=1e9,
        )
        loggers.append(logger)
        return logger, clock

    yield make
    for logger in loggers:
        logger.close()


@pytest.fixture
def make_trail(
    trail_writer: Callable[..., tuple[AuditLogger, FakeClock]],
) -> Callable[..., FakeClock]:
    """Write a closed, mixed trail: ``flows`` signals cycling through every flow kind and
    both symbols, a heartbeat every 60 s of fake time. Returns the clock (time after it)."""

    def make(
        directory: Path,
        *,
        flows: int = 20,
        start: float = T0,
        gap: float = 7.0,
        hmac_key: str | None = None,
    ) -> FakeClock:
        logger, clock = trail_writer(directory, start, hmac_key)
        last_heartbeat = -1e18
        for i in range(flows):
            if clock.now - last_heartbeat >= 60:
                logger.log_event("heartbeat", "heartbeat")
                last_heartbeat = clock.now
            write_flow(logger, clock, FLOW_KINDS[i % 4], SYMBOLS[(i // 4) % 2])
            clock.advance(gap)
        logger.close()
        return clock

    return make


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[..., TrailStore]]:
    """TrailStore factory on one cache directory; every store is stopped at teardown."""
    made: list[TrailStore] = []

    def make(directory: Path, **options: object) -> TrailStore:
        options.setdefault("cache_dir", tmp_path / "cache")
        store = TrailStore(directory, poll_interval=0.2, **options)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        store.stop()


def truth(
    directory: Path, start: float = 0, end: float = 4e9, symbol: str | None = None
) -> Counter[str]:
    """The trail's event counts in [start, end), read record by record."""
    return Counter(
        r["event_type"]
        for r in iter_records(directory)
        if start <= epoch_seconds(r["timestamp"]) < end
        and (symbol is None or r.get("symbol") == symbol)
    )
