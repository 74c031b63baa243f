"""Fixtures for the Binance integration tests: a fake venue, the real adapter, an audit trail.

Everything runs on 127.0.0.1 against :class:`tests.fakebinance.FakeBinance`
with the real python-binance client. Time-outs and back-offs are shrunk so
the fault paths run in well under a second each; waits poll a condition
with a deadline instead of sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger
from bot.exchange.binance import BinanceExchange
from bot.models import Signal, SignalType
from tests.fakebinance import API_KEY, API_SECRET, FakeBinance

# Shrunk for tests: the client gives up after REQUEST_TIMEOUT, the fake's
# "timeout" faults hold their answer for TIMEOUT_FAULT (longer).
REQUEST_TIMEOUT = 1.0
TIMEOUT_FAULT = 2.5
# A long BTCUSDT signal: entry 50,000, take-profit 52,000, stop-loss 49,000.
SIGNAL = Signal(
    symbol="BTCUSDT",
    signal_type=SignalType.LONG,
    entry=50_000.0,
    take_profit=52_000.0,
    stop_loss=49_000.0,
    interval="1m",
    strategy="test",
    close_price=50_000.0,
    candle_close_time=0,
)
STREAM_OPTIONS: dict[str, Any] = {
    "restart_backoff": 0.05,
    "restart_backoff_max": 0.3,
    "max_reconnects": 2,  # the SDK gives up after one failed reconnect (~1-2 s)
    "read_timeout": 0.25,
}


def read_trail(directory: Path) -> list[dict[str, Any]]:
    """Every record of an audit directory, in file and line order."""
    records: list[dict[str, Any]] = []
    for path in sorted(directory.glob("audit_*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return records


def raw_trail_text(directory: Path) -> str:
    return "".join(p.read_text() for p in sorted(directory.iterdir()) if p.is_file())


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def audit(audit_dir: Path) -> Iterator[AuditLogger]:
    logger = AuditLogger(audit_dir=audit_dir, fsync_interval=0.05)
    try:
        yield logger
    finally:
        logger.close()


def make_exchange(
    fake: FakeBinance,
    audit: AuditLogger | None = None,
    *,
    api_secret: str = API_SECRET,
    **stream_options: Any,
) -> BinanceExchange:
    return BinanceExchange(
        api_key=API_KEY,
        api_secret=api_secret,
        base_url=fake.rest_url,
        ws_url=fake.ws_url,
        audit=audit,
        request_timeout=REQUEST_TIMEOUT,
        stream_options={**STREAM_OPTIONS, **stream_options},
    )


@pytest.fixture
def exchange(fake: FakeBinance, audit: AuditLogger) -> Iterator[BinanceExchange]:
    adapter = make_exchange(fake, audit)
    try:
        yield adapter
    finally:
        adapter.close()
