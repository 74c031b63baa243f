"""Day indexes kept on disk, outside the trail directory, keyed by each file's fingerprint.

Closed day files never change (SPEC §4), so the index of one is computed once and
kept here; a restart reads only the files whose fingerprint changed (and the part
of today's file written since its index was kept).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bot.audit.dayindex import DayIndex

INDEX_VERSION = 6


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """Where day indexes are kept, from the environment ``env``: ``AUDIT_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/audited-bot/dayindex``, else under ~/.cache."""
    explicit = env.get("AUDIT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "audited-bot" / "dayindex"


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a day file's content: name, inode, size, mtime and the bytes of
    its last complete line (which holds the last hash of the chain)."""

    name: str
    inode: int
    size: int
    mtime_ns: int
    tail: str  # sha256 of the last 512 bytes of the file

    @classmethod
    def of(cls, path: Path) -> Fingerprint:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            fh.seek(max(0, st.st_size - 512))
            tail = hashlib.sha256(fh.read()).hexdigest()
        return cls(path.name, st.st_ino, st.st_size, st.st_mtime_ns, tail)


def _prefix_tail(path: Path, offset: int) -> str | None:
    """sha256 of the 512 bytes before ``offset`` of a plain file (None for .gz)."""
    if path.name.endswith(".gz"):
        return None
    with open(path, "rb") as fh:
        fh.seek(max(0, offset - 512))
        return hashlib.sha256(fh.read(min(offset, 512))).hexdigest()


class IndexCache:
    """Day indexes kept on disk, outside the trail directory, by fingerprint.

    One entry per day file: ``<dir>/<trail key>/<file name>.json`` (the summary part,
    with the fingerprint, the HMAC key's fingerprint and the index version) and
    ``.detail.json`` beside it. A file whose fingerprint matches is not read at all;
    a plain file that grew past the offset its entry covers, with the same bytes just
    before that offset, is read from there on (today's file). Entries are written
    atomically; a cache that cannot be written is only slower."""

    def __init__(self, directory: Path | None, hmac_key: bytes | None) -> None:
        self.directory = directory
        self._key_id = hashlib.sha256(b"key:" + hmac_key).hexdigest()[:16] if hmac_key else ""

    def _entry(self, path: Path) -> Path | None:
        if self.directory is None:
            return None
        trail = hashlib.sha256(os.fsencode(path.parent.resolve())).hexdigest()[:20]
        return self.directory / trail / (path.name + ".json")

    def lookup(
        self, path: Path, fingerprint: Fingerprint, *, detail: bool, growing: bool = False
    ) -> tuple[DayIndex | None, bool]:
        """(index, whole): the kept index of ``path`` and whether it covers the whole
        file, or (None, False). With ``growing`` (the newest file of a trail, which the
        writer appends to) an index of a prefix is returned too (``whole`` False:
        continue from its offset) when the file only grew since; any other change of
        the fingerprint means the file must be read and verified again."""
        entry = self._entry(path)
        if entry is None:
            return None, False
        try:
            summary = orjson.loads(entry.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None, False
        if summary.get("version") != INDEX_VERSION or summary.get("key") != self._key_id:
            return None, False
        kept = summary["fingerprint"]
        whole = kept == list(fingerprint.__dict__.values())
        if not whole:
            # a prefix: same file, grown, with the same bytes before the indexed offset
            if (
                not growing
                or kept[1] != fingerprint.inode
                or fingerprint.size <= kept[2]
                or summary.get("prefix_tail") is None
                or _prefix_tail(path, summary["offset"]) != summary["prefix_tail"]
            ):
                return None, False
            detail = True  # a prefix goes on at minute resolution
        parts: dict[str, Any] | None = None
        if detail:
            try:
                parts = orjson.loads(entry.with_suffix(".detail").read_bytes())
            except (OSError, orjson.JSONDecodeError):
                return None, False
        return DayIndex.from_parts(summary, parts), whole

    def has_entry(self, path: Path) -> bool:
        """Whether an entry exists for ``path`` (whatever its fingerprint)."""
        entry = self._entry(path)
        return entry is not None and entry.exists()

    def load_detail(self, path: Path) -> dict[str, Any] | None:
        """The detail part (minute counts, signal rows, trace offsets) of ``path``'s entry."""
        entry = self._entry(path)
        if entry is None:
            return None
        try:
            parts: dict[str, Any] = orjson.loads(entry.with_suffix(".detail").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return parts

    def keep(self, path: Path, index: DayIndex, fingerprint: Fingerprint) -> None:
        """Write the entry of ``path`` (best effort: an unwritable cache is skipped)."""
        entry = self._entry(path)
        if entry is None:
            return
        summary, detail = index.to_parts()
        summary.update(
            version=INDEX_VERSION,
            key=self._key_id,
            fingerprint=list(fingerprint.__dict__.values()),
            prefix_tail=_prefix_tail(path, index.offset),
        )
        try:
            entry.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # detail first: a summary never points at a missing or older detail
            _write_atomic(entry.with_suffix(".detail"), orjson.dumps(detail))
            _write_atomic(entry, orjson.dumps(summary))
        except OSError:
            return


def _write_atomic(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
