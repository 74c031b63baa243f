"""A seeded chaos run: the bot in testnet mode against the fake venue on its bad days.

The bot runs as its own process (``python -m bot --mode testnet``) against a
:class:`FakeBinance` in this process. The driver moves the market in a random
walk (several price ticks per candle, so stops and targets trigger between
closes), closes a 1m candle every ``candle_seconds``, and at random injects
the faults the venue really shows: stops REJECTED or EXPIRED at trigger, the
algo service forgetting live orders, orders processed but invisible after a
503 -1000, -1007 unknown outcomes, 5xx, -4131 on closes, a stop cancelled by
hand, the websockets dropped. Everything comes from one ``random.Random(seed)``,
so a run's fault schedule is repeatable (the bot's timing is not).

The report is computed from the fake's own records (orders, protection
timeline, fired faults) and the bot's audit trail: trades, duplicates (a
trace with more than one entry accepted), the longest time a position stood
without a working stop-loss, faults and repairs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.fakebinance.auth import API_KEY, API_SECRET
from tests.fakebinance.faults import Fault
from tests.fakebinance.params import VenueError
from tests.fakebinance.server import FakeBinance

ROOT = Path(__file__).resolve().parents[2]
SYMBOL = "BTCUSDT"
ORDER, ALGO = "POST /fapi/v1/order", "POST /fapi/v1/algoOrder"


@dataclass
class ChaosReport:
    seed: int
    seconds: float
    protection_check_seconds: float
    candles: int = 0
    trades: int = 0
    duplicates: int = 0
    longest_unprotected_seconds: float = 0.0
    unprotected_spans: int = 0
    open_unprotected_at_end: bool = False
    faults: dict[str, int] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)
    bot_exit_code: int | None = None

    def text(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _faults(rng: random.Random) -> list[tuple[str, Callable[[FakeBinance], None]]]:
    """The menu of bad days, each a name and what it does to the fake."""

    def hand_cancel_stop(fake: FakeBinance) -> None:
        for stop in fake.open_stop_losses(SYMBOL):
            with contextlib.suppress(VenueError):  # the algo service may be forgetting it
                fake.venue.cancel_algo_order({"clientAlgoId": stop["clientAlgoId"]})

    return [
        ("stop_rejected", lambda f: f.venue.trigger_faults.append("REJECTED")),
        ("stop_expired", lambda f: f.venue.trigger_faults.append("EXPIRED")),
        ("algo_amnesia", lambda f: f.venue.forget_algo_orders(rng.uniform(1, 6))),
        (
            "entry_invisible",
            lambda f: f.inject(
                ORDER, Fault.processed_but_invisible(rng.uniform(1, 5)), match={"type": "MARKET"}
            ),
        ),
        (
            "stop_unknown_outcome",
            lambda f: f.inject(ALGO, Fault.unknown_outcome(), match={"type": "STOP_MARKET"}),
        ),
        ("order_5xx", lambda f: f.inject(ORDER, Fault.server_error(502))),
        ("algo_5xx", lambda f: f.inject(ALGO, Fault.server_error(503))),
        (
            "close_percent_price",
            lambda f: f.inject(
                ORDER,
                Fault.percent_price(),
                match={"type": "MARKET", "reduceOnly": "true"},
                times=rng.randint(1, 3),
            ),
        ),
        ("stop_cancelled_by_hand", hand_cancel_stop),
        ("websockets_dropped", lambda f: f.drop_websockets()),
    ]


def _bot_env(fake: FakeBinance) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "BINANCE_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        BINANCE_API_KEY=API_KEY,
        BINANCE_API_SECRET=API_SECRET,
        BINANCE_FUTURES_URL=fake.rest_url,
        BINANCE_WS_URL=fake.ws_url,
    )
    return env


def _records(audit_dir: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(audit_dir.rglob("audit_*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))
    return records


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run_chaos(
    *,
    seed: int,
    seconds: float,
    protection_check_seconds: float = 10.0,
    candle_seconds: float = 1.0,
    fault_probability: float = 0.35,
    workdir: Path | None = None,
) -> ChaosReport:
    """Run the bot against the faulty fake for ``seconds``; the figures of the run."""
    rng = random.Random(seed)
    menu = _faults(rng)
    report = ChaosReport(seed, seconds, protection_check_seconds)
    injected: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        work = workdir or Path(tmp)
        audit_dir = work / "audit"
        config = work / "chaos.toml"
        config.write_text(
            "[execution]\n"
            f"protection_check_seconds = {protection_check_seconds}\n"
            "backoff_base_seconds = 0.2\nbackoff_max_seconds = 2.0\n"
            "unknown_outcome_seconds = 10.0\n"
        )
        with FakeBinance(seed=seed) as fake, open(work / "bot.log", "wb") as log:
            bot = subprocess.Popen(
                [sys.executable, "-m", "bot", "--mode", "testnet", "--symbols", SYMBOL,
                 "--intervals", "1m", "--audit-dir", str(audit_dir), "--config", str(config)],
                cwd=work, env=_bot_env(fake), stdout=log, stderr=log,
            )  # fmt: skip
            try:
                started = _wait(
                    lambda: any(r["event_type"] == "heartbeat" for r in _records(audit_dir)), 60
                )
                if not started:
                    raise RuntimeError(f"the bot did not start; see {work / 'bot.log'}")
                price = float(fake.venue.prices[SYMBOL])
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline and bot.poll() is None:
                    high = low = price
                    for _ in range(4):
                        price *= 1 + rng.gauss(0, 0.0025)
                        price = max(price, 1000.0)
                        high, low = max(high, price), min(low, price)
                        fake.set_price(SYMBOL, Decimal(str(round(price, 1))))
                        time.sleep(candle_seconds / 4)
                    fake.close_kline(
                        SYMBOL, "1m", round(price, 1), high=round(high, 1), low=round(low, 1)
                    )
                    report.candles += 1
                    if rng.random() < fault_probability:
                        name, act = rng.choice(menu)
                        act(fake)
                        injected[name] += 1
                # Let the last repairs land before the books are read.
                time.sleep(protection_check_seconds + 2)
            finally:
                if bot.poll() is None:
                    bot.send_signal(signal.SIGTERM)
                    try:
                        bot.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        bot.kill()
                        bot.wait(timeout=30)
                report.bot_exit_code = bot.returncode
            _fill_report(report, fake, _records(audit_dir), injected)
    return report


def _fill_report(
    report: ChaosReport,
    fake: FakeBinance,
    records: list[dict[str, Any]],
    injected: Counter[str],
) -> None:
    with fake.venue.lock:
        entries = Counter(
            o.client_order_id.rpartition("-")[0]
            for o in fake.venue.orders
            if o.client_order_id.endswith("-e") and not o.orig_type and o.executed_qty
        )
    report.trades = len(entries)
    report.duplicates = sum(count - 1 for count in entries.values() if count > 1)
    spans = fake.venue.unprotected_spans(SYMBOL)
    report.unprotected_spans = len(spans)
    report.longest_unprotected_seconds = round(
        max((end - start for start, end in spans), default=0) / 1000, 3
    )
    report.open_unprotected_at_end = fake.venue._unprotected(SYMBOL)
    fired = Counter(kind for _, kind in fake.faults.fired)
    fired.update(kind for _, kind, _ in fake.venue.incidents)
    report.faults = {
        **{f"injected:{k}": v for k, v in sorted(injected.items())},
        **{f"fired:{k}": v for k, v in sorted(fired.items())},
    }
    repairs: Counter[str] = Counter()
    for r in records:
        operation, extra = r.get("operation"), r.get("additional_data") or {}
        error = r.get("error") or {}
        if operation == "protection_check":
            repairs[f"protection_check:{extra.get('action')}"] += 1
        elif operation == "stop_loss_lost":
            repairs[f"noticed:{error.get('error_type')}"] += 1
        elif r["event_type"] == "order_placed" and operation in (
            "replace_sl_order",
            "close_unprotected_position",
            "close_unprotected_position_limit_ioc",
            "close_position",
            "close_position_limit_ioc",
        ):
            repairs[f"placed:{operation}"] += 1
        elif r["event_type"] == "retry_attempt":
            repairs["retry_attempt"] += 1
        elif error.get("resolution") in ("found_at_venue", "not_at_venue"):
            repairs[f"unknown_outcome:{error['resolution']}"] += 1
        elif error.get("severity") == "critical":
            repairs["critical_alert"] += 1
        elif r["event_type"] == "order_cancelled" and extra.get("reason"):
            repairs[f"cancelled:{extra['reason']}"] += 1
        elif r["event_type"] == "trade_execution_failed":
            repairs["trade_execution_failed"] += 1
    report.repairs = dict(sorted(repairs.items()))
