"""The backtest's array fast paths (issue 13, item 15) equal the live functions they replace, element by
element: the math pre-screen (`finalize` + `signal_of`), the BTC 4 h change, the fixed-universe
candidates, and the monitor's Python lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agents import math_engine
from backtest.data import change_4h_pct, decision_times, load_symbol
from backtest.engine import fixed_candidates
from exchange.base import TickerInfo
from pipeline.stages import BTC, btc_change_4h_pct, select_candidates

START, END = "2025-01-01", "2025-02-15 23:00"


@pytest.fixture(scope="module")
def data(settings, source):
    times = decision_times(START, END, settings.cycle_interval_minutes)
    return times, {s: load_symbol(source, s, times, times[-1], settings) for s in source.symbols()}


def test_vectorised_prescreen_equals_finalize_element_wise(settings, data):
    _times, sds = data
    for sd in sds.values():
        fr = sd.frame
        for k in range(len(fr)):
            tech = float(fr["tech"].iloc[k])
            tk = tech if np.isfinite(tech) else 0.0
            t1d = float(fr["tech_1d"].iloc[k]) if "tech_1d" in fr else float("nan")
            f, _ = math_engine.finalize(tk, float(fr["tech_weight"].iloc[k]), t1d, 0.0, 0.0,
                                        int(fr["state_4h"].iloc[k]), settings.signal)
            assert sd.pre_final[k] == f  # exactly, not approximately
            code = {"LONG": 1, "SHORT": -1, "WAIT": 0}[math_engine.signal_of(f, settings.signal).value]
            assert sd.pre_signal[k] == code
            assert sd.pre_final_r4[k] == round(f, 4)
    # the scalar clip and sign behave like numpy's, NaN included
    for x in (-2.0, -1.0, -0.3, 0.0, -0.0, 0.7, 1.0, 3.0, float("nan")):
        assert np.array_equal(math_engine._clip(x, -1.0, 1.0), np.clip(x, -1, 1), equal_nan=True)
        assert np.array_equal(math_engine._sign(x), np.sign(x), equal_nan=True)


def test_btc_4h_change_over_arrays_equals_the_live_function(source, data):
    times, sds = data
    arr = change_4h_pct(sds[BTC])
    lo, _hi = source.data_range()
    checked = 0
    for k in range(0, len(times), 7):
        if times[k] < lo:
            continue  # before the source's common range the live snapshot is refused
        live = btc_change_4h_pct({}, source, times[k].to_pydatetime())
        assert live is not None and arr[k] == live
        checked += 1
    assert checked > 100


def _tickers(sds, universe, k, spread):
    """The point-in-time tickers as the engine's per-time path builds them."""
    out = {}
    for s in universe:
        last = sds[s].ticker_last[k]
        if last is not None:
            half = last * spread / 200
            out[s] = TickerInfo(s, last, last - half, last + half, sds[s].vol24_l[k])
    return out


def test_fixed_candidates_equal_select_candidates_at_every_time(settings, source, data):
    times, sds = data
    known = source.symbols()
    spread = source.spread_pct
    universe = [s for s in settings.symbols if s in known]
    for requested in (None, ["ETH/USDT:USDT", "BTC/USDT:USDT"]):
        uni = requested or universe
        fast = fixed_candidates(settings, uni, sds, spread, requested)
        for k in range(len(times)):
            slow = select_candidates(settings, _tickers(sds, uni, k, spread), known, requested)[0]
            assert fast[k] == [c.symbol for c in slow]
    # a volume threshold that drops some symbols at some times: still equal
    strict = settings.model_copy(update={"min_volume_usd": float(np.median(sds["DOGE/USDT:USDT"].vol24))})
    fast = fixed_candidates(strict, universe, sds, spread, None)
    assert any(len(c) < len(universe) for c in fast) and any(len(c) > 1 for c in fast)
    for k in range(len(times)):
        assert fast[k] == [c.symbol for c in select_candidates(strict, _tickers(sds, universe, k, spread), known)[0]]
    # the volume scanner ranks per time: no fast path
    assert fixed_candidates(settings.model_copy(update={"universe": "scanner"}), universe, sds, spread, None) is None


def test_monitor_lists_equal_the_arrays_from_the_first_decision(data):
    times, sds = data
    sd = sds["ETH/USDT:USDT"]
    opens, o, h, lo, c, atr, f_dt, f_rate = sd.py_bars()
    i0 = int(np.searchsorted(sd.open_ns, times[0].value, side="left"))
    assert all(x is None for x in opens[:i0])
    for j in range(i0, len(sd.open_ns), 97):
        assert opens[j] == pd.Timestamp(int(sd.open_ns[j]), tz="UTC").to_pydatetime()
        assert (o[j], h[j], lo[j], c[j]) == (sd.o[j], sd.h[j], sd.lo[j], sd.c[j])
        assert np.array_equal(atr[j], sd.atr[j], equal_nan=True)
    assert f_dt == [pd.Timestamp(t).to_pydatetime() for t in sd.funding_ts]
    assert f_rate == sd.funding_rate.tolist()
