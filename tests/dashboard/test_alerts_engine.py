"""The alert state machine, driven by synthetic timelines like Prometheus rule unit tests:
describe what the bot logged minute by minute, evaluate at chosen instants, compare states.
No files and no clock."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dashboard.alert_engine import (
    AlertEngine,
    AlertState,
    Notification,
    Transition,
    open_alerts,
)
from dashboard.alert_rules import Rule

T0 = 1_800_000_000.0  # a fixed epoch: tests never read the wall clock


@dataclass
class FakeTrail:
    """Events at explicit times; `counts` has the TrailStore.counts contract."""

    events: list[tuple[float, str, str | None]] = field(default_factory=list)

    def add(self, at: float, event_type: str, n: int = 1, symbol: str | None = "BTCUSDT") -> None:
        self.events.extend([(at, event_type, symbol)] * n)

    def add_rate(
        self,
        at: float,
        metric_events: tuple[str, str],
        hits: int,
        total: int,
        symbol: str | None = "BTCUSDT",
    ) -> None:
        """`total` samples at `at`, of which `hits` are the numerator event."""
        numerator, other = metric_events
        self.add(at, numerator, hits, symbol)
        self.add(at, other, total - hits, symbol)

    def counts(self, start: float, end: float, symbol: str | None = None) -> Counter[str]:
        return Counter(
            kind
            for at, kind, sym in self.events
            if start <= at < end and (symbol is None or sym == symbol)
        )

    def last_seen(self, now: float) -> float | None:
        seen = [at for at, _, _ in self.events if at <= now]
        return max(seen) if seen else None


RISK = ("risk_rejection", "risk_validation")


def minute_rates(
    rule: Rule, rejected_per_minute: list[int], per_minute: int = 10
) -> tuple[list[str], list[Transition]]:
    """Each minute i the bot validates `per_minute` signals, rejecting the given number;
    the engine evaluates at the end of each minute. Returns the state after each
    evaluation and every transition."""
    trail = FakeTrail()
    engine = AlertEngine([rule])
    states: list[str] = []
    transitions: list[Transition] = []
    for i, rejected in enumerate(rejected_per_minute):
        trail.add_rate(T0 + 60 * i, RISK, rejected, per_minute)
        now = T0 + 60 * i + 59
        transitions += engine.evaluate(now, trail.counts, trail.last_seen(now))
        states.append(engine.states[rule.name].state.value)
    return states, transitions


def risk_rule(**overrides: object) -> Rule:
    base: dict[str, object] = dict(
        name="risk-rejection-rate",
        metric="risk_rejection_rate",
        window=60.0,
        fire_above=0.5,
        clear_below=0.3,
        min_samples=10,
        pending=120.0,
    )
    base.update(overrides)
    return Rule(**base)  # type: ignore[arg-type]


def notifications(transitions: list) -> list[str]:
    return [t.notification.value for t in transitions if t.notification is not None]


def test_rate_above_threshold_goes_pending_then_firing_then_recovering_then_normal() -> None:
    states, transitions = minute_rates(risk_rule(), [1, 8, 8, 8, 4, 2, 2, 2])
    assert states == [
        "normal",
        "pending",  # above 0.5 since minute 1
        "pending",  # held 60 s of the 120 s pending
        "firing",  # held 120 s
        "recovering",  # 0.4: not above fire_above, not below clear_below
        "recovering",  # 0.2: below clear_below, held 0 s of 120 s
        "recovering",  # held 60 s
        "normal",  # held 120 s: resolved
    ]
    assert notifications(transitions) == ["fired", "resolved"]
    fired = next(t for t in transitions if t.notification is Notification.FIRED)
    assert (fired.previous, fired.state, fired.value, fired.samples) == (
        AlertState.PENDING,
        AlertState.FIRING,
        0.8,
        10,
    )


def test_pending_that_does_not_hold_returns_to_normal_without_notifying() -> None:
    states, transitions = minute_rates(risk_rule(), [8, 8, 1, 8, 1])
    assert states == ["pending", "pending", "normal", "pending", "normal"]
    assert notifications(transitions) == []


def test_pending_zero_fires_at_the_first_evaluation_above_threshold() -> None:
    states, transitions = minute_rates(risk_rule(pending=0.0), [1, 6, 1])
    assert states == ["normal", "firing", "normal"]
    assert [(t.previous.value, t.state.value) for t in transitions] == [
        ("nodata", "normal"),
        ("normal", "firing"),
        ("firing", "normal"),
    ]
    assert notifications(transitions) == ["fired", "resolved"]


def test_rate_oscillating_around_fire_threshold_notifies_once() -> None:
    # 0.6 / 0.4 / 0.6 / 0.4 ...: crosses fire_above each minute, never below clear_below.
    states, transitions = minute_rates(risk_rule(pending=0.0), [6, 4] * 5)
    assert states == ["firing", "recovering"] * 5
    assert notifications(transitions) == ["fired"]


def test_back_above_threshold_while_recovering_fires_again_without_a_new_notification() -> None:
    states, transitions = minute_rates(risk_rule(), [8, 8, 8, 2, 8, 2, 2, 2])
    assert states == [
        "pending",
        "pending",
        "firing",
        "recovering",
        "firing",
        "recovering",
        "recovering",
        "normal",
    ]
    assert notifications(transitions) == ["fired", "resolved"]


def test_dip_into_hysteresis_band_restarts_the_clear_hold() -> None:
    states, _ = minute_rates(risk_rule(), [8, 8, 8, 2, 4, 2, 2, 2])
    # minute 4 (0.4) interrupts the 120 s below clear_below; it restarts at minute 5.
    assert states[3:] == ["recovering", "recovering", "recovering", "recovering", "normal"]


def test_fewer_samples_than_min_samples_is_nodata_never_firing() -> None:
    # every signal is rejected, but only 5 per minute < min_samples 10
    states, transitions = minute_rates(risk_rule(pending=0.0), [5, 5, 5], per_minute=5)
    assert states == ["nodata", "nodata", "nodata"]
    assert transitions == []
    state = AlertEngine([risk_rule()]).states["risk-rejection-rate"]
    assert state.state is AlertState.NODATA


def test_nodata_state_reports_the_rate_and_sample_count_it_saw() -> None:
    trail = FakeTrail()
    trail.add_rate(T0, RISK, 3, 4)
    engine = AlertEngine([risk_rule()])
    engine.evaluate(T0 + 10, trail.counts, T0)
    state = engine.states["risk-rejection-rate"]
    assert (state.state, state.value, state.samples) == (AlertState.NODATA, 0.75, 4)
    assert "fewer than 10" in state.reason


def test_firing_alert_that_runs_out_of_samples_resolves_as_nodata() -> None:
    trail = FakeTrail()
    engine = AlertEngine([risk_rule(pending=0.0)])
    trail.add_rate(T0, RISK, 9, 10)
    engine.evaluate(T0 + 59, trail.counts, T0)
    assert engine.states["risk-rejection-rate"].state is AlertState.FIRING
    trail.add_rate(T0 + 60, RISK, 3, 3)  # the next minute: only 3 samples
    out = engine.evaluate(T0 + 119, trail.counts, T0 + 60)
    assert [(t.previous.value, t.state.value, t.notification) for t in out] == [
        ("firing", "nodata", Notification.RESOLVED)
    ]


def test_repeat_re_notifies_while_firing_and_not_while_recovering() -> None:
    rule = risk_rule(pending=0.0, repeat=120.0)
    states, transitions = minute_rates(rule, [9, 9, 9, 9, 9, 4, 4, 4, 9])
    assert states == ["firing"] * 5 + ["recovering"] * 3 + ["firing"]
    # fired at minute 0, repeated at minutes 2 and 4 (120 s apart); none while recovering;
    # back to firing at minute 8: last notification was minute 4, so it repeats at once.
    assert notifications(transitions) == ["fired", "repeat", "repeat", "repeat"]
    repeats = [t for t in transitions if t.notification is Notification.REPEAT]
    assert [t.at - T0 for t in repeats] == [120 + 59, 240 + 59, 480 + 59]
    assert all(t.active_since == T0 + 59 for t in repeats)


def test_repeat_zero_never_re_notifies() -> None:
    _, transitions = minute_rates(risk_rule(pending=0.0, repeat=0.0), [9] * 10)
    assert notifications(transitions) == ["fired"]


def test_symbol_filter_counts_only_that_symbol() -> None:
    trail = FakeTrail()
    trail.add_rate(T0, RISK, 10, 10, symbol="ETHUSDT")  # all rejected, other symbol
    trail.add_rate(T0, RISK, 1, 10, symbol="BTCUSDT")
    btc = risk_rule(name="btc", symbol="BTCUSDT", pending=0.0)
    eth = risk_rule(name="eth", symbol="ETHUSDT", pending=0.0)
    everything = risk_rule(name="all", pending=0.0)
    engine = AlertEngine([btc, eth, everything])
    engine.evaluate(T0 + 30, trail.counts, T0)
    assert {n: (s.state.value, s.value) for n, s in engine.states.items()} == {
        "btc": ("normal", 0.1),
        "eth": ("firing", 1.0),
        "all": ("firing", 0.55),
    }


def test_stale_trail_makes_rate_rules_nodata() -> None:
    trail = FakeTrail()
    trail.add_rate(T0, RISK, 9, 10)
    engine = AlertEngine([risk_rule(window=3600.0, pending=0.0, stale_after=180.0)])
    engine.evaluate(T0 + 60, trail.counts, T0)
    assert engine.states["risk-rejection-rate"].state is AlertState.FIRING
    out = engine.evaluate(T0 + 181, trail.counts, T0)
    state = engine.states["risk-rejection-rate"]
    assert state.state is AlertState.NODATA
    assert "stale" in state.reason
    assert [t.notification for t in out] == [Notification.RESOLVED]


def staleness_rule(**overrides: object) -> Rule:
    base: dict[str, object] = dict(
        name="trail-stale",
        metric="staleness",
        fire_above=180.0,
        clear_below=180.0,
        stale_after=180.0,
    )
    base.update(overrides)
    return Rule(**base)  # type: ignore[arg-type]


def test_staleness_fires_when_no_record_or_heartbeat_for_longer_than_stale_after() -> None:
    trail = FakeTrail()
    engine = AlertEngine([staleness_rule()])
    trail.add(T0, "heartbeat", symbol=None)
    seen: list[str] = []
    for offset in (0, 60, 120, 180, 181, 240):
        engine.evaluate(T0 + offset, trail.counts, trail.last_seen(T0 + offset))
        seen.append(engine.states["trail-stale"].state.value)
    assert seen == ["normal", "normal", "normal", "normal", "firing", "firing"]
    assert engine.states["trail-stale"].value == 240
    trail.add(T0 + 250, "heartbeat", symbol=None)
    out = engine.evaluate(T0 + 251, trail.counts, trail.last_seen(T0 + 251))
    assert [(t.state.value, t.notification) for t in out] == [("normal", Notification.RESOLVED)]


def test_staleness_with_no_record_at_all_counts_from_when_the_engine_started() -> None:
    trail = FakeTrail()
    engine = AlertEngine([staleness_rule()])
    engine.evaluate(T0, trail.counts, None)
    assert engine.states["trail-stale"].state is AlertState.NORMAL
    out = engine.evaluate(T0 + 200, trail.counts, None)
    assert [t.notification for t in out] == [Notification.FIRED]
    assert "no record seen yet" in out[0].text()


def test_staleness_honours_pending() -> None:
    trail = FakeTrail()
    engine = AlertEngine([staleness_rule(pending=60.0)])
    states = []
    for offset in (0, 200, 230, 260):
        engine.evaluate(T0 + offset, trail.counts, T0)
        states.append(engine.states["trail-stale"].state.value)
    assert states == ["normal", "pending", "pending", "firing"]


def test_states_expose_thresholds_for_drawing() -> None:
    engine = AlertEngine([risk_rule()])
    state = engine.states["risk-rejection-rate"]
    assert (state.fire_above, state.clear_below) == (0.5, 0.3)
    assert state.state is AlertState.NODATA and state.since is None
    engine.evaluate(T0, FakeTrail().counts, None)
    assert state.state is AlertState.NODATA and state.since == T0
    assert state.reason == "no samples in 1m"


def test_counts_are_asked_once_per_window_and_symbol() -> None:
    trail = FakeTrail()
    asked: list[tuple[float, float, str | None]] = []

    def counts(start: float, end: float, symbol: str | None) -> dict[str, int]:
        asked.append((start, end, symbol))
        return trail.counts(start, end, symbol)

    rules = [
        risk_rule(name="a"),
        risk_rule(name="b", metric="order_rejection_rate"),
        risk_rule(name="c", window=900.0),
    ]
    AlertEngine(rules).evaluate(T0, counts, T0)
    assert asked == [(T0 - 60, T0, None), (T0 - 900, T0, None)]


def test_transition_text_names_rule_value_and_threshold() -> None:
    _, transitions = minute_rates(risk_rule(pending=0.0), [8])
    fired = transitions[-1]
    assert fired.text().startswith("FIRING risk-rejection-rate: risk_rejection_rate = 80.0%")
    assert "> 50.0%" in fired.text()


def test_resume_continues_an_alert_left_firing_by_a_previous_run() -> None:
    history = [
        {"event_type": "alert_fired", "additional_data": {"rule": "a", "at": T0 - 100}},
        {"event_type": "alert_fired", "additional_data": {"rule": "b", "at": T0 - 90}},
        {"event_type": "alert_resolved", "additional_data": {"rule": "b", "at": T0 - 50}},
        {
            "event_type": "alert_fired",
            "additional_data": {"rule": "a", "at": T0 - 10, "active_since": T0 - 100},
        },
    ]
    assert open_alerts(history) == {"a": (T0 - 100, T0 - 10)}
    engine = AlertEngine([risk_rule(name="a", pending=0.0)])
    engine.resume(open_alerts(history))
    trail = FakeTrail()
    trail.add_rate(T0, RISK, 9, 10)
    assert engine.evaluate(T0 + 1, trail.counts, T0) == []  # still firing: no duplicate
    trail.add_rate(T0 + 100, RISK, 0, 10)
    out = engine.evaluate(T0 + 101, trail.counts, T0 + 100)
    assert [(t.previous.value, t.state.value, t.notification) for t in out] == [
        ("firing", "normal", Notification.RESOLVED)
    ]
    assert out[0].active_since == T0 - 100
