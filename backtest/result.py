"""What a backtest returns: its decision records, metrics, curves and leaderboard."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from core.baselines import MonteCarloResult
from core.leaderboard import LeaderboardRow, MemberResult
from core.metrics import Metrics, TradeRecord, json_safe
from core.types import Position, Vote

# ------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class DecisionRecord:
    time: datetime
    symbol: str
    action: str
    score: float  # math final score
    combined: float  # consensus combined score
    votes_valid: int
    approved: bool
    reasons: tuple[str, ...]
    filled: bool = False

    def key(self) -> tuple[Any, ...]:
        return (self.time, self.symbol, self.action, round(self.score, 10), round(self.combined, 10),
                self.approved, self.reasons)


@dataclass
class BacktestResult:
    start: datetime
    end: datetime
    panel_mode: str
    symbols: list[str]
    settings_summary: dict[str, Any]
    equity: pd.Series
    trades: list[TradeRecord]
    positions: list[Position]
    open_at_end: list[dict[str, Any]]
    metrics: Metrics
    monte_carlo: MonteCarloResult
    buy_and_hold: dict[str, float]
    decisions: list[DecisionRecord]
    fills: list[dict[str, Any]]
    votes: list[tuple[datetime, Vote]]
    leaderboard: list[LeaderboardRow]
    member_results: dict[str, MemberResult]
    member_positions: dict[str, list[Position]]
    member_decisions: dict[str, list[DecisionRecord]]
    counters: dict[str, Any]
    timings: dict[str, float]
    stopped_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything that must be identical between two runs on the same inputs."""
        return (
            tuple(d.key() for d in self.decisions),
            tuple((f["time"], f["symbol"], f["fill_price"], f["qty"]) for f in self.fills),
            tuple(tuple(sorted(t.to_dict().items())) for t in self.trades),
            tuple(self.equity.round(8).items()),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary: metrics, Monte Carlo, buy-and-hold, counters, leaderboard, notes."""
        return json_safe({
            "start": self.start, "end": self.end, "panel": self.panel_mode, "symbols": self.symbols,
            "settings": self.settings_summary, "metrics": self.metrics.to_dict(),
            "monte_carlo": self.monte_carlo.to_dict(), "buy_and_hold": self.buy_and_hold,
            "counters": self.counters, "open_at_end": self.open_at_end,
            "leaderboard": [r.to_dict() for r in self.leaderboard], "stopped_reason": self.stopped_reason,
            "notes": self.notes, "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        })


