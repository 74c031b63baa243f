"""Cold loads for benchmarks/dashboard_ingest.py: first start, first indexing, restart.

Each load runs in a fresh child process (a cold interpreter, its own peak RSS); the
restart on the kept day indexes is compared with ``pandas.read_json(lines=True)``
reloading the whole trail in the same run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.child import run_child
from benchmarks.trailgen import CACHE

COLD_RUNS = 3

_PEAK = """
import resource
def _cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
def _rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
def _peak_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
"""

COLD_STORE = (
    _PEAK
    + """
import json, sys, time
from dashboard.store import TrailStore
import gc
rss0 = _rss_mb()
cpu0 = _cpu()
t = time.perf_counter()
store = TrailStore(sys.argv[1] if len(sys.argv) > 1 else {dir!r})
n = store.refresh(verify_history={verify})
elapsed = time.perf_counter() - t
store.stop()  # keeps the indexes of the days it read
cpu = _cpu() - cpu0
gc.collect()
result = {{"seconds": elapsed, "cpu": cpu, "records": n, "peak_rss_mb": _peak_mb(),
          "retained_mb": _rss_mb() - rss0}}
print(json.dumps(result))
"""
)

COLD_PANDAS = (
    _PEAK
    + """
import json, time, glob
import pandas as pd
cpu0 = _cpu()
t = time.perf_counter()
frames = [pd.read_json(p, lines=True) for p in sorted(glob.glob({dir!r} + '/audit_*.jsonl'))]
df = pd.concat(frames, ignore_index=True)
counts = df.groupby('event_type').size()
elapsed = time.perf_counter() - t
result = {{"seconds": elapsed, "cpu": _cpu() - cpu0, "records": len(df), "peak_rss_mb": _peak_mb()}}
print(json.dumps(result))
"""
)


def measure_cold(directory: Path) -> None:
    """First start, first indexing and restart, in fresh child processes."""
    shutil.rmtree(CACHE, ignore_errors=True)
    print("\nfirst start on an empty day index cache (fresh child processes)")
    first = run_child(COLD_STORE.format(dir=str(directory), verify=False), CACHE)
    print(
        f"  shown (newest day read)  {first['seconds']:6.2f} s wall "
        f"{first['cpu']:6.2f} s CPU  peak RSS {first['peak_rss_mb']:5.0f} MB"
        f"  ({first['records']:,} records; older days follow in the background)"
    )
    shutil.rmtree(CACHE, ignore_errors=True)
    whole = run_child(COLD_STORE.format(dir=str(directory), verify=True), CACHE)
    print(
        f"  first indexing, all days {whole['seconds']:6.2f} s wall "
        f"{whole['cpu']:6.2f} s CPU  peak RSS {whole['peak_rss_mb']:5.0f} MB"
        f"  ({whole['records']:,} records, verified; one-off)"
    )
    print(f"\nrestart on the kept day indexes ({COLD_RUNS} fresh child processes; pandas once)")
    runs = sorted(
        (
            run_child(COLD_STORE.format(dir=str(directory), verify=False), CACHE)
            for _ in range(COLD_RUNS)
        ),
        key=lambda run: run["seconds"],
    )
    store_cold = runs[len(runs) // 2]  # the median run
    pandas_cold = run_child(COLD_PANDAS.format(dir=str(directory)), CACHE)
    ratio = pandas_cold["seconds"] / store_cold["seconds"]
    cpu_ratio = pandas_cold["cpu"] / store_cold["cpu"]
    walls = ", ".join(f"{run['seconds']:.2f}" for run in runs)
    print(
        f"  TrailStore cold load    {store_cold['seconds']:6.2f} s wall "
        f"{store_cold['cpu']:6.2f} s CPU  peak RSS {store_cold['peak_rss_mb']:5.0f} MB"
        f"  (median run; {store_cold['records']:,} records;"
        f" target <= 2 s, <= 1024 MB)"
    )
    print(
        f"  all runs: {walls} s wall; peak RSS up to"
        f" {max(run['peak_rss_mb'] for run in runs):.0f} MB"
    )
    print(
        f"  memory kept by the store after the load (RSS growth): "
        f"{store_cold['retained_mb']:.0f} MB"
    )
    print(
        f"  pandas.read_json reload {pandas_cold['seconds']:6.2f} s wall "
        f"{pandas_cold['cpu']:6.2f} s CPU  peak RSS {pandas_cold['peak_rss_mb']:5.0f} MB"
    )
    print(
        f"  speed-up vs pandas      {ratio:6.1f}x wall {cpu_ratio:5.1f}x CPU (target >= 5x);"
        f" memory {pandas_cold['peak_rss_mb'] / store_cold['peak_rss_mb']:.1f}x less"
    )
