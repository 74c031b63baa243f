"""The one table of settings: every key's name, type, default and rule, worded for people.

Loading (``bot.config.loading``) checks every value against :data:`KEYS` and the
typed view (``bot.config.settings``) names exactly these keys, so a key is
declared here once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.durations import is_duration, parse_duration

BINANCE_INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
)  # fmt: skip
_BOT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: dotted name, type, default, and the rule with its human wording."""

    name: str
    kind: type
    default: Any
    allowed: str
    valid: Callable[[Any], bool] = lambda _: True


def _between(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[Any], bool]:
    return lambda v: (lo < v if lo_open else lo <= v) and v <= hi


def _above_zero(hi: float) -> Callable[[Any], bool]:
    return _between(0, hi, lo_open=True)


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _optional(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """Off (``None``) unless set; when set, ``rule`` applies."""
    return lambda v: v is None or rule(v)


def _is_duration(text: str) -> bool:
    return is_duration(text) and parse_duration(text) > 0


def _all(rule: Callable[[str], bool], *, max_items: int = 50) -> Callable[[Any], bool]:
    return lambda v: 0 < len(v) <= max_items and len(set(v)) == len(v) and all(map(rule, v))


KEYS: tuple[Key, ...] = (
    Key("mode", str, "paper", "paper, testnet, live", _one_of("paper", "testnet", "live")),
    Key("market", str, "", "sim, replay, binance", _one_of("sim", "replay", "binance")),
    Key("data", list, [], "list of kline CSV/ZIP file paths", lambda v: True),
    Key("seed", int, 42, "integer >= 0", lambda v: v >= 0),
    Key("speed", float, 60.0, "number 0..100000 (0: as fast as possible)", _between(0, 1e5)),
    Key("audit_dir", str, "logs/audit", "a directory path", lambda v: bool(v.strip())),
    Key(
        "bot.id",
        str,
        "bot",
        "1..64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        lambda v: bool(_BOT_ID_RE.match(v)),
    ),
    Key(
        "symbols",
        list,
        ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
        "1..50 distinct upper-case symbols like BTCUSDT",
        _all(lambda s: bool(_SYMBOL_RE.match(s))),
    ),
    Key(
        "intervals",
        list,
        ["1m", "5m"],
        "distinct Binance intervals: " + ", ".join(BINANCE_INTERVALS),
        _all(lambda s: s in BINANCE_INTERVALS),
    ),
    Key("backfill", int, 100, "integer 0..1500 (candles per interval)", _between(0, 1500)),
    Key("heartbeat_seconds", float, 60.0, "number 0.1..3600", _between(0.1, 3600)),
    Key(
        "log_level",
        str,
        "INFO",
        "DEBUG, INFO, WARNING, ERROR",
        _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Key("risk.risk_percent", float, 1.0, "number > 0 and <= 10", _above_zero(10)),
    Key(
        "risk.max_position_percent",
        float,
        20.0,
        "number > 0 and <= 100 (margin as % of balance)",
        _above_zero(100),
    ),
    Key("risk.leverage", int, 10, "integer 1..125", _between(1, 125)),
    Key("risk.margin_type", str, "ISOLATED", "ISOLATED, CROSSED", _one_of("ISOLATED", "CROSSED")),
    Key("strategy.name", str, "ema_cross", "ema_cross", _one_of("ema_cross")),
    Key("strategy.fast_period", int, 3, "integer 1..200", _between(1, 200)),
    Key("strategy.slow_period", int, 8, "integer 2..500, above fast_period", _between(2, 500)),
    Key("strategy.atr_period", int, 14, "integer 1..200", _between(1, 200)),
    Key("strategy.take_profit_atr", float, 4.0, "number > 0 and <= 50", _above_zero(50)),
    Key("strategy.stop_loss_atr", float, 2.0, "number > 0 and <= 50", _above_zero(50)),
    Key("paper.initial_balance", float, 10_000.0, "number > 0", lambda v: v > 0),
    Key("paper.fee_rate", float, 0.0004, "number 0..0.01 (0.0004 = 0.04%)", _between(0, 0.01)),
    Key("paper.slippage_bps", float, 2.0, "number 0..500", _between(0, 500)),
    Key("paper.venue_faults", float, 0.0, "number 0..0.5 (share of orders)", _between(0, 0.5)),
    Key(
        "sim.volatility", float, 0.0015, "number > 0 and <= 0.05 (per 1m candle)", _above_zero(0.05)
    ),
    Key("audit.fsync_interval_seconds", float, 1.0, "number 0.01..60", _between(0.01, 60)),
    Key("audit.checkpoint_interval_seconds", float, 60.0, "number 1..86400", _between(1, 86400)),
    Key("execution.max_attempts", int, 4, "integer 1..10", _between(1, 10)),
    Key("execution.backoff_base_seconds", float, 0.5, "number 0..60", _between(0, 60)),
    Key("execution.backoff_max_seconds", float, 8.0, "number 0..300", _between(0, 300)),
    Key("execution.protection_check_seconds", float, 10.0, "number 0.1..300", _between(0.1, 300)),
    Key("execution.unknown_outcome_seconds", float, 30.0, "number 0..600", _between(0, 600)),
    Key(
        "execution.deadman_seconds",
        float,
        0.0,
        "0 (off) or a number 5..3600 (countdownCancelAll, testnet/live)",
        lambda v: v == 0 or 5 <= v <= 3600,
    ),
    # SPEC §11 protections and pre-trade limits: each off unless set
    Key(
        "protections.daily_loss_limit_percent",
        float,
        None,
        "number > 0 and <= 100 (% of the day's starting balance)",
        _optional(_above_zero(100)),
    ),
    Key(
        "protections.max_drawdown_percent",
        float,
        None,
        "number > 0 and <= 100 (% below the equity peak)",
        _optional(_above_zero(100)),
    ),
    Key(
        "protections.stoploss_guard.count",
        int,
        None,
        "integer 1..1000 (stop-loss exits on one symbol)",
        _optional(_between(1, 1000)),
    ),
    Key(
        "protections.stoploss_guard.window",
        str,
        None,
        "a duration like '30m', '4h'",
        _optional(_is_duration),
    ),
    Key(
        "protections.stoploss_guard.lock",
        str,
        None,
        "a duration like '1h'",
        _optional(_is_duration),
    ),
    Key(
        "protections.cooldown",
        str,
        None,
        "a duration like '5m' (no entry on a symbol after an exit)",
        _optional(_is_duration),
    ),
    Key(
        "limits.max_order_notional",
        float,
        None,
        "number > 0 (quote currency, e.g. USDT)",
        _optional(lambda v: v > 0),
    ),
    Key(
        "limits.price_collar_percent",
        float,
        None,
        "number > 0 and <= 100 (entry vs last price)",
        _optional(_above_zero(100)),
    ),
    Key(
        "limits.max_orders_per_minute",
        int,
        None,
        "integer 3..100000 (an entry sends 3 orders)",
        _optional(_between(3, 100_000)),
    ),
)
KEYS_BY_NAME = {k.name: k for k in KEYS}
SECTIONS = sorted({k.name.split(".")[0] for k in KEYS if "." in k.name})
