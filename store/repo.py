"""Repositories: domain objects in, domain objects out. Callers own the transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.types import (
    Action,
    Candidate,
    Decision,
    Fill,
    Position,
    PositionEvent,
    RiskVerdict,
    Score,
    Side,
    TradePlan,
    Vote,
)
from store.models import (
    AccountRow,
    CandidateRow,
    CycleRow,
    DecisionRow,
    EquitySnapshotRow,
    FillRow,
    HaltRow,
    OrderRow,
    PositionEventRow,
    PositionRow,
    RiskVerdictRow,
    ScoreRow,
    VoteRow,
)

_POSITION_FIELDS = [f.name for f in dataclasses.fields(Position)]


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if hasattr(obj, "value") and isinstance(obj.value, str):
        return obj.value
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


# ---- positions --------------------------------------------------------------------------------
def position_to_row(p: Position, row: PositionRow | None = None, mode: str = "paper") -> PositionRow:
    row = row or PositionRow(id=p.id, mode=mode)
    for name in _POSITION_FIELDS:
        if name == "id":
            continue
        value = getattr(p, name)
        if name == "side":
            value = value.value
        if name == "extra":
            value = jsonable(value)
        setattr(row, name, value)
    return row


def row_to_position(row: PositionRow) -> Position:
    kw = {name: getattr(row, name) for name in _POSITION_FIELDS}
    kw["side"] = Side(row.side)
    kw["qty_initial"] = Decimal(str(row.qty_initial))
    kw["qty_open"] = Decimal(str(row.qty_open))
    kw["extra"] = dict(row.extra or {})
    return Position(**kw)


def upsert_position(s: Session, p: Position, mode: str = "paper", checked_until: datetime | None = None) -> None:
    row = s.get(PositionRow, p.id)
    row = position_to_row(p, row, mode)
    if checked_until is not None:
        row.checked_until = checked_until
    s.add(row)


def open_positions(s: Session, mode: str = "paper") -> list[Position]:
    rows = s.scalars(select(PositionRow).where(PositionRow.mode == mode, PositionRow.closed_at.is_(None))
                     .order_by(PositionRow.opened_at, PositionRow.id))
    return [row_to_position(r) for r in rows]


def checked_until(s: Session, position_id: str) -> datetime | None:
    row = s.get(PositionRow, position_id)
    return None if row is None else row.checked_until


def closed_positions(s: Session, mode: str = "paper", since: datetime | None = None) -> list[Position]:
    q = select(PositionRow).where(PositionRow.mode == mode, PositionRow.closed_at.is_not(None))
    if since is not None:
        q = q.where(PositionRow.closed_at >= since)
    return [row_to_position(r) for r in s.scalars(q.order_by(PositionRow.closed_at, PositionRow.id))]


def add_events(s: Session, events: Iterable[PositionEvent]) -> None:
    for e in events:
        exists = s.scalar(select(PositionEventRow.id).where(
            PositionEventRow.position_id == e.position_id, PositionEventRow.kind == e.kind, PositionEventRow.ts == e.ts))
        if exists:
            continue
        s.add(PositionEventRow(position_id=e.position_id, symbol=e.symbol, kind=e.kind, ts=e.ts, price=e.price,
                               qty=e.qty, pnl=e.pnl, r_multiple=e.r_multiple, reason=e.reason,
                               old_stop=e.old_stop, new_stop=e.new_stop))




# ---- orders and fills -------------------------------------------------------------------------
def order_exists(s: Session, client_order_id: str) -> OrderRow | None:
    return s.scalar(select(OrderRow).where(OrderRow.client_order_id == client_order_id))


def add_order_fill(s: Session, client_order_id: str, cycle_id: str | None, position_id: str, fill: Fill,
                   mode: str = "paper") -> OrderRow:
    order = OrderRow(client_order_id=client_order_id, cycle_id=cycle_id, position_id=position_id,
                     symbol=fill.symbol, side=fill.side.value, kind=fill.kind, qty=fill.qty, status="filled",
                     reason=fill.reason, created_at=fill.ts, mode=mode)
    s.add(order)
    s.flush()
    s.add(FillRow(order_id=order.id, symbol=fill.symbol, qty=fill.qty, price=fill.price, fee=fill.fee, ts=fill.ts))
    return order


def order_count(s: Session, position_id: str) -> int:
    from sqlalchemy import func

    return int(s.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.position_id == position_id)) or 0)




# ---- account ----------------------------------------------------------------------------------
def get_account(s: Session, mode: str, starting_balance: float) -> AccountRow:
    row = s.get(AccountRow, mode)
    if row is None:
        start = Decimal(str(starting_balance))
        row = AccountRow(mode=mode, starting_balance=start, balance=start, realised_pnl=Decimal(0),
                         fees_paid=Decimal(0), funding_paid=Decimal(0), state={})
        s.add(row)
        s.flush()
    return row


def add_equity_snapshot(s: Session, mode: str, ts: datetime, equity: float, balance: float, unrealised: float,
                        n_open: int) -> None:
    """The first snapshot at a time stands: a rerun of the same decision time never rewrites history
    (the breakers read these)."""
    row = s.scalar(select(EquitySnapshotRow).where(EquitySnapshotRow.mode == mode, EquitySnapshotRow.ts == ts))
    if row is None:
        s.add(EquitySnapshotRow(mode=mode, ts=ts, equity=equity, balance=balance, unrealised=unrealised,
                                open_positions=n_open))


def equity_history(s: Session, mode: str = "paper") -> list[tuple[datetime, float]]:
    rows = s.execute(select(EquitySnapshotRow.ts, EquitySnapshotRow.equity)
                     .where(EquitySnapshotRow.mode == mode).order_by(EquitySnapshotRow.ts))
    return [(r[0], r[1]) for r in rows]


# ---- halts ------------------------------------------------------------------------------------
def active_halt(s: Session, mode: str, now: datetime) -> HaltRow | None:
    rows = s.scalars(select(HaltRow).where(HaltRow.mode == mode, HaltRow.released_at.is_(None))
                     .order_by(HaltRow.created_at.desc()))
    for r in rows:
        if r.until is None or r.until > now:
            return r
    return None


def set_halt(s: Session, mode: str, reason: str, set_by: str, now: datetime, until: datetime | None = None) -> HaltRow:
    row = HaltRow(mode=mode, reason=reason, set_by=set_by, created_at=now, until=until)
    s.add(row)
    return row


def release_halts(s: Session, mode: str, now: datetime) -> int:
    rows = list(s.scalars(select(HaltRow).where(HaltRow.mode == mode, HaltRow.released_at.is_(None))))
    for r in rows:
        r.released_at = now
    return len(rows)


def last_resume(s: Session, mode: str) -> datetime | None:
    return s.scalar(select(HaltRow.released_at).where(HaltRow.mode == mode, HaltRow.released_at.is_not(None))
                    .order_by(HaltRow.released_at.desc()).limit(1))


# ---- cycles -----------------------------------------------------------------------------------
def start_cycle(s: Session, cycle_id: str, as_of: datetime, mode: str, source: str, started_at: datetime,
                flow_run_id: str | None = None) -> CycleRow:
    row = CycleRow(id=cycle_id, as_of=as_of, mode=mode, source=source, started_at=started_at,
                   flow_run_id=flow_run_id, status="running", summary={})
    s.add(row)
    return row


ANALYSIS_ROWS = (CandidateRow, ScoreRow, VoteRow, DecisionRow, RiskVerdictRow)


def supersede_analysis(s: Session, cycle_id: str, as_of: datetime, mode: str, symbols: Iterable[str]) -> list[str]:
    """A rerun of a decision time replaces the earlier runs' analysis rows (candidates, scores, votes,
    decisions, verdicts) of the symbols it analyses instead of adding a second set. An earlier cycle
    left without analysis rows is marked `superseded` (its orders and fills stay). Returns the
    earlier cycle ids that lost rows."""
    syms = sorted(set(symbols))
    earlier = list(s.scalars(select(CycleRow.id).where(CycleRow.mode == mode, CycleRow.as_of == as_of,
                                                        CycleRow.id != cycle_id)))
    if not earlier or not syms:
        return []
    for model in ANALYSIS_ROWS:
        s.execute(delete(model).where(model.cycle_id.in_(earlier), model.symbol.in_(syms)))
    s.flush()
    for row in s.scalars(select(CycleRow).where(CycleRow.id.in_(earlier))):
        left = s.scalar(select(func.count()).select_from(CandidateRow).where(CandidateRow.cycle_id == row.id))
        if not left and row.status == "completed":
            row.status = "superseded"
        row.summary = {**(row.summary or {}), "superseded_by": cycle_id}
    s.flush()
    return earlier


def record_analysis(s: Session, cycle_id: str, as_of: datetime, candidates: Sequence[Candidate],
                    scores: dict[str, Score], news: dict[str, Any], votes: Sequence[Vote],
                    decisions: dict[str, Decision], verdicts: dict[str, RiskVerdict],
                    prices: dict[str, float]) -> None:
    cycle = s.get(CycleRow, cycle_id)
    if cycle is not None:
        supersede_analysis(s, cycle_id, as_of, cycle.mode,
                           [c.symbol for c in candidates] + list(scores) + list(decisions) + list(verdicts))
    for c in candidates:
        s.add(CandidateRow(cycle_id=cycle_id, symbol=c.symbol, source=c.source, reason=c.reason,
                           volume_24h_quote=c.volume_24h_quote, spread_pct=c.spread_pct))
    for sym, sc in scores.items():
        s.add(ScoreRow(cycle_id=cycle_id, symbol=sym, final=sc.final, signal=sc.signal.value, trend=sc.trend.value,
                       vol_state=sc.vol_state.value, vol_ratio=jsonable(sc.vol_ratio), atr_pct=jsonable(sc.atr_pct),
                       daily_veto=sc.daily_veto, components=jsonable(sc.components),
                       timeframes=jsonable(sc.timeframes), flags=list(sc.flags), news=jsonable(news.get(sym) or {})))
    for v in votes:
        s.add(VoteRow(cycle_id=cycle_id, symbol=v.symbol, member_id=v.member_id, provider=v.provider, model=v.model,
                      prompt_version=v.prompt_version, action=v.action.value if v.action else None,
                      confidence=v.confidence, rationale=v.rationale, key_factors=list(v.key_factors),
                      abstain_reason=v.abstain_reason, latency_s=v.latency_s, input_tokens=v.input_tokens,
                      output_tokens=v.output_tokens, cost_usd=v.cost_usd, cached=v.cached, as_of=as_of,
                      price_at_vote=prices.get(v.symbol)))
    for sym, d in decisions.items():
        s.add(DecisionRow(cycle_id=cycle_id, symbol=sym, action=d.action.value, confidence=d.confidence,
                          math_score=d.math_score, combined_score=d.combined_score, votes_valid=d.votes_valid,
                          votes_total=d.votes_total, tally=jsonable(d.tally), dissent=list(d.dissent),
                          fallback_to_math=d.fallback_to_math, reason=d.reason))
    for sym, v in verdicts.items():
        s.add(RiskVerdictRow(cycle_id=cycle_id, symbol=sym, approved=v.approved, profile=v.profile,
                             reasons=list(v.reasons), plan=jsonable(v.plan) if v.plan else None))


@dataclasses.dataclass(frozen=True)
class StoredDecision:
    """What a completed cycle decided for one symbol at one decision time, as stored."""

    cycle_id: str
    votes: tuple[Vote, ...]
    decision: Decision
    verdict: RiskVerdict


def _plan_from(d: dict[str, Any]) -> TradePlan:
    num = {k: float("nan") if d.get(k) is None else float(d[k]) for k in (
        "entry", "stop", "tp1", "tp2", "notional", "margin", "risk_usd", "risk_pct", "liquidation_price",
        "stop_pct", "tp1_fraction") if k in d}
    return TradePlan(symbol=d["symbol"], side=Side(d["side"]), leverage=int(d["leverage"]), qty=Decimal(str(d["qty"])),
                     reason=d.get("reason", ""), **num)


def stored_decisions(s: Session, mode: str, as_of: datetime, symbols: Iterable[str]) -> dict[str, StoredDecision]:
    """Per symbol, the votes, decision and risk verdict of the latest completed cycle of this mode at
    exactly this decision time (a rerun reuses them: same facts, same result)."""
    out: dict[str, StoredDecision] = {}
    cycles = list(s.scalars(select(CycleRow).where(CycleRow.mode == mode, CycleRow.as_of == as_of,
                                                    CycleRow.status == "completed")
                            .order_by(CycleRow.started_at.desc())))
    for sym in symbols:
        for c in cycles:
            d = s.scalar(select(DecisionRow).where(DecisionRow.cycle_id == c.id, DecisionRow.symbol == sym))
            v = s.scalar(select(RiskVerdictRow).where(RiskVerdictRow.cycle_id == c.id, RiskVerdictRow.symbol == sym))
            if d is None or v is None:
                continue
            votes = tuple(
                Vote(member_id=r.member_id, symbol=r.symbol, action=Action(r.action) if r.action else None,
                     confidence=r.confidence or 0.0, rationale=r.rationale or "", key_factors=tuple(r.key_factors or ()),
                     abstain_reason=r.abstain_reason, provider=r.provider, model=r.model,
                     prompt_version=r.prompt_version, latency_s=r.latency_s, input_tokens=r.input_tokens,
                     output_tokens=r.output_tokens, cost_usd=r.cost_usd, cached=True)
                for r in s.scalars(select(VoteRow).where(VoteRow.cycle_id == c.id, VoteRow.symbol == sym)
                                   .order_by(VoteRow.id)))
            decision = Decision(symbol=sym, as_of=as_of, action=Action(d.action), confidence=d.confidence,
                                math_score=d.math_score, combined_score=d.combined_score, votes_valid=d.votes_valid,
                                votes_total=d.votes_total, tally=dict(d.tally or {}), dissent=tuple(d.dissent or ()),
                                fallback_to_math=d.fallback_to_math, reason=d.reason)
            verdict = RiskVerdict(symbol=sym, approved=v.approved, reasons=tuple(v.reasons or ()),
                                  plan=_plan_from(v.plan) if v.plan else None, profile=v.profile)
            out[sym] = StoredDecision(c.id, votes, decision, verdict)
            break
    return out


def votes_table(s: Session) -> list[VoteRow]:
    return list(s.scalars(select(VoteRow).order_by(VoteRow.as_of, VoteRow.symbol, VoteRow.member_id)))
