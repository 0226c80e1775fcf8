from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents.math_engine import score_frames, score_from_row, score_snapshot
from core.frames import resample
from core.settings import load_settings
from core.types import Action, MarketSnapshot, NewsEvent, NewsReport, VolState
from exchange.replay import ReplaySource

BTC = "BTC/USDT:USDT"
S = load_settings()


@pytest.fixture(scope="module")
def source() -> ReplaySource:
    return ReplaySource(S.data_dir)


def _perturb_after(snap_src: ReplaySource, symbol: str, t: pd.Timestamp, seed: int) -> dict[str, pd.DataFrame]:
    """Full history frames with every bar that closes after t replaced by random junk."""
    h1 = snap_src.history(symbol).h1.copy()
    future = h1.index + pd.Timedelta(hours=1) > t
    rng = np.random.default_rng(seed)
    n = int(future.sum())
    base = rng.uniform(1, 1e6, n)
    h1.loc[future, "open"] = base
    h1.loc[future, "close"] = base * rng.uniform(0.5, 1.5, n)
    h1.loc[future, "high"] = np.maximum(h1.loc[future, "open"], h1.loc[future, "close"]) * 1.1
    h1.loc[future, "low"] = np.minimum(h1.loc[future, "open"], h1.loc[future, "close"]) * 0.9
    h1.loc[future, "volume"] = rng.uniform(0, 1e9, n)
    return {tf: resample(h1, tf) for tf in ("1h", "4h", "1d")}


@pytest.mark.parametrize("when", ["2025-02-14 09:00", "2025-04-07 00:00", "2025-05-23 04:00"])
def test_no_lookahead_future_bars_do_not_change_the_score(source: ReplaySource, when: str) -> None:
    t = pd.Timestamp(when, tz="UTC")
    h = source.history(BTC)
    times = pd.DatetimeIndex([t])
    clean = score_frames(h.frames, times, S.signal).frame.iloc[-1]
    junk = score_frames(_perturb_after(source, BTC, t, seed=7), times, S.signal).frame.iloc[-1]
    pd.testing.assert_series_equal(clean, junk)
    # and the snapshot path (data cut at t) gives the same Score as the vectorised path
    a = score_snapshot(source.snapshot(BTC, t), S.signal)
    b = score_from_row(BTC, clean, 0.0, ("oi_missing",), None, S.signal)
    assert a == b


def test_vectorised_series_equals_pointwise_scores(source: ReplaySource) -> None:
    h = source.history(BTC)
    times = pd.date_range("2025-03-01 00:00", periods=12, freq="7h", tz="UTC")
    frame = score_frames(h.frames, times, S.signal).frame
    for t in times:
        snap = source.snapshot(BTC, t)
        assert score_snapshot(snap, S.signal).final == score_from_row(
            BTC, frame.loc[t], 0.0, ("oi_missing",), None, S.signal).final


def test_score_shape_range_and_determinism(source: ReplaySource) -> None:
    snap = source.snapshot("SOL/USDT:USDT", "2025-05-23 04:00")
    a, b = score_snapshot(snap, S.signal), score_snapshot(snap, S.signal)
    assert a == b
    assert -1 <= a.final <= 1
    assert set(a.components) == {"trend", "momentum", "volume", "open_interest", "news"}
    assert set(a.timeframes) == {"1h", "4h", "1d"}
    assert abs(sum(a.weights.values()) - 1) < 1e-9
    assert "oi_missing" in a.flags and a.components["open_interest"] == 0.0
    assert a.signal is Action.LONG and a.final > 0.45


def test_whole_history_scores_stay_in_range(source: ReplaySource) -> None:
    for sym in source.symbols():
        h = source.history(sym)
        times = h.h1.index[h.h1.index >= h.futures_start] + pd.Timedelta(hours=1)
        fr = score_frames(h.frames, times, S.signal).frame
        tech = (fr["tech"] * fr["tech_weight"]).dropna()
        assert len(tech) > 3000 and tech.between(-1, 1).all()


def test_daily_veto_caps_the_score_inside_the_threshold() -> None:
    from agents.math_engine import finalize

    final, veto = finalize(0.9, 0.7, -0.5, 0.0, 0.0, 1, S.signal)
    assert veto and final < S.signal.long_threshold
    final, veto = finalize(0.9, 0.7, 0.5, 0.0, 0.0, 1, S.signal)
    assert not veto and final == pytest.approx(0.63)


def test_panic_and_digesting_by_volatility_ratio_and_news() -> None:
    from agents.math_engine import vol_state

    assert vol_state(1.0, S.signal) is VolState.NORMAL
    assert vol_state(1.5, S.signal) is VolState.DIGESTING
    assert vol_state(3.0, S.signal) is VolState.PANIC
    now = pd.Timestamp("2025-05-01", tz="UTC").to_pydatetime()
    hack = NewsReport(BTC, now, (NewsEvent(now, "exchange hacked", -2, "hack", critical=True),), -0.8, True, True)
    assert vol_state(1.0, S.signal, hack) is VolState.PANIC


def test_open_interest_component_reads_history() -> None:
    from agents.math_engine import oi_component

    idx = pd.date_range("2025-01-01", periods=60, freq="h", tz="UTC")
    close = pd.Series(np.linspace(100, 110, 60), index=idx)
    candles = {"1h": pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0})}
    as_of = (idx[-1] + pd.Timedelta(hours=1)).to_pydatetime()
    oi = pd.Series(np.linspace(1000, 1200, 60), index=idx)
    snap = MarketSnapshot(BTC, as_of, candles, 110, 110, 110, 1e9, open_interest=1200.0, open_interest_history=oi)
    val, flags = oi_component(snap)
    assert val > 0.5 and flags == ()  # price up with OI up: longs building
    snap2 = MarketSnapshot(BTC, as_of, candles, 110, 110, 110, 1e9)
    assert oi_component(snap2) == (0.0, ("oi_missing",))
