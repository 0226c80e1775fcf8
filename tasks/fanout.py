"""Submitting the LLM tasks of a cycle and gathering their results: the news analyst per candidate
(started with the data collection), the coin hunter's validated list, one decision task per panel
member. A failed model call never fails the cycle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.settings import Settings
from core.types import Candidate, MarketSnapshot, NewsReport, Position, Score, Vote
from exchange.base import MarketDataSource


def collect_snapshots(futures: Mapping[str, Any], quarantined: Mapping[str, str] | None = None,
                      logger: Any = None) -> tuple[dict[str, MarketSnapshot], list[tuple[str, str]]]:
    """The collected snapshots, and the symbols left out: a symbol whose data fails its checks
    (DataError) is quarantined with the reason, and the cycle goes on with the others. Any other
    failure (e.g. the exchange unreachable after retries) still fails the cycle."""
    from core.errors import DataError

    snapshots: dict[str, MarketSnapshot] = {}
    left_out: list[tuple[str, str]] = []
    for sym, fut in futures.items():
        try:
            snapshots[sym] = fut.result()
        except DataError as exc:
            reason = (quarantined or {}).get(sym) or str(exc)
            left_out.append((sym, f"quarantined: {reason}"))
            if logger is not None:
                logger.warning("data: %s left out of this cycle: %s", sym, reason)
    return snapshots, left_out


def submit_news(settings: Settings, symbols: Sequence[str], now: datetime) -> dict[str, Any]:
    """Start the news task per candidate (cached 1 h per symbol); it runs while the data is collected."""
    from agents.llm.registry import member_status
    from tasks.panel import news_member, news_task

    member = news_member(settings)
    st = member_status(member)
    if not st.available:
        return {s: NewsReport(s, now, available=False, note=f"news analyst off: {st.reason}") for s in symbols}
    return {s: news_task.submit(member, s, now) for s in symbols}


def news_reports(pending: Mapping[str, Any], now: datetime) -> dict[str, NewsReport]:
    """The news reports of `submit_news`; a failed news call never fails the cycle."""
    out: dict[str, NewsReport] = {}
    for s, f in pending.items():
        if isinstance(f, NewsReport):
            out[s] = f
            continue
        try:
            out[s] = f.result()
        except Exception as exc:  # noqa: BLE001 - news never fails the cycle
            out[s] = NewsReport(s, now, available=False, note=f"news analyst failed: {type(exc).__name__}")
    return out


def hunt(settings: Settings, source: MarketDataSource, tickers: Mapping[str, Any], hunter_future: Any,
         logger: Any) -> list[Candidate] | None:
    """The LLM hunter's validated candidates, or None (the volume scanner is the fallback)."""
    if hunter_future is None:
        return None
    from tasks.panel import hunted_candidates

    try:
        return hunted_candidates(hunter_future.result(), source.symbols(), tickers, settings)
    except Exception as exc:  # noqa: BLE001
        logger.warning("LLM coin hunter failed (%s); falling back to the volume scanner", type(exc).__name__)
        return None


def run_panel_tasks(settings: Settings, available: Sequence[Any], statuses: Sequence[Any],
                    snapshots: Mapping[str, MarketSnapshot], scores: Mapping[str, Score],
                    news: Mapping[str, NewsReport], positions: Sequence[Position], now: datetime,
                    use_cache: bool) -> list[Vote]:
    """Fan out one decision task per available member (all candidates in one prompt), concurrently."""
    if not available or not snapshots:
        return []
    from agents.prompt import build_payload
    from tasks import panel

    panel.set_runtime(panel._build_runtime(settings))  # this cycle's database/Redis cache and budgets
    payload = build_payload(snapshots, scores, news, positions, settings, as_of=now)
    futures = [panel.decision_task_for(m).submit(m, list(snapshots), payload, now, use_cache) for m in available]
    votes: list[Vote] = []
    for m, f in zip(available, futures, strict=True):
        try:
            votes.extend(f.result())
        except Exception as exc:  # noqa: BLE001 - a member never crashes the cycle
            votes.extend(Vote(m.id, sym, None, abstain_reason=f"error:{type(exc).__name__}", provider=m.provider,
                              model=m.model) for sym in snapshots)
    return votes
