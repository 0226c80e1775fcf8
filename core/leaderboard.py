"""Model leaderboard statistics (pure).

Each panel member (and the consensus) runs a shadow paper account on the same snapshots. The backtest
engine (or the live cycle) feeds, per member, a :class:`MemberResult`: its equity curve, its closed
trades (:class:`core.metrics.TradeRecord`) and one :class:`VoteOutcome` per vote it was asked for,
already joined with the realised forward returns of the symbol. :func:`leaderboard` turns those into
ranked :class:`LeaderboardRow` s, each with a bootstrap confidence interval on the difference of mean
per-period return between the member and the consensus (:func:`bootstrap_diff_ci`).

Definitions:

* **hit rate** (4 h / 24 h): among DIRECTIONAL votes (LONG/SHORT) whose forward return at that horizon
  is known, the share where ``sign(forward return) == side`` (a forward return of exactly 0 is a miss).
  WAIT votes and abstentions are excluded.
* **Brier score**: over the same directional votes, ``mean((confidence - hit) ** 2)`` with ``hit`` in
  {0, 1}: the confidence is read as the probability that the direction is right. 0 is perfect; always
  saying 0.5 scores 0.25. Computed at both horizons; ``brier`` is the 24 h one.
* **abstention rate**: abstained votes / all votes asked (an abstention has ``action=None``).
* **median latency**: median of ``latency_s`` over all votes with a known latency (abstentions by
  timeout included: they cost the time too).
* **cost per decision**: total ``cost_usd`` / number of votes asked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.equity_stats import periodic_returns
from core.metrics import TradeRecord, compute_metrics, json_safe
from core.types import Action, Vote

__all__ = [
    "CONSENSUS_ID",
    "DiffCI",
    "HitStats",
    "LeaderboardRow",
    "MemberResult",
    "VoteOutcome",
    "bootstrap_diff_ci",
    "brier_score",
    "forward_return",
    "hit_stats",
    "leaderboard",
    "member_row",
    "vote_stats",
]

CONSENSUS_ID = "consensus"


@dataclass(frozen=True)
class VoteOutcome:
    """One vote of a member on one snapshot, joined with what the market did next.

    ``action`` is ``None`` for an abstention. ``fwd_return_4h``/``fwd_return_24h`` are the symbol's
    simple returns from the decision time to +4 h / +24 h (``None`` when not yet known / beyond data).
    """

    action: Action | None
    confidence: float
    fwd_return_4h: float | None = None
    fwd_return_24h: float | None = None
    latency_s: float | None = None
    cost_usd: float = 0.0
    symbol: str = ""
    as_of: datetime | None = None

    @classmethod
    def from_vote(
        cls, vote: Vote, as_of: datetime | None, fwd_return_4h: float | None, fwd_return_24h: float | None
    ) -> VoteOutcome:
        """From a stored :class:`core.types.Vote` (an invalid vote counts as an abstention)."""
        return cls(
            action=vote.action if vote.valid else None,
            confidence=float(vote.confidence),
            fwd_return_4h=fwd_return_4h,
            fwd_return_24h=fwd_return_24h,
            latency_s=float(vote.latency_s),
            cost_usd=float(vote.cost_usd),
            symbol=vote.symbol,
            as_of=as_of,
        )


@dataclass(frozen=True)
class MemberResult:
    """Everything the leaderboard needs about one member (or the consensus) over one window."""

    member_id: str
    equity: pd.Series
    trades: Sequence[TradeRecord] = ()
    votes: Sequence[VoteOutcome] = ()


@dataclass(frozen=True)
class HitStats:
    n: int  # directional votes with a known forward return
    hits: int
    hit_rate: float
    brier: float


@dataclass(frozen=True)
class DiffCI:
    """Bootstrap CI of ``mean(member) - mean(consensus)``; ``significant`` when 0 is outside it."""

    mean_diff: float
    low: float
    high: float
    alpha: float
    runs: int
    paired: bool
    n_member: int
    n_consensus: int

    @property
    def significant(self) -> bool:
        return math.isfinite(self.low) and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["significant"] = self.significant
        return json_safe(d)


@dataclass(frozen=True)
class LeaderboardRow:
    member_id: str
    rank: int
    total_return: float
    sharpe: float
    max_drawdown: float
    win_rate: float
    n_trades: int
    n_votes: int
    hit_rate_4h: float
    hit_rate_24h: float
    brier_4h: float
    brier_24h: float
    abstention_rate: float
    wait_rate: float
    median_latency_s: float
    cost_per_decision: float
    total_cost_usd: float
    diff_vs_consensus: DiffCI | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def brier(self) -> float:
        return self.brier_24h

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("diff_vs_consensus", "extra"):
                continue
            d[f.name] = getattr(self, f.name)
        ci = self.diff_vs_consensus
        d["diff_vs_consensus_mean"] = ci.mean_diff if ci else None
        d["diff_vs_consensus_low"] = ci.low if ci else None
        d["diff_vs_consensus_high"] = ci.high if ci else None
        d["diff_vs_consensus_significant"] = ci.significant if ci else None
        d.update({k: self.extra[k] for k in sorted(self.extra)})
        return json_safe(d)


def _is_directional(a: Action | str | None) -> bool:
    return a is not None and str(getattr(a, "value", a)) in ("LONG", "SHORT")


def _sign(a: Action | str) -> int:
    return 1 if str(getattr(a, "value", a)) == "LONG" else -1


def forward_return(close: pd.Series, as_of: datetime, horizon: timedelta) -> float | None:
    """Simple return from ``as_of`` to ``as_of + horizon`` on a close series indexed by bar CLOSE
    time (or any "known at" time): ``P(as_of + horizon) / P(as_of) - 1`` where ``P(t)`` is the last
    value at or before ``t``. ``None`` when ``as_of + horizon`` is after the last point (not known yet)
    or no price is known at ``as_of``. For a frame indexed by bar OPEN time, shift the index by the
    bar length first.
    """
    s = pd.Series(close, dtype=float).dropna().sort_index()
    if len(s) == 0:
        return None
    t0, t1 = pd.Timestamp(as_of), pd.Timestamp(as_of) + pd.Timedelta(horizon)
    if s.index.tz is not None:
        t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0
        t1 = t1.tz_localize("UTC") if t1.tzinfo is None else t1
    if t1 > s.index[-1] or t0 < s.index[0]:
        return None
    p0, p1 = float(s.asof(t0)), float(s.asof(t1))
    if not (math.isfinite(p0) and math.isfinite(p1)) or p0 == 0:
        return None
    return p1 / p0 - 1.0


def brier_score(probs: Sequence[float], outcomes: Sequence[int | bool]) -> float:
    """``mean((p - o) ** 2)``; ``nan`` for no samples."""
    p = np.asarray(probs, dtype=float)
    o = np.asarray(outcomes, dtype=float)
    if p.size == 0:
        return math.nan
    if p.shape != o.shape:
        raise ValueError("probs and outcomes differ in length")
    return float(np.mean((p - o) ** 2))


def hit_stats(votes: Sequence[VoteOutcome], horizon: str = "24h") -> HitStats:
    """Hit rate and Brier score of directional votes at ``horizon`` ("4h" or "24h")."""
    if horizon not in ("4h", "24h"):
        raise ValueError("horizon must be '4h' or '24h'")
    probs: list[float] = []
    hits: list[int] = []
    for v in votes:
        if not _is_directional(v.action):
            continue
        fwd = v.fwd_return_4h if horizon == "4h" else v.fwd_return_24h
        if fwd is None or not math.isfinite(fwd):
            continue
        hit = int(_sign(v.action) * fwd > 0)
        probs.append(min(max(float(v.confidence), 0.0), 1.0))
        hits.append(hit)
    n = len(hits)
    return HitStats(
        n=n,
        hits=int(sum(hits)),
        hit_rate=sum(hits) / n if n else math.nan,
        brier=brier_score(probs, hits),
    )


def vote_stats(votes: Sequence[VoteOutcome]) -> dict[str, float]:
    """Abstention rate, WAIT rate, median latency, total cost and cost per decision."""
    n = len(votes)
    abst = sum(1 for v in votes if v.action is None)
    waits = sum(
        1 for v in votes if v.action is not None and str(getattr(v.action, "value", v.action)) == "WAIT"
    )
    lat = [float(v.latency_s) for v in votes if v.latency_s is not None and math.isfinite(v.latency_s)]
    cost = float(sum(v.cost_usd for v in votes))
    return {
        "n_votes": n,
        "abstention_rate": abst / n if n else math.nan,
        "wait_rate": waits / n if n else math.nan,
        "median_latency_s": float(np.median(lat)) if lat else math.nan,
        "total_cost_usd": cost,
        "cost_per_decision": cost / n if n else math.nan,
    }


def day_block(index: pd.Index) -> int:
    """Periods per day of a time index (24 for hourly), at most a quarter of its length; 1 otherwise."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 8:
        return 1
    step = float(np.median(np.diff(index.as_unit("ns").asi8))) / 1e9
    if step <= 0:
        return 1
    return int(max(1, min(round(86400 / step), len(index) // 4)))


def bootstrap_diff_ci(
    member_returns: Sequence[float],
    consensus_returns: Sequence[float],
    runs: int = 2000,
    seed: int | None = 0,
    alpha: float = 0.05,
    paired: bool | None = None,
    block: int = 1,
) -> DiffCI:
    """Percentile bootstrap CI on ``mean(member_returns) - mean(consensus_returns)``.

    Returns may be per period (aligned equity-curve returns) or per trade. ``paired`` (default: when
    both have the same length, i.e. aligned periods on the same snapshots) resamples the index pairs
    jointly, i.e. the per-period differences; unpaired resamples each sample independently. The CI is
    ``[q(alpha/2), q(1 - alpha/2)]`` of the resampled differences; numpy ``default_rng(seed)``.
    ``block`` > 1 (paired only) is a moving-block bootstrap: runs of ``block`` consecutive periods are
    drawn together, which keeps the autocorrelation of returns from positions held over many periods
    (an i.i.d. resample of hourly returns gives a CI that is too narrow).
    """
    m = np.asarray(member_returns, dtype=float)
    c = np.asarray(consensus_returns, dtype=float)
    if paired is None:
        paired = m.size == c.size
    if paired:
        if m.size != c.size:
            raise ValueError("paired bootstrap needs equal lengths")
        ok = np.isfinite(m) & np.isfinite(c)
        m, c = m[ok], c[ok]
    else:
        m, c = m[np.isfinite(m)], c[np.isfinite(c)]
    if m.size == 0 or c.size == 0:
        return DiffCI(math.nan, math.nan, math.nan, alpha, runs, bool(paired), int(m.size), int(c.size))
    rng = np.random.default_rng(seed)
    if paired:
        d = m - c
        b = max(1, min(int(block), d.size))
        n_blocks = -(-d.size // b)
        starts = rng.integers(0, d.size - b + 1, size=(runs, n_blocks))
        idx = (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(runs, -1)[:, : d.size]
        diffs = d[idx].mean(axis=1)
    else:
        diffs = m[rng.integers(0, m.size, size=(runs, m.size))].mean(axis=1) - c[
            rng.integers(0, c.size, size=(runs, c.size))
        ].mean(axis=1)
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return DiffCI(
        mean_diff=float(m.mean() - c.mean()),
        low=float(low),
        high=float(high),
        alpha=alpha,
        runs=runs,
        paired=bool(paired),
        n_member=int(m.size),
        n_consensus=int(c.size),
    )


def member_row(
    result: MemberResult,
    start: datetime,
    end: datetime,
    *,
    consensus: MemberResult | None = None,
    runs: int = 2000,
    seed: int | None = 0,
    alpha: float = 0.05,
) -> LeaderboardRow:
    """One unranked row (rank 0). With ``consensus`` given (and a different member), adds the bootstrap
    CI of the per-period return difference, on the two equity curves aligned on their common
    timestamps (paired, resampled in blocks of one day of periods)."""
    met = compute_metrics(result.equity, result.trades, start, end)
    h4, h24 = hit_stats(result.votes, "4h"), hit_stats(result.votes, "24h")
    vs = vote_stats(result.votes)
    ci = None
    if consensus is not None and consensus.member_id != result.member_id:
        mr, cr = periodic_returns(result.equity), periodic_returns(consensus.equity)
        common = mr.index.intersection(cr.index)
        ci = bootstrap_diff_ci(mr.loc[common].to_numpy(), cr.loc[common].to_numpy(), runs, seed, alpha, True,
                               block=day_block(common))
    return LeaderboardRow(
        member_id=result.member_id,
        rank=0,
        total_return=met.total_return,
        sharpe=met.sharpe,
        max_drawdown=met.max_drawdown,
        win_rate=met.win_rate,
        n_trades=met.n_trades,
        n_votes=int(vs["n_votes"]),
        hit_rate_4h=h4.hit_rate,
        hit_rate_24h=h24.hit_rate,
        brier_4h=h4.brier,
        brier_24h=h24.brier,
        abstention_rate=vs["abstention_rate"],
        wait_rate=vs["wait_rate"],
        median_latency_s=vs["median_latency_s"],
        cost_per_decision=vs["cost_per_decision"],
        total_cost_usd=vs["total_cost_usd"],
        diff_vs_consensus=ci,
    )


_HIGHER_BETTER = {"total_return", "sharpe", "win_rate", "hit_rate_4h", "hit_rate_24h"}
_LOWER_BETTER = {
    "max_drawdown",
    "brier_4h",
    "brier_24h",
    "abstention_rate",
    "median_latency_s",
    "cost_per_decision",
}


def leaderboard(
    results: Sequence[MemberResult],
    start: datetime,
    end: datetime,
    *,
    consensus_id: str = CONSENSUS_ID,
    sort_by: str = "total_return",
    runs: int = 2000,
    seed: int | None = 0,
    alpha: float = 0.05,
) -> list[LeaderboardRow]:
    """Rows for every member and the consensus, ranked by ``sort_by`` (best first; nan last; ties
    broken by member id so the order is deterministic). Direction of "best" per field: higher is
    better for returns/Sharpe/win and hit rates; lower for drawdown, Brier, abstention, latency, cost.
    """
    if sort_by not in _HIGHER_BETTER | _LOWER_BETTER:
        raise ValueError(f"cannot rank by {sort_by!r}")
    cons = next((r for r in results if r.member_id == consensus_id), None)
    rows = [member_row(r, start, end, consensus=cons, runs=runs, seed=seed, alpha=alpha) for r in results]
    sign = -1.0 if sort_by in _HIGHER_BETTER else 1.0

    def key(row: LeaderboardRow) -> tuple[int, float, str]:
        v = getattr(row, sort_by)
        ok = v is not None and math.isfinite(v)
        return (0 if ok else 1, sign * v if ok else 0.0, row.member_id)

    ranked = sorted(rows, key=key)
    return [_with_rank(r, i + 1) for i, r in enumerate(ranked)]


def _with_rank(row: LeaderboardRow, rank: int) -> LeaderboardRow:
    return replace(row, rank=rank)
