"""What one dashboard view shows: the time window, symbol, bot and event types (SPEC §9).

Pure (no streamlit): the pages read these from the URL-bound sidebar widgets and
hand a ``View`` to ``dashboard.panels``, where it is part of the cache key of every
panel — so two viewers with the same view share one computation. Relative ranges
end at the end of the current minute, so a view (and every panel cached for it)
changes once a minute, not at every refresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bot.audit import chain

PRESETS: dict[str, float | None] = {
    "15m": 15 * 60,
    "1h": 3600,
    "6h": 6 * 3600,
    "24h": 86400,
    "7d": 7 * 86400,
    "all": None,
    "custom": None,
}
DEFAULT_RANGE = "1h"
DISPLAY_BUCKETS: tuple[int, ...] = (60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400)


def display_bucket(span_seconds: float, base: int = 60, max_points: int = 240) -> int:
    """A bucket width (a multiple of ``base``) giving at most ~``max_points`` points."""
    for width in DISPLAY_BUCKETS:
        if width >= base and span_seconds / width <= max_points:
            return width
    return max(DISPLAY_BUCKETS[-1], base)


@dataclass(frozen=True)
class View:
    """The window and filters every panel is computed for (hashable: a cache key)."""

    start: float
    end: float
    symbol: str | None = None
    event_types: tuple[str, ...] = ()
    label: str = ""
    bot: str | None = None

    @property
    def step(self) -> int:
        """Bucket width (seconds) of the time-series charts over this window."""
        return display_bucket(self.end - self.start)


@dataclass(frozen=True)
class Filters:
    """What the user chose in the sidebar; ``view(now)`` resolves a relative range."""

    range_key: str = DEFAULT_RANGE
    custom_start: float | None = None
    custom_end: float | None = None  # None: up to now
    symbol: str | None = None
    event_types: tuple[str, ...] = ()
    audit_dir: str = ""
    bot: str | None = None

    def view(self, now: float) -> View:
        end = (math.floor(now / 60) + 1) * 60
        if self.range_key == "custom" and self.custom_start is not None:
            stop = self.custom_end if self.custom_end is not None else end
            return self._view(self.custom_start, stop, "custom range")
        span = PRESETS.get(self.range_key)
        if span is None:  # "all": from midnight of the oldest day file
            first = first_day_start(self.audit_dir)
            start = first if first is not None and first < end else end - 3600
            return self._view(start, end, "all time")
        return self._view(end - span, end, f"last {self.range_key}")

    def _view(self, start: float, end: float, label: str) -> View:
        return View(start, end, self.symbol, self.event_types, label, self.bot)


def parse_utc(text: str) -> float | None:
    """Epoch seconds of ``2026-01-01``, ``2026-01-01 12:00`` or ISO-8601 (UTC); None if bad."""
    text = text.strip().replace(" ", "T")
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_utc(ts: float) -> str:
    """The form ``parse_utc`` reads back, to the second (for from=/to= links)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def first_day_start(audit_dir: str) -> float | None:
    """Midnight UTC of the oldest day file of the trail (or of any bot's trail), or None."""
    root = Path(audit_dir)
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    days = [
        day
        for folder in folders
        for path in chain.trail_files(folder)[:1]
        if (day := chain.day_of_file(path)) is not None
    ]
    if not days:
        return None
    return datetime.strptime(min(days), "%Y%m%d").replace(tzinfo=UTC).timestamp()


def make_filters(
    audit_dir: str,
    range_key: str,
    start_text: str,
    end_text: str,
    symbol: str | None,
    events: list[str],
    bot: str | None = None,
) -> tuple[Filters, str | None]:
    """Filters from the widget values, and a warning when a custom range is unusable."""
    base = Filters(symbol=symbol or None, event_types=tuple(events), audit_dir=audit_dir, bot=bot)
    if range_key != "custom":
        return replace(base, range_key=range_key if range_key in PRESETS else DEFAULT_RANGE), None
    start, end = parse_utc(start_text), parse_utc(end_text)
    if start is not None and (not end_text.strip() or (end is not None and start < end)):
        return replace(base, range_key="custom", custom_start=start, custom_end=end), None
    return base, "Custom range needs From before To (UTC, e.g. 2026-01-01 12:00); showing 1h."
