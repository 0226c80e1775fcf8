"""What a result is compared with: a Monte Carlo of its trade sequence (bootstrap and shuffle) and
buy-and-hold of the same markets over the same span."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.equity_stats import _clean_equity, _ts, periods_per_year
from core.jsonsafe import json_safe

# --------------------------------------------------------------------------------------------------
# Monte Carlo


@dataclass(frozen=True)
class MonteCarloResult:
    """Distribution of max drawdown and final equity over resampled trade sequences.

    ``max_drawdowns`` holds every run's max drawdown (positive fraction, run order) for histograms.
    ``risk_of_ruin`` = share of runs whose equity ever fell below ``ruin_threshold * starting_equity``.
    """

    method: str
    runs: int
    seed: int | None
    n_trades: int
    starting_equity: float
    ruin_threshold: float
    max_dd_p5: float
    max_dd_p50: float
    max_dd_p95: float
    max_dd_mean: float
    risk_of_ruin: float
    final_equity_p5: float
    final_equity_p50: float
    final_equity_p95: float
    final_equity_mean: float
    max_drawdowns: tuple[float, ...] = ()

    def to_dict(self, *, include_runs: bool = False) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "max_drawdowns"}
        if include_runs:
            d["max_drawdowns"] = list(self.max_drawdowns)
        return json_safe(d)


def monte_carlo(
    trade_pnls: Sequence[float],
    starting_equity: float,
    runs: int = 1000,
    seed: int | None = 0,
    ruin_threshold: float = 0.5,
    method: Literal["bootstrap", "shuffle"] = "bootstrap",
) -> MonteCarloResult:
    """Resample the sequence of net trade pnls (currency) and replay it from ``starting_equity``.

    * ``method="bootstrap"``: each run draws ``len(trade_pnls)`` pnls WITH replacement (final equity
      varies);
    * ``method="shuffle"``: each run is a random permutation (final equity is the same in every run,
      only the path, hence the drawdown, changes).

    Equity path of a run = ``starting_equity + cumsum(pnls)`` (additive: pnls are currency amounts as
    traded). Max drawdown of a run = ``max_t 1 - E_t / max(E_0..t)``, the starting equity counting as
    the first peak. Reproducible: ``numpy.random.default_rng(seed)``; the same seed gives identical
    results.
    """
    if method not in ("bootstrap", "shuffle"):
        raise ValueError(f"unknown Monte Carlo method {method!r}")
    if runs < 1:
        raise ValueError("runs must be >= 1")
    pnl = np.asarray(list(trade_pnls), dtype=float)
    n = int(pnl.size)
    start = float(starting_equity)
    if n == 0:
        return MonteCarloResult(
            method,
            runs,
            seed,
            0,
            start,
            ruin_threshold,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            start,
            start,
            start,
            start,
            tuple([0.0] * runs),
        )
    rng = np.random.default_rng(seed)
    max_dd = np.empty(runs)
    ruined = np.empty(runs, dtype=bool)
    finals = np.empty(runs)
    chunk = max(1, 2_000_000 // (n + 1))  # bound memory: ~16 MB per array per chunk
    for lo in range(0, runs, chunk):
        k = min(chunk, runs - lo)
        if method == "bootstrap":
            sample = pnl[rng.integers(0, n, size=(k, n))]
        else:
            sample = np.stack([pnl[rng.permutation(n)] for _ in range(k)])
        paths = np.empty((k, n + 1))
        paths[:, 0] = start
        paths[:, 1:] = start + np.cumsum(sample, axis=1)
        peaks = np.maximum.accumulate(paths, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = np.where(peaks > 0, 1.0 - paths / peaks, 1.0)
        max_dd[lo : lo + k] = dd.max(axis=1)
        ruined[lo : lo + k] = (paths < ruin_threshold * start).any(axis=1)
        finals[lo : lo + k] = paths[:, -1]
    p = np.percentile
    return MonteCarloResult(
        method=method,
        runs=runs,
        seed=seed,
        n_trades=n,
        starting_equity=start,
        ruin_threshold=ruin_threshold,
        max_dd_p5=float(p(max_dd, 5)),
        max_dd_p50=float(p(max_dd, 50)),
        max_dd_p95=float(p(max_dd, 95)),
        max_dd_mean=float(max_dd.mean()),
        risk_of_ruin=float(ruined.mean()),
        final_equity_p5=float(p(finals, 5)),
        final_equity_p50=float(p(finals, 50)),
        final_equity_p95=float(p(finals, 95)),
        final_equity_mean=float(finals.mean()),
        max_drawdowns=tuple(float(x) for x in max_dd),
    )


# --------------------------------------------------------------------------------------------------
# Buy and hold


def buy_and_hold(close: pd.Series, start: datetime, end: datetime) -> float:
    """Return of holding the asset over ``[start, end]``: ``last_close / first_close - 1`` where the
    first close is the first bar at or after ``start`` and the last close the last bar at or before
    ``end`` (no fees, no leverage). ``nan`` when no bar lies in the window. The index is taken as the
    time each close is known; for a candle frame indexed by bar OPEN time, shift it by the bar length
    (``close.index + pd.Timedelta("1h")``) to compare like for like with a point-in-time backtest."""
    s = _clean_equity(close)
    if isinstance(s.index, pd.DatetimeIndex):
        s = s[(s.index >= _ts(start)) & (s.index <= _ts(end))]
    if len(s) == 0 or float(s.iloc[0]) == 0:
        return math.nan
    return float(s.iloc[-1]) / float(s.iloc[0]) - 1.0




# --------------------------------------------------------------------------------------------------
# tracking error (target-allocation strategies)


def tracking_error_vs_target(weights: pd.DataFrame, targets: Mapping[str, float]) -> dict[str, float]:
    """How far a portfolio's weights (one row per time, one column per asset) stayed from `targets`:
    ``rms`` = sqrt(mean over time and assets of (w - target)^2), ``max_drift`` = the largest absolute
    deviation seen, ``mean_drift`` = the mean over time of the largest deviation (all in weight
    fractions: 0.05 = 5 points)."""
    if weights is None or len(weights) == 0:
        return {"rms": math.nan, "max_drift": math.nan, "mean_drift": math.nan}
    cols = sorted(set(weights.columns) | set(targets))
    w = weights.reindex(columns=cols).fillna(0.0).to_numpy(dtype=float)
    t = np.array([float(targets.get(c, 0.0)) for c in cols])
    dev = w - t
    return {"rms": float(np.sqrt(np.mean(dev**2))), "max_drift": float(np.max(np.abs(dev))),
            "mean_drift": float(np.mean(np.max(np.abs(dev), axis=1)))}


def tracking_error_vs_benchmark(equity: pd.Series, benchmark: pd.Series) -> float:
    """Annualised tracking error: std (ddof=1) of the per-period return differences of `equity`
    and `benchmark` (aligned on their common index) x sqrt(periods per year); 0 for identical curves."""
    e, b = _clean_equity(equity), _clean_equity(benchmark)
    idx = e.index.intersection(b.index)
    if len(idx) < 3:
        return math.nan
    diff = (e.loc[idx].pct_change() - b.loc[idx].pct_change()).dropna()
    if len(diff) < 2:
        return math.nan
    return float(diff.std(ddof=1) * math.sqrt(periods_per_year(idx)))
