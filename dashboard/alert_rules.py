"""Alert rules: parsing the TOML rules file and the pure state machine that evaluates them.

No I/O beyond reading the rules file, no clock, no threads: ``AlertEngine.evaluate``
is given the time, a function returning event counts and the time of the newest
record, and returns the state changes. The dashboard (display) and the headless
``python -m dashboard.alerts`` process (notification) share it, and rates come
from ``dashboard.metrics`` only, so a number on screen and an alert never disagree.

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

import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from dashboard.metrics import RATE_METRICS, rate_parts

STALENESS = "staleness"
METRICS: tuple[str, ...] = (*RATE_METRICS, STALENESS)
DEFAULT_STALE_AFTER = 180.0  # three missed heartbeats at the bot's default 60 s

CountsFn = Callable[[float, float, str | None], Mapping[str, int]]
"""counts(start, end, symbol) -> event_type -> count of records in [start, end)."""


class RulesError(ValueError):
    """The rules file is unusable; the message names the file, the rule and the key."""


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


# ------------------------------------------------------------------ durations

_DURATION_RE = re.compile(r"^(?:\d+[smhd])+$")
_DURATION_PART_RE = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration string such as ``30s``, ``15m``, ``1h``, ``1h30m``."""
    if not isinstance(text, str) or not _DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a duration (write e.g. '30s', '15m', '1h', '1h30m')")
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text)))


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for display (``900.0`` -> ``15m``)."""
    rest = round(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


# ---------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One validated rule; durations are in seconds.

    For ``metric = "staleness"`` the evaluated value is the age in seconds of
    the newest record, and both thresholds are ``stale_after``.
    """

    name: str
    metric: str
    fire_above: float
    clear_below: float
    window: float = 0.0
    min_samples: int = 1
    pending: float = 0.0
    repeat: float = 0.0  # 0: never re-notify
    symbol: str | None = None
    stale_after: float = DEFAULT_STALE_AFTER
    bot: str | None = None  # None: evaluated for each bot separately
    action: str | None = None  # circuit breaker (SPEC §11): "reduce" or "halt" when it fires
    resume_on_resolve: bool = False  # back to active when it resolves (if nothing else changed)

    @property
    def is_staleness(self) -> bool:
        return self.metric == STALENESS

    def describe(self) -> str:
        """One line for humans: what the rule watches, when it fires, what it does to the bot."""
        if self.is_staleness:
            what = f"no record or heartbeat for more than {format_duration(self.stale_after)}"
        else:
            scope = f" for {self.symbol}" if self.symbol else ""
            what = (
                f"{self.metric}{scope} over {format_duration(self.window)} above "
                f"{self.fire_above:g} (clears below {self.clear_below:g})"
            )
        if self.bot is not None:
            what += f" on bot {self.bot}"
        if self.action is not None:
            what += f"; then {self.action}s the bot"
            what += ", resumed when it resolves" if self.resume_on_resolve else ""
        return what


ACTIONS = ("reduce", "halt")
_COMMON_KEYS = {"name", "metric", "pending", "repeat", "bot", "action", "resume_on_resolve"}
_RATE_KEYS = _COMMON_KEYS | {
    "window",
    "fire_above",
    "clear_below",
    "min_samples",
    "symbol",
    "stale_after",
}
_STALENESS_KEYS = _COMMON_KEYS | {"stale_after"}


def load_rules(path: str | Path) -> list[Rule]:
    """Read and validate a rules file; raise RulesError naming what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: not UTF-8 text") from None
    return parse_rules(text, source=str(path))


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Validate the TOML text of a rules file (see load_rules)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"rules"})
    if unknown:
        raise RulesError(
            f"{source}: unknown top-level key {unknown[0]!r} (only [[rules]] tables are allowed)"
        )
    tables = document.get("rules", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RulesError(f"{source}: 'rules' must be an array of tables, written [[rules]]")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        rule = _parse_rule(table, f"{source}: rules[{index}]")
        if rule.name in seen:
            raise RulesError(
                f"{source}: rules[{index}] {rule.name!r}: duplicate name "
                f"(already used by rules[{seen[rule.name]}])"
            )
        seen[rule.name] = index
        rules.append(rule)
    return rules


def _parse_rule(table: dict[str, Any], where: str) -> Rule:
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RulesError(f"{where}: key 'name' is required: a non-empty string")
    where = f"{where} {name!r}"

    def fail(key: str, problem: str) -> RulesError:
        return RulesError(f"{where}: key {key!r} {problem}")

    metric = table.get("metric")
    if metric is None:
        raise fail("metric", f"is required: one of {', '.join(METRICS)}")
    if metric not in METRICS:
        raise fail("metric", f"has unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    allowed = _STALENESS_KEYS if metric == STALENESS else _RATE_KEYS
    for key in table:
        if key not in allowed:
            hint = " (not used by staleness rules)" if key in _RATE_KEYS else ""
            raise fail(key, f"is unknown{hint}; allowed keys: {', '.join(sorted(allowed))}")

    def duration(key: str, default: str | None, positive: bool) -> float:
        raw = table.get(key, default)
        if raw is None:
            raise fail(key, "is required: a duration string like '30s', '15m', '1h'")
        if not isinstance(raw, str):
            raise fail(key, f"must be a duration string like '30s', '15m', '1h', not {raw!r}")
        if raw.startswith("-"):
            raise fail(key, f"must not be negative: {raw!r}")
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            raise fail(key, f"is a bad duration: {exc}") from None
        if positive and seconds <= 0:
            raise fail(key, f"must be longer than 0s, not {raw!r}")
        return seconds

    pending = duration("pending", "0s", positive=False)
    repeat = duration("repeat", "0s", positive=False)
    bot = table.get("bot")
    if bot is not None and (not isinstance(bot, str) or not bot.strip()):
        raise fail("bot", f"must be a bot id such as 'bot', not {bot!r}")
    action = table.get("action")
    if action is not None and action not in ACTIONS:
        raise fail("action", f"must be one of {', '.join(ACTIONS)}, not {action!r}")
    resume = table.get("resume_on_resolve", False)
    if not isinstance(resume, bool):
        raise fail("resume_on_resolve", f"must be true or false, not {resume!r}")
    if resume and action is None:
        raise fail("resume_on_resolve", "needs an action to undo (action = 'reduce' or 'halt')")
    breaker: dict[str, Any] = {"bot": bot, "action": action, "resume_on_resolve": resume}
    if metric == STALENESS:
        stale_after = duration("stale_after", None, positive=True)
        return Rule(
            name=name,
            metric=metric,
            fire_above=stale_after,
            clear_below=stale_after,
            pending=pending,
            repeat=repeat,
            stale_after=stale_after,
            **breaker,
        )

    def ratio(key: str, default: float | None) -> float:
        raw = table.get(key, default)
        if raw is None:
            raise fail(key, "is required: a rate between 0 and 1")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise fail(key, f"must be a number between 0 and 1, not {raw!r}")
        if raw < 0:
            raise fail(key, f"must not be negative: {raw!r}")
        if raw > 1:
            raise fail(key, f"must be at most 1 (a rate is a fraction), not {raw!r}")
        return float(raw)

    window = duration("window", None, positive=True)
    fire_above = ratio("fire_above", None)
    clear_below = ratio("clear_below", fire_above)
    if clear_below > fire_above:
        raise fail(
            "clear_below",
            f"({clear_below:g}) must not be greater than fire_above ({fire_above:g})",
        )
    min_samples = table.get("min_samples", 1)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int):
        raise fail("min_samples", f"must be a whole number, not {min_samples!r}")
    if min_samples < 0:
        raise fail("min_samples", f"must not be negative: {min_samples!r}")
    symbol = table.get("symbol")
    if symbol is not None and (not isinstance(symbol, str) or not symbol.strip()):
        raise fail("symbol", f"must be a symbol name such as 'BTCUSDT', not {symbol!r}")
    return Rule(
        name=name,
        metric=metric,
        fire_above=fire_above,
        clear_below=clear_below,
        window=window,
        min_samples=min_samples,
        pending=pending,
        repeat=repeat,
        symbol=symbol,
        stale_after=duration("stale_after", "3m", positive=True),
        **breaker,
    )


# --------------------------------------------------------------------- engine


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
