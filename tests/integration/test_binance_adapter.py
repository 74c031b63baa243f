"""BinanceExchange over REST: the real python-binance client against the fake venue."""

from __future__ import annotations

import json
import logging
import re

import pytest
from binance.exceptions import BinanceAPIException

from bot.errors import (
    ClockSkewError,
    RateLimitError,
    TemporaryExchangeError,
    UnknownOutcomeError,
    VenueRejectedError,
)
from bot.exchange.binance import (
    BinanceExchange,
    decimal_text,
    scrub,
    translate_api_exception,
)
from bot.models import MarginType, OrderSide, OrderStatus, OrderType
from tests.fakebinance import API_KEY, API_SECRET, FakeBinance, Fault
from tests.integration.conftest import REQUEST_TIMEOUT, TIMEOUT_FAULT, make_exchange

# ------------------------------------------------------------------ signing and clock


def test_signed_requests_pass_the_venue_signature_and_recv_window_checks(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    balance = exchange.balance()

    assert balance.wallet_balance == 10_000.0
    sent = fake.requests_to("GET /fapi/v3/balance")[-1]
    assert sent.status == 200
    assert {"timestamp", "recvWindow"} <= sent.params.keys()
    assert int(sent.params["recvWindow"]) <= 60_000


def test_a_wrong_secret_is_a_clean_venue_rejection_with_code_1022(fake: FakeBinance) -> None:
    adapter = make_exchange(fake, api_secret="not-the-secret")
    try:
        with pytest.raises(VenueRejectedError) as caught:
            adapter.balance()
    finally:
        adapter.close()

    assert caught.value.code == -1022
    assert caught.value.message == "Signature for this request is not valid."
    assert "not-the-secret" not in str(caught.value)


def test_a_clock_behind_the_venue_is_clock_skew_and_sync_clock_cures_it(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    fake.clock_skew_ms = 30_000  # the venue is 30 s ahead of us: outside recvWindow

    with pytest.raises(ClockSkewError):
        exchange.balance()
    offset = exchange.sync_clock()

    assert 29_000 <= offset <= 31_000
    assert exchange.balance().wallet_balance == 10_000.0


def test_server_time_is_the_venue_clock(fake: FakeBinance, exchange: BinanceExchange) -> None:
    fake.clock_skew_ms = -5_000
    assert abs(exchange.server_time() - fake.now_ms()) < 1_000


def test_requests_go_to_the_configured_base_url_only(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    exchange.server_time()
    exchange.symbol_filters("BTCUSDT")
    assert [r.endpoint for r in fake.requests] == [
        "GET /fapi/v1/time",
        "GET /fapi/v1/exchangeInfo",
    ]


# ------------------------------------------------------------------ configuration


def test_symbol_filters_are_parsed_from_exchange_info(exchange: BinanceExchange) -> None:
    btc = exchange.symbol_filters("BTCUSDT")
    eth = exchange.symbol_filters("ETHUSDT")

    assert (btc.tick_size, btc.step_size, btc.min_qty, btc.min_notional) == (0.1, 0.001, 0.001, 100)
    assert btc.max_qty == 120  # MARKET_LOT_SIZE is tighter than LOT_SIZE
    assert (eth.tick_size, eth.min_notional) == (0.01, 20)


def test_unknown_symbol_filters_are_a_venue_rejection(exchange: BinanceExchange) -> None:
    with pytest.raises(VenueRejectedError) as caught:
        exchange.symbol_filters("NOPEUSDT")
    assert caught.value.code == -1121


def test_leverage_is_set_and_reported(fake: FakeBinance, exchange: BinanceExchange) -> None:
    assert exchange.set_leverage("BTCUSDT", 7) == 7
    assert fake.venue.positions["BTCUSDT"].leverage == 7


def test_invalid_leverage_is_rejected_with_the_venue_text(exchange: BinanceExchange) -> None:
    with pytest.raises(VenueRejectedError) as caught:
        exchange.set_leverage("BTCUSDT", 500)
    assert (caught.value.code, caught.value.message) == (-4028, "Leverage 500 is not valid")


def test_margin_type_change_and_no_need_to_change_are_both_success(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    exchange.set_margin_type("BTCUSDT", MarginType.ISOLATED)
    exchange.set_margin_type("BTCUSDT", MarginType.ISOLATED)  # venue answers -4046

    assert fake.venue.positions["BTCUSDT"].margin_type == "ISOLATED"
    answers = [r.code for r in fake.requests_to("POST /fapi/v1/marginType")]
    assert answers == [None, -4046]


# ------------------------------------------------------------------ orders


def test_market_order_fills_at_the_venue_price(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    result = exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t1-e")

    assert result.status is OrderStatus.FILLED
    assert (result.filled_quantity, result.avg_price) == (0.01, 50_000.0)
    assert result.client_order_id == "t1-e" and result.order_id is not None
    position = exchange.position("BTCUSDT")
    assert (position.amount, position.entry_price) == (0.01, 50_000.0)


def test_reduce_only_market_order_closes_the_position(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    exchange.place_market_order("BTCUSDT", OrderSide.SELL, 0.01, "t2-e")
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t2-x", reduce_only=True)

    assert not exchange.position("BTCUSDT").is_open
    assert fake.requests_to("POST /fapi/v1/order")[-1].params["reduceOnly"] == "true"


def test_take_profit_and_stop_loss_go_through_the_algo_order_api(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t3-e")
    tp = exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.TAKE_PROFIT_MARKET, 52_000.0, "t3-tp"
    )
    sl = exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 49_000.0, "t3-sl"
    )

    assert tp.algo_id is not None and sl.algo_id is not None
    assert (tp.status, sl.status) == (OrderStatus.NEW, OrderStatus.NEW)
    assert (tp.order_type, sl.stop_price) == (OrderType.TAKE_PROFIT_MARKET, 49_000.0)
    sent = fake.requests_to("POST /fapi/v1/algoOrder")
    assert [r.params["type"] for r in sent] == ["TAKE_PROFIT_MARKET", "STOP_MARKET"]
    assert all(r.params["closePosition"] == "true" for r in sent)
    assert all(r.params["algoType"] == "CONDITIONAL" for r in sent)
    assert all("quantity" not in r.params for r in sent)
    assert [r.params["type"] for r in fake.requests_to("POST /fapi/v1/order")] == ["MARKET"]


def test_legacy_order_endpoint_refuses_conditional_types_with_4120(fake: FakeBinance) -> None:
    # What the adapter avoids: the SDK's raw POST /fapi/v1/order with a STOP_MARKET.
    from binance.client import Client

    client = Client(API_KEY, API_SECRET, ping=False)
    client.FUTURES_URL = fake.rest_url + "/fapi"
    with pytest.raises(BinanceAPIException) as caught:
        client._request_futures_api(
            "post",
            "order",
            True,
            data={
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "STOP_MARKET",
                "stopPrice": "49000",
                "closePosition": "true",
            },
        )
    assert caught.value.code == -4120
    assert "Algo Order API" in caught.value.message


def test_stop_loss_triggers_when_the_price_crosses_it(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t4-e")
    exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 49_000.0, "t4-sl"
    )

    fake.set_price("BTCUSDT", "48950")

    assert not exchange.position("BTCUSDT").is_open
    sl = exchange.query_order("BTCUSDT", "t4-sl")
    assert sl is not None and sl.status is OrderStatus.FILLED


def test_query_order_finds_regular_and_algo_orders_and_none_for_unknown(
    exchange: BinanceExchange,
) -> None:
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t5-e")
    exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.TAKE_PROFIT_MARKET, 51_000.0, "t5-tp"
    )

    entry = exchange.query_order("BTCUSDT", "t5-e")
    tp = exchange.query_order("BTCUSDT", "t5-tp")

    assert entry is not None and entry.status is OrderStatus.FILLED and entry.algo_id is None
    assert tp is not None and tp.status is OrderStatus.NEW and tp.algo_id is not None
    assert exchange.query_order("BTCUSDT", "never-sent") is None


def test_cancel_order_cancels_an_algo_order_and_is_none_when_not_open(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t6-e")
    exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 49_000.0, "t6-sl"
    )

    cancelled = exchange.cancel_order("BTCUSDT", "t6-sl")

    assert cancelled is not None and cancelled.status is OrderStatus.CANCELED
    assert fake.open_stop_losses("BTCUSDT") == []
    assert exchange.cancel_order("BTCUSDT", "t6-sl") is None
    assert exchange.cancel_order("BTCUSDT", "t6-e") is None  # filled: not open


def test_cancel_all_cancels_regular_and_algo_open_orders(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    fake.venue.new_order(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.01",
            "price": "40000",
            "timeInForce": "GTC",
            "newClientOrderId": "manual-1",
        }
    )
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t7-e")
    exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 49_000.0, "t7-sl"
    )
    exchange.place_conditional_order(
        "BTCUSDT", OrderSide.SELL, OrderType.TAKE_PROFIT_MARKET, 51_000.0, "t7-tp"
    )

    assert exchange.cancel_all_orders("BTCUSDT") == 3
    assert fake.venue.open_orders({"symbol": "BTCUSDT"}) == []
    assert fake.venue.open_algo_orders({"symbol": "BTCUSDT"}) == []
    assert fake.requests_to("DELETE /fapi/v1/allOpenOrders")
    assert fake.requests_to("DELETE /fapi/v1/algoOpenOrders")


def test_balance_and_flat_position(exchange: BinanceExchange) -> None:
    exchange.set_leverage("ETHUSDT", 5)
    position = exchange.position("ETHUSDT")
    assert (position.amount, position.leverage, position.is_open) == (0.0, 5, False)


def test_prices_and_quantities_are_sent_as_plain_decimals() -> None:
    assert decimal_text(0.001) == "0.001"
    assert decimal_text(50_000.0) == "50000"
    assert decimal_text(1e-7) == "0.0000001"
    assert decimal_text(0.1 + 0.2) == "0.30000000000000004"  # rounding is the caller's job


# ------------------------------------------------------------------ error kinds


def test_rate_limit_429_carries_retry_after(fake: FakeBinance, exchange: BinanceExchange) -> None:
    fake.inject("GET /fapi/v3/balance", Fault.rate_limited(retry_after=7))
    with pytest.raises(RateLimitError) as caught:
        exchange.balance()
    assert (caught.value.retry_after, caught.value.status) == (7.0, 429)


def test_ip_ban_418_is_a_rate_limit_with_retry_after(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    fake.inject("POST /fapi/v1/order", Fault.banned(retry_after=120))
    with pytest.raises(RateLimitError) as caught:
        exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t8-e")
    assert (caught.value.retry_after, caught.value.status) == (120.0, 418)
    assert fake.venue.orders == []


def test_server_error_on_a_read_is_temporary(fake: FakeBinance, exchange: BinanceExchange) -> None:
    fake.inject("GET /fapi/v3/positionRisk", Fault.server_error(502))
    with pytest.raises(TemporaryExchangeError) as caught:
        exchange.position("BTCUSDT")
    assert not isinstance(caught.value, (RateLimitError, ClockSkewError))


def test_timeout_on_a_read_is_temporary(fake: FakeBinance, exchange: BinanceExchange) -> None:
    fake.inject("GET /fapi/v3/balance", Fault.timeout(TIMEOUT_FAULT))
    with pytest.raises(TemporaryExchangeError, match="Timeout"):
        exchange.balance()


@pytest.mark.parametrize(
    "fault",
    [
        Fault.unknown_outcome(),
        Fault.server_error(500, execute=True),
        Fault.timeout(TIMEOUT_FAULT, execute=True),
    ],
    ids=["503-1007", "500", "timeout"],
)
def test_lost_answer_to_an_order_post_is_unknown_outcome_with_the_client_id(
    fake: FakeBinance, exchange: BinanceExchange, fault: Fault
) -> None:
    fake.inject("POST /fapi/v1/order", fault)
    with pytest.raises(UnknownOutcomeError) as caught:
        exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t9-e")

    assert caught.value.client_order_id == "t9-e"
    found = exchange.query_order("BTCUSDT", "t9-e")  # how the caller resolves it
    assert found is not None and found.status is OrderStatus.FILLED


def test_lost_answer_to_an_algo_order_post_is_unknown_outcome(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t10-e")
    fake.inject("POST /fapi/v1/algoOrder", Fault.unknown_outcome())
    with pytest.raises(UnknownOutcomeError):
        exchange.place_conditional_order(
            "BTCUSDT", OrderSide.SELL, OrderType.STOP_MARKET, 49_000.0, "t10-sl"
        )
    found = exchange.query_order("BTCUSDT", "t10-sl")
    assert found is not None and found.algo_id is not None


def test_overloaded_503_on_an_order_post_is_temporary_not_unknown(
    fake: FakeBinance, exchange: BinanceExchange
) -> None:
    fake.inject(
        "POST /fapi/v1/order",
        Fault.error(
            -1008,
            "Server is currently overloaded with other requests. "
            "Please try again in a few minutes.",
            status=503,
        ),
    )
    with pytest.raises(TemporaryExchangeError):
        exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t11-e")


@pytest.mark.parametrize(
    ("fault", "code"),
    [(Fault.margin_insufficient(), -2019), (Fault.notional_too_small(), -4164)],
)
def test_venue_rejections_keep_code_and_message_unchanged(
    fake: FakeBinance, exchange: BinanceExchange, fault: Fault, code: int
) -> None:
    fake.inject("POST /fapi/v1/order", fault)
    with pytest.raises(VenueRejectedError) as caught:
        exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t12-e")
    assert (caught.value.code, caught.value.message) == (code, fault.msg)


def test_real_venue_checks_reject_too_small_and_unaffordable_orders(
    exchange: BinanceExchange,
) -> None:
    with pytest.raises(VenueRejectedError) as small:
        exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.001, "t13-e")
    with pytest.raises(VenueRejectedError) as huge:
        exchange.place_market_order("BTCUSDT", OrderSide.BUY, 100.0, "t14-e")
    assert (small.value.code, huge.value.code) == (-4164, -2019)


def test_connection_refused_is_temporary_even_for_an_order(fake: FakeBinance) -> None:
    adapter = BinanceExchange(
        api_key=API_KEY,
        api_secret=API_SECRET,
        base_url="http://127.0.0.1:9",  # discard port: nothing listens
        ws_url=fake.ws_url,
        request_timeout=REQUEST_TIMEOUT,
    )
    try:
        with pytest.raises(TemporaryExchangeError) as caught:
            adapter.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t15-e")
    finally:
        adapter.close()
    assert not isinstance(caught.value, UnknownOutcomeError)
    assert "signature=" not in str(caught.value) or "[REDACTED]" in str(caught.value)
    assert API_SECRET not in str(caught.value)


# ------------------------------------------------------------------ the mapping table itself


class _Answer:
    def __init__(self, text: str, headers: dict[str, str]) -> None:
        self.text = text
        self.headers = headers


def _api_error(status: int, code: int, msg: str, **headers: str) -> BinanceAPIException:
    body = json.dumps({"code": code, "msg": msg})
    return BinanceAPIException(_Answer(body, headers), status, body)


@pytest.mark.parametrize(
    ("status", "code", "msg", "order_post", "kind"),
    [
        (429, -1003, "Too many requests", False, RateLimitError),
        (418, -1003, "IP banned", True, RateLimitError),
        (400, -1021, "Timestamp outside recvWindow", True, ClockSkewError),
        (503, -1007, "Timeout waiting for response", True, UnknownOutcomeError),
        (503, -1007, "Timeout waiting for response", False, TemporaryExchangeError),
        (400, -1006, "Unexpected response from the message bus", True, UnknownOutcomeError),
        (408, 0, "Request Timeout", True, UnknownOutcomeError),
        (502, 0, "Bad Gateway", True, UnknownOutcomeError),
        (502, 0, "Bad Gateway", False, TemporaryExchangeError),
        (503, -1008, "Server is currently overloaded", True, TemporaryExchangeError),
        (503, 0, "Service Unavailable.", True, TemporaryExchangeError),
        (
            500,
            -1001,
            "Internal error; unable to process your request.",
            True,
            TemporaryExchangeError,
        ),
        (400, -2019, "Margin is insufficient.", True, VenueRejectedError),
        (401, -2015, "Invalid API-key, IP, or permissions for action", False, VenueRejectedError),
        (400, -4120, "Order type not supported for this endpoint.", True, VenueRejectedError),
    ],
)
def test_every_venue_answer_maps_to_one_error_kind(
    status: int, code: int, msg: str, order_post: bool, kind: type[Exception]
) -> None:
    error = translate_api_exception(
        _api_error(status, code, msg, **{"Retry-After": "5"}),
        "op",
        order_post=order_post,
        client_order_id="cid-1",
    )
    assert type(error) is kind
    if isinstance(error, VenueRejectedError):
        assert (error.code, error.message) == (code, msg)
    if isinstance(error, RateLimitError):
        assert (error.retry_after, error.status) == (5.0, status)
    if isinstance(error, UnknownOutcomeError):
        assert error.client_order_id == "cid-1"


def test_scrub_removes_signatures_and_secrets() -> None:
    text = f"GET /fapi/v3/balance?timestamp=1&signature=abc123 key={API_KEY} s={API_SECRET}"
    clean = scrub(text, (API_KEY, API_SECRET))
    assert "abc123" not in clean and API_KEY not in clean and API_SECRET not in clean


def test_debug_logs_of_signed_requests_carry_no_signature_key_or_secret(
    fake: FakeBinance, exchange: BinanceExchange, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        exchange.balance()
        exchange.place_market_order("BTCUSDT", OrderSide.BUY, 0.01, "t16-e")

    assert "/fapi/v1/order" in caplog.text  # urllib3 did log the request lines
    assert not re.search(r"signature=[0-9a-f]{16}", caplog.text)
    assert API_KEY not in caplog.text and API_SECRET not in caplog.text
