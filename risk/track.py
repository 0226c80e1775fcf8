"""The track record Kelly sizing reads, and its way back from a bad start.

A Kelly profile that judged itself only on ALL its closed trades would lock itself out for good: once
its first trades give a non-positive Kelly fraction every entry is denied "no edge", no trade ever
closes again and the record can never change. Three rules give it a way back (all profile fields):

- a rolling window: only the last `kelly_window_trades` trades closed within `kelly_window_days`
  before the decision count; old trades age out, so a run of denials cannot last longer than the
  window: when too few trades are left in it, the profile is back below its minimum sample;
- a minimum sample (`kelly_min_trades`): below it, the profile risks its small fallback
  (`kelly_fallback_risk_pct`) and so keeps collecting fresh evidence;
- a prior (`kelly_prior_trades` pseudo-trades at `kelly_prior_win_rate` and
  `kelly_prior_win_loss`): the measured win rate and win/loss ratio are shrunk towards it, so a few
  unlucky trades just past the minimum sample do not read as "no edge".

Pure: the caller passes the closed positions and the decision time (the live cycle and the backtest
both call `track_record`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.types import Position
from risk.profiles import RiskProfile


@dataclass(frozen=True)
class TrackRecord:
    """Closed-trade statistics used by Kelly sizing: win rate in [0, 1], avg win / avg loss."""

    win_rate: float
    win_loss_ratio: float
    n_trades: int


def _utc(ts: datetime) -> datetime:
    tz = ts.tzinfo
    if tz is UTC:  # the common case (the backtest's and the store's times): no conversion
        return ts
    return ts.replace(tzinfo=UTC) if tz is None else ts.astimezone(UTC)


def net_pnl(p: Position) -> float:
    return p.realised_pnl - p.fees_paid - p.funding_paid


def track_record(closed: Iterable[Position], now: datetime | None, profile: RiskProfile) -> TrackRecord | None:
    """Win rate and win/loss ratio (net of fees and funding) of the closed positions in the profile's
    rolling window before `now` (None: no time limit, the last `kelly_window_trades` only)."""
    done = [p for p in closed if p.closed_at is not None]
    if now is not None:
        t = _utc(now)
        lo = t - timedelta(days=profile.kelly_window_days) if profile.kelly_window_days else None
        done = [p for p in done if _utc(p.closed_at) <= t and (lo is None or _utc(p.closed_at) > lo)]
    done.sort(key=lambda p: (_utc(p.closed_at), p.id))
    if profile.kelly_window_trades:
        done = done[-profile.kelly_window_trades:]
    if not done:
        return None
    pnl = [net_pnl(p) for p in done]
    wins = [x for x in pnl if x > 0]
    losses = [-x for x in pnl if x <= 0]
    wl = (sum(wins) / len(wins)) / (sum(losses) / len(losses)) if wins and losses and sum(losses) > 0 else 1.0
    return TrackRecord(len(wins) / len(pnl), wl, len(pnl))


def with_prior(track: TrackRecord, profile: RiskProfile) -> TrackRecord:
    """The measured record shrunk towards the profile's prior (`kelly_prior_trades` pseudo-trades)."""
    k = profile.kelly_prior_trades
    if k <= 0:
        return track
    n = track.n_trades
    w = (track.win_rate * n + profile.kelly_prior_win_rate * k) / (n + k)
    r = (track.win_loss_ratio * n + profile.kelly_prior_win_loss * k) / (n + k)
    return TrackRecord(w, r, n)
