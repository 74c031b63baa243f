"""``control flatten`` in testnet mode against the fake Binance (tests/fakebinance): the real
python-binance client, positions with take-profit and stop-loss algo orders, flat at the venue."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.waiting import wait_until

from .conftest import BotProcess, fake_venue_env


@pytest.mark.slow
def test_flatten_on_the_venue_cancels_algo_orders_closes_positions_and_halts(
    tmp_path: Path,
) -> None:
    from tests.fakebinance.server import FakeBinance

    symbols = ("BTCUSDT", "ETHUSDT")
    with FakeBinance() as fake:
        env = fake_venue_env(fake.rest_url, fake.ws_url)
        bot = BotProcess(
            tmp_path,
            *("--mode", "testnet", "--symbols", ",".join(symbols), "--intervals", "1m"),
            env=env,
        )
        try:
            wait_until(
                lambda: any(r["event_type"] == "trading_state_changed" for r in bot.records()),
                60,
                "startup",
            )
            prices = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0}

            def both_open() -> bool:
                step = 1.003 if int(time.monotonic() * 2) % 12 < 6 else 0.997
                for symbol in symbols:
                    if fake.position_amount(symbol) == 0:
                        prices[symbol] *= step
                        fake.close_kline(symbol, "1m", round(prices[symbol], 1))
                return all(fake.position_amount(s) != 0 for s in symbols)

            wait_until(both_open, 120, "a position on each symbol")
            wait_until(
                lambda: all(fake.open_stop_losses(s) for s in symbols), 30, "their stop-losses"
            )

            result = subprocess.run(
                [sys.executable, "-m", "bot", "control", "flatten", "--json",
                 "--audit-dir", str(bot.audit_dir)],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            reply = json.loads(result.stdout)
            assert reply["flat"] and reply["state"] == "halted"
            assert reply["positions_closed"] == 2
            for symbol in symbols:
                assert fake.position_amount(symbol) == 0
                assert [a for a in fake.algo_orders_for(symbol) if a["algoStatus"] == "NEW"] == []
                assert [o for o in fake.orders_for(symbol) if o["status"] == "NEW"] == []
            bot.proc.send_signal(signal.SIGTERM)
            assert bot.wait(timeout=60) == 0
        finally:
            bot.stop()
