"""The alerts process's parts without a subprocess: recording with the real AuditLogger,
reading history back, the service tick, and webhook retries (transport injected)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bot.audit import AuditLogger, chain
from dashboard.alert_engine import AlertEngine
from dashboard.alert_fleet import AlertService
from dashboard.alert_records import ALERTS_FILE_PREFIX, AlertRecorder, read_alert_history
from dashboard.alert_rules import Rule
from dashboard.webhook import WebhookNotifier

T0 = 1_800_000_000.0


def rule(**overrides: object) -> Rule:
    base: dict[str, object] = dict(
        name="orders",
        metric="order_rejection_rate",
        window=300.0,
        fire_above=0.5,
        clear_below=0.2,
        min_samples=4,
    )
    base.update(overrides)
    return Rule(**base)  # type: ignore[arg-type]


@dataclass
class FakeSource:
    """TrailStore stand-in: counts set by the test."""

    now_counts: Counter[str] = field(default_factory=Counter)
    last_event_time: float | None = None
    last_heartbeat_time: float | None = None
    refreshed: int = 0

    def refresh(self) -> int:
        self.refreshed += 1
        return 0

    def counts(self, start: float, end: float, symbol: str | None = None) -> Counter[str]:
        return self.now_counts


@dataclass
class FakeClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


def make_service(
    tmp_path: Path, rules: list[Rule], webhook: WebhookNotifier | None = None
) -> tuple[AlertService, FakeSource, FakeClock, list[str], AuditLogger]:
    source, clock, printed = FakeSource(), FakeClock(), []
    logger = AuditLogger(tmp_path / "alerts", file_prefix=ALERTS_FILE_PREFIX)
    service = AlertService(
        AlertEngine(rules),
        source,
        AlertRecorder(logger),
        webhook=webhook,
        clock=clock,
        out=printed.append,
    )
    return service, source, clock, printed, logger


def test_notifications_are_recorded_in_alerts_day_files_and_read_back(tmp_path: Path) -> None:
    service, source, clock, printed, logger = make_service(tmp_path, [rule()])
    source.last_event_time = T0
    source.now_counts = Counter(order_placed=1, order_rejected=3)
    service.tick()
    source.now_counts = Counter(order_placed=9, order_rejected=1)
    clock.now += 10
    service.tick()
    logger.close()

    names = sorted(p.name for p in (tmp_path / "alerts").iterdir() if not p.name.startswith("."))
    assert names and all(n.startswith("alerts_") and n.endswith(".jsonl") for n in names)
    assert chain.trail_files(tmp_path / "alerts") == []  # not mistaken for an audit trail

    history = read_alert_history(tmp_path / "alerts")
    assert [r["event_type"] for r in history] == ["alert_fired", "alert_resolved"]
    fired = history[0]["additional_data"]
    assert fired["rule"] == "orders" and fired["value"] == 0.75 and fired["samples"] == 4
    assert (fired["fire_above"], fired["clear_below"], fired["window_seconds"]) == (0.5, 0.2, 300)
    assert history[1]["additional_data"]["active_since"] == T0
    assert printed[0].endswith(
        "FIRING orders: order_rejection_rate = 75.0% over 5m "
        "(4 samples); threshold > 50.0% (above threshold)"
    )
    assert "RESOLVED orders" in printed[1]
    assert read_alert_history(tmp_path / "alerts", limit=1) == history[-1:]


def test_history_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert read_alert_history(tmp_path / "none") == []


def test_state_changes_without_notification_are_not_recorded(tmp_path: Path) -> None:
    service, source, _, printed, logger = make_service(tmp_path, [rule(pending=60.0)])
    source.last_event_time = T0
    source.now_counts = Counter(order_placed=1, order_rejected=3)
    transitions = service.tick()
    logger.close()
    assert [t.state.value for t in transitions] == ["pending"]
    assert printed == []
    assert read_alert_history(tmp_path / "alerts") == []


def test_a_failing_source_is_logged_and_the_next_tick_runs(tmp_path: Path) -> None:
    service, source, _, _, logger = make_service(tmp_path, [rule()])

    def broken(start: float, end: float, symbol: str | None = None) -> Counter[str]:
        raise OSError("disk went away")

    source.counts = broken  # type: ignore[method-assign]
    source.last_event_time = T0
    assert service.tick() == []
    del source.counts
    source.now_counts = Counter(order_rejected=5)
    assert [t.state.value for t in service.tick()] == ["firing"]
    logger.close()


def test_last_seen_is_the_newest_of_record_and_heartbeat(tmp_path: Path) -> None:
    stale = rule(
        name="stale", metric="staleness", fire_above=60.0, clear_below=60.0, stale_after=60.0
    )
    service, source, _, _, logger = make_service(tmp_path, [stale])
    source.last_event_time, source.last_heartbeat_time = T0 - 600, T0 - 5
    service.tick()
    logger.close()
    assert service.engine.states["stale"].value == 5


class ScriptedPost:
    """Webhook transport answering from a script; records bodies."""

    def __init__(self, answers: list[int | Exception]) -> None:
        self.answers = answers
        self.bodies: list[dict[str, object]] = []
        self.done = threading.Event()

    def __call__(self, url: str, body: bytes, timeout: float) -> int:
        self.bodies.append(orjson.loads(body))
        answer = self.answers.pop(0) if self.answers else 200
        if not self.answers:
            self.done.set()
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_webhook_retries_temporary_failures_then_delivers() -> None:
    post = ScriptedPost([TimeoutError("timed out"), 503, 200])
    notifier = WebhookNotifier("http://hook.invalid/x", attempts=3, backoff=0.001, post=post)
    notifier.submit("FIRING orders")
    notifier.close(grace=30)
    assert post.bodies == [{"text": "FIRING orders"}] * 3
    assert (notifier.sent, notifier.failed) == (1, 0)


def test_webhook_gives_up_after_bounded_attempts_and_keeps_going() -> None:
    post = ScriptedPost([500, 500, 200])
    notifier = WebhookNotifier("http://hook.invalid/x", attempts=2, backoff=0.001, post=post)
    notifier.submit("first")
    notifier.submit("second")
    notifier.close(grace=30)
    assert [b["text"] for b in post.bodies] == ["first", "first", "second"]
    assert (notifier.sent, notifier.failed) == (1, 1)


def test_webhook_does_not_retry_a_client_error() -> None:
    post = ScriptedPost([400, 200])
    notifier = WebhookNotifier("http://hook.invalid/x", attempts=3, backoff=0.001, post=post)
    notifier.submit("bad")
    notifier.close(grace=30)
    assert len(post.bodies) == 1 and notifier.failed == 1


def test_submit_never_blocks_the_caller_even_when_the_queue_is_full() -> None:
    release = threading.Event()

    def stuck(url: str, body: bytes, timeout: float) -> int:
        release.wait(30)
        return 200

    notifier = WebhookNotifier("http://hook.invalid/x", max_queue=1, post=stuck)
    for i in range(5):
        notifier.submit(f"n{i}")  # returns at once: a slow hook costs notifications, not ticks
    assert notifier.failed >= 3
    release.set()
    notifier.close(grace=30)


def test_history_reads_compressed_days_in_order_and_ignores_other_files(tmp_path: Path) -> None:
    import gzip

    service, source, _, _, logger = make_service(tmp_path, [rule()])
    source.last_event_time = T0
    source.now_counts = Counter(order_rejected=5)
    service.tick()
    logger.close()
    alerts = tmp_path / "alerts"
    (today,) = list(alerts.glob("alerts_*.jsonl"))
    old = today.read_bytes().replace(b'"rule":"orders"', b'"rule":"older"')
    with gzip.open(alerts / "alerts_20200101.jsonl.gz", "wb") as fh:
        fh.write(old)
    (alerts / "audit_20200101.jsonl").write_bytes(old)  # not an alerts file
    (alerts / "alerts_20200101.jsonl.tmp").write_bytes(old)
    rules = [r["additional_data"]["rule"] for r in read_alert_history(alerts)]
    assert rules == ["older", "orders"]
