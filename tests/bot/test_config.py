"""Settings: precedence, and bad values refused with the key and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import KEYS, key_paths, load_settings
from bot.errors import ConfigError


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bot.toml"
    path.write_text(text)
    return str(path)


def test_defaults_are_paper_on_a_simulated_market() -> None:
    settings = load_settings([], {})
    assert settings.mode == "paper"
    assert settings.market == "sim"
    assert settings.audit_dir == "logs/audit"
    assert settings.intervals == ["1m", "5m"]
    assert settings.backfill == 100
    assert settings.heartbeat_seconds == 60.0


def test_the_example_config_is_valid_and_states_the_defaults() -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    settings = load_settings(["--config", str(example)], {})
    defaults = {k.name: k.default for k in KEYS} | {"market": "sim"}
    assert dict(settings.values) == defaults


def test_the_procfile_demo_bot_is_paper_with_valid_demo_settings() -> None:
    """`make run`'s bot: its flags and config.demo.toml load, and stay on paper."""
    root = Path(__file__).resolve().parents[2]
    line = next(x for x in (root / "Procfile").read_text().splitlines() if x.startswith("bot:"))
    argv = line.split("python -m bot", 1)[1].split()
    assert argv[:2] == ["--config", "config.demo.toml"]
    argv[1] = str(root / argv[1])
    settings = load_settings(argv, {})
    assert (settings.mode, settings.market) == ("paper", "sim")
    assert settings.paper.venue_faults > 0
    assert settings.protections.cooldown is not None
    assert load_settings([], {}).protections.cooldown is None  # the bot's own default: off


def test_flags_beat_environment_beats_file(tmp_path: Path) -> None:
    config = write(tmp_path, 'audit_dir = "from-file"\nseed = 7\n[risk]\nleverage = 3\n')
    env = {"AUDIT_DIR": "from-env"}
    assert load_settings(["--config", config], env).audit_dir == "from-env"
    settings = load_settings(
        ["--config", config, "--audit-dir", "from-flag", "--leverage", "4"], env
    )
    assert settings.audit_dir == "from-flag"
    assert settings.risk.leverage == 4
    assert settings.seed == 7


def test_symbols_and_intervals_are_comma_separated_on_the_command_line() -> None:
    settings = load_settings(["--symbols", "BTCUSDT, ETHUSDT", "--intervals", "1m,15m"], {})
    assert settings.symbols == ["BTCUSDT", "ETHUSDT"]
    assert settings.intervals == ["1m", "15m"]


@pytest.mark.parametrize(
    ("argv", "toml", "named"),
    [
        (
            [],
            "[risk]\nleverage = 200\n",
            "risk.leverage: 200 is not allowed (allowed: integer 1..125",
        ),
        ([], "[risk]\nlevrage = 5\n", "risk.levrage: unknown key"),
        ([], "colour = 'red'\n", "colour: unknown key"),
        ([], "[riks]\nleverage = 5\n", "riks: unknown section"),
        ([], "[risk]\nleverage = 'ten'\n", "risk.leverage: 'ten' is not allowed"),
        ([], "[risk]\nmargin_type = 'CROSS'\n", "(allowed: ISOLATED, CROSSED)"),
        ([], "[strategy]\nfast_period = 9\nslow_period = 8\n", "strategy.slow_period"),
        ([], "leverage = = 3\n", "is not valid TOML"),
        ([], "[audit]\nfsync_interval_seconds = 0\n", "audit.fsync_interval_seconds: 0"),
        (["--mode", "demo"], "", "mode: 'demo' is not allowed (allowed: paper, testnet, live)"),
        (["--symbols", "btcusdt"], "", "symbols: ['btcusdt'] is not allowed"),
        (["--intervals", "2m"], "", "intervals: ['2m'] is not allowed"),
        (["--speed", "-1"], "", "speed: -1.0 is not allowed"),
        (["--risk-percent", "0"], "", "risk.risk_percent: 0.0 is not allowed"),
        (["--max-position-percent", "101"], "", "risk.max_position_percent: 101.0"),
        (["--seed", "1.5"], "", "seed: '1.5' is not allowed"),
        (["--market", "replay"], "", "data: required with market 'replay'"),
        (["--mode", "live"], "", "--i-understand-live-trading"),
    ],
)
def test_bad_values_are_refused_naming_the_key(
    tmp_path: Path, argv: list[str], toml: str, named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(["--config", write(tmp_path, toml), *argv], {})
    assert named in str(raised.value)


def test_testnet_needs_keys_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="BINANCE_API_KEY: required"):
        load_settings(["--mode", "testnet"], {})
    settings = load_settings(
        ["--mode", "testnet"], {"BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}
    )
    assert settings.market == "binance"


def test_live_with_confirmation_and_keys_is_accepted() -> None:
    env = {"BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}
    settings = load_settings(["--mode", "live", "--i-understand-live-trading"], env)
    assert settings.mode == "live" and settings.live_confirmed


def test_trading_real_orders_on_simulated_prices_is_refused() -> None:
    env = {"BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}
    with pytest.raises(ConfigError, match="market: 'sim' is not allowed with mode 'testnet'"):
        load_settings(["--mode", "testnet", "--market", "sim"], env)


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        (
            "BINANCE_FUTURES_URL",
            "https://testnet.binancefuture.com/",
            "https://testnet.binancefuture.com",
        ),
        ("BINANCE_FUTURES_URL", "http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("BINANCE_WS_URL", "wss://fstream.binancefuture.com", "wss://fstream.binancefuture.com"),
        ("BINANCE_FUTURES_URL", "https://host/fapi/v1", None),
        ("BINANCE_WS_URL", "https://fstream.binance.com", None),
    ],
)
def test_venue_urls_are_scheme_and_host_only(name: str, value: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(ConfigError, match=name):
            load_settings([], {name: value})
        return
    settings = load_settings([], {name: value})
    got = settings.futures_url if name == "BINANCE_FUTURES_URL" else settings.ws_url
    assert got == ok


def test_secrets_stay_out_of_repr_and_summary() -> None:
    env = {
        "BINANCE_API_KEY": "KEY-abc123",
        "BINANCE_API_SECRET": "SECRET-xyz789",
        "AUDIT_HMAC_KEY": "HMAC-qqq",
    }
    settings = load_settings([], env)
    shown = repr(settings) + repr(settings.summary())
    for secret in env.values():
        assert secret not in shown
    assert settings.summary()["has_binance_credentials"] is True
    assert settings.secrets.values() == ("KEY-abc123", "SECRET-xyz789", "HMAC-qqq")


def test_protections_and_limits_are_off_unless_set() -> None:
    settings = load_settings([], {})
    names = [k.name for k in KEYS if k.name.startswith(("protections.", "limits."))]
    assert len(names) == 9
    assert all(settings.values[name] is None for name in names)
    assert settings.protections.stoploss_guard is None


def test_protections_and_limits_are_read_from_their_sections(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "[protections]\ndaily_loss_limit_percent = 3\ncooldown = '5m'\n"
        "[protections.stoploss_guard]\ncount = 3\nwindow = '1h'\nlock = '2h'\n"
        "[limits]\nmax_order_notional = 5000\nmax_orders_per_minute = 30\n",
    )
    settings = load_settings(["--config", config], {})
    assert settings.protections.daily_loss_limit_percent == 3.0
    assert settings.protections.cooldown == "5m"
    assert settings.protections.stoploss_guard is not None
    assert settings.protections.stoploss_guard.window == "1h"
    assert settings.limits.max_orders_per_minute == 30


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        (
            "[protections]\ndaily_loss_limit_percent = 0\n",
            "protections.daily_loss_limit_percent: 0",
        ),
        ("[protections]\nmax_drawdown_percent = 150\n", "protections.max_drawdown_percent: 150"),
        ("[protections]\ncooldown = '5 minutes'\n", "protections.cooldown: '5 minutes'"),
        ("[protections]\ncooldown = '0s'\n", "protections.cooldown: '0s' is not allowed"),
        ("[protections]\ncooldwn = '5m'\n", "protections.cooldwn: unknown key"),
        (
            "[protections.stoploss_guard]\ncount = 3\nwindow = '1h'\n",
            "protections.stoploss_guard: needs count, window and lock "
            "(protections.stoploss_guard.lock unset)",
        ),
        ("[protections.stoploss_guard]\ncount = 0\n", "protections.stoploss_guard.count: 0"),
        ("[protections.stoploss_guard]\nsize = 1\n", "protections.stoploss_guard.size: unknown"),
        ("[limits]\nmax_order_notional = -5\n", "limits.max_order_notional: -5.0 is not allowed"),
        ("[limits]\nprice_collar_percent = 'x'\n", "limits.price_collar_percent: 'x'"),
        ("[limits]\nmax_orders_per_minute = 2\n", "an entry sends 3 orders"),
    ],
)
def test_a_bad_protection_or_limit_is_refused_naming_the_key(
    tmp_path: Path, toml: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(["--config", write(tmp_path, toml)], {})


def test_the_typed_settings_name_exactly_the_keys_of_the_table() -> None:
    assert sorted(key_paths()) == sorted(k.name for k in KEYS)
