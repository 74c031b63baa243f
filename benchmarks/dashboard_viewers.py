"""What open dashboard tabs cost the server (issue 14), in real headless Chromium.

    .venv/bin/python -m benchmarks.dashboard_viewers [--seconds 60] [--baseline REV]

Starts ``streamlit run dashboard/app.py`` on a free port over a fresh trail (a few
hundred signals written by the real AuditLogger), opens the Overview in Debian's
Chromium through Playwright, and reads the server process's CPU time (utime + stime
from ``/proc/<pid>/stat``, children excluded: the server has none) and RSS
(``/proc/<pid>/status``):

* idle: one tab open, nothing appended, for ``--seconds``;
* busy: three tabs open while 200 records/s (whole signal flows) are appended, for
  ``--seconds``; meanwhile one tab's "Signals" number is watched: append → visible is
  the time from writing a signal until the page shows a count that includes it.

With ``--baseline REV`` the same two phases also run against ``dashboard/app.py`` as it
was at git revision REV (e.g. the commit before issue 14), in the same run, and the
ratios are printed. Targets: idle <= 3 % of a core, three busy tabs <= 20 % of a core
in total, append → visible <= 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.audit import AuditLogger

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TICKS = os.sysconf("SC_CLK_TCK")
RATE = 200  # records per second while busy
SIGNALS_JS = """
() => {
  for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
    if (m.querySelector('[data-testid="stMetricLabel"]')?.innerText.trim() === 'Signals')
      return parseInt(m.querySelector('[data-testid="stMetricValue"]').innerText, 10);
  }
  return -1;
}
"""


@dataclass
class Phase:
    cpu_percent: float  # of one core
    rss_before_mb: float
    rss_after_mb: float
    latencies: list[float]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Writer:
    """Whole signal flows (7 records for a trade, 2 for a rejection) at ~RATE records/s."""

    def __init__(self, audit_dir: Path) -> None:
        self.logger = AuditLogger(audit_dir, fsync_interval=3600, checkpoint_interval=1e9)
        self.signals = 0
        self._n = 0

    def flow(self) -> int:
        """Write one signal's flow; returns its number of records."""
        self._n += 1
        tid = f"bench{self._n:08d}"
        symbol = ("BTCUSDT", "ETHUSDT", "SOLUSDT")[self._n % 3]
        signal = {"signal_generated": True, "signal_type": "LONG", "entry_price": 100.0}
        log = self.logger
        log.log_event("signal_processing", "process_signal", symbol, additional_data=signal,
                      trace_id=tid)  # fmt: skip
        self.signals += 1
        if self._n % 3 == 0:
            log.log_risk_rejection(symbol, "existing_position", "in a position", "position_check",
                                   signal, trace_id=tid)  # fmt: skip
            return 2
        log.log_event("risk_validation", "validate_risk", symbol, order_data=signal, trace_id=tid)
        log.log_event("position_size_calculated", "calculate_position_size", symbol,
                      additional_data={"quantity": 0.5}, trace_id=tid)  # fmt: skip
        for order_type in ("MARKET", "TAKE_PROFIT_MARKET", "STOP_MARKET"):
            log.log_order_placed(symbol, {"order_type": order_type, "side": "BUY"}, trace_id=tid)
        log.log_event("trade_executed", "execute_trade", symbol, trace_id=tid,
                      additional_data={"signal_type": "LONG", "quantity": 0.5})  # fmt: skip
        return 7

    def run(self, stop: threading.Event) -> None:
        written, t0 = 0, time.monotonic()
        while not stop.is_set():
            written += self.flow()
            ahead = written / RATE - (time.monotonic() - t0)
            if ahead > 0:
                stop.wait(ahead)


@contextlib.contextmanager
def server(app: Path, audit_dir: Path, alerts_dir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = open(audit_dir.parent / f"streamlit-{port}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("streamlit")), "run", str(app),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--server.port", str(port)],
        cwd=app.parent.parent,
        env={**os.environ, "AUDIT_DIR": str(audit_dir), "ALERTS_DIR": str(alerts_dir)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start; see {log.name}")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def shown_signals(page: Any) -> int:
    value: int = page.evaluate(SIGNALS_JS)
    return value


def wait_for_signals(page: Any, at_least: int, timeout: float) -> float:
    """Seconds until the page shows at least ``at_least`` signals."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    t0 = time.monotonic()
    try:
        page.wait_for_function(
            f"() => ({SIGNALS_JS})() >= {at_least}", polling=50, timeout=timeout * 1000
        )
    except PlaywrightTimeout:
        shown = page.evaluate(SIGNALS_JS)
        raise RuntimeError(
            f"{page.url} shows {shown} signals, not {at_least}, after {timeout} s"
        ) from None
    return time.monotonic() - t0


def measure(pid: int, seconds: float, during: Any = None) -> tuple[float, float, float]:
    """(CPU % of a core, RSS before, RSS after) over ``seconds``; ``during()`` runs meanwhile."""
    rss0, cpu0, t0 = rss_mb(pid), cpu_seconds(pid), time.monotonic()
    if during is not None:
        during(t0 + seconds)
    left = t0 + seconds - time.monotonic()
    if left > 0:
        time.sleep(left)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    return 100 * (cpu1 - cpu0) / (t1 - t0), rss0, rss_mb(pid)


def run_phases(app: Path, seconds: float, label: str) -> tuple[Phase, Phase]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="viewers-") as tmp:
        audit_dir, alerts_dir = Path(tmp) / "audit", Path(tmp) / "alerts"
        writer = Writer(audit_dir)
        writer.logger.log_event("heartbeat", "heartbeat")
        for _ in range(300):
            writer.flow()
        with server(app, audit_dir, alerts_dir) as (url, pid), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1500, "height": 1100})
            tabs = [context.new_page()]
            tabs[0].goto(url)
            wait_for_signals(tabs[0], writer.signals, 120)
            time.sleep(10)  # settle: first figures drawn, history verified
            cpu, rss0, rss1 = measure(pid, seconds)
            idle = Phase(cpu, rss0, rss1, [])
            print(f"[{label}] idle, 1 tab, {seconds:.0f} s: {cpu:.1f} % of a core; "
                  f"RSS {rss0:.0f} -> {rss1:.0f} MB", flush=True)  # fmt: skip

            for _ in range(2):
                tab = context.new_page()
                tab.goto(url)
                tabs.append(tab)
            for tab in tabs:
                wait_for_signals(tab, writer.signals, 120)
            time.sleep(5)
            latencies: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)

            def probe(until: float) -> None:
                thread.start()
                while time.monotonic() < until - 3:
                    target = writer.signals  # every signal written so far must show
                    latencies.append(wait_for_signals(tabs[0], target, 30))
                    time.sleep(0.5)

            try:
                cpu, rss0, rss1 = measure(pid, seconds, probe)
            finally:
                stop.set()
                thread.join()
            busy = Phase(cpu, rss0, rss1, latencies)
            print(f"[{label}] busy, 3 tabs, {RATE} records/s, {seconds:.0f} s: {cpu:.1f} % of a "
                  f"core; RSS {rss0:.0f} -> {rss1:.0f} MB; append -> visible "
                  f"median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
                  f"({len(latencies)} probes)", flush=True)  # fmt: skip
            browser.close()
        writer.logger.close()
    return idle, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline", help="git revision whose dashboard/app.py to compare")
    args = parser.parse_args()
    idle, busy = run_phases(ROOT / "dashboard" / "app.py", args.seconds, "now")
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="baseline-app-") as tmp:
            # the whole bot/ and dashboard/ of that revision: its app with its own store
            archive = subprocess.run(
                ["git", "archive", args.baseline, "bot", "dashboard"],
                cwd=ROOT, check=True, capture_output=True,
            ).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            app = Path(tmp) / "dashboard" / "app.py"
            base_idle, base_busy = run_phases(app, args.seconds, f"baseline {args.baseline}")
        print(f"ratio now/baseline: idle {idle.cpu_percent / base_idle.cpu_percent:.2f}, "
              f"busy {busy.cpu_percent / base_busy.cpu_percent:.2f}")  # fmt: skip
    worst = max(busy.latencies)
    print(f"targets: idle {idle.cpu_percent:.1f} % <= 3 %: {idle.cpu_percent <= 3}; "
          f"busy {busy.cpu_percent:.1f} % <= 20 %: {busy.cpu_percent <= 20}; "
          f"append -> visible max {worst:.2f} s <= 2 s: {worst <= 2}")  # fmt: skip


if __name__ == "__main__":
    main()
