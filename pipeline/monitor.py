"""Position monitoring over the stored account: walk open positions through the bars since they
were last checked (one transaction per position), close positions at market (manual close-all,
critical news) and queue their exit posts. Each function takes the in-memory account (or loads it
when called alone) and returns the account as it stands after its commits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from agents.math_engine import hourly_atr
from core.errors import DataError
from core.faults import crash_point
from core.settings import Settings
from core.types import NewsReport, Position, PositionEvent
from exchange.base import MarketDataSource
from exchange.paper import PaperAccount
from pipeline.account import Factory, load, record_fills, save_account, snapshot_equity
from pipeline.positions import ATR_WARMUP_H, advance_position, marks
from risk.profiles import get_profile
from store import repo
from store.db import transaction

log = logging.getLogger(__name__)


def sync_positions(factory: Factory, source: MarketDataSource, settings: Settings, until: datetime,
                   acct: PaperAccount | None = None) -> tuple[PaperAccount, dict[str, Any]]:
    """Bring every open position up to `until`, one transaction per position. (Critical news closes
    positions at the next price through `news_exits`, not on past bars.)

    A symbol whose market data fails its checks (DataError: corrupt file, NaN/zero/negative bars, a
    spike) is quarantined: its positions are left exactly as they are (not advanced, not checked
    past the bad data), `summary["quarantined"]` and the events say why, and every other position is
    still managed."""
    acct = acct if acct is not None else load(factory, settings)
    summary: dict[str, Any] = {"checked": 0, "events": [], "quarantined": {}}
    # positions whose exits are resting orders (a grid level) are walked by pipeline.strategy_cycle.sync_orders
    for pid in [p.id for p in sorted(acct.open_positions(), key=lambda p: (p.opened_at, p.id))
                if p.extra.get("managed") != "orders"]:
        pos = acct.get(pid)
        if pos.symbol in summary["quarantined"]:
            continue
        with transaction(factory) as s:
            start = repo.checked_until(s, pid) or pos.opened_at
            if until <= start:
                continue
            try:
                # 1h ATR for the Chandelier exit, from bars before `start` too (warm-up), known at each close
                warm = source.bars_between(pos.symbol, start - timedelta(hours=ATR_WARMUP_H), until)
                funding = source.funding_between(pos.symbol, start, until)
                qty_step = source.market_rules(pos.symbol).qty_step
            except DataError as exc:
                reason = str(exc)
                summary["quarantined"][pos.symbol] = reason
                summary["events"].append(f"{pos.symbol} quarantined, its position(s) left unmanaged: {reason}")
                log.warning("monitor: %s quarantined (%s); managing the other positions", pos.symbol, reason)
                continue
            atr = pd.Series(hourly_atr(warm), index=warm.index) if len(warm) else None
            bars = warm.loc[pd.Timestamp(start):] if len(warm) else warm
            n_fills = len(acct.fills)
            last = advance_position(acct, pos, bars, funding, settings.risk_profile, False, atr, qty_step)
            record_fills(s, acct, settings.mode, None, n_fills, [pid] * (len(acct.fills) - n_fills))
            events = save_account(s, settings, acct, until, {pid: last or start})
            enqueue_event_posts(s, acct, events)
            crash_point("monitor:before-commit")
            summary["checked"] += 1
            summary["events"] += [f"{e.symbol} {e.kind} @ {e.price:.6g} ({e.reason})" for e in events
                                  if e.kind != "funding"]
        crash_point("monitor:after-commit")
        acct = acct.settled()
    return acct, summary


def close_at_market(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime,
                    which: Callable[[Position], bool], reason: str, kind: str,
                    acct: PaperAccount | None = None) -> tuple[PaperAccount, list[str]]:
    """Close the open positions `which(position)` selects at the first price after `now`, through the
    same account path, in one transaction; their exit posts go to the outbox."""
    acct = acct if acct is not None else load(factory, settings)
    closed = []
    with transaction(factory) as s:
        n_fills = len(acct.fills)
        pids = []
        for p in acct.open_positions():
            if not which(p):
                continue
            try:
                nxt = source.price_after(p.symbol, now)
                px_ts = nxt if nxt is not None else (now, marks(source, [p.symbol], now)[p.symbol])
            except (DataError, KeyError) as exc:
                log.warning("close: %s not closed: no usable price (%s)", p.symbol, exc)
                continue
            acct.close(p.id, p.qty_open, px_ts[1], px_ts[0], reason=reason, kind=kind)
            pids.append(p.id)
            closed.append(f"{p.symbol} @ {px_ts[1]:.6g}")
        record_fills(s, acct, settings.mode, None, n_fills, pids)
        events = save_account(s, settings, acct, now)
        enqueue_event_posts(s, acct, events)
        if pids:
            prices = marks(source, [p.symbol for p in acct.open_positions()], now)
            snapshot_equity(s, settings.mode, acct, prices, now)
    return acct.settled(), closed


def close_all(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime,
              reason: str) -> list[str]:
    """Close every open position at market (`quorum halt --close-all`), after the monitor has walked
    them up to `now` (stops, targets and funding first)."""
    acct, _ = sync_positions(factory, source, settings, now)
    _, closed = close_at_market(factory, source, settings, now, lambda p: True, f"manual close-all: {reason}",
                                "manual", acct)
    return closed


def news_exits(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime,
               news: Mapping[str, NewsReport], acct: PaperAccount | None = None) -> tuple[PaperAccount | None, list[str]]:
    """Close longs whose symbol has critical negative news now, when the profile closes on it.
    Returns the account after the closes (the one passed in when nothing closed) and what closed."""
    if not get_profile(settings.risk_profile).close_on_critical_news:
        return acct, []
    hit = {s for s, r in news.items() if r.available and r.critical_negative}
    if not hit:
        return acct, []
    return close_at_market(factory, source, settings, now, lambda p: p.symbol in hit and p.side.value == "LONG",
                           "critical negative news", "news", acct)


def enqueue_event_posts(s: Session, acct: PaperAccount, events: Sequence[PositionEvent]) -> None:
    from notify.format import entry_key_for, event_key, event_post, post_kind_for_event
    from store import outbox

    for e in events:
        pos = acct.positions.get(e.position_id)
        if pos is None or pos.extra.get("shadow_of"):  # a member's shadow account is never posted
            continue
        kind = post_kind_for_event(e, pos)
        if kind is None:
            continue
        parent = entry_key_for(pos)
        outbox.enqueue(s, event_key(pos.id, kind, e.ts), kind, event_post(e, pos), symbol=pos.symbol,
                       position_id=pos.id, parent_key=parent)
