"""Settings from defaults, a TOML file, the environment and the command line.

The only reader of ``os.environ`` in the bot. Precedence, lowest first:
built-in defaults, ``--config FILE`` (TOML), environment (``AUDIT_DIR``, ``BOT_ID``),
command-line flags. Every value is checked against one table of keys
(:data:`KEYS`) before anything trades; a bad one raises
:class:`~bot.errors.ConfigError` naming the key and what is allowed, and an
unknown key is refused rather than ignored (a typo must not silently fall
back to a default). Code reads the validated values typed, one dataclass per
section (``settings.risk.leverage``). Secrets come only from the environment
and are kept out of ``repr`` and of :meth:`Settings.summary`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from bot.errors import ConfigError

BINANCE_INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
)  # fmt: skip
_BOT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
LIVE_CONFIRMATION_FLAG = "--i-understand-live-trading"


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


_DURATION_RE = re.compile(r"^(?:\d+[smhd])+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``15m``, ``1h30m`` (as alert rules write them)."""
    if not _DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a duration")
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"(\d+)([smhd])", text)))


def _is_duration(text: str) -> bool:
    return bool(_DURATION_RE.match(text)) and duration_seconds(text) > 0


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
_BY_NAME = {k.name: k for k in KEYS}
_SECTIONS = sorted({k.name.split(".")[0] for k in KEYS if "." in k.name})


@dataclass(frozen=True, slots=True)
class Secrets:
    """Values that must never reach a log or the audit trail."""

    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)
    audit_hmac_key: str = field(default="", repr=False)

    def values(self) -> tuple[str, ...]:
        return tuple(v for v in (self.api_key, self.api_secret, self.audit_hmac_key) if v)


# Typed views of the validated values, one dataclass per [section]: code reads
# ``settings.risk.leverage``; KEYS stays the one table of names, defaults and rules
# (tests/bot/test_config.py checks that both name the same keys).


@dataclass(frozen=True, slots=True)
class BotSection:
    id: str


@dataclass(frozen=True, slots=True)
class RiskSection:
    risk_percent: float
    max_position_percent: float
    leverage: int
    margin_type: str


@dataclass(frozen=True, slots=True)
class StrategySection:
    name: str
    fast_period: int
    slow_period: int
    atr_period: int
    take_profit_atr: float
    stop_loss_atr: float


@dataclass(frozen=True, slots=True)
class PaperSection:
    initial_balance: float
    fee_rate: float
    slippage_bps: float
    venue_faults: float


@dataclass(frozen=True, slots=True)
class SimSection:
    volatility: float


@dataclass(frozen=True, slots=True)
class AuditSection:
    fsync_interval_seconds: float
    checkpoint_interval_seconds: float


@dataclass(frozen=True, slots=True)
class ExecutionSection:
    max_attempts: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    protection_check_seconds: float
    unknown_outcome_seconds: float
    deadman_seconds: float


@dataclass(frozen=True, slots=True)
class StoplossGuardSection:
    count: int
    window: str  # a duration; duration_seconds() reads it
    lock: str


@dataclass(frozen=True, slots=True)
class ProtectionsSection:
    daily_loss_limit_percent: float | None
    max_drawdown_percent: float | None
    stoploss_guard: StoplossGuardSection | None  # None: all three keys unset
    cooldown: str | None


@dataclass(frozen=True, slots=True)
class LimitsSection:
    max_order_notional: float | None
    price_collar_percent: float | None
    max_orders_per_minute: int | None


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings, typed. ``values`` holds every key of :data:`KEYS` by dotted
    name, as ``bot_started`` records them."""

    mode: str
    market: str
    data: list[str]
    seed: int
    speed: float
    audit_dir: str
    symbols: list[str]
    intervals: list[str]
    backfill: int
    heartbeat_seconds: float
    log_level: str
    bot: BotSection
    risk: RiskSection
    strategy: StrategySection
    paper: PaperSection
    sim: SimSection
    audit: AuditSection
    execution: ExecutionSection
    protections: ProtectionsSection
    limits: LimitsSection
    values: Mapping[str, Any]
    secrets: Secrets
    futures_url: str | None = None
    ws_url: str | None = None
    config_file: str | None = None
    live_confirmed: bool = False

    def summary(self) -> dict[str, Any]:
        """What ``bot_started`` records: every setting, no secret."""
        return {
            **self.values,
            "config_file": self.config_file,
            "futures_url": self.futures_url,
            "ws_url": self.ws_url,
            "has_binance_credentials": bool(self.secrets.api_key and self.secrets.api_secret),
            "audit_keyed": bool(self.secrets.audit_hmac_key),
        }


_NOT_KEYS = {"values", "secrets", "futures_url", "ws_url", "config_file", "live_confirmed"}


def _section_class(hint: Any) -> type | None:
    """The section dataclass a field holds (``X`` or ``X | None``), else None."""
    for candidate in (hint, *getattr(hint, "__args__", ())):
        if isinstance(candidate, type) and is_dataclass(candidate):
            return candidate
    return None


def key_paths(cls: type = Settings, prefix: str = "") -> list[str]:
    """The dotted key names the typed view of ``cls`` holds (``risk.leverage``, ...)."""
    hints = get_type_hints(cls)
    names: list[str] = []
    for f in fields(cls):
        if not prefix and f.name in _NOT_KEYS:
            continue
        section = _section_class(hints[f.name])
        names += key_paths(section, f"{prefix}{f.name}.") if section else [prefix + f.name]
    return names


def _typed(cls: type, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Constructor arguments of ``cls`` from the validated values; a nested section whose
    keys are all unset is None."""
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        if not prefix and f.name in _NOT_KEYS:
            continue
        section = _section_class(hints[f.name])
        if section is None:
            out[f.name] = values[prefix + f.name]
            continue
        inner = _typed(section, values, f"{prefix}{f.name}.")
        optional = type(None) in getattr(hints[f.name], "__args__", ())
        unset = all(v is None for v in inner.values())
        out[f.name] = None if optional and unset else section(**inner)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bot",
        description="Binance USD-M futures bot with a hash-chained audit trail.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML settings file (see config.example.toml)")
    p.add_argument("--mode", help="paper (default), testnet or live")
    p.add_argument("--market", help="sim (paper default), replay or binance (testnet/live default)")
    p.add_argument("--data", action="append", metavar="FILE", help="kline CSV for --market replay")
    p.add_argument("--seed", help="sim: random seed (same seed, same prices)")
    p.add_argument("--speed", help="sim/replay: simulated seconds per real second (0: max)")
    p.add_argument("--audit-dir", dest="audit_dir", help="audit trail directory (env AUDIT_DIR)")
    p.add_argument("--bot-id", dest="bot.id", help="the bot's name in audit records (env BOT_ID)")
    p.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    p.add_argument("--intervals", help="comma-separated, e.g. 1m,5m")
    p.add_argument("--backfill", help="candles per interval loaded before streaming")
    p.add_argument("--heartbeat-seconds", dest="heartbeat_seconds", help="heartbeat period")
    p.add_argument("--leverage", dest="risk.leverage", help="leverage per symbol")
    p.add_argument("--risk-percent", dest="risk.risk_percent", help="%% of balance risked")
    p.add_argument(
        "--venue-faults",
        dest="paper.venue_faults",
        help="paper: share of orders the venue refuses or fails (demo weather; default 0)",
    )
    p.add_argument(
        "--max-position-percent", dest="risk.max_position_percent", help="margin cap, %%"
    )
    p.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument(
        LIVE_CONFIRMATION_FLAG,
        dest="live_confirmed",
        action="store_true",
        help="required with --mode live: real orders, real money",
    )
    return p


def _flatten(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, dict):
            if name not in _SECTIONS:
                raise ConfigError(
                    f"{name}: unknown section in {source} (allowed: {', '.join(_SECTIONS)})"
                )
            for sub, inner in value.items():
                if isinstance(inner, dict):  # a table inside a section: protections.stoploss_guard
                    for leaf, item in inner.items():
                        flat[f"{name}.{sub}.{leaf}"] = item
                else:
                    flat[f"{name}.{sub}"] = inner
        else:
            flat[name] = value
    for name in flat:
        if name not in _BY_NAME:
            section = name.rpartition(".")[0]
            known = [k.name for k in KEYS if k.name.rpartition(".")[0] == section]
            raise ConfigError(f"{name}: unknown key in {source} (allowed: {', '.join(known)})")
    return flat


def _coerce(key: Key, value: Any) -> Any:
    """Type-check one value (TOML value or command-line string) for ``key``."""
    wrong = ConfigError(f"{key.name}: {value!r} is not allowed (allowed: {key.allowed})")
    if key.kind is list:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong
        return value
    if isinstance(value, bool):
        raise wrong
    if key.kind is int:
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if isinstance(value, int):
            return value
        raise wrong
    if key.kind is float:
        try:
            number = float(value) if isinstance(value, (str, int, float)) else math.nan
        except ValueError:
            raise wrong from None
        if not math.isfinite(number):
            raise wrong
        return number
    if not isinstance(value, str):
        raise wrong
    return value


def _check_url(name: str, url: str, schemes: tuple[str, ...], example: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in schemes or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"{name}: {url!r} is not allowed (allowed: scheme and host only, e.g. {example})"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{name}: {url!r} must not have a query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


def default_audit_dir(environ: Mapping[str, str] | None = None) -> str:
    """The audit directory when none is given: ``AUDIT_DIR`` or ``logs/audit``."""
    env = os.environ if environ is None else environ
    return env.get("AUDIT_DIR") or str(_BY_NAME["audit_dir"].default)


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Parse, merge and validate everything. Raises ConfigError; argparse exits on bad flags."""
    env = os.environ if environ is None else environ
    args = vars(_parser().parse_args(argv))
    config_file = args.pop("config")
    live_confirmed = bool(args.pop("live_confirmed"))

    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                layers.append((config_file, _flatten(tomllib.load(fh), config_file)))
        except OSError as exc:
            raise ConfigError(f"config: cannot read {config_file} ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config: {config_file} is not valid TOML ({exc})") from None
    if env.get("AUDIT_DIR"):
        layers.append(("environment", {"audit_dir": env["AUDIT_DIR"]}))
    if env.get("BOT_ID"):
        layers.append(("environment", {"bot.id": env["BOT_ID"]}))
    layers.append(("command line", {k: v for k, v in args.items() if v is not None}))

    values: dict[str, Any] = {k.name: k.default for k in KEYS}
    explicit: set[str] = set()
    for _source, layer in layers:
        for name, raw in layer.items():
            values[name] = _coerce(_BY_NAME[name], raw)
            explicit.add(name)
    if "market" not in explicit:
        values["market"] = "sim" if values["mode"] == "paper" else "binance"
    for key in KEYS:
        if not key.valid(values[key.name]):
            raise ConfigError(
                f"{key.name}: {values[key.name]!r} is not allowed (allowed: {key.allowed})"
            )
    _check_combinations(values, live_confirmed)

    secrets = Secrets(
        api_key=env.get("BINANCE_API_KEY", ""),
        api_secret=env.get("BINANCE_API_SECRET", ""),
        audit_hmac_key=env.get("AUDIT_HMAC_KEY", ""),
    )
    if values["mode"] != "paper":
        for name, value in (
            ("BINANCE_API_KEY", secrets.api_key),
            ("BINANCE_API_SECRET", secrets.api_secret),
        ):
            if not value:
                raise ConfigError(f"{name}: required in the environment for mode {values['mode']}")
    futures_url = env.get("BINANCE_FUTURES_URL") or None
    ws_url = env.get("BINANCE_WS_URL") or None
    return Settings(
        **_typed(Settings, values, ""),
        values=values,
        secrets=secrets,
        futures_url=futures_url
        and _check_url(
            "BINANCE_FUTURES_URL",
            futures_url,
            ("http", "https"),
            "https://testnet.binancefuture.com",
        ),
        ws_url=ws_url
        and _check_url("BINANCE_WS_URL", ws_url, ("ws", "wss"), "wss://fstream.binancefuture.com"),
        config_file=config_file,
        live_confirmed=live_confirmed,
    )


def _check_combinations(values: Mapping[str, Any], live_confirmed: bool) -> None:
    mode, market = values["mode"], values["market"]
    if mode == "live" and not live_confirmed:
        raise ConfigError(
            f"mode: 'live' places real orders; it needs the {LIVE_CONFIRMATION_FLAG} flag"
        )
    if mode != "paper" and market != "binance":
        raise ConfigError(
            f"market: {market!r} is not allowed with mode {mode!r} (allowed: binance)"
        )
    if market == "replay" and not values["data"]:
        raise ConfigError("data: required with market 'replay' (allowed: kline CSV/ZIP files)")
    if values["data"] and market != "replay":
        raise ConfigError(f"data: only used with market 'replay' (market is {market!r})")
    if values["strategy.slow_period"] <= values["strategy.fast_period"]:
        raise ConfigError(
            f"strategy.slow_period: {values['strategy.slow_period']} is not allowed "
            f"(allowed: above strategy.fast_period, {values['strategy.fast_period']})"
        )
    guard = [f"protections.stoploss_guard.{k}" for k in ("count", "window", "lock")]
    if any(values[k] is not None for k in guard) and any(values[k] is None for k in guard):
        missing = ", ".join(k for k in guard if values[k] is None)
        raise ConfigError(
            f"protections.stoploss_guard: needs count, window and lock ({missing} unset)"
        )
    if values["execution.backoff_max_seconds"] < values["execution.backoff_base_seconds"]:
        raise ConfigError(
            "execution.backoff_max_seconds: must be >= execution.backoff_base_seconds"
        )
