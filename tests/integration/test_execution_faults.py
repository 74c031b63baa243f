"""Faults injected at the fake venue, through the real stack.

OrderExecutionManager (retries, unknown-outcome resolution, protective close)
→ BinanceExchange (error translation) → python-binance → HTTP → FakeBinance,
with a real AuditLogger writing to tmp_path. Every case must leave:

* no duplicate order at the venue (one order per client order id and role);
* no position without a stop-loss once ``execute`` returns;
* every injected fault visible in the audit trail;
* neither the API key nor the secret (nor a signature) in any audit file.

Back-off and Retry-After waits go through the manager's injectable ``sleep``,
so a 120-second ban costs nothing here (the values are asserted instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from bot.exchange.binance import BinanceExchange
from bot.execution import OrderExecutionManager, RetryPolicy
from bot.models import MarginType
from tests.fakebinance import API_KEY, API_SECRET, FakeBinance, Fault
from tests.integration.conftest import SIGNAL, TIMEOUT_FAULT, raw_trail_text, read_trail

TRACE = "5eed0000c0ffee01"
ENTRY, TP, SL, CLOSE = (f"{TRACE}-{role}" for role in ("e", "tp", "sl", "x"))
ERROR_EVENTS = {"api_error", "retry_attempt", "rate_limit", "order_rejected"}
MARKET = {"type": "MARKET"}
STOP = {"type": "STOP_MARKET"}
TAKE = {"type": "TAKE_PROFIT_MARKET"}
ORDER = "POST /fapi/v1/order"
ALGO = "POST /fapi/v1/algoOrder"


@dataclass
class Stack:
    fake: FakeBinance
    exchange: BinanceExchange
    manager: OrderExecutionManager
    audit: AuditLogger
    audit_dir: Path
    sleeps: list[float] = field(default_factory=list)

    def trail(self) -> list[dict[str, Any]]:
        self.audit.flush()
        return read_trail(self.audit_dir)


@pytest.fixture
def stack(fake: FakeBinance, audit: AuditLogger, audit_dir: Path) -> Iterator[Stack]:
    exchange = BinanceExchange(
        api_key=API_KEY,
        api_secret=API_SECRET,
        base_url=fake.rest_url,
        ws_url=fake.ws_url,
        audit=audit,
        request_timeout=1.0,
    )
    sleeps: list[float] = []
    manager = OrderExecutionManager(
        exchange,
        audit,
        leverage=10,
        margin_type=MarginType.ISOLATED,
        retry=RetryPolicy(max_attempts=3, backoff_base=0.25, backoff_max=2.0),
        sleep=sleeps.append,
    )
    exchange.sync_clock()
    manager.configure_symbol("BTCUSDT")
    try:
        yield Stack(fake, exchange, manager, audit, audit_dir, sleeps)
    finally:
        exchange.close()


def accepted(fake: FakeBinance, cid: str) -> int:
    """How many orders the venue accepted under ``cid`` (regular + algo, not triggered ones)."""
    with fake.venue.lock:
        regular = sum(1 for o in fake.venue.orders if o.client_order_id == cid and not o.orig_type)
        algo = sum(1 for a in fake.venue.algo_orders if a.client_algo_id == cid)
    return regular + algo


def assert_invariants(stack: Stack) -> None:
    fake = stack.fake
    for cid in (ENTRY, TP, SL, CLOSE):
        assert accepted(fake, cid) <= 1, f"duplicate orders at the venue for {cid}"
    if fake.position_amount("BTCUSDT"):
        assert fake.open_stop_losses("BTCUSDT"), "position left open without a stop-loss"
    trail = stack.trail()
    error_records = [r for r in trail if r["event_type"] in ERROR_EVENTS]
    assert len(error_records) >= len(fake.faults.fired), "a fault left no trace in the audit"
    assert fake.faults.pending() == 0, "the scenario did not hit every injected fault"
    text = raw_trail_text(stack.audit_dir)
    assert API_KEY not in text and API_SECRET not in text
    assert "signature" not in text.lower()


def events(stack: Stack, *types: str) -> list[dict[str, Any]]:
    return [r for r in stack.trail() if r["event_type"] in types]


# ------------------------------------------------------------------ recovered faults


@dataclass(frozen=True)
class Case:
    endpoint: str
    faults: tuple[Fault, ...]
    match: dict[str, str]
    expect_events: tuple[str, ...]  # event types that must appear in the trail


RECOVERED = {
    "entry-5xx": Case(ORDER, (Fault.server_error(502),), MARKET, ("api_error", "retry_attempt")),
    "entry-5xx-after-execution": Case(
        ORDER, (Fault.server_error(500, execute=True),), MARKET, ("api_error",)
    ),
    "entry-timeout-not-executed": Case(
        ORDER, (Fault.timeout(TIMEOUT_FAULT),), MARKET, ("api_error", "retry_attempt")
    ),
    "entry-timeout-executed": Case(
        ORDER, (Fault.timeout(TIMEOUT_FAULT, execute=True),), MARKET, ("api_error",)
    ),
    "entry-503-unknown-executed": Case(ORDER, (Fault.unknown_outcome(),), MARKET, ("api_error",)),
    "entry-429-then-418": Case(
        ORDER,
        (Fault.rate_limited(retry_after=3), Fault.banned(retry_after=120)),
        MARKET,
        ("rate_limit", "retry_attempt"),
    ),
    "entry-clock-skew": Case(ORDER, (Fault.clock_skew(),), MARKET, ("retry_attempt",)),
    "tp-5xx": Case(ALGO, (Fault.server_error(502),), TAKE, ("api_error", "retry_attempt")),
    "sl-503-unknown-executed": Case(ALGO, (Fault.unknown_outcome(),), STOP, ("api_error",)),
    "sl-timeout-executed": Case(
        ALGO, (Fault.timeout(TIMEOUT_FAULT, execute=True),), STOP, ("api_error",)
    ),
    "sl-429": Case(ALGO, (Fault.rate_limited(retry_after=1),), STOP, ("rate_limit",)),
    "sl-clock-skew": Case(ALGO, (Fault.clock_skew(),), STOP, ("retry_attempt",)),
}


@pytest.mark.parametrize("name", sorted(RECOVERED))
def test_recovered_fault_places_each_order_exactly_once(stack: Stack, name: str) -> None:
    case = RECOVERED[name]
    for fault in case.faults:
        stack.fake.inject(case.endpoint, fault, match=case.match)

    result = stack.manager.execute(SIGNAL, 0.01, TRACE)

    assert result.ok, result.error_message
    assert [accepted(stack.fake, cid) for cid in (ENTRY, TP, SL, CLOSE)] == [1, 1, 1, 0]
    assert stack.fake.position_amount("BTCUSDT") == Decimal("0.01")
    assert len(stack.fake.open_stop_losses("BTCUSDT")) == 1
    seen = {r["event_type"] for r in stack.trail()}
    assert set(case.expect_events) <= seen
    placed = events(stack, "order_placed")
    assert [r["order_data"]["client_order_id"] for r in placed] == [ENTRY, TP, SL]
    assert_invariants(stack)


def test_rate_limits_wait_what_the_venue_says_without_really_sleeping(stack: Stack) -> None:
    stack.fake.inject(ORDER, Fault.rate_limited(retry_after=3), match=MARKET)
    stack.fake.inject(ORDER, Fault.banned(retry_after=120), match=MARKET)

    assert stack.manager.execute(SIGNAL, 0.01, TRACE).ok

    assert stack.sleeps == [3.0, 120.0]
    limits = events(stack, "rate_limit")
    assert [(r["error"]["status"], r["error"]["retry_after"]) for r in limits] == [
        (429, 3.0),
        (418, 120.0),
    ]


def test_clock_skew_resyncs_the_clock_before_the_retry(stack: Stack) -> None:
    stack.fake.clock_skew_ms = 20_000  # real drift, not an injected answer

    assert stack.manager.execute(SIGNAL, 0.01, TRACE).ok

    retries = events(stack, "retry_attempt")
    assert retries and abs(retries[0]["additional_data"]["clock_offset_ms"] - 20_000) < 1_000
    assert retries[0]["error"]["error_type"] == "ClockSkewError"
    assert_invariants(stack)


def test_unknown_outcome_is_resolved_by_query_not_by_resending(stack: Stack) -> None:
    stack.fake.inject(ORDER, Fault.unknown_outcome(), match=MARKET)

    assert stack.manager.execute(SIGNAL, 0.01, TRACE).ok

    posts = stack.fake.requests_to(ORDER)
    assert [r.params["newClientOrderId"] for r in posts] == [ENTRY]
    queries = stack.fake.requests_to("GET /fapi/v1/order")
    assert [r.params["origClientOrderId"] for r in queries] == [ENTRY]
    resolution = events(stack, "api_error")[0]["error"]
    assert resolution["error_type"] == "UnknownOutcomeError"
    assert resolution["resolution"] == "query_venue_records"
    assert_invariants(stack)


# ------------------------------------------------------------------ rejected entries


@pytest.mark.parametrize(
    ("fault", "code"),
    [(Fault.margin_insufficient(), -2019), (Fault.notional_too_small(), -4164)],
    ids=["-2019", "-4164"],
)
def test_rejected_entry_is_audited_with_the_venue_code_and_nothing_is_left(
    stack: Stack, fault: Fault, code: int
) -> None:
    stack.fake.inject(ORDER, fault, match=MARKET)

    result = stack.manager.execute(SIGNAL, 0.01, TRACE)

    assert not result.ok and not result.position_left_open
    rejected = events(stack, "order_rejected")
    assert len(rejected) == 1
    assert (rejected[0]["error"]["error_code"], rejected[0]["error"]["error_message"]) == (
        code,
        fault.msg,
    )
    assert rejected[0]["order_data"]["order_type"] == "MARKET"
    assert len(stack.fake.requests_to(ORDER)) == 1  # a rejection is not retried
    assert stack.fake.position_amount("BTCUSDT") == 0
    assert_invariants(stack)


# ------------------------------------------------------------------ the stop-loss cannot be placed


@pytest.mark.parametrize(
    "fault",
    [Fault.server_error(502), Fault.margin_insufficient(), Fault.rate_limited(retry_after=1)],
    ids=["5xx-every-time", "rejected", "rate-limited-every-time"],
)
def test_unplaceable_stop_loss_closes_the_position_after_one_retry_cycle(
    stack: Stack, fault: Fault
) -> None:
    stack.fake.inject(ALGO, fault, match=STOP, times=10)

    result = stack.manager.execute(SIGNAL, 0.01, TRACE)

    assert not result.ok and not result.position_left_open
    assert result.protective_close is not None
    assert "protective close" in result.error_message
    assert stack.fake.position_amount("BTCUSDT") == 0
    assert stack.fake.venue.open_algo_orders({"symbol": "BTCUSDT"}) == []  # TP cancelled
    attempts = len(stack.fake.requests_to(ALGO)) - 1  # minus the take-profit
    assert 1 <= attempts <= 3  # bounded: one retry cycle
    close = [r for r in events(stack, "order_placed") if r["operation"] == "close_position"]
    assert close and close[0]["order_data"]["reduce_only"] is True
    assert events(stack, "order_cancelled")
    assert [accepted(stack.fake, cid) for cid in (ENTRY, TP, SL, CLOSE)] == [1, 1, 0, 1]
    stack.fake.faults.clear()
    assert_invariants(stack)


def test_stop_loss_that_went_through_despite_errors_is_not_duplicated(stack: Stack) -> None:
    # 503 "unknown" (executed) then the query itself fails once: resolved on the retried query.
    stack.fake.inject(ALGO, Fault.unknown_outcome(), match=STOP)
    stack.fake.inject("GET /fapi/v1/order", Fault.server_error(502))

    assert stack.manager.execute(SIGNAL, 0.01, TRACE).ok

    assert accepted(stack.fake, SL) == 1
    assert len(stack.fake.open_stop_losses("BTCUSDT")) == 1
    assert_invariants(stack)
