"""Chaos run: the bot in testnet mode against the fake venue with random faults.

Runs ``python -m bot --mode testnet`` against tests/fakebinance for
``--minutes`` with the venue's bad days injected at random from ``--seed``
(see ``tests/fakebinance/chaos.py``), then prints the report as JSON: trades,
duplicates, the longest time a position stood without a working stop-loss,
faults fired and repairs recorded. Exit 1 when a target is missed.

    python benchmarks/chaos_venue.py [--seed 1] [--minutes 10] [--interval 10]

Targets: 0 duplicate entries; longest unprotected <= interval + 5 s.
Figures go to docs/benchmarks.md with the command that made them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakebinance.chaos import run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=10.0, help="protection_check_seconds")
    parser.add_argument("--candle-seconds", type=float, default=1.0)
    args = parser.parse_args()
    report = run_chaos(
        seed=args.seed,
        seconds=args.minutes * 60,
        protection_check_seconds=args.interval,
        candle_seconds=args.candle_seconds,
    )
    print(report.text())
    missed = []
    if report.duplicates:
        missed.append(f"{report.duplicates} duplicate entries (target 0)")
    if report.longest_unprotected_seconds > args.interval + 5:
        missed.append(
            f"longest unprotected {report.longest_unprotected_seconds:.1f}s "
            f"(target <= {args.interval + 5:.0f}s)"
        )
    for line in missed:
        print(f"MISSED: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
