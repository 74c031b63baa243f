"""``python -m bot``: the composition root, the only place concrete classes are chosen.

settings → one AuditLogger → exchange (paper or Binance) → execution, risk,
strategy, engine → market feed. Startup follows SPEC §3: sync the clock
(testnet/live), set margin type and leverage per symbol, take over what a
previous run left open (a position without stop-loss is closed, orphaned
orders cancelled), backfill, stream.
SIGINT/SIGTERM set a stop flag; the feed returns, ``bot_stopped`` is written
and the logger closes, so no audit line is ever torn. Exit codes: 0 clean
stop (signal, or the replayed data ended), 1 runtime failure, 2 bad
configuration (nothing traded).

``python -m bot control ...`` is the operator's side of the control channel
(:mod:`bot.control.cli`); the bot's side (trading state, protections, the
control socket) is wired here too.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from bot.audit import AuditDirectoryLocked, AuditEventType, AuditLogger
from bot.clock import SYSTEM, Clock
from bot.config import Settings, load_settings
from bot.control.desk import ControlDesk
from bot.control.guard import EntryGuard
from bot.control.protections import (
    PreTradeLimits,
    Protections,
    ProtectionSettings,
    StoplossGuard,
    next_utc_midnight,
)
from bot.control.restore import read_back, replay
from bot.control.server import ControlServer
from bot.control.state import TradingControl
from bot.deadman import DeadmanSwitch
from bot.durations import parse_duration
from bot.engine import TradingEngine
from bot.errors import ConfigError, ExchangeError
from bot.exchange.base import Exchange
from bot.exchange.paper import PaperExchange, VenueFaults
from bot.execution import OrderExecutionManager, RetryPolicy
from bot.market.base import MarketFeed
from bot.market.replay import ReplayMarket
from bot.market.sim import SimulatedMarket
from bot.models import Candle, MarginType
from bot.risk import RiskLimits, RiskManager
from bot.strategy import EmaCrossStrategy
from bot.supervisor import ProtectionSupervisor

log = logging.getLogger("bot")


@dataclass
class Venue:
    exchange: Exchange
    feed: MarketFeed
    symbols: list[str]
    intervals: list[str]
    on_candle: list[Callable[[Candle], None]]


def build_venue(settings: Settings, audit: AuditLogger, clock: Clock = SYSTEM) -> Venue:
    """Pick the exchange and the market feed for the mode and market."""
    symbols, intervals = list(settings.symbols), list(settings.intervals)
    mode, market = settings.mode, settings.market
    exchange: Exchange
    sinks: list[Callable[[Candle], None]] = []
    if mode == "paper":
        paper = PaperExchange(
            initial_balance=settings.paper.initial_balance,
            fee_rate=settings.paper.fee_rate,
            slippage_bps=settings.paper.slippage_bps,
            clock=clock.time,
            faults=VenueFaults(settings.paper.venue_faults, seed=settings.seed),
        )
        exchange, sinks = paper, [paper.on_market_candle]
    else:
        from bot.exchange.binance import BinanceExchange

        exchange = BinanceExchange(
            api_key=settings.secrets.api_key,
            api_secret=settings.secrets.api_secret,
            testnet=mode == "testnet",
            base_url=settings.futures_url,
            ws_url=settings.ws_url,
            audit=audit,
        )
    feed: MarketFeed
    if market == "sim":
        feed = SimulatedMarket(
            symbols,
            intervals,
            seed=settings.seed,
            speed=settings.speed,
            volatility=settings.sim.volatility,
            history=settings.backfill,
        )
    elif market == "replay":
        replay = ReplayMarket(
            settings.data,
            symbols=symbols,
            intervals=intervals,
            speed=settings.speed,
            history=settings.backfill,
        )
        symbols = sorted({s for s, _ in replay.streams})
        intervals = sorted({i for _, i in replay.streams})
        feed = replay
    else:
        from bot.market.binance import BinanceMarketFeed

        feed = BinanceMarketFeed(
            symbols=symbols,
            intervals=intervals,
            testnet=mode == "testnet",
            base_url=settings.futures_url,
            ws_url=settings.ws_url,
            audit=audit,
        )
    return Venue(exchange, feed, symbols, intervals, sinks)


def _seconds(text: str | None) -> float | None:
    return None if text is None else parse_duration(text)


def build_guard(settings: Settings, audit: AuditLogger, clock: Clock = SYSTEM) -> EntryGuard:
    """The trading state, protections and pre-trade limits of SPEC §11 from ``[protections]``
    and ``[limits]``."""
    section, guard = settings.protections, settings.protections.stoploss_guard
    protections = ProtectionSettings(
        daily_loss_limit_percent=section.daily_loss_limit_percent,
        max_drawdown_percent=section.max_drawdown_percent,
        stoploss_guard=None
        if guard is None
        else StoplossGuard(
            count=guard.count,
            window=parse_duration(guard.window),
            lock=parse_duration(guard.lock),
        ),
        cooldown=_seconds(section.cooldown),
    )
    limits = PreTradeLimits(
        max_order_notional=settings.limits.max_order_notional,
        price_collar_percent=settings.limits.price_collar_percent,
        max_orders_per_minute=settings.limits.max_orders_per_minute,
    )
    control = TradingControl(audit, clock=clock, max_orders_per_minute=limits.max_orders_per_minute)
    return EntryGuard(control, Protections(protections), limits, audit, clock=clock)


def restore_controls(guard: EntryGuard, audit_dir: str, clock: Clock = SYSTEM) -> None:
    """Take the state and the protections' inputs back from the trail; record the start state."""
    now = clock.time()
    protections = guard.protections.settings
    if protections.enabled:
        since = min(now - protections.horizon, next_utc_midnight(now) - 86_400)
        found = read_back(audit_dir, since=since)
    else:  # only the state is needed
        found = read_back(audit_dir, since=now, inputs=frozenset())
    replay(guard.protections, found.records)
    guard.control.start(found.state)


class Bot:
    """The wired components of one run."""

    def __init__(self, settings: Settings, audit: AuditLogger, clock: Clock = SYSTEM) -> None:
        self.settings = settings
        self.audit = audit
        self.clock = clock
        self.venue = build_venue(settings, audit, clock)
        self.guard = build_guard(settings, audit, clock)
        self.execution = OrderExecutionManager(
            self.venue.exchange,
            audit,
            leverage=settings.risk.leverage,
            margin_type=MarginType(settings.risk.margin_type),
            retry=RetryPolicy(
                max_attempts=settings.execution.max_attempts,
                backoff_base=settings.execution.backoff_base_seconds,
                backoff_max=settings.execution.backoff_max_seconds,
                resolve_window=settings.execution.unknown_outcome_seconds,
            ),
            gate=self.guard.control,
            sleep=clock.sleep,
        )
        self.engine = TradingEngine(
            strategy=EmaCrossStrategy(
                fast_period=settings.strategy.fast_period,
                slow_period=settings.strategy.slow_period,
                atr_period=settings.strategy.atr_period,
                take_profit_atr=settings.strategy.take_profit_atr,
                stop_loss_atr=settings.strategy.stop_loss_atr,
            ),
            risk=RiskManager(
                RiskLimits(
                    risk_percent=settings.risk.risk_percent,
                    max_position_percent=settings.risk.max_position_percent,
                    leverage=settings.risk.leverage,
                ),
                audit,
                self.guard,
            ),
            execution=self.execution,
            audit=audit,
            clock=clock,
        )
        self.venue.on_candle.append(self.engine.on_candle)
        self.supervisor = ProtectionSupervisor(
            self.execution,
            audit,
            self.venue.symbols,
            interval=settings.execution.protection_check_seconds,
        )
        self._supervisor_stop = threading.Event()
        self._supervisor_thread: threading.Thread | None = None
        self.deadman: DeadmanSwitch | None = None
        if settings.mode != "paper" and settings.execution.deadman_seconds:
            self.deadman = DeadmanSwitch(
                self.venue.exchange,
                audit,
                self.venue.symbols,
                countdown=settings.execution.deadman_seconds,
                clock=clock,
                cancelled_here=self.execution.cancelled_here,
            )
        self._deadman_thread: threading.Thread | None = None

    def start(self) -> None:
        """Clock, symbol setup, reconciliation and backfill (SPEC §3).

        Raises ExchangeError on failure, ConfigError for an account mode the bot
        does not trade (before any order). What a previous run left is made safe
        before margin type and leverage are set (they may be refused while a
        position is open); the protection supervisor (testnet/live: the paper
        book cannot lose a stop) runs from then on.
        """
        venue = self.venue
        if self.settings.mode != "paper":
            offset = venue.exchange.sync_clock()
            log.info("clock offset to %s: %d ms", venue.exchange.name, offset)
        self.execution.check_account_modes()
        for symbol in venue.symbols:
            self.execution.filters(symbol)
        self.engine.reconcile_at_startup(venue.symbols)
        for symbol in venue.symbols:
            self.execution.configure_symbol(symbol)
        if self.settings.mode != "paper":
            self._supervisor_thread = threading.Thread(
                target=self.supervisor.run,
                args=(self._supervisor_stop,),
                name="protection-supervisor",
                daemon=True,
            )
            self._supervisor_thread.start()
        if self.deadman is not None:
            self._deadman_thread = threading.Thread(
                target=self.deadman.run,
                args=(self._supervisor_stop,),
                name="deadman-switch",
                daemon=True,
            )
            self._deadman_thread.start()
        pairs = [(s, i) for s in venue.symbols for i in venue.intervals]
        for n, (symbol, interval) in enumerate(pairs, start=1):
            candles = venue.feed.backfill(symbol, interval, self.settings.backfill)
            for candle in candles:
                for sink in venue.on_candle[:-1]:  # the exchange sees prices; no signals yet
                    sink(candle)
            self.engine.seed_history(candles)
            log.info(
                "backfill %d/%d: %s %s, %d candles", n, len(pairs), symbol, interval, len(candles)
            )
        venue.exchange.subscribe_order_updates(
            self.engine.on_order_update, on_connected=self.engine.recover_missed_updates
        )
        if self._supervisor_thread is not None:
            venue.exchange.subscribe_order_updates(self.supervisor.on_order_update)
        if self.deadman is not None:
            venue.exchange.subscribe_order_updates(self.deadman.on_order_update)

    def run(self, stop: threading.Event) -> None:
        """Stream until ``stop`` is set or the feed ends, with heartbeats meanwhile."""
        sinks = self.venue.on_candle

        def on_candle(candle: Candle) -> None:
            for sink in sinks:
                sink(candle)

        beat = threading.Thread(
            target=self._heartbeats, args=(stop,), name="heartbeat", daemon=True
        )
        beat.start()
        try:
            self.venue.feed.run(on_candle, stop)
        finally:
            stop.set()
            beat.join(timeout=5)

    def close(self) -> None:
        self._supervisor_stop.set()
        self.supervisor.wake()
        if self._supervisor_thread is not None:
            self._supervisor_thread.join(timeout=30)
        if self.deadman is not None and self._deadman_thread is not None:
            self._deadman_thread.join(timeout=30)
            self.deadman.disarm_all()  # a clean stop leaves no timer to cancel orders later
        self.venue.feed.close()
        self.venue.exchange.close()

    def _heartbeats(self, stop: threading.Event) -> None:
        """One as streaming starts, then one every period: a silent bot is visible at once."""
        self.engine.heartbeat()
        while not stop.wait(self.settings.heartbeat_seconds):
            self.engine.heartbeat()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["control"]:
        from bot.control.cli import main as control_main

        return control_main(args[1:])
    try:
        settings = load_settings(argv)
    except ConfigError as exc:
        print(f"python -m bot: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        audit = AuditLogger(
            settings.audit_dir,
            bot_id=settings.bot.id,
            hmac_key=settings.secrets.audit_hmac_key or None,
            redact_values=settings.secrets.values(),
            fsync_interval=settings.audit.fsync_interval_seconds,
            checkpoint_interval=settings.audit.checkpoint_interval_seconds,
        )
    except AuditDirectoryLocked as exc:
        print(f"python -m bot: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)  # no I/O here: just raise the flag
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return _run(settings, audit, stop, received)
    finally:
        audit.close(checkpoint=False)  # _run sealed the run: checkpoint, then bot_stopped


def _run(settings: Settings, audit: AuditLogger, stop: threading.Event, received: list[str]) -> int:
    started = time.monotonic()
    try:
        bot = Bot(settings, audit)
    except ConfigError as exc:  # e.g. an unreadable replay file
        print(f"python -m bot: configuration error: {exc}", file=sys.stderr)
        return 2
    audit.log_event(
        AuditEventType.BOT_STARTED,
        "main",
        additional_data={
            **settings.summary(),
            "symbols": bot.venue.symbols,
            "intervals": bot.venue.intervals,
            "exchange": bot.venue.exchange.name,
            "run_id": audit.run_id,
        },
    )
    log.info(
        "bot started: mode=%s market=%s symbols=%s intervals=%s audit_dir=%s",
        settings.mode,
        settings.market,
        ",".join(bot.venue.symbols),
        ",".join(bot.venue.intervals),
        settings.audit_dir,
    )
    reason, code = "signal", 0
    restore_controls(bot.guard, settings.audit_dir, bot.clock)
    desk = ControlDesk(bot.guard, bot.execution, bot.venue.symbols, clock=bot.clock)
    control = ControlServer(settings.audit_dir, desk.handle)
    try:
        control.start()
    except OSError as exc:  # commands are how an operator stops it: no trading without them
        print(f"python -m bot: cannot open the control socket: {exc}", file=sys.stderr)
        stop.set()
        reason, code = "control_socket_unavailable", 1
    try:
        if not stop.is_set():
            bot.start()
        if not stop.is_set():
            bot.run(stop)
        if not received:
            reason = "market_data_ended"
    except ExchangeError as exc:
        log.error("stopping: %s", exc)
        reason, code = f"exchange_error: {type(exc).__name__}", 1
    except ConfigError as exc:  # e.g. an account mode the bot does not trade
        print(f"python -m bot: configuration error: {exc}", file=sys.stderr)
        reason, code = f"configuration_error: {exc}", 2
    except Exception:
        log.exception("stopping on an unexpected error")
        reason, code = "internal_error", 1
    finally:
        control.close()
        bot.close()
        audit.checkpoint()  # seals the run, so that bot_stopped is the trail's last record
        audit.log_event(
            AuditEventType.BOT_STOPPED,
            "main",
            additional_data={
                "reason": reason,
                "signal": received[0] if received else None,
                "exit_code": code,
                "uptime_seconds": round(time.monotonic() - started, 3),
                "candles_processed": bot.engine.stats.candles,
                "signals": bot.engine.stats.signals,
                "trades_executed": bot.engine.stats.trades_executed,
                "trades_failed": bot.engine.stats.trades_failed,
                "risk_rejections": bot.engine.stats.risk_rejections,
            },
        )
        log.info("bot stopped (%s)", reason)
    return code


if __name__ == "__main__":
    sys.exit(main())
