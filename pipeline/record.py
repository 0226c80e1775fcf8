"""The cycle's record and report: its lifecycle row (started, completed, failed) and the JSON
shapes of votes, decisions, verdicts, costs and the panel's status line."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.types import Decision, NewsReport, RiskVerdict, Vote
from pipeline.account import Factory
from store import repo
from store.db import transaction
from store.models import CycleRow

log = logging.getLogger("quorum.cycle")


def panel_status_line(statuses: Sequence[Any], votes: Sequence[Vote]) -> str:
    n_av = sum(1 for st in statuses if st.available)
    if n_av == 0:
        return (f"panel: 0/{len(statuses)} models configured; the panel abstains and the cycle decides on the "
                "math score alone (set OPENAI_API_KEY, ANTHROPIC_API_KEY, XAI_API_KEY, DEEPSEEK_API_KEY or OLLAMA_HOST)")
    valid = sum(1 for v in votes if v.valid)
    return f"panel: {n_av}/{len(statuses)} models available, {valid}/{len(votes)} valid votes"


def start_cycle(factory: Factory, cycle_id: str, as_of: datetime, mode: str, source: str,
                flow_run_id: str | None) -> None:
    with transaction(factory) as s:
        repo.start_cycle(s, cycle_id, as_of, mode, source, datetime.now(UTC), flow_run_id)


def fail_cycle(factory: Factory, cycle_id: str, error: BaseException) -> None:
    try:
        with transaction(factory) as s:
            row = s.get(CycleRow, cycle_id)
            if row is not None and row.status == "running":
                row.status = "failed"
                row.finished_at = datetime.now(UTC)
                row.summary = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    except Exception:  # noqa: BLE001 - the original error is what matters
        log.exception("could not mark cycle %s failed", cycle_id)


def finish_cycle(factory: Factory, cycle_id: str, report: Mapping[str, Any]) -> None:
    with transaction(factory) as s:
        row = s.get(CycleRow, cycle_id)
        if row is None:
            return
        row.status = "completed"
        row.finished_at = datetime.now(UTC)
        row.panel_status = report["panel"]["status"]
        row.llm_cost_usd = report["llm_cost"]["cost_usd"]
        row.llm_tokens = report["llm_cost"]["tokens"]
        row.summary = repo.jsonable({k: report[k] for k in ("candidates", "account", "timings_s", "universe")})


def cost_summary(votes: Sequence[Vote], news: Mapping[str, NewsReport] | None = None) -> dict[str, Any]:
    """Per-member (and news analyst) tokens and cost of this cycle; cached answers cost nothing."""
    members: dict[str, dict[str, Any]] = {}
    spent = [r for r in (news or {}).values() if r.tokens or r.cost_usd]
    if spent:
        members["news"] = {"tokens": sum(r.tokens for r in spent), "cost_usd": round(sum(r.cost_usd for r in spent), 6),
                           "latency_s": 0.0, "cached": False}
    for v in votes:
        m = members.setdefault(v.member_id, {"tokens": 0, "cost_usd": 0.0, "latency_s": 0.0, "cached": v.cached})
        m["tokens"] += v.input_tokens + v.output_tokens
        m["cost_usd"] = round(m["cost_usd"] + v.cost_usd, 6)
        m["latency_s"] = round(max(m["latency_s"], v.latency_s), 3)
    return {"tokens": sum(m["tokens"] for m in members.values()),
            "cost_usd": round(sum(m["cost_usd"] for m in members.values()), 6), "members": members}


def vote_dict(v: Vote) -> dict[str, Any]:
    return {"member": v.member_id, "action": v.action.value if v.action else None, "confidence": v.confidence,
            "abstain": v.abstain_reason, "rationale": v.rationale, "key_factors": list(v.key_factors),
            "latency_s": round(v.latency_s, 3),
            "tokens": v.input_tokens + v.output_tokens, "cost_usd": round(v.cost_usd, 6), "cached": v.cached,
            "prompt_version": v.prompt_version}


def decision_dict(d: Decision) -> dict[str, Any]:
    return {"action": d.action.value, "confidence": round(d.confidence, 4), "math_score": d.math_score,
            "combined_score": round(d.combined_score, 4), "votes_valid": d.votes_valid, "votes_total": d.votes_total,
            "dissent": list(d.dissent), "fallback_to_math": d.fallback_to_math, "reason": d.reason}


def verdict_dict(v: RiskVerdict) -> dict[str, Any]:
    plan = None
    if v.plan is not None:
        p = v.plan
        plan = {"side": p.side.value, "entry": p.entry, "stop": p.stop, "tp1": p.tp1, "tp2": p.tp2,
                "leverage": p.leverage, "qty": str(p.qty), "notional": round(p.notional, 2),
                "margin": round(p.margin, 2), "risk_usd": round(p.risk_usd, 2), "risk_pct": round(p.risk_pct, 3),
                "liquidation_price": p.liquidation_price, "stop_pct": round(p.stop_pct, 3)}
    return {"approved": v.approved, "profile": v.profile, "reasons": list(v.reasons), "plan": plan}
