"""Gzip closed day files (`python -m bot.audit compress`): `audit_YYYYMMDD.jsonl.gz`.

A day is closed when it is older than yesterday (UTC) and not the newest day
file, so the running writer, which may still append held records to
yesterday's file after midnight, never finds its file gone. The gzip file is
written beside the original, fsynced, read back and compared, and only then
replaces it; readers prefer the plain file while both exist. Byte content is
unchanged, so the chain and `verify` are unaffected.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import time
from pathlib import Path

from bot.audit import chain


def closed_days(directory: Path, now_ns: int | None = None) -> list[Path]:
    """Plain day files that may be compressed."""
    files = chain.trail_files(directory)
    if not files:
        return []
    seconds = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000_000
    yesterday = time.strftime("%Y%m%d", time.gmtime(seconds - 86_400))
    newest = chain.day_of_file(files[-1])
    return [
        path
        for path in files
        if not path.name.endswith(".gz")
        and (day := chain.day_of_file(path)) is not None
        and day < yesterday
        and day != newest
    ]


def compress_file(path: Path) -> Path:
    """Replace ``audit_X.jsonl`` by ``audit_X.jsonl.gz`` (owner-only), safely."""
    data = path.read_bytes()
    target = path.with_name(path.name + ".gz")
    tmp = path.with_name(f".{target.name}.tmp")
    packed = gzip.compress(data, compresslevel=6, mtime=0)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(packed)
        os.fsync(fd)
    finally:
        os.close(fd)
    if gzip.decompress(tmp.read_bytes()) != data:  # pragma: no cover - disk corruption
        tmp.unlink()
        raise OSError(f"compressed copy of {path.name} does not read back identically")
    os.replace(tmp, target)
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    path.unlink()
    return target


def compress_closed_days(
    directory: str | os.PathLike[str], now_ns: int | None = None
) -> list[Path]:
    """Compress every closed day file of ``directory``; return the new ``.gz`` paths."""
    return [compress_file(path) for path in closed_days(Path(directory), now_ns)]
