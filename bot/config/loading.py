"""Loading: defaults, a TOML file, the environment and the command line, merged and checked.

The only reader of ``os.environ`` in the bot. Every value is coerced and checked
against :data:`~bot.config.keys.KEYS`, then the combinations of values; a bad one
raises :class:`~bot.errors.ConfigError` naming the key and what is allowed, and an
unknown key or section is refused rather than ignored (a typo must not silently
fall back to a default). Secrets and the Binance endpoint URLs come only from the
environment.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from bot.config.keys import KEYS, KEYS_BY_NAME, SECTIONS, Key
from bot.config.settings import Secrets, Settings, typed_arguments
from bot.errors import ConfigError

LIVE_CONFIRMATION_FLAG = "--i-understand-live-trading"


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
            if name not in SECTIONS:
                raise ConfigError(
                    f"{name}: unknown section in {source} (allowed: {', '.join(SECTIONS)})"
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
        if name not in KEYS_BY_NAME:
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
    return env.get("AUDIT_DIR") or str(KEYS_BY_NAME["audit_dir"].default)


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
            values[name] = _coerce(KEYS_BY_NAME[name], raw)
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
        **typed_arguments(Settings, values),
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
