"""Prometheus metrics of every bot trail the alerts process watches (SPEC §12).

The only module that imports prometheus_client. A custom collector renders
snapshots of the stores' aggregates (taken after each ingest, see BotMetrics):
every counter is a count of records in the trail, not of events this process
happened to see, so a restart of the alerts process (or of Prometheus) never
resets or skews them — the next snapshot reads the same totals from the files.

Exposed, per bot (the trail's name from ``bot.audit.trails.discover``):
``audit_events_total{bot,event_type}``, ``audit_risk_rejections_total{bot,reason}``,
``audit_last_event_timestamp_seconds{bot}``, ``audit_last_heartbeat_timestamp_seconds{bot}``,
``audit_chain_intact{bot}`` (once the history is checked), ``audit_malformed_lines_total{bot}``,
``trading_state{bot,state}`` and ``alert_firing{rule,bot}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.audit.events import EVENT_TYPE_VALUES

TRADING_STATES = ("active", "reducing", "halted")
DEFAULT_STATE = "active"  # SPEC §11: a bot that never changed its state is active


class TrailView(Protocol):
    """What a snapshot reads from a bot's TrailStore."""

    @property
    def last_event_time(self) -> float | None: ...

    @property
    def last_heartbeat_time(self) -> float | None: ...

    def totals(self) -> Mapping[str, int]: ...

    def rejection_reasons(self, start: float, end: float) -> Mapping[str, int]: ...

    def control_state(self) -> Mapping[str, Any]: ...

    @property
    def integrity(self) -> Any: ...

    @property
    def read_stats(self) -> Any: ...


@dataclass(frozen=True)
class BotMetrics:
    """One bot's values at one moment, taken on the evaluation thread after an ingest.

    A scrape only renders the latest snapshots, so it never waits for the store (whose
    first load of a large trail can take a while) and costs the same at any trail size."""

    bot: str
    events: Mapping[str, int]
    reasons: Mapping[str, int]
    last_event: float | None
    last_heartbeat: float | None
    intact: bool | None  # None: the history is not checked yet
    malformed: int
    state: str
    firing: Mapping[str, bool]  # rule name -> open (firing or recovering)

    @classmethod
    def of(cls, bot: str, trail: TrailView, firing: Mapping[str, bool]) -> BotMetrics:
        # every known type from 0, so increase() sees a type's first records too
        events = dict.fromkeys(EVENT_TYPE_VALUES, 0) | dict(trail.totals())
        return cls(
            bot=bot,
            events=events,
            reasons=dict(trail.rejection_reasons(-math.inf, math.inf)),
            last_event=trail.last_event_time,
            last_heartbeat=trail.last_heartbeat_time,
            intact=trail.integrity.ok,
            malformed=trail.read_stats.malformed,
            state=current_state(trail),
            firing=dict(firing),
        )


class TrailCollector(Collector):
    """Renders every metric family from the snapshots ``bots()`` returns at each scrape."""

    def __init__(self, bots: Callable[[], Sequence[BotMetrics]]) -> None:
        self._bots = bots

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "audit_events",
            "Records in the audit trail by event type.",
            labels=["bot", "event_type"],
        )
        reasons = CounterMetricFamily(
            "audit_risk_rejections",
            "risk_rejection records by .error.reason.",
            labels=["bot", "reason"],
        )
        last_event = GaugeMetricFamily(
            "audit_last_event_timestamp_seconds",
            "Timestamp of the newest record (epoch seconds).",
            labels=["bot"],
        )
        last_heartbeat = GaugeMetricFamily(
            "audit_last_heartbeat_timestamp_seconds",
            "Timestamp of the newest heartbeat record (epoch seconds).",
            labels=["bot"],
        )
        intact = GaugeMetricFamily(
            "audit_chain_intact",
            "1 when the hash chain verifies, 0 when it does not (absent until checked).",
            labels=["bot"],
        )
        malformed = CounterMetricFamily(
            "audit_malformed_lines",
            "Lines of the trail that are not valid audit records.",
            labels=["bot"],
        )
        state = GaugeMetricFamily(
            "trading_state", "1 for the bot's current trading state.", labels=["bot", "state"]
        )
        firing = GaugeMetricFamily(
            "alert_firing",
            "1 while the alerts process has the rule firing for the bot.",
            labels=["rule", "bot"],
        )
        for snap in self._bots():
            bot = snap.bot
            for event_type, count in sorted(snap.events.items()):
                events.add_metric([bot, event_type], count)
            for reason, count in sorted(snap.reasons.items()):
                reasons.add_metric([bot, reason], count)
            if snap.last_event is not None:
                last_event.add_metric([bot], snap.last_event)
            if snap.last_heartbeat is not None:
                last_heartbeat.add_metric([bot], snap.last_heartbeat)
            if snap.intact is not None:
                intact.add_metric([bot], 1.0 if snap.intact else 0.0)
            malformed.add_metric([bot], snap.malformed)
            for name in TRADING_STATES:
                state.add_metric([bot, name], 1.0 if name == snap.state else 0.0)
            for rule, on in sorted(snap.firing.items()):
                firing.add_metric([rule, bot], 1.0 if on else 0.0)
        yield from (events, reasons, last_event, last_heartbeat, intact, malformed, state, firing)


def current_state(trail: TrailView) -> str:
    """The state of the trail's newest trading_state_changed record, else active. (A
    trail is one bot's directory; should it hold several bot_ids, the latest change wins.)"""
    changed = [c for c in trail.control_state().values() if c.since is not None]
    return max(changed, key=lambda c: c.since).state if changed else DEFAULT_STATE


def parse_address(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (or ``:PORT``, host 127.0.0.1) -> (host, port); ``off`` -> None.
    ValueError naming the problem otherwise."""
    if text.strip().lower() == "off":
        return None
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65_535:
        raise ValueError(f"metrics address {text!r}: give HOST:PORT (e.g. 127.0.0.1:9464) or off")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsServer:
    """The /metrics endpoint on its own thread (prometheus_client's WSGI server)."""

    def __init__(self, collector: Collector, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port = int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
