"""Trading controls: flatten's time to flat, and what the state and limit checks cost a signal.

1. ``flatten`` on the fake Binance (tests/fakebinance, the real python-binance
   client over 127.0.0.1) with 3 open positions, each with its take-profit and
   stop-loss algo orders: time to flat as ControlDesk reports it (cancel, close,
   confirmed at the venue), p50 and max over ``--runs``.
2. ``RiskManager.validate_risk`` on the paper exchange with the EntryGuard
   (state, every protection and limit on) against without it, in the same run,
   alternating rounds: microseconds per signal and the ratio. Both write their
   ``risk_validation`` record, as the bot does.

    python -m benchmarks.controls [--runs 20] [--signals 20000]

Figures go to docs/benchmarks.md with the command that made them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from bot.audit import AuditLogger, new_trace_id
from bot.control.desk import ControlDesk
from bot.control.guard import EntryGuard
from bot.control.protections import (
    PreTradeLimits,
    Protections,
    ProtectionSettings,
    StoplossGuard,
)
from bot.control.state import Source, TradingControl, TradingState
from bot.exchange.paper import PaperExchange
from bot.execution import OrderExecutionManager
from bot.models import Candle, Signal, SignalType
from bot.risk import RiskLimits, RiskManager
from tests.fakebinance import API_KEY, API_SECRET, FakeBinance
from tests.fakebinance.symbols import DEFAULT_SYMBOLS, SymbolSpec

LIMITS = RiskLimits(risk_percent=1.0, max_position_percent=20.0, leverage=10)
BNB = SymbolSpec(
    "BNBUSDT",
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.01"),
    min_qty=Decimal("0.01"),
    max_qty=Decimal("10000"),
    market_max_qty=Decimal("2000"),
    min_notional=Decimal("5"),
    price=Decimal("600.00"),
    base_asset="BNB",
)
SYMBOLS = (*DEFAULT_SYMBOLS, BNB)


def signal(symbol: str, price: float) -> Signal:
    return Signal(
        symbol=symbol,
        signal_type=SignalType.LONG,
        entry=price,
        take_profit=price * 1.04,
        stop_loss=price * 0.98,
        interval="1m",
        strategy="bench",
        close_price=price,
        candle_close_time=0,
    )


def flatten_runs(runs: int, workdir: Path) -> list[float]:
    from bot.exchange.binance import BinanceExchange

    times: list[float] = []
    with FakeBinance(symbols=SYMBOLS) as fake:
        audit = AuditLogger(workdir / "flatten", fsync_interval=1.0)
        exchange = BinanceExchange(
            api_key=API_KEY, api_secret=API_SECRET, base_url=fake.rest_url, ws_url=fake.ws_url
        )
        try:
            control = TradingControl(audit)
            guard = EntryGuard(control, Protections(ProtectionSettings()), PreTradeLimits(), audit)
            execution = OrderExecutionManager(exchange, audit, leverage=10, gate=control)
            symbols = [s.symbol for s in SYMBOLS]
            for symbol in symbols:
                execution.configure_symbol(symbol)
            desk = ControlDesk(guard, execution, symbols)
            for _ in range(runs):
                control.change(TradingState.ACTIVE, source=Source.OPERATOR, reason="bench")
                for spec in SYMBOLS:
                    result = execution.execute(
                        signal(spec.symbol, float(spec.price)),
                        float(spec.min_qty) * 10,
                        new_trace_id(),
                    )
                    assert result.ok, result.error_message
                result_ = desk.flatten()
                assert result_["flat"], result_
                times.append(result_["time_to_flat_seconds"])
        finally:
            exchange.close()
            audit.close()
    return times


def check_costs(signals: int, workdir: Path) -> tuple[float, float]:
    """(µs per validate_risk without the guard, with it), medians of alternating rounds."""
    paper = PaperExchange(initial_balance=10_000.0)
    paper.on_market_candle(Candle("BTCUSDT", "1m", 0, 50_000, 50_000, 50_000, 50_000, 1, 59_999))
    audit = AuditLogger(workdir / "costs", fsync_interval=1.0)
    guard = EntryGuard(
        TradingControl(audit, max_orders_per_minute=100_000),
        Protections(
            ProtectionSettings(
                daily_loss_limit_percent=50.0,
                max_drawdown_percent=50.0,
                stoploss_guard=StoplossGuard(count=3, window=3600.0, lock=3600.0),
                cooldown=60.0,
            )
        ),
        PreTradeLimits(
            max_order_notional=1e9, price_collar_percent=5.0, max_orders_per_minute=100_000
        ),
        audit,
    )
    plain, guarded = RiskManager(LIMITS, audit), RiskManager(LIMITS, audit, guard)
    position, balance = paper.position("BTCUSDT"), paper.balance()
    filters = paper.symbol_filters("BTCUSDT")
    sig = signal("BTCUSDT", 50_000.0)
    per_round = max(1, signals // 10)
    rounds: dict[str, list[float]] = {"plain": [], "guarded": []}
    try:
        for _ in range(10):
            for name, risk in (("plain", plain), ("guarded", guarded)):
                started = time.perf_counter()
                for _ in range(per_round):
                    assert risk.validate_risk(sig, position, balance, filters, 50_000.0)
                rounds[name].append((time.perf_counter() - started) / per_round * 1e6)
    finally:
        audit.close()
    return statistics.median(rounds["plain"]), statistics.median(rounds["guarded"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--signals", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times = flatten_runs(args.runs, Path(tmp))
        plain, guarded = check_costs(args.signals, Path(tmp))
    print(
        f"flatten, 3 positions with TP/SL on the fake Binance, {len(times)} runs: "
        f"time to flat p50 {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms"
    )
    print(
        f"validate_risk on paper, {args.signals} signals each: without guard {plain:.1f} us, "
        f"with state+protections+limits {guarded:.1f} us "
        f"(+{guarded - plain:.1f} us, ratio {guarded / plain:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
