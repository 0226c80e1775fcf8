"""What the next cycle would decide, without doing anything (`quorum live check`): the cycle's pure decision
stages over the account as the broker has it — data, math scores, the panel (through `panel`, when the caller
gives one: math alone otherwise), consensus, the risk manager — and nothing else: no reconciliation, no
monitor, no order, nothing stored. The news analyst and the LLM coin hunter are not consulted (the volume
scanner stands in for the hunter, as in a cycle whose hunter is unavailable)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from agents.math_engine import score_snapshot
from core.errors import DataError
from core.settings import Settings
from core.types import Decision, MarketSnapshot, Position, RiskVerdict, Score, TradePlan, Vote
from exchange.base import MarketDataSource
from exchange.paper import PaperAccount
from pipeline.account import Factory
from pipeline.decide import decide_and_check
from pipeline.stages import select_candidates

# (snapshots, scores, open positions, decision time) -> the panel's votes
Panel = Callable[[dict[str, MarketSnapshot], dict[str, Score], Sequence[Position], datetime], list[Vote]]


@dataclass(frozen=True)
class Preview:
    decision_time: datetime
    universe: str
    dropped: list[tuple[str, str]]
    scores: dict[str, Score]
    votes: list[Vote]
    decisions: dict[str, Decision]
    verdicts: dict[str, RiskVerdict]
    plans: list[TradePlan] = field(default_factory=list)  # the approved ones, in decision order


def next_cycle(factory: Factory, source: MarketDataSource, settings: Settings, decision_time: datetime,
               acct: PaperAccount, symbols: Sequence[str] | None = None, panel: Panel | None = None) -> Preview:
    """The decisions and approved plans a cycle at `decision_time` would reach over `acct` (read-only)."""
    tickers = source.tickers(decision_time)
    candidates, dropped, note = select_candidates(settings, tickers, source.symbols(), list(symbols or []) or None)
    snapshots: dict[str, MarketSnapshot] = {}
    for c in candidates:
        try:
            snapshots[c.symbol] = source.snapshot(c.symbol, decision_time)
        except DataError as exc:  # quarantined, as the cycle leaves it out
            dropped.append((c.symbol, f"quarantined: {exc}"))
    scores = {s: score_snapshot(snap, settings.signal, None) for s, snap in snapshots.items()}
    votes = panel(snapshots, scores, acct.open_positions(), decision_time) if panel is not None and scores else []
    decisions, verdicts = decide_and_check(factory, source, settings, decision_time, scores, snapshots, votes, {},
                                           acct)
    verdicts = {s: v if settings.strategy_for(s) == "trend" else
                RiskVerdict(s, False, (f"strategy {settings.strategy_for(s)}: not previewed (its intents are "
                                       "checked in the cycle's strategy step)",))
                for s, v in verdicts.items()}
    plans = [v.plan for v in verdicts.values() if v.approved and v.plan is not None]
    return Preview(decision_time, note, dropped, scores, votes, decisions, verdicts, plans)
