"""Decision latency: closed candle → entry, take-profit and stop-loss submitted (paper venue).

Runs the real engine, risk manager, execution manager and paper exchange
twice in the same process — once with the real AuditLogger writing to a temp
directory, once with a null logger that has the same methods and does
nothing — alternating blocks of signals so both see the same machine load.
Each timed call is ``engine.on_candle`` for a candle that produces a signal
and a full normal/capped flow (queries, risk, sizing, three orders, result).
Between timed calls an untimed candle hits the take-profit so the next
signal starts flat. Prints p50/p99 for both and the audit overhead.

    python benchmarks/decision_latency.py [--signals 5000]

Targets: p50 <= 1 ms with the real logger, audit overhead <= 5 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.audit import AuditLogger
from bot.engine import TradingEngine
from bot.exchange.paper import PaperExchange
from bot.execution import OrderExecutionManager
from bot.models import Candle, Signal, SignalType
from bot.risk import RiskLimits, RiskManager

SYMBOL = "BTCUSDT"
BLOCK = 250


class NullAuditLogger:
    """The AuditLogger's call surface, doing nothing: the baseline."""

    def log_event(self, *args: Any, **kwargs: Any) -> None:
        pass

    log_order_placed = log_order_rejected = log_risk_rejection = log_api_error = log_event

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class SignalOnMarkedCandles:
    """LONG on every candle with volume 1.0, 2 % stop and 4 % target; nothing otherwise."""

    name = "bench"
    history_needed = 1

    def evaluate(self, candles: Any) -> Signal | None:
        c = candles[-1]
        if c.volume != 1.0:
            return None
        return Signal(SYMBOL, SignalType.LONG, c.close, c.close * 1.04, c.close * 0.98, "1m",
                      self.name, c.close, c.close_time)  # fmt: skip


class Rig:
    def __init__(self, audit: Any) -> None:
        self.audit = audit
        self.paper = PaperExchange(initial_balance=1e9, fee_rate=0.0, slippage_bps=0.0)
        execution = OrderExecutionManager(self.paper, audit, leverage=10)
        self.engine = TradingEngine(
            strategy=SignalOnMarkedCandles(),
            risk=RiskManager(RiskLimits(1.0, 20.0, 10), audit),
            execution=execution,
            audit=audit,
        )
        self.paper.subscribe_order_updates(self.engine.on_order_update)
        execution.configure_symbol(SYMBOL)
        self.minute = 0
        self.samples: list[int] = []

    def candle(self, close: float, high: float, volume: float) -> Candle:
        self.minute += 1
        t = 1_700_000_000_000 + self.minute * 60_000
        return Candle(SYMBOL, "1m", t, close, high, close, close, volume, t + 59_999)

    def run(self, signals: int) -> None:
        for _ in range(signals):
            c = self.candle(50_000.0, 50_000.0, 1.0)
            self.paper.on_market_candle(c)
            start = time.perf_counter_ns()
            self.engine.on_candle(c)
            self.samples.append(time.perf_counter_ns() - start)
            exit_candle = self.candle(50_000.0, 53_000.0, 2.0)  # crosses the take-profit
            self.paper.on_market_candle(exit_candle)
            self.engine.on_candle(exit_candle)
            self.paper._state.wallet = 1e9  # no compounding: every signal sizes alike
        assert self.engine.stats.trades_executed == self.engine.stats.signals


def percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=5000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        audit = AuditLogger(Path(tmp) / "audit")
        real, null = Rig(audit), Rig(NullAuditLogger())
        real.run(100)  # warm-up, not measured
        null.run(100)
        real.samples.clear()
        null.samples.clear()
        done = 0
        while done < args.signals:
            n = min(BLOCK, args.signals - done)
            real.run(n)
            null.run(n)
            done += n
        audit.close()
        written = audit.stats.written

    print(f"decision latency, candle close -> entry+TP+SL submitted, {args.signals} signals each")
    rows = (("real AuditLogger", real.samples), ("null logger", null.samples))
    for name, samples in rows:
        print(
            f"  {name:17s} p50 {percentile(samples, 0.50):.3f} ms   "
            f"p99 {percentile(samples, 0.99):.3f} ms   "
            f"mean {statistics.fmean(samples) / 1e6:.3f} ms"
        )
    p50_real, p50_null = percentile(real.samples, 0.5), percentile(null.samples, 0.5)
    overhead = p50_real / p50_null - 1
    per_record = (p50_real - p50_null) / 9  # records per timed flow incl. the 2 queries
    print(f"  audit overhead at p50: {overhead:+.1%} ({per_record * 1000:.1f} us per record)")
    print(f"  audit records written: {written}")
    print(f"  target p50 <= 1 ms: {'met' if p50_real <= 1.0 else 'NOT met'}; ", end="")
    print(f"overhead <= 5%: {'met' if overhead <= 0.05 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
