"""The C record reader (bot/audit/native/_bulk.c) against the exact per-line path: on
thousands of mutated lines, the cold load's counter either gives up (the exact parsers
then judge the lines) or counts exactly what reader.parse_line and the store's
per-record rules count, and the live path's field reader returns, per line, either None
or exactly the fields the store reads from the parsed record."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.audit import native
from bot.audit.reader import parse_line
from dashboard import history
from dashboard.history import CAPPED, HEARTBEAT, parse_lines
from dashboard.store import line_fields, record_fields
from tests.audit.conftest import FakeClock

if native.bulk is None and os.environ.get("AUDIT_NATIVE_REQUIRED") == "1":
    raise RuntimeError(f"AUDIT_NATIVE_REQUIRED=1 but the accelerator is {native.unavailable}")
pytestmark = pytest.mark.skipif(
    native.bulk is None, reason=f"native accelerator {native.unavailable}"
)

MAX_YEAR = 2030
ALPHABET = b'{}[]",:0123456789.eE+-tfnulr\\ \t\r\x00\x7f\x80\xc3\xa9aZ/'


def truth(lines: list[bytes]) -> dict[str, Any] | None:
    """What the per-line path counts of ``lines``, or None when it finds a bad line."""
    counts: Counter[tuple[int, tuple[str, str, str]]] = Counter()
    capped, last, beat = [], None, None
    for record in parse_lines(lines, MAX_YEAR):
        if isinstance(record, str):
            return None
        try:
            ts, kind, symbol, detail, _, requested, capped_quantity = record_fields(record)
        except ValueError:
            return None
        counts[int(ts // 60), (kind, symbol, detail)] += 1
        last = ts if last is None else max(last, ts)
        if kind == HEARTBEAT:
            beat = ts if beat is None else max(beat, ts)
        if kind == CAPPED:
            extra = record.get("additional_data") or {}
            quantities = [extra.get(name) for name in ("requested_quantity", "capped_quantity")]
            if any(type(q) not in (int, float, type(None)) for q in quantities):
                return None  # the per-line path reads 0.0 where pyarrow fails: both give up
            capped.append((round(ts, 6), symbol, requested, capped_quantity))
    return {"counts": counts, "capped": capped, "last": last, "beat": beat}


def counted(lines: list[bytes]) -> dict[str, Any] | None:
    data = b"".join(line + b"\n" for line in lines)
    chunk = history.count_in_c(data, 0, len(data), 60, MAX_YEAR, {})
    if chunk is None:
        return None
    counts: Counter[tuple[int, tuple[str, str, str]]] = Counter()
    for bucket, by_key in chunk.counts:
        for key, n in by_key.items():
            counts[bucket, key] += n
    assert chunk.rows == len(lines) == sum(counts.values())
    assert chunk.totals == dict(Counter(key[0] for (_, key) in counts.elements()))
    capped = [(round(ts, 6), sym, req, cap) for ts, sym, req, cap in chunk.capped]
    return {"counts": counts, "capped": capped, "last": chunk.last_ts, "beat": chunk.last_heartbeat}


def mutate(rng: random.Random, line: bytes) -> bytes:
    at = rng.randrange(len(line) + 1)
    byte = bytes([rng.choice(ALPHABET)])
    how = rng.randrange(4)
    if how == 0:
        return line[:at] + byte + line[at + 1 :]
    if how == 1:
        return line[:at] + byte + line[at:]
    if how == 2:
        return line[:at] + line[at + 1 :]
    end = min(len(line), at + rng.randrange(1, 40))
    return line[:end] + line[at:end] + line[end:]  # a repeated segment


@pytest.fixture
def sample(tmp_path: Path, make_trail: Callable[..., FakeClock]) -> list[bytes]:
    make_trail(tmp_path, flows=16)
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("audit_*.jsonl"))).splitlines()


def fields_agree(lines: list[bytes]) -> int:
    """How many lines the field reader read, each checked against the exact path."""
    read = 0
    for line, fields in zip(lines, line_fields(lines, MAX_YEAR), strict=True):
        if fields is not None:
            record = parse_line(line, MAX_YEAR)
            assert not isinstance(record, str), (line, record)
            assert fields == record_fields(record), line
            read += 1
    return read


def agree(lines: list[bytes]) -> bool:
    """True when the counter counted (and counted right); False when it gave up. The
    field reader is checked on the same lines."""
    read = fields_agree(lines)
    got, expected = counted(lines), truth(lines)
    if got is not None:
        assert read == len(lines)  # what the counter takes, the field reader takes
    if got is None:
        return False
    assert expected is not None, lines
    if expected["last"] is not None:
        expected["last"] = pytest.approx(expected["last"], abs=1e-6)
    if expected["beat"] is not None:
        expected["beat"] = pytest.approx(expected["beat"], abs=1e-6)
    assert got == expected, lines
    return True


def test_a_written_trail_is_counted_in_c_as_the_line_path_counts_it(sample: list[bytes]) -> None:
    assert agree(sample)  # an ordinary trail never falls back
    assert fields_agree(sample) == len(sample)


def test_every_mutation_is_either_counted_right_or_given_up(sample: list[bytes]) -> None:
    rng = random.Random(5)
    outcomes: Counter[bool] = Counter()
    for _ in range(4000):
        lines = list(sample[:8])
        i = rng.randrange(len(lines))
        for _ in range(rng.choice((1, 1, 2, 3))):
            lines[i] = mutate(rng, lines[i])
        outcomes[agree(lines)] += 1
    assert outcomes[True] > 100 and outcomes[False] > 1000  # both branches exercised


STAMP = b'{"timestamp":"2026-11-18T10:00:00.5Z",'
EDGE_LINES = {
    "escaped key": STAMP + b'"event_t\\u0079pe":"heartbeat","operation":"x"}',
    "escaped repeated key": STAMP + b'"event_type":"heartbeat","operation":"x",'
    b'"sym\\u0062ol":"ETHUSDT","order_data":{"order_type":"A","\\u006frder_type":"B"}}',
    "escaped symbol": STAMP + b'"event_type":"heartbeat","operation":"x","symbol":"BTC\\/U"}',
    "escaped operation (counted)": STAMP + b'"event_type":"heartbeat","operation":"a\\"b"}',
    "duplicate symbol": STAMP
    + b'"event_type":"heartbeat","operation":"x","symbol":"A","symbol":"B"}',
    "duplicate error": STAMP + b'"event_type":"risk_rejection","operation":"x",'
    b'"error":{"reason":"first"},"error":null}',
    "empty order type": STAMP + b'"event_type":"order_placed","operation":"x",'
    b'"order_data":{"order_type":"","type":"LIMIT"}}',
    "response order type": STAMP + b'"event_type":"order_rejected","operation":"x",'
    b'"order_data":{},"response":{"orderType":"MARKET"}}',
    "integer quantity": STAMP + b'"event_type":"position_size_capped","operation":"x",'
    b'"additional_data":{"requested_quantity":3,"capped_quantity":null}}',
    "string quantity": STAMP + b'"event_type":"position_size_capped","operation":"x",'
    b'"additional_data":{"requested_quantity":"3"}}',
    "null operation": STAMP + b'"event_type":"heartbeat","operation":null}',
    "null symbol": STAMP + b'"event_type":"heartbeat","operation":"x","symbol":null}',
    "array data": STAMP + b'"event_type":"heartbeat","operation":"x","error":[1]}',
    "deep nesting": STAMP
    + b'"event_type":"heartbeat","operation":"x","extra":'
    + b"[" * 100
    + b"]" * 100
    + b"}",
    "February 30": b'{"timestamp":"2026-02-30T10:00:00Z","event_type":"heartbeat","operation":"x"}',
    "leap second": b'{"timestamp":"2026-11-18T23:59:60Z","event_type":"heartbeat","operation":"x"}',
    "year 1999": b'{"timestamp":"1999-11-18T10:00:00Z","event_type":"heartbeat","operation":"x"}',
    "huge integer": STAMP + b'"event_type":"heartbeat","operation":"x","n":' + b"9" * 400 + b"}",
    "tiny exponent": STAMP + b'"event_type":"heartbeat","operation":"x","n":1e-400}',
    "whitespace": b' { "timestamp" : "2026-11-18T10:00:00Z" , "event_type" : "heartbeat" ,'
    b' "operation" : "x" } \r',
    "unknown event type": STAMP + b'"event_type":"lunch","operation":"x"}',
    "trailing bytes": STAMP + b'"event_type":"heartbeat","operation":"x"}x',
    "empty object": b"{}",
    "not an object": b"[]",
}


COUNTED_IN_C = {  # the others are given up: invalid, or left to the exact parsers
    "escaped operation (counted)",
    "duplicate symbol",
    "duplicate error",
    "empty order type",
    "response order type",
    "integer quantity",
    "null symbol",
    "tiny exponent",
    "whitespace",
}


@pytest.mark.parametrize("case", list(EDGE_LINES))
def test_edge_lines_are_counted_right_or_given_up(sample: list[bytes], case: str) -> None:
    assert agree([*sample[:3], EDGE_LINES[case], *sample[3:6]]) is (case in COUNTED_IN_C)


def test_blank_and_unterminated_lines_are_given_up(sample: list[bytes]) -> None:
    data = b"\n".join(sample[:4]) + b"\n"
    assert history.count_in_c(data, 0, len(data), 60, MAX_YEAR, {}) is not None
    assert history.count_in_c(data + b"\n", 0, len(data) + 1, 60, MAX_YEAR, {}) is None
    assert history.count_in_c(data[:-1], 0, len(data) - 1, 60, MAX_YEAR, {}) is None
    assert history.count_in_c(data, 0, len(data), 60, 2020, {}) is None  # a year past max_year
