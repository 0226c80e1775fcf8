"""Per-symbol point-in-time arrays of a backtest (bars, funding, scores per decision time) and the
decision times themselves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from agents import math_engine
from core.errors import DataError
from core.frames import TF_DELTA, to_utc
from core.settings import Settings
from core.types import Action, Score
from risk.manager import MarketLimits

H1_NS = 3_600_000_000_000
SIGNAL_CODE = {Action.LONG: 1, Action.SHORT: -1, Action.WAIT: 0}
# ------------------------------------------------------------------------------------------------
# per-symbol point-in-time arrays


class _Row(dict):
    """A score-frame row as a dict with `.name` (the decision time), read by `score_from_row`."""

    __slots__ = ("name",)


@dataclass
class SymbolData:
    symbol: str
    open_ns: np.ndarray
    o: np.ndarray
    h: np.ndarray
    lo: np.ndarray
    c: np.ndarray
    qv: np.ndarray  # close * volume
    funding_ns: np.ndarray
    funding_rate: np.ndarray
    funding_ts: list[pd.Timestamp]
    limits: MarketLimits
    h1: pd.DataFrame
    futures_start_ns: int
    frame: pd.DataFrame | None = None  # score frame at the decision times
    columns: dict[str, np.ndarray] | None = None  # the score frame's columns as arrays
    pre_final: np.ndarray | None = None  # final score per decision time (same as Score.final unrounded)
    pre_signal: np.ndarray | None = None  # 1 LONG, -1 SHORT, 0 WAIT
    n_closed: np.ndarray | None = None  # bars closed by each decision time
    vol24: np.ndarray | None = None
    funding_at: np.ndarray | None = None  # last funding rate at or before each decision time (nan: none)
    atr: np.ndarray | None = None  # 1h ATR(14) per bar (known at its close), for the Chandelier exit
    _scores: dict[int, Score] = field(default_factory=dict)

    def score(self, k: int, signal: Any) -> Score:
        s = self._scores.get(k)
        if s is None:
            assert self.columns is not None and self.frame is not None
            row = _Row({c: a[k].item() for c, a in self.columns.items()})
            row.name = self.frame.index[k]
            s = math_engine.score_from_row(self.symbol, row, 0.0, ("oi_missing",), None, signal)
            self._scores[k] = s
        return s


def load_symbol(source: Any, symbol: str, times: pd.DatetimeIndex, end: pd.Timestamp,
                 settings: Settings, timings: dict[str, float] | None = None) -> SymbolData:
    timings = timings if timings is not None else {}
    t0 = time.perf_counter()
    hist = source.history(symbol)
    h1 = hist.h1
    # never hand the scorer a bar that closes after `end` (the engine is causal anyway; belt and braces)
    h1 = h1[h1.index + TF_DELTA["1h"] <= end]
    open_ns = hist.h1.index.as_unit("ns").asi8
    cols = hist.h1[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
    fund = hist.funding
    sd = SymbolData(
        symbol=symbol, open_ns=open_ns, o=cols[:, 0], h=cols[:, 1], lo=cols[:, 2], c=cols[:, 3],
        qv=cols[:, 3] * cols[:, 4], funding_ns=pd.DatetimeIndex(fund.index).as_unit("ns").asi8, funding_rate=fund.to_numpy(dtype=float),
        funding_ts=list(fund.index), limits=MarketLimits.from_rules(source.market_rules(symbol)), h1=hist.h1,
        futures_start_ns=pd.Timestamp(hist.futures_start).as_unit("ns").value,
        atr=math_engine.hourly_atr(hist.h1),
    )
    from core.frames import resample

    t1 = time.perf_counter()
    timings["load"] = timings.get("load", 0.0) + (t1 - t0)
    frames = {tf: resample(h1, tf) for tf in ("1h", "4h", "1d")}
    t_ns = times.as_unit("ns").asi8
    sd.n_closed = np.searchsorted(open_ns + H1_NS, t_ns, side="right")
    try:
        series = math_engine.score_frames(frames, times, settings.signal)
    except DataError:
        series = None
    n = len(times)
    if series is not None:
        fr = series.frame
        sd.frame = fr
        sd.columns = {c: fr[c].to_numpy() for c in fr.columns}
        tech = fr["tech"].to_numpy(dtype=float)
        tw = fr["tech_weight"].to_numpy(dtype=float)
        t1d = fr["tech_1d"].to_numpy(dtype=float) if "tech_1d" in fr else np.full(n, np.nan)
        st4 = fr["state_4h"].to_numpy()
        pre_final = np.empty(n)
        pre_sig = np.zeros(n, dtype=np.int8)
        for k in range(n):
            tk = tech[k] if np.isfinite(tech[k]) else 0.0
            f, _ = math_engine.finalize(float(tk), float(tw[k]), float(t1d[k]), 0.0, 0.0, int(st4[k]),
                                        settings.signal)
            pre_final[k] = f
            pre_sig[k] = SIGNAL_CODE[math_engine.signal_of(f, settings.signal)]
        sd.pre_final, sd.pre_signal = pre_final, pre_sig
    else:  # too little history: never a candidate with a score
        sd.pre_final = np.zeros(n)
        sd.pre_signal = np.zeros(n, dtype=np.int8)
    # 24 h quote volume of the bars closed by t with open >= t - 24 h (as ReplaySource.tickers)
    lo_idx = np.searchsorted(open_ns, t_ns - 24 * H1_NS, side="left")
    vol = np.zeros(n)
    for k in range(n):
        a, b = lo_idx[k], sd.n_closed[k]
        if b > a:
            vol[k] = float(sd.qv[a:b].sum())
    sd.vol24 = vol
    fi = np.searchsorted(sd.funding_ns, t_ns, side="right") - 1
    sd.funding_at = np.where(fi >= 0, sd.funding_rate[np.clip(fi, 0, None)] if len(sd.funding_rate) else np.nan,
                             np.nan)
    timings["indicators"] = timings.get("indicators", 0.0) + (time.perf_counter() - t1)
    return sd


def decision_times(start: datetime | str, end: datetime | str, interval_minutes: int) -> pd.DatetimeIndex:
    s, e = to_utc(start), to_utc(end)
    if e < s:
        raise DataError(f"end {e.isoformat()} is before start {s.isoformat()}")
    return pd.date_range(s, e, freq=pd.Timedelta(minutes=interval_minutes))


