"""``python -m bot control ...`` against a running paper bot: real processes, socket and files."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.control import protocol
from tests.waiting import wait_until

from .conftest import ROOT, BotProcess

FAST = ("--speed", "3000", "--symbols", "BTCUSDT,ETHUSDT", "--intervals", "1m")


def control(audit_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", "control", *args, "--audit-dir", str(audit_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def records_of(bot: BotProcess, kind: str) -> list[dict[str, Any]]:
    return [r for r in bot.records() if r["event_type"] == kind]


def listening(bot: BotProcess) -> bool:
    return protocol.socket_path(bot.audit_dir).exists() and bool(
        records_of(bot, "trading_state_changed")
    )


def test_control_without_a_running_bot_exits_3(tmp_path: Path) -> None:
    result = control(tmp_path / "nothing-here", "status")
    assert result.returncode == 3
    assert "no bot is running" in result.stderr


def test_a_usage_error_exits_2(tmp_path: Path) -> None:
    assert control(tmp_path, "explode").returncode == 2
    assert control(tmp_path, "halt", "--reason", " ").returncode == 2


@pytest.mark.slow
def test_halt_refuses_signals_resume_trades_again(
    run_bot: Callable[..., BotProcess],
) -> None:
    bot = run_bot(*FAST)
    wait_until(lambda: listening(bot), 60, "the bot's control socket")

    halted = control(bot.audit_dir, "halt", "--reason", "maintenance window", "--json")
    assert halted.returncode == 0, halted.stderr
    reply = json.loads(halted.stdout)
    assert reply["state"] == "halted"
    assert reply["acked_after"] < 5  # SPEC §11: acknowledged and recorded within 5 s
    change = records_of(bot, "trading_state_changed")[-1]
    assert change["additional_data"] == {
        "from": "active",
        "to": "halted",
        "reason": "maintenance window",
        "source": "operator",
        "operator": getpass.getuser(),
    }
    halted_seq = change["seq"]

    def refused_after_halt() -> list[dict[str, Any]]:
        return [
            r
            for r in records_of(bot, "risk_rejection")
            if r["seq"] > halted_seq and r["error"]["reason"] == "trading_halted"
        ]

    wait_until(lambda: len(refused_after_halt()) >= 2, 60, "signals refused as trading_halted")
    entries = [
        r
        for r in records_of(bot, "order_placed")
        if r["seq"] > halted_seq and r["order_data"]["client_order_id"].endswith("-e")
    ]
    assert entries == []

    resumed = control(bot.audit_dir, "resume")
    assert resumed.returncode == 0, resumed.stderr
    resumed_seq = records_of(bot, "trading_state_changed")[-1]["seq"]
    wait_until(
        lambda: any(r["seq"] > resumed_seq for r in records_of(bot, "risk_validation")),
        60,
        "a signal validated after resume",
    )


@pytest.mark.slow
def test_flatten_leaves_the_bot_flat_and_halted_and_a_restart_keeps_it_halted(
    run_bot: Callable[..., BotProcess], tmp_path: Path
) -> None:
    bot = run_bot(*FAST)
    wait_until(lambda: listening(bot), 60, "the bot's control socket")
    wait_until(lambda: records_of(bot, "trade_executed"), 60, "a first trade")

    flattened = control(bot.audit_dir, "flatten", "--json")
    assert flattened.returncode == 0, flattened.stderr
    reply = json.loads(flattened.stdout)
    assert reply["flat"] is True and reply["state"] == "halted"
    assert reply["time_to_flat_seconds"] < 30

    status = json.loads(control(bot.audit_dir, "status", "--json").stdout)
    assert status["state"] == "halted"
    assert status["positions"] == [] and status["open_orders"] == []

    bot.proc.send_signal(2)  # SIGINT
    assert bot.wait(timeout=60) == 0
    bot.stop()
    again = run_bot(*FAST)
    wait_until(
        lambda: (
            records_of(again, "trading_state_changed")[-1]["additional_data"]["source"] == "startup"
            and records_of(again, "bot_started")[-1]["run_id"]
            == records_of(again, "trading_state_changed")[-1]["run_id"]
        ),
        60,
        "the restarted bot's startup state",
    )
    startup = records_of(again, "trading_state_changed")[-1]["additional_data"]
    assert startup["to"] == "halted" and startup["from"] == "halted"
    assert "set by operator" in startup["reason"]
    assert startup["restored"]["source"] == "operator"
    assert startup["restored"]["operator"] == getpass.getuser()


@contextlib.contextmanager
def open_to_others(bot: BotProcess) -> Iterator[None]:
    """Let other users reach the socket file, so only the peer-uid check can refuse them."""
    bot.audit_dir.chmod(0o711)
    protocol.socket_path(bot.audit_dir).chmod(0o666)
    yield


def as_user(uid: int, audit_dir: Path) -> tuple[int, str]:
    """Run protocol.request in a forked child that dropped to ``uid``: (exit code, message)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code, text = 1, ""
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            reply = protocol.request(audit_dir, "halt", reason="not mine")
            code, text = (0 if reply.get("ok") else 1), str(reply.get("error"))
        except protocol.BotNotRunning as exc:
            code, text = 3, str(exc)
        except BaseException as exc:
            text = f"{type(exc).__name__}: {exc}"
        os.write(write_end, text.encode()[:4000])
        os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as fh:
        return os.waitstatus_to_exitcode(status), fh.read().decode()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another OS user")
def test_another_os_user_cannot_command_the_bot() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ctl-", dir="/tmp"))  # reachable by other users
    workdir.chmod(0o711)
    try:
        bot = BotProcess(workdir, *FAST)
        try:
            wait_until(lambda: listening(bot), 60, "the bot's control socket")
            code, text = as_user(65534, bot.audit_dir)  # file permissions stop it
            assert code == 1 and "not allowed" in text, text
            with open_to_others(bot):
                code, text = as_user(65534, bot.audit_dir)  # the peer-uid check stops it
            assert code == 1 and "may not command" in text, text
            assert all(
                r["additional_data"]["source"] == "startup"
                for r in records_of(bot, "trading_state_changed")
            )
        finally:
            bot.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
