"""The execution step: open the approved plans and store the whole cycle (analysis rows, orders,
fills, the account, the equity snapshot and the entry posts) in ONE transaction.

An opening order's client id is deterministic (mode + decision time + symbol): rerunning the same
decision time never opens a second position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.errors import OrderRejected
from core.faults import crash_point
from core.settings import Settings
from core.types import Candidate, Decision, NewsReport, Position, RiskVerdict, Score, TradePlan, Vote
from exchange.base import MarketDataSource
from exchange.paper import PaperAccount
from pipeline.account import Factory, load_account, save_account, snapshot_equity
from pipeline.positions import marks
from store import repo
from store.db import transaction


def execute_and_persist(factory: Factory, source: MarketDataSource, settings: Settings, cycle_id: str,
                        as_of: datetime, candidates: Sequence[Candidate], scores: Mapping[str, Score],
                        news: Mapping[str, NewsReport], votes: Sequence[Vote], decisions: Mapping[str, Decision],
                        verdicts: Mapping[str, RiskVerdict], prices: Mapping[str, float],
                        acct: PaperAccount | None = None) -> tuple[PaperAccount, dict[str, Any]]:
    """Open approved plans at the first price after the decision and store the whole cycle, in one
    transaction (all or nothing). Returns the account after the commit and what happened per symbol."""
    if settings.mode == "live":
        from core.errors import ConfigError

        raise ConfigError("live execution is not available in this build: use mode=paper")
    out: dict[str, Any] = {}
    with transaction(factory) as s:
        repo.record_analysis(s, cycle_id, as_of, candidates, dict(scores),
                             {k: repo.jsonable(v) for k, v in news.items()}, votes, dict(decisions),
                             dict(verdicts), dict(prices))
        acct = acct if acct is not None else load_account(s, settings)
        opened: list[tuple[Position, TradePlan, Decision]] = []
        for sym, verdict in verdicts.items():
            if not verdict.approved or verdict.plan is None:
                continue
            coid_key = f"{settings.mode}:{as_of:%Y%m%dT%H%M}:{sym}:open"
            prior = repo.order_exists(s, coid_key)
            if prior is not None:
                out[sym] = {"status": "skipped", "note": f"already executed for this decision time (cycle {prior.cycle_id})"}
                continue
            nxt = source.price_after(sym, as_of)
            if nxt is None:
                out[sym] = {"status": "not_filled", "note": "no price after the decision time yet; order not placed"}
                continue
            fill_ts, fill_px = nxt
            pid = f"{sym.split('/')[0]}-{as_of:%Y%m%d%H%M}"
            plan = verdict.plan
            try:
                pos, fill = acct.open(plan, fill_px, fill_ts, position_id=pid, cycle_id=cycle_id)
            except OrderRejected as exc:
                out[sym] = {"status": "rejected", "note": str(exc)}
                continue
            pos = acct.positions[pid] = pos.with_(extra={"entry_post_key": f"{cycle_id}:{sym}:entry",
                                                         "plan_entry": plan.entry})
            opened.append((pos, plan, decisions[sym]))
            repo.add_order_fill(s, coid_key, cycle_id, pid, fill, settings.mode)
            out[sym] = {"status": "filled", "position_id": pid, "fill_price": float(fill.price),
                        "fill_time": fill.ts.isoformat(), "qty": str(fill.qty), "fee": float(fill.fee)}
        save_account(s, settings, acct, as_of, {p.id: p.opened_at for p, _, _ in opened})
        prices_all = marks(source, [p.symbol for p in acct.open_positions()], as_of, prices)
        snapshot_equity(s, settings.mode, acct, prices_all, as_of)
        for pos, plan, decision in opened:
            enqueue_entry_post(s, cycle_id, pos, replace(plan, entry=pos.entry), decision)
        crash_point("cycle:before-commit")
    crash_point("cycle:after-commit")
    return acct.settled(), out


def enqueue_entry_post(s: Session, cycle_id: str, pos: Position, plan: TradePlan, decision: Decision) -> None:
    from notify.format import entry_key, entry_post
    from store import outbox

    outbox.enqueue(s, entry_key(cycle_id, pos.symbol), "entry", entry_post(plan, decision), symbol=pos.symbol,
                   position_id=pos.id)
