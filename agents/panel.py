"""The decision panel: one structured call per model per cycle carrying every candidate.

`decide(member, provider, candidates, payload, ...)` never raises for model problems. It returns one
Vote per candidate: a valid vote, or an abstention whose `abstain_reason` is one of

    timeout         no valid answer within member.timeout_s (the limit covers retries and repair)
    refused         the model (or its provider's filter) refused
    invalid_output  malformed or schema-violating answer, still invalid after one repair attempt
    unknown_symbol  the answer named symbols that are not candidates (dropped) and not this one
    missing         the answer had no verdict for this candidate
    rate_limited    HTTP 429 after the bounded retries (or a retry-after beyond the time limit)
    transient       5xx / connection errors after the bounded retries
    unavailable     no provider (SDK missing, key absent, endpoint down, auth refused)
    budget          the member's per-cycle or per-day token budget is spent
    error           an unexpected exception in the adapter (logged with its traceback)

Every vote carries provider, model, prompt_version, latency (wall time of the member's whole
decision), tokens and cost (the call's totals split evenly over the candidates, so summing votes
gives the true totals) and `cached`. A cache hit returns the stored answer with cached=True, zero
tokens and zero cost, and makes no provider call.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from agents.budget import TokenBudget, estimate_tokens
from agents.hunter import to_market_symbol
from agents.llm.base import LLMResult, LLMTimeout, LLMUnavailable
from agents.prompt import build_decision_messages, prompt_version, repair_messages
from agents.schemas import CandidateVerdict, PanelAnswer
from core.errors import LLMOutputError, RateLimited, TransientError
from core.settings import PanelMember
from core.types import Action, Vote
from store.llm_cache import CachedResponse, ResponseCache, cache_key

log = logging.getLogger(__name__)

SCHEMA = PanelAnswer
MAX_RETRIES = 2
RETRY_AFTER_CAP_S = 20.0
GUARD_GRACE_S = 2.0


# --------------------------------------------------------------------------- decide


@dataclass
class _Spent:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, result: LLMResult[Any]) -> None:
        self.input_tokens += int(result.usage.input_tokens)
        self.output_tokens += int(result.usage.output_tokens)
        self.cost_usd += float(result.cost_usd or 0.0)

    def add_failed(self, exc: LLMOutputError) -> int:
        """What an unusable answer cost (the adapter puts it on the error); the tokens, for the budget."""
        tin, tout = int(getattr(exc, "input_tokens", 0) or 0), int(getattr(exc, "output_tokens", 0) or 0)
        self.input_tokens += tin
        self.output_tokens += tout
        self.cost_usd += float(getattr(exc, "cost_usd", 0.0) or 0.0)
        return tin + tout


def _split_int(total: int, n: int, i: int) -> int:
    base, rem = divmod(total, n)
    return base + (1 if i < rem else 0)


def _guarded_call(fn: Callable[[], Any], limit_s: float) -> Any:
    """Run fn() in a daemon thread and give up after limit_s (+ grace): a hard time limit even when an
    SDK ignores its own timeout. The abandoned thread finishes (or not) in the background."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    t = threading.Thread(target=run, name="llm-call", daemon=True)
    t.start()
    t.join(max(0.0, limit_s) + min(GUARD_GRACE_S, 0.5 + 0.1 * max(0.0, limit_s)))
    if t.is_alive():
        raise LLMTimeout(f"no answer within {limit_s:.1f}s (hard limit)")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _as_answer(parsed: Any) -> PanelAnswer:
    if isinstance(parsed, PanelAnswer):
        return parsed
    if hasattr(parsed, "model_dump"):
        parsed = parsed.model_dump()
    try:
        return PanelAnswer.model_validate(parsed)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "answer"
        raw = json.dumps(parsed, default=str) if not isinstance(parsed, str) else parsed
        raise LLMOutputError(f"schema violation at {where}: {first.get('msg', 'invalid')}", raw=raw) from None


def decide(
    member: PanelMember,
    provider: Any,
    candidates: Sequence[str],
    payload: Mapping[str, Any],
    *,
    cache: ResponseCache | None,
    budget: TokenBudget | None,
    now: datetime,
    use_cache: bool = True,
    max_retries: int = MAX_RETRIES,
    retry_after_cap_s: float = RETRY_AFTER_CAP_S,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Vote]:
    """One call for all `candidates`; one Vote per candidate (in the order given). Never raises for
    model problems (see the module docstring for the abstention reasons).

    `now` is the decision time (it is part of the payload the caller built). The token budget counts
    against the wall-clock UTC day, since that is when the money is spent, also when replaying the past."""
    started = time.monotonic()
    candidates = list(dict.fromkeys(candidates))
    version = prompt_version(member)
    prov_name = str(getattr(provider, "provider", None) or member.provider)
    model = str(getattr(provider, "model", None) or member.model)
    spent = _Spent()

    def elapsed() -> float:
        return round(time.monotonic() - started, 6)

    def share(i: int) -> dict[str, Any]:
        n = max(1, len(candidates))
        return {
            "input_tokens": _split_int(spent.input_tokens, n, i),
            "output_tokens": _split_int(spent.output_tokens, n, i),
            "cost_usd": spent.cost_usd / n,
        }

    def abstain_all(reason: str, detail: str) -> list[Vote]:
        # the budget logs its own single line per member and cycle
        log.log(logging.DEBUG if reason == "budget" else logging.WARNING,
                "panel: %s abstains on %d candidate(s): %s: %s", member.id, len(candidates), reason, detail[:300])
        lat = elapsed()
        return [
            Vote(member_id=member.id, symbol=s, action=None, abstain_reason=reason,
                 rationale=f"{reason}: {detail}"[:500], provider=prov_name, model=model,
                 prompt_version=version, latency_s=lat, **share(i))
            for i, s in enumerate(candidates)
        ]

    if not candidates:
        return []
    if provider is None:
        return abstain_all("unavailable", f"no provider for {member.provider}/{member.model} "
                                          "(SDK missing, key absent or endpoint not configured)")

    try:
        messages = build_decision_messages(payload, member)
    except Exception as exc:  # noqa: BLE001 - a payload that cannot be serialised is a bug; say so
        log.exception("panel: cannot build the messages for %s", member.id)
        return abstain_all("error", f"cannot build the prompt: {type(exc).__name__}: {exc}")
    key = cache_key(prov_name, model, version, messages, SCHEMA.__name__)

    if use_cache and cache is not None:
        try:
            rec = cache.get(key)
        except Exception as exc:  # noqa: BLE001 - a broken cache is a miss
            log.warning("panel: cache read failed for %s (%s); asking the model", member.id, exc)
            rec = None
        if rec is not None:
            try:
                answer = PanelAnswer.model_validate(rec.parsed)
            except ValidationError:
                log.warning("panel: cached answer for %s no longer validates; asking the model", member.id)
            else:
                return _votes(member, candidates, answer, prov_name, model, version, elapsed(), share,
                              cached=True)

    if budget is not None:
        est = estimate_tokens(sum(len(m.content) for m in messages), len(candidates))
        if not budget.allow(member.id, est):
            why = budget.refusal(member.id, est) or "token budget spent"
            return abstain_all("budget", why)

    deadline = started + float(member.timeout_s)
    attempt_msgs = list(messages)
    repaired = False
    retries = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return abstain_all("timeout", f"no valid answer within {member.timeout_s:g}s")
        try:
            result = _guarded_call(
                lambda m=attempt_msgs, r=remaining: provider.ask(m, SCHEMA, timeout_s=r), remaining)
            spent.add(result)
            if budget is not None:
                budget.spend(member.id, result.usage.input_tokens + result.usage.output_tokens)
            answer = _as_answer(result.parsed)
        except RateLimited as exc:
            # the provider's retry-after is honoured as given (retrying earlier only earns another 429);
            # the cap bounds only our own backoff when the provider names no wait
            if exc.retry_after is not None:
                wait = max(0.0, float(exc.retry_after))
            else:
                wait = min(0.5 * 2**retries, retry_after_cap_s)
            if retries >= max_retries:
                return abstain_all("rate_limited", f"{exc} (after {retries} retries)")
            if time.monotonic() + wait >= deadline:
                return abstain_all("rate_limited", f"{exc}; retry-after {wait:.1f}s is beyond the time limit")
            retries += 1
            log.info("panel: %s rate limited; retry %d/%d in %.1fs", member.id, retries, max_retries, wait)
            sleep(wait)
            continue
        except TransientError as exc:
            if retries >= max_retries:
                return abstain_all("transient", f"{exc} (after {retries} retries)")
            wait = min(0.5 * 2**retries, retry_after_cap_s)
            if time.monotonic() + wait >= deadline:
                return abstain_all("timeout", f"{exc}; no time left to retry")
            retries += 1
            log.info("panel: %s transient error (%s); retry %d/%d in %.1fs",
                     member.id, exc, retries, max_retries, wait)
            sleep(wait)
            continue
        except (LLMTimeout, TimeoutError) as exc:
            return abstain_all("timeout", str(exc) or f"no answer within {member.timeout_s:g}s")
        except LLMUnavailable as exc:
            return abstain_all("unavailable", str(exc))
        except LLMOutputError as exc:
            # an unusable answer still cost tokens: count it in the vote and against the budgets
            tokens = spent.add_failed(exc)
            if budget is not None and tokens:
                budget.spend(member.id, tokens)
            if exc.reason == "refused":
                return abstain_all("refused", str(exc))
            if repaired:
                return abstain_all("invalid_output", f"{exc} (after one repair attempt)")
            repaired = True
            raw = getattr(exc, "raw", "") or ""
            log.info("panel: %s gave an invalid answer (%s); asking once for a corrected JSON", member.id, exc)
            attempt_msgs = repair_messages(messages, raw, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - never let one model break the cycle
            log.exception("panel: unexpected error from %s", member.id)
            return abstain_all("error", f"{type(exc).__name__}: {exc}")
        break

    if use_cache and cache is not None:
        record = CachedResponse(
            key=key, provider=prov_name, model=model, prompt_version=version,
            raw=result.raw or "", parsed=answer.model_dump(mode="json"),
            input_tokens=spent.input_tokens, output_tokens=spent.output_tokens,
            cost_usd=spent.cost_usd, latency_s=float(result.latency_s or 0.0),
            schema_name=SCHEMA.__name__,
        )
        try:
            cache.put(key, record)
        except Exception as exc:  # noqa: BLE001
            log.warning("panel: cache write failed for %s (%s)", member.id, exc)
    return _votes(member, candidates, answer, prov_name, model, version, elapsed(), share, cached=False)


def _votes(
    member: PanelMember,
    candidates: list[str],
    answer: PanelAnswer,
    prov_name: str,
    model: str,
    version: str,
    latency: float,
    share: Callable[[int], dict[str, Any]],
    *,
    cached: bool,
) -> list[Vote]:
    by_symbol: dict[str, CandidateVerdict] = {}
    unknown: list[str] = []
    for v in answer.verdicts:
        sym = v.symbol if v.symbol in candidates else to_market_symbol(v.symbol, candidates)
        if sym is None:
            unknown.append(v.symbol)
            continue
        if sym in by_symbol:
            log.info("panel: %s gave a second verdict for %s; keeping the first", member.id, sym)
            continue
        by_symbol[sym] = v
    if unknown:
        log.warning("panel: %s named symbol(s) not among the candidates, dropped: %s",
                    member.id, ", ".join(sorted(unknown))[:300])
    votes: list[Vote] = []
    common = {"provider": prov_name, "model": model, "prompt_version": version, "latency_s": latency,
              "cached": cached}
    for i, sym in enumerate(candidates):
        cost = share(i) if not cached else {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        v = by_symbol.get(sym)
        if v is None:
            reason = "unknown_symbol" if unknown else "missing"
            detail = (f"answer named unknown symbol(s) {', '.join(sorted(unknown))[:200]} and no verdict for "
                      f"{sym}") if unknown else f"answer had no verdict for {sym}"
            votes.append(Vote(member_id=member.id, symbol=sym, action=None, abstain_reason=reason,
                              rationale=detail, **common, **cost))
            continue
        votes.append(Vote(
            member_id=member.id,
            symbol=sym,
            action=Action(v.action),
            confidence=float(v.confidence),
            rationale=v.rationale.strip(),
            key_factors=tuple(f.strip() for f in v.key_factors),
            **common,
            **cost,
        ))
    return votes


# --------------------------------------------------------------------------- the whole panel


def run_panel(
    members: Sequence[PanelMember],
    providers: Mapping[str, Any],
    candidates: Sequence[str],
    payload: Mapping[str, Any],
    *,
    cache: ResponseCache | None,
    budget: TokenBudget | None,
    now: datetime,
    use_cache: bool = True,
    max_workers: int | None = None,
    **kwargs: Any,
) -> dict[str, list[Vote]]:
    """decide() for every member concurrently (threads); {member_id: votes}, in the members' order.
    `providers[member.id]` is the member's provider, or None/missing when unavailable. For use outside
    Prefect (backtest, bench); the cycle flow fans out one Prefect task per member instead."""
    if not members:
        return {}
    out: dict[str, list[Vote]] = {}
    with ThreadPoolExecutor(max_workers=max_workers or len(members), thread_name_prefix="panel") as pool:
        futs = {
            m.id: pool.submit(decide, m, providers.get(m.id), candidates, payload, cache=cache,
                              budget=budget, now=now, use_cache=use_cache, **kwargs)
            for m in members
        }
        for m in members:
            try:
                out[m.id] = futs[m.id].result()
            except Exception as exc:  # noqa: BLE001 - decide never raises; belt and braces
                log.exception("panel: %s failed", m.id)
                out[m.id] = [Vote(member_id=m.id, symbol=s, action=None, abstain_reason="error",
                                  rationale=f"error: {exc}"[:500], provider=m.provider, model=m.model)
                             for s in candidates]
    return out


def summarize_votes(votes: Iterable[Vote]) -> dict[str, Any]:
    """Totals for the cycle's cost line and artifact: votes, valid, cached, abstentions by reason,
    tokens, cost (USD) and the slowest member's latency."""
    vs = list(votes)
    return {
        "votes": len(vs),
        "valid": sum(1 for v in vs if v.valid),
        "cached": sum(1 for v in vs if v.cached),
        "abstained": dict(sorted(Counter(v.abstain_reason for v in vs if not v.valid).items())),
        "input_tokens": sum(v.input_tokens for v in vs),
        "output_tokens": sum(v.output_tokens for v in vs),
        "cost_usd": math.fsum(v.cost_usd for v in vs),
        "max_latency_s": max((v.latency_s for v in vs), default=0.0),
    }
