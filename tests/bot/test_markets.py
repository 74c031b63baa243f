"""Market feeds: the simulated market is deterministic and self-consistent; replay reads
Binance's kline dumps as published."""

from __future__ import annotations

import threading
import zipfile
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.market.replay import ReplayMarket, read_klines
from bot.market.sim import SimulatedMarket
from bot.models import Candle

_TAIL = "53957744.2,10397,802.12,34039542.6,0"  # quote volume, trades, taker volumes, ignore
ROWS = [
    f"1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68108,1704067259999,{_TAIL}",
    f"1704067260000,42475.23,42775.00,42431.65,42613.56,1196.37856,1704067319999,{_TAIL}",
    f"1704067320000,42613.57,42638.04,42500.00,42538.23,702.27291,1704067379999,{_TAIL}",
]
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)


def collect(feed, limit: int = 10_000) -> list[Candle]:
    out: list[Candle] = []
    stop = threading.Event()

    def on_candle(c: Candle) -> None:
        out.append(c)
        if len(out) >= limit:
            stop.set()

    feed.run(on_candle, stop)
    return out


def sim(seed: int = 7) -> SimulatedMarket:
    return SimulatedMarket(
        ["BTCUSDT", "ETHUSDT"], ["1m", "5m"], seed=seed, speed=0, history=20, clock=lambda: 1.7e9
    )


def test_the_same_seed_gives_the_same_candles() -> None:
    assert collect(sim(), 200) == collect(sim(), 200)
    assert sim().backfill("BTCUSDT", "1m", 20) == sim().backfill("BTCUSDT", "1m", 20)
    assert collect(sim(1), 50) != collect(sim(2), 50)


def test_backfill_gives_the_requested_number_of_closed_candles() -> None:
    market = sim()
    for interval in ("1m", "5m"):
        candles = market.backfill("ETHUSDT", interval, 20)
        assert len(candles) == 20
        assert all(c.closed and c.low <= min(c.open, c.close) for c in candles)
        assert all(c.high >= max(c.open, c.close) for c in candles)


def test_five_minute_candles_aggregate_the_one_minute_candles() -> None:
    candles = [c for c in collect(sim(), 300) if c.symbol == "BTCUSDT"]
    minutes = {c.open_time: c for c in candles if c.interval == "1m"}
    for five in (c for c in candles if c.interval == "5m"):
        parts = [minutes[five.open_time + i * 60_000] for i in range(5)]
        assert five.open == parts[0].open and five.close == parts[-1].close
        assert five.high == max(p.high for p in parts)
        assert five.low == min(p.low for p in parts)
        assert five.close_time == parts[-1].close_time


def test_a_stopped_sim_returns_promptly() -> None:
    market = SimulatedMarket(["BTCUSDT"], ["1m"], speed=1, history=5)
    stop = threading.Event()
    stop.set()
    market.run(lambda c: None, stop)  # would block 60 s per candle if it ignored stop


def test_an_interval_the_sim_cannot_build_is_refused() -> None:
    with pytest.raises(ConfigError, match="intervals: '1w'"):
        SimulatedMarket(["BTCUSDT"], ["1w"])


@pytest.mark.parametrize("header", [True, False])
def test_replay_reads_dump_csv_with_or_without_header(tmp_path: Path, header: bool) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    path.write_text("\n".join(([HEADER] if header else []) + ROWS) + "\n")
    candles = read_klines(path, "BTCUSDT", "1m")
    assert [c.close for c in candles] == [42475.23, 42613.56, 42538.23]
    assert candles[0].open_time == 1704067200000
    assert candles[0].close_time == 1704067259999


def test_replay_converts_microsecond_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    path.write_text("1704067200000000,1,2,0.5,1.5,10,1704067259999999,0,0,0,0,0\n")
    (candle,) = read_klines(path, "BTCUSDT", "1m")
    assert candle.open_time == 1704067200000 and candle.close_time == 1704067259999


def test_replay_takes_symbol_and_interval_from_the_dump_name_and_plays_in_order(
    tmp_path: Path,
) -> None:
    one = tmp_path / "ETHUSDT-1m-2024-01-01.csv"
    one.write_text("\n".join(ROWS))
    archive = tmp_path / "BTCUSDT-1m-2024-01-01.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("BTCUSDT-1m-2024-01-01.csv", HEADER + "\n" + "\n".join(ROWS))
    feed = ReplayMarket([one, archive], symbols=[], intervals=[], speed=0, history=1)
    assert feed.streams == [("BTCUSDT", "1m"), ("ETHUSDT", "1m")]
    assert len(feed.backfill("BTCUSDT", "1m", 100)) == 1
    played = collect(feed)
    assert [(c.symbol, c.open_time) for c in played] == [
        ("BTCUSDT", 1704067260000),
        ("ETHUSDT", 1704067260000),
        ("BTCUSDT", 1704067320000),
        ("ETHUSDT", 1704067320000),
    ]


def test_a_bad_replay_row_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m-x.csv"
    path.write_text(ROWS[0] + "\n1704067260000,oops\n")
    with pytest.raises(ConfigError, match="line 2"):
        ReplayMarket([path], symbols=[], intervals=[], speed=0)


def test_an_unnamed_replay_file_needs_one_symbol_and_interval(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("\n".join(ROWS))
    with pytest.raises(ConfigError, match="cannot tell the symbol"):
        ReplayMarket([path], symbols=["BTCUSDT", "ETHUSDT"], intervals=["1m"], speed=0)
    feed = ReplayMarket([path], symbols=["BTCUSDT"], intervals=["1m"], speed=0)
    assert feed.streams == [("BTCUSDT", "1m")]
