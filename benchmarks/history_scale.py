"""Benchmark: does opening a long history cost what opening one day costs? (issue 10, SPEC §9)

    .venv/bin/python -m benchmarks.history_scale [--records 8000000] [--days 60] [--reuse-cache]
        [--append-only]

Generates, with the project's own writer (``AuditLogger`` on an injected clock, the
flows of SPEC §6 from benchmarks/trailgen.py), a 1-day trail and a ``--days``
trail of ``--records`` records with the same records per day (cached under $TMPDIR
between runs), then measures on each, in fresh child processes:

* the first indexing (one-off; the dashboard does it in the background);
* the dashboard's cold load after it (``TrailStore.refresh(verify_history=False)``,
  median of three), its peak RSS, and the integrity status it shows at once;
* a changed closed day: verified again and shown as such;
* ``python -m bot.audit summary`` over everything, first and second run;
* 1,000 appended records until they are in the aggregates (median of five; only this
  with ``--append-only``).

Targets (issue 10): long cold load <= 2x the 1-day one and <= 1 s; peak RSS <= 300 MB;
summary <= 1 s on its second run; 1k append <= 10 ms. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.child import ROOT, run_child
from benchmarks.trailgen import SYMBOLS, flow
from bot.audit import AuditLogger

BASE = Path(tempfile.gettempdir()) / "history_scale"
RUNS = 3


class _Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> int:
        return int(self.now * 1e9)


def generate(directory: Path, records: int, days: int, end: float) -> None:
    """``records`` records spread evenly over ``days`` days ending at ``end``."""
    done = directory / ".complete"
    if done.exists():
        return
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    clock = _Clock(end - days * 86_400)
    rng = random.Random(11)
    gap = days * 86_400 / records
    started = time.perf_counter()
    written = 0
    last_beat = -1e18
    with AuditLogger(
        directory, clock=clock, fsync_interval=3600, checkpoint_interval=1e9
    ) as logger:
        while written < records:
            if clock.now - last_beat >= 60:
                logger.log_event("heartbeat", "heartbeat", additional_data={"uptime": 1.0})
                last_beat = clock.now
                written += 1
            trace_id = f"{rng.getrandbits(64):016x}"
            symbol = rng.choice(SYMBOLS)
            for event_type, operation, fields in flow(rng, symbol, trace_id):
                logger.log_event(event_type, operation, symbol=symbol, trace_id=trace_id, **fields)
                written += 1
                clock.now += gap
    size = sum(p.stat().st_size for p in directory.glob("audit_*"))
    print(
        f"  generated {written:,} records, {len(list(directory.glob('audit_*')))} day files,"
        f" {size / 1e9:.2f} GB in {time.perf_counter() - started:.0f} s"
    )
    done.touch()


_STORE = """
import json, os, resource, sys, time
from dashboard.store import TrailStore
t0 = time.perf_counter()
store = TrailStore({dir!r}, cache_dir={cache!r})
records = store.refresh(verify_history={verify})
seconds = time.perf_counter() - t0
status = store.integrity
progress = store.history_progress
store.stop()
peak = max(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) / 1024
print(json.dumps({{"seconds": seconds, "records": records, "peak_rss_mb": peak,
    "ok": status.ok, "checked": status.checked_records, "reverified": status.reverified_days,
    "pending_days": progress.total_days - progress.done_days}}))
"""

_APPEND = """
import json, random, sys, threading, time
from benchmarks.trailgen import SYMBOLS, flow
from dashboard.store import TrailStore
from bot.audit import AuditLogger
store = TrailStore({dir!r}, cache_dir={cache!r})
store.refresh(verify_history=False)
rng = random.Random(5)
visible, done = [], []
sys.setswitchinterval(1e-4)  # the waiting thread sees the publish at once (as dashboard_ingest)
def publish(version, seen):
    if store.wait_for_version(version, 30):
        seen.append(time.perf_counter())
with AuditLogger({dir!r}, fsync_interval=3600, checkpoint_interval=1e9) as logger:
    for _ in range(7):
        written = 0
        while written < 1000:  # the flows of SPEC 6, as the bot writes them
            trace = f"{{rng.getrandbits(64):016x}}"
            symbol = rng.choice(SYMBOLS)
            for kind, operation, fields in flow(rng, symbol, trace)[: 1000 - written]:
                logger.log_event(kind, operation, symbol=symbol, trace_id=trace, **fields)
                written += 1
        seen = []
        watcher = threading.Thread(target=publish, args=(store.version, seen))
        watcher.start()
        t0 = time.perf_counter()
        store.refresh(verify_history=False)
        done.append(time.perf_counter() - t0)
        watcher.join()
        visible.append(seen[0] - t0)
store.stop()
print(json.dumps({{"visible": visible, "done": done}}))
"""


def _summary(directory: Path, cache: Path) -> float:
    env = {**os.environ, "AUDIT_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bot.audit", "summary", str(directory)],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def measure(name: str, directory: Path, *, reuse: bool) -> dict[str, Any]:
    cache = BASE / f"cache-{name}"
    if not reuse:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(cache.with_name(cache.name + "-summary"), ignore_errors=True)
    fmt = {"dir": str(directory), "cache": str(cache)}
    print(f"\n{name}: {directory}")
    first = run_child(_STORE.format(**fmt, verify=True))
    print(
        f"  first indexing (one-off)     {first['seconds']:7.2f} s  ({first['records']:,} records)"
    )
    cold = sorted(
        (run_child(_STORE.format(**fmt, verify=False)) for _ in range(RUNS)),
        key=lambda run: run["seconds"],
    )
    median = cold[len(cold) // 2]
    print(
        f"  cold load after it           {median['seconds']:7.3f} s  (runs "
        + ", ".join(f"{run['seconds']:.3f}" for run in cold)
        + f"), peak RSS {max(run['peak_rss_mb'] for run in cold):.0f} MB"
    )
    print(
        f"  integrity shown at once      ok={median['ok']} over {median['checked']:,} records,"
        f" {median['pending_days']} day(s) left to verify"
    )
    summary_first = _summary(directory, cache.with_name(cache.name + "-summary"))
    summary_second = _summary(directory, cache.with_name(cache.name + "-summary"))
    print(f"  summary, first run           {summary_first:7.2f} s")
    print(f"  summary, second run          {summary_second:7.2f} s  (target <= 1 s)")
    return {"first": first, "cold": median, "runs": cold, "summary": summary_second}


def changed_day(directory: Path, name: str) -> None:
    """Touch one closed day (same bytes, new mtime): it is verified again and shown so."""
    cache = BASE / f"cache-{name}"
    files = sorted(directory.glob("audit_*.jsonl"))
    if len(files) < 2:
        return
    day = files[len(files) // 2]
    os.utime(day)
    fmt = {"dir": str(directory), "cache": str(cache)}
    run = run_child(_STORE.format(**fmt, verify=True))
    print(
        f"  a changed closed day ({day.name}) verified again in {run['seconds']:.2f} s:"
        f" ok={run['ok']}, reverified={run['reverified']}"
    )


def appends(directory: Path, name: str) -> None:
    cache = BASE / f"cache-{name}"
    copy = BASE / f"{name}-append"
    shutil.rmtree(copy, ignore_errors=True)
    newest = sorted(directory.glob("audit_*"))[-1]
    copy.mkdir(parents=True)
    shutil.copy2(newest, copy / newest.name)  # the newest day only: appends go there
    result = run_child(_APPEND.format(dir=str(copy), cache=str(cache)))
    visible, done = sorted(result["visible"]), sorted(result["done"])
    print(
        f"  1,000 appended records -> aggregates published: median {visible[3] * 1e3:.1f} ms,"
        f" best {visible[0] * 1e3:.1f} ms (target <= 10 ms); with the live chain check"
        f" {done[3] * 1e3:.1f} ms"
    )
    shutil.rmtree(copy, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=8_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument(
        "--reuse-cache",
        action="store_true",
        help="keep the day index caches of the previous run (the first indexing is then warm)",
    )
    parser.add_argument("--append-only", action="store_true", help="measure only the 1k appends")
    args = parser.parse_args()
    per_day = args.records // args.days
    end = time.time()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    one = BASE / f"day1-{per_day}"
    many = BASE / f"days{args.days}-{args.records}"
    print("generating (cached between runs):")
    generate(one, per_day, 1, end)
    generate(many, args.records, args.days, end)
    if args.append_only:
        appends(many, f"{args.days} days")
        return
    measure("1 day", one, reuse=args.reuse_cache)
    measure(f"{args.days} days", many, reuse=args.reuse_cache)
    changed_day(many, f"{args.days} days")
    appends(many, f"{args.days} days")
    # the comparison itself: cold loads of both trails alternated, so that other load on
    # the machine weighs on both alike
    pairs: list[tuple[float, float]] = []
    peak = 0.0
    for _ in range(5):
        runs = [
            run_child(_STORE.format(dir=str(d), cache=str(BASE / f"cache-{n}"), verify=False))
            for d, n in ((one, "1 day"), (many, f"{args.days} days"))
        ]
        pairs.append((runs[0]["seconds"], runs[1]["seconds"]))
        peak = max(peak, runs[1]["peak_rss_mb"])
    small_s = sorted(a for a, _ in pairs)[2]
    large_s = sorted(b for _, b in pairs)[2]
    ratio = large_s / small_s
    print(
        f"\ncold loads alternated 5 times: 1 day {small_s:.3f} s, {args.days} days {large_s:.3f} s"
        f" (medians; pairs " + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in pairs) + ")"
    )
    print(
        f"{args.days}-day cold load / 1-day cold load: {ratio:.2f}x (target <= 2x);"
        f" {large_s:.3f} s (target <= 1 s); peak RSS {peak:.0f} MB (target <= 300 MB)"
    )
    print(json.dumps({"ratio": ratio, "one_day_s": small_s, "long_s": large_s}))


if __name__ == "__main__":
    main()
