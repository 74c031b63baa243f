"""dashboard.metrics: every rate, the funnel and the helpers against hand-computed values."""

from __future__ import annotations

from collections import Counter

import pytest

from dashboard import metrics

COUNTS = Counter(
    {
        "signal_processing": 20,
        "risk_validation": 15,
        "risk_rejection": 5,
        "position_size_calculated": 15,
        "position_size_capped": 3,
        "order_placed": 36,
        "order_rejected": 4,
        "trade_executed": 12,
        "trade_execution_failed": 3,
    }
)


def test_risk_rejection_rate_is_rejections_over_validations_plus_rejections() -> None:
    assert metrics.rate("risk_rejection_rate", COUNTS) == 5 / 20
    assert metrics.rate_parts("risk_rejection_rate", COUNTS) == (5, 20)


def test_order_rejection_rate_is_rejected_over_placed_plus_rejected() -> None:
    assert metrics.rate("order_rejection_rate", COUNTS) == 4 / 40


def test_capping_rate_is_capped_over_calculated() -> None:
    assert metrics.rate("capping_rate", COUNTS) == 3 / 15


def test_execution_failure_rate_is_failed_over_executed_plus_failed() -> None:
    assert metrics.rate("execution_failure_rate", COUNTS) == 3 / 15


def test_a_rate_without_samples_is_none_not_zero() -> None:
    assert metrics.rate("capping_rate", Counter()) is None
    assert metrics.rates(Counter()) == dict.fromkeys(metrics.RATE_METRICS)


def test_funnel_gives_counts_and_conversion_at_each_stage() -> None:
    stages = metrics.funnel(COUNTS)
    assert [s.event_type for s in stages] == [
        "signal_processing",
        "risk_validation",
        "position_size_calculated",
        "trade_executed",
    ]
    assert [s.count for s in stages] == [20, 15, 15, 12]
    assert [s.conversion for s in stages] == [None, 15 / 20, 15 / 15, 12 / 15]
    assert [s.overall for s in stages] == [1.0, 15 / 20, 15 / 20, 12 / 20]


def test_funnel_of_an_empty_window_has_no_conversions() -> None:
    stages = metrics.funnel(Counter())
    assert [s.count for s in stages] == [0, 0, 0, 0]
    assert all(s.conversion is None and s.overall is None for s in stages)


def test_headline_numbers_and_ages() -> None:
    head = metrics.headline(
        COUNTS,
        now=1000.0,
        last_event_time=990.0,
        last_heartbeat_time=940.0,
        integrity_ok=True,
        malformed_lines=2,
    )
    assert (head.signals, head.trades) == (20, 12)
    assert head.risk_rejection_rate == 0.25
    assert head.order_rejection_rate == 0.1
    assert head.capping_rate == 0.2
    assert head.execution_failure_rate == 0.2
    assert (head.seconds_since_last_event, head.seconds_since_heartbeat) == (10.0, 60.0)
    assert head.integrity_ok is True and head.malformed_lines == 2
    assert metrics.headline(Counter(), now=5.0).seconds_since_heartbeat is None


def test_rate_series_per_bucket_and_over_a_trailing_window() -> None:
    series = [
        (0.0, Counter(risk_rejection=1, risk_validation=1)),
        (60.0, Counter()),
        (120.0, Counter(risk_rejection=0, risk_validation=2)),
    ]
    assert metrics.rate_series(series, "risk_rejection_rate") == [
        (0.0, 0.5),
        (60.0, None),
        (120.0, 0.0),
    ]
    assert metrics.rate_series(series, "risk_rejection_rate", window_buckets=2) == [
        (0.0, 0.5),
        (60.0, 0.5),
        (120.0, 0.0),
    ]
    assert metrics.rate_series(series, "risk_rejection_rate", window_buckets=3)[-1] == (
        120.0,
        1 / 4,
    )
    with pytest.raises(ValueError):
        metrics.rate_series(series, "risk_rejection_rate", window_buckets=0)


def test_count_series_and_rates_over_time() -> None:
    series = [(0.0, Counter(position_size_capped=2)), (60.0, Counter())]
    assert metrics.count_series(series, "position_size_capped") == [(0.0, 2), (60.0, 0)]
    assert set(metrics.rates_over_time(series)) == set(metrics.RATE_METRICS)


def test_order_outcome_rows_and_shares() -> None:
    rows = metrics.order_outcome_rows(
        Counter({("MARKET", "placed"): 3, ("MARKET", "rejected"): 1, ("STOP_MARKET", "filled"): 2})
    )
    assert rows == [
        {
            "order_type": "MARKET",
            "placed": 3,
            "rejected": 1,
            "filled": 0,
            "cancelled": 0,
            "rejection_rate": 0.25,
        },
        {
            "order_type": "STOP_MARKET",
            "placed": 0,
            "rejected": 0,
            "filled": 2,
            "cancelled": 0,
            "rejection_rate": None,
        },
    ]
    assert metrics.share(Counter(a=1, b=3)) == [("b", 3, 0.75), ("a", 1, 0.25)]
    assert metrics.share(Counter()) == []
