"""Benchmark of the dashboard data path (dashboard/store.py and the day index), 1M records.

    .venv/bin/python -m benchmarks.dashboard_ingest [--records N] [--parsers] [--append-only]
        [--pages-only]

Measures, on a generated realistic trail (sealed lines of every flow of SPEC §6
plus heartbeats, several day files; cached under $TMPDIR between runs), with the day
index cache in its own directory under $TMPDIR:

* first start: ``TrailStore.refresh(verify_history=False)`` on an empty cache (the
  newest day is read, older days are left to the background), then the first indexing
  of the whole history;
* restart: the same on the kept day indexes — wall time and peak RSS, in fresh child
  processes (three runs, the median reported, as a shared 2-CPU machine varies by
  +-20 % from run to run) — against ``pandas.read_json(lines=True)`` reloading
  everything, in the same run;
* 1,000 appended records until they are in the aggregates (``refresh()`` and live);
  ``--append-only`` measures only this and what follows (on the kept day indexes);
* all panels' data: every query method over a 24 h window plus the metrics;
* each page's data (overview, signals, results, orders, alerts, events, trail: what
  its view asks of the store) over 24 h and over the whole trail; ``--pages-only``
  measures only this (on the kept day indexes);
* with ``--parsers``: the per-line readers on one day file (orjson, the validating
  reader, the day index).

Targets: cold load <= 2 s and <= 1 GB peak RSS and >= 5x faster than the pandas reload,
1k append <= 10 ms, panel data <= 200 ms. Figures: docs/benchmarks.md.

This module holds the command line and the parser comparison; the trail comes from
benchmarks/trailgen.py, the measures from benchmarks/ingest_cold.py, ingest_live.py and
ingest_pages.py.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.ingest_cold import measure_cold
from benchmarks.ingest_live import measure_live
from benchmarks.ingest_pages import measure_pages_only
from benchmarks.trailgen import generated_trail


def measure_parsers(directory: Path) -> None:
    """The per-line readers on the largest day file (what a first indexing costs)."""
    path = max(directory.glob("audit_*.jsonl"), key=lambda p: p.stat().st_size)
    data = path.read_bytes()
    lines = data.split(b"\n")[:-1]
    n = len(lines)
    print(f"\nreaders on {path.name}: {n:,} lines, {len(data) / 1e6:.0f} MB")

    def timed(name: str, fn: Any) -> None:
        t, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, used = time.perf_counter() - t, time.process_time() - cpu
        print(f"  {name:<44} {wall:6.2f} s wall {used:6.2f} s CPU {n / wall / 1e6:5.2f} M lines/s")

    loads = orjson.loads
    timed("split only", lambda: data.split(b"\n"))
    timed("orjson.loads per line", lambda: [loads(x) for x in lines])

    from bot.audit.dayfile import index_file
    from bot.audit.reader import parse_line

    timed("reader.parse_line per line (validated)", lambda: [parse_line(x) for x in lines])
    timed("dayfile.index_file (+ rule, chain check)", lambda: index_file(path, "bot", None))

    import pandas as pd

    timed("pandas.read_json(lines=True) (ujson)", lambda: pd.read_json(str(path), lines=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--parsers", action="store_true", help="measure the parser candidates")
    parser.add_argument(
        "--append-only", action="store_true", help="skip the cold loads (child processes)"
    )
    parser.add_argument(
        "--pages-only", action="store_true", help="only each page's data (on the kept indexes)"
    )
    args = parser.parse_args()
    directory = generated_trail(args.records)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (figures are wall time)")
    files = sorted(directory.glob("audit_*"))
    size = sum(p.stat().st_size for p in files)
    print(f"trail: {args.records:,} records in {len(files)} day files, {size / 1e6:.0f} MB")
    if args.parsers:
        measure_parsers(directory)
        return

    if args.pages_only:
        measure_pages_only(directory)
        return
    if not args.append_only:
        measure_cold(directory)
    measure_live(directory)


if __name__ == "__main__":
    main()
