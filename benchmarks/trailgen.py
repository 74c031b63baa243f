"""Synthetic audit trails for the dashboard benchmarks, sealed as the bot seals them.

``flow`` gives the records of one signal in the order SPEC §6 writes them (used by
benchmarks/dashboard_ingest.py through ``TrailWriter`` and by benchmarks/history_scale.py
through the real ``AuditLogger``); ``TrailWriter`` writes sealed lines straight to day
files, without the logger, so a million records take seconds; ``generated_trail`` keeps
such a trail under $TMPDIR between runs, and ``appender``/``cut_appended`` add records to
it for a measurement and take them off again. Kept apart from the measurements so both
benchmarks generate the same records.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bot.audit import chain

START = 1_795_000_000  # 2026-11-18T09:46:40Z
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
TRAIL_VERSION = "v2"  # part of the cache's name: v2 fills carry PnL, balances a wallet balance
REASONS = ("existing_position", "invalid_take_profit", "invalid_stop_loss", "max_positions")
# the day indexes benchmarks/dashboard_ingest.py keeps of the generated trails
CACHE = Path(tempfile.gettempdir()) / "dashboard_bench_cache"


def flow(rng: random.Random, symbol: str, trace_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(event_type, operation, fields) of one signal, as SPEC §6 orders them."""
    price = round(rng.uniform(10, 60_000), 2)
    signal = {
        "signal_generated": True,
        "signal_type": rng.choice(("LONG", "SHORT")),
        "interval": rng.choice(("1m", "5m")),
        "close_price": price,
        "entry_price": price,
        "take_profit": round(price * 1.02, 2),
        "stop_loss": round(price * 0.99, 2),
        "strategy": "ema_cross",
    }
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("signal_processing", "process_signal", {"additional_data": signal})
    ]
    roll = rng.random()
    if roll < 0.3:
        reason = rng.choice(REASONS)
        out.append(
            (
                "risk_rejection",
                "validate_risk",
                {
                    "order_data": signal,
                    "error": {
                        "reason": reason,
                        "message": f"signal rejected: {reason.replace('_', ' ')}",
                        "validation_failed": "position_check",
                    },
                },
            )
        )
        return out
    out.append(("risk_validation", "validate_risk", {"order_data": signal}))
    qty = round(rng.uniform(0.001, 5), 3)
    if roll < 0.45:
        out.append(
            (
                "position_size_capped",
                "calculate_position_size",
                {
                    "additional_data": {
                        "requested_quantity": qty * 2,
                        "capped_quantity": qty,
                        "max_position_percent": 10.0,
                        "leverage": 5,
                        "account_balance": 10_000.0,
                    }
                },
            )
        )
    out.append(
        (
            "position_size_calculated",
            "calculate_position_size",
            {
                "additional_data": {
                    "account_balance": 10_000.0,
                    "entry_price": price,
                    "stop_loss_price": signal["stop_loss"],
                    "leverage": 5,
                    "risk_amount": 100.0,
                    "sl_distance_percent": 1.0,
                    "quantity": qty,
                }
            },
        )
    )
    if roll > 0.93:
        out.append(
            (
                "order_rejected",
                "place_entry_order",
                {
                    "order_data": {"order_type": "MARKET", "side": "BUY", "quantity": qty},
                    "error": {"error_code": -2019, "error_message": "Margin is insufficient."},
                },
            )
        )
        out.append(
            (
                "trade_execution_failed",
                "execute_trade",
                {
                    "additional_data": {
                        "signal_type": signal["signal_type"],
                        "entry_price": price,
                        "error_type": "order_rejected",
                        "error_message": "Margin is insufficient.",
                    }
                },
            )
        )
        return out
    for n, (order_type, side) in enumerate(
        (("MARKET", "BUY"), ("TAKE_PROFIT_MARKET", "SELL"), ("STOP_MARKET", "SELL"))
    ):
        out.append(
            (
                "order_placed",
                "place_order",
                {
                    "order_data": {
                        "order_type": order_type,
                        "side": side,
                        "quantity": qty,
                        "client_order_id": f"{trace_id}-{n}",
                    },
                    "response": {"orderId": rng.randrange(10**9), "status": "NEW"},
                },
            )
        )
    out.append(
        (
            "trade_executed",
            "execute_trade",
            {
                "additional_data": {
                    "signal_type": signal["signal_type"],
                    "entry_price": price,
                    "quantity": qty,
                    "leverage": 5,
                    "entry_order_id": rng.randrange(10**9),
                    "tp_sl_count": 2,
                }
            },
        )
    )
    out.append(_fill(trace_id, "e", "BUY", qty, price, 0.0))
    won = rng.random() < 0.45  # the take-profit fills, else the stop-loss
    exit_price = round(price * (1.02 if won else 0.99), 2)  # the signal's take-profit or stop
    pnl = round((exit_price - price) * qty, 4)
    out.append(_fill(trace_id, "tp" if won else "sl", "SELL", qty, exit_price, pnl))
    out.append(
        (
            "order_cancelled",
            "on_order_update",
            {"order_data": {"order_type": "STOP_MARKET", "side": "SELL", "quantity": qty}},
        )
    )
    return out


def _fill(
    trace_id: str, role: str, side: str, qty: float, price: float, pnl: float
) -> tuple[str, str, dict[str, Any]]:
    """An ``order_filled`` record as the engine writes it (the venue's update + role)."""
    response = {
        "client_order_id": f"{trace_id}-{role}",
        "side": side,
        "status": "FILLED",
        "executed_qty": qty,
        "avg_price": price,
        "realized_pnl": pnl,
        "commission": round(qty * price * 0.0004, 6),
    }
    fields = {"response": response, "additional_data": {"role": role}}
    return ("order_filled", "on_order_update", fields)


class TrailWriter:
    """Writes sealed lines directly (no AuditLogger) so a million records take seconds."""

    def __init__(
        self, directory: Path, start: float, seed: int = 7, buffering: int = 1 << 20
    ) -> None:
        self.directory = directory
        self.buffering = buffering  # large: nothing reaches the file before flush()
        self.now = start
        self.rng = random.Random(seed)
        self.sealer = chain.Sealer()
        self.tag = chain.run_tag("run-bench")
        self.seq = 0
        self.prev = chain.GENESIS_HASH.encode()
        self.files: dict[str, Any] = {}
        self.last_heartbeat = -1e18
        self.written = 0

    def write(self, event_type: str, operation: str, symbol: str | None, **fields: Any) -> None:
        moment = datetime.fromtimestamp(self.now, UTC)
        record: dict[str, Any] = {
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "event_type": event_type,
            "operation": operation,
        }
        if symbol:
            record["symbol"] = symbol
        record.update(fields)
        payload = orjson.dumps(record)[:-1]  # the sealer takes it without its closing brace
        line, self.prev = self.sealer.seal(payload, self.tag, self.seq, self.prev)
        self.seq += 1
        day = moment.strftime("%Y%m%d")
        fh = self.files.get(day)
        if fh is None:
            path = self.directory / f"audit_{day}.jsonl"
            fh = self.files[day] = open(path, "ab", buffering=self.buffering)  # noqa: SIM115
        fh.write(line)
        self.written += 1

    def write_records(self, count: int, mean_gap: float) -> None:
        target = self.written + count
        while self.written < target:
            if self.now - self.last_heartbeat >= 60:
                self.write("heartbeat", "heartbeat", None, additional_data={"uptime": self.now})
                self.last_heartbeat = self.now
            if self.rng.random() < 0.05:
                kind = self.rng.choice(("balance_query", "position_query"))
                balance = {"wallet_balance": round(self.rng.uniform(9_000, 11_000), 2)}
                extra = {"response": balance} if kind == "balance_query" else {}
                self.write(kind, "query", "BTCUSDT", **extra)
            trace_id = f"{self.rng.getrandbits(64):016x}"
            symbol = self.rng.choice(SYMBOLS)
            for event_type, operation, fields in flow(self.rng, symbol, trace_id):
                if self.written >= target:
                    break
                self.write(event_type, operation, symbol, trace_id=trace_id, **fields)
                self.now += self.rng.uniform(0.001, 0.05)
            self.now += self.rng.expovariate(1 / mean_gap)

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
        self.files.clear()


def generated_trail(records: int, days: float = 4.0) -> Path:
    """A cached trail of ``records`` records spread over ``days`` days."""
    directory = Path(tempfile.gettempdir()) / f"dashboard_bench_{records}_{TRAIL_VERSION}"
    done = directory / ".complete"
    if done.exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("audit_*"):
        old.unlink()
    t = time.perf_counter()
    writer = TrailWriter(directory, START - days * 86_400)
    writer.write_records(records, mean_gap=days * 86_400 / records * 7)
    writer.close()
    (directory / ".state.json").write_text(
        json.dumps({"seq": writer.seq, "prev": writer.prev.decode(), "now": writer.now})
    )
    done.touch()
    size = sum(p.stat().st_size for p in directory.glob("audit_*"))
    print(f"generated {records:,} records, {size / 1e6:.0f} MB in {time.perf_counter() - t:.1f} s")
    return directory


def appender(directory: Path) -> TrailWriter:
    """A writer continuing the cached trail's chain (its appends are cut afterwards)."""
    state = json.loads((directory / ".state.json").read_text())
    writer = TrailWriter(directory, state["now"] + 1, seed=99, buffering=1 << 24)
    writer.seq, writer.prev = state["seq"], state["prev"].encode()
    return writer


def cut_appended(directory: Path, sizes: dict[Path, int]) -> None:
    """Cut the appended records so the cached trail stays the size its name says."""
    for p in directory.glob("audit_*"):
        if p not in sizes:
            p.unlink()
        elif p.stat().st_size != sizes[p]:
            os.truncate(p, sizes[p])
