"""The account's intraday equity path for the daily stats post: equity at every hourly close of the day,
from the day's reference snapshot, the position events (exits, funding), the fills' fees and the hourly
bars of the positions open at each hour. Equity snapshots exist only at cycle and monitor times, so a
drawdown measured on them alone misses what happened between (a day that lost 3% intraday and
recovered read -0.8%).

For the paper account the path is exact at each hourly close: equity(h) = equity(ref) + X(h) - X(ref) with
X(t) = realised price P&L of the exits by t + funding received by t - fees paid by t + the open quantity
at t marked to the close at t.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.types import Position, PositionEvent

NOT_EXITS = frozenset({"opened", "funding", "stop_moved"})
HOUR = timedelta(hours=1)


def _mark(closes: pd.Series | None, t: datetime) -> float | None:
    """The last hourly close at or before t (closes indexed by bar CLOSE time)."""
    if closes is None or len(closes) == 0:
        return None
    i = int(closes.index.searchsorted(pd.Timestamp(t), side="right")) - 1
    return float(closes.iloc[i]) if i >= 0 else None


def intraday_path(ref: tuple[datetime, float], hours: Sequence[datetime], positions: Sequence[Position],
                  events: Sequence[PositionEvent], fees: Sequence[tuple[datetime, float]],
                  closes: Mapping[str, pd.Series]) -> list[tuple[datetime, float]]:
    """Equity at `ref` and at each of `hours` (see the module doc). `positions` are all positions that
    were open at some time in [ref, last hour]; `events` their exit and funding events; `fees` every fill
    fee (time, amount) of the account in that span; `closes[symbol]` its hourly closes by close time."""
    t_ref, e_ref = ref
    exits: dict[str, list[PositionEvent]] = {}
    for e in events:
        if e.kind not in NOT_EXITS and e.qty > 0:
            exits.setdefault(e.position_id, []).append(e)

    def x(t: datetime) -> float | None:
        total = 0.0
        for e in events:
            if e.ts <= t and (e.kind == "funding" or (e.kind not in NOT_EXITS and e.qty > 0)):
                total += float(e.pnl)
        total -= sum(f for ts, f in fees if ts <= t)
        for p in positions:
            if p.opened_at > t or (p.closed_at is not None and p.closed_at <= t):
                continue
            qty = float(p.qty_initial) - sum(float(e.qty) for e in exits.get(p.id, ()) if e.ts <= t)
            if qty <= 0:
                continue
            mk = _mark(closes.get(p.symbol), t)
            if mk is None:
                return None
            total += qty * (mk - p.entry) * p.side.sign
        return total

    x_ref = x(t_ref)
    if x_ref is None:
        return [ref]
    out = [ref]
    for h in hours:
        xh = x(h)
        if xh is not None:
            out.append((h, e_ref + xh - x_ref))
    return out


def day_equity_path(s: Session, source, mode: str, day_start: datetime,  # type: ignore[no-untyped-def]
                    until: datetime) -> list[tuple[datetime, float]]:
    """The intraday path of the UTC day starting at `day_start` (hourly closes up to `until`), from the
    stored snapshots, positions, events and fills; [] without a snapshot at or before the day's end."""
    from store import repo
    from store.models import FillRow, OrderRow, PositionEventRow, PositionRow

    day_end = min(day_start + timedelta(days=1), until)
    snaps = repo.equity_history(s, mode)
    before = [(t, e) for t, e in snaps if t <= day_start]
    ref = before[-1] if before else next(((t, e) for t, e in snaps if t <= day_end), None)
    if ref is None:
        return []
    rows = s.scalars(select(PositionRow).where(
        PositionRow.mode == mode, PositionRow.opened_at <= day_end,
        (PositionRow.closed_at.is_(None)) | (PositionRow.closed_at > ref[0])))
    positions = [repo.row_to_position(r) for r in rows]
    ids = [p.id for p in positions]
    events = [PositionEvent(r.position_id, r.symbol, r.kind, r.ts, r.price, r.qty, r.pnl, r.r_multiple, r.reason)
              for r in s.scalars(select(PositionEventRow).where(PositionEventRow.position_id.in_(ids)))] if ids else []
    fees = [(ts, float(fee)) for ts, fee in s.execute(
        select(FillRow.ts, FillRow.fee).join(OrderRow, OrderRow.id == FillRow.order_id)
        .where(OrderRow.mode == mode, FillRow.ts > ref[0], FillRow.ts <= day_end))]
    closes: dict[str, pd.Series] = {}
    for sym in sorted({p.symbol for p in positions}):
        try:
            bars = source.bars_between(sym, ref[0] - timedelta(hours=2), day_end)
        except Exception:  # noqa: BLE001 - a symbol without bars: the path stops where marks are missing
            continue
        closes[sym] = pd.Series(bars["close"].to_numpy(dtype=float), index=bars.index + pd.Timedelta(hours=1))
    hours = [day_start] if ref[0] < day_start else []  # the day's opening equity
    h = day_start + HOUR
    while h <= day_end:
        hours.append(h)
        h += HOUR
    return intraday_path(ref, hours, positions, events, fees, closes)
