"""Circuit breakers from stored equity snapshots (daily, weekly, drawdown), and the account state the
risk manager reads, built from that history: they hold across restarts."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from core.types import (
    Position,
)
from risk.formulas import _utc
from risk.inputs import AccountState
from risk.profiles import RiskProfile, get_profile


def _midnight(ts: datetime) -> datetime:
    ts = _utc(ts)
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def _week_start(ts: datetime) -> datetime:
    m = _midnight(ts)
    return m - timedelta(days=m.weekday())


# ------------------------------------------------------------------------------------------------
# breakers from stored equity snapshots


def breaker_state(
    equity_history: Iterable[tuple[datetime, float]],
    now: datetime,
    profile: RiskProfile | str,
    reset_at: datetime | None = None,
) -> tuple[bool, str | None, datetime | None]:
    """(halted, reason, until) from equity snapshots at or before `now` (later ones are ignored).

    - daily: reference = the last snapshot at or before today's 00:00 UTC (else today's first);
      if ANY snapshot today fell to ≤ reference × (1 − daily%), entries halt until the next 00:00
      UTC, even if equity recovered since.
    - weekly: the same from Monday 00:00 UTC, until next Monday 00:00 UTC.
    - drawdown: if any snapshot fell to ≤ running peak × (1 − dd%), halted with until=None
      (manual resume). `reset_at` (an operator's resume time) ignores snapshots before it for the
      drawdown breaker.
    Several breakers: reasons joined with '; ', until = the latest (None wins).
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    now = _utc(now)
    return _breakers(_points(equity_history, now), now, prof, reset_at)


def _points(equity_history: Iterable[tuple[datetime, float]], now: datetime) -> list[tuple[datetime, float]]:
    """The snapshots at or before `now`, in UTC, sorted by time (stable)."""
    pts = []
    for t, e in equity_history:
        tu = _utc(t)
        if tu <= now:
            pts.append((tu, float(e)))
    pts.sort(key=lambda x: x[0])
    return pts


def _breakers(pts: list[tuple[datetime, float]], now: datetime, prof: RiskProfile,
              reset_at: datetime | None) -> tuple[bool, str | None, datetime | None]:
    """`breaker_state` over sorted UTC points (see there)."""
    if not pts:
        return False, None, None
    reasons: list[str] = []
    untils: list[datetime | None] = []
    times = [t for t, _ in pts]

    def period(start: datetime, limit: float | None, label: str, until: datetime) -> None:
        if limit is None:
            return
        i_le = bisect_right(times, start)  # pts[:i_le]: at or before start
        i_ge = bisect_left(times, start)  # pts[i_ge:]: at or after start
        if i_ge >= len(pts):
            return
        ref = pts[i_le - 1][1] if i_le else pts[i_ge][1]
        if ref <= 0:
            return
        worst = min(e for _, e in pts[i_ge:])
        change = (worst / ref - 1.0) * 100.0
        if change <= -limit + 1e-12:
            reasons.append(f"{label} loss {change:.2f}% reached the -{limit:g}% limit; halted until "
                           f"{until.isoformat()}")
            untils.append(until)

    day = _midnight(now)
    period(day, prof.daily_loss_pct, "daily", day + timedelta(days=1))
    week = _week_start(now)
    period(week, prof.weekly_loss_pct, "weekly", week + timedelta(days=7))
    if prof.max_drawdown_pct is not None:
        peak = -math.inf
        worst_dd = 0.0
        for t, e in pts:
            if reset_at is not None and t < _utc(reset_at):
                continue
            peak = max(peak, e)
            if peak > 0:
                worst_dd = min(worst_dd, (e / peak - 1.0) * 100.0)
        if worst_dd <= -prof.max_drawdown_pct + 1e-12:
            reasons.append(f"drawdown {worst_dd:.2f}% from peak reached the -{prof.max_drawdown_pct:g}% "
                           "breaker; halted until a manual resume")
            untils.append(None)
    if not reasons:
        return False, None, None
    until = None if any(u is None for u in untils) else max(u for u in untils if u is not None)
    return True, "; ".join(reasons), until


def account_state_from_history(
    equity_history: Sequence[tuple[datetime, float]],
    *,
    equity: float,
    balance: float,
    positions: Sequence[Position],
    now: datetime,
    profile: RiskProfile | str,
    manual_halt: str | None = None,
    reset_at: datetime | None = None,
    presorted: bool = False,
) -> AccountState:
    """AccountState with day/week start, peak and breaker halt derived from stored snapshots.
    `presorted`: the history is already in time order, in UTC, and none of it is after `now` (the
    backtest's own history), so it is used as given."""
    now = _utc(now)
    prof = get_profile(profile) if isinstance(profile, str) else profile
    pts = list(equity_history) if presorted else _points(equity_history, now)
    times = [t for t, _ in pts]

    def ref(start: datetime) -> float | None:
        i_le = bisect_right(times, start)
        if i_le:
            return pts[i_le - 1][1]
        i_ge = bisect_left(times, start)
        return pts[i_ge][1] if i_ge < len(pts) else None

    reset = _utc(reset_at) if reset_at is not None else None
    peak = max([e for t, e in pts if reset is None or t >= reset] + [equity])
    halted, reason, until = _breakers(pts, now, prof, reset_at)
    if manual_halt:
        halted, until = True, None
        reason = f"manual halt: {manual_halt}" + (f"; {reason}" if reason else "")
    return AccountState(
        equity=equity,
        balance=balance,
        positions=tuple(positions),
        day_start_equity=ref(_midnight(now)),
        week_start_equity=ref(_week_start(now)),
        peak_equity=peak,
        halted=halted,
        halt_reason=reason,
        halted_until=until,
        now=now,
    )


