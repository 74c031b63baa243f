"""Fixtures for the audit trail tests: an injected clock, a logger factory that always
closes, a small-filesystem mount (root only) and the CLI runner.

* ``FakeClock``: epoch ns, advanced by ``step`` at every call (or set directly).
* ``open_logger(directory, **kw)``: an AuditLogger closed at teardown.
* ``small_fs(size)``: a tmpfs of ``size`` mounted on a temporary directory; skips
  the test (saying why) when mounting is impossible; unmounted at teardown.
* ``run_cli(*args, env=...)``: ``python -m bot.audit ...`` as a user runs it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.audit import AuditLogger

ROOT = Path(__file__).resolve().parents[2]
MIDNIGHT = 1_795_046_400 * 10**9  # 2026-11-19T00:00:00Z


class FakeClock:
    def __init__(self, start_ns: int = MIDNIGHT - 3600 * 10**9, step_ns: int = 1_000_000) -> None:
        self.now = start_ns
        self.step = step_ns

    def __call__(self) -> int:
        value = self.now
        self.now += self.step
        return value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def open_logger() -> Iterator[Callable[..., AuditLogger]]:
    opened: list[AuditLogger] = []

    def factory(directory: Path, **kwargs: Any) -> AuditLogger:
        kwargs.setdefault("fsync_interval", 0.05)
        logger = AuditLogger(audit_dir=directory, **kwargs)
        opened.append(logger)
        return logger

    yield factory
    for logger in opened:
        logger.close()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a small tmpfs")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        with contextlib.suppress(Exception):
            subprocess.run(["chattr", "-R", "-i", str(point)], capture_output=True)
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("AUDIT_DIR", "AUDIT_HMAC_KEY")}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot.audit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        cwd=ROOT,
    )


def read_records(directory: Path) -> list[dict[str, Any]]:
    from bot.audit.reader import iter_records

    return list(iter_records(directory))
