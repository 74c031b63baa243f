"""The logger under real failures: a full filesystem, lost write permission, SIGKILL.

Disk and permission tests mount a small tmpfs (root; skipped with the reason
otherwise). Root ignores file modes, so permission loss is made with
``chattr +i`` (immutable), which stops root too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.audit import AuditEventType, AuditLogger
from bot.audit.verify import verify_trail
from tests.audit.conftest import MIDNIGHT, ROOT, FakeClock, read_records

E = AuditEventType


def fill(path: Path) -> None:
    """Write until the filesystem is full."""
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def chattr(flag: str, path: Path) -> None:
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr {flag} unsupported here: {done.stderr.strip()}")


@pytest.mark.root
def test_disk_full_keeps_trading_calls_returning_records_the_gap_exactly_and_resumes(
    small_fs, open_logger, clock
):
    root = small_fs("256k")
    logger = open_logger(root / "audit", clock=clock, buffer_limit=50, fsync_interval=3600)
    for i in range(5):
        logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    logger.flush()
    fill(root / "filler")
    before = logger.stats.written
    for i in range(5, 205):
        assert logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i}) is None
    fitted = logger.stats.written - before  # the last page of the day file may hold a few
    assert logger.stats.held == 50
    assert logger.stats.dropped == 200 - fitted - 50 > 0
    assert logger.stats.write_errors > 0

    (root / "filler").unlink()
    logger.flush()
    logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": "after"})
    logger.close()
    records = read_records(root / "audit")
    ids = [r["additional_data"]["i"] for r in records if r["event_type"] == "heartbeat"]
    assert ids == [*range(5 + fitted + 50), "after"]  # held in order, newest dropped
    (gap,) = [r for r in records if r["event_type"] == "audit_gap"]
    assert gap["additional_data"]["dropped_records"] == logger.stats.dropped
    assert gap["additional_data"]["held_then_written"] == 50
    assert gap["additional_data"]["dropped_by_type"] == {"heartbeat": logger.stats.dropped}
    assert gap["additional_data"]["first_error"] == "ENOSPC"
    report = verify_trail(root / "audit", workers=1)
    assert report.intact and [n.event_type for n in report.notes] == ["audit_gap"]


@pytest.mark.root
def test_losing_permission_to_create_the_next_day_file_holds_records_until_it_returns(
    small_fs, open_logger
):
    root = small_fs("1m")
    directory = root / "audit"
    logger = open_logger(directory, clock=FakeClock(MIDNIGHT - 1000, 1000), fsync_interval=3600)
    logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": 0})  # 23:59:59.999999
    chattr("+i", directory)  # nobody, root included, may create files here now
    try:
        for i in range(1, 4):  # after midnight: a new day file is needed
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
        assert logger.stats.held == 3 and logger.stats.write_errors >= 1
    finally:
        chattr("-i", directory)
    logger.flush()
    logger.close()
    records = read_records(directory)
    assert [r["additional_data"].get("i") for r in records][:4] == [0, 1, 2, 3]
    (gap,) = [r for r in records if r["event_type"] == "audit_gap"]
    assert gap["additional_data"]["dropped_records"] == 0
    assert gap["additional_data"]["first_error"] == "EPERM"
    assert verify_trail(directory, workers=1).intact


@pytest.mark.root
def test_an_open_file_that_becomes_unwritable_is_reopened_when_writable_again(
    small_fs, open_logger, clock
):
    root = small_fs("1m")
    directory = root / "audit"
    logger = open_logger(directory, clock=clock, fsync_interval=3600)
    logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": 0})
    day_file = next(directory.glob("audit_*.jsonl"))
    chattr("+i", day_file)
    readonly = os.open(day_file, os.O_RDONLY)
    assert logger._writer.fd is not None
    os.dup2(readonly, logger._writer.fd)  # the descriptor now fails every write (EBADF)
    os.close(readonly)
    try:
        for i in range(1, 4):
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
        assert logger.stats.held == 3
    finally:
        chattr("-i", day_file)
    logger.flush()
    logger.close()
    records = read_records(directory)
    assert [r["additional_data"].get("i") for r in records][:4] == [0, 1, 2, 3]
    assert verify_trail(directory, workers=1).intact


CHILD = """
import os, sys
from bot.audit import AuditEventType, AuditLogger
logger = AuditLogger(audit_dir=sys.argv[1], fsync_interval=0.02, checkpoint_interval=0.05)
run, i = sys.argv[2], 0
while True:
    ack = f"{run}-{i}"
    logger.log_event(AuditEventType.HEARTBEAT, "kill_test",
                     additional_data={"ack": ack, "pad": "x" * (i % 300)})
    os.write(1, ack.encode() + b"\\n")
    i += 1
"""


def read_acks(proc: subprocess.Popen[bytes], first_deadline: float) -> tuple[list[str], bytes]:
    """Wait (with a deadline) for the child's first acknowledgement."""
    assert proc.stdout is not None
    buffered = b""
    while b"\n" not in buffered:
        ready, _, _ = select.select([proc.stdout], [], [], 0.05)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail(f"child exited early: {proc.stderr.read() if proc.stderr else ''}")
            buffered += chunk
        if time.monotonic() > first_deadline:
            pytest.fail("child never acknowledged a record")
    return [], buffered


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_record(tmp_path):
    directory = tmp_path / "audit"
    rng = random.Random(20261118)
    acked: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(22):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            _, buffered = read_acks(proc, time.monotonic() + 60)
            time.sleep(rng.uniform(0.0, 0.08))  # the random moment to kill at
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.stdout is not None
            buffered += proc.stdout.read()
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        complete = buffered[: buffered.rfind(b"\n") + 1].decode().split()
        assert complete, "the child acknowledged nothing before it was killed"
        acked.extend(complete)
    AuditLogger(audit_dir=directory).close()  # a last start repairs a torn tail, if any
    on_disk = {
        r["additional_data"]["ack"]
        for r in read_records(directory)
        if r["operation"] == "kill_test"
    }
    missing = [a for a in acked if a not in on_disk]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    report = verify_trail(directory, workers=1)
    assert report.intact, report.problem
