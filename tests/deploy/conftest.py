"""Real engines on 127.0.0.1 for the deploy/ tests: the alerts process with its /metrics,
Prometheus and Alertmanager, each on a free port, stopped at teardown (the webhook
receiver is tests/webhook.py).

* ``free_port()``: a port that was free a moment ago (the engines take it right away).
* ``Service``: a subprocess with its output in a file, stopped with SIGTERM then SIGKILL.
* ``start_alerts(tmp_path, audit_dir)``: ``python -m dashboard.alerts`` with
  METRICS_ADDR=127.0.0.1:0; ``.metrics_url`` once it has said where it listens.
* ``scrape(url)``: {(name, labels as sorted tuple): value} of a /metrics page.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DEADLINE = 60.0

Sample = tuple[str, tuple[tuple[str, str], ...]]
_METRICS_AT = re.compile(r"metrics on (http://\S+/metrics)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def need(binary: str) -> str:
    path = Path("/usr/bin") / binary
    if not path.exists():
        pytest.skip(f"{path} missing: apt-get install prometheus prometheus-alertmanager")
    return str(path)


class Service:
    def __init__(self, name: str, argv: list[str], log: Path, **kwargs: Any) -> None:
        self.name = name
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited {self.proc.returncode}:\n{self.output()[-3000:]}")
        return True

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(DEADLINE)
        return self.proc.returncode


class Alerts(Service):
    def __init__(self, tmp_path: Path, audit_dir: Path, *extra: str, log: str = "alerts") -> None:
        env = {k: v for k, v in os.environ.items() if k != "ALERT_WEBHOOK_URL"}
        env.update(
            AUDIT_DIR=str(audit_dir),
            ALERTS_DIR=str(tmp_path / "alerts"),
            METRICS_ADDR="127.0.0.1:0",
            PYTHONUNBUFFERED="1",
        )
        argv = [sys.executable, "-m", "dashboard.alerts", "--interval", "0.3", *extra]
        super().__init__("alerts process", argv, tmp_path / f"{log}.log", cwd=ROOT, env=env)
        try:
            found = wait_until(
                lambda: self.alive() and _METRICS_AT.search(self.output()),
                timeout=DEADLINE,
                what="the alerts process's metrics address",
            )
        except BaseException:  # pytest.fail: the caller never gets the process to stop
            self.stop()
            raise
        self.metrics_url = found.group(1)
        self.port = int(self.metrics_url.rsplit(":", 1)[1].split("/")[0])


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def scrape(url: str) -> dict[Sample, float]:
    values: dict[Sample, float] = {}
    for family in text_string_to_metric_families(get(url).decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values
