"""Pure metric definitions over event counts: the rates of SPEC §9 and the signal funnel.

No I/O and no streamlit: the dashboard and the alert engine both compute
rates here, so a number on screen and an alert can never disagree. Everything
takes and returns plain Python data (counters, lists of tuples, frozen
dataclasses) so chart code stays thin: ``panel_data`` gathers what every panel
of SPEC §9 shows from anything with TrailStore's query methods.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class RateMetric:
    """rate = sum(numerator counts) / sum(denominator counts) over a window."""

    name: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    label: str


RATE_METRICS: dict[str, RateMetric] = {
    m.name: m
    for m in (
        RateMetric(
            "risk_rejection_rate",
            ("risk_rejection",),
            ("risk_validation", "risk_rejection"),
            "Risk rejection rate",
        ),
        RateMetric(
            "order_rejection_rate",
            ("order_rejected",),
            ("order_placed", "order_rejected"),
            "Order rejection rate",
        ),
        RateMetric(
            "capping_rate",
            ("position_size_capped",),
            ("position_size_calculated",),
            "Capping rate",
        ),
        RateMetric(
            "execution_failure_rate",
            ("trade_execution_failed",),
            ("trade_executed", "trade_execution_failed"),
            "Execution failure rate",
        ),
    )
}


def rate_parts(metric: str, counts: Mapping[str, int]) -> tuple[int, int]:
    """(numerator, denominator) of ``metric`` for event-type counts; denominator = samples."""
    spec = RATE_METRICS[metric]
    return (
        sum(counts.get(t, 0) for t in spec.numerator),
        sum(counts.get(t, 0) for t in spec.denominator),
    )


def rate(metric: str, counts: Mapping[str, int]) -> float | None:
    """The rate, or None when there is no sample (never a division by zero)."""
    num, den = rate_parts(metric, counts)
    return num / den if den else None


def rates(counts: Mapping[str, int]) -> dict[str, float | None]:
    """Every rate of RATE_METRICS for one set of counts (None where there is no sample)."""
    return {name: rate(name, counts) for name in RATE_METRICS}


# ------------------------------------------------------------------ signal funnel

FUNNEL_STAGES: tuple[tuple[str, str], ...] = (
    ("signal_processing", "Signals"),
    ("risk_validation", "Passed risk"),
    ("position_size_calculated", "Sized"),
    ("trade_executed", "Traded"),
)
"""Signal to trade, in flow order (SPEC §6); each stage is a subset of the one before."""


@dataclass(frozen=True)
class FunnelStage:
    event_type: str
    label: str
    count: int
    conversion: float | None  # count / previous stage's count (None for the first or no sample)
    overall: float | None  # count / first stage's count


def funnel(counts: Mapping[str, int]) -> list[FunnelStage]:
    """The signal funnel with the conversion at each stage and from the first one."""
    out: list[FunnelStage] = []
    first: int | None = None
    previous: int | None = None
    for event_type, label in FUNNEL_STAGES:
        count = counts.get(event_type, 0)
        first = count if first is None else first
        out.append(
            FunnelStage(
                event_type,
                label,
                count,
                conversion=count / previous if previous else None,
                overall=count / first if first else None,
            )
        )
        previous = count
    return out


# ------------------------------------------------------------------ headline numbers


@dataclass(frozen=True)
class Headline:
    """The numbers at the top of the dashboard for one window."""

    signals: int
    trades: int
    risk_rejection_rate: float | None
    order_rejection_rate: float | None
    capping_rate: float | None
    execution_failure_rate: float | None
    seconds_since_last_event: float | None
    seconds_since_heartbeat: float | None
    integrity_ok: bool | None
    integrity_problem: str | None
    malformed_lines: int


def headline(
    counts: Mapping[str, int],
    *,
    now: float,
    last_event_time: float | None = None,
    last_heartbeat_time: float | None = None,
    integrity_ok: bool | None = None,
    integrity_problem: str | None = None,
    malformed_lines: int = 0,
) -> Headline:
    """Headline numbers from a window's counts and the trail's liveness and health."""
    window_rates = rates(counts)
    return Headline(
        signals=counts.get("signal_processing", 0),
        trades=counts.get("trade_executed", 0),
        risk_rejection_rate=window_rates["risk_rejection_rate"],
        order_rejection_rate=window_rates["order_rejection_rate"],
        capping_rate=window_rates["capping_rate"],
        execution_failure_rate=window_rates["execution_failure_rate"],
        seconds_since_last_event=_age(now, last_event_time),
        seconds_since_heartbeat=_age(now, last_heartbeat_time),
        integrity_ok=integrity_ok,
        integrity_problem=integrity_problem,
        malformed_lines=malformed_lines,
    )


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else max(0.0, now - then)


# ------------------------------------------------------------------ over time

Series = Sequence[tuple[float, Mapping[str, int]]]
"""(bucket start, event_type -> count), oldest first, as TrailStore.series returns."""


def rate_series(
    series: Series, metric: str, *, window_buckets: int = 1
) -> list[tuple[float, float | None]]:
    """(bucket start, rate) per bucket; with ``window_buckets`` > 1 the rate over the
    trailing ``window_buckets`` buckets (as an alert window sees it)."""
    if window_buckets < 1:
        raise ValueError("window_buckets must be >= 1")
    parts = [rate_parts(metric, counts) for _, counts in series]
    out: list[tuple[float, float | None]] = []
    num_sum = den_sum = 0
    for i, (start, _) in enumerate(series):
        num_sum += parts[i][0]
        den_sum += parts[i][1]
        if i >= window_buckets:
            num_sum -= parts[i - window_buckets][0]
            den_sum -= parts[i - window_buckets][1]
        out.append((start, num_sum / den_sum if den_sum else None))
    return out


def rates_over_time(
    series: Series, *, window_buckets: int = 1
) -> dict[str, list[tuple[float, float | None]]]:
    """rate_series for every metric of RATE_METRICS."""
    return {m: rate_series(series, m, window_buckets=window_buckets) for m in RATE_METRICS}


def count_series(series: Series, event_type: str) -> list[tuple[float, int]]:
    """(bucket start, count of one event type), e.g. capping frequency over time."""
    return [(start, counts.get(event_type, 0)) for start, counts in series]


# ------------------------------------------------------------------ tables

ORDER_OUTCOME_NAMES = ("placed", "rejected", "filled", "cancelled")


def order_outcome_rows(outcomes: Mapping[tuple[str, str], int]) -> list[dict[str, object]]:
    """One row per order type: placed, rejected, filled, cancelled, rejection rate."""
    order_types = sorted({order_type for order_type, _ in outcomes})
    rows: list[dict[str, object]] = []
    for order_type in order_types:
        row: dict[str, object] = {"order_type": order_type}
        for name in ORDER_OUTCOME_NAMES:
            row[name] = outcomes.get((order_type, name), 0)
        sent = outcomes.get((order_type, "placed"), 0) + outcomes.get((order_type, "rejected"), 0)
        row["rejection_rate"] = outcomes.get((order_type, "rejected"), 0) / sent if sent else None
        rows.append(row)
    return rows


def share(counter: Mapping[str, int]) -> list[tuple[str, int, float]]:
    """(name, count, fraction of the total), largest first — e.g. rejection reasons."""
    total = sum(counter.values())
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return [(name, n, n / total) for name, n in ranked if total]


# ------------------------------------------------------------------ alert history


@dataclass(frozen=True)
class Period:
    """A span of an alert rule's life: ``state`` is "pending" or "firing"; ``end`` is
    when it ended (or now, while it lasts). ``rule`` names the rule (and its bot)."""

    rule: str
    state: str
    start: float
    end: float
    metric: str = ""


def alert_periods(history: Iterable[Mapping[str, Any]], now: float) -> list[Period]:
    """Pending and firing spans from alert records (oldest first), per rule and bot.

    A fired record says when the alert became active (``active_since``) and how long it
    had to hold before (``pending_seconds``); the pending span is the time before it.
    The firing span ends at the rule's next ``alert_resolved`` record, or at ``now``."""
    open_since: dict[str, tuple[float, str]] = {}
    out: list[Period] = []
    for record in history:
        data = record.get("additional_data") or {}
        name, at = data.get("rule"), data.get("at")
        if not isinstance(name, str) or not isinstance(at, int | float):
            continue
        bot = data.get("bot")
        label = f"{name} [{bot}]" if isinstance(bot, str) and bot else name
        named = data.get("metric")
        metric = named if isinstance(named, str) else ""
        if record.get("event_type") == "alert_fired" and label not in open_since:
            since = data.get("active_since")
            fired = float(since) if isinstance(since, int | float) else float(at)
            pending = data.get("pending_seconds")
            if isinstance(pending, int | float) and pending > 0:
                out.append(Period(label, "pending", fired - float(pending), fired, metric))
            open_since[label] = (fired, metric)
        elif record.get("event_type") == "alert_resolved" and label in open_since:
            fired, metric = open_since.pop(label)
            out.append(Period(label, "firing", fired, float(at), metric))
    out.extend(Period(label, "firing", fired, now, m) for label, (fired, m) in open_since.items())
    return sorted(out, key=lambda p: (p.start, p.rule))


# ------------------------------------------------------------------ every panel at once


class TrailQueries(Protocol):
    """What panel_data needs from a store (dashboard.store.TrailStore provides it)."""

    last_event_time: float | None
    last_heartbeat_time: float | None

    def counts(self, start: float, end: float, symbol: str | None = None) -> Counter[str]: ...
    def series(
        self,
        start: float,
        end: float,
        symbol: str | None = None,
        event_types: Iterable[str] | None = None,
    ) -> list[tuple[float, Counter[str]]]: ...
    def rejection_reasons(
        self, start: float, end: float, symbol: str | None = None
    ) -> Counter[str]: ...
    def rejection_reason_series(
        self, start: float, end: float, symbol: str | None = None
    ) -> list[tuple[float, Counter[str]]]: ...
    def capped_quantities(
        self, start: float, end: float, symbol: str | None = None
    ) -> list[tuple[float, float, float]]: ...
    def order_outcomes(
        self, start: float, end: float, symbol: str | None = None
    ) -> Counter[tuple[str, str]]: ...
    def recent(
        self,
        limit: int = 500,
        *,
        start: float | None = None,
        end: float | None = None,
        symbol: str | None = None,
        event_types: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]: ...
    def trace(self, trace_id: str) -> list[dict[str, Any]]: ...
    def recent_trace_ids(self, limit: int = 50) -> list[str]: ...
    def symbols(self) -> list[str]: ...


def panel_data(
    store: TrailQueries,
    start: float,
    end: float,
    symbol: str | None = None,
    *,
    now: float | None = None,
    window_buckets: int = 1,
    table_limit: int = 500,
) -> dict[str, Any]:
    """Everything the panels of SPEC §9 show for one window, as plain data."""
    counts = store.counts(start, end, symbol)
    series = store.series(start, end, symbol)
    traces = store.recent_trace_ids()
    return {
        "headline": headline(
            counts,
            now=end if now is None else now,
            last_event_time=store.last_event_time,
            last_heartbeat_time=store.last_heartbeat_time,
        ),
        "funnel": funnel(counts),
        "rates_over_time": rates_over_time(series, window_buckets=window_buckets),
        "capping_over_time": count_series(series, "position_size_capped"),
        "rejection_reasons": share(store.rejection_reasons(start, end, symbol)),
        "rejection_reason_series": store.rejection_reason_series(start, end, symbol),
        "capped_quantities": store.capped_quantities(start, end, symbol),
        "order_outcomes": order_outcome_rows(store.order_outcomes(start, end, symbol)),
        "events": store.recent(table_limit, start=start, end=end, symbol=symbol),
        "trace": store.trace(traces[0]) if traces else [],
        "trace_ids": traces,
        "symbols": store.symbols(),
    }
