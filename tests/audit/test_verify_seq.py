"""`verify` checks `seq` continuity even where every hash and link holds.

Such a trail can only come from a broken writer (or a keyless forger); the
per-line `seq` check is what catches it, and these tests keep it from being
optimised away."""

from __future__ import annotations

from pathlib import Path

from bot.audit import chain
from bot.audit.verify import verify_trail


def write_sealed_trail(directory: Path, seqs: list[int]) -> None:
    """A trail whose lines are correctly hashed and linked but numbered ``seqs``."""
    sealer = chain.Sealer()
    tag = chain.run_tag("run-test")
    prev = chain.GENESIS_HASH.encode()
    lines = []
    for n, seq in enumerate(seqs):
        payload = (
            b'{"timestamp":"2026-11-26T10:00:%02d.000000Z","event_type":"heartbeat","operation":"heartbeat"'
            % n
        )
        line, prev = sealer.seal(payload, tag, seq, prev)
        lines.append(line)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "audit_20261126.jsonl").write_bytes(b"".join(lines))


def test_a_consistent_hand_sealed_trail_verifies(tmp_path: Path) -> None:
    write_sealed_trail(tmp_path, [0, 1, 2, 3, 4])
    report = verify_trail(tmp_path)
    assert report.problem is None, report.problem


def test_a_skipped_seq_with_valid_hashes_is_named_at_its_line(tmp_path: Path) -> None:
    write_sealed_trail(tmp_path, [0, 1, 2, 4, 5])
    report = verify_trail(tmp_path)
    assert report.problem is not None
    assert (report.problem.file, report.problem.line) == ("audit_20261126.jsonl", 4)


def test_a_repeated_seq_that_ends_on_the_right_number_is_still_caught(tmp_path: Path) -> None:
    write_sealed_trail(tmp_path, [0, 1, 1, 3, 4])  # the last seq is what a count predicts
    report = verify_trail(tmp_path)
    assert report.problem is not None
    assert report.problem.line == 3
