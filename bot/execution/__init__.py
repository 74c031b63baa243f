"""Execution: every call the bot makes to the exchange, retried and audited.

:class:`OrderExecutionManager` is the one entry point (the engine, the
protection supervisor, the control desk and the composition root use it);
its parts, each in its module:

* :mod:`.manager` — the manager itself and the trade: entry, take-profit and
  stop-loss all stand, or the trade is unwound;
* :mod:`.calls` — the exchange port behind retries and audit: reads retried,
  orders gated by the trading state and never sent twice, cancels remembered;
* :mod:`.resolve` — an unknown order outcome resolved from the venue's
  records before anything is sent again;
* :mod:`.closing` — the protective close (backoff, LIMIT IOC fallback inside
  the PERCENT_PRICE band, critical record when it fails);
* :mod:`.startup` — account modes, symbol settings, and the reconciliation
  of what a previous run left at the venue;
* :mod:`.stops` — per-symbol lock and stop plan, shared with
  :mod:`bot.supervisor`;
* :mod:`.client_ids` — ``<trace>-<role>`` client order ids (pure);
* :mod:`.retry` — the retry policy and how a failure is recorded.
"""

from bot.execution.calls import OrderGate
from bot.execution.client_ids import (
    CLOSE_INSIDE_BAND,
    PROTECTIVE_CLOSE,
    SIBLING,
    STOP_ROLES,
    TAKE_PROFIT,
    parse_client_order_id,
    trace_of_orders,
)
from bot.execution.manager import OrderExecutionManager, TradeResult
from bot.execution.retry import RetryPolicy
from bot.execution.startup import describe_order
from bot.execution.stops import StopPlan

__all__ = [
    "CLOSE_INSIDE_BAND",
    "PROTECTIVE_CLOSE",
    "SIBLING",
    "STOP_ROLES",
    "TAKE_PROFIT",
    "OrderExecutionManager",
    "OrderGate",
    "RetryPolicy",
    "StopPlan",
    "TradeResult",
    "describe_order",
    "parse_client_order_id",
    "trace_of_orders",
]
