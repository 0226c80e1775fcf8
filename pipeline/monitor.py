"""Position monitoring over the stored account: walk open positions through the bars since they
were last checked (one transaction per position), close positions at market (manual close-all,
critical news) and queue their exit posts. Each function takes the in-memory account (or loads it
when called alone) and returns the account as it stands after its commits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from agents.math_engine import hourly_atr
from core.errors import DataError, OrderRejected
from core.faults import crash_point
from core.settings import Settings
from core.types import Fill, NewsReport, Position, PositionEvent
from exchange.base import MarketDataSource
from exchange.broker import Broker, Finding
from exchange.paper import PaperAccount
from pipeline.account import Factory, load, save_account, snapshot_equity
from pipeline.brokers import broker_for, store_findings
from pipeline.positions import ATR_WARMUP_H, marks
from risk.profiles import get_profile
from store import repo
from store.db import transaction

log = logging.getLogger(__name__)


def sync_positions(factory: Factory, source: MarketDataSource, settings: Settings, until: datetime,
                   acct: PaperAccount | None = None) -> tuple[PaperAccount, dict[str, Any]]:
    """Reconcile with the broker, then bring every open position up to `until`, one transaction per
    position. (Critical news closes positions at the next price through `news_exits`, not on past bars.)

    The broker walks each position through the bars (`broker.walk`: the paper account simulates funding,
    stops, targets, trailing and liquidation; the live broker applies the same exit rules to each bar and
    carries out the stop moves and stale/time exits, leaving the resting stop and targets to the exchange,
    whose fills reconcile records); this function stores what the walk returns. Each reconciliation finding is stored as a
    position event and a channel post, and listed in `summary["findings"]`.

    A symbol whose market data fails its checks (DataError: corrupt file, NaN/zero/negative bars, a
    spike) is quarantined: its positions are left exactly as they are (not advanced, not checked
    past the bad data), `summary["quarantined"]` and the events say why, and every other position is
    still managed."""
    acct = acct if acct is not None else load(factory, settings)
    broker = broker_for(factory, source, settings, until, acct)
    summary: dict[str, Any] = {"checked": 0, "events": [], "quarantined": {}, "findings": []}
    acct, summary["findings"], exited = reconcile_and_store(factory, settings, broker)
    summary["events"] += summary["findings"] + exited
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
            broker = broker_for(factory, source, settings, until, acct)  # over the account as it stands now
            walked = broker.walk(pid, bars, funding, settings.risk_profile, atr, qty_step)
            acct = broker.account_snapshot()
            record_broker_fills(s, settings.mode, None, [(pid, f) for f in walked.fills])
            events = save_account(s, settings, acct, until, {pid: walked.last or start}) + list(walked.events)
            repo.add_events(s, list(walked.events))
            enqueue_event_posts(s, acct, events)
            crash_point("monitor:before-commit")
            summary["checked"] += 1
            summary["events"] += [f"{e.symbol} {e.kind} @ {e.price:.6g} ({e.reason})" for e in events
                                  if e.kind != "funding"]
        crash_point("monitor:after-commit")
        acct = acct.settled()
    return acct, summary


def reconcile_and_store(factory: Factory, settings: Settings, broker: Broker, *, save_always: bool = False
                        ) -> tuple[PaperAccount, list[str], list[str]]:
    """Reconcile the broker with its exchange and store what it found in one transaction: the account as
    the broker has it, each finding as an event and a channel post, the exits the exchange filled like any
    exit (record_exchange_exits). With nothing found the account is stored only when `save_always`.
    Returns the account, the finding lines and the exit lines."""
    findings = broker.reconcile()
    acct = broker.account_snapshot()
    if not findings and not save_always:
        return acct, [], []
    with transaction(factory) as s:
        save_account(s, settings, acct, None)
        lines = store_findings(s, findings, datetime.now(UTC))
        exited = record_exchange_exits(s, settings.mode, acct, findings, broker)
    return acct.settled(), lines, exited


def record_broker_fills(s: Session, mode: str, cycle_id: str | None, fills: Sequence[tuple[str, Fill]]) -> None:
    """Store fills a broker returned as orders + fills, with record_fills' deterministic client ids."""
    seq: dict[str, int] = {}
    for pid, fill in fills:
        if pid not in seq:
            seq[pid] = repo.order_count(s, pid)
        coid = f"{mode}:{pid}:{fill.kind}:{seq[pid]}"
        seq[pid] += 1
        if repo.order_exists(s, coid) is None:
            repo.add_order_fill(s, coid, cycle_id, pid, fill, mode)


def record_exchange_exits(s: Session, mode: str, acct: PaperAccount, findings: Sequence[Finding],
                          broker: Broker) -> list[str]:
    """The exits a reconciliation found the exchange had filled (a stop or target), stored like any exit: the
    fill as orders + fills, the exit event and its channel post, a reply to the entry post, then the broker
    told (`exits_recorded`) in the same transaction. A crash before the commit leaves the exit unstored and
    the broker reports it again next time; a fill whose order row (client id = the exchange order's) is
    already stored is not stored again. Returns the event lines."""
    exits_found = [f for f in findings if f.event is not None and f.fill is not None and f.position_id]
    events = []
    for f in exits_found:
        coid = f"{mode}:{f.client_id or f.event.kind}"
        if repo.order_exists(s, coid) is None:
            repo.add_order_fill(s, coid, None, f.position_id, f.fill, mode)
            events.append(f.event)
    repo.add_events(s, events)
    enqueue_event_posts(s, acct, events)
    broker.exits_recorded(s, exits_found)
    crash_point("reconcile:before-commit")
    return [f"{e.symbol} {e.kind} @ {e.price:.6g} ({e.reason})" for e in events]


def close_at_market(factory: Factory, source: MarketDataSource, settings: Settings, now: datetime,
                    which: Callable[[Position], bool], reason: str, kind: str,
                    acct: PaperAccount | None = None) -> tuple[PaperAccount, list[str]]:
    """Close the open positions `which(position)` selects through the broker (paper: at the first price
    after `now`; live: reduce-only market orders, then their protective orders cancelled), in one
    transaction; their exit posts go to the outbox."""
    acct = acct if acct is not None else load(factory, settings)
    broker = broker_for(factory, source, settings, now, acct)
    closed, done = [], []
    for p in broker.positions():
        if not which(p):
            continue
        try:
            fill = broker.close_position(p.id, reason, kind)
        except (DataError, KeyError, OrderRejected) as exc:
            log.warning("close: %s not closed: no usable price (%s)", p.symbol, exc)
            continue
        if fill is not None:
            done.append((p.id, fill))
            closed.append(f"{p.symbol} @ {float(fill.price):.6g}")
    acct = broker.account_snapshot()
    with transaction(factory) as s:
        record_broker_fills(s, settings.mode, None, done)
        events = save_account(s, settings, acct, now)
        enqueue_event_posts(s, acct, events)
        if done:
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
