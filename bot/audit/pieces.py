"""Cutting day files into line-aligned pieces and scanning them on every core.

`verify` and `summary` read hundreds of megabytes; both split large plain files
into byte ranges that begin and end on line boundaries and map a worker
function over them in forked processes.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

SPLIT_BYTES = 16 << 20  # files larger than this are scanned in parallel pieces
WHOLE_FILE = (0, -1)  # a gzipped file is one piece: it cannot be entered midway

T = TypeVar("T")
R = TypeVar("R")


def worker_count(workers: int | None) -> int:
    return workers or os.cpu_count() or 1


def line_ranges(path: Path, workers: int) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` covering the file, each starting at a line start."""
    if path.name.endswith(".gz"):
        return [WHOLE_FILE]
    size = path.stat().st_size
    pieces = min(workers * 2, max(1, size // SPLIT_BYTES)) if workers > 1 else 1
    cuts = [0]
    with open(path, "rb") as fh:
        for k in range(1, pieces):
            fh.seek(size * k // pieces)
            fh.readline()  # to the next line start
            if cuts[-1] < fh.tell() < size:
                cuts.append(fh.tell())
    cuts.append(size)
    return list(itertools.pairwise(cuts))


def map_pieces(scan: Callable[[T], R], tasks: list[T], workers: int) -> list[R]:
    """``[scan(t) for t in tasks]``, in forked worker processes when that can help."""
    if workers <= 1 or len(tasks) <= 1:
        return [scan(task) for task in tasks]
    with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
        return pool.map(scan, tasks, chunksize=1)
