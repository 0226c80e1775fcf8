"""Retention of Quorum's own per-cycle analysis rows (the housekeeping flow runs it daily).

Every cycle adds a cycle row with its JSON report, and per candidate a candidate row, a score row,
a decision, a risk verdict and one vote per model (6 models × 6 symbols × 24 cycles = 864 votes a
day). What a cycle older than `settings.retention_analysis_days` keeps:

- kept whole: positions, orders, fills, position events, equity snapshots, halts, the account
  (the money and the breakers' history: never deleted);
- kept whole: decisions and risk verdicts of cycles that placed an order (the trade audit);
- kept without free text: every vote (member, action, confidence, price at the vote, cost: what
  the leaderboard and the daily hit rates read); its rationale and key factors are cleared;
- kept without its JSON report: the cycle row (id, time, status, cost);
- deleted: candidate and score rows, decisions and risk verdicts of cycles that placed no order,
  cached LLM responses older than the cutoff, and sent or dead outbox posts older than the cutoff
  whose position (if any) is closed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from store.llm_cache import LLMResponseRow
from store.models import (
    CandidateRow,
    CycleRow,
    DecisionRow,
    OrderRow,
    PositionRow,
    RiskVerdictRow,
    ScoreRow,
    VoteRow,
)
from store.outbox import OutboxPost


def prune_analysis(s: Session, cutoff: datetime) -> dict[str, int]:
    """Apply the retention above to cycles started before `cutoff`; counts of rows touched."""
    old = select(CycleRow.id).where(CycleRow.started_at < cutoff).scalar_subquery()
    traded = select(OrderRow.cycle_id).where(OrderRow.cycle_id.is_not(None)).distinct().scalar_subquery()
    counts: dict[str, Any] = {}
    counts["candidates"] = s.execute(delete(CandidateRow).where(CandidateRow.cycle_id.in_(old))).rowcount
    counts["scores"] = s.execute(delete(ScoreRow).where(ScoreRow.cycle_id.in_(old))).rowcount
    counts["decisions"] = s.execute(delete(DecisionRow).where(
        DecisionRow.cycle_id.in_(old), DecisionRow.cycle_id.not_in(traded))).rowcount
    counts["risk_verdicts"] = s.execute(delete(RiskVerdictRow).where(
        RiskVerdictRow.cycle_id.in_(old), RiskVerdictRow.cycle_id.not_in(traded))).rowcount
    counts["vote_rationales"] = s.execute(update(VoteRow).where(
        VoteRow.cycle_id.in_(old), VoteRow.rationale != "").values(rationale="", key_factors=[])).rowcount
    cyc = list(s.scalars(select(CycleRow).where(CycleRow.started_at < cutoff, CycleRow.status != "running")))
    n = 0
    for row in cyc:
        if row.summary:
            row.summary = {}
            n += 1
    counts["cycle_reports"] = n
    counts["llm_responses"] = s.execute(delete(LLMResponseRow).where(LLMResponseRow.created_at < cutoff)).rowcount
    still_open = select(PositionRow.id).where(PositionRow.closed_at.is_(None)).scalar_subquery()
    counts["outbox_posts"] = s.execute(delete(OutboxPost).where(
        OutboxPost.created_at < cutoff, OutboxPost.status.in_(("sent", "dead")),
        (OutboxPost.position_id.is_(None)) | (OutboxPost.position_id.not_in(still_open)))).rowcount
    s.flush()
    return {k: int(v or 0) for k, v in counts.items()}
