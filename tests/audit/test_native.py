"""verify's C line scan (bot/audit/native/_chain.c) against the pure-Python reference: the
two scans agree line for line on hundreds of tampered trails, keyed and not."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.audit import AuditEventType, AuditLogger, chain, native
from bot.audit import verify as verify_module
from bot.audit.verify import verify_trail
from tests.audit.test_tamper import KINDS, mutate, write_trail

E = AuditEventType
NOTES = verify_module.NOTE_TYPES

if native.lib is None and os.environ.get("AUDIT_NATIVE_REQUIRED") == "1":
    raise RuntimeError(f"AUDIT_NATIVE_REQUIRED=1 but verify's C scan is {native.unavailable}")
pytestmark = pytest.mark.skipif(native.lib is None, reason=f"verify's C scan {native.unavailable}")


@pytest.fixture
def python_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Loggers and verifiers created inside use the pure-Python reference."""
    monkeypatch.setattr(native, "lib", None)
    yield


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("native-scan")
    write_trail(base / "trail", seed=11)
    write_trail(base / "other", seed=12)
    return base / "trail", base / "other"


def both_scans(directory: Path, key: bytes | None) -> list[tuple[object, object]]:
    """(C, Python) scan results for every day file, from the chain state before it."""
    seq, prev = 0, chain.GENESIS_HASH.encode()
    out = []
    for path in chain.trail_files(directory):
        data = path.read_bytes()
        lines = data[: data.rfind(b"\n")].split(b"\n") if b"\n" in data else []
        day = verify_module._line_start(path, chain.FILE_PREFIX)
        notes_c: list[tuple[int, bytes]] = []
        notes_py: list[tuple[int, bytes]] = []
        assert native.lib is not None
        fast = native.lib.scan(data, seq, prev, key, day, chain.EVENT_TYPE_AT, NOTES, notes_c)
        slow = verify_module._scan_lines(lines, seq, prev, key, day, notes_py)
        out.append(((fast, notes_c), (slow, notes_py)))
        seq, prev = slow[1], slow[2]
    return out


def test_native_and_python_scans_agree_on_every_mutation(pristine, tmp_path: Path) -> None:
    trail, other = pristine
    rng = random.Random(2026)
    for round_ in range(180):
        work = tmp_path / f"t{round_}"
        work.mkdir()
        for path in trail.iterdir():
            (work / path.name).write_bytes(path.read_bytes())
        mutate(rng, KINDS[round_ % len(KINDS)], work, other)
        for fast, slow in both_scans(work, None):
            assert fast == slow, f"round {round_}"


def test_native_scan_checks_hmac_and_reports_notes(tmp_path: Path) -> None:
    key = b"secret-key"
    with AuditLogger(audit_dir=tmp_path / "a", hmac_key=key) as logger:
        for i in range(50):
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    (path,) = chain.trail_files(tmp_path / "a")
    data = path.read_bytes()
    day = verify_module._line_start(path, chain.FILE_PREFIX)
    assert native.lib is not None
    genesis = chain.GENESIS_HASH.encode()
    bad, seq, _ = native.lib.scan(data, 0, genesis, key, day, chain.EVENT_TYPE_AT, NOTES, None)
    assert bad is None and seq == 51  # 50 records and the closing checkpoint
    assert (
        native.lib.scan(data, 0, genesis, b"wrong", day, chain.EVENT_TYPE_AT, NOTES, None)[0] == 0
    )
    assert native.lib.scan(data, 0, genesis, None, day, chain.EVENT_TYPE_AT, NOTES, None)[0] == 0


def test_the_python_reference_alone_still_writes_and_verifies(
    tmp_path: Path, python_only: None
) -> None:
    with AuditLogger(audit_dir=tmp_path / "a") as logger:
        for i in range(20):
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    assert verify_trail(tmp_path / "a", workers=2).intact
