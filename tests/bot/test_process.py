"""``python -m bot`` as a user runs it: real process, real signals, real files on disk."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_until

from .conftest import (
    API_KEY,
    API_SECRET,
    CAPPED,
    INTEGRITY,
    NORMAL,
    REJECTED,
    BotProcess,
    events_by_trace,
    fake_venue_env,
    flow,
)


def has_every_flow(bot: BotProcess) -> bool:
    flows = [flow(events) for events in events_by_trace(bot.records()).values()]
    return NORMAL in flows and REJECTED in flows and CAPPED in flows


def assert_clean_stop(bot: BotProcess, signal_name: str) -> list[dict[str, Any]]:
    assert bot.wait(timeout=60) == 0, bot.stderr_text()
    records = bot.records()
    for path in bot.audit_dir.glob("audit_*.jsonl"):
        assert path.read_bytes().endswith(b"\n"), f"torn last line in {path.name}"
    lifecycle = [r for r in records if r["event_type"] not in INTEGRITY]
    assert lifecycle[0]["event_type"] == "bot_started"
    assert [r["event_type"] for r in records[-2:]] == ["audit_checkpoint", "bot_stopped"]
    assert lifecycle[-1]["additional_data"]["signal"] == signal_name
    assert lifecycle[-1]["additional_data"]["exit_code"] == 0
    return records


def assert_no_secret_on_disk(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert API_KEY.encode() not in data, path
            assert API_SECRET.encode() not in data, path


@pytest.mark.slow
def test_paper_sim_run_shows_every_flow_and_stops_cleanly_on_sigterm(
    run_bot: Callable[..., BotProcess], tmp_path: Path
) -> None:
    bot = run_bot(
        "--mode", "paper", "--market", "sim", "--speed", "600", "--heartbeat-seconds", "1"
    )
    wait_until(lambda: has_every_flow(bot), 120, "normal, rejected and capped flows")
    wait_until(
        lambda: any(r["event_type"] == "heartbeat" for r in bot.records()), 30, "a heartbeat"
    )
    bot.proc.send_signal(signal.SIGTERM)

    records = assert_clean_stop(bot, "SIGTERM")
    started = records[0]["additional_data"]
    assert started["mode"] == "paper" and started["market"] == "sim"
    assert started["symbols"] and started["intervals"] == ["1m", "5m"]
    assert {"leverage_set", "margin_type_set"} <= {r["event_type"] for r in records}
    assert all("trace_id" in r for r in records if r["event_type"] == "signal_processing")
    assert "backfill" in bot.stderr_text()
    bot.stop()
    assert_no_secret_on_disk(tmp_path)


@pytest.mark.slow
def test_sigint_stops_the_bot_cleanly(run_bot: Callable[..., BotProcess], tmp_path: Path) -> None:
    bot = run_bot("--speed", "600")
    wait_until(
        lambda: any(r["event_type"] == "signal_processing" for r in bot.records()),
        120,
        "a first signal",
    )
    bot.proc.send_signal(signal.SIGINT)

    assert_clean_stop(bot, "SIGINT")
    bot.stop()
    assert_no_secret_on_disk(tmp_path)


def test_replay_runs_to_the_end_of_the_data_and_exits_zero(
    run_bot: Callable[..., BotProcess], tmp_path: Path
) -> None:
    data = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    price, rows = 42_000.0, []
    for i in range(300):
        move = 40.0 if (i // 15) % 2 else -40.0
        t = 1_704_067_200_000 + i * 60_000
        rows.append(
            f"{t},{price},{price + 60},{price - 60},{price + move},10,{t + 59_999},0,0,0,0,0"
        )
        price += move
    data.write_text("\n".join(rows) + "\n")

    bot = run_bot("--market", "replay", "--data", str(data), "--speed", "0")
    assert bot.wait(timeout=60) == 0, bot.stderr_text()
    records = bot.records()
    stopped = [r for r in records if r["event_type"] == "bot_stopped"][-1]
    assert stopped["additional_data"]["reason"] == "market_data_ended"
    assert stopped["additional_data"]["candles_processed"] == 200
    assert stopped["additional_data"]["signals"] > 0
    assert records[0]["additional_data"]["symbols"] == ["BTCUSDT"]
    reconciled = [r for r in records if r["operation"] == "reconcile_startup"]
    assert [r["additional_data"]["action"] for r in reconciled] == ["none"]  # paper starts empty


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ("[risk]\nleverage = 500\n", "risk.leverage: 500 is not allowed (allowed: integer 1..125)"),
        ("[risk]\nstop_los = 1\n", "risk.stop_los: unknown key"),
        ("symbols = [\n", "is not valid TOML"),
    ],
)
def test_a_malformed_config_stops_the_bot_before_it_trades(
    run_bot: Callable[..., BotProcess], tmp_path: Path, config: str, named: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(config)
    bot = run_bot("--config", str(path))
    assert bot.wait(timeout=60) == 2
    assert named in bot.stderr_text()
    assert not bot.audit_dir.exists()  # stopped before even opening the trail


@pytest.mark.slow
def test_testnet_mode_trades_against_a_fake_venue_without_leaking_keys(tmp_path: Path) -> None:
    from tests.fakebinance.server import API_KEY as FAKE_KEY
    from tests.fakebinance.server import API_SECRET as FAKE_SECRET
    from tests.fakebinance.server import FakeBinance

    with FakeBinance() as fake:
        bot = BotProcess(
            tmp_path,
            *("--mode", "testnet", "--symbols", "BTCUSDT", "--intervals", "1m"),
            env=fake_venue_env(fake.rest_url, fake.ws_url),
        )
        try:
            wait_until(
                lambda: any(r["event_type"] == "leverage_set" for r in bot.records()), 60, "startup"
            )
            price = 60_000.0

            def traded() -> bool:
                nonlocal price
                price *= 1.003 if int(time.monotonic() * 2) % 12 < 6 else 0.997
                fake.close_kline("BTCUSDT", "1m", round(price, 1))
                return any(r["event_type"] == "trade_executed" for r in bot.records())

            wait_until(traded, 90, "a trade on the fake venue")
            bot.proc.send_signal(signal.SIGTERM)
            assert bot.wait(timeout=60) == 0
        finally:
            bot.stop()
        records = bot.records()
        assert records[0]["additional_data"]["exchange"] == "binance-testnet"
        trade = next(r for r in records if r["event_type"] == "trade_executed")
        assert trade["trace_id"] in {cid.rsplit("-", 1)[0] for cid in fake.client_order_ids()}
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert FAKE_KEY.encode() not in path.read_bytes(), path
                assert FAKE_SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_the_first_heartbeat_comes_at_once_and_checkpoints_follow_the_config(
    run_bot: Callable[..., BotProcess], tmp_path: Path
) -> None:
    config = tmp_path / "bot.toml"
    config.write_text("[audit]\ncheckpoint_interval_seconds = 1\n")
    bot = run_bot("--config", str(config), "--heartbeat-seconds", "3600")
    wait_until(
        lambda: {"heartbeat", "audit_checkpoint"} <= {r["event_type"] for r in bot.records()},
        60,
        "a heartbeat long before the first hour is over, and a periodic checkpoint",
    )
    bot.proc.send_signal(signal.SIGTERM)
    assert_clean_stop(bot, "SIGTERM")
