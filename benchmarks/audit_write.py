"""Caller-side latency of writing the same realistic records four ways.

    .venv/bin/python -m benchmarks.audit_write [--records 200000] [--dir DIR]

(a) our AuditLogger (hash chain, write(2) before returning, batched fdatasync); pure Python
(b) the seed note's style: open, json.dumps, write, close per event
(c) stdlib logging FileHandler with python-json-logger
(d) structlog with orjson, writing to a file
Prints p50/p99/p99.9/max in µs, events/s, CPU µs per record (this thread's CPU time, which
other processes' load does not inflate) and the ratios against (a). Each contender starts
after ``os.sync()``, so none pays for the writeback of another's data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.audit_records import records
from bot.audit import AuditLogger


def measure(name: str, recs: list[dict[str, Any]], emit: Callable[[dict[str, Any]], None]) -> dict:
    # Each contender starts on a written-back page cache: the kernel's writeback of what
    # an earlier one (or an earlier run) wrote would otherwise compete on the 2 CPUs.
    os.sync()
    timer = time.perf_counter_ns
    latencies = [0] * len(recs)
    started, cpu_started = time.perf_counter(), time.thread_time()
    for i, rec in enumerate(recs):
        t = timer()
        emit(rec)
        latencies[i] = timer() - t
    elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
    latencies.sort()
    n = len(latencies)
    return {
        "name": name,
        "p50": latencies[n // 2] / 1000,
        "p99": latencies[int(n * 0.99)] / 1000,
        "p999": latencies[int(n * 0.999)] / 1000,
        "max": latencies[-1] / 1000,
        "eps": n / elapsed,
        "cpu": cpu / n * 1e6,  # this thread's CPU time per record (harness included): load-proof
    }


def plain(rec: dict[str, Any]) -> dict[str, Any]:
    out = dict(rec)
    out["event_type"] = rec["event_type"].value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="audit-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    recs = records(args.records)
    plain_recs = [plain(r) for r in recs]
    results = []

    audit = AuditLogger(audit_dir=base / "a", fsync_interval=1.0)
    results.append(measure("(a) AuditLogger", recs, lambda r: audit.log_event(**r)))
    audit.close()

    seed_dir = base / "b"
    seed_dir.mkdir()

    def seed_style(rec: dict[str, Any]) -> None:
        entry = {"timestamp": datetime.now().isoformat(), **rec}
        path = seed_dir / f"audit_{datetime.now():%Y%m%d}.jsonl"
        with open(path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    results.append(measure("(b) seed: open/dumps/write/close", plain_recs, seed_style))

    from pythonjsonlogger.json import JsonFormatter

    handler = logging.FileHandler(base / "c.jsonl")
    handler.setFormatter(JsonFormatter("%(asctime)s %(message)s"))
    stdlib = logging.getLogger("bench.audit")
    stdlib.propagate = False
    stdlib.addHandler(handler)
    stdlib.setLevel(logging.INFO)
    results.append(
        measure(
            "(c) logging + python-json-logger",
            plain_recs,
            lambda r: stdlib.info(r["operation"], extra={"audit": r}),
        )
    )
    handler.close()

    import orjson
    import structlog

    out = open(base / "d.jsonl", "wb")  # noqa: SIM115 - closed below
    slog = structlog.wrap_logger(
        structlog.BytesLogger(out),
        processors=[
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        cache_logger_on_first_use=True,
    )
    results.append(measure("(d) structlog + orjson", plain_recs, lambda r: slog.info("audit", **r)))
    out.close()

    print(f"{args.records} records, caller-side latency in µs, on {base}")
    print(f"{'':36}{'p50':>8}{'p99':>8}{'p99.9':>9}{'max':>10}{'events/s':>12}{'cpu/rec':>9}")
    for r in results:
        print(
            f"{r['name']:36}{r['p50']:8.2f}{r['p99']:8.2f}{r['p999']:9.2f}{r['max']:10.1f}"
            f"{r['eps']:12,.0f}{r['cpu']:9.2f}"
        )
    ours = results[0]
    for r in results[1:]:
        print(
            f"{r['name']:36} p50 {r['p50'] / ours['p50']:5.1f}x  p99 "
            f"{r['p99'] / ours['p99']:5.1f}x  cpu {r['cpu'] / ours['cpu']:5.1f}x of (a)"
        )
    if args.dir is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
