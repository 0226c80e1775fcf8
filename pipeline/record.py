"""The cycle's record and report: its lifecycle row (started, completed, failed) and the JSON
shapes of votes, decisions, verdicts, costs and the panel's status line."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from core.types import Decision, NewsReport, RiskVerdict, Vote
from pipeline.account import Factory
from store import repo
from store.db import transaction
from store.models import CycleRow

log = logging.getLogger("quorum.cycle")


def panel_status_line(statuses: Sequence[Any], votes: Sequence[Vote],
                      decisions: Mapping[str, Decision] | None = None) -> str:
    """One line on the panel: who was asked, how many votes counted, and whether the math score
    decided (no member configured, every member abstained, or no quorum on some candidates)."""
    n_av = sum(1 for st in statuses if st.available)
    if not statuses:
        return "panel: no members configured; the cycle decides on the math score alone"
    if n_av == 0:
        return (f"panel: 0/{len(statuses)} models configured; the panel abstains and the cycle decides on the "
                "math score alone (set OPENAI_API_KEY, ANTHROPIC_API_KEY, XAI_API_KEY, DEEPSEEK_API_KEY or OLLAMA_HOST)")
    valid = sum(1 for v in votes if v.valid)
    line = f"panel: {n_av}/{len(statuses)} models available, {valid}/{len(votes)} valid votes"
    if votes and valid == 0:
        reasons = sorted({v.abstain_reason or "abstained" for v in votes})
        return f"{line}; every member abstained ({', '.join(reasons)}): the math score decided alone"
    fell_back = sorted(s for s, d in (decisions or {}).items() if d.fallback_to_math)
    if fell_back:
        return f"{line}; no quorum on {', '.join(fell_back)}: the math score decided there"
    return line


STALE_AFTER = timedelta(hours=6)  # a running row whose owner cannot be checked (another host) is stale after this


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def owner_alive(row: CycleRow, now: datetime) -> bool:
    """Is the process that started this running cycle still there? On this host: its pid; else
    (or for rows without an owner) until STALE_AFTER has passed since it started."""
    owner = (row.summary or {}).get("owner") or {}
    started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=UTC)
    if now - started >= STALE_AFTER:
        return False
    if owner.get("host") == socket.gethostname() and owner.get("pid"):
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's live process
            return True
    return True


def stale_cycles(factory: Factory, mode: str | None = None) -> list[CycleRow]:
    """Cycles still marked running whose process is gone (killed, lost power...)."""
    now = datetime.now(UTC)
    with transaction(factory) as s:
        q = select(CycleRow).where(CycleRow.status == "running")
        if mode is not None:
            q = q.where(CycleRow.mode == mode)
        return [r for r in s.scalars(q) if not owner_alive(r, now)]


def reconcile_stale(factory: Factory, mode: str) -> list[str]:
    """Mark the cycles left `running` by a process that is gone as failed, with the reason."""
    stale = stale_cycles(factory, mode)
    if not stale:
        return []
    now = datetime.now(UTC)
    with transaction(factory) as s:
        for old in stale:
            row = s.get(CycleRow, old.id)
            if row is None or row.status != "running":
                continue
            owner = (row.summary or {}).get("owner") or {}
            row.status = "failed"
            row.finished_at = now
            row.summary = {**(row.summary or {}), "error": (
                f"stopped without finishing (process {owner.get('pid', '?')} on {owner.get('host', '?')} is gone: "
                f"killed or crashed); marked failed at {now:%Y-%m-%d %H:%M:%S} UTC by the next cycle")}
    log.info("marked %d stale running cycle(s) failed: %s", len(stale), ", ".join(r.id for r in stale))
    return [r.id for r in stale]


def start_cycle(factory: Factory, cycle_id: str, as_of: datetime, mode: str, source: str,
                flow_run_id: str | None) -> list[str]:
    """Reconcile the cycles a dead process left running, then record this one as running (with its
    owner, so a later start can tell whether it is still alive). Returns the reconciled ids."""
    reconciled = reconcile_stale(factory, mode)
    with transaction(factory) as s:
        row = repo.start_cycle(s, cycle_id, as_of, mode, source, datetime.now(UTC), flow_run_id)
        row.summary = {"owner": _owner()}
    return reconciled


def fail_cycle(factory: Factory, cycle_id: str, error: BaseException) -> None:
    """Mark the cycle failed with the error (when the database still answers; else the next start
    reconciles it)."""
    try:
        with transaction(factory) as s:
            row = s.get(CycleRow, cycle_id)
            if row is not None and row.status == "running":
                row.status = "failed"
                row.finished_at = datetime.now(UTC)
                row.summary = {**(row.summary or {}), "error": f"{type(error).__name__}: {str(error)[:300]}"}
    except Exception as exc:  # noqa: BLE001 - the original error is what matters
        log.debug("could not mark cycle %s failed: %s", cycle_id, exc)


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


def reuse_prior(factory: Factory, settings: Any, as_of: datetime, symbols: Sequence[str],
                members: Sequence[Any]) -> dict[str, repo.StoredDecision] | None:
    """The stored result of this decision time, when a rerun should reuse it: a completed cycle of
    the same mode at the same time decided every candidate, with the same risk profile and the same
    panel (members and prompt versions). A rerun then sees the same facts and gives the same result
    (the positions it opened are not new facts for its own decision) and calls no model again."""
    if not symbols:
        return None
    from agents.prompt import prompt_version

    with transaction(factory) as s:
        prior = repo.stored_decisions(s, settings.mode, as_of, symbols)
    if set(prior) != set(symbols):
        return None
    want = {(m.id, prompt_version(m)) for m in members}
    for sd in prior.values():
        if sd.verdict.profile != settings.risk_profile:
            return None
        if {(v.member_id, v.prompt_version) for v in sd.votes} != want:
            return None
    return prior


def cost_summary(votes: Sequence[Vote], news: Mapping[str, NewsReport] | None = None) -> dict[str, Any]:
    """Per-member (and news analyst) tokens and cost of this cycle; cached answers cost nothing."""
    members: dict[str, dict[str, Any]] = {}
    spent = [r for r in (news or {}).values() if r.tokens or r.cost_usd]
    if spent:
        members["news"] = {"tokens": sum(r.tokens for r in spent), "cost_usd": round(sum(r.cost_usd for r in spent), 6),
                           "latency_s": 0.0, "cached": False}
    for v in votes:
        m = members.setdefault(v.member_id, {"tokens": 0, "cost_usd": 0.0, "latency_s": 0.0, "cached": v.cached})
        if v.cached:  # served from the cache or reused from the stored decision: nothing spent now
            continue
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
