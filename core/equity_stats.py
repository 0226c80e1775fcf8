"""Statistics of an equity curve (``pd.Series`` of account equity indexed by UTC timestamps): periods
per year, periodic returns, Sharpe and Sortino ratios, drawdowns, and the time in the market of a list
of trades. Conventions as in :mod:`core.metrics`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.trades import TradeRecord

YEAR = timedelta(days=365)
SECONDS_PER_YEAR = YEAR.total_seconds()


def _ts(x: datetime | pd.Timestamp) -> pd.Timestamp:
    t = pd.Timestamp(x)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _clean_equity(equity: pd.Series) -> pd.Series:
    s = pd.Series(equity, dtype=float).dropna()
    if len(s) and isinstance(s.index, pd.DatetimeIndex):
        idx = s.index if s.index.tz is not None else s.index.tz_localize("UTC")
        s.index = idx.tz_convert("UTC")
    return s.sort_index()


def periods_per_year(index: pd.Index) -> float:
    """``365 days / median spacing`` of a DatetimeIndex; ``nan`` with fewer than 2 points."""
    if len(index) < 2:
        return math.nan
    deltas = np.diff(pd.DatetimeIndex(index).as_unit("ns").asi8)  # nanoseconds (pandas 3 may store us)
    med = float(np.median(deltas))
    if med <= 0:
        return math.nan
    return SECONDS_PER_YEAR * 1e9 / med


def periodic_returns(equity: pd.Series) -> pd.Series:
    """Simple returns ``E_t / E_{t-1} - 1`` at the curve's own frequency (first point dropped)."""
    s = _clean_equity(equity)
    return (s / s.shift(1) - 1.0).iloc[1:]


def sharpe_ratio(returns: Sequence[float] | pd.Series, periods: float) -> float:
    """Annualised Sharpe ratio, risk-free 0.

    ``Sharpe = mean(r) / std(r, ddof=1) * sqrt(periods)``. ``nan`` with < 2 returns or zero std.
    """
    r = np.asarray(returns, dtype=float)
    if r.size < 2 or not math.isfinite(periods):
        return math.nan
    sd = float(np.std(r, ddof=1))
    if sd == 0.0:
        return math.nan
    return float(np.mean(r)) / sd * math.sqrt(periods)


def sortino_ratio(returns: Sequence[float] | pd.Series, periods: float) -> float:
    """Annualised Sortino ratio, target (and risk-free) 0.

    ``downside_dev = sqrt(mean(min(r, 0)^2))`` over ALL periods (zeros count for the non-negative ones),
    ``Sortino = mean(r) / downside_dev * sqrt(periods)``. ``inf`` when there is no negative return and
    the mean is positive; ``nan`` with < 2 returns or no movement at all.
    """
    r = np.asarray(returns, dtype=float)
    if r.size < 2 or not math.isfinite(periods):
        return math.nan
    dd = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    mean = float(np.mean(r))
    if dd == 0.0:
        return math.inf if mean > 0 else math.nan
    return mean / dd * math.sqrt(periods)


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Drawdown at each point as a positive fraction below the running peak: ``1 - E_t / max(E_..t)``."""
    s = _clean_equity(equity)
    return 1.0 - s / s.cummax()


@dataclass(frozen=True)
class _DD:
    depth: float
    peak_at: Any
    trough_at: Any
    end_at: Any  # recovery time or last index when not recovered
    recovered: bool


def max_drawdown(equity: pd.Series) -> _DD:
    """Deepest peak-to-trough fall. Duration runs from that peak to the first later point back at or
    above the peak (recovery) or to the end of the curve if it never recovered."""
    s = _clean_equity(equity)
    if len(s) == 0:
        return _DD(math.nan, None, None, None, False)
    peak = s.cummax()
    dd = 1.0 - s / peak
    depth = float(dd.max())
    if depth <= 0.0:
        return _DD(0.0, s.index[0], s.index[0], s.index[0], True)
    trough_pos = int(np.argmax(dd.to_numpy()))
    peak_val = float(peak.iloc[trough_pos])
    head = s.iloc[: trough_pos + 1].to_numpy()
    peak_pos = int(np.flatnonzero(head >= peak_val)[0])
    after = np.flatnonzero(s.iloc[trough_pos:].to_numpy() >= peak_val)
    if after.size:
        end_pos, recovered = trough_pos + int(after[0]), True
    else:
        end_pos, recovered = len(s) - 1, False
    return _DD(depth, s.index[peak_pos], s.index[trough_pos], s.index[end_pos], recovered)


def exposure(trades: Iterable[TradeRecord], start: datetime, end: datetime,
             still_open: Iterable[datetime] = ()) -> float:
    """Share of ``[start, end]`` during which at least one position was open.

    The union of the trades' ``[opened_at, closed_at]`` intervals (and ``[opened_at, end]`` for the
    positions ``still_open`` at the end, given by their opening times), clipped to the window, divided
    by the window length (overlapping positions count once).
    """
    t0, t1 = _ts(start), _ts(end)
    total = (t1 - t0).total_seconds()
    if total <= 0:
        return math.nan
    ivs = sorted([(max(_ts(t.opened_at), t0), min(_ts(t.closed_at), t1)) for t in trades]
                 + [(max(_ts(o), t0), t1) for o in still_open])
    covered = 0.0
    cur_s = cur_e = None
    for s, e in ivs:
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                covered += (cur_e - cur_s).total_seconds()
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        covered += (cur_e - cur_s).total_seconds()
    return covered / total
