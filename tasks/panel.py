"""Thin Prefect tasks for the LLM side: one decision task per panel member, the coin hunter (cached
4 h) and the news analyst (cached 1 h per symbol). Each task calls one plain function.

The process-wide runtime (providers per member, the response cache, the token budget) is built
lazily from settings by `runtime()`: the response cache is the database's `llm_responses` table
(with Redis in front when QUORUM_REDIS_URL / settings.redis_url is set), the day's token totals
live in `llm_token_usage`, and the per-cycle budget restarts whenever a new decision time arrives.

Retries for model calls live inside agents.panel.decide (bounded, honouring retry-after), so the
decision task has no Prefect retries; its Prefect timeout is only a backstop above the member's
own time limit (use `decision_task_for(member)` for a per-member timeout).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from agents.budget import TokenBudget
from agents.hunter import hunt_answer, validate_hunter_answer
from agents.news import analyse_news
from agents.panel import decide
from agents.schemas import HunterAnswer
from core.settings import PanelMember, Settings
from core.types import Candidate, NewsReport, Vote
from store.llm_cache import ResponseCache

log = logging.getLogger(__name__)

HUNTER_CACHE = timedelta(hours=4)
NEWS_CACHE = timedelta(hours=1)


# --------------------------------------------------------------------------- runtime


@dataclass
class PanelRuntime:
    cache: ResponseCache | None
    budget: TokenBudget | None
    cycle: str | None = None


_lock = threading.Lock()
_override: PanelRuntime | None = None
_runtimes: dict[tuple[Any, ...], PanelRuntime] = {}
_providers: dict[str, Any] = {}


def _runtime_key(settings: Settings) -> tuple[Any, ...]:
    return (settings.database_url, settings.redis_url or os.environ.get("QUORUM_REDIS_URL"),
            settings.token_budget_cycle, settings.token_budget_day)


def runtime(settings: Settings | None = None) -> PanelRuntime:
    """The response cache and token budget for these settings' database/Redis/budgets (built once per
    distinct configuration in the process; settings default to load_settings())."""
    if _override is not None:
        return _override
    if settings is None:
        from core.settings import load_settings

        settings = load_settings()
    key = _runtime_key(settings)
    with _lock:
        rt = _runtimes.get(key)
    if rt is None:
        built = _build_runtime(settings)
        with _lock:
            rt = _runtimes.setdefault(key, built)
    return rt


def set_runtime(rt: PanelRuntime | None) -> None:
    """Force one runtime for every call (tests, the bench); None goes back to building them from
    settings (and forgets the ones built so far, and the providers)."""
    global _override
    with _lock:
        _override = rt
        _runtimes.clear()
        _providers.clear()


def _build_runtime(settings: Settings) -> PanelRuntime:
    from agents.budget import InMemoryUsageStore
    from store.llm_cache import (
        CachedTokenUsageStore,
        SqlTokenUsageStore,
        build_response_cache,
        token_prefix,
    )

    factory = None
    try:
        from store.db import get_session_factory

        factory = get_session_factory(settings)
    except Exception as exc:  # noqa: BLE001 - no database: an in-process cache, in-process day totals
        log.warning("llm cache: database unavailable (%s); caching answers in process only", exc)
    redis_url = settings.redis_url or os.environ.get("QUORUM_REDIS_URL")
    cache = build_response_cache(factory, redis_url)
    # the database is the record of the day's tokens; Redis, when configured, only a cache in front
    usage_store: Any = SqlTokenUsageStore(factory) if factory is not None else InMemoryUsageStore()
    if redis_url:
        try:
            usage_store = CachedTokenUsageStore.from_url(usage_store, redis_url,
                                                         prefix=token_prefix(settings.database_url))
        except Exception as exc:  # noqa: BLE001 - redis missing or a bad URL: the record alone
            log.warning("token budget: redis not usable (%s); using the database record only", type(exc).__name__)
    budget = TokenBudget(settings.token_budget_cycle, settings.token_budget_day, store=usage_store)
    return PanelRuntime(cache=cache, budget=budget)


def provider_for(member: PanelMember) -> Any:
    """The member's adapter (built once per process), or None when unavailable (logged)."""
    key = member.model_dump_json()
    with _lock:
        if key in _providers:
            return _providers[key]
    from agents.llm.base import LLMUnavailable
    from agents.llm.registry import build_provider

    try:
        provider = build_provider(member)
    except LLMUnavailable as exc:
        log.warning("panel: %s unavailable: %s", member.id, exc)
        provider = None
    with _lock:
        _providers[key] = provider
    return provider


def decide_member(member: PanelMember, candidates: Sequence[str], payload: Mapping[str, Any], now: datetime,
                  use_cache: bool = True, settings: Settings | None = None) -> list[Vote]:
    """decide() with the process runtime; a new decision time starts a new budget cycle."""
    rt = runtime(settings)
    cycle = now.isoformat()
    with _lock:
        if rt.budget is not None and rt.cycle != cycle:
            rt.budget.new_cycle()
            rt.cycle = cycle
    return decide(member, provider_for(member), list(candidates), payload, cache=rt.cache, budget=rt.budget,
                  now=now, use_cache=use_cache)


def _bucket(now: datetime, span: timedelta) -> str:
    ts = now.astimezone(UTC).timestamp() if now.tzinfo else now.replace(tzinfo=UTC).timestamp()
    step = span.total_seconds()
    return datetime.fromtimestamp(ts // step * step, UTC).isoformat()


def hunter_member(settings: Settings) -> PanelMember:
    return PanelMember(id="hunter", provider="openrouter", model=settings.hunter_model, timeout_s=90)


def news_member(settings: Settings) -> PanelMember:
    return PanelMember(id="news", provider="openrouter", model=settings.news_model, timeout_s=60)


def ask_hunter(settings: Settings, now: datetime) -> HunterAnswer | None:
    member = hunter_member(settings)
    return hunt_answer(provider_for(member), now=now, max_candidates=settings.scanner_top_n,
                       timeout_s=member.timeout_s, raise_errors=True)


def hunted_candidates(answer: HunterAnswer | None, markets: Sequence[str], tickers: Mapping[str, Any],
                      settings: Settings) -> list[Candidate] | None:
    """The hunter's answer validated against this cycle's markets and tickers; None -> volume scanner."""
    if answer is None:
        return None
    kept, _ = validate_hunter_answer(answer, markets, tickers, settings.min_volume_usd, settings.max_spread_pct)
    return kept[: settings.scanner_top_n] or None


# --------------------------------------------------------------------------- cache keys


def _hunter_key(context: Any, parameters: dict[str, Any]) -> str:
    s: Settings = parameters["settings"]
    raw = f"hunter|{s.hunter_model}|{s.scanner_top_n}|{_bucket(parameters['now'], HUNTER_CACHE)}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _news_key(context: Any, parameters: dict[str, Any]) -> str:
    m: PanelMember = parameters["member"]
    raw = f"news|{m.provider}|{m.model}|{parameters['symbol']}|{_bucket(parameters['now'], NEWS_CACHE)}"
    return hashlib.sha256(raw.encode()).hexdigest()


# --------------------------------------------------------------------------- tasks


@task(name="decide", task_run_name="decide-{member.id}", retries=0, cache_policy=NO_CACHE)
def decision_task(member: PanelMember, candidates: list[str], payload: dict[str, Any], now: datetime,
                  use_cache: bool = True, settings: Settings | None = None) -> list[Vote]:
    return decide_member(member, candidates, payload, now, use_cache, settings)


def decision_task_for(member: PanelMember):  # type: ignore[no-untyped-def]
    """The decision task for `member`. Its time limit is enforced inside agents.panel.decide (a guard
    thread around the SDK call); a Prefect task timeout cannot interrupt a blocking call in a worker
    thread (Prefect warns on every run), so none is set here."""
    return decision_task


@task(name="coin-hunter", cache_key_fn=_hunter_key, cache_expiration=HUNTER_CACHE)
def hunter_task(settings: Settings, now: datetime) -> HunterAnswer | None:
    """The hunter's raw answer, cached 4 h per hunter model and 4-hour window of `now`; validate it each
    cycle with `hunted_candidates` (markets and liquidity change). None without a hunter provider; a
    failed call raises (a failed run is not cached): fall back to the volume scanner."""
    return ask_hunter(settings, now)


@task(name="news", task_run_name="news-{symbol}", cache_key_fn=_news_key, cache_expiration=NEWS_CACHE)
def news_task(member: PanelMember, symbol: str, now: datetime) -> NewsReport:
    """The news report for one symbol, cached 1 h per (model, symbol, hour of `now`). Without a provider
    the report says unavailable; a failed call raises (a failed run is not cached)."""
    return analyse_news(provider_for(member), symbol, now, timeout_s=member.timeout_s, raise_errors=True)
