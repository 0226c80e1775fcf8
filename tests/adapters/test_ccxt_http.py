"""CcxtSource, error translation and download_history end to end: real ccxt against a local Bybit.

The fake (tests/fakes/exchange_server.py) speaks Bybit v5 REST on 127.0.0.1 and records requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.data import app as data_app
from core.errors import ConfigError, DataError, RateLimited, TransientError
from exchange.ccxt_source import CcxtSource
from exchange.download import download_history, store_path
from tests.fakes.exchange_server import HOUR, FakeBybit

NOW = datetime(2025, 6, 1, 12, 30, tzinfo=UTC)  # mid-bar: the 12:00 1h bar is still forming
LAUNCH = datetime(2025, 1, 1, tzinfo=UTC)
BTC = "BTC/USDT:USDT"


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@pytest.fixture
def fx() -> Iterator[FakeBybit]:
    with FakeBybit(ms(NOW), launch_ms=ms(LAUNCH)) as fake:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def src(fx: FakeBybit, sleeps: list[float]) -> CcxtSource:
    return CcxtSource("bybit", api_base=fx.url, now=fx.now, sleep=sleeps.append, base_delay=0.01)


# ----------------------------------------------------------------------------- snapshot
def test_snapshot_end_to_end(src: CcxtSource, fx: FakeBybit) -> None:
    fx.send_forming = True  # answer like an exchange that always sends the bar still forming
    snap = src.snapshot(BTC)
    assert snap.symbol == BTC and snap.as_of == NOW and snap.source == "ccxt:bybit"
    h1, h4, d1 = snap.candles["1h"], snap.candles["4h"], snap.candles["1d"]
    # only closed bars: the 12:00 bar (forming at 12:30) is dropped even though the server sent it
    assert h1.index[-1] == pd.Timestamp("2025-06-01 11:00", tz="UTC")
    assert h4.index[-1] == pd.Timestamp("2025-06-01 08:00", tz="UTC")
    assert d1.index[-1] == pd.Timestamp("2025-05-31", tz="UTC")
    assert len(h1) == 1000 and h1.index.is_monotonic_increasing and h1.index.is_unique
    assert (h1.index.to_series().diff().dropna() == pd.Timedelta(hours=1)).all()
    assert len(d1) == (pd.Timestamp("2025-05-31") - pd.Timestamp("2025-01-01")).days + 1  # since listing
    assert list(h1.columns) == ["open", "high", "low", "close", "volume"]
    bar = h1.loc[pd.Timestamp("2025-06-01 10:00", tz="UTC")]
    assert bar["open"] == fx.price("BTCUSDT", ms(datetime(2025, 6, 1, 10, tzinfo=UTC)))
    assert bar["volume"] == 10.5
    assert snap.bid < snap.ask and snap.last == fx.price("BTCUSDT", ms(NOW))
    assert snap.volume_24h_quote == pytest.approx(123456789.5)
    assert snap.funding_rate == pytest.approx(fx.funding_rate(ms(NOW)))
    assert snap.next_funding_time == datetime(2025, 6, 1, 16, tzinfo=UTC)
    assert snap.has_open_interest and snap.open_interest == pytest.approx(50000 + (ms(NOW) // HOUR) % 100)
    oi = snap.open_interest_history
    assert oi is not None and len(oi) == 200 and oi.index[-1] <= pd.Timestamp(NOW)
    assert snap.notes == ()
    kline = fx.calls("/v5/market/kline")
    assert {q["interval"] for q in kline} == {"60", "240", "D"} and all(q["category"] == "linear" for q in kline)


def test_snapshot_in_the_past_uses_bars_only(src: CcxtSource, fx: FakeBybit) -> None:
    as_of = datetime(2025, 5, 1, 6, 15, tzinfo=UTC)
    snap = src.snapshot(BTC, as_of)
    assert snap.candles["1h"].index[-1] == pd.Timestamp("2025-05-01 05:00", tz="UTC")
    assert snap.last == snap.candles["1h"]["close"].iloc[-1] and snap.bid == snap.ask
    assert snap.funding_rate == pytest.approx(fx.funding_rate(ms(datetime(2025, 5, 1, tzinfo=UTC))))
    assert snap.open_interest_history is not None and snap.open_interest_history.index[-1] <= pd.Timestamp(as_of)
    assert any("past" in n for n in snap.notes)
    assert fx.calls("/v5/market/tickers") == []  # no live data mixed into a past view


def test_no_open_interest_is_none_with_a_note(fx: FakeBybit, src: CcxtSource) -> None:
    fx.with_open_interest = False
    snap = src.snapshot(BTC)
    assert snap.open_interest is None and snap.open_interest_history is None
    assert any("open interest" in n for n in snap.notes)


def test_rules_tickers_symbols_price(src: CcxtSource, fx: FakeBybit) -> None:
    assert src.symbols() == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    rules = src.market_rules("ETH/USDT:USDT")
    assert str(rules.qty_step) == "0.01" and str(rules.price_tick) == "0.01" and rules.max_leverage == 100
    t = src.tickers()
    assert set(t) == {BTC, "ETH/USDT:USDT"} and t[BTC].spread_pct < 0.01
    when, price = src.price_after(BTC, NOW - timedelta(minutes=1))
    assert when == NOW and price == pytest.approx(fx.price("BTCUSDT", ms(NOW)))
    assert src.price_after(BTC, NOW + timedelta(hours=1)) is None
    with pytest.raises(DataError):
        src.tickers(as_of=NOW - timedelta(days=3))


def test_bars_and_funding_between(src: CcxtSource) -> None:
    start, end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, 1, 30, tzinfo=UTC)
    bars = src.bars_between(BTC, start, end)
    assert bars.index[0] == pd.Timestamp(start) and bars.index[-1] == pd.Timestamp("2025-03-02 00:00", tz="UTC")
    f = src.funding_between(BTC, start, datetime(2025, 3, 2, tzinfo=UTC))
    # start < t <= end
    assert [t.hour for t in f.index] == [8, 16, 0] and f.index[-1] == pd.Timestamp("2025-03-02", tz="UTC")


# ----------------------------------------------------------------------------- errors
def test_http_429_is_rate_limited_with_retry_after(fx: FakeBybit) -> None:
    src = CcxtSource("bybit", api_base=fx.url, now=fx.now, attempts=1)
    src.load_markets()
    fx.fail("/v5/market/tickers", 429, body="Too Many Requests", headers={"Retry-After": "3"})
    with pytest.raises(RateLimited) as info:
        src.tickers()
    assert info.value.retry_after == 3.0


def test_429_then_success_waits_retry_after(src: CcxtSource, fx: FakeBybit, sleeps: list[float]) -> None:
    src.load_markets()
    fx.fail("/v5/market/tickers", 429, headers={"Retry-After": "2"})
    assert BTC in src.tickers()
    assert sleeps == [2.0] and len(fx.calls("/v5/market/tickers")) == 2


def test_5xx_is_retried_then_transient(src: CcxtSource, fx: FakeBybit, sleeps: list[float]) -> None:
    src.load_markets()
    fx.fail("/v5/market/tickers", 503, times=1)
    assert BTC in src.tickers()  # one blip: retried and fine
    fx.clear()
    fx.fail("/v5/market/tickers", 502, times=3)
    with pytest.raises(TransientError) as info:
        src.tickers()
    assert not isinstance(info.value, RateLimited)
    assert len(fx.calls("/v5/market/tickers")) == 3 and len(sleeps) == 1 + 2


def test_bad_symbol_is_data_error_without_requests(src: CcxtSource, fx: FakeBybit) -> None:
    src.load_markets()
    fx.clear()
    with pytest.raises(DataError, match="DOGE/USDT:USDT"):
        src.snapshot("DOGE/USDT:USDT")
    assert fx.requests == []


def test_unknown_exchange_is_config_error() -> None:
    with pytest.raises(ConfigError, match="nosuchex"):
        CcxtSource("nosuchex")


# ----------------------------------------------------------------------------- download
def test_download_paginated_resumable_atomic(src: CcxtSource, fx: FakeBybit, tmp_path: Path) -> None:
    since, until1 = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 15, tzinfo=UTC)
    res = download_history(src, [BTC], since, until1, tmp_path, progress=False)
    path = tmp_path / "bybit" / "futures" / "BTC_USDT_USDT-1h-futures.feather"
    assert path == store_path(tmp_path, "bybit", BTC)
    assert {r.kind: r.path.name for r in res} == {
        "futures": "BTC_USDT_USDT-1h-futures.feather",
        "funding_rate": "BTC_USDT_USDT-1h-funding_rate.feather",
        "mark": "BTC_USDT_USDT-1h-mark.feather",
    }
    df = pd.read_feather(path)
    assert list(df.columns) == ["date", "open", "high", "low", "close", "volume"]
    assert str(df["date"].dt.tz) == "UTC"
    hours = int((until1 - since).total_seconds() // 3600)
    assert len(df) == hours and df["date"].is_monotonic_increasing and df["date"].is_unique
    assert df["date"].iloc[-1] == pd.Timestamp(until1) - pd.Timedelta(hours=1)  # last bar closed by until
    kline = fx.calls("/v5/market/kline")
    assert len(kline) == 2  # 1752 bars at 1000 a page
    starts = [int(q["start"]) for q in kline]
    assert starts[1] == int(kline[0]["end"]) + 1 == starts[0] + 1000 * HOUR
    fund = pd.read_feather(tmp_path / "bybit" / "futures" / "BTC_USDT_USDT-1h-funding_rate.feather")
    assert (fund["date"].diff().dropna() == pd.Timedelta(hours=8)).all()
    assert fund["date"].iloc[-1] == pd.Timestamp(until1)
    assert (fund[["high", "low", "close", "volume"]] == 0).all().all() and fund["open"].gt(0).all()
    mark = pd.read_feather(tmp_path / "bybit" / "futures" / "BTC_USDT_USDT-1h-mark.feather")
    assert len(mark) == hours and mark["volume"].isna().all()
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]

    # extend `until`: only the missing tail is fetched, then merged without duplicates
    fx.clear()
    until2 = datetime(2025, 4, 1, tzinfo=UTC)
    res2 = download_history(src, [BTC], since, until2, tmp_path, progress=False)
    kline = fx.calls("/v5/market/kline")
    assert len(kline) == 1 and int(kline[0]["start"]) == ms(until1)
    assert all(int(q["startTime"]) > ms(until1) for q in fx.calls("/v5/market/funding/history"))
    df2 = pd.read_feather(path)
    assert len(df2) == int((until2 - since).total_seconds() // 3600) and df2["date"].is_unique
    assert next(r for r in res2 if r.kind == "futures").rows_added == 17 * 24
    pd.testing.assert_frame_equal(df2.iloc[: len(df)], df)

    # nothing new: no bar requests at all
    fx.clear()
    download_history(src, [BTC], since, until2, tmp_path, progress=False)
    assert fx.calls("/v5/market/kline") == []


def test_interrupted_download_keeps_a_valid_file_and_resumes(fx: FakeBybit, tmp_path: Path) -> None:
    src = CcxtSource("bybit", api_base=fx.url, now=fx.now, sleep=lambda s: None, base_delay=0.0, attempts=2)
    since, until = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC)
    download_history(src, [BTC], since, datetime(2025, 1, 10, tzinfo=UTC), tmp_path, progress=False,
                     kinds=["futures"])
    path = store_path(tmp_path, "bybit", BTC)
    before = pd.read_feather(path)
    fx.clear()
    # the second page fails for good: the first is kept, the file stays readable
    fx.handle_orig = fx.handle
    calls = {"n": 0}

    def failing(p: str, q: dict[str, str]):
        if p == "/v5/market/kline":
            calls["n"] += 1
            if calls["n"] >= 2:
                return 503, "down", {}
        return fx.handle_orig(p, q)

    fx.handle = failing  # type: ignore[method-assign]
    with pytest.raises(TransientError):
        download_history(src, [BTC], since, until, tmp_path, progress=False, kinds=["futures"])
    mid = pd.read_feather(path)
    assert len(mid) == len(before) + 1000 and mid["date"].is_unique  # the page fetched before the failure is kept
    fx.handle = fx.handle_orig  # type: ignore[method-assign]
    download_history(src, [BTC], since, until, tmp_path, progress=False, kinds=["futures"])
    done = pd.read_feather(path)
    assert len(done) == int((until - since).total_seconds() // 3600) and done["date"].is_unique


def test_download_unknown_symbol_writes_nothing(src: CcxtSource, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="FOO/USDT:USDT"):
        download_history(src, [BTC, "FOO/USDT:USDT"], datetime(2025, 1, 1), datetime(2025, 2, 1), tmp_path,
                         progress=False)
    assert not any(tmp_path.rglob("*.feather"))


# ----------------------------------------------------------------------------- CLI
def test_cli_download_and_bad_input(fx: FakeBybit, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(data_app, ["download", "--exchange", "bybit", "--symbols", "BTC/USDT:USDT,ETH/USDT:USDT",
                                  "--since", "2025-05-01", "--until", "2025-05-03", "--data-dir", str(tmp_path),
                                  "--api-base", fx.url, "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "bybit" / "futures" / "ETH_USDT_USDT-1h-futures.feather").exists()
    assert len(pd.read_feather(tmp_path / "bybit" / "futures" / "BTC_USDT_USDT-1h-futures.feather")) == 48
    for args, needle in [
        (["--exchange", "nosuchex", "--symbols", BTC, "--since", "2025-01-01"], "unknown exchange"),
        (["--symbols", BTC, "--since", "2025-02-30"], "not a date"),
        (["--symbols", "BTCUSDT", "--since", "2025-01-01"], "not a ccxt perpetual symbol"),
        (["--symbols", BTC, "--since", "2025-02-01", "--until", "2025-01-01"], "must be after"),
        (["--symbols", "FOO/USDT:USDT", "--since", "2025-05-01", "--until", "2025-05-02",
          "--data-dir", str(tmp_path), "--api-base", fx.url, "--no-progress"], "unknown symbol 'FOO/USDT:USDT'"),
    ]:
        r = runner.invoke(data_app, ["download", *args])
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.stderr and "Traceback" not in r.output and r.stderr.count("\n") == 1


def test_download_starts_at_listing(src: CcxtSource, fx: FakeBybit, tmp_path: Path) -> None:
    res = download_history(src, [BTC], datetime(2023, 1, 1), datetime(2025, 1, 3), tmp_path, progress=False,
                           kinds=["futures"])
    assert [int(q["start"]) for q in fx.calls("/v5/market/kline")] == [ms(LAUNCH)]  # not 2023
    assert res[0].rows_total == 48 and res[0].first == LAUNCH


def test_downloaded_store_is_read_by_the_replay_source(src: CcxtSource, tmp_path: Path) -> None:
    from exchange.replay import ReplaySource

    download_history(src, [BTC], datetime(2025, 1, 1), datetime(2025, 3, 1), tmp_path, progress=False)
    replay = ReplaySource(tmp_path, exchange="bybit")
    assert replay.symbols() == [BTC]
    snap = replay.snapshot(BTC, datetime(2025, 2, 20, 12, tzinfo=UTC))
    assert snap.candles["1h"].index[-1] == pd.Timestamp("2025-02-20 11:00", tz="UTC")
    assert snap.funding_rate is not None
