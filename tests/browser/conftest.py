"""Fixtures for real-browser tests: a `streamlit run dashboard/app.py` server on a free
port and headless Debian Chromium driven by Playwright.

* No browser is ever downloaded: Playwright launches /usr/bin/chromium (CI installs
  it with apt); without it the tests are skipped with a reason naming the path.
* Every wait has a deadline (server readiness by polling ``/_stcore/health``); the
  server and the browser are always stopped, also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
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
ARTIFACTS = ROOT / "test-artifacts"
SERVER_START_TIMEOUT = 90.0
# The `streamlit` console script, as the Procfile runs it: unlike `python -m streamlit`, it
# does not put the working directory on sys.path: the pages must import as the installed package.
_SCRIPT = Path(sys.executable).with_name("streamlit")
STREAMLIT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "streamlit"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"streamlit exited with {server.process.returncode}:\n{server.log()}"
            )
        try:
            with urllib.request.urlopen(server.url + "/_stcore/health", timeout=2) as resp:
                if resp.status == 200 and resp.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # polling interval of a deadline-bounded wait
    raise TimeoutError(f"streamlit not healthy after {timeout}s:\n{server.log()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture
def streamlit_server(tmp_path: Path) -> Iterator[Callable[[Mapping[str, str]], Server]]:
    """Factory: start the dashboard exactly as the Procfile does (plus a port) with extra env."""
    started: list[Server] = []

    def start(env: Mapping[str, str]) -> Server:
        port = free_port()
        log_path = tmp_path / f"streamlit-{port}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    *STREAMLIT,
                    "run",
                    "dashboard/app.py",
                    "--server.address",
                    "127.0.0.1",
                    "--server.headless",
                    "true",
                    "--server.port",
                    str(port),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}", process, log_path)
        started.append(server)
        _wait_healthy(server, SERVER_START_TIMEOUT)
        return server

    yield start
    for server in started:
        _stop(server.process)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A Playwright page in headless system Chromium; skipped when Chromium is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (CI installs Debian's chromium with apt)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1100})
            page = context.new_page()
            page.set_default_timeout(60_000)
            # expect() waits 5 s by default; a loaded shared machine needs deadlines, not luck
            sync_api.expect.set_options(timeout=60_000)
            yield page
            with contextlib.suppress(Exception):
                context.close()
        finally:
            browser.close()
