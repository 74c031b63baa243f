"""Fixtures for the bot's tests: a real audit trail in a temp dir, a paper venue, and a
failing-exchange wrapper that injects venue errors without mocking our own logic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from bot.clock import FakeClock
from bot.control.guard import EntryGuard
from bot.control.protections import PreTradeLimits, Protections, ProtectionSettings
from bot.control.state import TradingControl
from bot.engine import TradingEngine
from bot.errors import ExchangeError
from bot.exchange.paper import PaperExchange
from bot.execution import OrderExecutionManager, RetryPolicy
from bot.models import Candle, OrderResult, OrderSide, OrderType, Signal, SignalType
from bot.risk import RiskLimits, RiskManager

# Events SPEC §6 leaves out of a trace's flow.
NOT_IN_FLOW = {
    "position_query",
    "balance_query",
    "order_filled",
    "api_error",
    "retry_attempt",
    "rate_limit",
}
NORMAL = [
    "signal_processing",
    "risk_validation",
    "position_size_calculated",
    "order_placed",
    "order_placed",
    "order_placed",
    "trade_executed",
]
CAPPED = [*NORMAL[:2], "position_size_capped", *NORMAL[2:]]
REJECTED = ["signal_processing", "risk_rejection"]

LIMITS = RiskLimits(risk_percent=1.0, max_position_percent=20.0, leverage=10)
# With LIMITS the cap applies when the stop is closer than 0.5 % of the entry.
WIDE_STOP = 0.02
TIGHT_STOP = 0.002


def read_trail(audit_dir: Path) -> list[dict[str, Any]]:
    """Every record of the trail, in file then line order (parsed here, not via bot code)."""
    records: list[dict[str, Any]] = []
    for path in sorted(audit_dir.glob("audit_*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            records.extend(json.loads(line) for line in fh)
    return records


def events_by_trace(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if "trace_id" in record:
            traces[record["trace_id"]].append(record)
    return dict(traces)


def flow(records: list[dict[str, Any]]) -> list[str]:
    """A trace's event types as SPEC §6 compares them."""
    return [r["event_type"] for r in records if r["event_type"] not in NOT_IN_FLOW]


def candle(
    close: float,
    *,
    symbol: str = "BTCUSDT",
    minute: int = 0,
    high: float | None = None,
    low: float | None = None,
    interval: str = "1m",
) -> Candle:
    open_time = 1_700_000_000_000 + minute * 60_000
    return Candle(
        symbol=symbol,
        interval=interval,
        open_time=open_time,
        open=close,
        high=high if high is not None else close,
        low=low if low is not None else close,
        close=close,
        volume=1.0,
        close_time=open_time + 59_999,
    )


@dataclass
class ScriptedStrategy:
    """Signals on every candle whose close is in ``plan``: (side, stop %, take-profit %)."""

    plan: dict[float, tuple[SignalType, float, float]] = field(default_factory=dict)
    name: str = "scripted"
    history_needed: int = 1

    def evaluate(self, candles: Any) -> Signal | None:
        last = candles[-1]
        step = self.plan.get(last.close)
        if step is None:
            return None
        side, stop, take = step
        sign = 1.0 if side is SignalType.LONG else -1.0
        return Signal(
            symbol=last.symbol,
            signal_type=side,
            entry=last.close,
            take_profit=last.close * (1 + sign * take),
            stop_loss=last.close * (1 - sign * stop),
            interval=last.interval,
            strategy=self.name,
            close_price=last.close,
            candle_close_time=last.close_time,
        )


class FailingExchange:
    """Wraps a PaperExchange; raises scripted errors before (or after) delegating.

    ``fail("place_market_order", err1, err2)`` makes the next two calls raise
    err1 then err2; ``fail_after(...)`` lets the call reach the paper venue
    first and then raises, like a response lost on the way back.
    """

    def __init__(self, inner: PaperExchange) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.client_ids_sent: list[str] = []
        self.clock_syncs = 0
        self._before: dict[str, list[ExchangeError]] = defaultdict(list)
        self._after: dict[str, list[ExchangeError]] = defaultdict(list)
        self._only: dict[str, Callable[..., bool]] = {}

    def fail(self, method: str, *errors: ExchangeError, when: Callable[..., bool] | None = None):
        self._before[method].extend(errors)
        if when is not None:
            self._only[method] = when

    def fail_after(self, method: str, *errors: ExchangeError) -> None:
        self._after[method].extend(errors)

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if name.startswith("place_"):
                self.client_ids_sent.append(args[-1])
            applies = self._only.get(name, lambda *a, **k: True)(*args, **kwargs)
            if applies and self._before[name]:
                raise self._before[name].pop(0)
            result = target(*args, **kwargs)
            if applies and self._after[name]:
                raise self._after[name].pop(0)
            return result

        return call

    def sync_clock(self) -> int:
        self.clock_syncs += 1
        return 1234


def is_stop_loss(symbol: str, side: OrderSide, order_type: OrderType, *rest: Any) -> bool:
    return order_type is OrderType.STOP_MARKET


@dataclass
class Rig:
    """A wired engine over a (possibly failing) paper exchange and a real audit trail."""

    audit_dir: Path
    audit: AuditLogger
    paper: PaperExchange
    exchange: FailingExchange
    execution: OrderExecutionManager
    engine: TradingEngine
    strategy: ScriptedStrategy
    sleeps: list[float]
    guard: EntryGuard
    clock: FakeClock

    def feed(self, *candles: Candle) -> None:
        for c in candles:
            self.paper.on_market_candle(c)
            self.engine.on_candle(c)

    def records(self) -> list[dict[str, Any]]:
        self.audit.flush()
        return read_trail(self.audit_dir)

    def traces(self) -> dict[str, list[dict[str, Any]]]:
        return events_by_trace(self.records())

    def only_trace(self) -> tuple[str, list[dict[str, Any]]]:
        traces = self.traces()
        assert len(traces) == 1, list(traces)
        return next(iter(traces.items()))

    def orders_with_id(self, cid: str) -> list[OrderResult]:
        return [o for o in self.paper._state.orders.values() if o.client_order_id == cid]


def build_rig(
    audit_dir: Path,
    *,
    subscribe: bool = True,
    protections: ProtectionSettings | None = None,
    limits: PreTradeLimits | None = None,
) -> Rig:
    """The engine over a paper venue priced at 50 000; ``subscribe=False``: the engine
    does not hear the venue's order updates yet (as before a restarted bot subscribes).
    Trading controls are wired as the bot wires them (all protections off by default),
    on a fake clock."""
    audit = AuditLogger(audit_dir, fsync_interval=0.05)
    paper = PaperExchange(initial_balance=10_000.0, fee_rate=0.0004, slippage_bps=0.0)
    exchange = FailingExchange(paper)
    sleeps: list[float] = []
    clock = FakeClock()
    limits = limits or PreTradeLimits()
    control = TradingControl(audit, clock=clock, max_orders_per_minute=limits.max_orders_per_minute)
    guard = EntryGuard(
        control, Protections(protections or ProtectionSettings()), limits, audit, clock=clock
    )
    execution = OrderExecutionManager(
        exchange,  # type: ignore[arg-type]
        audit,
        leverage=LIMITS.leverage,
        retry=RetryPolicy(max_attempts=3, backoff_base=0.5, backoff_max=4.0),
        sleep=sleeps.append,
        gate=control,
    )
    strategy = ScriptedStrategy()
    engine = TradingEngine(
        strategy=strategy,
        risk=RiskManager(LIMITS, audit, guard),
        execution=execution,
        audit=audit,
        clock=clock,
    )
    if subscribe:
        paper.subscribe_order_updates(engine.on_order_update)
    execution.configure_symbol("BTCUSDT")
    paper.on_market_candle(candle(50_000.0, minute=-1))
    return Rig(audit_dir, audit, paper, exchange, execution, engine, strategy, sleeps, guard, clock)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    built = build_rig(tmp_path / "audit")
    yield built
    built.audit.close()


# ------------------------------------------------- the bot as a real process

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-api-key-Zq81vL0pX"
API_SECRET = "test-api-secret-Hh27sNd4W"
INTEGRITY = {"audit_checkpoint", "audit_recovered", "audit_gap"}


class BotProcess:
    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        """``python -m bot --audit-dir WORKDIR/audit ARGS``; ``env``: the whole environment
        (default: this one without AUDIT_/BINANCE_ variables, with test keys)."""
        self.workdir = workdir
        self.audit_dir = workdir / "audit"
        if env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "BINANCE_"))}
            env.update(PYTHONPATH=str(ROOT), BINANCE_API_KEY=API_KEY, BINANCE_API_SECRET=API_SECRET)
        self.stdout = open(workdir / "stdout.log", "wb")  # noqa: SIM115 - closed in stop()
        self.stderr = open(workdir / "stderr.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--audit-dir", str(self.audit_dir), *args],
            cwd=workdir,
            env=env,
            stdout=self.stdout,
            stderr=self.stderr,
        )

    def records(self) -> list[dict[str, Any]]:
        return complete_records(self.audit_dir)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.stdout.close()
        self.stderr.close()

    def stderr_text(self) -> str:
        self.stderr.flush()
        return (self.workdir / "stderr.log").read_text()


@pytest.fixture
def run_bot(tmp_path: Path) -> Iterator[Callable[..., BotProcess]]:
    started: list[BotProcess] = []

    def start(*args: str) -> BotProcess:
        bot = BotProcess(tmp_path, *args)
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()


def complete_records(audit_dir: Path) -> list[dict[str, Any]]:
    """The trail of a running bot; complete lines only: a line still being written is not read."""
    out: list[dict[str, Any]] = []
    for path in sorted(audit_dir.glob("audit_*.jsonl")):
        data = path.read_bytes()
        out.extend(json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines())
    return out


def fake_venue_env(rest_url: str, ws_url: str) -> dict[str, str]:
    """The environment of a bot process in testnet mode on the fake Binance at those URLs."""
    from tests.fakebinance import API_KEY as FAKE_KEY
    from tests.fakebinance import API_SECRET as FAKE_SECRET

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "BINANCE_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        BINANCE_API_KEY=FAKE_KEY,
        BINANCE_API_SECRET=FAKE_SECRET,
        BINANCE_FUTURES_URL=rest_url,
        BINANCE_WS_URL=ws_url,
    )
    return env
