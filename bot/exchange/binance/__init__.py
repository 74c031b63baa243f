"""Binance USD-M futures through python-binance: the only package (with
``bot/market/binance.py``) that imports ``binance``.

Split the way NautilusTrader splits its adapters, at our size:

* :mod:`.errors` — SDK, ``requests`` and venue errors turned into
  :mod:`bot.errors` kinds in one place (``translate_errors``), and the
  scrubbing of signatures and secrets;
* :mod:`.parsing` — venue JSON to :mod:`bot.models` values; pure and
  table-tested;
* :mod:`.streams` — the supervised websockets, shared with the market feed;
* :mod:`.adapter` — :class:`BinanceExchange`, the exchange port, with the SDK
  client injected or built from keys and URLs.
"""

from bot.exchange.binance.adapter import (
    LIVE_REST_URL,
    LIVE_WS_URL,
    TESTNET_REST_URL,
    TESTNET_WS_URL,
    BinanceExchange,
)
from bot.exchange.binance.errors import scrub, translate_api_exception, translate_errors
from bot.exchange.binance.parsing import (
    UserEventMapper,
    candle_from_event,
    decimal_text,
    symbol_filters,
)
from bot.exchange.binance.streams import StreamSpec, StreamSupervisor, closed_klines

__all__ = [
    "LIVE_REST_URL",
    "LIVE_WS_URL",
    "TESTNET_REST_URL",
    "TESTNET_WS_URL",
    "BinanceExchange",
    "StreamSpec",
    "StreamSupervisor",
    "UserEventMapper",
    "candle_from_event",
    "closed_klines",
    "decimal_text",
    "scrub",
    "symbol_filters",
    "translate_api_exception",
    "translate_errors",
]
