"""Reading lines in batches (``reader.read_lines``, the follower's runs) says of every line
exactly what reading it alone says: the record and its timestamp, or why it is malformed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.audit import AuditLogger
from bot.audit.reader import TrailFollower, read_line, read_lines

from .conftest import FakeClock

NEWLINE_STAMP = (
    b'{"timestamp":"2026-11-19T00:00:01.000000Z\\n","event_type":"heartbeat",'
    b'"operation":"heartbeat"}'
)
MALFORMED = [
    b"",
    b"{not json",
    b'{"timestamp":"\xff\xfe"}',
    b"[1, 2]",
    NEWLINE_STAMP,
    b'{"timestamp":"2026-11-19T00:00:01.000000Z","event_type":"heartbeat","operation":"x",'
    b'"symbol":1}',
    b'{"timestamp":"2026-11-19T00:00:01.000000Z","event_type":"no_such_event","operation":"x"}',
]


def written_lines(
    directory: Path, open_logger: Callable[..., AuditLogger], clock: FakeClock
) -> list[bytes]:
    logger = open_logger(directory, clock=clock)
    for n in range(12):
        logger.log_event("heartbeat", "heartbeat", additional_data={"n": n})
        logger.log_event("risk_validation", "validate_risk", symbol="BTCUSDT", trace_id=f"t{n}")
    logger.close()
    (path,) = directory.glob("audit_*.jsonl")
    return path.read_bytes().split(b"\n")[:-1]


def test_a_batch_of_writer_lines_reads_as_each_line_alone(
    audit_dir: Path, open_logger: Callable[..., AuditLogger], clock: FakeClock
) -> None:
    lines = written_lines(audit_dir, open_logger, clock)
    parsed, stamps, malformed = read_lines(lines)
    assert malformed == 0
    assert list(zip(parsed, stamps, strict=True)) == [read_line(line) for line in lines]


def test_a_batch_with_malformed_lines_names_each_reason_as_reading_it_alone_does(
    audit_dir: Path, open_logger: Callable[..., AuditLogger], clock: FakeClock
) -> None:
    good = written_lines(audit_dir, open_logger, clock)
    batch = [line for pair in zip(good, MALFORMED + good, strict=False) for line in pair]
    parsed, stamps, malformed = read_lines(batch)
    expected = [read_line(line) if line else "empty_line" for line in batch]
    assert malformed == len(MALFORMED)
    for got, ts, want in zip(parsed, stamps, expected, strict=True):
        if isinstance(want, str):
            assert (got, ts) == (want, 0.0)
        else:
            assert (got, ts) == want
    assert parsed[2 * MALFORMED.index(NEWLINE_STAMP) + 1] == "bad_timestamp"


def test_a_line_longer_than_the_limit_is_too_long_in_a_batch_too(
    audit_dir: Path, open_logger: Callable[..., AuditLogger], clock: FakeClock
) -> None:
    lines = written_lines(audit_dir, open_logger, clock)
    limit = max(map(len, lines)) - 1
    parsed, _, malformed = read_lines(lines, max_line=limit)
    assert malformed == sum(len(line) > limit for line in lines) > 0
    assert {p for p, line in zip(parsed, lines, strict=True) if len(line) > limit} == {
        "line_too_long"
    }


def test_the_follower_counts_a_timestamp_ending_in_a_newline_as_malformed(
    audit_dir: Path, open_logger: Callable[..., AuditLogger], clock: FakeClock
) -> None:
    lines = written_lines(audit_dir, open_logger, clock)
    (path,) = audit_dir.glob("audit_*.jsonl")
    with open(path, "ab") as fh:
        fh.write(NEWLINE_STAMP + b"\n")
    follower = TrailFollower(audit_dir)
    (run,) = follower.poll_runs()
    assert (run.first, len(run.lines), run.malformed) == (1, len(lines) + 1, 1)
    assert run.parsed[-1] == "bad_timestamp"
    assert follower.stats.malformed_by_reason == {"bad_timestamp": 1}
    assert follower.stats.records == len(lines)
