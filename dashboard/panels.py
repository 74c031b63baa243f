"""What the dashboard server computes once for every viewer (issue 14).

No streamlit here. Two pieces, each one per server process (the app keeps them in
``st.cache_resource``):

* ``SharedPanels``: panel data and figures keyed by (name, data version, view). The
  first tab that asks computes; every other tab with the same view gets the same
  object until the store's version moves. Work grows with change, not with viewers.
* ``AlertHistory``: the ``alerts`` process's records, read again only when the files
  changed (a directory listing and a stat per check, at most once a second).
* ``AlertMonitor``: the alert rules evaluated by one thread beside the store's
  ingest thread — when the trail changed, and at least every ``interval`` seconds
  (staleness needs the clock) — never inside a page run. ``version`` moves when a
  rule's state changes, so a page only redraws alert states when they changed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot.audit import chain
from bot.audit.trails import DEFAULT_BOT
from dashboard.alert_engine import AlertEngine, RuleState
from dashboard.alert_records import ALERTS_FILE_PREFIX, read_alert_history
from dashboard.alert_rules import Rule

log = logging.getLogger("dashboard.panels")

T = TypeVar("T")


class SharedPanels:
    """A bounded LRU of computed panels; one computation per key, whatever the viewers.

    Computing holds the lock: two tabs asking for the same new panel at once compute
    it once (the second waits and takes the result), and everything runs under the GIL
    anyway. The lock is reentrant: a panel may be computed from other panels."""

    def __init__(self, max_entries: int = 512, *, hold: float = 0.5) -> None:
        self._max = max_entries
        self._hold = hold
        self._lock = threading.RLock()
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._version = -1
        self._version_at = -1e18
        self.computed = 0  # computations done (tests and the benchmark read it)

    def version(self, current: int) -> int:
        """The data version pages are drawn for: the store's ``current`` version, taken at
        most once per ``hold`` seconds. While records stream in, the store's version moves
        on every batch; tabs refreshing a few hundred ms apart then still ask for the same
        version, and its panels are computed once for all of them."""
        now = time.monotonic()
        with self._lock:
            if current != self._version and now - self._version_at >= self._hold:
                self._version, self._version_at = current, now
            return self._version

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                found: T = self._values[key]
                return found
            value = compute()
            self.computed += 1
            self._values[key] = value
            while len(self._values) > self._max:
                self._values.popitem(last=False)
            return value


class AlertHistory:
    """``alert_fired`` / ``alert_resolved`` records of an alerts directory, oldest first."""

    def __init__(self, alerts_dir: str, *, min_interval: float = 1.0) -> None:
        self.alerts_dir = alerts_dir
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._checked_at = -1e18
        self._signature: tuple[tuple[str, int, int], ...] = ()
        self._records: list[dict[str, Any]] = []
        self._read_for: tuple[tuple[str, int, int], ...] | None = None

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """(name, size, mtime ns) of every alerts day file; checked at most once a second."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at >= self._min_interval:
                self._checked_at = now
                found = []
                for path in chain.trail_files(Path(self.alerts_dir), prefix=ALERTS_FILE_PREFIX):
                    try:
                        info = os.stat(path)
                    except OSError:
                        continue
                    found.append((path.name, info.st_size, info.st_mtime_ns))
                self._signature = tuple(found)
            return self._signature

    def records(self) -> list[dict[str, Any]]:
        """The records as of the current signature (shared: callers must not modify)."""
        signature = self.signature()
        with self._lock:
            if self._read_for != signature:
                self._records = read_alert_history(self.alerts_dir)
                self._read_for = signature
            return self._records


class CountsSource(Protocol):
    """What the monitor reads from the store."""

    @property
    def version(self) -> int: ...

    def bots(self) -> list[str]: ...

    def last_times(self, *, bot: str | None = None) -> tuple[float | None, float | None]: ...

    def counts(
        self, start: float, end: float, symbol: str | None = None, *, bot: str | None = None
    ) -> Mapping[str, int]: ...

    def wait_for_version(self, version: int, timeout: float) -> bool: ...


class AlertMonitor:
    """The alert rules of this server process, evaluated by its own thread for each bot
    separately (a rule with ``bot`` only for that bot), as the ``alerts`` process does."""

    def __init__(
        self,
        rules: list[Rule] | None,
        error: str | None = None,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules  # None: the rules file could not be loaded (``error`` says why)
        self.error = error
        self.interval = interval
        self.version = 0  # moves when any rule's state changes
        self._engines: dict[str, AlertEngine] = {}
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def states(self) -> dict[str, RuleState]:
        """A snapshot of every rule's state: by rule name, or "rule [bot]" with many bots."""
        with self._lock:
            many = len(self._engines) > 1
            return {
                f"{name} [{bot}]" if many else name: replace(state)
                for bot, engine in sorted(self._engines.items())
                for name, state in engine.states.items()
            }

    def evaluate(self, source: CountsSource) -> None:
        """One evaluation now (the thread's step; tests call it directly)."""
        if self.rules is None:
            return
        rules = self.rules
        with self._lock:
            now = self._clock()
            changed = False
            for bot in source.bots() or [DEFAULT_BOT]:
                engine = self._engines.get(bot)
                if engine is None:
                    engine = AlertEngine([r for r in rules if r.bot in (None, bot)])
                    self._engines[bot] = engine
                    changed = True
                before = [s.state for s in engine.states.values()]
                seen = [t for t in source.last_times(bot=bot) if t is not None]

                def counts(start: float, end: float, symbol: str | None, bot: str = bot) -> Any:
                    return source.counts(start, end, symbol, bot=bot)

                engine.evaluate(now, counts, max(seen, default=None))
                changed |= before != [s.state for s in engine.states.values()]
            if changed:
                self.version += 1

    def start(self, source: CountsSource) -> None:
        """Evaluate once now, then on every store change and every ``interval`` s."""
        if self.rules is None or self._thread is not None:
            return
        self.evaluate(source)
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="alert-monitor", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self, source: CountsSource) -> None:
        seen = source.version
        while not self._stop.is_set():
            source.wait_for_version(seen, self.interval)
            if self._stop.is_set():
                return
            seen = source.version
            try:
                self.evaluate(source)
            except Exception:  # a bad evaluation must not end monitoring
                log.exception("alert evaluation failed; retrying")
            self._stop.wait(self.interval / 2)  # at most two evaluations per interval
