"""The dashboard's one watcher and one ingest thread (SPEC §9), whatever the number of tabs.

``Ingest`` runs a watchdog observer over the audit directory and its bot
subdirectories (``PollingObserver`` when asked, for network and bind mounts where
inotify sees nothing) and one thread that calls ``step`` whenever a day file changes,
and at least every ``poll_interval`` as a safety net. It knows nothing of the
aggregates: the store gives it ``step`` and decides what a step does. watchdog is
imported here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from bot.audit import chain

log = logging.getLogger("dashboard.ingest")


class _WakeOnChange(FileSystemEventHandler):
    """Wakes the ingest thread when a day file (or a directory) changes."""

    def __init__(self, wake: threading.Event) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        names = [event.src_path, getattr(event, "dest_path", "")]
        if event.is_directory or any(
            chain.DAY_FILE_RE.match(os.path.basename(os.fsdecode(n))) for n in names if n
        ):
            self._wake.set()


_WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileModifiedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,
    DirCreatedEvent,
]


class Ingest:
    """One observer and one ingest thread calling ``step()``; start/stop are idempotent.

    ``step()`` returns True when it has more work queued (e.g. history still to
    index): the thread then calls it again without waiting."""

    def __init__(
        self,
        directory: Path,
        step: Callable[[], bool],
        *,
        polling: bool,
        poll_interval: float,
    ) -> None:
        self.directory = directory
        self.polling = polling
        self.poll_interval = poll_interval
        self.errors = 0
        self._step = step
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._start_observer()
        self._thread = threading.Thread(target=self._run, name="trail-ingest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        observer, self._observer = self._observer, None
        thread, self._thread = self._thread, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=10)
        if thread is not None:
            thread.join(timeout=30)

    def _start_observer(self) -> None:
        if self._observer is not None or not self.directory.is_dir():
            return  # a directory that appears later is picked up by the periodic poll
        observer: BaseObserver = (
            PollingObserver(timeout=self.poll_interval) if self.polling else Observer()
        )
        observer.name = "trail-watch"
        observer.daemon = True
        try:
            observer.schedule(
                _WakeOnChange(self._wake),
                str(self.directory),
                recursive=True,  # one subdirectory per bot (SPEC §9)
                event_filter=_WATCHED_EVENTS,
            )
            observer.start()
        except OSError as exc:  # e.g. inotify watch limit: the periodic poll still works
            log.warning(
                "cannot watch %s (%s); polling every %ss", self.directory, exc, self.poll_interval
            )
            return
        self._observer = observer

    def _run(self) -> None:
        busy = False
        while not self._stop.is_set():
            if not busy:
                self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                busy = self._step()
                observer = self._observer
                if observer is not None and not observer.is_alive():
                    # e.g. the watched directory was removed: watch again once it is back
                    self._observer = None
                    observer.stop()
                if self._observer is None and not self._stop.is_set():
                    self._start_observer()
            except Exception:
                busy = False
                self.errors += 1
                log.exception("audit trail ingest failed; retrying at the next poll")
