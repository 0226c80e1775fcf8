from __future__ import annotations

import pandas as pd
import pytest

from core.errors import DataError
from core.frames import resample
from core.settings import load_settings
from exchange.replay import ReplaySource

BTC = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def source() -> ReplaySource:
    return ReplaySource(load_settings().data_dir)


def test_bundled_symbols_and_range(source: ReplaySource) -> None:
    assert source.symbols() == sorted(["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT",
                                       "DOGE/USDT:USDT", "BNB/USDT:USDT"])
    lo, hi = source.data_range()
    assert lo == pd.Timestamp("2025-01-01 01:00", tz="UTC")
    assert hi == pd.Timestamp("2025-05-31 23:00", tz="UTC") == source.default_as_of()


def test_snapshot_holds_only_closed_bars(source: ReplaySource) -> None:
    t = pd.Timestamp("2025-03-10 13:30", tz="UTC")
    snap = source.snapshot(BTC, t)
    # 1h: the 12:00 bar closed at 13:00 <= 13:30; the 13:00 bar closes at 14:00 > 13:30
    assert snap.candles["1h"].index[-1] == pd.Timestamp("2025-03-10 12:00", tz="UTC")
    # 4h: the 08:00 bar closed at 12:00; the 12:00 bar is still forming
    assert snap.candles["4h"].index[-1] == pd.Timestamp("2025-03-10 08:00", tz="UTC")
    # 1d: yesterday's bar
    assert snap.candles["1d"].index[-1] == pd.Timestamp("2025-03-09", tz="UTC")
    assert snap.last == snap.candles["1h"]["close"].iloc[-1]


def test_resampled_bars_are_utc_aligned_and_exact(source: ReplaySource) -> None:
    h1 = source.history(BTC).h1
    d1 = resample(h1, "1d")
    day = pd.Timestamp("2025-02-03", tz="UTC")
    hours = h1.loc[day: day + pd.Timedelta(hours=23)]
    assert len(hours) == 24
    row = d1.loc[day]
    assert row["open"] == hours["open"].iloc[0] and row["close"] == hours["close"].iloc[-1]
    assert row["high"] == hours["high"].max() and row["low"] == hours["low"].min()
    assert row["volume"] == pytest.approx(hours["volume"].sum())
    h4 = resample(h1, "4h")
    assert all(ts.hour % 4 == 0 for ts in h4.index[-50:])


def test_incomplete_higher_bars_are_dropped() -> None:
    idx = pd.date_range("2025-01-01 00:00", periods=6, freq="h", tz="UTC")  # 00..05
    df = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 1.0}, index=idx)
    h4 = resample(df, "4h")
    assert list(h4.index) == [pd.Timestamp("2025-01-01 00:00", tz="UTC")]  # 04:00 bar has 2 of 4 hours


def test_no_open_interest_is_said_not_invented(source: ReplaySource) -> None:
    snap = source.snapshot(BTC)
    assert snap.open_interest is None and not snap.has_open_interest
    assert any("open interest" in n for n in snap.notes)


def test_funding_in_force_and_spread_estimate(source: ReplaySource) -> None:
    t = pd.Timestamp("2025-04-01 10:00", tz="UTC")
    snap = source.snapshot(BTC, t)
    f = source.history(BTC).funding
    assert snap.funding_rate == f.loc[:t].iloc[-1]
    assert snap.next_funding_time == (f.loc[:t].index[-1] + pd.Timedelta(hours=8)).to_pydatetime()
    assert snap.spread_pct == pytest.approx(0.02, rel=1e-6)
    assert snap.volume_24h_quote > 1e9


def test_fill_price_is_after_the_decision(source: ReplaySource) -> None:
    t = pd.Timestamp("2025-04-01 10:00", tz="UTC")
    ts, px = source.price_after(BTC, t)
    h1 = source.history(BTC).h1
    assert ts == t and px == h1.loc[t, "open"]
    assert source.snapshot(BTC, t).candles["1h"].index[-1] < t


def test_unknown_symbol_and_out_of_range(source: ReplaySource) -> None:
    with pytest.raises(DataError, match="unknown symbol 'PEPE/USDT:USDT'"):
        source.snapshot("PEPE/USDT:USDT")
    with pytest.raises(DataError, match="outside the replay data"):
        source.check_as_of("2030-01-01")
    with pytest.raises(DataError, match="outside the replay data"):
        source.check_as_of("2019-01-01")
    with pytest.raises(DataError, match="cannot read time"):
        source.check_as_of("yesterday-ish")


def test_spot_warmup_precedes_futures(source: ReplaySource) -> None:
    h = source.history(BTC)
    assert h.spot_warmup and h.h1.index[0] < h.futures_start == pd.Timestamp("2025-01-01", tz="UTC")
    assert h.h1.index.is_monotonic_increasing and not h.h1.index.has_duplicates
