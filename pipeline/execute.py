"""The execution step: open the approved plans and store the whole cycle (analysis rows, orders,
fills, the account, the equity snapshot and the entry posts) in ONE transaction.

An opening order's client id is deterministic (mode + decision time + symbol): rerunning the same
decision time never opens a second position. The orders go through the broker port (paper or live:
this module does not know which).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.faults import crash_point
from core.settings import Settings
from core.types import Candidate, Decision, Fill, NewsReport, Position, RiskVerdict, Score, TradePlan, Vote
from exchange.base import MarketDataSource
from exchange.broker import OpenRequest, position_id_for
from exchange.paper import PaperAccount
from notify.format import entry_key
from pipeline.account import Factory, load, save_account, snapshot_equity
from pipeline.brokers import broker_for
from pipeline.positions import marks
from store import repo
from store.db import transaction


def execute_and_persist(factory: Factory, source: MarketDataSource, settings: Settings, cycle_id: str,
                        as_of: datetime, candidates: Sequence[Candidate], scores: Mapping[str, Score],
                        news: Mapping[str, NewsReport], votes: Sequence[Vote], decisions: Mapping[str, Decision],
                        verdicts: Mapping[str, RiskVerdict], prices: Mapping[str, float],
                        acct: PaperAccount | None = None) -> tuple[PaperAccount, dict[str, Any]]:
    """Open approved plans through the broker (paper: at the first price after the decision; live: on the
    exchange with their protective orders) and store the whole cycle in one transaction (all or nothing).
    Returns the account after the commit and what happened per symbol.

    The broker's orders happen before the transaction: the paper account changes only in memory until it
    is stored; the live broker journals each order in its own transaction before sending it, so a crash
    at any point never sends an order twice (the journal knows it) and the next run stores the rest."""
    acct = acct if acct is not None else load(factory, settings)
    broker = broker_for(factory, source, settings, as_of, acct)
    out: dict[str, Any] = {}
    approved = [(sym, v.plan) for sym, v in verdicts.items() if v.approved and v.plan is not None]
    with transaction(factory) as s:
        prior = {sym: repo.order_exists(s, _open_key(settings, as_of, sym)) for sym, _ in approved}
    filled: list[tuple[str, str, TradePlan, Fill]] = []
    for sym, plan in approved:
        if prior[sym] is not None:
            out[sym] = {"status": "skipped", "note": f"already executed for this decision time (cycle {prior[sym].cycle_id})"}
            continue
        pid = position_id_for(sym, as_of)
        extra = {"entry_post_key": entry_key(cycle_id, sym), "plan_entry": plan.entry}
        res = broker.open_position(OpenRequest(plan, as_of, cycle_id, pid, extra))
        if res.status != "filled" or res.fill is None:
            out[sym] = {"status": res.status, "note": res.note}
            continue
        filled.append((sym, pid, plan, res.fill))
    acct = broker.account_snapshot()  # paper: the same account; live: as the exchange has it now
    opened: list[tuple[Position, TradePlan, Decision]] = []
    with transaction(factory) as s:
        repo.record_analysis(s, cycle_id, as_of, candidates, dict(scores),
                             {k: repo.jsonable(v) for k, v in news.items()}, votes, dict(decisions),
                             dict(verdicts), dict(prices))
        for sym, pid, plan, fill in filled:
            pos = acct.positions[pid]  # its extra (the entry post's key) kept by the broker, in paper and live
            opened.append((pos, plan, decisions[sym]))
            repo.add_order_fill(s, _open_key(settings, as_of, sym), cycle_id, pid, fill, settings.mode)
            out[sym] = {"status": "filled", "position_id": pid, "fill_price": float(fill.price),
                        "fill_time": fill.ts.isoformat(), "qty": str(fill.qty), "fee": float(fill.fee)}
        save_account(s, settings, acct, as_of, {p.id: p.opened_at for p, _, _ in opened})
        prices_all = marks(source, [p.symbol for p in acct.open_positions()], as_of, prices)
        snapshot_equity(s, settings.mode, acct, prices_all, as_of)
        for pos, plan, decision in opened:
            enqueue_entry_post(s, cycle_id, pos, replace(plan, entry=pos.entry), decision)
        crash_point("cycle:before-commit")
    crash_point("cycle:after-commit")
    return acct.settled(), {sym: out[sym] for sym, _ in approved}


def _open_key(settings: Settings, as_of: datetime, sym: str) -> str:
    return f"{settings.mode}:{as_of:%Y%m%dT%H%M}:{sym}:open"


def enqueue_entry_post(s: Session, cycle_id: str, pos: Position, plan: TradePlan, decision: Decision) -> None:
    from notify.format import entry_post
    from store import outbox

    outbox.enqueue(s, entry_key(cycle_id, pos.symbol), "entry", entry_post(plan, decision), symbol=pos.symbol,
                   position_id=pos.id)
