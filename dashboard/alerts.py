"""The headless alerts process, ``python -m dashboard.alerts``: options, wiring, lifetime.

Reads the options and the environment, then wires the parts, each in its own module:

* ``dashboard.alert_rules``: the rules file (``--rules``, default dashboard/alerts.toml);
* ``dashboard.alert_engine``: the pure state machine, shared with the dashboard;
* ``dashboard.alert_fleet``: every bot's trail under ``AUDIT_DIR`` (default logs/audit;
  bots looked for again at every tick), evaluated every ``--interval`` seconds with the
  wall clock, each rule for each bot separately;
* ``dashboard.alert_records``: each notification as an ``alert_fired`` /
  ``alert_resolved`` record in ``ALERTS_DIR`` (default logs/alerts), hash-chained;
* stdout, and ``dashboard.webhook``: ``ALERT_WEBHOOK_URL`` from a background thread, so
  a slow or failing webhook never delays or stops evaluation;
* ``dashboard.exporter``: the Prometheus metrics of every bot on ``--metrics-addr`` /
  ``METRICS_ADDR`` (default 127.0.0.1:9464, ``off`` disables);
* ``dashboard.breakers``: the circuit breakers that reduce or halt a bot.

Exits 0 on SIGINT/SIGTERM, 2 for a bad rules file or option, 1 when the alerts
directory cannot be written. The names others import from here (``load_rules``,
``AlertEngine``, ``read_alert_history``, ``DEFAULT_RULES_FILE``, ...) are re-exported.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from bot.audit import AuditDirectoryLocked, AuditLogger, chain
from dashboard.alert_engine import AlertEngine, AlertState, RuleState, Transition
from dashboard.alert_fleet import AlertFleet
from dashboard.alert_records import (
    ALERTS_FILE_PREFIX,
    DEFAULT_ALERTS_DIR,
    AlertRecorder,
    read_alert_history,
)
from dashboard.alert_rules import DEFAULT_RULES_FILE, Rule, RulesError, load_rules
from dashboard.breakers import CircuitBreaker
from dashboard.exporter import MetricsServer, TrailCollector, parse_address
from dashboard.webhook import WebhookNotifier, redacted_url

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

DEFAULT_AUDIT_DIR = "logs/audit"
DEFAULT_METRICS_ADDR = "127.0.0.1:9464"


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
