"""The database side of the exports: closed trades and the decision audit trail of one account,
loaded for `backtest.export` (used by `quorum export` and the dashboard's /api/export)."""

from __future__ import annotations

from typing import Any


def load_export_data(factory: Any, mode: str, audit: bool = False) -> tuple[list[Any], list[Any] | None]:
    """Closed positions of the account `mode` as TradeRecords, and (with audit=True) one AuditRow per
    cycle and symbol built from the cycles, scores, votes, decisions, risk_verdicts, orders and fills
    tables (the members' shadow-account orders are left out: they are not the account's orders)."""
    from sqlalchemy import select

    from backtest.export import AuditFill, AuditOrder, AuditRow, AuditVote
    from core.metrics import trade_records_from_positions
    from store import repo
    from store.db import transaction
    from store.models import CycleRow, DecisionRow, FillRow, OrderRow, RiskVerdictRow, ScoreRow, VoteRow

    with transaction(factory) as s:
        trades = trade_records_from_positions(repo.closed_positions(s, mode))
        if not audit:
            return trades, None
        cycles = {c.id: c for c in s.scalars(select(CycleRow).where(CycleRow.mode == mode)
                                              .order_by(CycleRow.as_of, CycleRow.id))}
        scores = list(s.scalars(select(ScoreRow)))
        votes: dict[tuple[str, str], list[VoteRow]] = {}
        for v in s.scalars(select(VoteRow).order_by(VoteRow.member_id)):
            votes.setdefault((v.cycle_id, v.symbol), []).append(v)
        decisions = {(d.cycle_id, d.symbol): d for d in s.scalars(select(DecisionRow))}
        verdicts = {(r.cycle_id, r.symbol): r for r in s.scalars(select(RiskVerdictRow))}
        orders: dict[tuple[str, str], list[OrderRow]] = {}
        # the paper cycle's rebalance trades are the spot account's (mode "spot"), under the same cycle ids
        modes = (mode, "spot") if mode == "paper" else (mode,)
        for o in s.scalars(select(OrderRow).where(OrderRow.cycle_id.is_not(None), OrderRow.mode.in_(modes))
                           .order_by(OrderRow.id)):
            orders.setdefault((o.cycle_id or "", o.symbol), []).append(o)
        fills: dict[int, list[FillRow]] = {}
        for f in s.scalars(select(FillRow).order_by(FillRow.id)):
            fills.setdefault(f.order_id, []).append(f)
        rows = []
        for sc in scores:
            cyc = cycles.get(sc.cycle_id)
            if cyc is None:
                continue
            key = (sc.cycle_id, sc.symbol)
            d, rv = decisions.get(key), verdicts.get(key)
            ords = orders.get(key, [])

            def side(o: OrderRow) -> str:
                buy = (o.side == "LONG") == (o.kind == "open")
                return "buy" if buy else "sell"

            rows.append(AuditRow(
                cycle_id=sc.cycle_id, time=cyc.as_of, symbol=sc.symbol, math_score=sc.final,
                math_components=dict(sc.components or {}),
                votes=[AuditVote(v.member_id, v.action if not v.abstain_reason else None, v.confidence, v.rationale,
                                 v.abstain_reason, v.model, v.latency_s, v.cost_usd) for v in votes.get(key, [])],
                consensus_action=d.action if d else "WAIT", consensus_confidence=d.confidence if d else None,
                dissent=list(d.dissent or []) if d else [],
                risk_approved=None if rv is None or (d is not None and d.action == "WAIT") else rv.approved,
                risk_reasons=list(rv.reasons or []) if rv else [],
                orders=[AuditOrder(o.client_order_id, side(o), "market", float(o.qty), None, o.status, o.kind == "close")
                        for o in ords],
                fills=[AuditFill(f.ts, side(o), o.kind, float(f.qty), float(f.price), float(f.fee), o.reason)
                       for o in ords for f in fills.get(o.id, [])],
                note=d.reason if d else "",
            ))
    rows.sort(key=lambda r: (r.time, r.symbol, r.cycle_id))
    return trades, rows
