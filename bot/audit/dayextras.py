"""What records of some event types add to a day index besides their count.

``DayIndex.add_many`` (``bot.audit.dayindex``) counts every record and hands the
records of the event types in ``EXTRAS`` to their function here: the rest of the one
rule of what a record contributes. They build the trading results (realized PnL and
fees per fill; trades, wins, losses, net PnL and exit kinds per closed trade; entry
slippage), the signal rows, the venue's order errors, the capped quantities, the
equity points and the control acts (trading state, protections). This module also
names the layouts of what they build (signal rows, open trades, measures), which the
dashboard reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from bot.audit import chain
from bot.audit.reader import Record

if TYPE_CHECKING:
    from bot.audit.dayindex import DayIndex

RISK_REJECTION = "risk_rejection"
CAPPED = "position_size_capped"
HEARTBEAT = "heartbeat"
EXIT_KINDS = {"tp": "take_profit", "sl": "stop_loss", "x": "protective_close"}
ENTRY_ROLE = "e"

# measures of ``sums``: per fill (realized PnL, fees) and per closed trade (at its exit)
PNL, FEE = "realized_pnl", "fees"
TRADES, WINS, LOSSES, NET = "trades", "wins", "losses", "trade_net"
SLIPPED, SLIPPAGE_BPS = "slipped_entries", "slippage_bps"

CAPPED_LIMIT = 20_000  # capped quantities kept per day (the newest)
PROTECTION_LIMIT = 1_000

# A signal row is a list (rows are many and mutated as the trace goes on), by position:
# [time, bot, symbol, side, strategy, trace_id, outcome, reason, entry_price (the
#  signal's), fill_price, exit_price, exit_kind, pnl, capped]
(R_TS, R_BOT, R_SYMBOL, R_SIDE, R_STRATEGY, R_TRACE, R_OUTCOME) = range(7)
(R_REASON, R_ENTRY, R_FILL, R_EXIT, R_EXIT_KIND, R_PNL, R_CAPPED) = range(7, 14)

# an open trade: [bot, symbol, side, quantity, entry_price, opened_at, realized, fees]
T_BOT, T_SYMBOL, T_SIDE, T_QTY, T_PRICE, T_TS, T_REALIZED, T_FEES = range(8)


class At(NamedTuple):
    """Where a record counts: what ``DayIndex.add_many`` already worked out, for the extras."""

    ts: float
    bucket: int
    bot: str
    symbol: str
    detail: str
    trace_id: str | None


def _optional_number(value: Any) -> float | None:
    if type(value) is float:  # what orjson returns, first: every fill has several
        return value
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number(value: Any) -> float:
    number = _optional_number(value)
    return 0.0 if number is None else number


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def slippage_bps(side: str, signal: float | None, fill: float | None) -> float | None:
    """The entry fill's slippage against the signal's entry price in bps (positive:
    filled worse), or None when either price is missing."""
    if not signal or fill is None:
        return None
    sign = -1.0 if side in ("SHORT", "SELL") else 1.0
    return sign * (fill - signal) / signal * 10_000


def _add(target: dict[int, dict[Any, Any]], bucket: int, key: Any, n: float) -> None:
    into = target.get(bucket)
    if into is None:
        into = target[bucket] = {}
    into[key] = into.get(key, 0) + n


# ------------------------------------------------------------------ signals and their outcome


def _signal_processing(index: DayIndex, record: Record, at: At) -> None:
    if not at.trace_id or index.signals is None:
        return
    data = record.get("additional_data") or {}
    index.signals[at.trace_id] = [
        at.ts,
        at.bot,
        at.symbol,
        _text(data.get("signal_type")),
        _text(data.get("strategy")),
        at.trace_id,
        "pending",
        None,
        _optional_number(data.get("entry_price")),
        None,
        None,
        None,
        None,
        False,
    ]


def _settled(index: DayIndex, at: At) -> list[Any] | None:
    """The signal row a record of its trace settles, if the signal is in this index."""
    signals = index.signals
    return signals.get(at.trace_id) if at.trace_id and signals is not None else None


def _rejected(index: DayIndex, record: Record, at: At) -> None:
    row = _settled(index, at)
    if row is not None:
        row[R_OUTCOME], row[R_REASON] = "rejected", at.detail


def _traded(index: DayIndex, record: Record, at: At) -> None:
    row = _settled(index, at)
    if row is not None:
        row[R_OUTCOME] = "capped" if row[R_CAPPED] else "traded"


def _failed(index: DayIndex, record: Record, at: At) -> None:
    row = _settled(index, at)
    if row is not None:
        data = record.get("additional_data") or {}
        row[R_OUTCOME], row[R_REASON] = "failed", _text(data.get("error_type")) or None


def _capped(index: DayIndex, record: Record, at: At) -> None:
    data = record.get("additional_data") or {}
    index.capped.append(
        (
            at.ts,
            at.bot,
            at.symbol,
            _number(data.get("requested_quantity")),
            _number(data.get("capped_quantity")),
        )
    )
    if len(index.capped) > 2 * CAPPED_LIMIT:
        del index.capped[:-CAPPED_LIMIT]
    row = _settled(index, at)
    if row is not None:
        row[R_CAPPED] = True


# ------------------------------------------------------------------ orders, fills and trades


def _order_rejected(index: DayIndex, record: Record, at: At) -> None:
    error = record.get("error") or {}
    text = f"{error.get('error_code')} {error.get('error_message', '')}".strip()
    _add(index.errors, at.bucket, (at.bot, at.symbol, text), 1)


def _order_filled(index: DayIndex, record: Record, at: At) -> None:
    ts, bucket, bot, symbol, _, trace_id = at
    response = record.get("response") or {}
    realized = _number(response.get("realized_pnl"))
    fee = _number(response.get("commission"))
    if realized:
        _add(index.sums, bucket, (bot, symbol, PNL), realized)
    if fee:
        _add(index.sums, bucket, (bot, symbol, FEE), fee)
    role = _text((record.get("additional_data") or {}).get("role"))
    price = _number(response.get("avg_price"))
    if not trace_id:
        return
    row = index.signals.get(trace_id) if index.signals is not None else None
    if role == ENTRY_ROLE:
        trade = index.open_trades.get(trace_id)
        if trade is None:
            side = _text(response.get("side"))
            qty = _number(response.get("executed_qty"))
            trade = [bot, symbol, side, qty, price, ts, 0.0, 0.0]
            index.open_trades[trace_id] = trade
        else:  # a later record of the same order: cumulative quantity and price
            trade[T_QTY] = _number(response.get("executed_qty")) or trade[T_QTY]
            trade[T_PRICE] = price or trade[T_PRICE]
        trade[T_REALIZED] += realized
        trade[T_FEES] += fee
        if row is not None:
            _slipped(index, row, price)
            row[R_FILL] = price
        return
    exit_kind = EXIT_KINDS.get(role)
    if exit_kind is None:
        return
    trade = index.open_trades.pop(trace_id, None)
    if trade is None:
        if row is not None and row[R_EXIT_KIND] is not None:  # a further exit fill
            row[R_PNL] = (row[R_PNL] or 0.0) + realized - fee
            return
        previous = index.cross_exits.get(trace_id)
        if previous is not None:
            realized += previous[5]
            fee += previous[6]
        index.cross_exits[trace_id] = (ts, bot, symbol, exit_kind, price, realized, fee)
        return
    net = trade[T_REALIZED] + realized - trade[T_FEES] - fee
    _close_trade(index, bucket, bot, symbol, exit_kind, net)
    if row is not None:
        row[R_EXIT], row[R_EXIT_KIND], row[R_PNL] = price, exit_kind, net


def _slipped(index: DayIndex, row: list[Any], fill: float) -> None:
    """Sum the entry's slippage in its signal's bucket; a later record of the same
    order (its cumulative price) replaces what the earlier one added."""
    bps = slippage_bps(row[R_SIDE], row[R_ENTRY], fill)
    if bps is None:
        return
    resolution = index.resolution
    bucket = int(row[R_TS]) // resolution * resolution
    previous = slippage_bps(row[R_SIDE], row[R_ENTRY], row[R_FILL])
    if previous is None:
        _add(index.sums, bucket, (row[R_BOT], row[R_SYMBOL], SLIPPED), 1.0)
    else:
        bps -= previous
    _add(index.sums, bucket, (row[R_BOT], row[R_SYMBOL], SLIPPAGE_BPS), bps)


def _close_trade(
    index: DayIndex, bucket: int, bot: str, symbol: str, exit_kind: str, net: float
) -> None:
    """Count a closed trade (its net PnL, win or loss, how it exited) in ``bucket``."""
    sums = index.sums.get(bucket)
    if sums is None:
        sums = index.sums[bucket] = {}
    for measure, n in (
        (TRADES, 1.0),
        (WINS if net > 0 else LOSSES, 1.0),
        (NET, net),
        (exit_kind, 1.0),
    ):
        key = (bot, symbol, measure)
        sums[key] = sums.get(key, 0.0) + n


# ------------------------------------------------------------------ liveness, equity, control


def _heartbeat(index: DayIndex, record: Record, at: At) -> None:
    if at.ts > index.last_heartbeat.get(at.bot, -1.0):
        index.last_heartbeat[at.bot] = at.ts


def _balance(index: DayIndex, record: Record, at: At) -> None:
    balance = _optional_number((record.get("response") or {}).get("wallet_balance"))
    if balance is not None:
        index.equity.setdefault(at.bot, {})[at.bucket] = (at.ts, balance)


def _state_changed(index: DayIndex, record: Record, at: At) -> None:
    data = record.get("additional_data") or {}
    index.states[at.bot] = (
        at.ts,
        _text(data.get("to")),
        _text(data.get("from")),
        _text(data.get("reason")),
        _text(data.get("source")),
    )


def _protection(index: DayIndex, record: Record, at: At) -> None:
    data = record.get("additional_data") or {}
    until = data.get("until")
    # an end may lie far ahead: the record timestamp rule bounds years, so allow any here
    until_ts = (
        chain.timestamp_seconds(until, 9999) if isinstance(until, str) else _optional_number(until)
    )
    scope = _text(data.get("symbol")) or at.symbol or None
    index.protections.append((at.ts, at.bot, _text(data.get("protection")), scope, until_ts, data))
    if len(index.protections) > 2 * PROTECTION_LIMIT:
        del index.protections[:-PROTECTION_LIMIT]


EXTRAS: dict[str, Callable[[DayIndex, Record, At], None]] = {
    "signal_processing": _signal_processing,
    RISK_REJECTION: _rejected,
    CAPPED: _capped,
    "trade_executed": _traded,
    "trade_execution_failed": _failed,
    "order_rejected": _order_rejected,
    "order_filled": _order_filled,
    HEARTBEAT: _heartbeat,
    "balance_query": _balance,
    "trading_state_changed": _state_changed,
    "protection_triggered": _protection,
}
"""What records of some event types add besides their count (the rest of the rule)."""
