"""`verify` and `summary` on a large trail, and `summary` against a pandas full load.

    .venv/bin/python -m benchmarks.audit_cli [--records 1000000] [--dir DIR] [--verify-only]

Writes the trail once with the real AuditLogger (kept in DIR for later runs), then
times verify (1 and 2 worker processes with verify's C line scan when built, and 2 with
the pure-Python reference), summary, and pandas.read_json(lines=True)
plus a value_counts of event_type (the "obvious" way to get the same counts).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from benchmarks.audit_records import records
from bot.audit import AuditLogger, chain, native
from bot.audit.summary import summarize
from bot.audit.verify import verify_trail


def build(directory: Path, n: int) -> None:
    recs = records(n)
    start = 1_790_000_000 * 10**9
    step = 3 * 86_400 * 10**9 // n  # three days of records
    ticks = iter(range(start, start + step * (n + 1000), step))
    with AuditLogger(audit_dir=directory, clock=lambda: next(ticks), checkpoint_interval=600) as lg:
        for rec in recs:
            lg.log_event(**rec)


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers: what other load inflates least."""
    own, workers = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def timed(label: str, fn):  # type: ignore[no-untyped-def]
    started, cpu = time.perf_counter(), cpu_seconds()
    value = fn()
    elapsed = time.perf_counter() - started
    print(f"{label:44}{elapsed:8.2f} s  (CPU {cpu_seconds() - cpu:.2f} s)")
    return value, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/audit-bench-1m")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--verify-only", action="store_true", help="time verify alone")
    args = parser.parse_args()
    directory = Path(args.dir)
    if not chain.trail_files(directory):
        timed(f"write {args.records} records (once)", lambda: build(directory, args.records))
    size = sum(p.stat().st_size for p in chain.trail_files(directory))
    print(f"trail: {directory}, {size / 1e6:.0f} MB")
    for workers in (1, 2):
        report, elapsed = timed(
            f"verify, {workers} worker(s)", lambda w=workers: verify_trail(directory, workers=w)
        )
        assert report.intact, report.problem
        print(f"{'':44}{report.records / elapsed:10,.0f} lines/s")
    built, native.lib = native.lib, None
    report, elapsed = timed("verify, 2 workers, Python reference", lambda: verify_trail(directory))
    print(f"{'':44}{report.records / elapsed:10,.0f} lines/s")
    native.lib = built
    if args.verify_only:
        return
    result, fast = timed("summary (2 workers)", lambda: summarize(directory, workers=2))
    timed("summary (1 worker)", lambda: summarize(directory, workers=1))
    if args.skip_pandas:
        return
    import pandas as pd

    def with_pandas() -> object:
        frames = [pd.read_json(p, lines=True) for p in chain.trail_files(directory)]
        return pd.concat(frames)["event_type"].value_counts()

    counts, slow = timed("pandas.read_json(lines=True) + value_counts", with_pandas)
    assert dict(counts) == dict(result.counts)
    print(f"summary is {slow / fast:.1f}x faster than the pandas full load")


if __name__ == "__main__":
    main()
