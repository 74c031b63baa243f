"""Readers and the command line: incremental following, gz transparency, summary counts
and rates (kept in sync with the dashboard's definitions), exit codes, --help."""

from __future__ import annotations

import gzip
import os
from collections import Counter
from pathlib import Path

import orjson
import pytest

from bot.audit import AuditEventType, chain
from bot.audit.compress import compress_closed_days
from bot.audit.reader import TrailFollower, iter_records
from bot.audit.summary import RATES, summarize
from bot.audit.verify import verify_trail
from tests.audit.conftest import MIDNIGHT, FakeClock, read_records, run_cli

E = AuditEventType
LINE = (
    b'{"timestamp":"2026-11-18T10:00:00.000000Z","event_type":"heartbeat","operation":"hb",'
    b'"run_id":"r","seq":0,"prev":"' + b"0" * 64 + b'","hash":"' + b"0" * 64 + b'"}\n'
)


def test_follower_never_returns_a_partial_line_and_counts_malformed(tmp_path):
    path = tmp_path / "audit_20261118.jsonl"
    path.write_bytes(LINE + LINE[:40])
    follower = TrailFollower(tmp_path)
    assert len(follower.poll()) == 1
    with open(path, "ab") as fh:
        fh.write(LINE[40:] + b"not json\n")
    assert len(follower.poll()) == 1
    assert follower.stats.malformed == 1 and follower.stats.records == 2
    assert follower.poll() == []


def test_follower_follows_rollover_truncation_and_replacement(tmp_path):
    day1, day2 = tmp_path / "audit_20261118.jsonl", tmp_path / "audit_20261119.jsonl"
    day1.write_bytes(LINE * 3)
    follower = TrailFollower(tmp_path)
    assert len(follower.poll()) == 3
    day2.write_bytes(LINE.replace(b"2026-11-18", b"2026-11-19"))
    assert len(follower.poll()) == 1  # rollover
    day1.write_bytes(LINE)  # truncated: read again from the start
    assert len(follower.poll()) == 1 and follower.stats.truncations == 1
    replacement = tmp_path / "new"
    replacement.write_bytes(LINE * 2)
    os.replace(replacement, day1)  # a new inode
    assert len(follower.poll()) == 2 and follower.stats.replacements == 1


def test_gzipped_day_files_read_transparently_and_the_follower_does_not_repeat(
    tmp_path, open_logger
):
    directory = tmp_path / "audit"
    clock = FakeClock(MIDNIGHT - 3 * 86_400 * 10**9, step_ns=3600 * 10**9)
    logger = open_logger(directory, clock=clock)
    follower = TrailFollower(directory)
    for i in range(100):
        logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    logger.flush()
    seen = follower.poll()
    before = read_records(directory)
    done = compress_closed_days(directory, now_ns=clock.now)
    assert len(done) >= 1 and all(p.name.endswith(".jsonl.gz") for p in done)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in done)
    assert read_records(directory) == before
    assert follower.poll() == []  # plain -> gz continues where it was
    logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": 100})
    logger.close()
    beats = [r for r in seen + follower.poll() if r["event_type"] == "heartbeat"]
    assert [r["additional_data"]["i"] for r in beats] == list(range(101))  # none repeated
    assert verify_trail(directory, workers=2).intact
    with gzip.open(done[0]) as fh:
        assert fh.read().count(b"\n") > 0


def test_skip_existing_starts_at_the_end(tmp_path):
    (tmp_path / "audit_20261118.jsonl").write_bytes(LINE * 5)
    follower = TrailFollower(tmp_path)
    follower.skip_existing()
    assert follower.poll() == []
    with open(tmp_path / "audit_20261118.jsonl", "ab") as fh:
        fh.write(LINE)
    assert len(follower.poll()) == 1


def generate(directory: Path, open_logger) -> Counter[str]:
    """A trail over two days with known counts per event type, symbol and reason."""
    clock = FakeClock(MIDNIGHT - 12 * 3600 * 10**9, step_ns=180 * 10**9)  # one every 3 min
    logger = open_logger(directory, clock=clock, checkpoint_interval=3600)
    plan = [
        (E.SIGNAL_PROCESSING, "BTCUSDT", None, 60),
        (E.RISK_VALIDATION, "BTCUSDT", None, 40),
        (E.RISK_REJECTION, "BTCUSDT", "invalid_stop_loss", 15),
        (E.RISK_REJECTION, "ETHUSDT", "existing_position", 5),
        (E.POSITION_SIZE_CALCULATED, "ETHUSDT", None, 40),
        (E.POSITION_SIZE_CAPPED, "ETHUSDT", None, 10),
        (E.ORDER_PLACED, "BTCUSDT", None, 90),
        (E.ORDER_REJECTED, "BTCUSDT", None, 10),
        (E.TRADE_EXECUTED, "ETHUSDT", None, 30),
        (E.TRADE_EXECUTION_FAILED, "ETHUSDT", None, 10),
        (E.HEARTBEAT, None, None, 20),
    ]
    counts: Counter[str] = Counter()
    for kind, symbol, reason, n in plan:
        for _ in range(n):
            error = None
            if reason:
                error = {"reason": reason, "message": reason, "validation_failed": reason}
            if kind is E.ORDER_REJECTED:
                error = {"error_code": -2019, "error_message": "Margin is insufficient."}
            logger.log_event(
                kind,
                "op",
                symbol=symbol,
                error=error,
                additional_data={"requested_quantity": 3, "capped_quantity": 1}
                if kind is E.POSITION_SIZE_CAPPED
                else None,
            )
            counts[kind.value] += 1
            counts[f"symbol:{symbol}"] += 1
    logger.close()
    return counts


def test_summary_counts_rates_and_reasons_match_what_was_written(tmp_path, open_logger):
    directory = tmp_path / "audit"
    counts = generate(directory, open_logger)
    for workers in (1, 2):
        result = summarize(directory, workers=workers)
        assert result.counts["order_placed"] == 90 and result.counts["heartbeat"] == 20
        assert result.rate("risk_rejection_rate") == (20, 60, 20 / 60)
        assert result.rate("order_rejection_rate") == (10, 100, 0.1)
        assert result.rate("capping_rate") == (10, 40, 0.25)
        assert result.rate("execution_failure_rate") == (10, 40, 0.25)
        assert result.risk_reasons == {"invalid_stop_loss": 15, "existing_position": 5}
        assert result.order_errors == {"-2019 Margin is insufficient.": 10}
    eth = summarize(directory, symbol="ETHUSDT")
    assert eth.records == counts["symbol:ETHUSDT"]
    first_day = summarize(directory, until="2026-11-19")
    assert first_day.records == 12 * 20  # one record every 3 minutes from 12:00
    assert first_day.last is not None and first_day.last.startswith("2026-11-18T23:57")
    window = summarize(directory, since="2026-11-18T23:00", until="2026-11-19T00:30")
    assert window.records == 30


def test_summary_rate_definitions_match_the_dashboards():
    metrics = pytest.importorskip("dashboard.metrics")
    for name, (numerator, denominator) in RATES.items():
        spec = metrics.RATE_METRICS[name]
        assert (spec.numerator, spec.denominator) == (numerator, denominator)
    assert set(RATES) == set(metrics.RATE_METRICS)


def test_summary_command_prints_counts_rates_and_top_reasons(tmp_path, open_logger):
    directory = tmp_path / "audit"
    generate(directory, open_logger)
    done = run_cli("summary", str(directory), "--symbol", "BTCUSDT")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "risk_rejection_rate" in out and "(15/55)" in out
    assert "invalid_stop_loss" in out and "existing_position" not in out
    assert "order_rejection_rate" in out and "(10/100)" in out
    env_run = run_cli("summary", env={"AUDIT_DIR": str(directory)})
    assert env_run.returncode == 0 and "capping frequency: 10" in env_run.stdout
    bad = run_cli("summary", str(directory), "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_verify_exit_codes_and_keyed_trails(tmp_path, open_logger):
    directory = tmp_path / "audit"
    logger = open_logger(directory, hmac_key="k")
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.close()
    ok = run_cli("verify", str(directory), env={"AUDIT_HMAC_KEY": "k"})
    assert ok.returncode == 0 and "INTACT" in ok.stdout and "HMAC" in ok.stdout
    nokey = run_cli("verify", str(directory))
    assert nokey.returncode == 2 and "AUDIT_HMAC_KEY" in nokey.stderr
    wrong = run_cli("verify", str(directory), env={"AUDIT_HMAC_KEY": "x"})
    assert wrong.returncode == 1 and "line 1" in wrong.stdout
    missing = run_cli("verify", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such audit directory" in missing.stderr


def test_verify_checks_the_alerts_trail_with_its_prefix(tmp_path, open_logger):
    directory = tmp_path / "alerts"
    logger = open_logger(directory, file_prefix=chain.ALERTS_FILE_PREFIX)
    logger.log_event(E.ALERT_FIRED, "evaluate_rules", additional_data={"rule": "r"})
    logger.close()
    ok = run_cli("verify", str(directory), "--prefix", "alerts_")
    assert ok.returncode == 0 and "INTACT" in ok.stdout
    hint = run_cli("verify", str(directory))
    assert hint.returncode == 2 and "--prefix alerts_" in hint.stderr
    (directory / "alerts_20000101.jsonl").write_bytes(b'{"edited": true}\n')
    bad = run_cli("verify", str(directory), "--prefix", "alerts_")
    assert bad.returncode == 1 and "alerts_20000101.jsonl line 1" in bad.stdout


def test_tail_prints_pretty_or_raw(tmp_path, open_logger):
    directory = tmp_path / "audit"
    generate(directory, open_logger)
    raw = run_cli("tail", str(directory), "-n", "3", "--raw", "--no-follow")
    lines = raw.stdout.splitlines()
    assert len(lines) == 3 and all(orjson.loads(line)["hash"] for line in lines)
    pretty = run_cli("tail", str(directory), "-n", "1", "--no-follow")
    assert pretty.stdout.count("audit_checkpoint") == 1 and "seq=" in pretty.stdout


@pytest.mark.parametrize("command", ["verify", "tail", "summary", "compress"])
def test_every_command_has_help(command):
    done = run_cli(command, "--help")
    assert done.returncode == 0 and "DIR" in done.stdout


def test_iter_records_reads_plain_and_gz(tmp_path):
    (tmp_path / "audit_20261117.jsonl.gz").write_bytes(gzip.compress(LINE))
    (tmp_path / "audit_20261118.jsonl").write_bytes(LINE)
    assert len(list(iter_records(tmp_path))) == 2
    assert chain.trail_files(tmp_path)[0].name.endswith(".gz")
