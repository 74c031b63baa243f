"""The evaluation loop: one service per bot (ingest, evaluate, record, notify, act), and
the fleet of them over every bot of one audit directory.

Each rule is evaluated for each bot separately (state per rule x bot; a rule with
``bot`` only for that bot). A failing step is logged and the next tick tries again:
the loop never dies. The fleet also keeps each bot's latest metrics for /metrics.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from bot.audit import chain, trails
from dashboard.alert_engine import ACTIVE_STATES, AlertEngine, Transition, open_alerts
from dashboard.alert_records import AlertRecorder
from dashboard.alert_rules import Rule
from dashboard.breakers import CircuitBreaker
from dashboard.exporter import BotMetrics
from dashboard.store import TrailStore
from dashboard.webhook import WebhookNotifier

log = logging.getLogger("dashboard.alerts")  # the alerts process's log, one name for all its parts


class TrailSource(Protocol):
    """What the service needs from TrailStore (a fake in tests)."""

    @property
    def last_event_time(self) -> float | None: ...

    @property
    def last_heartbeat_time(self) -> float | None: ...

    def refresh(self) -> int: ...

    def counts(self, start: float, end: float, symbol: str | None = None) -> Mapping[str, int]: ...


class AlertService:
    """One bot's evaluation tick: ingest, evaluate, then record and notify each notification.

    A failing step is logged and the next tick tries again: the loop never dies."""

    def __init__(
        self,
        engine: AlertEngine,
        source: TrailSource,
        recorder: AlertRecorder,
        *,
        webhook: WebhookNotifier | None = None,
        clock: Callable[[], float] = time.time,
        out: Callable[[str], None] = print,
        bot: str = trails.DEFAULT_BOT,
        directory: Path | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.recorder = recorder
        self.webhook = webhook
        self.clock = clock
        self.out = out
        self.bot = bot
        self.directory = directory  # the bot's trail directory (None for a fake source)
        self.breaker = breaker

    def tick(self) -> list[Transition]:
        try:
            self.source.refresh()
            now = self.clock()
            seen = [
                t
                for t in (self.source.last_event_time, self.source.last_heartbeat_time)
                if t is not None
            ]
            transitions = self.engine.evaluate(now, self.source.counts, max(seen, default=None))
        except Exception:
            log.exception("alert evaluation failed; retrying next tick")
            return []
        for t in transitions:
            if t.notification is None:
                log.info("%s", t.text())
                continue
            self.recorder.record(t, self.bot)  # the AuditLogger never raises
            if self.breaker is not None:
                self.breaker.act(t, self.bot, self.directory)  # never raises
            text = self.text(t)
            if self.webhook is not None:
                self.webhook.submit(text)  # never blocks, never raises
            try:
                self.out(f"{chain.format_timestamp(int(t.at * 1e9))} ALERT {text}")
            except (OSError, ValueError):  # stdout gone (closed pipe): keep evaluating
                log.warning("could not print notification: %s", text)
        if self.breaker is not None:
            self.breaker.retry(self.bot)
        return transitions

    def text(self, t: Transition) -> str:
        """The notification's text, naming the bot unless it is the single default one."""
        return t.text() if self.bot == trails.DEFAULT_BOT else f"[{self.bot}] {t.text()}"

    def firing(self) -> dict[str, bool]:
        """Rule name -> whether its alert is open (firing or recovering) for this bot."""
        return {name: st.state in ACTIVE_STATES for name, st in self.engine.states.items()}

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            self.tick()
            stop.wait(interval)


class _StartedStore:
    """A started TrailStore as a service's source. Its own thread watches the files and
    indexes old days in the background, so the first evaluation does not wait for a large
    history (a minute for 1M records on a loaded machine); a tick ingests what is new."""

    def __init__(self, store: TrailStore) -> None:
        self.store = store
        store.start()

    @property
    def last_event_time(self) -> float | None:
        return self.store.last_event_time

    @property
    def last_heartbeat_time(self) -> float | None:
        return self.store.last_heartbeat_time

    def refresh(self) -> int:
        return self.store.refresh(verify_history=False)

    def counts(self, start: float, end: float, symbol: str | None = None) -> Mapping[str, int]:
        return self.store.counts(start, end, symbol)


class AlertFleet:
    """Every bot under one audit directory: one store, engine and service per bot.

    Bots are looked for at every tick (``trails.discover``), so a bot started later
    is picked up; an audit directory without any trail yet is watched as the single
    default bot (its staleness rule reports nodata until records arrive)."""

    def __init__(
        self,
        audit_dir: Path,
        rules: list[Rule],
        recorder: AlertRecorder,
        history: list[dict[str, Any]],
        *,
        webhook: WebhookNotifier | None = None,
        out: Callable[[str], None] = print,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.audit_dir = audit_dir
        self.rules = rules
        self.recorder = recorder
        self.history = history
        self.webhook = webhook
        self.out = out
        self.breaker = breaker
        self.services: dict[str, AlertService] = {}
        self._stores: dict[str, TrailStore] = {}
        self._snapshots: dict[str, BotMetrics] = {}  # written by ticks, read by scrapes
        self._lock = threading.Lock()  # services: ticks add, scrapes read

    def discover(self) -> None:
        """Start watching new bots, stop watching bots whose trail is gone. Stores start
        and stop outside the lock: scrapes never wait for a store's first read."""
        found = trails.discover(self.audit_dir) or {trails.DEFAULT_BOT: self.audit_dir}
        with self._lock:
            gone = [bot for bot in self.services if bot not in found]
            stopped = [self._stores.pop(bot) for bot in gone]
            for bot in gone:
                del self.services[bot]
                self._snapshots.pop(bot, None)
            new = {bot: path for bot, path in found.items() if bot not in self.services}
        for store in stopped:
            store.stop()
        for bot, directory in new.items():
            store = TrailStore(directory)
            service = self._service(bot, directory, store)
            with self._lock:
                self._stores[bot], self.services[bot] = store, service
            log.info("watching bot %s in %s", bot, directory)

    def _service(self, bot: str, directory: Path, store: TrailStore) -> AlertService:
        rules = [r for r in self.rules if r.bot in (None, bot)]
        engine = AlertEngine(rules)
        mine = [
            r
            for r in self.history
            if (r.get("additional_data") or {}).get("bot", trails.DEFAULT_BOT) == bot
        ]
        engine.resume(open_alerts(mine))
        return AlertService(
            engine,
            _StartedStore(store),
            self.recorder,
            webhook=self.webhook,
            out=self.out,
            bot=bot,
            directory=directory,
            breaker=self.breaker,
        )

    def tick(self) -> list[Transition]:
        try:
            self.discover()
        except Exception:
            log.exception("looking for bot trails failed; retrying next tick")
        with self._lock:
            pairs = [(self.services[bot], self._stores[bot]) for bot in self.services]
        transitions = []
        for service, store in pairs:
            transitions.extend(service.tick())
            if store.history_progress.running:
                continue  # half a history would make the counters jump when the rest lands
            try:
                snapshot = BotMetrics.of(service.bot, store, service.firing())
            except Exception:
                log.exception("metrics of bot %s failed; the last ones stay", service.bot)
                continue
            with self._lock:
                if service.bot in self.services:
                    self._snapshots[service.bot] = snapshot
        return transitions

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            self.tick()
            stop.wait(interval)

    def metrics(self) -> list[BotMetrics]:
        """The latest snapshot of every bot (a bot appears after its first evaluation)."""
        with self._lock:
            return [self._snapshots[bot] for bot in sorted(self._snapshots)]

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                with contextlib.suppress(Exception):
                    store.stop()
            self.services.clear()
            self._stores.clear()
            self._snapshots.clear()
