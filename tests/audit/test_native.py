"""The C accelerator (bot/audit/native) against the pure-Python reference: the same calls
write byte-identical trails, the verifier's two scans agree line for line on hundreds of
tampered trails, and concurrent writers keep one intact chain."""

from __future__ import annotations

import math
import os
import random
import struct
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from bot.audit import AuditEventType, AuditLogger, chain, native, trace
from bot.audit import verify as verify_module
from bot.audit.reader import iter_records
from bot.audit.verify import verify_trail
from tests.audit.conftest import MIDNIGHT, FakeClock
from tests.audit.test_tamper import KINDS, mutate, write_trail

E = AuditEventType

if native.lib is None and os.environ.get("AUDIT_NATIVE_REQUIRED") == "1":
    raise RuntimeError(f"AUDIT_NATIVE_REQUIRED=1 but the accelerator is {native.unavailable}")
pytestmark = pytest.mark.skipif(
    native.lib is None, reason=f"native accelerator {native.unavailable}"
)


@pytest.fixture
def python_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Loggers and verifiers created inside use the pure-Python reference."""
    monkeypatch.setattr(native, "lib", None)
    yield


class Unserializable:
    def __str__(self) -> str:
        return "<unserializable>"


def exercise(directory: Path, key: bytes | None) -> None:
    """Every branch of log_event: fast path, each hand-over to Python, midnight, restart."""
    rng = random.Random(7)
    for run in range(2):
        clock = FakeClock(MIDNIGHT - 40 * 10**9 + run * 3600 * 10**9, step_ns=97_531_000)
        with AuditLogger(
            audit_dir=directory,
            clock=clock,
            run_id=f"run-{run}",
            hmac_key=key,
            redact_values=("s3cr3t-value",),
        ) as logger:
            for i in range(600):
                kind = rng.choice([E.ORDER_PLACED, E.RISK_REJECTION, "heartbeat"])
                choice = i % 12
                if choice == 0:  # nested object: the secret-key walk
                    logger.log_event(kind, "op", additional_data={"outer": {"api_key": "k"}})
                elif choice == 1:  # a value to redact wherever it appears
                    logger.log_event(kind, "op", error={"message": "bad s3cr3t-value here"})
                elif choice == 2:  # not serializable by orjson: stringified and noted
                    logger.log_event(kind, "op", additional_data={"obj": Unserializable()})
                elif choice == 3:  # not a dict: wrapped
                    logger.log_event(kind, "op", response=[1, 2, 3])  # type: ignore[arg-type]
                elif choice == 4:
                    with trace(f"trace-{i}"):
                        logger.log_event(kind, "op", symbol="BTCUSDT", order_data={"qty": i})
                elif choice == 5:
                    logger.log_event(
                        event_type=kind,
                        operation="op",
                        trace_id=f"t{i}",
                        additional_data={"price": Decimal("1.10"), "nan": float("nan")},
                    )
                elif choice == 6:  # keys first seen now, then known (fast path)
                    logger.log_event(kind, "op", additional_data={f"k{i % 5}": "v"})
                elif choice == 7:
                    logger.log_event(kind, 12345, symbol=None)  # type: ignore[arg-type]
                elif choice == 8 and i % 24 == 8:  # top-level strings that need escaping
                    logger.log_event(kind, 'say "é"\n', symbol="BTC\\USDT", trace_id="\x7f")
                elif choice == 8:
                    logger.log_order_placed("ETHUSDT", {"side": "BUY", "quantity": 0.5})
                else:
                    logger.log_event(
                        kind,
                        "op",
                        symbol=rng.choice(["BTCUSDT", "ETHUSDT"]),
                        order_data={"price": round(rng.uniform(1, 9e4), 2), "qty": i},
                        response={"status": "NEW", "orderId": i},
                        additional_data={"i": i, "note": 'quote " and \\ and é'},
                    )
            if run == 0:
                logger.checkpoint()


def trail_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in chain.trail_files(directory)}


@pytest.mark.parametrize("key", [None, b"k" * 80], ids=["sha256", "hmac-long-key"])
def test_native_and_python_writers_write_identical_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: bytes | None
) -> None:
    exercise(tmp_path / "native", key)
    monkeypatch.setattr(native, "lib", None)
    exercise(tmp_path / "python", key)
    fast, reference = trail_bytes(tmp_path / "native"), trail_bytes(tmp_path / "python")
    assert len(fast) == 2 and fast == reference  # across midnight and a restart
    assert verify_trail(tmp_path / "native", hmac_key=key, workers=1).intact
    text = b"".join(fast.values())
    assert b"s3cr3t-value" not in text and b'"api_key":"k"' not in text


def awkward_numbers(rng: random.Random) -> list[object]:
    """Values the C writer formats itself or hands to orjson, with the edges of its range."""
    tiny = 5e-324
    edges: list[object] = [0.0, -0.0, 1e-4, -1e-4, 1e-5, 1e15, -1e15, 1e15 - 1, 1e15 - 0.5]
    edges += [tiny, 1.7976931348623157e308, 0.1 + 0.2, 2.0**53, 2.0**53 + 2, 9.999999999999999e14]
    edges += [math.nextafter(1e-4, 0), math.nextafter(1e15, 0), math.nextafter(1.0, 2)]
    edges += [0, -1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, True, False, None, "text"]
    values = list(edges)
    for _ in range(20_000):
        magnitude = 10 ** rng.uniform(-6, 17)
        sign = rng.choice((1, -1))
        values.append(sign * magnitude)  # up to 17 significant digits
        values.append(round(sign * magnitude, rng.randrange(0, 12)))  # prices, quantities
        values.append(struct.unpack("<d", rng.randbytes(8))[0])  # any bit pattern
        values.append(rng.randrange(-(2**70), 2**70) >> rng.randrange(0, 70))
    return [v for v in values if not (isinstance(v, float) and not math.isfinite(v))]


def exact_json(value: object) -> object:
    big = isinstance(value, int) and not -(2**63) <= value < 2**64
    return str(value) if big else value


def test_native_numbers_are_written_as_orjson_writes_them(tmp_path: Path) -> None:
    values = awkward_numbers(random.Random(11))
    objects = [
        {f"k{j}": v for j, v in enumerate(values[i : i + 5])} for i in range(0, len(values), 5)
    ]
    with AuditLogger(audit_dir=tmp_path / "a") as logger:
        for obj in objects:
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data=obj)
    lines = b"".join(trail_bytes(tmp_path / "a").values()).splitlines()
    written = [line for line in lines if b'"operation":"heartbeat"' in line]
    assert len(written) == len(objects)
    for line, obj in zip(written, objects, strict=True):
        record = orjson.loads(line)
        if record["additional_data"] != obj:  # beyond 64 bits: kept as exact digits, noted
            assert record["additional_data"] == {k: exact_json(v) for k, v in obj.items()}
            assert record["audit_note"] == {"stringified_types": ["int beyond 64 bits"]}
            continue
        assert b'"additional_data":' + orjson.dumps(obj) + b"," in line
    assert verify_trail(tmp_path / "a", workers=1).intact


def test_the_native_writer_is_the_one_in_use_and_hands_over_rare_cases(tmp_path: Path) -> None:
    with AuditLogger(audit_dir=tmp_path / "a") as logger:
        assert type(logger._state).__module__ == "bot.audit.native._chain"
        logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"uptime_s": 1})
        logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"uptime_s": 2})
        with pytest.raises(TypeError):
            logger.log_event(E.HEARTBEAT, "heartbeat", bogus=1)  # type: ignore[call-arg]
        assert logger.stats.written == 2 and logger.head[0] == 2


def test_concurrent_threads_share_one_intact_chain(tmp_path: Path) -> None:
    per_thread, threads = 3000, 4
    logger = AuditLogger(audit_dir=tmp_path / "a", fsync_interval=0.01, checkpoint_interval=0.02)

    def work(n: int) -> None:
        for i in range(per_thread):
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"thread": n, "i": i})
            if i % 500 == 0:
                logger.checkpoint()  # the Python path, under the same lock

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    logger.close()
    records = [r for r in iter_records(tmp_path / "a") if r["event_type"] == "heartbeat"]
    assert len(records) == per_thread * threads
    for n in range(threads):  # each thread's records in its own order
        mine = [r["additional_data"]["i"] for r in records if r["additional_data"]["thread"] == n]
        assert mine == list(range(per_thread))
    assert verify_trail(tmp_path / "a", workers=1).intact


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("native-scan")
    write_trail(base / "trail", seed=11)
    write_trail(base / "other", seed=12)
    return base / "trail", base / "other"


def both_scans(directory: Path, key: bytes | None) -> list[tuple[object, object]]:
    """(C, Python) scan results for every day file, from the chain state before it."""
    seq, prev = 0, chain.GENESIS_HASH.encode()
    out = []
    for path in chain.trail_files(directory):
        data = path.read_bytes()
        lines = data[: data.rfind(b"\n")].split(b"\n") if b"\n" in data else []
        day = verify_module._line_start(path, chain.FILE_PREFIX)
        notes_c: list[tuple[int, bytes]] = []
        notes_py: list[tuple[int, bytes]] = []
        assert native.lib is not None
        fast = native.lib.scan(data, seq, prev, key, day, chain.EVENT_TYPE_AT, notes_c)
        slow = verify_module._scan_lines(lines, seq, prev, key, day, notes_py)
        out.append(((fast, notes_c), (slow, notes_py)))
        seq, prev = slow[1], slow[2]
    return out


def test_native_and_python_scans_agree_on_every_mutation(pristine, tmp_path: Path) -> None:
    trail, other = pristine
    rng = random.Random(2026)
    for round_ in range(180):
        work = tmp_path / f"t{round_}"
        work.mkdir()
        for path in trail.iterdir():
            (work / path.name).write_bytes(path.read_bytes())
        mutate(rng, KINDS[round_ % len(KINDS)], work, other)
        for fast, slow in both_scans(work, None):
            assert fast == slow, f"round {round_}"


def test_native_scan_checks_hmac_and_reports_notes(tmp_path: Path) -> None:
    key = b"secret-key"
    with AuditLogger(audit_dir=tmp_path / "a", hmac_key=key) as logger:
        for i in range(50):
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    (path,) = chain.trail_files(tmp_path / "a")
    data = path.read_bytes()
    day = verify_module._line_start(path, chain.FILE_PREFIX)
    assert native.lib is not None
    genesis = chain.GENESIS_HASH.encode()
    bad, seq, _ = native.lib.scan(data, 0, genesis, key, day, chain.EVENT_TYPE_AT, None)
    assert bad is None and seq == 51  # 50 records and the closing checkpoint
    assert native.lib.scan(data, 0, genesis, b"wrong", day, chain.EVENT_TYPE_AT, None)[0] == 0
    assert native.lib.scan(data, 0, genesis, None, day, chain.EVENT_TYPE_AT, None)[0] == 0


def test_the_python_reference_alone_still_writes_and_verifies(
    tmp_path: Path, python_only: None
) -> None:
    with AuditLogger(audit_dir=tmp_path / "a") as logger:
        assert type(logger._state).__name__ == "_ChainState"
        for i in range(20):
            logger.log_event(E.HEARTBEAT, "heartbeat", additional_data={"i": i})
    assert verify_trail(tmp_path / "a", workers=2).intact


def test_the_native_record_check_accepts_only_what_the_python_check_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.audit.events import EVENT_TYPE_VALUES
    from bot.audit.reader import validate

    assert native.lib is not None
    plain = native.lib.is_plain_record
    exercise(tmp_path / "a", None)
    written = list(iter_records(tmp_path / "a"))
    assert written and all(plain(r, 2030, EVENT_TYPE_VALUES) for r in written)

    base = dict(written[0])
    stamps = [
        "2026-11-19T00:00:00Z",
        "2026-11-19T00:00:00.1Z",
        "2026-11-19T00:00:00.123456Z",
        "2026-11-19T00:00:00.1234567Z",
        "2026-11-19T00:00:00.Z",
        "2026-11-19T00:00:00Z\n",
        "2026-11-19 00:00:00Z",
        "2026-11-19T00:00:00+00:00",
        "١٢٣٤-11-19T00:00:00Z",  # non-ASCII digits: Python's \\d accepts them
        "1999-12-31T23:59:59Z",
        "2031-01-01T00:00:00Z",
        "20261119T000000Z",
        "",
    ]
    variants: list[object] = [[], "text", None]
    variants += [base | {"timestamp": stamp} for stamp in stamps]
    for name in ["timestamp", "event_type", "operation", "symbol", "trace_id", "run_id"]:
        variants += [base | {name: value} for value in (None, 1, b"x", ["x"])]
        variants.append({k: v for k, v in base.items() if k != name})
    for name in ["order_data", "response", "error", "additional_data"]:
        variants += [base | {name: value} for value in (None, [], "x", {"a": 1})]
    variants.append(base | {"event_type": "not_an_event"})
    verdicts = [plain(v, 2030, EVENT_TYPE_VALUES) for v in variants]
    monkeypatch.setattr(native, "lib", None)
    for value, fast in zip(variants, verdicts, strict=True):
        reason = validate(value, 2030)
        if fast:
            assert reason is None, value
    assert sum(verdicts) >= 10 and not all(verdicts)
