"""The on-disk layout of the trail: file names, line layout and the hash chain.

One place for the byte-level format so the writer and the verifier cannot drift.
A sealed line is::

    {"timestamp":"...Z","event_type":"...",<fields...>,"run_id":"<id>","seq":<n>,
     "prev":"<64 hex>","hash":"<64 hex>"}\\n          (one line on disk)

`hash` = SHA-256 (or HMAC-SHA256 under ``AUDIT_HMAC_KEY``), lowercase hex, of the
line's exact bytes up to and including the closing quote of `prev`, followed
by ``}`` — that is, the record as it would be without its `hash` key. Because
the hashed bytes embed `prev`, each hash covers the previous hash and the
record's own bytes. Everything after `prev` has a fixed length, which is what
lets the verifier check a line with a few byte slices (`TAIL_LEN`).
See docs/audit-format.md.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from binascii import hexlify
from datetime import UTC, datetime
from pathlib import Path

GENESIS_HASH = "0" * 64
FILE_PREFIX = "audit_"
ALERTS_FILE_PREFIX = "alerts_"  # the alerts process's trail: same format (SPEC §5)
TRAIL_PREFIXES = (FILE_PREFIX, ALERTS_FILE_PREFIX)
DAY_FILE_RE = re.compile(r"^audit_(\d{8})\.jsonl(\.gz)?$")
LOCK_FILE = ".audit.lock"
ANCHOR_FILE = ".audit.head.json"

HASH_LEN = 64
HASH_SEP = b'","hash":"'
LINE_END = b'"}'
# A line without its newline ends with `","hash":"<64 hex>"}`: TAIL_LEN bytes.
TAIL_LEN = len(HASH_SEP) + HASH_LEN + len(LINE_END)
PREV_KEY = b',"prev":"'
SEQ_KEY = b',"seq":'
TIMESTAMP_PREFIX = b'{"timestamp":"'
TIMESTAMP_LEN = len("2026-11-26T15:04:05.123456Z")
# `{"timestamp":"<27>","event_type":"` — where the event type starts in a writer's line.
EVENT_TYPE_KEY = b'","event_type":"'
EVENT_TYPE_AT = len(TIMESTAMP_PREFIX) + TIMESTAMP_LEN + len(EVENT_TYPE_KEY)
MIN_SEALED_LEN = TAIL_LEN + HASH_LEN + len(PREV_KEY) + len(SEQ_KEY) + 2


class Sealer:
    """Computes record hashes; keyed (HMAC-SHA256) when a key is given."""

    def __init__(self, hmac_key: bytes | None = None) -> None:
        self.keyed = bool(hmac_key)
        self.key = hmac_key or b""

    def digest(self, body: bytes) -> bytes:
        """Lowercase hex digest (ASCII bytes) of a record body without its `hash` key."""
        if self.keyed:
            return hexlify(hmac.digest(self.key, body, "sha256"))
        return hexlify(hashlib.sha256(body).digest())

    def seal(
        self, open_payload: bytes, run_tag: bytes, seq: int, prev: bytes
    ) -> tuple[bytes, bytes]:
        """Seal ``{"timestamp":...,<fields>`` (no closing brace); return (line, hash).

        ``run_tag`` is ``run_tag(run_id)``, computed once per run. The logger's
        hot path inlines this same computation, in Python and in native/_chain.c."""
        head = b'%s%s%d,"prev":"%s' % (open_payload, run_tag, seq, prev)
        digest = self.digest(head + LINE_END)
        return b'%s","hash":"%s"}\n' % (head, digest), digest


def run_tag(run_id: str) -> bytes:
    return b',"run_id":%s,"seq":' % json.dumps(run_id).encode()


def body_of(line: bytes) -> bytes:
    """The hashed bytes of a sealed line (with or without its newline)."""
    end = len(line) - (1 if line.endswith(b"\n") else 0) - TAIL_LEN
    return line[:end] + LINE_END


@functools.cache
def _day_file_re(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}(\d{{8}})\.jsonl(\.gz)?$")


def day_of_file(path: Path, prefix: str = FILE_PREFIX) -> str | None:
    """YYYYMMDD of a day file, or None for files that are not part of the trail.

    ``prefix``: other trails in this format differ only by their file prefix — the
    alerts process writes ``alerts_YYYYMMDD.jsonl`` (SPEC §5). Keep this parameter."""
    match = (DAY_FILE_RE if prefix == FILE_PREFIX else _day_file_re(prefix)).match(path.name)
    return match.group(1) if match else None


def trail_files(directory: Path, prefix: str = FILE_PREFIX) -> list[Path]:
    """Day files in chain order; a day present both plain and gzipped counts once (plain)."""
    by_day: dict[str, Path] = {}
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    for path in entries:
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


def timestamp_ns(text: str) -> int:
    """Epoch nanoseconds of a SPEC §4 timestamp (exact, no float rounding)."""
    moment = parse_timestamp(text)
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1000


def parse_seal(line: bytes) -> tuple[int, bytes, bytes] | None:
    """(seq, prev, hash) of a structurally sealed line (hash not checked), else None.

    ``line`` may or may not end with its newline."""
    if line.endswith(b"\n"):
        line = line[:-1]
    end = len(line) - TAIL_LEN
    if end < MIN_SEALED_LEN - TAIL_LEN or line[end : end + len(HASH_SEP)] != HASH_SEP:
        return None
    if not line.endswith(LINE_END):
        return None
    prev_start = end - HASH_LEN
    if line[prev_start - len(PREV_KEY) : prev_start] != PREV_KEY:
        return None
    seq_end = prev_start - len(PREV_KEY)
    seq_start = line.rfind(SEQ_KEY, 0, seq_end)
    digits = line[seq_start + len(SEQ_KEY) : seq_end]
    if seq_start < 0 or not digits.isdigit() or (len(digits) > 1 and digits[0:1] == b"0"):
        return None
    digest = line[end + len(HASH_SEP) : -len(LINE_END)]
    return int(digits), line[prev_start:end], digest


def chain_tag(seq: int, prev: bytes) -> bytes:
    """The bytes just before `","hash":"` in the line of record ``seq`` after ``prev``."""
    return b"%s%d%s%s" % (SEQ_KEY, seq, PREV_KEY, prev)


def anchor_message(anchor: dict[str, object]) -> bytes:
    """What the anchor's `mac` covers."""
    return "anchor|{version}|{file}|{seq}|{hash}|{run_id}".format(**anchor).encode()


def read_anchor(directory: Path) -> dict[str, object] | None:
    try:
        value = json.loads((directory / ANCHOR_FILE).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
