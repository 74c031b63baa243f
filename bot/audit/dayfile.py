"""Reading a day file for its index: indexing its lines in batches, and the lines of a trace.

``bot.audit.dayindex`` says what a record contributes and holds no I/O; here a day
file is read in large chunks of complete lines, each batch parsed and validated
(``reader.read_lines``), checked against the chain and added with the garbage
collector paused, and the lines a trace's byte offsets point at are read back.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bot.audit import chain
from bot.audit.chaincheck import ChainCheck
from bot.audit.dayindex import DayIndex
from bot.audit.reader import open_trail_file, read_lines


def index_lines(
    index: DayIndex,
    check: ChainCheck,
    name: str,
    lines: list[bytes],
    max_year: int,
    accept: Callable[[str], bool] | None = None,
) -> None:
    """Add complete lines (without newlines) that follow what ``index`` holds: each is
    parsed and validated, checked against the chain, and added (a malformed one is
    counted). ``accept``, when given, picks the records added by their timestamp text (a
    part of a day); the chain check covers every line."""
    first = index.lines + 1
    parsed, stamps, malformed = read_lines(lines, max_year)
    index.add_run(first, lines, parsed, stamps, malformed, accept)
    check.check(name, first, lines)


def index_file(
    path: Path,
    trail: str,
    hmac_key: bytes | None,
    *,
    resume: DayIndex | None = None,
    end: int | None = None,
    accept: Callable[[str], bool] | None = None,
) -> DayIndex:
    """The index of the complete lines of ``path`` (up to byte ``end``), continuing
    ``resume`` (the index of a prefix of this file) when given; ``accept``: see
    ``index_lines``."""
    day = chain.day_of_file(path)
    assert day is not None
    index = resume if resume is not None else DayIndex(trail, day)
    check = ChainCheck(hmac_key, index.chain)
    max_year = time.gmtime().tm_year + 1
    with open_trail_file(path) as fh:
        if index.offset:
            fh.seek(index.offset)
        partial = b""
        while end is None or index.offset + len(partial) < end:
            want = 8 << 20 if end is None else min(8 << 20, end - index.offset - len(partial))
            chunk = fh.read(want)
            if not chunk:
                break
            data = partial + chunk
            cut = data.rfind(b"\n") + 1
            partial = data[cut:]
            if cut:
                lines = data[: cut - 1].split(b"\n")
                with gc_paused():
                    index_lines(index, check, path.name, lines, max_year, accept)
    return index


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of lines is indexed: a batch
    allocates many containers (each record's dicts), and collecting every few hundred of
    them would walk the growing index over and over; what a batch leaves is collected
    after it (records are freed by reference counting; they hold no cycles)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def iter_lines_at(path: Path, offsets: Iterable[int]) -> Iterator[bytes]:
    """The lines of ``path`` starting at the given byte offsets (trace lookups)."""
    with open_trail_file(path) as fh:
        for offset in offsets:
            fh.seek(offset)
            line = fh.readline()
            if line.endswith(b"\n"):
                yield line[:-1]
