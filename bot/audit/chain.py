"""The on-disk layout of the trail: file names, line layout and the hash chain.

One place for the byte-level format so the writer and the verifier cannot drift.
A sealed line is::

    {"timestamp":"...Z","event_type":"...",<fields...>,"bot_id":"<name>","run_id":"<id>",
     "seq":<n>,"prev":"<64 hex>","hash":"<64 hex>"}\\n          (one line on disk)

`hash` = SHA-256 (or HMAC-SHA256 under ``AUDIT_HMAC_KEY``), lowercase hex, of the
line's exact bytes up to and including the closing quote of `prev`, followed
by ``}`` — that is, the record as it would be without its `hash` key. Because
the hashed bytes embed `prev`, each hash covers the previous hash and the
record's own bytes. Everything after `prev` has a fixed length, which is what
lets the verifier check a line with a few byte slices (`TAIL_LEN`).
The timestamp rule (`timestamp_seconds`) lives here too: every reader calls it.
See docs/audit-format.md.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import hmac
import json
import re
import time
from binascii import hexlify
from collections.abc import Callable
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
# A record before its seal: second_prefix(second), the microseconds, then its fields
# (`"event_type":...` without braces). Both the writer's paths format with this.
STAMPED = b'%s.%06dZ",%s'
TIMESTAMP_LEN = len("2026-11-26T15:04:05.123456Z")
# `{"timestamp":"<27>","event_type":"` — where the event type starts in a writer's line.
EVENT_TYPE_KEY = b'","event_type":"'
EVENT_TYPE_AT = len(TIMESTAMP_PREFIX) + TIMESTAMP_LEN + len(EVENT_TYPE_KEY)
MIN_SEALED_LEN = TAIL_LEN + HASH_LEN + len(PREV_KEY) + len(SEQ_KEY) + 2


_sha256 = hashlib.sha256


class Sealer:
    """Computes record hashes; keyed (HMAC-SHA256) when a key is given."""

    def __init__(self, hmac_key: bytes | None = None) -> None:
        self.keyed = bool(hmac_key)
        self.key = hmac_key or b""
        self.digest: Callable[[bytes], bytes] = (
            functools.partial(_hmac_hex, self.key) if self.keyed else _sha256_hex
        )
        """Lowercase hex digest (ASCII bytes) of a record body without its `hash` key."""

    def seal(
        self, open_payload: bytes, run_tag: bytes, seq: int, prev: bytes
    ) -> tuple[bytes, bytes]:
        """Seal ``{"timestamp":...,<fields>`` (no closing brace); return (line, hash).

        ``run_tag`` is ``run_tag(run_id, bot_id)``, computed once per run. The one
        place a record is sealed: the writer calls it for every record."""
        head = b'%s%s%d,"prev":"%s' % (open_payload, run_tag, seq, prev)
        digest = self.digest(head + LINE_END)
        return b'%s","hash":"%s"}\n' % (head, digest), digest


def _sha256_hex(body: bytes) -> bytes:
    return hexlify(_sha256(body).digest())


def _hmac_hex(key: bytes, body: bytes) -> bytes:
    return hexlify(hmac.digest(key, body, "sha256"))


def run_tag(run_id: str, bot_id: str | None = None) -> bytes:
    """The bytes between a record's fields and its seq: ``,"bot_id":..,"run_id":..,"seq":``
    (``bot_id`` None: a trail written before bot_id existed, as in old files and tests)."""
    bot = b',"bot_id":%s' % json.dumps(bot_id).encode() if bot_id is not None else b""
    return b'%s,"run_id":%s,"seq":' % (bot, json.dumps(run_id).encode())


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


def second_prefix(second: int) -> tuple[bytes, str]:
    """``{"timestamp":"YYYY-MM-DDTHH:MM:SS`` of an epoch second, and its day YYYYMMDD:
    the writer formats this once per second and appends ``.uuuuuuZ"``."""
    moment = datetime.fromtimestamp(second, UTC)
    return TIMESTAMP_PREFIX + moment.strftime("%Y-%m-%dT%H:%M:%S").encode(), moment.strftime(
        "%Y%m%d"
    )


_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z", re.ASCII)
MIN_YEAR = 2000
_MINUTES: dict[str, tuple[int, int]] = {}  # "YYYY-MM-DDTHH:MM" -> (epoch second, year)


_next_year_memo = (-1, 0)  # (epoch hour, next year): readers call _next_year per record


def _next_year() -> int:
    """Next year's number, looked up once an hour."""
    global _next_year_memo
    hour = int(time.time()) // 3600
    if hour != _next_year_memo[0]:
        _next_year_memo = (hour, time.gmtime(hour * 3600).tm_year + 1)
    return _next_year_memo[1]


def timestamp_seconds(stamp: object, max_year: int | None = None) -> float | None:
    """Epoch seconds of a SPEC §4 timestamp, or None when ``stamp`` is not one.

    The one timestamp check of every reader: ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z`` in ASCII
    digits, a real calendar minute, seconds below 61 (a leap second), and a year from
    MIN_YEAR to ``max_year`` (default: next year, so a clock far in the future is caught)."""
    if not isinstance(stamp, str) or _TIMESTAMP_RE.fullmatch(stamp) is None:
        return None
    minute = stamp[:16]  # records share minutes: the calendar check is done once per minute
    found = _MINUTES.get(minute)
    if found is None:
        try:
            base = calendar.timegm(time.strptime(minute, "%Y-%m-%dT%H:%M"))
        except ValueError:
            return None
        if len(_MINUTES) > 100_000:
            _MINUTES.clear()
        found = _MINUTES[minute] = (base, int(stamp[:4]))
    base, year = found
    if not MIN_YEAR <= year <= (max_year if max_year is not None else _next_year()):
        return None
    seconds = float(stamp[17:-1])
    return base + seconds if seconds < 61 else None


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
