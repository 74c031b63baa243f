"""Counts, rates and rejection reasons over a time range (`python -m bot.audit summary`).

Built on the day indexes (``bot.audit.dayindex``), the same ones the dashboard
uses, so both count by one rule: a whole day in the range is read from its kept
index (computed once per fingerprint; a first run indexes the days it lacks on
every core and keeps them), and only a day cut by ``--since``/``--until`` is read
again, with the records outside the range left out. All bots' trails under the
directory are summed unless one bot is asked for.

The four rates are SPEC §9's; dashboard/metrics.py has the same definitions
(bot.audit imports nothing from the rest of the project; a test keeps the two
in sync).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bot.audit import chain, pieces
from bot.audit.dayextras import RISK_REJECTION
from bot.audit.dayfile import index_file
from bot.audit.dayindex import DAY, DayIndex
from bot.audit.indexcache import Fingerprint, IndexCache
from bot.audit.trails import discover

# name -> (numerator event types, denominator event types), as in SPEC §9.
RATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "risk_rejection_rate": (("risk_rejection",), ("risk_validation", "risk_rejection")),
    "order_rejection_rate": (("order_rejected",), ("order_placed", "order_rejected")),
    "capping_rate": (("position_size_capped",), ("position_size_calculated",)),
    "execution_failure_rate": (
        ("trade_execution_failed",),
        ("trade_executed", "trade_execution_failed"),
    ),
}


@dataclass
class Summary:
    """What `summary` prints; mergeable so days can be added one by one."""

    counts: Counter[str] = field(default_factory=Counter)
    risk_reasons: Counter[str] = field(default_factory=Counter)
    order_errors: Counter[str] = field(default_factory=Counter)
    first: str | None = None
    last: str | None = None
    malformed: int = 0

    @property
    def records(self) -> int:
        return sum(self.counts.values())

    def rate(self, name: str) -> tuple[int, int, float | None]:
        """(numerator, denominator, rate or None without samples)."""
        numerator, denominator = RATES[name]
        num = sum(self.counts[t] for t in numerator)
        den = sum(self.counts[t] for t in denominator)
        return num, den, (num / den if den else None)

    def add_day(self, index: DayIndex, symbol: str | None, bot: str | None) -> None:
        """Add what a day index holds for ``symbol`` and ``bot`` (None: all)."""
        for by_key in index.counts.values():
            for (row_bot, kind, row_symbol, detail), n in by_key.items():
                if (symbol is None or row_symbol == symbol) and (bot is None or row_bot == bot):
                    self.counts[kind] += n
                    if kind == RISK_REJECTION:
                        self.risk_reasons[detail] += n
        for by_error in index.errors.values():
            for (row_bot, row_symbol, text), n in by_error.items():
                if (symbol is None or row_symbol == symbol) and (bot is None or row_bot == bot):
                    self.order_errors[text] += n
        for (row_bot, row_symbol), (first, last) in index.spans.items():
            if (symbol is None or row_symbol == symbol) and (bot is None or row_bot == bot):
                self.first = first if self.first is None or first < self.first else self.first
                self.last = last if self.last is None or last > self.last else self.last
        self.malformed += sum(index.malformed.values())


@dataclass
class _Task:
    trail: str
    path: Path
    since: str | None  # None for both: the whole day, kept in the cache
    until: str | None
    cache_dir: Path | None
    hmac_key: bytes | None
    resume: DayIndex | None


def summarize(
    directory: str | os.PathLike[str],
    since: str | None = None,
    until: str | None = None,
    symbol: str | None = None,
    workers: int | None = None,
    *,
    bot: str | None = None,
    cache_dir: Path | None = None,
    hmac_key: bytes | None = None,
    progress: TextIO | None = None,
) -> Summary:
    """Summary of records with ``since <= timestamp < until`` (ISO-8601 UTC strings, any
    prefix such as ``2026-11-26`` or ``2026-11-26T15``), optionally for one symbol and
    one bot. Day indexes are kept in ``cache_dir`` (None: nothing is kept); the first
    indexing of days reports its progress to ``progress``."""
    cache = IndexCache(cache_dir, hmac_key)
    total = Summary()
    tasks: list[_Task] = []
    for trail, trail_dir in discover(directory).items():
        files = chain.trail_files(trail_dir)
        for path in files:
            day = chain.day_of_file(path) or ""
            iso = f"{day[:4]}-{day[4:6]}-{day[6:]}"
            # Every timestamp of this file starts with `<iso>T`, so it lies in [iso+"T", iso+"U").
            if (until is not None and iso + "T" >= until) or (
                since is not None and iso + "U" <= since
            ):
                continue
            whole = (since is None or since <= iso + "T") and (until is None or iso + "U" <= until)
            resume = None
            if whole:
                kept, complete = _kept(cache, path, growing=path == files[-1])
                if kept is not None and complete:
                    total.add_day(kept, symbol, bot)
                    continue
                resume = kept  # the index of a prefix (today's file): read what follows
            task = _Task(
                trail,
                path,
                None if whole else since,
                None if whole else until,
                cache_dir if whole else None,
                hmac_key,
                resume,
            )
            tasks.append(task)
    if tasks and progress is not None:
        size = sum(_size(task.path) for task in tasks)
        print(f"indexing {len(tasks)} day file(s), {size / 1e6:,.0f} MB ...", file=progress)
    for done, index in enumerate(_map(tasks, pieces.worker_count(workers)), start=1):
        total.add_day(index, symbol, bot)
        if progress is not None and len(tasks) > 1:
            print(f"  {done}/{len(tasks)} day(s) indexed", file=progress)
    return total


def _map(tasks: list[_Task], workers: int) -> Iterator[DayIndex]:
    """The tasks' indexes as they are done, in forked worker processes when that helps."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_index_task, tasks)
        return
    with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap_unordered(_index_task, tasks)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _kept(cache: IndexCache, path: Path, *, growing: bool) -> tuple[DayIndex | None, bool]:
    """The kept index of a day file and whether it covers the whole file (see lookup)."""
    try:
        return cache.lookup(path, Fingerprint.of(path), detail=False, growing=growing)
    except FileNotFoundError:
        return None, False


def _index_task(task: _Task) -> DayIndex:
    """Index a day file (in a worker process); a whole day is kept in the cache."""
    accept: Callable[[str], bool] | None = None
    if task.since is not None or task.until is not None:
        lo, hi = task.since, task.until

        def accept(stamp: str) -> bool:
            return (lo is None or stamp >= lo) and (hi is None or stamp < hi)

    fingerprint = Fingerprint.of(task.path)
    index = index_file(task.path, task.trail, task.hmac_key, resume=task.resume, accept=accept)
    if task.cache_dir is not None:
        IndexCache(task.cache_dir, task.hmac_key).keep(task.path, index, fingerprint)
    # only what the summary reads crosses back from the worker
    return index.coarsened(DAY)
