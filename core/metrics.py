"""Performance metrics: every headline figure of a backtest or an account (:class:`Metrics`,
:func:`compute_metrics`).

Pure functions over an equity curve (``pd.Series`` of account equity indexed by UTC timestamps) and
a list of closed trades (:class:`TradeRecord`, in :mod:`core.trades`); the equity-curve statistics are
in :mod:`core.equity_stats`, `json_safe` in :mod:`core.jsonsafe`. Imports only stdlib, numpy and pandas
(and core types).

Conventions (crypto trades every day, so a year is 365 days of 24 h):

* Returns are fractions (0.05 = +5 %); drawdowns are positive fractions (0.2 = 20 % below the peak).
* Periodic returns are simple returns of the equity curve at its own sampling frequency:
  ``r_t = E_t / E_{t-1} - 1``. The number of periods per year is inferred from the index as
  ``365 days / median(spacing of the index)`` (hourly bars -> 8760, daily -> 365).
* Risk-free rate is 0.
* A trade's ``pnl`` is NET: price PnL minus fees minus funding paid (funding received is negative
  ``funding``).
* Metrics that are undefined (no trades, a flat curve, ...) are ``nan``; ``to_dict()`` turns
  ``nan``/``inf`` into ``None`` so the result is JSON-safe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.equity_stats import (
    _clean_equity,
    _ts,
    exposure,
    max_drawdown,
    periodic_returns,
    periods_per_year,
    sharpe_ratio,
    sortino_ratio,
)
from core.jsonsafe import json_safe  # re-exported: many callers import it from here
from core.trades import TradeRecord, trade_records_from_positions  # re-exported: many callers
from core.types import Position

__all__ = [
    "Metrics",
    "TradeRecord",
    "compute_metrics",
    "json_safe",
    "trade_records_from_positions",
]


# --------------------------------------------------------------------------------------------------
# Metrics


@dataclass(frozen=True)
class Metrics:
    """Every headline figure of a backtest or an account. See :func:`compute_metrics`."""

    start: datetime
    end: datetime
    days: float
    start_equity: float
    end_equity: float
    total_return: float
    annualised_return: float
    periods_per_year: float
    volatility: float  # annualised std of periodic returns
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_peak_at: datetime | None
    max_drawdown_trough_at: datetime | None
    max_drawdown_end_at: datetime | None
    max_drawdown_recovered: bool
    max_drawdown_duration: timedelta | None
    n_trades: int
    wins: int
    losses: int
    win_rate: float  # wins / trades (a draw is not a win)
    gross_profit: float
    gross_loss: float  # positive number
    profit_factor: float
    expectancy: float
    expectancy_r: float
    avg_r: float
    avg_win: float
    avg_loss: float  # negative number
    best_trade: float
    worst_trade: float
    exposure: float
    trades_per_day: float
    fees_paid: float
    funding_paid: float
    net_pnl: float
    draws: int = 0  # scratches: |R| < SCRATCH_R (see trade_outcome)
    win_rate_ex_draws: float = math.nan  # wins / (wins + losses): the win rate without scratches

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (ISO datetimes, durations as ``*_days`` floats, nan/inf -> None)."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, timedelta):
                d[f.name + "_days"] = v.total_seconds() / 86400.0
            elif v is None and f.name == "max_drawdown_duration":
                d[f.name + "_days"] = None
            else:
                d[f.name] = v
        return json_safe(d)


def compute_metrics(
    equity: pd.Series, trades: Sequence[TradeRecord], start: datetime, end: datetime,
    open_positions: Sequence[Position] = (),
) -> Metrics:
    """All metrics over the window ``[start, end]``.

    * ``total_return = E_last / E_first - 1`` of the curve restricted to the window.
    * ``annualised_return`` (CAGR) ``= (1 + total_return) ** (365 d / (end - start)) - 1``
      (the window's actual duration, not the number of bars); ``nan`` for an empty window or when the
      equity went to or below 0; ``inf`` when it overflows (a large gain over a window of hours).
    * ``sharpe``/``sortino``: see :func:`sharpe_ratio` / :func:`sortino_ratio`, with periods per year
      from :func:`periods_per_year`; ``volatility = std(r, ddof=1) * sqrt(periods)``.
    * ``max_drawdown`` and its duration: see :func:`max_drawdown`.
    * ``profit_factor = gross_profit / gross_loss`` over net trade pnls; ``inf`` when there are wins and
      no loss, ``nan`` when there is neither (no trades or all flat).
    * wins, draws and losses as freqtrade reports them, with a draw being a scratch (``|R| < 0.1``,
      see :func:`trade_outcome`); ``win_rate = wins / n_trades`` (a draw is not a win) and
      ``win_rate_ex_draws = wins / (wins + losses)``; ``avg_win``/``avg_loss`` over the wins/losses;
      gross profit/loss and the profit factor over the money (every positive/negative pnl).
    * ``expectancy = mean(pnl)``; ``avg_r = expectancy_r = mean(r_multiple)`` over trades with a known R
      (Van Tharp's expectancy in R: ``win_rate * avg_win_R - loss_rate * avg_loss_R`` is the same number).
    * ``exposure``: see :func:`exposure`; ``trades_per_day = n_trades / window days``.
    * ``fees_paid``/``funding_paid``: sums over trades plus what the ``open_positions`` (still open at
      the end, marked to market in the equity curve) have paid so far; ``net_pnl`` sum of the closed
      trades' net pnls. Trade statistics (wins, profit factor, R) count closed trades only.
    """
    t0, t1 = _ts(start), _ts(end)
    s = _clean_equity(equity)
    if len(s) and isinstance(s.index, pd.DatetimeIndex):
        s = s[(s.index >= t0) & (s.index <= t1)]
    days = (t1 - t0).total_seconds() / 86400.0

    if len(s):
        e0, e1 = float(s.iloc[0]), float(s.iloc[-1])
        total = e1 / e0 - 1.0 if e0 != 0 else math.nan
    else:
        e0 = e1 = total = math.nan
    if days > 0 and math.isfinite(total) and 1.0 + total > 0:
        try:
            cagr = (1.0 + total) ** (365.0 / days) - 1.0
        except OverflowError:  # a big gain over a very short window
            cagr = math.inf
    else:
        cagr = math.nan

    ppy = periods_per_year(s.index) if len(s) else math.nan
    rets = periodic_returns(s).to_numpy() if len(s) > 1 else np.array([])
    vol = float(np.std(rets, ddof=1)) * math.sqrt(ppy) if rets.size >= 2 and math.isfinite(ppy) else math.nan
    dd = max_drawdown(s)
    dd_dur = (dd.end_at - dd.peak_at) if dd.peak_at is not None else None

    pnls = np.array([t.pnl for t in trades], dtype=float)
    rs = np.array([t.r_multiple for t in trades], dtype=float)
    rs = rs[np.isfinite(rs)]
    n = int(pnls.size)
    outcomes = np.array([t.outcome for t in trades], dtype=object)
    wins_mask, loss_mask, draw_mask = outcomes == "win", outcomes == "loss", outcomes == "draw"
    gp = float(pnls[pnls > 0].sum())  # money: every positive / negative pnl, scratches included
    gl = float(-pnls[pnls < 0].sum())
    if gl > 0:
        pf = gp / gl
    elif gp > 0:
        pf = math.inf
    else:
        pf = math.nan

    def _mean(a: np.ndarray) -> float:
        return float(a.mean()) if a.size else math.nan

    avg_r = _mean(rs)
    return Metrics(
        start=t0.to_pydatetime(),
        end=t1.to_pydatetime(),
        days=days,
        start_equity=e0,
        end_equity=e1,
        total_return=total,
        annualised_return=cagr,
        periods_per_year=ppy,
        volatility=vol,
        sharpe=sharpe_ratio(rets, ppy),
        sortino=sortino_ratio(rets, ppy),
        max_drawdown=dd.depth,
        max_drawdown_peak_at=_pydt(dd.peak_at),
        max_drawdown_trough_at=_pydt(dd.trough_at),
        max_drawdown_end_at=_pydt(dd.end_at),
        max_drawdown_recovered=dd.recovered,
        max_drawdown_duration=pd.Timedelta(dd_dur).to_pytimedelta() if dd_dur is not None else None,
        n_trades=n,
        wins=int(wins_mask.sum()),
        losses=int(loss_mask.sum()),
        draws=int(draw_mask.sum()),
        win_rate=float(wins_mask.sum()) / n if n else math.nan,
        win_rate_ex_draws=(float(wins_mask.sum()) / float(wins_mask.sum() + loss_mask.sum())
                           if wins_mask.sum() + loss_mask.sum() else math.nan),
        gross_profit=gp,
        gross_loss=gl,
        profit_factor=pf,
        expectancy=_mean(pnls),
        expectancy_r=avg_r,
        avg_r=avg_r,
        avg_win=_mean(pnls[wins_mask]),
        avg_loss=_mean(pnls[loss_mask]),
        best_trade=float(pnls.max()) if n else math.nan,
        worst_trade=float(pnls.min()) if n else math.nan,
        exposure=exposure(trades, start, end, [p.opened_at for p in open_positions]),
        trades_per_day=n / days if days > 0 else math.nan,
        fees_paid=float(sum(t.fees for t in trades)) + float(sum(p.fees_paid for p in open_positions)),
        funding_paid=float(sum(t.funding for t in trades)) + float(sum(p.funding_paid for p in open_positions)),
        net_pnl=float(pnls.sum()),
    )


def _pydt(x: Any) -> datetime | None:
    if x is None:
        return None
    if isinstance(x, pd.Timestamp):
        return x.to_pydatetime()
    return x
