"""The head anchor is checked against its record wherever that record sits in the day file
(verify searches the file's tail first, then the whole file)."""

from __future__ import annotations

from pathlib import Path

import orjson

from bot.audit import AuditEventType, AuditLogger, chain
from bot.audit.verify import verify_trail
from tests.audit.conftest import FakeClock


def test_an_anchor_far_from_the_end_of_a_large_day_file_is_still_found(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    with AuditLogger(audit_dir=directory, clock=FakeClock(), fsync_interval=3600) as logger:
        for i in range(18_000):  # > 4 MB after the anchored record
            logger.log_event(AuditEventType.HEARTBEAT, "heartbeat", additional_data={"i": i})
    (path,) = chain.trail_files(directory)
    assert path.stat().st_size > 5 << 20
    early = orjson.loads(path.read_bytes().split(b"\n", 11)[10])
    anchor: dict[str, object] = {
        "version": 1,
        "file": path.name,
        "seq": early["seq"],
        "hash": early["hash"],
        "run_id": early["run_id"],
    }
    anchor["mac"] = chain.Sealer().digest(chain.anchor_message(anchor)).decode()
    (directory / chain.ANCHOR_FILE).write_bytes(orjson.dumps(anchor))
    report = verify_trail(directory, workers=1)
    assert report.intact and report.anchor.startswith("matches seq 10 ")
    anchor["hash"] = "f" * 64
    anchor["mac"] = chain.Sealer().digest(chain.anchor_message(anchor)).decode()
    (directory / chain.ANCHOR_FILE).write_bytes(orjson.dumps(anchor))
    assert verify_trail(directory, workers=1).problem is not None
