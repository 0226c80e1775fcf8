"""LLM coin hunter: a web-searching model (Perplexity Sonar through OpenRouter by default) proposes
tickers with reasons; every ticker is checked against the exchange's markets and the liquidity
filters before it becomes a Candidate. Hallucinated or illiquid tickers are dropped and logged.

`hunt(...)` returns None when the model cannot be asked or gives nothing usable, so the caller falls
back to the volume scanner (agents/scanner.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from hashlib import sha256
from pathlib import Path
from typing import Any

from agents.llm.base import LLMTimeout, LLMUnavailable, Message
from agents.schemas import HunterAnswer
from core.errors import LLMOutputError, QuorumError, TransientError
from core.types import Candidate

log = logging.getLogger(__name__)

PROMPTS = Path(__file__).resolve().parent / "prompts"
HUNTER_PROMPT = "hunter_v1"
_QUOTES = ("USDT", "USDC", "USD")
_SUFFIXES = (".P", "-PERP", "_PERP", "PERP", "-SWAP", "_SWAP", "-PERPETUAL")


@lru_cache(maxsize=16)
def load_prompt(name: str) -> tuple[str, str]:
    """(text, version) of agents/prompts/<name>.md; version = "<name>@<8 hex of sha256(text)>"."""
    text = (PROMPTS / f"{name}.md").read_text(encoding="utf-8").strip()
    return text, f"{name}@{sha256(text.encode('utf-8')).hexdigest()[:8]}"


def to_market_symbol(text: str, markets: Iterable[str]) -> str | None:
    """Map a ticker as a model writes it ("BTC", "btcusdt", "$BTC", "BTC/USDT", "BTC-USDT-SWAP",
    "BTC/USDT:USDT") to the exchange's perpetual symbol ("BTC/USDT:USDT"), or None when the
    exchange lists no such market. Pure string handling; `markets` is the exchange's symbol list."""
    index = {m.upper(): m for m in markets}
    s = "".join(str(text).split()).upper().lstrip("$")
    if not s:
        return None
    if s in index and ":" in s:
        return index[s]
    for suf in _SUFFIXES:
        if s.endswith(suf) and len(s) > len(suf):
            s = s[: -len(suf)]
            break
    settle = None
    if ":" in s:
        s, settle = s.split(":", 1)
    if "/" in s:
        base, quote = s.split("/", 1)
    elif "-" in s or "_" in s:
        base, quote = s.replace("_", "-").split("-", 1)
        quote = quote.split("-", 1)[0]
    else:
        base, quote = s, ""
        for q in _QUOTES:
            if s.endswith(q) and len(s) > len(q):
                base, quote = s[: -len(q)], q
                break
    if not base:
        return None
    quotes = [quote] if quote else []
    quotes += [q for q in ("USDT", "USDC") if q not in quotes]
    tries: list[str] = []
    for q in quotes:
        for b in (base, f"1000{base}"):
            tries.append(f"{b}/{q}:{settle or q}")
    for t in tries:
        if t in index:
            return index[t]
    return None


def _get(info: Any, *names: str) -> Any:
    for n in names:
        if isinstance(info, Mapping) and n in info:
            return info[n]
        if hasattr(info, n):
            return getattr(info, n)
    return None


def validate_hunter_answer(
    answer: HunterAnswer,
    markets: Iterable[str],
    tickers: Mapping[str, Any],
    min_volume: float,
    max_spread: float,
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Keep the answer's tickers that the exchange lists and that pass the liquidity filters.

    `tickers[symbol]` is a TickerInfo-like object or dict with `volume_24h_quote` (USD) and
    `spread_pct` (percent). Returns (candidates in the answer's order, dropped as (ticker, reason)).
    """
    markets = list(markets)
    out: list[Candidate] = []
    dropped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in answer.tickers:
        symbol = to_market_symbol(item.symbol, markets)
        if symbol is None:
            dropped.append((item.symbol, "not listed as a perpetual market on the exchange"))
            continue
        if symbol in seen:
            dropped.append((item.symbol, f"duplicate of {symbol}"))
            continue
        info = tickers.get(symbol)
        if info is None:
            dropped.append((item.symbol, f"no ticker data for {symbol}"))
            continue
        vol = float(_get(info, "volume_24h_quote", "quoteVolume", "volume") or 0.0)
        spread = _get(info, "spread_pct")
        spread = float(spread) if spread is not None else float("inf")
        if vol < min_volume:
            dropped.append((item.symbol, f"24h volume ${vol:,.0f} < ${min_volume:,.0f}"))
            continue
        if spread > max_spread:
            dropped.append((item.symbol, f"spread {spread:.3f}% > {max_spread:.3f}%"))
            continue
        seen.add(symbol)
        out.append(Candidate(symbol=symbol, reason=item.reason.strip() or "LLM hunter",
                             source="llm_hunter", volume_24h_quote=vol, spread_pct=spread))
    for t, why in dropped:
        log.info("hunter: dropped %s: %s", t, why)
    return out, dropped


def hunter_messages(now: datetime, max_candidates: int) -> list[Message]:
    text, _ = load_prompt(HUNTER_PROMPT)
    user = json.dumps(
        {"now_utc": now.isoformat(), "max_tickers": max_candidates,
         "task": "List the coins most worth analysing now, with one reason each."},
        sort_keys=True,
    )
    return [Message("system", text), Message("user", user)]


def hunt_answer(
    provider: Any,
    *,
    now: datetime,
    max_candidates: int = 10,
    timeout_s: float = 90.0,
    raise_errors: bool = False,
) -> HunterAnswer | None:
    """Ask the hunter model; None (logged) when there is no provider or the call fails.
    With raise_errors=True a failed call raises instead (so a cached task never caches a blip)."""
    if provider is None:
        log.info("hunter: no provider configured; falling back to the volume scanner")
        return None
    try:
        result = provider.ask(hunter_messages(now, max_candidates), HunterAnswer, timeout_s=timeout_s)
        answer = result.parsed if isinstance(result.parsed, HunterAnswer) else HunterAnswer.model_validate(
            result.parsed)
    except (LLMOutputError, TransientError, LLMTimeout, LLMUnavailable, TimeoutError, QuorumError) as exc:
        log.warning("hunter: %s (%s); falling back to the volume scanner", type(exc).__name__, exc)
        if raise_errors:
            raise
        return None
    except Exception as exc:  # noqa: BLE001 - a hunter failure must never stop the cycle
        log.warning("hunter: unexpected %s (%s); falling back to the volume scanner", type(exc).__name__, exc)
        if raise_errors:
            raise
        return None
    log.info("hunter: %d ticker(s) from %s/%s ($%.4f)", len(answer.tickers), getattr(result, "provider", "?"),
             getattr(result, "model", "?"), float(getattr(result, "cost_usd", 0.0) or 0.0))
    return answer


def hunt(
    provider: Any,
    markets: Iterable[str],
    tickers: Mapping[str, Any],
    *,
    now: datetime,
    min_volume: float,
    max_spread: float,
    max_candidates: int = 10,
    timeout_s: float = 90.0,
) -> list[Candidate] | None:
    """Ask the hunter model and validate its tickers. None (logged) when there is no provider, the
    call fails, or no ticker survives validation: the caller then uses the volume scanner."""
    answer = hunt_answer(provider, now=now, max_candidates=max_candidates, timeout_s=timeout_s)
    if answer is None:
        return None
    candidates, dropped = validate_hunter_answer(answer, markets, tickers, min_volume, max_spread)
    if not candidates:
        log.warning("hunter: none of %d ticker(s) passed validation; falling back to the volume scanner",
                    len(answer.tickers))
        return None
    log.info("hunter: %d candidate(s) kept, %d dropped", len(candidates), len(dropped))
    return candidates[:max_candidates]
