"""Tamper battery: hundreds of seeded random mutations, each detected by `verify` with the
first bad file and line named; untouched trails with restarts and rollovers always pass."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import orjson
import pytest

from bot.audit import AuditEventType, AuditLogger, chain
from bot.audit.verify import verify_trail
from tests.audit.conftest import MIDNIGHT, FakeClock, run_cli

E = AuditEventType
KINDS = (
    "byte",
    "number",
    "delete",
    "insert",
    "duplicate",
    "swap",
    "splice",
    "truncate",
    "remove_key",
)


def write_trail(directory: Path, seed: int, runs: int = 3, per_run: int = 40) -> None:
    """A trail with restarts and midnight rollovers (about 20 records per day)."""
    rng = random.Random(seed)
    start = MIDNIGHT - 10 * 3600 * 10**9
    for run in range(runs):
        clock = FakeClock(start + run * 40 * 3600 * 10**9, step_ns=3600 * 10**9)
        with AuditLogger(audit_dir=directory, clock=clock, run_id=f"run-{seed}-{run}") as logger:
            for i in range(per_run):
                logger.log_event(
                    rng.choice([E.ORDER_PLACED, E.RISK_REJECTION, E.HEARTBEAT]),
                    "op",
                    symbol=rng.choice(["BTCUSDT", "ETHUSDT"]),
                    order_data={"price": round(rng.uniform(1, 9e4), 2), "qty": rng.randint(1, 99)},
                    additional_data={"i": i, "run": run},
                )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tamper")
    write_trail(base / "trail", seed=1)
    write_trail(base / "other", seed=2)
    return base / "trail", base / "other"


def day_lines(directory: Path) -> list[tuple[Path, list[bytes]]]:
    return [(p, p.read_bytes().splitlines(keepends=True)) for p in chain.trail_files(directory)]


def mutate(rng: random.Random, kind: str, directory: Path, other: Path) -> tuple[str, int]:
    """Apply one mutation; return (file name, 1-based line) where verify must point."""
    files = day_lines(directory)
    index = rng.randrange(len(files))
    path, lines = files[index]
    k = rng.randrange(len(lines))
    last_file = index == len(files) - 1

    def next_start() -> tuple[str, int]:
        """Where a removal at the end of this file shows: the next file's first line."""
        if k < len(lines):
            return path.name, k + 1
        if not last_file:
            return files[index + 1][0].name, 1
        return path.name, k + 1  # end of the trail: the head anchor reports it

    if kind == "byte":
        line = bytearray(lines[k])
        at = rng.randrange(len(line) - 1)
        line[at] = rng.choice([b for b in range(32, 127) if b != line[at]])
        lines[k] = bytes(line)
    elif kind == "number":
        numbers = list(re.finditer(rb'"(price|qty|i)":(\d+(\.\d+)?)', lines[k]))
        if not numbers:
            lines[k] = lines[k].replace(b'"seq":', b'"seq": ', 1)
        else:
            m = rng.choice(numbers)
            value = m.group(2)
            new = value + (b"0" if b"." in value else b".0")
            lines[k] = lines[k][: m.start(2)] + new + lines[k][m.end(2) :]
    elif kind == "delete":
        del lines[k]
        where = next_start()
        path.write_bytes(b"".join(lines))
        return where
    elif kind == "insert":
        donor = rng.choice([ln for _, ls in files for ln in ls])
        lines.insert(k, donor)
        if k + 1 < len(lines) and donor == lines[k + 1]:
            path.write_bytes(b"".join(lines))
            return path.name, k + 2  # a copy of the line that follows: that one is bad
    elif kind == "duplicate":
        lines.insert(k + 1, lines[k])
        path.write_bytes(b"".join(lines))
        return path.name, k + 2
    elif kind == "swap":
        if k + 1 >= len(lines):
            k -= 1
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
    elif kind == "splice":
        donor_lines = day_lines(other)[min(index, len(day_lines(other)) - 1)][1]
        lines[k] = donor_lines[min(k, len(donor_lines) - 1)]
        if index == 0 and k == 0:
            # Another unkeyed trail's genesis record is a valid first record: the break
            # shows on the next line (an HMAC key is what makes trails unforgeable).
            path.write_bytes(b"".join(lines))
            return path.name, 2
    elif kind == "truncate":
        path, lines = files[-1]
        keep = rng.randrange(len(lines))
        cut = b"".join(lines[:keep])
        partial = rng.random() < 0.3
        if partial:
            cut += lines[keep][: rng.randrange(1, len(lines[keep]) - 1)]
        path.write_bytes(cut)
        return path.name, keep + 1
    elif kind == "remove_key":
        record = orjson.loads(lines[k])
        record.pop(rng.choice([key for key in record if key != "timestamp"]))
        lines[k] = orjson.dumps(record) + b"\n"
    path.write_bytes(b"".join(lines))
    return path.name, k + 1


def test_untouched_trails_with_restarts_and_rollovers_always_verify(tmp_path):
    for seed in range(5):
        directory = tmp_path / f"t{seed}"
        write_trail(directory, seed=seed, runs=2 + seed % 3, per_run=30 + seed * 7)
        assert len(chain.trail_files(directory)) >= 3
        report = verify_trail(directory, workers=1)
        assert report.intact, report.problem
        assert report.anchor.startswith("matches")


def test_every_random_mutation_is_detected_at_the_right_line(pristine, tmp_path):
    trail, other = pristine
    rng = random.Random(1118)
    detected = {kind: 0 for kind in KINDS}
    for n in range(360):
        kind = KINDS[n % len(KINDS)]
        work = tmp_path / f"m{n}"
        shutil.copytree(trail, work)
        expected = mutate(rng, kind, work, other)
        report = verify_trail(work, workers=1)
        assert report.problem is not None, f"#{n} {kind} not detected"
        got = (report.problem.file, report.problem.line)
        assert got == expected, f"#{n} {kind}: expected {expected}, verify said {report.problem}"
        detected[kind] += 1
        shutil.rmtree(work)
    assert all(count >= 40 for count in detected.values())


def test_the_command_line_names_what_is_wrong(pristine, tmp_path):
    trail, _ = pristine
    cases = {
        "edited": lambda ls: ls.__setitem__(3, ls[3].replace(b'"op"', b'"oq"')),
        "deleted": lambda ls: ls.__delitem__(3),
        "reordered": lambda ls: ls.__setitem__(slice(3, 5), [ls[4], ls[3]]),
        "duplicated": lambda ls: ls.insert(3, ls[2]),
    }
    for kind, change in cases.items():
        work = tmp_path / kind
        shutil.copytree(trail, work)
        first = chain.trail_files(work)[0]
        lines = first.read_bytes().splitlines(keepends=True)
        change(lines)
        first.write_bytes(b"".join(lines))
        done = run_cli("verify", str(work))
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"{first.name} line 4: {kind}" in done.stdout, done.stdout


def test_a_truncated_tail_is_caught_by_the_head_anchor_and_an_edited_anchor_too(pristine, tmp_path):
    trail, _ = pristine
    work = tmp_path / "cut"
    shutil.copytree(trail, work)
    last = chain.trail_files(work)[-1]
    lines = last.read_bytes().splitlines(keepends=True)
    last.write_bytes(b"".join(lines[:-2]))
    done = run_cli("verify", str(work))
    assert done.returncode == 1 and "truncated" in done.stdout
    assert f"{last.name} line {len(lines) - 1}" in done.stdout

    anchor_path = work / chain.ANCHOR_FILE
    anchor = orjson.loads(anchor_path.read_bytes())
    anchor["seq"] -= 2  # hide the cut: the anchor's mac no longer matches
    anchor_path.write_bytes(orjson.dumps(anchor))
    done = run_cli("verify", str(work))
    assert done.returncode == 1 and "head anchor" in done.stdout

    anchor_path.unlink()  # without an anchor the cut cannot be seen: said, not hidden
    done = run_cli("verify", str(work))
    assert done.returncode == 0 and "cannot be checked" in done.stdout
