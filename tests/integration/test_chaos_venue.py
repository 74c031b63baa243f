"""A short seeded chaos run: the bot process against the fake venue with random faults.

The ten-minute version is ``benchmarks/chaos_venue.py``; this one runs about
half a minute with a 1-second protection interval and checks the same targets
from the fake's own records: no entry accepted twice for one signal, no
position without a working stop-loss for longer than the interval plus 5 s,
and the run's faults and repairs on the record.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakebinance.chaos import run_chaos

INTERVAL = 1.0


@pytest.mark.slow
def test_a_short_chaos_run_keeps_every_position_protected_and_never_duplicates(
    tmp_path: Path,
) -> None:
    report = run_chaos(
        seed=3,
        seconds=25,
        protection_check_seconds=INTERVAL,
        candle_seconds=0.5,
        fault_probability=0.5,
        workdir=tmp_path,
    )

    assert report.bot_exit_code == 0, (tmp_path / "bot.log").read_text()[-3000:]
    assert report.trades >= 1, report.text()
    assert report.duplicates == 0, report.text()
    assert report.longest_unprotected_seconds <= INTERVAL + 5, report.text()
    assert not report.open_unprotected_at_end, report.text()
    assert sum(v for k, v in report.faults.items() if k.startswith("injected:")) >= 5
