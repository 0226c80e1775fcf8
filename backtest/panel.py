"""The panel inside the bar loop: cached or live votes, the same prompt and cache key as the live
cycle (a member's own decision for its shadow account is `pipeline.stages.member_decision`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from core.settings import PanelMember, Settings
from core.types import Vote

# ------------------------------------------------------------------------------------------------
# the panel in the loop


def panel_setup(settings: Settings, panel_mode: str, members: Sequence[PanelMember] | None,
                providers: Mapping[str, Any] | None, cache: Any) -> tuple[list[PanelMember], dict[str, Any], Any,
                                                                          list[str]]:
    """The members a backtest asks (none in math mode), their providers (live: built from the environment
    unless given; members without a key or endpoint are left out and the run says so), the per-cycle
    token budget (live) and the run's notes."""
    panel_members = list(members if members is not None else settings.panel) if panel_mode != "math" else []
    if panel_mode == "cache" and cache is None:
        raise ValueError("panel mode 'cache' needs a response cache (cache=...)")
    budget = None
    notes: list[str] = []
    provs = dict(providers or {})
    if panel_mode == "live":
        from agents.budget import TokenBudget

        budget = TokenBudget(per_cycle=settings.token_budget_cycle or None, per_day=None)
        if providers is None:
            from agents.llm.registry import build_provider, member_status

            provs = {m.id: build_provider(m) for m in panel_members if member_status(m).available}
        missing = [m.id for m in panel_members if provs.get(m.id) is None]
        if missing:
            notes.append(f"live: {len(panel_members) - len(missing)}/{len(panel_members)} panel members available; "
                         f"not called (no key/endpoint): {', '.join(missing)}")
            panel_members = [m for m in panel_members if provs.get(m.id) is not None]
    return panel_members, provs, budget, notes


class _CacheOnly:
    """A provider that never answers: with `agents.panel.decide` it turns every cache miss into an
    abstention (relabelled "cache_miss"), while a hit returns the stored answer."""

    def __init__(self, member: PanelMember) -> None:
        self.provider = member.provider
        self.model = member.model

    def ask(self, messages: Any, schema: Any, *, timeout_s: float) -> Any:
        from agents.llm.base import LLMUnavailable

        raise LLMUnavailable("cache_miss")


def panel_votes(mode: str, members: Sequence[PanelMember], providers: Mapping[str, Any], candidates: list[str],
                 payload: Mapping[str, Any], cache: Any, budget: Any, now: datetime) -> list[Vote]:
    from agents.panel import decide as panel_decide

    votes: list[Vote] = []
    for m in members:  # sequential: deterministic order, and a backtest is not latency-bound
        prov = _CacheOnly(m) if mode == "cache" else providers.get(m.id)
        vs = panel_decide(m, prov, candidates, payload, cache=cache, budget=budget if mode == "live" else None,
                          now=now, use_cache=True)
        if mode == "cache":
            vs = [replace(v, abstain_reason="cache_miss") if v.abstain_reason == "unavailable" else v for v in vs]
        votes.extend(vs)
    return votes


def no_news_note_for(settings: Settings) -> str:
    """The note of the 'unavailable' news report the live cycle builds (tasks.fanout.news_reports)
    when its news analyst is off, so that the panel prompt, hence the cache key, is the same."""
    try:
        from agents.llm.registry import member_status
        from tasks.panel import news_member

        return f"news analyst off: {member_status(news_member(settings)).reason}"
    except Exception:  # noqa: BLE001 - the panel tasks module is optional here
        return "news analyst off"
