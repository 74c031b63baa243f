"""Plotly figure builders for the dashboard: plain data in, ``go.Figure`` out.

The only module that imports plotly. Every builder is a pure function of
plain Python data (epoch-second timestamps, ``Counter``-like mappings, tuples)
so it can be tested without Streamlit or a trail, and the same input always
gives the same figure JSON. Rates come from ``dashboard.metrics`` so a chart,
a headline number and an alert never disagree. Times are drawn in UTC, like
the trail's own timestamps.

Empty input never raises: the figure then carries a "no data" annotation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import plotly.graph_objects as go

from dashboard.metrics import RATE_METRICS, Period, rate

BucketSeries = Sequence[tuple[float, Mapping[str, int]]]
"""(bucket start in epoch seconds, event_type -> count), oldest first."""

HEIGHT = 360
OTHER = "other"

COLORS: dict[str, str] = {
    "risk_rejection_rate": "#d62728",
    "order_rejection_rate": "#ff7f0e",
    "capping_rate": "#9467bd",
    "execution_failure_rate": "#8c564b",
    "fire": "#d62728",
    "clear": "#2ca02c",
    "requested": "#7f7f7f",
    "capped": "#9467bd",
    "placed": "#1f77b4",
    "filled": "#2ca02c",
    "rejected": "#d62728",
    "cancelled": "#7f7f7f",
    "failed": "#8c564b",
}


@dataclass(frozen=True)
class Threshold:
    """A horizontal line on a rate chart, taken from an alert rule."""

    metric: str
    value: float
    label: str
    kind: str = "fire"  # "fire" (dashed) or "clear" (dotted)


# ------------------------------------------------------------------ helpers


def utc(ts: float) -> datetime:
    """Naive UTC datetime for plotting (plotly draws naive times as given)."""
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def rebucket(series: BucketSeries, width: float) -> list[tuple[float, Counter[str]]]:
    """Sum a bucket series into coarser buckets of ``width`` seconds (aligned to epoch)."""
    merged: dict[float, Counter[str]] = {}
    for start, counts in series:
        key = start - (start % width) if width > 0 else start
        merged.setdefault(key, Counter()).update(counts)
    return sorted(merged.items())


def _base_layout(fig: go.Figure, title: str, *, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        # below the plot: above it, a legend that wraps climbs into the title
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0.0},
        hovermode="x unified",
        uirevision="keep",  # live updates keep the user's zoom and hidden traces
    )
    return fig


def _no_data(fig: go.Figure, message: str = "No data in this range") -> go.Figure:
    _note(fig, message)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _note(fig: go.Figure, message: str) -> None:
    fig.add_annotation(
        text=message,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 14, "color": "#888"},
    )


def _threshold_traces(
    fig: go.Figure, thresholds: Iterable[Threshold], x0: datetime, x1: datetime, **where: str
) -> None:
    """Thresholds in their metric's colour, dashed (fire) or dotted (clear), named on hover
    but kept out of the legend: the legend lists the metrics only."""
    for t in thresholds:
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[t.value, t.value],
                mode="lines",
                name=t.label,
                showlegend=False,
                legendgroup="thresholds",
                line={
                    "color": COLORS.get(t.metric, COLORS.get(t.kind, "#444")),
                    "dash": "dash" if t.kind == "fire" else "dot",
                    "width": 1.5,
                },
                hovertemplate=f"{t.label}: {t.value:.0%}<extra></extra>",
                meta={"threshold": t.kind, "metric": t.metric},
                **where,
            )
        )


def _shade(fig: go.Figure, periods: Iterable[Period], x0: datetime, x1: datetime) -> None:
    """Firing periods as red bands behind the lines, clipped to the chart's range."""
    for period in periods:
        start, end = utc(period.start), utc(period.end)
        if end <= x0 or start >= x1:
            continue
        fig.add_vrect(
            x0=max(start, x0),
            x1=min(end, x1),
            fillcolor=COLORS["fire"],
            opacity=0.12,
            layer="below",
            line_width=0,
            name=f"{period.rule} firing",
        )


def _x_extent(starts: Sequence[float], width: float) -> tuple[datetime, datetime]:
    return utc(starts[0]), utc(starts[-1] + width)


# ------------------------------------------------------------------ figures


def signal_funnel(stages: Sequence[tuple[str, int]]) -> go.Figure:
    """Signal → ... → trade: one bar per stage, with conversion from the previous stage."""
    fig = _base_layout(go.Figure(), "Signal flow")
    if not stages or not any(count for _, count in stages):
        return _no_data(fig, "No signals in this range")
    fig.add_trace(
        go.Funnel(
            y=[label for label, _ in stages],
            x=[count for _, count in stages],
            textinfo="value+percent previous",
            hoverinfo="y+x+percent previous+percent initial",
            marker={"color": "#1f77b4"},
        )
    )
    fig.update_layout(hovermode="closest")
    return fig


def rates_over_time(
    series: BucketSeries,
    metrics: Sequence[str],
    thresholds: Sequence[Threshold] = (),
    *,
    width: float = 60.0,
    title: str = "Rejection rates",
    firing: Sequence[Period] = (),
) -> go.Figure:
    """One line per rate metric (per bucket of ``width`` s), with alert thresholds and the
    periods when an alert fired shaded.

    A bucket without samples has no point (a gap), never a misleading 0 %.
    """
    fig = _base_layout(go.Figure(), title)
    buckets = rebucket(series, width)
    if not buckets:
        return _no_data(fig)
    xs = [utc(start) for start, _ in buckets]
    drawn = 0
    for metric in metrics:
        ys = [rate(metric, counts) for _, counts in buckets]
        if all(y is None for y in ys):
            continue
        drawn += 1
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=RATE_METRICS[metric].label,
                line={"color": COLORS.get(metric)},
                connectgaps=False,
                hovertemplate="%{y:.1%}",
                meta={"metric": metric},
            )
        )
    x0, x1 = _x_extent([start for start, _ in buckets], width)
    _threshold_traces(fig, [t for t in thresholds if t.metric in metrics], x0, x1)
    _shade(fig, firing, x0, x1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title_text="rate")
    fig.update_xaxes(title_text="time (UTC)")
    if not drawn:  # thresholds alone still show where alerts would fire
        _note(fig, "No samples in this range")
    return fig


def rejection_reasons(reasons: Mapping[str, int], top_n: int = 10) -> go.Figure:
    """Horizontal bars of the top-N risk rejection reasons; the rest summed as "other"."""
    fig = _base_layout(go.Figure(), f"Top {top_n} rejection reasons")
    top = _top(reasons, top_n)
    if not top:
        return _no_data(fig, "No risk rejections in this range")
    labels = [label for label, _ in top][::-1]  # largest at the top
    counts = [count for _, count in top][::-1]
    fig.add_trace(
        go.Bar(
            x=counts,
            y=labels,
            orientation="h",
            text=counts,
            textposition="auto",
            marker={"color": COLORS["rejected"]},
            name="rejections",
        )
    )
    fig.update_layout(hovermode="closest", showlegend=False)
    fig.update_xaxes(title_text="rejections")
    return fig


def rejection_reasons_over_time(
    series: BucketSeries, top_n: int = 5, *, width: float = 60.0
) -> go.Figure:
    """Stacked bars of rejection reasons per bucket (top-N over the range, rest "other")."""
    fig = _base_layout(go.Figure(), "Rejection reasons over time")
    buckets = rebucket(series, width)
    total: Counter[str] = Counter()
    for _, counts in buckets:
        total.update(counts)
    keep = [label for label, _ in _top(total, top_n) if label != OTHER]
    if not keep:
        return _no_data(fig, "No risk rejections in this range")
    xs = [utc(start) for start, _ in buckets]
    shown = [*keep, OTHER] if len(total) > len(keep) else keep
    for label in shown:
        if label == OTHER:
            ys = [sum(v for k, v in counts.items() if k not in keep) for _, counts in buckets]
        else:
            ys = [counts.get(label, 0) for _, counts in buckets]
        fig.add_trace(go.Bar(x=xs, y=ys, name=label))
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text="rejections")
    fig.update_xaxes(title_text="time (UTC)")
    return fig


def capping_over_time(
    series: BucketSeries,
    thresholds: Sequence[Threshold] = (),
    *,
    width: float = 60.0,
    firing: Sequence[Period] = (),
) -> go.Figure:
    """Capped sizings per bucket (bars) and the capping rate (line, right axis), with the
    periods when a capping alert fired shaded."""
    fig = _base_layout(go.Figure(), "Position-size capping")
    buckets = rebucket(series, width)
    if not any(counts.get("position_size_calculated", 0) for _, counts in buckets):
        return _no_data(fig, "No position sizing in this range")
    xs = [utc(start) for start, _ in buckets]
    fig.add_trace(
        go.Bar(
            x=xs,
            y=[counts.get("position_size_capped", 0) for _, counts in buckets],
            name="capped",
            marker={"color": COLORS["capped"], "opacity": 0.5},
        )
    )
    fig.add_trace(
        go.Bar(
            x=xs,
            y=[
                counts.get("position_size_calculated", 0) - counts.get("position_size_capped", 0)
                for _, counts in buckets
            ],
            name="not capped",
            marker={"color": COLORS["requested"], "opacity": 0.35},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[rate("capping_rate", counts) for _, counts in buckets],
            mode="lines+markers",
            name=RATE_METRICS["capping_rate"].label,
            line={"color": COLORS["capping_rate"]},
            yaxis="y2",
            connectgaps=False,
            hovertemplate="%{y:.1%}",
            meta={"metric": "capping_rate"},
        )
    )
    x0, x1 = _x_extent([start for start, _ in buckets], width)
    _threshold_traces(
        fig, [t for t in thresholds if t.metric == "capping_rate"], x0, x1, yaxis="y2"
    )
    _shade(fig, firing, x0, x1)
    fig.update_layout(
        barmode="stack",
        yaxis={"title": {"text": "sizings"}},
        yaxis2={
            "title": {"text": "capping rate"},
            "overlaying": "y",
            "side": "right",
            "range": [0, 1.05],
            "tickformat": ".0%",
            "showgrid": False,
        },
    )
    fig.update_xaxes(title_text="time (UTC)")
    return fig


def requested_vs_capped(points: Sequence[tuple[float, float, float]]) -> go.Figure:
    """Each capping as requested → capped quantity at its time, joined by a line."""
    fig = _base_layout(go.Figure(), "Requested vs capped quantity")
    if not points:
        return _no_data(fig, "No capped positions in this range")
    ordered = sorted(points)
    xs = [utc(ts) for ts, _, _ in ordered]
    link_x: list[datetime | None] = []
    link_y: list[float | None] = []
    for x, (_, requested, capped) in zip(xs, ordered, strict=True):
        link_x += [x, x, None]
        link_y += [requested, capped, None]
    fig.add_trace(
        go.Scatter(
            x=link_x,
            y=link_y,
            mode="lines",
            line={"color": "#cccccc", "width": 1},
            hoverinfo="skip",
            showlegend=False,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[requested for _, requested, _ in ordered],
            mode="markers",
            name="requested",
            marker={"color": COLORS["requested"], "symbol": "circle-open", "size": 9},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[capped for _, _, capped in ordered],
            mode="markers",
            name="capped",
            marker={"color": COLORS["capped"], "size": 8},
        )
    )
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(title_text="quantity")
    fig.update_xaxes(title_text="time (UTC)")
    return fig


def order_outcomes(outcomes: Mapping[tuple[str, str], int]) -> go.Figure:
    """Stacked bars: one bar per order type, one colour per outcome."""
    fig = _base_layout(go.Figure(), "Order outcomes")
    if not any(outcomes.values()):
        return _no_data(fig, "No orders in this range")
    types = sorted({order_type for order_type, _ in outcomes})
    kinds = sorted({outcome for _, outcome in outcomes}, key=_outcome_order)
    for outcome in kinds:
        ys = [outcomes.get((order_type, outcome), 0) for order_type in types]
        fig.add_trace(
            go.Bar(x=types, y=ys, name=outcome, marker={"color": COLORS.get(outcome)}, text=ys)
        )
    fig.update_layout(barmode="stack", hovermode="closest")
    fig.update_yaxes(title_text="orders")
    return fig


def _top(counts: Mapping[str, int], n: int) -> list[tuple[str, int]]:
    """The ``n`` largest (ties by name), with the rest summed into ``other``."""
    ranked = sorted(((k, v) for k, v in counts.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    head, tail = ranked[:n], ranked[n:]
    rest = sum(v for _, v in tail)
    return [*head, (OTHER, rest)] if rest else head


_OUTCOME_ORDER = ("placed", "filled", "cancelled", "rejected", "failed")


def _outcome_order(outcome: str) -> tuple[int, str]:
    try:
        return _OUTCOME_ORDER.index(outcome), outcome
    except ValueError:
        return len(_OUTCOME_ORDER), outcome


# ------------------------------------------------------------------ alerts and results


def alert_timeline(periods: Sequence[Period], start: float, end: float) -> go.Figure:
    """One row per rule: pending (orange) then firing (red) spans over [start, end)."""
    fig = _base_layout(go.Figure(), "Alert history", height=max(160, 60 + 40 * len(periods)))
    shown = [p for p in periods if p.end > start and p.start < end]
    if not shown:
        return _no_data(fig, "No alert was pending or firing in this range")
    for state in ("pending", "firing"):
        rows = [p for p in shown if p.state == state]
        if not rows:
            continue
        fig.add_trace(
            go.Bar(
                y=[p.rule for p in rows],
                base=[utc(max(p.start, start)) for p in rows],
                x=[(min(p.end, end) - max(p.start, start)) * 1000 for p in rows],
                orientation="h",
                name=state,
                marker={"color": COLORS["fire"] if state == "firing" else "#ff7f0e"},
                customdata=[[_hms(p.start), _hms(p.end)] for p in rows],
                hovertemplate=(
                    f"%{{y}} {state} %{{customdata[0]}} → %{{customdata[1]}}<extra></extra>"
                ),
            )
        )
    fig.update_layout(barmode="overlay", hovermode="closest")
    fig.update_xaxes(type="date", range=[utc(start), utc(end)], title_text="time (UTC)")
    fig.update_yaxes(autorange="reversed")
    return fig


def cumulative_pnl(points: Sequence[tuple[float, float]]) -> go.Figure:
    """Cumulative realized PnL net of fees over time (a step line)."""
    fig = _base_layout(go.Figure(), "Net PnL (cumulative, after fees)")
    if not any(value for _, value in points):
        return _no_data(fig, "No closed trades in this range")
    fig.add_trace(
        go.Scatter(
            x=[utc(ts) for ts, _ in points],
            y=[value for _, value in points],
            mode="lines",
            line={"shape": "hv", "color": COLORS["placed"]},
            name="net PnL",
            hovertemplate="%{y:,.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(title_text="quote currency", zeroline=True)
    fig.update_xaxes(title_text="time (UTC)")
    return fig


def pnl_by_symbol(by_symbol: Mapping[str, tuple[float, float]]) -> go.Figure:
    """Per symbol: net PnL (bar) and fees (bar), symbol -> (net PnL, fees)."""
    fig = _base_layout(go.Figure(), "Net PnL and fees per symbol")
    if not by_symbol:
        return _no_data(fig, "No fills in this range")
    symbols = sorted(by_symbol)
    nets = [by_symbol[s][0] for s in symbols]
    fig.add_trace(
        go.Bar(
            x=symbols,
            y=nets,
            name="net PnL",
            marker={"color": [COLORS["filled"] if v >= 0 else COLORS["rejected"] for v in nets]},
            text=[f"{v:,.2f}" for v in nets],
        )
    )
    fig.add_trace(
        go.Bar(
            x=symbols,
            y=[-by_symbol[s][1] for s in symbols],
            name="fees",
            marker={"color": COLORS["cancelled"]},
        )
    )
    fig.update_layout(barmode="group", hovermode="closest")
    return fig


def exits(counts: Mapping[str, int]) -> go.Figure:
    """How positions were closed: take-profit, stop-loss, protective close."""
    fig = _base_layout(go.Figure(), "Exits")
    if not any(counts.values()):
        return _no_data(fig, "No exits in this range")
    names = [n for n in ("take_profit", "stop_loss", "protective_close") if n in counts]
    names += sorted(set(counts) - set(names))
    fig.add_trace(
        go.Bar(
            x=names,
            y=[counts[n] for n in names],
            text=[counts[n] for n in names],
            marker={"color": [EXIT_COLORS.get(n, "#7f7f7f") for n in names]},
        )
    )
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


def equity(points: Sequence[tuple[float, str, float]]) -> go.Figure:
    """Wallet balance from balance queries, one line per bot."""
    fig = _base_layout(go.Figure(), "Equity (balance queries)")
    if not points:
        return _no_data(fig, "No balance queries in this range")
    for bot in sorted({bot for _, bot, _ in points}):
        mine = [(ts, value) for ts, who, value in points if who == bot]
        fig.add_trace(
            go.Scatter(
                x=[utc(ts) for ts, _ in mine],
                y=[value for _, value in mine],
                mode="lines+markers",
                name=bot,
            )
        )
    fig.update_xaxes(title_text="time (UTC)")
    return fig


EXIT_COLORS = {"take_profit": "#2ca02c", "stop_loss": "#d62728", "protective_close": "#8c564b"}


def _hms(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")
