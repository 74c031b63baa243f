"""A circuit breaker end to end (SPEC §11): a paper bot, the alerts process, a rule with
``action = "halt"`` and ``resume_on_resolve`` — real processes, socket and trails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_until

from .conftest import ROOT, BotProcess

# Every signal is capped (1 % margin cap at 10x), so the capping rate is 1.0 and the rule
# fires; once halted no signal is sized, the window empties, the rule resolves (nodata).
BOT_CONFIG = "[risk]\nmax_position_percent = 1.0\nleverage = 10\n"
RULES = """
[[rules]]
name = "capping-breaker"
metric = "capping_rate"
window = "5s"
fire_above = 0.5
clear_below = 0.2
min_samples = 2
pending = "0s"
action = "halt"
resume_on_resolve = true
"""


def states(bot: BotProcess) -> list[dict[str, Any]]:
    return [
        r["additional_data"] for r in bot.records() if r["event_type"] == "trading_state_changed"
    ]


@pytest.mark.slow
def test_a_firing_rule_halts_the_bot_and_its_resolution_resumes_it(tmp_path: Path) -> None:
    (tmp_path / "bot.toml").write_text(BOT_CONFIG)
    (tmp_path / "rules.toml").write_text(RULES)
    bot = BotProcess(
        tmp_path,
        "--config",
        str(tmp_path / "bot.toml"),
        "--speed",
        "3000",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--intervals",
        "1m",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "ALERT"))}
    with open(tmp_path / "alerts.log", "wb") as log:
        alerts = subprocess.Popen(
            [
                sys.executable, "-m", "dashboard.alerts",
                "--rules", str(tmp_path / "rules.toml"),
                "--audit-dir", str(bot.audit_dir),
                "--alerts-dir", str(tmp_path / "alerts"),
                "--interval", "0.5",
                "--metrics-addr", "off",
            ],
            env={**env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=log,
        )  # fmt: skip
        try:
            halted = wait_until(
                lambda: [s for s in states(bot) if s["to"] == "halted"], 90, "the breaker's halt"
            )[0]
            assert halted["source"] == "alert" and halted["rule"] == "capping-breaker"
            assert halted["from"] == "active"
            resumed = wait_until(
                lambda: [s for s in states(bot) if s["to"] == "active" and s["source"] == "alert"],
                90,
                "the resume when the rule resolved",
            )[0]
            assert resumed["rule"] == "capping-breaker" and resumed["from"] == "halted"
        finally:
            alerts.terminate()
            alerts.wait(timeout=30)
            bot.stop()
    assert "capping-breaker" in (tmp_path / "alerts.log").read_text()
