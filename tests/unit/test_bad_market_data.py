"""Issue 13 item 26: corrupt or odd market data is caught at the source boundary (naming the file and
the row), a bad symbol is quarantined, and the monitor keeps managing every other position."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import DataError
from core.frames import check_bars
from core.settings import load_settings
from core.types import Side, TradePlan
from exchange.replay import ReplaySource

BUNDLED = load_settings().data_dir / "binance"
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
FUT = "futures/BTC_USDT_USDT-1h-futures.feather"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A private copy of the bundled history to corrupt."""
    shutil.copytree(BUNDLED, tmp_path / "data" / "binance")
    return tmp_path / "data"


def _edit(data: Path, rel: str, fn) -> Path:  # type: ignore[no-untyped-def]
    p = data / "binance" / rel
    df = pd.read_feather(p)
    df = fn(df)
    df.reset_index(drop=True).to_feather(p)
    return p


def _row_of(df: pd.DataFrame, ts: str) -> int:
    return int(np.flatnonzero(pd.to_datetime(df["date"], utc=True) == pd.Timestamp(ts, tz="UTC"))[0])


# --------------------------------------------------------------------------- unreadable files


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_unreadable_file_names_the_file(data: Path, how: str) -> None:
    p = data / "binance" / FUT
    blob = p.read_bytes()
    p.write_bytes({"truncated": blob[: len(blob) // 2], "empty": b"", "garbage": b"\x00\xffnot arrow" * 99}[how])
    src = ReplaySource(data)
    with pytest.raises(DataError) as e:
        src.snapshot(BTC, datetime(2025, 5, 1, tzinfo=UTC))
    msg = str(e.value)
    assert "BTC_USDT_USDT-1h-futures.feather" in msg and "cannot read it as a feather file" in msg
    assert "ArrowInvalid: Not an Arrow file" not in msg.split(":")[0]


def test_missing_column_is_a_clear_error(data: Path) -> None:
    _edit(data, FUT, lambda df: df.drop(columns=["close"]))
    with pytest.raises(DataError, match=r"BTC_USDT_USDT-1h-futures.feather: missing column\(s\) close"):
        ReplaySource(data).history(BTC)


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "binance" / "futures").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no \*-1h-futures.feather files under .*binance/futures"):
        ReplaySource(tmp_path)


def test_file_with_no_rows_is_a_clear_error(data: Path) -> None:
    _edit(data, FUT, lambda df: df.iloc[0:0])
    with pytest.raises(DataError, match=r"BTC_USDT_USDT-1h-futures.feather: no bars \(empty\)"):
        ReplaySource(data).history(BTC)


# --------------------------------------------------------------------------- odd bars


TS = "2025-03-10 12:00"


def _set(col: str, value: float):  # type: ignore[no-untyped-def]
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[_row_of(df, TS), col] = value
        return df
    return fn


def _duplicate(df: pd.DataFrame) -> pd.DataFrame:
    i = _row_of(df, TS)
    return pd.concat([df.iloc[: i + 1], df.iloc[i: i + 1], df.iloc[i + 1:]])


def _spike(df: pd.DataFrame) -> pd.DataFrame:
    i = _row_of(df, TS)
    df.loc[i, "high"] = df.loc[i, "close"] * 100
    return df


@pytest.mark.parametrize("edit,needle", [
    (_set("close", float("nan")), "close is nan"),
    (_set("open", 0.0), "open is 0 (prices must be > 0)"),
    (_set("low", -5.0), "low is -5 (prices must be > 0)"),
    (_set("volume", -1.0), "volume is -1"),
    (_set("high", 1.0), "high 1 is below open"),
    (_spike, "a spike: high"),
    (_duplicate, "duplicate bar at 2025-03-10T12:00Z"),
])
def test_bad_bars_name_the_file_and_the_row(data: Path, edit, needle: str) -> None:  # type: ignore[no-untyped-def]
    row = _row_of(pd.read_feather(data / "binance" / FUT), TS)
    _edit(data, FUT, edit)
    with pytest.raises(DataError) as e:
        ReplaySource(data).history(BTC)
    msg = str(e.value)
    assert "BTC_USDT_USDT-1h-futures.feather" in msg and needle in msg, msg
    if "duplicate" not in needle:
        assert f"row {row} (2025-03-10T12:00Z)" in msg


def test_bad_funding_rate_names_the_file_and_row(data: Path) -> None:
    _edit(data, "futures/BTC_USDT_USDT-1h-funding_rate.feather", lambda df: df.assign(
        open=df["open"].where(df.index != 5, np.nan)))
    with pytest.raises(DataError, match=r"BTC_USDT_USDT-1h-funding_rate.feather: row 5 .*funding rate is nan"):
        ReplaySource(data).history(BTC)


def test_the_bundled_and_shared_history_passes_the_checks() -> None:
    src = ReplaySource(load_settings().data_dir)
    for s in src.symbols():
        src.history(s)
    assert src.quarantined() == {}


def test_a_real_flash_crash_is_not_a_spike() -> None:
    """Real wicks (ETH's 2.5x within a day in the shared history) stay; only corrupt prints are rejected."""
    idx = pd.date_range("2025-01-01", periods=48, freq="h", tz="UTC")
    df = pd.DataFrame({"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.0, "volume": 1.0}, index=idx)
    df.loc[idx[20], "low"] = 40.0  # a 60% wick down
    df.loc[idx[30], "volume"] = 0.0  # a bar without trades
    assert check_bars(df, "test") == []


# --------------------------------------------------------------------------- quarantine and gaps


def test_a_bad_symbol_is_quarantined_and_the_others_keep_working(data: Path) -> None:
    _edit(data, FUT, _spike)
    src = ReplaySource(data)
    lo, hi = src.data_range()  # built from the good symbols
    assert hi == pd.Timestamp("2025-05-31 23:00", tz="UTC")
    tickers = src.tickers(datetime(2025, 5, 1, tzinfo=UTC))
    assert BTC not in tickers and ETH in tickers
    assert set(src.quarantined()) == {BTC} and "spike" in src.quarantined()[BTC]
    assert src.snapshot(ETH, datetime(2025, 5, 1, tzinfo=UTC)).last > 0
    with pytest.raises(DataError, match="BTC/USDT:USDT quarantined: .*spike"):
        src.bars_between(BTC, datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))


def test_gaps_are_said_and_stale_data_is_refused(data: Path) -> None:
    start, end = pd.Timestamp("2025-04-10 00:00", tz="UTC"), pd.Timestamp("2025-04-11 06:00", tz="UTC")

    def cut(df: pd.DataFrame) -> pd.DataFrame:
        d = pd.to_datetime(df["date"], utc=True)
        return df[(d < start) | (d >= end)]

    _edit(data, "futures/ETH_USDT_USDT-1h-futures.feather", cut)
    src = ReplaySource(data)
    snap = src.snapshot(ETH, datetime(2025, 4, 15, tzinfo=UTC))
    assert any("gap" in n and "2025-04-09 23:00 -> 2025-04-11 06:00" in n for n in snap.notes), snap.notes
    with pytest.raises(DataError, match="ETH/USDT:USDT: stale data: the newest bar before 2025-04-11T06:00Z"):
        src.snapshot(ETH, datetime(2025, 4, 11, 6, tzinfo=UTC))


# --------------------------------------------------------------------------- the monitor


def test_monitor_quarantines_the_bad_symbol_and_manages_the_others(data: Path, tmp_path: Path) -> None:
    from pipeline.account import load, save_account
    from pipeline.monitor import sync_positions
    from store.db import get_session_factory, transaction

    settings = load_settings(data_dir=data, database_url=f"sqlite:///{tmp_path / 'm.db'}")
    factory = get_session_factory(settings)
    t0 = datetime(2025, 3, 10, 0, tzinfo=UTC)
    good = ReplaySource(load_settings().data_dir)
    acct = load(factory, settings)
    for sym in (BTC, ETH):
        px = good.price_after(sym, t0)[1]
        plan = TradePlan(sym, Side.LONG, px, px * 0.97, px * 1.045, px * 1.075, 3, Decimal("0.01"), px * 0.0003,
                         px * 0.0001, px * 0.00001, 0.5, px * 0.5, 3.0)
        acct.open(plan, px, t0, position_id=f"P-{sym[:3]}")
    with transaction(factory) as s:
        save_account(s, settings, acct, t0, {p.id: t0 for p in acct.open_positions()})

    # BTC's file gets a 100x print two hours in: without the checks it would fill TP1 and TP2 at once
    _edit(data, FUT, _spike)
    acct, summary = sync_positions(factory, ReplaySource(data), settings, t0 + timedelta(days=3))
    assert set(summary["quarantined"]) == {BTC}
    assert any("BTC/USDT:USDT quarantined" in e and "spike" in e for e in summary["events"])
    assert summary["checked"] == 1  # ETH was managed
    btc = acct.get("P-BTC")
    assert btc.is_open and btc.qty_open == Decimal("0.01")  # untouched: no fill from corrupt data
    assert [f for f in acct.fills if f.symbol == BTC and f.kind == "close"] == []
    with transaction(factory) as s:
        from store import repo

        assert repo.checked_until(s, "P-BTC") == t0  # not walked past the bad data
        assert repo.checked_until(s, "P-ETH") > t0
    from store.db import dispose_all

    dispose_all()


# --------------------------------------------------------------------------- the ccxt source and the cycle


@pytest.mark.parametrize("bad,needle", [("spike", "a spike: high"), ("nan", "close is nan"),
                                        ("zero", "low is 0 (prices must be > 0)")])
def test_ccxt_bars_are_checked_at_the_boundary(bad: str, needle: str) -> None:
    from exchange.ccxt_source import CcxtSource
    from tests.fakes.exchange_server import HOUR, FakeBybit

    now = datetime(2025, 6, 1, 12, 30, tzinfo=UTC)
    bad_ts = int(datetime(2025, 6, 1, 9, tzinfo=UTC).timestamp() * 1000)
    with FakeBybit(int(now.timestamp() * 1000), launch_ms=int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)) as fx:
        plain = fx.bar

        def bar(symbol: str, ts: int, step: int, mark: bool = False) -> list[str]:
            row = plain(symbol, ts, step, mark)
            if ts == bad_ts and step == HOUR and symbol.startswith("BTC") and not mark:
                if bad == "spike":
                    row[2] = str(float(row[4]) * 100)
                elif bad == "nan":
                    row[4] = "NaN"
                else:
                    row[3] = "0"
            return row

        fx.bar = bar  # type: ignore[method-assign]
        src = CcxtSource("bybit", api_base=fx.url, now=fx.now, sleep=lambda s: None, base_delay=0.0)
        with pytest.raises(DataError) as e:
            src.snapshot(BTC)
        msg = str(e.value)
        assert "fetch_ohlcv BTC/USDT:USDT 1h" in msg and "(2025-06-01T09:00Z)" in msg and needle in msg, msg
        with pytest.raises(DataError, match="spike|nan|prices must be"):
            src.bars_between(BTC, datetime(2025, 6, 1, 6, tzinfo=UTC), datetime(2025, 6, 1, 12, tzinfo=UTC))
        assert src.snapshot(ETH).last > 0  # the other symbols are unaffected


def test_cycle_collection_leaves_a_quarantined_symbol_out_and_keeps_the_others() -> None:
    from tasks.fanout import collect_snapshots

    class Done:
        def __init__(self, value):  # type: ignore[no-untyped-def]
            self.value = value

        def result(self):  # type: ignore[no-untyped-def]
            if isinstance(self.value, BaseException):
                raise self.value
            return self.value

    snaps, left = collect_snapshots({BTC: Done(DataError("BTC file: row 3: a spike")), ETH: Done("eth-snapshot")},
                                    {BTC: "BTC/USDT:USDT quarantined: row 3: a spike"})
    assert snaps == {ETH: "eth-snapshot"}
    assert left == [(BTC, "quarantined: BTC/USDT:USDT quarantined: row 3: a spike")]
    with pytest.raises(RuntimeError):  # anything else still fails the cycle
        collect_snapshots({ETH: Done(RuntimeError("exchange down"))})


def test_a_sustained_move_is_not_a_spike_but_a_one_bar_print_is() -> None:
    idx = pd.date_range("2025-01-01", periods=40, freq="h", tz="UTC")
    close = np.r_[np.full(20, 1.0), np.full(20, 5.0)]  # a listing-day pump that holds (5x)
    df = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1.0},
                      index=idx)
    df.iloc[20, df.columns.get_loc("open")] = 1.0  # the pump bar opens at 1 and closes at 5
    df.iloc[20, df.columns.get_loc("low")] = 0.99
    assert check_bars(df, "pump") == []
    assert check_bars(df.iloc[:21], "pump, newest bar") == []  # even as the newest bar of a fetch
    bad = df.copy()
    bad.iloc[10, :4] = bad.iloc[10, :4] * 100  # one whole bar 100x, back to normal after
    with pytest.raises(DataError, match=r"pump: row 10 .*a spike"):
        check_bars(bad, "pump")


def test_ccxt_gaps_are_said_in_the_snapshot() -> None:
    from exchange.ccxt_source import CcxtSource
    from tests.fakes.exchange_server import FakeBybit

    now = datetime(2025, 6, 1, 12, 30, tzinfo=UTC)
    hole = {int(datetime(2025, 6, 1, h, tzinfo=UTC).timestamp() * 1000) for h in (5, 6, 7)}
    with FakeBybit(int(now.timestamp() * 1000), launch_ms=int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)) as fx:
        plain = fx._kline

        def kline(q, mark=False):  # type: ignore[no-untyped-def]
            code, body, headers = plain(q, mark)
            import json

            doc = json.loads(body)
            doc["result"]["list"] = [r for r in doc["result"]["list"] if int(r[0]) not in hole]
            return code, json.dumps(doc), headers

        fx._kline = kline  # type: ignore[method-assign]
        src = CcxtSource("bybit", api_base=fx.url, now=fx.now, sleep=lambda s: None, base_delay=0.0)
        snap = src.snapshot(BTC)
    assert any("1 gap(s) in the exchange's 1h bars, latest before 2025-06-01 08:00 UTC (4 h" in n
               for n in snap.notes), snap.notes


def test_download_store_that_is_corrupt_is_a_clear_error(tmp_path: Path) -> None:
    from exchange.download import read_store

    p = tmp_path / "BTC_USDT_USDT-1h-futures.feather"
    p.write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match=r"BTC_USDT_USDT-1h-futures.feather: cannot read the stored history"):
        read_store(p)
