"""The integrity status the dashboard shows, per bot and for all bots.

Each day file's chain is verified once, when it is indexed (``bot.audit.dayindex``),
and the verdict is kept with the day's fingerprint; live lines are checked as they
arrive. This module only puts those verdicts together: a trail is intact when every
day verifies and each day continues the previous day's chain. A closed day whose
fingerprint changed is verified again and listed in ``reverified_days``. Recorded gaps
(``audit_gap``) and crash repairs (``audit_recovered``) are counted, not failures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.audit.chaincheck import links
from bot.audit.dayindex import DayIndex


@dataclass
class IntegrityStatus:
    """Whether the hash chain verifies; gaps and crash repairs are reported, not failures."""

    ok: bool | None = None  # None: part of the history not checked yet
    checked_records: int = 0
    problem: str | None = None  # the first problem found
    gaps: int = 0  # audit_gap records
    recoveries: int = 0  # audit_recovered records
    problems: int = 0
    reverified_days: list[str] = field(default_factory=list)


def trail_status(days: Iterable[DayIndex], pending: bool) -> IntegrityStatus:
    """The status of one trail from its day indexes in day order; ``pending``: days of
    its history are still being indexed."""
    status = IntegrityStatus(ok=True)
    previous: DayIndex | None = None
    for index in days:
        ends = index.chain
        status.checked_records += ends.checked
        status.problems += ends.problems
        if not ends.ok:
            status.ok = False
            status.problem = status.problem or ends.problem
        # while days are pending, a neighbour may be missing only for now
        if previous is not None and not pending and not links(previous.chain, ends):
            status.ok = False
            status.problems += 1
            status.problem = status.problem or (
                f"audit_{index.day}.jsonl does not continue the chain of audit_{previous.day}"
                " (a day file is missing, edited or reordered)"
            )
        if ends.last_seq is not None:
            previous = index
    if pending and status.ok:
        status.ok = None
    return status


def combined(statuses: Iterable[IntegrityStatus]) -> IntegrityStatus:
    """All bots together: intact only if every bot's trail is."""
    out = IntegrityStatus(ok=True)
    for status in statuses:
        if status.ok is False:
            out.ok = False
        elif status.ok is None and out.ok is True:
            out.ok = None
        out.problem = out.problem or status.problem
        out.checked_records += status.checked_records
        out.problems += status.problems
        out.gaps += status.gaps
        out.recoveries += status.recoveries
        out.reverified_days.extend(status.reverified_days)
    return out
