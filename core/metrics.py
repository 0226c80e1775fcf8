"""Performance metrics, Monte Carlo of the trade sequence, and buy-and-hold comparison.

Pure functions over an equity curve (``pd.Series`` of account equity indexed by UTC timestamps) and
a list of closed trades (:class:`TradeRecord`). Imports only stdlib, numpy and pandas (and core types).

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.types import Position, Side

YEAR = timedelta(days=365)
SECONDS_PER_YEAR = YEAR.total_seconds()

__all__ = [
    "Metrics",
    "TradeRecord",
    "compute_metrics",
    "drawdown_series",
    "exposure",
    "json_safe",
    "max_drawdown",
    "periodic_returns",
    "periods_per_year",
    "sharpe_ratio",
    "sortino_ratio",
    "trade_outcome",
    "trade_records_from_positions",
]


# --------------------------------------------------------------------------------------------------
# Trades


@dataclass(frozen=True)
class TradeRecord:
    """One closed trade (a whole position, all its partial exits folded together).

    ``entry``/``exit`` are average prices; ``qty`` the initial quantity (base units); ``pnl`` is net
    of ``fees`` and ``funding`` (``funding`` > 0 means paid); ``r_multiple`` = ``pnl`` / initial risk
    (``|entry - initial_stop| * qty``), ``nan`` when the risk is unknown or zero.
    """

    symbol: str
    side: Side
    opened_at: datetime
    closed_at: datetime
    entry: float
    exit: float
    qty: float
    pnl: float
    fees: float = 0.0
    funding: float = 0.0
    r_multiple: float = math.nan
    reason: str = ""
    position_id: str = ""

    @property
    def outcome(self) -> str:
        """``win`` | ``draw`` | ``loss``: see :func:`trade_outcome`."""
        return trade_outcome(self.pnl, self.r_multiple)

    @property
    def gross_pnl(self) -> float:
        """Price PnL before fees and funding."""
        return self.pnl + self.fees + self.funding

    @property
    def duration(self) -> timedelta:
        return self.closed_at - self.opened_at

    def to_dict(self) -> dict[str, Any]:
        """The one trade row of every view (``quorum trades --json``, ``quorum export``, the report)."""
        return json_safe(
            {
                "position_id": self.position_id,
                "symbol": self.symbol,
                "side": str(self.side.value if isinstance(self.side, Side) else self.side),
                "opened_at": self.opened_at,
                "closed_at": self.closed_at,
                "entry": self.entry,
                "exit": self.exit,
                "qty": self.qty,
                "pnl": self.pnl,
                "fees": self.fees,
                "funding": self.funding,
                "r_multiple": self.r_multiple,
                "reason": self.reason,
                "outcome": self.outcome,
            }
        )


# A trade within +-SCRATCH_R of its initial risk is a draw (a scratch): freqtrade counts a draw at a
# profit of exactly 0, but with fees and funding a breakeven exit is never exactly 0, and counting
# those scratches as wins inflated the win rate.
SCRATCH_R = 0.1


def trade_outcome(pnl: float, r_multiple: float = math.nan) -> str:
    """``draw`` when ``|r_multiple| < SCRATCH_R`` (or, with no known risk, when the net pnl is 0),
    else ``win`` (net pnl > 0) or ``loss``."""
    if math.isfinite(r_multiple):
        if abs(r_multiple) < SCRATCH_R:
            return "draw"
    elif pnl == 0:
        return "draw"
    return "win" if pnl > 0 else "loss"


def trade_records_from_positions(
    positions: Iterable[Position], *, realised_is_net: bool = False
) -> list[TradeRecord]:
    """Fold closed :class:`core.types.Position` objects into :class:`TradeRecord` s.

    Open positions (``closed_at is None``) are skipped. Output is sorted by (closed_at, opened_at,
    symbol, id) so it is deterministic.

    Convention: by default ``Position.realised_pnl`` is the PRICE PnL summed over all partial exits
    (gross of fees and funding, which the position tracks separately in ``fees_paid`` and
    ``funding_paid``). Pass ``realised_is_net=True`` if the producer already subtracted them.

    * net ``pnl`` = gross - fees_paid - funding_paid
    * average ``exit`` = ``extra["exit_avg"]`` (or ``extra["exit_price"]``) when the producer stored
      it, else derived from the gross PnL: ``entry + gross / (sign * qty_initial)``
    * ``r_multiple`` = net pnl / (|entry - initial_stop| * qty_initial); ``nan`` when that risk is 0.
    """
    out: list[tuple[tuple[Any, ...], TradeRecord]] = []
    for p in positions:
        if p.closed_at is None:
            continue
        qty = float(p.qty_initial)
        fees = float(p.fees_paid)
        funding = float(p.funding_paid)
        realised = float(p.realised_pnl)
        if realised_is_net:
            net = realised
            gross = realised + fees + funding
        else:
            gross = realised
            net = realised - fees - funding
        side = Side(p.side)
        exit_px = p.extra.get("exit_avg", p.extra.get("exit_price")) if p.extra else None
        if exit_px is None:
            exit_px = p.entry + gross / (side.sign * qty) if qty else p.entry
        risk = abs(p.entry - p.initial_stop) * qty
        r_mult = net / risk if risk > 0 else math.nan
        rec = TradeRecord(
            symbol=p.symbol,
            side=side,
            opened_at=p.opened_at,
            closed_at=p.closed_at,
            entry=float(p.entry),
            exit=float(exit_px),
            qty=qty,
            pnl=net,
            fees=fees,
            funding=funding,
            r_multiple=r_mult,
            reason=p.exit_reason or "",
            position_id=p.id,
        )
        out.append(((p.closed_at, p.opened_at, p.symbol, p.id), rec))
    out.sort(key=lambda kv: kv[0])
    return [rec for _, rec in out]


# --------------------------------------------------------------------------------------------------
# Equity-curve statistics


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


# --------------------------------------------------------------------------------------------------
# JSON


def json_safe(obj: Any) -> Any:
    """Recursively convert to JSON-safe values: nan/inf -> None, datetimes -> ISO 8601, numpy scalars
    -> Python, enums -> their value, Decimal -> float, tuples/sets -> lists, timedeltas -> seconds."""
    from decimal import Decimal
    from enum import Enum

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if obj is pd.NaT:
        return None
    if isinstance(obj, Enum):
        return json_safe(obj.value)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating, Decimal)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, pd.Timestamp):
        return None if pd.isna(obj) else obj.isoformat()
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (timedelta, pd.Timedelta)):
        return pd.Timedelta(obj).total_seconds()
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [json_safe(v) for v in items]
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)
