"""The headless alerts process (`python -m dashboard.alerts`) and the alert history reader.

The rules (``dashboard.alert_rules``) and their state machine (``dashboard.alert_engine``,
pure, shared with the dashboard) are elsewhere; this module is the I/O around them:

* reads every bot's trail under ``AUDIT_DIR`` (default logs/audit; one ``TrailStore``
  per bot that ``bot.audit.trails.discover`` finds, looked for again at every tick),
* evaluates every ``--interval`` seconds with the wall clock, each rule for each bot
  separately (state per rule x bot; a rule with ``bot`` only for that bot),
* serves the Prometheus metrics of every bot on ``--metrics-addr`` / ``METRICS_ADDR``
  (default 127.0.0.1:9464, ``off`` disables; dashboard/exporter.py),
* writes each notification as an ``alert_fired`` / ``alert_resolved`` record with
  the real AuditLogger to ``ALERTS_DIR`` (default logs/alerts), in
  ``alerts_YYYYMMDD.jsonl`` files of the audit record format (hash-chained too),
* prints it on stdout and POSTs ``{"text": ...}`` to ``ALERT_WEBHOOK_URL`` from a
  background thread (timeout, bounded retries with backoff), so a slow or failing
  webhook never delays or stops evaluation,
* exits 0 on SIGINT/SIGTERM.

What the dashboard imports from here: ``load_rules``, ``AlertEngine``, ``RuleState``,
``Transition``, ``AlertState``, ``DEFAULT_RULES_FILE`` and ``read_alert_history``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from bot.audit import AuditDirectoryLocked, AuditEventType, AuditLogger, chain, reader, trails
from dashboard.alert_engine import (
    ACTIVE_STATES,
    AlertEngine,
    AlertState,
    Notification,
    RuleState,
    Transition,
    open_alerts,
)
from dashboard.alert_rules import Rule, RulesError, load_rules
from dashboard.breakers import CircuitBreaker
from dashboard.exporter import BotMetrics, MetricsServer, TrailCollector, parse_address
from dashboard.store import TrailStore

__all__ = [
    "ALERTS_FILE_PREFIX",
    "DEFAULT_RULES_FILE",
    "AlertEngine",
    "AlertState",
    "Rule",
    "RuleState",
    "RulesError",
    "Transition",
    "WebhookNotifier",
    "load_rules",
    "main",
    "read_alert_history",
]

log = logging.getLogger("dashboard.alerts")

DEFAULT_RULES_FILE = Path(__file__).with_name("alerts.toml")
DEFAULT_AUDIT_DIR = "logs/audit"
DEFAULT_ALERTS_DIR = "logs/alerts"
DEFAULT_METRICS_ADDR = "127.0.0.1:9464"
ALERTS_FILE_PREFIX = chain.ALERTS_FILE_PREFIX
ALERT_EVENT_TYPES = frozenset(
    {AuditEventType.ALERT_FIRED.value, AuditEventType.ALERT_RESOLVED.value}
)


# -------------------------------------------------------------------- history


def read_alert_history(
    alerts_dir: str | os.PathLike[str] = DEFAULT_ALERTS_DIR, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """``alert_fired`` / ``alert_resolved`` records of an alerts directory, oldest first
    (the last ``limit`` when given). Malformed lines are skipped; a missing directory
    is an empty history."""
    records: list[dict[str, Any]] = []
    for path in chain.trail_files(Path(alerts_dir), prefix=ALERTS_FILE_PREFIX):
        try:
            lines = list(reader.iter_lines(path))
        except OSError as exc:  # e.g. a truncated .gz: show what can be read elsewhere
            log.warning("cannot read %s: %s", path, exc)
            continue
        for _, line in lines:
            parsed = reader.parse_line(line)
            if isinstance(parsed, dict) and parsed["event_type"] in ALERT_EVENT_TYPES:
                records.append(parsed)
    return records[-limit:] if limit else records


# ------------------------------------------------------------------- recording


def alert_record_data(t: Transition, bot: str = trails.DEFAULT_BOT) -> dict[str, Any]:
    """``additional_data`` of an alert record: enough to read it without the rules file."""
    rule = t.rule
    data: dict[str, Any] = {
        "rule": rule.name,
        "bot": bot,
        "metric": rule.metric,
        "notification": t.notification.value if t.notification else None,
        "state": t.state.value,
        "previous_state": t.previous.value,
        "value": t.value,
        "samples": t.samples,
        "fire_above": rule.fire_above,
        "clear_below": rule.clear_below,
        "at": t.at,
        "active_since": t.active_since,
        "reason": t.reason,
        "text": t.text(),
    }
    if rule.is_staleness:
        data["stale_after_seconds"] = rule.stale_after
    else:
        data.update(
            window_seconds=rule.window,
            min_samples=rule.min_samples,
            symbol=rule.symbol,
        )
    data["pending_seconds"] = rule.pending
    data["repeat_seconds"] = rule.repeat
    return data


class AlertRecorder:
    """Writes notifications into the alerts trail with the project's AuditLogger."""

    def __init__(self, logger: AuditLogger) -> None:
        self._logger = logger

    def record(self, t: Transition, bot: str = trails.DEFAULT_BOT) -> None:
        if t.notification is None:
            return
        kind = (
            AuditEventType.ALERT_RESOLVED
            if t.notification is Notification.RESOLVED
            else AuditEventType.ALERT_FIRED
        )
        self._logger.log_event(
            kind,
            "evaluate_alert_rule",
            symbol=t.rule.symbol,
            additional_data=alert_record_data(t, bot),
        )

    def close(self) -> None:
        self._logger.close()


# -------------------------------------------------------------------- webhook

Post = Callable[[str, bytes, float], int]
"""post(url, json body, timeout seconds) -> HTTP status; raises OSError on network errors."""


def urllib_post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "audited-futures-bot-alerts"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def redacted_url(url: str) -> str:
    """Scheme and host only: chat webhook URLs carry their secret in the path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/..."


class WebhookNotifier:
    """POSTs ``{"text": ...}`` from a background thread, with timeout and bounded retries.

    Temporary failures (network errors, timeouts, 429, 5xx) are retried with
    exponential backoff; other 4xx are not (the request itself is wrong). A
    message that still fails is logged and dropped: evaluation never waits on it.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 1.0,
        max_queue: int = 100,
        post: Post = urllib_post,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.sent = 0
        self.failed = 0
        self._post = post
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=max_queue)
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    def submit(self, text: str) -> None:
        try:
            self._queue.put_nowait(text)
        except queue.Full:
            self.failed += 1
            log.error("webhook queue full; dropped notification: %s", text)

    def close(self, grace: float = 2.0) -> None:
        """Send what is queued for up to ``grace`` seconds, then give up on the rest."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=grace)
        self._thread.join(grace)
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(self.timeout + 0.5)
            log.warning("webhook: gave up on unsent notifications at shutdown")

    def _run(self) -> None:
        while True:
            text = self._queue.get()
            if text is None:
                return
            if self._abort.is_set():
                self.failed += 1
                continue
            if self._deliver(orjson.dumps({"text": text})):
                self.sent += 1
            else:
                self.failed += 1

    def _deliver(self, body: bytes) -> bool:
        target = redacted_url(self.url)
        for attempt in range(1, self.attempts + 1):
            try:
                status = self._post(self.url, body, self.timeout)
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad URL
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            else:
                if 200 <= status < 300:
                    return True
                problem = f"HTTP {status}"
                if 400 <= status < 500 and status != 429:
                    log.error(
                        "webhook %s refused the notification (%s); not retried", target, problem
                    )
                    return False
            if attempt == self.attempts:
                log.error(
                    "webhook %s failed %d times (%s); notification dropped",
                    target,
                    attempt,
                    problem,
                )
                return False
            delay = self.backoff * 2 ** (attempt - 1)
            log.warning("webhook %s: %s; retry %d in %.1fs", target, problem, attempt, delay)
            if self._abort.wait(delay):
                return False
        return False


# --------------------------------------------------------------------- service


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


# ------------------------------------------------------------------------ main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dashboard.alerts",
        description="Evaluate alert rules over the audit trail; record and notify changes.",
        epilog="Environment: AUDIT_DIR, ALERTS_DIR, ALERT_WEBHOOK_URL. See docs/alerts.md.",
    )
    parser.add_argument(
        "--rules",
        type=Path,
        default=DEFAULT_RULES_FILE,
        help="rules TOML file (default: dashboard/alerts.toml)",
    )
    parser.add_argument("--audit-dir", help="trail to watch (default: $AUDIT_DIR or logs/audit)")
    parser.add_argument(
        "--alerts-dir", help="where alert records go (default: $ALERTS_DIR or logs/alerts)"
    )
    parser.add_argument(
        "--interval", type=_positive, default=5.0, help="seconds between evaluations (5)"
    )
    parser.add_argument(
        "--webhook-timeout", type=_positive, default=5.0, help="seconds per webhook POST (5)"
    )
    parser.add_argument(
        "--webhook-attempts", type=int, default=3, help="POST attempts per notification (3)"
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the rules file, print the rules, exit"
    )
    parser.add_argument(
        "--metrics-addr",
        help="HOST:PORT of the Prometheus /metrics endpoint, or off "
        f"(default: $METRICS_ADDR or {DEFAULT_METRICS_ADDR})",
    )
    return parser


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text!r}")
    return value


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if env is None else env
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        print(f"alerts: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for rule in rules:
            print(f"{rule.name}: {rule.describe()}")
        return 0

    audit_dir = Path(args.audit_dir or env.get("AUDIT_DIR") or DEFAULT_AUDIT_DIR)
    alerts_dir = Path(args.alerts_dir or env.get("ALERTS_DIR") or DEFAULT_ALERTS_DIR)
    if audit_dir.resolve() == alerts_dir.resolve():
        print(
            "alerts: ALERTS_DIR must differ from AUDIT_DIR (one writer per trail)", file=sys.stderr
        )
        return 2
    webhook_url = env.get("ALERT_WEBHOOK_URL") or None
    try:
        metrics_at = parse_address(
            args.metrics_addr or env.get("METRICS_ADDR") or DEFAULT_METRICS_ADDR
        )
    except ValueError as exc:
        print(f"alerts: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        logger = AuditLogger(alerts_dir, file_prefix=ALERTS_FILE_PREFIX)
    except AuditDirectoryLocked as exc:
        print(f"alerts: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"alerts: cannot write alerts directory {alerts_dir}: {exc}", file=sys.stderr)
        return 1
    webhook = (
        WebhookNotifier(webhook_url, timeout=args.webhook_timeout, attempts=args.webhook_attempts)
        if webhook_url
        else None
    )

    def notify(text: str) -> None:  # what a circuit breaker has to say (e.g. bot unreachable)
        print(f"{chain.format_timestamp(time.time_ns())} ALERT {text}", flush=True)
        if webhook is not None:
            webhook.submit(text)

    fleet = AlertFleet(
        audit_dir,
        rules,
        AlertRecorder(logger),
        read_alert_history(alerts_dir),
        webhook=webhook,
        out=lambda line: print(line, flush=True),
        breaker=CircuitBreaker(logger, notify),
    )
    metrics = _serve_metrics(fleet, metrics_at)
    log.info(
        "%d rules from %s; watching %s; recording to %s; webhook %s; every %gs",
        len(rules),
        args.rules,
        audit_dir,
        alerts_dir,
        redacted_url(webhook_url) if webhook_url else "off",
        args.interval,
    )
    try:
        fleet.run(stop, args.interval)
    finally:
        if metrics is not None:
            metrics.close()
        if webhook is not None:
            webhook.close()
        fleet.close()
        logger.close()
    log.info("stopped")
    return 0


def _serve_metrics(fleet: AlertFleet, where: tuple[str, int] | None) -> MetricsServer | None:
    """The /metrics endpoint, or None when off. A port that cannot be bound is logged as
    an error and evaluation goes on without metrics (Prometheus then shows the target
    down): alerting matters more than its metrics."""
    if where is None:
        log.info("metrics off")
        return None
    try:
        server = MetricsServer(TrailCollector(fleet.metrics), *where)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%d (%s); metrics off", *where, exc)
        return None
    log.info("metrics on %s", server.url)
    return server


if __name__ == "__main__":
    sys.exit(main())
