"""News analyst: the last 7 days of news per symbol from a web-searching model, scored deterministically.

Score mapping (`news_score`): each event's impact (-2..+2) decays by half every `half_life_h` hours
(24 by default): decayed = impact · 0.5 ** (age_h / half_life_h). The score is the sum of decayed
impacts divided by 2, clipped to [-1, 1]. So one fresh -2 event scores -1.0, a -2 from 24 h ago
counts as -1 and scores -0.5, and two fresh +2 events saturate at +1.
Events dated after `now` or more than 7 days before it are dropped (and never scored).
`critical_negative` is set when a critical event with negative impact is at most
`critical_max_age_h` (72 h by default) old: risk may veto entries or close positions on it.

Web text is data, never instructions: the prompt says so and the model's answer is only ever read
through the NewsAnswer schema; the deterministic risk step has the last word.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.hunter import load_prompt
from agents.llm.base import Message
from agents.schemas import NewsAnswer, NewsItem
from core.types import NewsEvent, NewsReport

log = logging.getLogger(__name__)

NEWS_PROMPT = "news_v1"
WINDOW = timedelta(days=7)


def _parse_date(text: str) -> datetime | None:
    s = str(text).strip()
    if not s:
        return None
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def in_window(events: Iterable[NewsEvent], now: datetime) -> list[NewsEvent]:
    """Events dated within the 7 days up to `now` (inclusive), newest first."""
    keep = [e for e in events if now - WINDOW <= e.date <= now]
    return sorted(keep, key=lambda e: (e.date, e.headline), reverse=True)


def news_score(events: Iterable[NewsEvent], now: datetime, half_life_h: float = 24.0) -> float:
    """Σ impact·0.5^(age_h/half_life_h) / 2, clipped to [-1, 1]; only events within the window."""
    total = 0.0
    for e in in_window(events, now):
        age_h = (now - e.date).total_seconds() / 3600.0
        impact = max(-2, min(2, int(e.impact)))
        total += impact * 0.5 ** (age_h / half_life_h)
    return max(-1.0, min(1.0, total / 2.0))


def critical_negative(events: Iterable[NewsEvent], now: datetime, max_age_h: float = 72.0) -> bool:
    return any(
        e.critical and e.impact < 0 and (now - e.date) <= timedelta(hours=max_age_h)
        for e in in_window(events, now)
    )


def events_from_answer(answer: NewsAnswer, now: datetime) -> tuple[list[NewsEvent], list[tuple[str, str]]]:
    """Convert the model's items; an item with an unreadable date, in the future or older than
    7 days is dropped as (headline, reason)."""
    kept: list[NewsEvent] = []
    dropped: list[tuple[str, str]] = []
    for item in answer.events:
        ev = _event(item)
        if ev is None:
            dropped.append((item.headline, f"unreadable date {item.date!r}"))
        elif ev.date > now:
            dropped.append((item.headline, f"dated in the future ({ev.date.isoformat()})"))
        elif ev.date < now - WINDOW:
            dropped.append((item.headline, f"older than 7 days ({ev.date.isoformat()})"))
        else:
            kept.append(ev)
    return kept, dropped


def _event(item: NewsItem) -> NewsEvent | None:
    dt = _parse_date(item.date)
    if dt is None:
        return None
    return NewsEvent(date=dt, headline=item.headline.strip(), impact=int(item.impact),
                     reason=item.reason.strip(), critical=bool(item.critical), source=item.source.strip())


def build_report(symbol: str, now: datetime, events: Iterable[NewsEvent], *, half_life_h: float = 24.0,
                 critical_max_age_h: float = 72.0, note: str = "") -> NewsReport:
    evs = tuple(in_window(events, now))
    return NewsReport(
        symbol=symbol,
        as_of=now,
        events=evs,
        score=news_score(evs, now, half_life_h),
        critical_negative=critical_negative(evs, now, critical_max_age_h),
        available=True,
        note=note,
    )


def news_messages(symbol: str, now: datetime) -> list[Message]:
    text, _ = load_prompt(NEWS_PROMPT)
    base = symbol.split("/")[0]
    user = json.dumps(
        {"coin": base, "symbol": symbol, "now_utc": now.isoformat(),
         "since_utc": (now - WINDOW).isoformat(),
         "task": f"Report the news about {base} between since_utc and now_utc."},
        sort_keys=True,
    )
    return [Message("system", text), Message("user", user)]


def analyse_news(
    provider: Any,
    symbol: str,
    now: datetime,
    *,
    timeout_s: float = 90.0,
    half_life_h: float = 24.0,
    critical_max_age_h: float = 72.0,
    raise_errors: bool = False,
) -> NewsReport:
    """The news report for `symbol` at `now`. Never raises for model problems: without a provider, or
    when the call fails, the report is `available=False` with a note saying why. With
    raise_errors=True a failed call raises instead (so a cached task never caches a blip)."""
    if provider is None:
        return NewsReport(symbol=symbol, as_of=now, available=False, note="no news provider configured")
    try:
        result = provider.ask(news_messages(symbol, now), NewsAnswer, timeout_s=timeout_s)
        answer = result.parsed if isinstance(result.parsed, NewsAnswer) else NewsAnswer.model_validate(
            result.parsed)
    except Exception as exc:  # noqa: BLE001 - any failure: no news this cycle, said plainly
        reason = getattr(exc, "reason", None) or type(exc).__name__
        log.warning("news: %s unavailable: %s: %s", symbol, reason, str(exc)[:200])
        if raise_errors:
            raise
        # an unusable answer was still paid for: its tokens and cost go on the cost line
        spent = int(getattr(exc, "input_tokens", 0) or 0) + int(getattr(exc, "output_tokens", 0) or 0)
        return NewsReport(symbol=symbol, as_of=now, available=False,
                          note=f"news unavailable ({reason}): {str(exc)[:160]}", tokens=spent,
                          cost_usd=float(getattr(exc, "cost_usd", 0.0) or 0.0))
    events, dropped = events_from_answer(answer, now)
    for headline, why in dropped:
        log.info("news: %s: dropped %r: %s", symbol, headline[:80], why)
    note = f"{len(events)} event(s) from {getattr(result, 'provider', '?')}/{getattr(result, 'model', '?')}"
    if dropped:
        note += f", {len(dropped)} dropped"
    report = build_report(symbol, now, events, half_life_h=half_life_h,
                          critical_max_age_h=critical_max_age_h, note=note)
    usage = getattr(result, "usage", None)
    return replace(report, tokens=int(getattr(usage, "total", 0) or 0),
                   cost_usd=float(getattr(result, "cost_usd", 0.0) or 0.0))
