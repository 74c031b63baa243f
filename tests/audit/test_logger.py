"""AuditLogger behaviour: record layout, chain across rollover and restarts, HMAC, locking,
permissions, redaction, serialization of awkward values, checkpoints, failures."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import os
import shutil
import stat
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from bot.audit import AuditDirectoryLocked, AuditEventType, AuditLogger, chain, trace
from bot.audit.verify import verify_trail
from tests.audit.conftest import MIDNIGHT, FakeClock, read_records
from tests.waiting import wait_until

E = AuditEventType


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_a_record_has_the_spec_fields_in_order_and_hash_last(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock, run_id="run-1")
    logger.log_order_placed("BTCUSDT", {"order_type": "MARKET", "side": "BUY"}, {"orderId": 7})
    logger.flush()
    (line,) = lines_of(audit_dir / "audit_20261118.jsonl")
    record = orjson.loads(line)
    assert list(record) == [
        "timestamp",
        "event_type",
        "operation",
        "symbol",
        "order_data",
        "response",
        "bot_id",
        "run_id",
        "seq",
        "prev",
        "hash",
    ]
    assert record["timestamp"] == "2026-11-18T23:00:00.000000Z"
    assert record["seq"] == 0 and record["prev"] == chain.GENESIS_HASH
    assert chain.Sealer().digest(chain.body_of(line)).decode() == record["hash"]


def test_records_at_2359_59_999999_and_midnight_land_in_their_own_day_files(audit_dir, open_logger):
    clock = FakeClock(MIDNIGHT - 1000, step_ns=1000)  # 23:59:59.999999, then 00:00:00.000000
    logger = open_logger(audit_dir, clock=clock)
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.close()
    before = orjson.loads(lines_of(audit_dir / "audit_20261118.jsonl")[0])
    after = orjson.loads(lines_of(audit_dir / "audit_20261119.jsonl")[0])
    assert before["timestamp"] == "2026-11-18T23:59:59.999999Z"
    assert after["timestamp"] == "2026-11-19T00:00:00.000000Z"
    assert after["prev"] == before["hash"] and after["seq"] == before["seq"] + 1
    assert verify_trail(audit_dir, workers=1).intact


def test_a_restart_continues_the_chain_and_time_never_goes_back(audit_dir, open_logger):
    first = open_logger(audit_dir, clock=FakeClock(MIDNIGHT + 5 * 10**9), run_id="run-a")
    first.log_event(E.BOT_STARTED, "start")
    first.close()
    second = open_logger(audit_dir, clock=FakeClock(MIDNIGHT - 10**9), run_id="run-b")
    second.log_event(E.BOT_STARTED, "start")
    second.close()
    records = read_records(audit_dir)
    assert [r["run_id"] for r in records] == ["run-a", "run-a", "run-b", "run-b"]
    assert [r["seq"] for r in records] == [0, 1, 2, 3]
    assert records[2]["prev"] == records[1]["hash"]
    assert records[2]["timestamp"] >= records[1]["timestamp"]  # clock behind: held at last
    assert not (audit_dir / "audit_20261118.jsonl").exists()
    assert verify_trail(audit_dir, workers=1).intact


def test_hmac_trail_verifies_only_with_its_key(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock, hmac_key="k3y")
    for i in range(5):
        logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    logger.close()
    assert verify_trail(audit_dir, b"k3y", workers=1).intact
    unkeyed = verify_trail(audit_dir, None, workers=1)
    assert unkeyed.needs_key and "AUDIT_HMAC_KEY" in str(unkeyed.problem)
    wrong = verify_trail(audit_dir, b"other", workers=1)
    assert not wrong.intact and wrong.problem is not None and wrong.problem.line == 1


def test_a_second_writer_on_the_same_directory_is_refused_with_a_clear_message(
    audit_dir, open_logger
):
    open_logger(audit_dir)
    with pytest.raises(AuditDirectoryLocked, match="already being written by another process"):
        AuditLogger(audit_dir=audit_dir)


def test_files_are_owner_only(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock)
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.close()
    assert stat.S_IMODE(audit_dir.stat().st_mode) == 0o700
    for path in audit_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_secret_keys_are_redacted_at_any_depth_and_configured_values_everywhere(
    audit_dir, open_logger, clock
):
    logger = open_logger(audit_dir, clock=clock, redact_values=("s3cr3t-value",))
    logger.log_event(
        E.API_ERROR,
        "place_order",
        order_data={"symbol": "BTCUSDT", "apiKey": "AAA", "params": {"signature": "BBB"}},
        response={"items": [{"X-MBX-APIKEY": "CCC"}, {"ok": 1}], "note": "has s3cr3t-value in"},
        error={"password": "DDD", "auth_token": "EEE", "message": "token expired"},
        additional_data={"hmac_key": "FFF", "secret": {"nested": "GGG"}},
    )
    logger.flush()
    raw = next(audit_dir.glob("audit_*.jsonl")).read_bytes()
    for secret in (b"AAA", b"BBB", b"CCC", b"DDD", b"EEE", b"FFF", b"GGG", b"s3cr3t-value"):
        assert secret not in raw
    record = read_records(audit_dir)[0]
    assert record["order_data"]["params"]["signature"] == "[REDACTED]"
    assert record["response"]["items"][1] == {"ok": 1}
    assert record["error"]["message"] == "token expired"  # values are not keys
    assert verify_trail(audit_dir, workers=1).intact


class Side(enum.Enum):
    BUY = "BUY"


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


def test_awkward_values_serialize_and_never_raise(audit_dir, open_logger, clock, caplog):
    logger = open_logger(audit_dir, clock=clock)
    circular: dict[str, Any] = {"a": 1}
    circular["self"] = circular
    logger.log_event(
        E.ORDER_PLACED,
        "place_order",
        order_data={
            "price": Decimal("43125.123456789012345"),
            "nan_dec": Decimal("NaN"),
            "when": dt.datetime(2026, 11, 18, 12, 0, tzinfo=dt.UTC),
            "side": Side.BUY,
            "qty": np.float64(0.5),
            "n": np.int64(3),
            "arr": np.array([1, 2]),
            "nan": float("nan"),
            "inf": float("inf"),
            "np_inf": np.float64("-inf"),
        },
    )
    with caplog.at_level(logging.WARNING, logger="bot.audit"):
        logger.log_event(E.API_ERROR, "x", error={"obj": Opaque(), "loop": circular, "big": 2**64})
    logger.log_event(E.API_ERROR, "x", error=["not", "an", "object"])  # type: ignore[arg-type]
    logger.log_event(42, None)  # type: ignore[arg-type]
    logger.flush()
    raw = next(audit_dir.glob("audit_*.jsonl")).read_bytes()
    assert b"NaN" not in raw and b"Infinity" not in raw
    assert b'"price":43125.123456789012345' in raw  # exact digits, a JSON number
    first, second, third = read_records(audit_dir)
    data = first["order_data"]
    assert data["when"].startswith("2026-11-18T12:00:00") and data["side"] == "BUY"
    assert (data["qty"], data["n"], data["arr"]) == (0.5, 3, [1, 2])
    assert data["nan"] is None and data["inf"] is None and data["np_inf"] is None
    assert data["nan_dec"] is None
    assert second["error"]["obj"] == "<Opaque>"
    assert second["error"]["big"] == str(2**64)  # beyond JSON's 64-bit numbers: exact digits
    assert "int beyond 64 bits" in second["audit_note"]["stringified_types"]
    assert "Opaque" in second["audit_note"]["stringified_types"]
    assert "nesting_too_deep" in second["audit_note"]["stringified_types"]
    assert "unserializable" in caplog.text
    assert third["error"] == {"value": ["not", "an", "object"]}
    fourth = orjson.loads(raw.splitlines()[3])  # written as given; readers flag the type
    assert (fourth["event_type"], fourth["operation"]) == ("42", "None")
    assert logger.stats.internal_errors == 0
    assert verify_trail(audit_dir, workers=1).intact


def test_trace_context_tags_every_event_of_a_flow(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock)
    with trace() as tid:
        logger.log_event(E.SIGNAL_PROCESSING, "candle_analysis", symbol="BTCUSDT")
        logger.log_event(E.RISK_VALIDATION, "validate_risk", symbol="BTCUSDT")
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.flush()
    records = read_records(audit_dir)
    assert [r.get("trace_id") for r in records] == [tid, tid, None]


def test_checkpoints_cover_the_record_before_them(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock, checkpoint_interval=3600)
    for _ in range(3):
        logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.checkpoint()
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.close()  # writes a final checkpoint
    records = read_records(audit_dir)
    checkpoints = [r for r in records if r["event_type"] == "audit_checkpoint"]
    assert len(checkpoints) == 2
    for cp in checkpoints:
        covered = records[cp["seq"] - 1]
        assert cp["additional_data"]["covers_seq"] == covered["seq"]
        assert cp["additional_data"]["covers_hash"] == covered["hash"]
    anchor = chain.read_anchor(audit_dir)
    assert anchor is not None and anchor["seq"] == records[-1]["seq"]
    assert anchor["hash"] == records[-1]["hash"]


def test_close_without_checkpoint_leaves_the_callers_last_record_last(
    audit_dir, open_logger, clock
):
    logger = open_logger(audit_dir, clock=clock, checkpoint_interval=3600)
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.checkpoint()
    logger.log_event(E.BOT_STOPPED, "main")
    logger.close(checkpoint=False)
    records = read_records(audit_dir)
    assert [r["event_type"] for r in records] == ["heartbeat", "audit_checkpoint", "bot_stopped"]
    anchor = chain.read_anchor(audit_dir)
    assert anchor is not None and anchor["hash"] == records[-1]["hash"]
    assert verify_trail(audit_dir, workers=1).intact


def test_a_torn_last_line_is_repaired_at_start_with_audit_recovered(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock)
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.close()
    path = next(audit_dir.glob("audit_*.jsonl"))
    with open(path, "ab") as fh:
        fh.write(b'{"timestamp":"2026-11-18T23:00:01.000000Z","event_ty')
    torn = verify_trail(audit_dir, workers=1)
    assert torn.problem is not None and torn.problem.kind == "torn"
    logger = open_logger(audit_dir, clock=clock)
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.close()
    kinds = [r["event_type"] for r in read_records(audit_dir)]
    assert "audit_recovered" in kinds
    report = verify_trail(audit_dir, workers=1)
    assert report.intact
    assert [n.data["reason"] for n in report.notes] == ["torn_last_line"]


def test_an_fsync_error_is_reported_not_counted_as_success(audit_dir, open_logger, clock, caplog):
    logger = open_logger(audit_dir, clock=clock, fsync_interval=3600)
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.flush()
    anchored = chain.read_anchor(audit_dir)
    fd = logger._writer.fd
    assert fd is not None
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)  # fdatasync on /dev/null fails with EINVAL: a real OS error
    try:
        logger.log_event(E.HEARTBEAT, "heartbeat")
        with caplog.at_level(logging.ERROR, logger="bot.audit"):
            logger.flush()
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
    assert logger.stats.fsync_errors == 1
    assert "audit fsync failed" in caplog.text
    assert chain.read_anchor(audit_dir) == anchored  # the anchor did not advance


def test_logging_after_close_is_dropped_and_counted_without_raising(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock)
    logger.close()
    logger.log_event(E.HEARTBEAT, "heartbeat")
    assert logger.stats.dropped == 1


def test_a_day_file_deleted_while_open_is_restored_and_the_chain_stays_intact(
    audit_dir, open_logger, clock
):
    logger = open_logger(audit_dir, clock=clock, fsync_interval=0.02)
    for i in range(10):
        logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    next(audit_dir.glob("audit_*.jsonl")).unlink()
    logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": 10})
    wait_until(lambda: logger.stats.recoveries == 1, what="the deleted file restored")
    logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": 11})
    logger.close()
    records = read_records(audit_dir)
    ids = [r["additional_data"].get("i") for r in records if r["event_type"] == "heartbeat"]
    assert ids == list(range(12))
    assert any(r["event_type"] == "audit_recovered" for r in records)
    assert verify_trail(audit_dir, workers=1).intact


def test_a_deleted_directory_is_recreated_with_every_record(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock, fsync_interval=0.02)
    logger.log_event(E.BOT_STARTED, "start")
    shutil.rmtree(audit_dir)
    for i in range(5):
        logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})  # never raises
    wait_until(lambda: logger.stats.recoveries == 1, what="the deleted directory restored")
    with pytest.raises(AuditDirectoryLocked):  # the re-created directory is locked too
        AuditLogger(audit_dir=audit_dir)
    logger.log_event(E.BOT_STOPPED, "stop")
    logger.close()
    kinds = [r["event_type"] for r in read_records(audit_dir)]
    assert kinds[0] == "bot_started" and kinds.count("heartbeat") == 5 and "bot_stopped" in kinds
    assert verify_trail(audit_dir, workers=1).intact


def test_concurrent_threads_share_one_intact_chain(tmp_path: Path) -> None:
    per_thread, threads = 3000, 4
    logger = AuditLogger(audit_dir=tmp_path / "a", fsync_interval=0.01, checkpoint_interval=0.02)

    def work(n: int) -> None:
        for i in range(per_thread):
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"thread": n, "i": i})
            if i % 500 == 0:
                logger.checkpoint()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    logger.close()
    records = [r for r in read_records(tmp_path / "a") if r["event_type"] == "heartbeat"]
    assert len(records) == per_thread * threads
    for n in range(threads):  # each thread's records in its own order
        mine = [r["additional_data"]["i"] for r in records if r["additional_data"]["thread"] == n]
        assert mine == list(range(per_thread))
    assert verify_trail(tmp_path / "a", workers=1).intact


def test_every_record_carries_the_bot_id_before_the_chain_fields(audit_dir, open_logger, clock):
    logger = open_logger(audit_dir, clock=clock, bot_id="alpha-1", run_id="run-1")
    logger.log_event(E.HEARTBEAT, "heartbeat")
    logger.close()
    lines = b"".join(p.read_bytes() for p in chain.trail_files(audit_dir)).splitlines()
    assert len(lines) == 2  # the heartbeat and the closing checkpoint
    for line in lines:
        assert b',"bot_id":"alpha-1","run_id":"run-1","seq":' in line
        assert orjson.loads(line)["bot_id"] == "alpha-1"
    assert verify_trail(audit_dir, workers=1).intact


def test_the_closed_day_is_sealed_into_the_next_days_chain(audit_dir, open_logger):
    from bot.audit.digest import day_digest

    clock = FakeClock(MIDNIGHT - 3 * 10**9, step_ns=10**9)  # 23:59:57, then every second
    logger = open_logger(audit_dir, clock=clock, fsync_interval=3600)
    for i in range(6):
        logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    logger.flush()
    closed = audit_dir / "audit_20261118.jsonl"
    seals = [
        r
        for r in read_records(audit_dir)
        if r["event_type"] == "audit_checkpoint" and r["operation"] == "seal_day"
    ]
    assert len(seals) == 1 and seals[0]["timestamp"].startswith("2026-11-19")
    digest = seals[0]["additional_data"]["digest"]
    assert digest == day_digest(closed)
    last_of_day = orjson.loads(closed.read_bytes().splitlines()[-1])
    assert (digest["last_seq"], digest["last_hash"]) == (last_of_day["seq"], last_of_day["hash"])
    assert digest["date"] == "20261118" and digest["records"] == 3
    logger.close()
    assert verify_trail(audit_dir, workers=1).intact


def test_a_restart_on_a_later_day_seals_the_last_day_of_the_previous_run(audit_dir, open_logger):
    first = open_logger(audit_dir, clock=FakeClock(MIDNIGHT - 10 * 10**9))
    first.log_event(E.HEARTBEAT, "heartbeat")
    first.close()
    second = open_logger(audit_dir, clock=FakeClock(MIDNIGHT + 3600 * 10**9))
    second.log_event(E.HEARTBEAT, "heartbeat")
    second.close()
    third = open_logger(audit_dir, clock=FakeClock(MIDNIGHT + 7200 * 10**9))
    third.log_event(E.HEARTBEAT, "heartbeat")
    third.close()
    seals = [r for r in read_records(audit_dir) if r["operation"] == "seal_day"]
    assert [s["additional_data"]["digest"]["date"] for s in seals] == ["20261118"]
