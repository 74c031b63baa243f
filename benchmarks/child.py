"""One measurement in a fresh interpreter, so each starts cold and its peak RSS is its own.

Used by benchmarks/dashboard_ingest.py (cold loads) and benchmarks/history_scale.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_child(code: str, cache: Path | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter (with ``AUDIT_CACHE_DIR`` set to ``cache`` if
    given); it prints a JSON dict; add peak RSS (MB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if cache is not None:
        env["AUDIT_CACHE_DIR"] = str(cache)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all waited-for children: only trust growth,
    # so the child also reports its own peak from /proc.
    result.setdefault("peak_rss_mb", max(before, after) / 1024)
    return result
