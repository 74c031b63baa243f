"""Figure builders (dashboard/charts.py) on plain data: what each chart shows."""

from __future__ import annotations

from collections import Counter

from dashboard import charts
from dashboard.charts import Threshold
from dashboard.viewstate import display_bucket

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_funnel_shows_each_stage_and_its_conversion():
    fig = charts.signal_funnel([("signals", 10), ("passed risk", 6), ("trades", 3)])
    (funnel,) = fig.data
    assert list(funnel.y) == ["signals", "passed risk", "trades"]
    assert list(funnel.x) == [10, 6, 3]
    assert "percent previous" in funnel.textinfo


def test_empty_inputs_give_a_no_data_figure_not_an_exception():
    for fig in (
        charts.signal_funnel([]),
        charts.rates_over_time([], ["risk_rejection_rate"]),
        charts.rates_over_time([(T0, Counter())], ["risk_rejection_rate"]),
        charts.rejection_reasons({}),
        charts.rejection_reasons_over_time([]),
        charts.capping_over_time([]),
        charts.requested_vs_capped([]),
        charts.order_outcomes({}),
        charts.alert_timeline([], T0, T0 + 60),
        charts.cumulative_pnl([(T0, 0.0)]),
        charts.pnl_by_symbol({}),
        charts.exits({}),
        charts.equity([]),
    ):
        assert not fig.data
        assert fig.layout.annotations[0].text.startswith("No ")


def test_rate_line_is_per_bucket_and_leaves_gaps_where_there_are_no_samples():
    series = [
        (T0, Counter(risk_validation=3, risk_rejection=1)),
        (T0 + 60, Counter(heartbeat=1)),
        (T0 + 120, Counter(risk_rejection=2)),
    ]
    fig = charts.rates_over_time(series, ["risk_rejection_rate", "order_rejection_rate"])
    line = _trace(fig, "Risk rejection rate")
    assert list(line.y) == [0.25, None, 1.0]
    assert [t.name for t in fig.data] == ["Risk rejection rate"]  # no orders: no empty line


def test_alert_thresholds_are_drawn_across_the_range_for_matching_metrics_only():
    series = [(T0, Counter(risk_rejection=1)), (T0 + 60, Counter(risk_validation=1))]
    fig = charts.rates_over_time(
        series,
        ["risk_rejection_rate"],
        [
            Threshold("risk_rejection_rate", 0.5, "fires above 50%", "fire"),
            Threshold("risk_rejection_rate", 0.3, "clears below 30%", "clear"),
            Threshold("capping_rate", 0.9, "capping", "fire"),
        ],
    )
    fire = _trace(fig, "fires above 50%")
    assert list(fire.y) == [0.5, 0.5]
    assert fire.line.dash == "dash"
    assert _trace(fig, "clears below 30%").line.dash == "dot"
    assert "capping" not in [t.name for t in fig.data]
    assert fire.x[0] == charts.utc(T0) and fire.x[1] == charts.utc(T0 + 120)


def test_rebucketing_sums_counts_into_wider_aligned_buckets():
    series = [(T0 + 60 * i, Counter(risk_rejection=1)) for i in range(10)]
    merged = charts.rebucket(series, 300)
    assert merged == [(T0, Counter(risk_rejection=5)), (T0 + 300, Counter(risk_rejection=5))]


def test_display_bucket_keeps_the_number_of_points_bounded():
    assert display_bucket(3600) == 60
    assert display_bucket(24 * 3600) == 900
    assert display_bucket(7 * 86400) == 3600
    assert display_bucket(10 * 365 * 86400) == 86400


def test_rejection_reasons_are_ranked_and_the_tail_is_summed_as_other():
    reasons = Counter(existing_position=5, invalid_stop_loss=3, invalid_take_profit=1, x=1)
    fig = charts.rejection_reasons(reasons, top_n=2)
    (bars,) = fig.data
    assert list(bars.y) == ["other", "invalid_stop_loss", "existing_position"]
    assert list(bars.x) == [2, 3, 5]


def test_rejection_reasons_over_time_stack_the_top_reasons():
    series = [
        (T0, Counter(existing_position=2, invalid_stop_loss=1)),
        (T0 + 60, Counter(existing_position=1, rare=1)),
    ]
    fig = charts.rejection_reasons_over_time(series, top_n=2)
    assert fig.layout.barmode == "stack"
    assert list(_trace(fig, "existing_position").y) == [2, 1]
    assert list(_trace(fig, "other").y) == [0, 1]


def test_capping_chart_has_counts_rate_and_threshold_on_the_rate_axis():
    series = [(T0, Counter(position_size_calculated=4, position_size_capped=1))]
    fig = charts.capping_over_time(
        series, [Threshold("capping_rate", 0.5, "capping fires", "fire")]
    )
    assert list(_trace(fig, "capped").y) == [1]
    assert list(_trace(fig, "not capped").y) == [3]
    assert list(_trace(fig, "Capping rate").y) == [0.25]
    assert _trace(fig, "capping fires").yaxis == "y2"


def test_requested_vs_capped_plots_both_quantities_in_time_order():
    fig = charts.requested_vs_capped([(T0 + 60, 2.0, 1.5), (T0, 3.0, 1.0)])
    assert list(_trace(fig, "requested").y) == [3.0, 2.0]
    assert list(_trace(fig, "capped").y) == [1.0, 1.5]


def test_order_outcomes_stack_outcomes_per_order_type():
    fig = charts.order_outcomes(
        {("MARKET", "placed"): 3, ("MARKET", "rejected"): 1, ("STOP_MARKET", "placed"): 2}
    )
    placed = _trace(fig, "placed")
    assert list(placed.x) == ["MARKET", "STOP_MARKET"]
    assert list(placed.y) == [3, 2]
    assert list(_trace(fig, "rejected").y) == [1, 0]


def test_figures_serialize_to_json():
    fig = charts.rates_over_time([(T0, Counter(order_placed=1))], ["order_rejection_rate"])
    assert '"Order rejection rate"' in fig.to_json()


def test_a_rate_chart_without_samples_still_draws_thresholds_and_says_so():
    fig = charts.rates_over_time(
        [(T0, Counter(heartbeat=1))],
        ["risk_rejection_rate"],
        [Threshold("risk_rejection_rate", 0.5, "fires", "fire")],
    )
    assert [t.name for t in fig.data] == ["fires"]
    assert fig.layout.annotations[0].text == "No samples in this range"
