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
# History before the first decision time that the indicators are computed over. The slowest recursive
# indicator is the daily ATR(30) (Wilder smoothing, weight (29/30)^n after n days): after 1,100 days an
# older bar weighs < 1e-16, below float precision, and MA200 on 1d needs 200 days; a longer stored
# history changes no score (the backtest figures on the bundled and the bench history are identical).
INDICATOR_WARMUP = pd.Timedelta(days=1100)
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
    pre_final_r4: list[float] | None = None  # pre_final rounded to 4 dp (the WAIT decision records)
    n_closed: np.ndarray | None = None  # bars closed by each decision time
    vol24: np.ndarray | None = None
    funding_at: np.ndarray | None = None  # last funding rate at or before each decision time (nan: none)
    atr: np.ndarray | None = None  # 1h ATR(14) per bar (known at its close), for the Chandelier exit
    has_fill: np.ndarray | None = None  # a bar opens at or after each decision time (the history has not ended)
    ticker_last: list[float | None] | None = None  # last close per decision time, None: not tradable then
    vol24_l: list[float] | None = None  # vol24 as Python floats
    _scores: dict[int, Score] = field(default_factory=dict)
    first_decision_ns: int = 0
    _col_lists: dict[str, list[Any]] | None = None
    _py: tuple[list[Any], ...] | None = None

    def py_bars(self) -> tuple[list[Any], ...]:
        """(open times as datetimes, open, high, low, close, 1h ATR, funding times as datetimes, funding
        rates) as Python lists: the bar-by-bar monitor reads single values, which numpy makes slow."""
        if self._py is None:
            # bars before the first decision time are never monitored (a fill is at or after it): None
            i0 = int(np.searchsorted(self.open_ns, self.first_decision_ns, side="left")) if self.first_decision_ns else 0
            pad: list[Any] = [None] * i0
            opens = pad + pd.DatetimeIndex(self.open_ns[i0:], tz="UTC").to_pydatetime().tolist()
            fund = [pd.Timestamp(t).to_pydatetime() for t in self.funding_ts]
            atr = self.atr if self.atr is not None else np.full(len(self.open_ns), np.nan)
            self._py = (opens, pad + self.o[i0:].tolist(), pad + self.h[i0:].tolist(), pad + self.lo[i0:].tolist(),
                        pad + self.c[i0:].tolist(), pad + atr[i0:].tolist(), fund, self.funding_rate.tolist())
        return self._py

    def score(self, k: int, signal: Any) -> Score:
        s = self._scores.get(k)
        if s is None:
            assert self.columns is not None and self.frame is not None
            if self._col_lists is None:  # the frame's columns as Python lists, once
                self._col_lists = {c: a.tolist() for c, a in self.columns.items()}
            row = _Row({c: lst[k] for c, lst in self._col_lists.items()})
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
    # indicators over the window needed plus the warm-up, not the whole stored history; never a bar
    # that closes after `end` (the engine is causal anyway; belt and braces)
    lo_t = (times[0] - INDICATOR_WARMUP).floor("D") if len(times) else h1.index[0]
    h1 = h1[(h1.index >= lo_t) & (h1.index + TF_DELTA["1h"] <= end)]
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
    sd.first_decision_ns = int(t_ns[0]) if len(t_ns) else 0
    sd.has_fill = t_ns <= open_ns[-1] if len(open_ns) else np.zeros(len(t_ns), dtype=bool)
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
        # math_engine.finalize + signal_of over all decision times at once (tested equal element-wise)
        sd.pre_final, sd.pre_signal = math_engine.finalize_arrays(tech, tw, t1d, st4, settings.signal)
    else:  # too little history: never a candidate with a score
        sd.pre_final = np.zeros(n)
        sd.pre_signal = np.zeros(n, dtype=np.int8)
    sd.pre_final_r4 = [round(x, 4) for x in sd.pre_final.tolist()]  # the WAIT records' score, as Python floats
    # 24 h quote volume of the bars closed by t with open >= t - 24 h (as ReplaySource.tickers)
    lo_idx = np.searchsorted(open_ns, t_ns - 24 * H1_NS, side="left")
    vol = np.zeros(n)
    for k in range(n):
        a, b = lo_idx[k], sd.n_closed[k]
        if b > a:
            vol[k] = float(sd.qv[a:b].sum())
    sd.vol24 = vol
    # the point-in-time ticker's last close per decision time, None when not tradable at t (no futures
    # bar closed yet, or the history has ended): the engine builds the tickers from these lists
    nc = sd.n_closed
    last_idx = np.maximum(nc - 1, 0)
    tradable = (nc > 0) & (open_ns[last_idx] >= sd.futures_start_ns) & sd.has_fill if len(open_ns) else nc > 0
    sd.ticker_last = [x if ok else None for x, ok in zip(sd.c[last_idx].tolist() if len(open_ns) else [0.0] * n,
                                                         tradable.tolist(), strict=True)]
    sd.vol24_l = vol.tolist()
    fi = np.searchsorted(sd.funding_ns, t_ns, side="right") - 1
    sd.funding_at = np.where(fi >= 0, sd.funding_rate[np.clip(fi, 0, None)] if len(sd.funding_rate) else np.nan,
                             np.nan)
    timings["indicators"] = timings.get("indicators", 0.0) + (time.perf_counter() - t1)
    return sd


def change_4h_pct(sd: SymbolData) -> list[float | None]:
    """Per decision time: the change of the last 4 closed hours in % (close[-1] / close[-5] - 1) * 100, as
    `pipeline.stages.btc_change_4h_pct` computes it from a snapshot (None with fewer than 5 closed bars
    or once the history has ended), the same float operations (tested equal)."""
    assert sd.n_closed is not None and sd.has_fill is not None
    n = sd.n_closed
    ok = (n >= 5) & sd.has_fill
    i1 = np.where(ok, n - 1, 0)
    i5 = np.where(ok, n - 5, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        chg = (sd.c[i1] / sd.c[i5] - 1) * 100
    return [float(x) if o else None for x, o in zip(chg.tolist(), ok.tolist(), strict=True)]


class NoDecisionTime(DataError):
    """No decision time of the requested range lies inside the data (a walk-forward window past the
    end of the history, for example)."""


def decision_times(start: datetime | str, end: datetime | str, interval_minutes: int) -> pd.DatetimeIndex:
    s, e = to_utc(start), to_utc(end)
    if e < s:
        raise DataError(f"end {e.isoformat()} is before start {s.isoformat()}")
    return pd.date_range(s, e, freq=pd.Timedelta(minutes=interval_minutes))


