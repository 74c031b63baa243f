"""Durations as people write them in config and alert rules: ``30s``, ``15m``, ``1h30m``, ``2d``.

One rule for both (the bot's settings and the dashboard's alert rules); it needs
nothing but the standard library, so the dashboard may import it.
"""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^(?:\d+[smhd])+$")
_PART_RE = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def is_duration(text: object) -> bool:
    """Whether ``text`` is a duration string (zero included)."""
    return isinstance(text, str) and bool(_DURATION_RE.match(text))


def parse_duration(text: object) -> float:
    """Seconds in a duration string; ValueError naming the text and the form otherwise."""
    if not isinstance(text, str) or not _DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a duration (write e.g. '30s', '15m', '1h', '1h30m')")
    return float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART_RE.findall(text)))


def format_duration(seconds: float) -> str:
    """Inverse of parse_duration for display (``900.0`` -> ``15m``)."""
    rest = round(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT_SECONDS.items():
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
