"""The on-disk layout of the trail: file names, line layout and the hash chain.

One place for the byte-level format so the writer and the verifier cannot drift.
A sealed line is::

    {<fields...>,"run_id":"<id>","seq":<n>,"prev":"<64 hex>","hash":"<64 hex>"}\\n

`hash` = SHA-256 (or HMAC-SHA256 under ``AUDIT_HMAC_KEY``) of the line's exact
bytes up to and including the closing quote of `prev`, followed by ``}`` —
that is, the record as it would be without its `hash` key. Because the body
embeds `prev`, each hash covers the previous hash and the record's own bytes.
See docs/audit-format.md.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from datetime import UTC, date, datetime
from pathlib import Path

GENESIS_HASH = "0" * 64
FILE_PREFIX = "audit_"
DAY_FILE_RE_TEMPLATE = r"^%s(\d{8})\.jsonl(\.gz)?$"
DAY_FILE_RE = re.compile(DAY_FILE_RE_TEMPLATE % FILE_PREFIX)
LOCK_FILE = ".audit.lock"
ANCHOR_FILE = ".audit.head.json"

# Byte offsets counted from the end of a sealed line (newline included).
_HASH_LEN = 64
_HASH_SEP = b'","hash":"'
_TAIL = b'"}\n'
HASH_SLICE = slice(-(len(_TAIL) + _HASH_LEN), -len(_TAIL))
_SEP_END = -(len(_TAIL) + _HASH_LEN)
_SEP_START = _SEP_END - len(_HASH_SEP)
SEP_SLICE = slice(_SEP_START, _SEP_END)
PREV_SLICE = slice(_SEP_START - _HASH_LEN, _SEP_START)
PREV_KEY = b',"prev":"'
MIN_SEALED_LEN = len(_TAIL) + _HASH_LEN + len(_HASH_SEP) + _HASH_LEN + len(PREV_KEY) + 2


class Sealer:
    """Computes record hashes; keyed (HMAC) when a key is given."""

    def __init__(self, hmac_key: bytes | None = None) -> None:
        self.keyed = bool(hmac_key)
        self._key = hmac_key or b""

    def digest(self, body: bytes) -> bytes:
        """Hex digest (ASCII bytes) of a record body without its `hash` key."""
        if self.keyed:
            return hmac.digest(self._key, body, "sha256").hex().encode()
        return hashlib.sha256(body).hexdigest().encode()

    def seal(self, payload: bytes, run_tag: bytes, seq: int, prev: bytes) -> tuple[bytes, bytes]:
        """Turn a serialized record ``{...}`` into a sealed line; return (line, hash).

        ``run_tag`` is ``run_tag(run_id)``, computed once per run for speed."""
        body = b'%s%s%d,"prev":"%s"}' % (payload[:-1], run_tag, seq, prev)
        if self.keyed:
            digest = hmac.digest(self._key, body, "sha256").hex().encode()
        else:
            digest = hashlib.sha256(body).hexdigest().encode()
        return body[:-2] + _HASH_SEP + digest + _TAIL, digest


def run_tag(run_id: str) -> bytes:
    return b',"run_id":"%s","seq":' % run_id.encode()


def body_of(line: bytes) -> bytes:
    """The hashed bytes of a sealed line (the record without its `hash` key)."""
    return line[:_SEP_START] + b'"}'


def day_file_name(day: date, prefix: str = FILE_PREFIX) -> str:
    return f"{prefix}{day:%Y%m%d}.jsonl"


@functools.cache
def _day_file_re(prefix: str) -> re.Pattern[str]:
    # Other trails in the same format differ only by prefix (the alerts process: "alerts_").
    return (
        DAY_FILE_RE
        if prefix == FILE_PREFIX
        else re.compile(DAY_FILE_RE_TEMPLATE % re.escape(prefix))
    )


def day_of_file(path: Path, prefix: str = FILE_PREFIX) -> str | None:
    """YYYYMMDD of a day file, or None for files that are not part of the trail."""
    match = _day_file_re(prefix).match(path.name)
    return match.group(1) if match else None


def trail_files(directory: Path, prefix: str = FILE_PREFIX) -> list[Path]:
    """Day files in chain order; a day present both plain and gzipped counts once (plain)."""
    by_day: dict[str, Path] = {}
    if not directory.is_dir():
        return []
    for path in directory.iterdir():
        day = day_of_file(path, prefix)
        if day is None:
            continue
        if day not in by_day or not path.name.endswith(".gz"):
            by_day[day] = path
    return [by_day[d] for d in sorted(by_day)]


def format_timestamp(epoch_ns: int) -> str:
    """SPEC §4 timestamp: UTC, microseconds, trailing Z."""
    seconds, ns = divmod(epoch_ns, 1_000_000_000)
    prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{ns // 1000:06d}Z"


def parse_timestamp(text: str) -> datetime:
    """Inverse of format_timestamp (also accepts other ISO-8601 forms with Z/offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


_SEQ_KEY = b',"seq":'


def parse_seal(line: bytes) -> tuple[int, bytes] | None:
    """(seq, hash) of a structurally sealed line (hash not checked), else None."""
    if len(line) < MIN_SEALED_LEN or not line.endswith(_TAIL) or line[SEP_SLICE] != _HASH_SEP:
        return None
    prev_start = PREV_SLICE.start
    assert prev_start is not None
    if line[prev_start - len(PREV_KEY) : prev_start] != PREV_KEY:
        return None
    seq_end = prev_start - len(PREV_KEY)
    seq_start = line.rfind(_SEQ_KEY, 0, seq_end)
    digits = line[seq_start + len(_SEQ_KEY) : seq_end]
    if seq_start < 0 or not digits.isdigit():
        return None
    return int(digits), line[HASH_SLICE]


def seq_tag(seq: int) -> bytes:
    """The bytes that must precede `prev` in the line of record number ``seq``."""
    return b"%s%d%s" % (_SEQ_KEY, seq, PREV_KEY)


def anchor_message(anchor: dict[str, object]) -> bytes:
    """What the anchor's `mac` covers."""
    return "anchor|{version}|{file}|{seq}|{hash}|{run_id}".format(**anchor).encode()


def read_anchor(directory: Path) -> dict[str, object] | None:
    import json

    try:
        value = json.loads((directory / ANCHOR_FILE).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
