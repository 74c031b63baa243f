"""deploy/systemd/: the unit files docs/deploy.md tells operators to install are valid for
systemd (`systemd-analyze verify`: no unknown key, bad value or missing command)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY

UNITS = sorted((DEPLOY / "systemd").glob("trading-*"))
VENV_PYTHON = "/opt/trading/.venv/bin/python"


def test_units_are_shipped() -> None:
    names = {p.name for p in UNITS}
    assert names == {
        "trading-bot@.service",
        "trading-alerts.service",
        "trading-archive.service",
        "trading-archive.timer",
    }


def test_systemd_accepts_every_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze missing (Debian package systemd)")
    for unit in UNITS:  # this checkout's interpreter stands in for the install path
        text = unit.read_text()
        assert VENV_PYTHON in text or unit.suffix == ".timer"
        (tmp_path / unit.name).write_text(text.replace(VENV_PYTHON, sys.executable))
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    problems = [line for line in done.stderr.splitlines() if str(tmp_path) in line]
    assert done.returncode == 0 and problems == [], done.stderr
