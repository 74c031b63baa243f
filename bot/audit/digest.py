"""The digest of one closed day file (SPEC §12): what vouches for the file elsewhere.

The bot seals it into the chain at rollover (an `audit_checkpoint`, operation
``seal_day``) and `archive` stores it beside the archived file as
``digest_YYYYMMDD.json``, so the file, its digest and the next day's chain
vouch for each other. ``sha256`` covers the uncompressed ``.jsonl`` bytes, so
a day digested before and after `compress` is the same digest.

One streaming pass in fixed-size chunks: a day file of any size costs a few MB
of memory.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from bot.audit import chain
from bot.audit.reader import open_trail_file

CHUNK = 1 << 20
DIGEST_FILE_PREFIX = "digest_"


def day_digest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The digest of a day file (``.jsonl`` or ``.jsonl.gz``).

    Keys: ``date`` (YYYYMMDD, from the file name), ``records`` (complete lines),
    ``first_seq``/``first_hash`` and ``last_seq``/``last_hash`` (of the first and
    last complete line; None when that line is not a sealed record), ``sha256``
    (hex, of the uncompressed bytes, a torn tail included) and ``bytes`` (their
    length). Raises ValueError for a file that is not a day file, OSError when it
    cannot be read."""
    path = Path(path)
    day = _day(path)
    sha = hashlib.sha256()
    size = records = 0
    first: bytes | None = None
    pending = b""  # bytes after the last newline seen so far
    last = b""  # the last complete line
    with open_trail_file(path) as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
            newlines = chunk.count(b"\n")
            if not newlines:
                pending += chunk
                continue
            records += newlines
            head_end = chunk.index(b"\n")
            if first is None:
                first = pending + chunk[:head_end]
            tail_start = chunk.rindex(b"\n")
            if newlines == 1:
                last = pending + chunk[:head_end]
            else:
                last = chunk[chunk.rindex(b"\n", 0, tail_start) + 1 : tail_start]
            pending = chunk[tail_start + 1 :]
    first_seal = chain.parse_seal(first) if first is not None else None
    last_seal = chain.parse_seal(last) if records else None
    return {
        "date": day,
        "records": records,
        "first_seq": first_seal[0] if first_seal else None,
        "first_hash": first_seal[2].decode() if first_seal else None,
        "last_seq": last_seal[0] if last_seal else None,
        "last_hash": last_seal[2].decode() if last_seal else None,
        "sha256": sha.hexdigest(),
        "bytes": size,
    }


def digest_name(day: str) -> str:
    """``digest_YYYYMMDD.json``: where a day's digest is stored beside its file."""
    return f"{DIGEST_FILE_PREFIX}{day}.json"


def _day(path: Path) -> str:
    for prefix in chain.TRAIL_PREFIXES:
        day = chain.day_of_file(path, prefix)
        if day is not None:
            return day
    raise ValueError(f"not a day file of the trail: {path.name}")
