"""Pure metric definitions over event counts: the rates of SPEC §9 and the signal funnel.

No I/O and no streamlit: the dashboard and the alert engine both compute
rates here, so a number on screen and an alert can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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
