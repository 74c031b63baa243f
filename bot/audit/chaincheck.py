"""The hash chain of one day file, checked line by line as the file is indexed.

``ChainCheck`` verifies lines in order with the verifier's own check
(``bot.audit.verify.scan_lines``) and keeps the day's ends (``ChainEnds``) with the
verdict, so the verdict can be kept with the day's index and a reader of many days
only has to check that consecutive days link (``links``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.audit import chain
from bot.audit.verify import scan_lines


@dataclass
class ChainEnds:
    """The hash chain of one day file: its ends and whether it verifies inside the file.

    Whether consecutive days link (this file's first ``prev`` is the previous file's
    last hash) is for the reader of many days to check (``links``)."""

    first_seq: int | None = None
    first_prev: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    ok: bool = True
    problem: str | None = None
    problems: int = 0
    checked: int = 0
    gaps: int = 0
    recoveries: int = 0


class ChainCheck:
    """Incremental verification of one file's lines, in order.

    Runs of lines go through the verifier's own check (``bot.audit.verify.scan_lines``);
    only a line it refuses takes the slow path, which says what is wrong and re-anchors
    the chain on that line so one bad line is reported once."""

    def __init__(self, hmac_key: bytes | None, ends: ChainEnds | None = None) -> None:
        self.ends = ends if ends is not None else ChainEnds()
        self._key = hmac_key
        self._sealer = chain.Sealer(hmac_key)
        self._seq = self.ends.last_seq
        last = self.ends.last_hash
        self._hash = last.encode() if last is not None else None

    def check(self, name: str, first: int, lines: list[bytes]) -> None:
        """Check lines (bytes without newline; ``first``: the number of the first) that
        follow what was checked."""
        at = 0
        while at < len(lines):
            if self._seq is None or self._hash is None:
                self._check_one(name, first + at, lines[at])  # nothing to link to yet
                at += 1
                continue
            bad, seq, prev = scan_lines(
                lines[at:] if at else lines, self._seq + 1, self._hash, self._key
            )
            good = (len(lines) - at) if bad is None else bad
            self.ends.checked += good
            self._seq, self._hash = seq - 1, prev
            if bad is None:
                break
            self._check_one(name, first + at + bad, lines[at + bad])
            at += bad + 1
        self.ends.last_seq = self._seq
        self.ends.last_hash = self._hash.decode() if self._hash is not None else None

    def _check_one(self, name: str, number: int, raw: bytes) -> None:
        seal = chain.parse_seal(raw)
        ends = self.ends
        if seal is None:
            self._fail(name, number, "not a sealed audit record (edited or torn)")
            self._seq = self._hash = None
            return
        seq, prev, digest = seal
        if ends.first_seq is None and ends.checked == 0 and ends.problems == 0:
            ends.first_seq, ends.first_prev = seq, prev.decode()
        if self._sealer.digest(chain.body_of(raw)) != digest:
            hint = "" if self._sealer.keyed else " (or the trail is HMAC-sealed: set the key)"
            self._fail(name, number, f"hash does not match the content: edited{hint}")
        elif self._hash is not None and prev != self._hash:
            self._fail(name, number, "prev does not link to the previous record")
        elif self._seq is not None and seq != self._seq + 1:
            self._fail(name, number, f"seq {seq} follows {self._seq}: inserted/deleted/reordered")
        self._seq, self._hash = seq, digest
        ends.checked += 1

    def _fail(self, name: str, number: int, what: str) -> None:
        ends = self.ends
        ends.problems += 1
        ends.ok = False
        if ends.problem is None:
            ends.problem = f"{name} line {number}: {what}"


def links(previous: ChainEnds, following: ChainEnds) -> bool:
    """Whether ``following`` (a later day file) continues the chain ``previous`` ended."""
    if following.first_seq is None or previous.last_seq is None:
        return True  # an empty or unsealed file: its own check names the problem
    return following.first_prev == previous.last_hash and following.first_seq == (
        previous.last_seq + 1
    )
