# ruff: noqa: E501  (the recipes are quoted verbatim from the note, one command per line)
"""The seed note's jq recipes ("Analyzing Audit Logs", "Monitoring Strategies") run with the
real jq on a generated trail, unchanged, and give the counts that were written.

Two recipes pipe pretty-printed jq output into `wc -l`, so they count *lines*
of pretty JSON, not records; the test asserts exactly that (and the `-c` form,
which counts records), so the README can say so honestly."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from bot.audit import AuditEventType
from tests.audit.conftest import read_records

E = AuditEventType
pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="needs the jq binary")


@pytest.fixture
def trail(tmp_path: Path, open_logger) -> tuple[Path, list[dict]]:
    """Today's trail (real clock, TZ=UTC in the shell) under tmp/logs/audit."""
    directory = tmp_path / "logs" / "audit"
    logger = open_logger(directory, checkpoint_interval=3600)
    plan = [
        (E.SIGNAL_PROCESSING, "BTCUSDT", 7),
        (E.RISK_REJECTION, "BTCUSDT", 3),
        (E.RISK_REJECTION, "ETHUSDT", 2),
        (E.POSITION_SIZE_CALCULATED, "ETHUSDT", 4),
        (E.POSITION_SIZE_CAPPED, "ETHUSDT", 3),
        (E.ORDER_PLACED, "BTCUSDT", 9),
        (E.ORDER_REJECTED, "BTCUSDT", 2),
        (E.TRADE_EXECUTED, "ETHUSDT", 3),
        (E.API_ERROR, "BTCUSDT", 1),
    ]
    for kind, symbol, n in plan:
        for _ in range(n):
            logger.log_event(
                kind,
                "op",
                symbol=symbol,
                error={"reason": "invalid_stop_loss", "message": "m", "validation_failed": "sl"}
                if kind is E.RISK_REJECTION
                else None,
                additional_data={"requested_quantity": 2.0, "capped_quantity": 1.0}
                if kind is E.POSITION_SIZE_CAPPED
                else None,
            )
    logger.close()
    return tmp_path, read_records(directory)


def sh(cwd: Path, script: str) -> str:
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TZ": "UTC"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def pretty_lines(records: list[dict]) -> int:
    return sum(len(json.dumps(r, indent=2).splitlines()) for r in records)


def test_analyzing_recipes(trail):
    cwd, records = trail
    by_type = Counter(r["event_type"] for r in records)
    objects = sh(cwd, "cat logs/audit/audit_*.jsonl | jq '.'")
    assert objects.count('\n  "hash": ') == len(records)
    rejections = sh(
        cwd, """cat logs/audit/audit_*.jsonl | jq -c 'select(.event_type == "risk_rejection")'"""
    )
    assert len(rejections.splitlines()) == by_type["risk_rejection"] == 5
    executed = sh(
        cwd, """cat logs/audit/audit_*.jsonl | jq 'select(.event_type == "trade_executed")'"""
    )
    assert executed.count('"event_type": "trade_executed"') == 3
    btc = sh(cwd, """cat logs/audit/audit_*.jsonl | jq -c 'select(.symbol == "BTCUSDT")'""")
    assert len(btc.splitlines()) == sum(r.get("symbol") == "BTCUSDT" for r in records)
    distribution = sh(cwd, "cat logs/audit/audit_*.jsonl | jq -r '.event_type' | sort | uniq -c")
    parsed = {line.split()[1]: int(line.split()[0]) for line in distribution.splitlines()}
    assert parsed == dict(by_type)
    first, last = records[0]["timestamp"][:19], records[-1]["timestamp"]
    in_range = sh(
        cwd,
        "cat logs/audit/audit_*.jsonl | jq -c "
        f"""'select(.timestamp >= "{first}" and .timestamp <= "{last}")'""",
    )
    assert len(in_range.splitlines()) == len(records)
    sizes = sh(
        cwd,
        """cat logs/audit/audit_*.jsonl | jq -c 'select(.event_type | contains("position_size"))'""",
    )
    assert len(sizes.splitlines()) == 7
    capped = sh(
        cwd,
        "cat logs/audit/audit_*.jsonl | jq "
        """'select(.event_type == "position_size_capped") | .additional_data'""",
    )
    assert capped.count('"capped_quantity": 1') == 3
    errors = sh(
        cwd,
        "cat logs/audit/audit_*.jsonl | jq -c "
        """'select(.event_type | contains("error") or contains("rejection"))'""",
    )
    assert len(errors.splitlines()) == 1 + 5  # api_error + risk_rejection


def test_monitoring_recipes(trail):
    cwd, records = trail
    today = time.strftime("%Y%m%d", time.gmtime())
    daily = sh(
        cwd,
        "cat logs/audit/audit_$(date +%Y%m%d).jsonl | "
        """jq -c 'select(.event_type == "trade_executed")'""",
    )
    assert (cwd / "logs/audit" / f"audit_{today}.jsonl").exists()
    assert len(daily.splitlines()) == 3
    report = sh(
        cwd,
        "cat logs/audit/audit_*.jsonl | jq -c "
        """'select(.event_type == "risk_rejection") | {timestamp, symbol, reason: .error.reason}'""",
    )
    rows = [json.loads(line) for line in report.splitlines()]
    assert len(rows) == 5 and {r["reason"] for r in rows} == {"invalid_stop_loss"}

    capped = [r for r in records if r["event_type"] == "position_size_capped"]
    as_written = sh(
        cwd,
        """cat logs/audit/audit_*.jsonl | jq 'select(.event_type == "position_size_capped")' | wc -l""",
    )
    assert int(as_written) == pretty_lines(capped)  # lines of pretty JSON, as the note wrote it
    compact = sh(
        cwd,
        """cat logs/audit/audit_*.jsonl | jq -c 'select(.event_type == "position_size_capped")' | wc -l""",
    )
    assert int(compact) == 3

    rate = sh(
        cwd,
        """PLACED=$(cat logs/audit/audit_*.jsonl | jq 'select(.event_type == "order_placed")' | wc -l)
REJECTED=$(cat logs/audit/audit_*.jsonl | jq 'select(.event_type == "order_rejected")' | wc -l)
echo "Rejection rate: $REJECTED / ($PLACED + $REJECTED)"
""",
    )
    placed = [r for r in records if r["event_type"] == "order_placed"]
    rejected = [r for r in records if r["event_type"] == "order_rejected"]
    assert rate.strip() == (
        f"Rejection rate: {pretty_lines(rejected)} / ({pretty_lines(placed)} + "
        f"{pretty_lines(rejected)})"
    )
    last10 = sh(cwd, "cat logs/audit/audit_*.jsonl | tail -10 | jq '.'")
    assert last10.count('\n  "hash": ') == 10
    minute = records[-1]["timestamp"][:16]
    around = sh(
        cwd,
        f"""cat logs/audit/audit_*.jsonl | jq -c 'select(.timestamp | startswith("{minute}"))'""",
    )
    assert len(around.splitlines()) == sum(r["timestamp"].startswith(minute) for r in records)
