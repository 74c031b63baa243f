"""The alert state machine: pure evaluation of rules against event counts.

No I/O, no clock, no threads: ``AlertEngine.evaluate`` is given the time, a function
returning event counts and the time of the newest record, and returns the state
changes. The dashboard (display) and the headless ``python -m dashboard.alerts``
process (notification) share it, and rates come from ``dashboard.metrics`` only, so a
number on screen and an alert never disagree. The rules come from
``dashboard.alert_rules``.

State machine (docs/alerts.md has the full story)::

    nodata ──(enough samples, trail fresh)──> normal
    normal ──value > fire_above──> pending ──held for `pending`──> FIRING   (alert_fired)
    pending ──value <= fire_above──> normal
    firing ──value <= fire_above──> recovering
    recovering ──value > fire_above──> firing                         (no new notification)
    recovering ──value < clear_below, held for `pending`──> normal    (alert_resolved)
    firing/recovering ──too few samples or stale trail──> nodata      (alert_resolved, nodata)
    firing ──still firing after `repeat`──> firing                    (alert_fired, repeat)

With ``pending = "0s"`` both holds are immediate: normal goes straight to firing
and recovering straight to normal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bot.durations import format_duration
from dashboard.alert_rules import Rule
from dashboard.metrics import rate_parts

CountsFn = Callable[[float, float, str | None], Mapping[str, int]]
"""counts(start, end, symbol) -> event_type -> count of records in [start, end)."""


class AlertState(StrEnum):
    NORMAL = "normal"
    PENDING = "pending"
    FIRING = "firing"
    RECOVERING = "recovering"
    NODATA = "nodata"


ACTIVE_STATES = frozenset({AlertState.FIRING, AlertState.RECOVERING})
"""States in which an alert has been notified and not yet resolved."""


class Notification(StrEnum):
    """What a transition tells the outside world; each becomes one alert record."""

    FIRED = "fired"
    REPEAT = "repeat"
    RESOLVED = "resolved"


@dataclass
class RuleState:
    """What the engine knows about one rule; read by the dashboard for display."""

    rule: Rule
    state: AlertState = AlertState.NODATA
    value: float | None = None  # the rate (or, for staleness, the age in seconds)
    samples: int = 0  # the rate's denominator in the window
    since: float | None = None  # when `state` was entered
    reason: str = "not evaluated yet"
    active_since: float | None = None  # when the open alert fired (firing/recovering)
    last_notified: float | None = None  # last fired/repeat notification of the open alert
    hold_since: float | None = None  # recovering: when the value went below clear_below

    @property
    def fire_above(self) -> float:
        return self.rule.fire_above

    @property
    def clear_below(self) -> float:
        return self.rule.clear_below


@dataclass(frozen=True)
class Transition:
    """A change of state (or a repeat notification) of one rule at time ``at``."""

    rule: Rule
    previous: AlertState
    state: AlertState
    at: float
    value: float | None
    samples: int
    reason: str
    notification: Notification | None = None
    active_since: float | None = None

    def text(self) -> str:
        """Chat-friendly one-liner, also printed on stdout."""
        rule = self.rule
        scope = f" [{rule.symbol}]" if rule.symbol else ""
        if rule.is_staleness:
            shown = "never" if self.value is None else f"{format_duration(self.value)} ago"
            measure = f"last record {shown}"
        else:
            shown = "n/a" if self.value is None else f"{self.value:.1%}"
            measure = (
                f"{rule.metric} = {shown} over {format_duration(rule.window)} "
                f"({self.samples} samples)"
            )
        if self.notification is Notification.FIRED:
            head = f"FIRING {rule.name}{scope}: {measure}; threshold {_threshold(rule)}"
        elif self.notification is Notification.REPEAT:
            head = f"STILL FIRING {rule.name}{scope}: {measure}; threshold {_threshold(rule)}"
        elif self.notification is Notification.RESOLVED:
            head = f"RESOLVED {rule.name}{scope}: {measure}"
        else:
            head = f"{rule.name}{scope}: {self.previous} -> {self.state}: {measure}"
        return f"{head} ({self.reason})" if self.reason else head


def _threshold(rule: Rule) -> str:
    if rule.is_staleness:
        return f"> {format_duration(rule.stale_after)}"
    return f"> {rule.fire_above:.1%}"


@dataclass
class _Reading:
    value: float | None
    samples: int
    nodata_reason: str | None
    note: str = ""  # appended to transition reasons


@dataclass
class AlertEngine:
    """Evaluates rules against counts; keeps per-rule state between evaluations.

    ``evaluate`` is pure apart from updating ``states``: time comes in as an
    argument, data through ``counts_fn`` and ``last_seen`` (epoch seconds of
    the newest record of any type, heartbeats included; None if none yet).
    """

    rules: list[Rule]
    states: dict[str, RuleState] = field(init=False)
    started_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.rules = list(self.rules)
        self.states = {rule.name: RuleState(rule) for rule in self.rules}

    def resume(self, open_alerts: Mapping[str, tuple[float, float]]) -> None:
        """Continue alerts that a previous run left firing: rule name ->
        (fired at, last notified at), e.g. from ``open_alerts(read_alert_history(...))``.
        Their next resolution is then notified instead of a duplicate fire."""
        for name, (fired_at, notified_at) in open_alerts.items():
            state = self.states.get(name)
            if state is None or state.state in ACTIVE_STATES:
                continue
            state.state = AlertState.FIRING
            state.since = state.active_since = fired_at
            state.last_notified = notified_at
            state.reason = "still firing when the previous run stopped"

    def evaluate(
        self, now: float, counts_fn: CountsFn, last_seen: float | None
    ) -> list[Transition]:
        """Advance every rule to ``now``; return what changed, in rule order."""
        if self.started_at is None:
            self.started_at = now
        cache: dict[tuple[float, str | None], Mapping[str, int]] = {}

        def counts(window: float, symbol: str | None) -> Mapping[str, int]:
            key = (window, symbol)
            if key not in cache:
                cache[key] = counts_fn(now - window, now, symbol)
            return cache[key]

        # Read everything first: if counts_fn raises, no state has moved and the
        # caller can simply evaluate again later without losing a notification.
        readings = [self._read(rule, now, counts, last_seen) for rule in self.rules]
        out: list[Transition] = []
        for rule, reading in zip(self.rules, readings, strict=True):
            out.extend(self._step(self.states[rule.name], now, reading))
        return out

    def _read(
        self,
        rule: Rule,
        now: float,
        counts: Callable[[float, str | None], Mapping[str, int]],
        last_seen: float | None,
    ) -> _Reading:
        assert self.started_at is not None
        if rule.is_staleness:
            if last_seen is None:
                # Before the first record, silence is measured from when we started watching.
                return _Reading(max(now - self.started_at, 0.0), 0, None, "no record seen yet")
            return _Reading(max(now - last_seen, 0.0), 0, None)
        if last_seen is not None and now - last_seen > rule.stale_after:
            return _Reading(
                None, 0, f"trail stale: no record for {format_duration(now - last_seen)}"
            )
        num, den = rate_parts(rule.metric, counts(rule.window, rule.symbol))
        value = num / den if den else None
        if den == 0 or den < rule.min_samples:
            why = f"{den} samples in {format_duration(rule.window)}, fewer than {rule.min_samples}"
            if den == 0:
                why = f"no samples in {format_duration(rule.window)}"
            return _Reading(value, den, why)
        return _Reading(value, den, None)

    def _step(self, st: RuleState, now: float, reading: _Reading) -> list[Transition]:
        rule = st.rule
        st.value, st.samples = reading.value, reading.samples
        if st.since is None:
            st.since = now
        before = st.state
        out: list[Transition] = []

        def move(to: AlertState, reason: str, note: Notification | None = None) -> None:
            if reading.note:
                reason = f"{reason}; {reading.note}"
            out.append(
                Transition(
                    rule=rule,
                    previous=st.state,
                    state=to,
                    at=now,
                    value=reading.value,
                    samples=reading.samples,
                    reason=reason,
                    notification=note,
                    active_since=st.active_since,
                )
            )
            st.state, st.since, st.reason = to, now, reason

        if reading.nodata_reason is not None:
            st.hold_since = None
            if st.state is not AlertState.NODATA:
                note = Notification.RESOLVED if st.state in ACTIVE_STATES else None
                move(AlertState.NODATA, reading.nodata_reason, note)
                st.active_since = st.last_notified = None
            st.reason = reading.nodata_reason
            return out

        value = reading.value
        assert value is not None
        above = value > rule.fire_above
        below = value < rule.clear_below

        if st.state in (AlertState.NODATA, AlertState.NORMAL):
            if st.state is AlertState.NODATA:
                move(AlertState.NORMAL, "enough data")
            if above:
                move(AlertState.PENDING, "above threshold")
        elif st.state is AlertState.PENDING and not above:
            move(AlertState.NORMAL, "back under threshold before pending elapsed")

        if st.state is AlertState.PENDING and now - (st.since or now) >= rule.pending:
            st.active_since = st.last_notified = now
            move(
                AlertState.FIRING, _held_reason("above threshold", rule.pending), Notification.FIRED
            )
            return _collapse(out, before)

        if st.state is AlertState.RECOVERING and above:
            move(AlertState.FIRING, "above threshold again")
        if st.state is AlertState.FIRING:
            if not above:
                st.hold_since = None
                move(AlertState.RECOVERING, "no longer above threshold")
            elif rule.repeat > 0 and now - (st.last_notified or now) >= rule.repeat:
                st.last_notified = now
                out.append(
                    Transition(
                        rule=rule,
                        previous=st.state,
                        state=st.state,
                        at=now,
                        value=value,
                        samples=reading.samples,
                        reason=f"firing since {format_duration(now - (st.active_since or now))}",
                        notification=Notification.REPEAT,
                        active_since=st.active_since,
                    )
                )
        if st.state is AlertState.RECOVERING:
            if not below:
                st.hold_since = None
            else:
                if st.hold_since is None:
                    st.hold_since = now
                if now - st.hold_since >= rule.pending:
                    reason = _held_reason("below clear threshold", rule.pending)
                    move(AlertState.NORMAL, reason, Notification.RESOLVED)
                    st.active_since = st.last_notified = st.hold_since = None
        return _collapse(out, before)


def _held_reason(what: str, pending: float) -> str:
    return f"{what} for {format_duration(pending)}" if pending else what


def _collapse(out: list[Transition], before: AlertState) -> list[Transition]:
    """Merge the intermediate steps of one evaluation (nodata -> normal -> pending ->
    firing) into one transition from the state before to the state after, keeping
    the notification; a repeat stays separate."""
    changes = [t for t in out if t.notification is not Notification.REPEAT]
    repeats = [t for t in out if t.notification is Notification.REPEAT]
    if len(changes) <= 1:
        return changes + repeats
    last = changes[-1]
    notes = [t.notification for t in changes if t.notification is not None]
    merged = replace(last, previous=before, notification=notes[-1] if notes else None)
    if merged.previous is merged.state and merged.notification is None:
        return repeats
    return [merged, *repeats]


def open_alerts(history: Iterable[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """From alert records (oldest first): rules whose last notification left them firing,
    as rule name -> (fired at, last notified at), epoch seconds."""
    result: dict[str, tuple[float, float]] = {}
    for record in history:
        data = record.get("additional_data") or {}
        name = data.get("rule")
        at = data.get("at")
        if not isinstance(name, str) or not isinstance(at, int | float):
            continue
        if record.get("event_type") == "alert_resolved":
            result.pop(name, None)
        elif record.get("event_type") == "alert_fired":
            since = data.get("active_since")
            fired_at = float(since) if isinstance(since, int | float) else float(at)
            result[name] = (fired_at, float(at))
    return result
