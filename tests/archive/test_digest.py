"""The day digest (SPEC §12) against a real logger's day files, plain and gzipped."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import orjson
import pytest

from bot.audit import AuditEventType, AuditLogger
from bot.audit import digest as digest_module
from bot.audit.digest import day_digest, digest_name


def _write_day(directory: Path, records: int) -> Path:
    with AuditLogger(audit_dir=directory) as log:
        for i in range(records):
            log.log_event(
                event_type=AuditEventType.HEARTBEAT, operation="t", additional_data={"i": i}
            )
    (path,) = sorted(directory.glob("audit_*.jsonl"))
    return path


def test_digest_names_the_first_and_last_record_and_the_file_hash(tmp_path: Path) -> None:
    path = _write_day(tmp_path, 300)
    data = path.read_bytes()
    lines = [orjson.loads(line) for line in data.splitlines()]
    got = day_digest(path)
    assert got == {
        "date": path.name[6:14],
        "records": len(lines),
        "first_seq": lines[0]["seq"],
        "first_hash": lines[0]["hash"],
        "last_seq": lines[-1]["seq"],
        "last_hash": lines[-1]["hash"],
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }


@pytest.mark.parametrize("chunk", [1, 7, 333, 4096])
def test_digest_does_not_depend_on_the_read_size(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_day(tmp_path, 40)
    whole = day_digest(path)
    monkeypatch.setattr(digest_module, "CHUNK", chunk)
    assert day_digest(path) == whole


def test_gzipped_day_has_the_digest_of_its_plain_bytes(tmp_path: Path) -> None:
    path = _write_day(tmp_path, 50)
    plain = day_digest(path)
    packed = path.with_name(path.name + ".gz")
    packed.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    assert day_digest(packed) == plain


def test_torn_tail_counts_in_the_hash_but_not_as_a_record(tmp_path: Path) -> None:
    path = _write_day(tmp_path, 10)
    before = day_digest(path)
    with open(path, "ab") as fh:
        fh.write(b'{"timestamp":"2026')
    after = day_digest(path)
    assert after["records"] == before["records"]
    assert after["last_hash"] == before["last_hash"]
    assert after["sha256"] != before["sha256"]


def test_empty_and_unsealed_files(tmp_path: Path) -> None:
    empty = tmp_path / "audit_20261126.jsonl"
    empty.write_bytes(b"")
    assert day_digest(empty)["records"] == 0
    assert day_digest(empty)["first_seq"] is None
    junk = tmp_path / "audit_20261127.jsonl"
    junk.write_bytes(b"not json\n")
    got = day_digest(junk)
    assert (got["records"], got["first_seq"], got["last_hash"]) == (1, None, None)


def test_a_file_outside_the_trail_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "notes.jsonl"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match=r"notes\.jsonl"):
        day_digest(other)
    assert digest_name("20261126") == "digest_20261126.json"
