"""Chain verification of a trail directory (`python -m bot.audit verify`).

Two passes, so the common case is fast and the rare failure is explained well:

1. A fast scan, split across worker processes for large trails. Each task
   checks a byte range of one day file with a few byte slices per line (the
   fixed-length tail of a sealed line, see chain.py) and one hash; it takes
   the chain state from its own first line. The main process then stitches
   the tasks (each task's first record must follow the previous task's last).
2. Only when something is wrong: a sequential re-scan of the first bad file
   from a known-good state, which names the line and says what happened
   (edited, inserted, deleted, reordered, duplicated, spliced, truncated, torn).

Afterwards the head anchor (outside the day files) is checked, so a trail cut
short at its end is detected too. `audit_gap` and `audit_recovered` records
are collected and reported; they are not tampering, except a gap the writer
recorded because the trail was shorter than its anchor (records removed).
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import os
from binascii import hexlify
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bot.audit import chain, native, pieces

GENESIS = chain.GENESIS_HASH.encode()
_TAIL = chain.TAIL_LEN
NOTE_TYPES = (b"audit_gap", b"audit_recovered")  # reported, not tampering (SPEC §8)
_LOOKAHEAD = 10_000
_ANCHOR_TAIL = 4 << 20  # bytes at a day file's end searched first for the anchor's record


@dataclass
class Problem:
    """The first place where the trail is not what the writer wrote."""

    file: str
    line: int
    kind: str  # edited | inserted | deleted | reordered | duplicated | spliced | truncated | torn
    detail: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line}: {self.kind} — {self.detail}"


@dataclass
class Note:
    """A gap or recovery the writer recorded about itself."""

    file: str
    line: int
    event_type: str
    data: dict[str, Any]


@dataclass
class VerifyReport:
    files: int = 0
    records: int = 0
    last_seq: int = -1
    last_hash: str = chain.GENESIS_HASH
    problem: Problem | None = None
    notes: list[Note] = field(default_factory=list)
    anchor: str = "absent"
    needs_key: bool = False

    @property
    def intact(self) -> bool:
        return self.problem is None and not self.needs_key


@dataclass
class _Task:
    path: str
    start: int
    end: int  # -1: to the end (and the only task of a .gz file)
    day_prefix: bytes
    key: bytes | None


@dataclass
class _TaskResult:
    lines: int = 0
    first: tuple[int, bytes] | None = None  # (seq, prev) claimed by the first line
    last: tuple[int, bytes] = (-1, GENESIS)  # (seq, hash) after the last good line
    bad: int | None = None  # local index of the first line that failed inside the task
    torn: bytes | None = None  # bytes after the last newline (only the file's last task)
    notes: list[tuple[int, bytes]] = field(default_factory=list)


def verify_trail(
    directory: str | os.PathLike[str],
    hmac_key: bytes | None = None,
    workers: int | None = None,
    prefix: str = chain.FILE_PREFIX,
) -> VerifyReport:
    """Verify every day file of ``directory`` and its head anchor. ``prefix`` selects the
    trail: ``audit_`` (the bot) or ``alerts_`` (the alerts process), same format."""
    directory = Path(directory)
    files = chain.trail_files(directory, prefix)
    report = VerifyReport(files=len(files))
    count = pieces.worker_count(workers)
    tasks = _plan(files, hmac_key, count, prefix)
    results = pieces.map_pieces(_scan_task, tasks, count)

    seq, prev = 0, GENESIS
    file_start: dict[str, tuple[int, bytes, int]] = {}  # path -> (seq, prev, records before)
    line_base: dict[str, int] = {}
    for task, result in zip(tasks, results, strict=True):
        if task.start == 0:
            file_start[task.path] = (seq, prev, report.records)
            line_base[task.path] = 0
        base = line_base[task.path]
        broken = result.bad is not None or (
            result.lines and (result.first is None or result.first != (seq, prev))
        )
        if broken or result.torn:
            start_seq, start_prev, before = file_start[task.path]
            report.problem = _diagnose(Path(task.path), start_seq, start_prev, hmac_key, prefix)
            if report.problem is None:  # pragma: no cover - pass 1 and 2 disagree
                report.problem = Problem(
                    Path(task.path).name, base + (result.bad or 0) + 1, "edited", "bad line"
                )
            report.records = before + report.problem.line - 1
            _explain_wrong_key(report, files, hmac_key)
            return report
        for index, line in result.notes:
            report.notes.append(_note(Path(task.path).name, base + index + 1, line))
        if result.lines:
            seq, prev = result.last[0] + 1, result.last[1]
        line_base[task.path] = base + result.lines
        report.records += result.lines
    report.last_seq, report.last_hash = seq - 1, prev.decode()
    for note in report.notes:
        if note.data.get("reason") == "trail_shorter_than_head_anchor":
            report.problem = Problem(
                note.file,
                note.line,
                "truncated",
                f"the writer found {note.data.get('missing_records')} records missing from the "
                f"end of the trail at restart (head anchor seq {note.data.get('anchor_seq')}, "
                f"last on disk {note.data.get('last_seq_on_disk')})",
            )
            return report
    _check_anchor(directory, files, report, hmac_key, line_base)
    return report


# ----------------------------------------------------------------- pass 1


def _plan(files: list[Path], key: bytes | None, workers: int, prefix: str) -> list[_Task]:
    return [
        _Task(str(path), a, b, _line_start(path, prefix), key)
        for path in files
        for a, b in pieces.line_ranges(path, workers)
    ]


def _line_start(path: Path, file_prefix: str) -> bytes:
    """How every line of a day file begins: its records' timestamps fall on its day."""
    day = chain.day_of_file(path, file_prefix) or ""
    return b'{"timestamp":"%s-%s-%sT' % (day[:4].encode(), day[4:6].encode(), day[6:].encode())


def _read(task: _Task) -> bytes:
    if task.end < 0:
        with gzip.open(task.path, "rb") as fh:
            return fh.read()
    with open(task.path, "rb") as fh:
        fh.seek(task.start)
        return fh.read(task.end - task.start)


def _scan_task(task: _Task) -> _TaskResult:
    data = _read(task)
    result = _TaskResult()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        result.torn = data[end:]
    if not end:
        return result
    sealed = chain.parse_seal(data[: data.find(b"\n")])
    if sealed is None:
        result.lines, result.bad = data.count(b"\n", 0, end), 0
        return result
    seq, prev, _ = sealed
    result.first = (seq, prev)
    first_seq = seq
    if native.lib is not None:
        bad, seq, prev = native.lib.scan(
            data,
            seq,
            prev,
            task.key,
            task.day_prefix,
            chain.EVENT_TYPE_AT,
            NOTE_TYPES,
            result.notes,
        )
    else:
        lines = data[: end - 1].split(b"\n")
        bad, seq, prev = _scan_lines(lines, seq, prev, task.key, task.day_prefix, result.notes)
    result.bad = bad
    result.last = (seq - 1, prev)
    # every complete line advanced seq by one, unless one was bad (then count them)
    result.lines = seq - first_seq if bad is None else data.count(b"\n", 0, end)
    return result


def scan_lines(
    lines: list[bytes],
    seq: int,
    prev: bytes,
    key: bytes | None,
    day_prefix: bytes = b"",
    notes: list[tuple[int, bytes]] | None = None,
) -> tuple[int | None, int, bytes]:
    """The chain check of a run of lines (see ``_scan_lines``), in C when it is built."""
    if native.lib is None or len(prev) != chain.HASH_LEN or not lines:
        return _scan_lines(lines, seq, prev, key, day_prefix, notes)
    data = b"\n".join(lines) + b"\n"
    result: tuple[int | None, int, bytes] = native.lib.scan(
        data, seq, prev, key, day_prefix, chain.EVENT_TYPE_AT, NOTE_TYPES, notes
    )
    return result


def _scan_lines(
    lines: list[bytes],
    seq: int,
    prev: bytes,
    key: bytes | None,
    day_prefix: bytes = b"",
    notes: list[tuple[int, bytes]] | None = None,
) -> tuple[int | None, int, bytes]:
    """The one chain check of a run of lines (verify, and the dashboard's live integrity
    status): ``seq``/``prev`` are what the first line must carry. Returns the index of the
    first bad line (or None), then the chain state (next seq, last hash) after the last
    good line. Gap/recovery records are appended to ``notes`` when given.

    A line is good when it starts with ``day_prefix`` (its file's day), its `seq`/`prev`
    follow the previous line and its `hash` matches its bytes."""
    sha256 = hashlib.sha256
    mac = hmac.digest
    at = chain.EVENT_TYPE_AT
    for index, line in enumerate(lines):
        end = len(line) - _TAIL
        if not (
            line.startswith(day_prefix)
            and line.endswith(b',"seq":%d,"prev":"%s' % (seq, prev), 0, end)
        ):
            return index, seq, prev
        body = line[:end] + b'"}'
        digest = hexlify(sha256(body).digest() if key is None else mac(key, body, "sha256"))
        if not line.endswith(b'","hash":"%s"}' % digest):
            return index, seq, prev
        if notes is not None and line.startswith(b"audit_", at) and line.startswith(NOTE_TYPES, at):
            notes.append((index, line))
        seq += 1
        prev = digest
    return None, seq, prev


# ----------------------------------------------------------------- pass 2


def _diagnose(path: Path, seq: int, prev: bytes, key: bytes | None, prefix: str) -> Problem | None:
    """Re-scan one file from a known-good state and explain its first bad line."""
    with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    tail = lines.pop()
    start = _line_start(path, prefix)
    bad, seq, prev = scan_lines(lines, seq, prev, key, start, [])
    name = path.name
    if bad is None:
        if tail:
            return Problem(
                name,
                len(lines) + 1,
                "torn",
                f"the last line is incomplete ({len(tail)} bytes without a newline): a write "
                "interrupted by a crash, repaired (with an audit_recovered record) when the "
                "writer next starts",
            )
        return None
    return Problem(name, bad + 1, *_classify(lines, bad, seq, prev, key, start))


def _classify(
    lines: list[bytes], index: int, seq: int, prev: bytes, key: bytes | None, day_prefix: bytes
) -> tuple[str, str]:
    line = lines[index]
    sealer = chain.Sealer(key)
    sealed = chain.parse_seal(line)
    if sealed is None:
        if not line:
            return "inserted", "an empty line"
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return "edited", "the line is not valid JSON (bytes changed, or lines merged/split)"
        if isinstance(value, dict) and not {"seq", "prev", "hash"} <= value.keys():
            return "edited", "the record has no complete seal (seq/prev/hash missing or moved)"
        return "edited", "the record's seal is malformed (seq/prev/hash reformatted)"
    got_seq, got_prev, got_hash = sealed
    if sealer.digest(chain.body_of(line)) != got_hash:
        what = f"seq {got_seq}: the bytes do not match the record's hash"
        if got_seq == seq and got_prev == prev:
            return "edited", what + " (content changed after it was written)"
        return "edited", what
    if not line.startswith(day_prefix):
        return "inserted", f"seq {got_seq} is dated {line[14:24].decode(errors='replace')}, " + (
            "not this file's day (record moved between day files)"
        )
    if got_seq == seq:
        return "spliced", (
            f"seq {seq} does not link to the record before it (prev {got_prev[:12].decode()}… "
            f"expected {prev[:12].decode()}…): a record from another trail or run, or the "
            "records before it were replaced"
        )
    if got_seq > seq:
        for later in range(index + 1, min(len(lines), index + _LOOKAHEAD)):
            found = chain.parse_seal(lines[later])
            if found is not None and found[0] == seq:
                return "reordered", (
                    f"seq {got_seq} appears where seq {seq} was expected; seq {seq} is on "
                    f"line {later + 1}"
                )
        if seq == 0 and index == 0:
            return (
                "deleted",
                f"the trail starts at seq {got_seq}: earlier records or files are missing",
            )
        missing = got_seq - seq
        return "deleted", f"{missing} record(s) missing before this line (seq {seq}..{got_seq - 1})"
    if got_hash == prev:
        return "duplicated", f"a copy of the record before it (seq {got_seq})"
    return "inserted", f"seq {got_seq} appears again after seq {seq - 1} (record inserted or moved)"


# ----------------------------------------------------------------- anchor


def _check_anchor(
    directory: Path,
    files: list[Path],
    report: VerifyReport,
    key: bytes | None,
    lines_in: dict[str, int],
) -> None:
    anchor = chain.read_anchor(directory)
    if anchor is None:
        report.anchor = (
            "absent or unreadable: truncation of the tail cannot be checked"
            if (directory / chain.ANCHOR_FILE).exists() or files
            else "absent (empty trail)"
        )
        return
    sealer = chain.Sealer(key)
    try:
        expected_mac = sealer.digest(chain.anchor_message(anchor)).decode()
        anchor_seq = int(anchor["seq"])  # type: ignore[call-overload]
        anchor_hash = str(anchor["hash"]).encode()
    except (KeyError, TypeError, ValueError):
        report.problem = Problem(chain.ANCHOR_FILE, 1, "edited", "the head anchor is malformed")
        return
    if not hmac.compare_digest(str(anchor.get("mac", "")), expected_mac):
        report.problem = Problem(
            chain.ANCHOR_FILE, 1, "edited", "the head anchor's mac does not match its content"
        )
        return
    last_file = files[-1] if files else None
    if anchor_seq > report.last_seq:
        name = str(anchor.get("file", ""))
        where = next((p for p in files if p.name.startswith(name)), last_file)
        shown = where.name if where is not None else name
        line = (lines_in.get(str(where), 0) + 1) if where is not None else 1
        report.problem = Problem(
            shown,
            line,
            "truncated",
            f"the trail ends at seq {report.last_seq} but the head anchor records seq "
            f"{anchor_seq}: {anchor_seq - report.last_seq} record(s) removed from the end",
        )
        return
    found = _hash_of_seq(files, anchor_seq, str(anchor.get("file", "")))
    if found != anchor_hash:
        report.problem = Problem(
            str(anchor.get("file", "")),
            0,
            "edited",
            f"the record with seq {anchor_seq} does not have the hash in the head anchor: "
            "the trail was rewritten after it was anchored",
        )
        return
    behind = report.last_seq - anchor_seq
    report.anchor = f"matches seq {anchor_seq}" + (
        f" ({behind} later record(s) written after the last fsync)" if behind else ""
    )


def _hash_of_seq(files: list[Path], seq: int, file_name: str) -> bytes | None:
    needle = b',"seq":%d,"prev":"' % seq
    candidates = [p for p in files if p.name.startswith(file_name)] or list(reversed(files))
    for path in candidates + [p for p in reversed(files) if p not in candidates]:
        data = _tail_with(path, needle)
        at = data.rfind(needle)
        if at >= 0:
            end = data.find(b"\n", at)
            sealed = chain.parse_seal(data[data.rfind(b"\n", 0, at) + 1 : end])
            return sealed[2] if sealed is not None and sealed[0] == seq else None
    return None


# ----------------------------------------------------------------- helpers


def _tail_with(path: Path, needle: bytes) -> bytes:
    """The file's last bytes if they hold ``needle``, else all of it. The anchor trails the
    end by at most one fsync interval, so its record is nearly always in the tail."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return fh.read()
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - _ANCHOR_TAIL))
        data = fh.read()
        if needle in data or size <= _ANCHOR_TAIL:
            return data
        fh.seek(0)
        return fh.read()


def _note(file: str, line_no: int, line: bytes) -> Note:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:  # pragma: no cover - the hash matched, so it parses
        value = {}
    data = value.get("additional_data") if isinstance(value, dict) else None
    return Note(file, line_no, str(value.get("event_type")), data if isinstance(data, dict) else {})


def _explain_wrong_key(report: VerifyReport, files: list[Path], key: bytes | None) -> None:
    """A keyed trail checked without its key fails at its first record: say why."""
    problem = report.problem
    if problem is None or problem.kind != "edited" or problem.line != 1:
        return
    first = files[0] if files else None
    if first is None or problem.file != first.name or problem.line != 1:
        return
    with gzip.open(first, "rb") if first.name.endswith(".gz") else open(first, "rb") as fh:
        keyed = b'"keyed":true' in fh.read()
    if key is None and keyed:
        report.needs_key = True
        problem.detail += "; this trail is HMAC-keyed: set AUDIT_HMAC_KEY to verify it"
    elif key is not None and not keyed:
        problem.detail += " (AUDIT_HMAC_KEY is set: is this trail keyed with this key?)"
    elif key is not None:
        problem.detail += " (is AUDIT_HMAC_KEY the key this trail was written with?)"
