"""SPEC §12 at 1M records: archive throughput, `verify s3://` and the /metrics endpoint.

    .venv/bin/python -m benchmarks.archive_metrics [--records 1000000] [--dir DIR]

Writes a trail of four closed days once with the real AuditLogger (kept in DIR), starts
a real SeaweedFS S3 server on 127.0.0.1 (``weed mini``), then measures, each against a
named baseline in the same run:

* ``archive`` to a bucket with Object Lock (COMPLIANCE retention, digests, checks)
  against plain ``boto3 upload_file`` of the same files to a plain bucket;
* a second ``archive`` run (every day already archived: digests compared);
* ``verify s3://`` (download, digests, chain) against ``verify`` of the local directory;
* GET /metrics of the alerts process over the whole trail (median and p99 of 50
  scrapes) against counting the same metrics per scrape by reading the trail with
  orjson line by line (what an exporter without the store would do).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson

from benchmarks.audit_cli import timed
from benchmarks.audit_records import records
from bot.audit import AuditLogger, chain
from bot.audit.archive import archive, closed_day_files, fetch
from bot.audit.reader import iter_lines
from bot.audit.verify import verify_trail
from tests.archive.conftest import Seaweed

DAY_NS = 86_400 * 10**9


def build(directory: Path, n: int) -> None:
    """``n`` records over four days ending three days ago, then one record today."""
    today = time.time_ns() // DAY_NS * DAY_NS
    start = today - 7 * DAY_NS
    step = 4 * DAY_NS // n
    now = [start]

    def clock() -> int:
        now[0] += step
        return now[0]

    with AuditLogger(audit_dir=directory, clock=clock, checkpoint_interval=600) as log:
        for rec in records(n):
            log.log_event(**rec)
        now[0] = today + 1
        log.log_event(event_type="heartbeat", operation="heartbeat")


def naive_scrape(directory: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in chain.trail_files(directory):
        for _, line in iter_lines(path):
            record = orjson.loads(line)
            counts[record["event_type"]] += 1
            if record["event_type"] == "risk_rejection":
                counts["reason:" + record["error"]["reason"]] += 1
    return counts


def scrape_times(directory: Path, records_expected: int, rounds: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as scratch:
        log = Path(scratch) / "alerts.log"
        env = {
            "AUDIT_DIR": str(directory),
            "ALERTS_DIR": str(Path(scratch) / "alerts"),
            "METRICS_ADDR": "127.0.0.1:0",
            "AUDIT_CACHE_DIR": str(Path(scratch) / "cache"),  # a cold start: no day index yet
            "PATH": "/usr/bin:/bin",
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dashboard.alerts", "--interval", "1"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=Path(__file__).resolve().parents[1],
            )
        try:
            url = _wait_url(log, proc)
            started = time.perf_counter()
            while _total(url) < records_expected:
                if time.perf_counter() - started > 600:
                    raise SystemExit("the alerts process did not load the trail in 10 minutes")
                time.sleep(0.2)
            print(
                f"{'alerts process, cold: metrics of the whole trail after':44}"
                f"{time.perf_counter() - started:8.2f} s"
            )
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                _get(url)
                times.append(time.perf_counter() - t0)
            return times
        finally:
            proc.terminate()
            proc.wait(30)


def _wait_url(log: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "metrics on " in line:
                return line.split("metrics on ", 1)[1].strip()
        if proc.poll() is not None:
            raise SystemExit(f"alerts process exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("no metrics address from the alerts process")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
        return body


def _total(url: str) -> int:
    total = 0.0
    for line in _get(url).decode().splitlines():
        if line.startswith("audit_events_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/archive-bench-1m")
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--skip-archive", action="store_true", help="only the /metrics part")
    args = parser.parse_args()
    directory = Path(args.dir)
    if not chain.trail_files(directory):
        timed(f"write {args.records:,} records (once)", lambda: build(directory, args.records))
    days = closed_day_files(directory)
    size = sum(p.stat().st_size for p in days)
    lines = sum(sum(1 for _ in iter_lines(p)) for p in days)
    print(f"trail: {directory}, {len(days)} closed days, {lines:,} records, {size / 1e6:,.0f} MB")

    if not args.skip_archive:
        bench_archive(directory, days, size, lines)
    metrics(directory, args.scrapes)


def bench_archive(directory: Path, days: list[Path], size: int, lines: int) -> None:
    with tempfile.TemporaryDirectory(prefix="archive-bench-") as scratch:
        server = Seaweed(Path(scratch))
        try:
            os.environ.update({k: v for k, v in server.env.items() if k.startswith("AWS_")})
            client = server.client()
            plain, locked = server.bucket(locked=False), server.bucket(locked=True)

            def upload_plain() -> None:
                for path in days:
                    client.upload_file(str(path), plain, f"raw/{path.name}")

            _, base = timed("baseline: boto3 upload_file, plain bucket", upload_plain)
            print(f"{'':44}{size / 1e6 / base:8.1f} MB/s")
            quiet = io.StringIO()
            result, took = timed(
                "archive, Object Lock COMPLIANCE, digests",
                lambda: archive(directory, f"s3://{locked}/b", retain_days=1, out=quiet),
            )
            assert result.count("archived") == len(days), result.outcomes
            print(f"{'':44}{size / 1e6 / took:8.1f} MB/s ({base / took:.2f}x the baseline)")
            again, _ = timed(
                "archive again (all days already archived)",
                lambda: archive(directory, f"s3://{locked}/b", retain_days=1, out=quiet),
            )
            assert again.count("skipped") == len(days)

            _, local = timed(
                "baseline: verify of the local directory", lambda: verify_trail(directory)
            )
            print(f"{'':44}{lines / local:10,.0f} lines/s")

            def verify_remote() -> None:
                with tempfile.TemporaryDirectory(prefix="verify-bench-") as target:
                    (trail,) = fetch(f"s3://{locked}/b", Path(target), out=quiet)
                    assert not trail.problems, trail.problems
                    report = verify_trail(trail.directory)
                    assert report.intact and report.records == lines, report

            _, remote = timed("verify s3:// (download, digests, chain)", verify_remote)
            print(f"{'':44}{lines / remote:10,.0f} lines/s ({remote / local:.1f}x local time)")
        finally:
            server.stop()


def metrics(directory: Path, scrapes: int) -> None:
    counted, naive = timed(
        "baseline: count the trail with orjson per scrape", lambda: naive_scrape(directory)
    )
    total = sum(n for kind, n in counted.items() if not kind.startswith("reason:"))
    times = scrape_times(directory, total, scrapes)
    median, p99 = statistics.median(times), sorted(times)[int(len(times) * 0.99) - 1]
    print(f"{'GET /metrics over the whole trail, median':44}{median * 1000:8.1f} ms")
    print(f"{'GET /metrics, p99 of ' + str(len(times)):44}{p99 * 1000:8.1f} ms")
    print(f"{'':44}{naive / median:8.0f}x faster than the per-scrape count")


if __name__ == "__main__":
    main()
