"""ReplayMarket: candles from Binance's public kline dumps (data.binance.vision).

Reads the CSV format of the dumps, with or without the header row::

    open_time,open,high,low,close,volume,close_time,quote_volume,count,
    taker_buy_volume,taker_buy_quote_volume,ignore

either as ``.csv`` or as the published ``.zip`` holding one CSV. Symbol and
interval come from the dump's file name (``BTCUSDT-1m-2024-01-01.csv``) or,
for other names, from the single configured symbol and interval. Times in
microseconds (newer spot dumps) are converted to milliseconds. The first
``history`` candles of each file are the backfill; the rest are replayed in
time order, ``speed`` times faster than real time (0: as fast as possible),
and the feed ends when the data does.
"""

from __future__ import annotations

import csv
import heapq
import io
import re
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from bot.errors import ConfigError
from bot.market.base import CandleHandler
from bot.models import Candle

_DUMP_NAME_RE = re.compile(r"^([A-Z0-9]+)-(\d+[smhdwM])-")


def _rows(path: Path) -> Iterator[list[str]]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise ConfigError(f"data: {path} must hold exactly one .csv file")
            with archive.open(names[0]) as raw:
                yield from csv.reader(io.TextIOWrapper(raw, encoding="utf-8"))
        return
    with open(path, newline="", encoding="utf-8") as fh:
        yield from csv.reader(fh)


def read_klines(path: Path, symbol: str, interval: str) -> list[Candle]:
    """All candles of one dump file, oldest first. Raises ConfigError naming the bad line."""
    candles: list[Candle] = []
    for line_no, row in enumerate(_rows(path), start=1):
        if not row or (line_no == 1 and not row[0].strip().isdigit()):
            continue  # blank line, or the header row
        try:
            candles.append(Candle.from_kline_row(symbol, interval, row))
        except (IndexError, ValueError) as exc:
            raise ConfigError(
                f"data: {path} line {line_no} is not a Binance kline row ({exc})"
            ) from None
    candles.sort(key=lambda c: c.open_time)
    return candles


class ReplayMarket:
    """Implements :class:`bot.market.base.MarketFeed` over kline dump files."""

    def __init__(
        self,
        files: Sequence[str | Path],
        *,
        symbols: Sequence[str],
        intervals: Sequence[str],
        speed: float = 60.0,
        history: int = 100,
    ) -> None:
        if not files:
            raise ConfigError("data: --market replay needs at least one --data FILE")
        self._speed = speed
        self._streams: dict[tuple[str, str], list[Candle]] = {}
        for name in files:
            path = Path(name)
            if not path.is_file():
                raise ConfigError(f"data: {path} does not exist or is not a file")
            key = self._stream_of(path, symbols, intervals)
            self._streams.setdefault(key, []).extend(read_klines(path, *key))
        self._backfill: dict[tuple[str, str], list[Candle]] = {}
        self._live: dict[tuple[str, str], list[Candle]] = {}
        for key, candles in self._streams.items():
            candles.sort(key=lambda c: c.open_time)
            self._backfill[key] = candles[:history]
            self._live[key] = candles[history:]

    @property
    def streams(self) -> list[tuple[str, str]]:
        """(symbol, interval) pairs found in the data."""
        return sorted(self._streams)

    def backfill(self, symbol: str, interval: str, limit: int) -> list[Candle]:
        candles = self._backfill.get((symbol, interval), [])
        return candles[-limit:] if limit > 0 else []

    def run(self, on_candle: CandleHandler, stop: threading.Event) -> None:
        merged = heapq.merge(
            *self._live.values(), key=lambda c: (c.close_time, c.interval, c.symbol)
        )
        previous: int | None = None
        deadline = time.monotonic()
        for candle in merged:
            if stop.is_set():
                return
            if self._speed > 0 and previous is not None and candle.close_time > previous:
                deadline += (candle.close_time - previous) / 1000 / self._speed
                if stop.wait(max(0.0, deadline - time.monotonic())):
                    return
            previous = candle.close_time
            on_candle(candle)

    def close(self) -> None:
        """Nothing to release."""

    @staticmethod
    def _stream_of(path: Path, symbols: Sequence[str], intervals: Sequence[str]) -> tuple[str, str]:
        named = _DUMP_NAME_RE.match(path.name)
        if named:
            return named.group(1), named.group(2)
        if len(symbols) == 1 and len(intervals) == 1:
            return symbols[0], intervals[0]
        raise ConfigError(
            f"data: cannot tell the symbol and interval of {path.name}; name it like "
            "BTCUSDT-1m-2024-01-01.csv or give exactly one --symbols and one --intervals"
        )
