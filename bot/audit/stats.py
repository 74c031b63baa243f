"""The writer's counters, shared by its parts (serializer, chain writer, durability)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class AuditStats:
    """Counters a caller or a test can read; all monotonic for the process."""

    written: int = 0
    held: int = 0
    dropped: int = 0
    write_errors: int = 0
    fsync_errors: int = 0
    fsyncs: int = 0
    serialization_fallbacks: int = 0
    redactions: int = 0
    recoveries: int = 0
    internal_errors: int = 0
    dropped_by_type: Counter[str] = field(default_factory=Counter)
