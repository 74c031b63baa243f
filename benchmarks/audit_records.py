"""Realistic audit records for the benchmarks: the event flows of SPEC §6 with real payloads.

`records(n)` returns keyword arguments for ``AuditLogger.log_event``; every
benchmark feeds the same list to every contender so they write the same data.
"""

from __future__ import annotations

import random
from typing import Any

from bot.audit import AuditEventType as E
from bot.audit import new_trace_id

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
REASONS = ("existing_position", "invalid_take_profit", "invalid_stop_loss")


def records(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` log_event keyword dicts: mostly full signal flows, some rejections and failures."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        out.extend(_flow(rng))
    return out[:n]


def _flow(rng: random.Random) -> list[dict[str, Any]]:
    symbol = rng.choice(SYMBOLS)
    tid = new_trace_id()
    side = rng.choice(("BUY", "SELL"))
    price = round(rng.uniform(20_000, 70_000), 1)
    tp, sl = round(price * 1.02, 1), round(price * 0.99, 1)
    signal = {
        "signal_type": "LONG" if side == "BUY" else "SHORT",
        "entry_price": price,
        "take_profit": tp,
        "stop_loss": sl,
    }
    flow: list[dict[str, Any]] = [
        dict(
            event_type=E.SIGNAL_PROCESSING,
            operation="candle_analysis",
            symbol=symbol,
            trace_id=tid,
            additional_data={
                "signal_generated": True,
                "interval": "1m",
                "close_price": price,
                "strategy": "ema_cross",
                **signal,
            },
        )
    ]
    roll = rng.random()
    if roll < 0.15:
        reason = rng.choice(REASONS)
        flow.append(
            dict(
                event_type=E.RISK_REJECTION,
                operation="validate_risk",
                symbol=symbol,
                trace_id=tid,
                order_data=signal,
                error={
                    "reason": reason,
                    "message": f"rejected: {reason.replace('_', ' ')}",
                    "validation_failed": reason,
                },
            )
        )
        return flow
    flow.append(
        dict(
            event_type=E.RISK_VALIDATION,
            operation="validate_risk",
            symbol=symbol,
            trace_id=tid,
            order_data={**signal, "validation_passed": True},
        )
    )
    qty = round(rng.uniform(0.001, 0.5), 3)
    sizing = {
        "account_balance": 10_000.0,
        "entry_price": price,
        "stop_loss_price": sl,
        "leverage": 10,
        "risk_amount": 100.0,
        "sl_distance_percent": 1.0,
        "quantity": qty,
    }
    if rng.random() < 0.2:
        flow.append(
            dict(
                event_type=E.POSITION_SIZE_CAPPED,
                operation="calculate_position_size",
                symbol=symbol,
                trace_id=tid,
                additional_data={
                    "requested_quantity": qty * 3,
                    "capped_quantity": qty,
                    "max_position_percent": 0.1,
                    "leverage": 10,
                    "account_balance": 10_000.0,
                },
            )
        )
    flow.append(
        dict(
            event_type=E.POSITION_SIZE_CALCULATED,
            operation="calculate_position_size",
            symbol=symbol,
            trace_id=tid,
            additional_data=sizing,
        )
    )
    for order_type, stop in (("MARKET", None), ("TAKE_PROFIT_MARKET", tp), ("STOP_MARKET", sl)):
        order = {"order_type": order_type, "side": side, "quantity": qty, "stop_price": stop}
        if rng.random() < 0.03:
            flow.append(
                dict(
                    event_type=E.ORDER_REJECTED,
                    operation="place_order",
                    symbol=symbol,
                    trace_id=tid,
                    order_data=order,
                    error={"error_code": -2019, "error_message": "Margin is insufficient."},
                )
            )
            flow.append(
                dict(
                    event_type=E.TRADE_EXECUTION_FAILED,
                    operation="execute_signal",
                    symbol=symbol,
                    trace_id=tid,
                    additional_data={
                        "signal_type": signal["signal_type"],
                        "entry_price": price,
                        "error_type": "OrderRejected",
                        "error_message": "Margin is insufficient.",
                    },
                )
            )
            return flow
        flow.append(
            dict(
                event_type=E.ORDER_PLACED,
                operation="place_order",
                symbol=symbol,
                trace_id=tid,
                order_data=order,
                response={
                    "orderId": rng.randrange(10**9, 10**10),
                    "status": "NEW",
                    "clientOrderId": f"{tid}-{order_type[:2]}",
                },
            )
        )
    flow.append(
        dict(
            event_type=E.TRADE_EXECUTED,
            operation="execute_signal",
            symbol=symbol,
            trace_id=tid,
            additional_data={
                "signal_type": signal["signal_type"],
                "entry_price": price,
                "quantity": qty,
                "leverage": 10,
                "entry_order_id": rng.randrange(10**9, 10**10),
                "tp_sl_count": 2,
            },
        )
    )
    if rng.random() < 0.3:
        flow.append(
            dict(event_type=E.HEARTBEAT, operation="heartbeat", additional_data={"uptime_s": 60})
        )
    return flow
