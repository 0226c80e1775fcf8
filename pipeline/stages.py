"""Plain functions that glue the cycle's stages together. The live flow wraps them in Prefect
tasks (tasks/cycle.py); the backtest calls them directly, bar by bar, without Prefect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import pandas as pd

from agents.consensus import consensus
from agents.math_engine import VETO_MIN
from agents.scanner import fixed_universe, scan_volume
from core.errors import DataError
from core.settings import ConsensusSettings, SignalSettings
from core.types import Action, Candidate, Decision, MarketSnapshot, NewsReport, Score, Vote
from exchange.base import MarketDataSource, TickerInfo
from risk.manager import AccountState, MarketLimits, RiskInput, TrackRecord, evaluate

BTC = "BTC/USDT:USDT"


# The stages read only a few settings: each says which, as a Protocol. `Settings` satisfies all three;
# `UniverseRules` and `ConsensusRules` (frozen) let a caller or a test pass just those values.


class UniverseConfig(Protocol):
    """What `select_candidates` reads."""

    @property
    def universe(self) -> str: ...
    @property
    def symbols(self) -> Sequence[str]: ...
    @property
    def min_volume_usd(self) -> float: ...
    @property
    def max_spread_pct(self) -> float: ...
    @property
    def scanner_top_n(self) -> int: ...


@dataclass(frozen=True)
class UniverseRules:
    """The universe settings on their own (a `UniverseConfig`)."""

    universe: str
    symbols: tuple[str, ...]
    min_volume_usd: float
    max_spread_pct: float
    scanner_top_n: int


class DecisionRules(Protocol):
    """What `decide` reads: the consensus rule and the signal thresholds."""

    @property
    def consensus(self) -> ConsensusSettings: ...
    @property
    def signal(self) -> SignalSettings: ...


@dataclass(frozen=True)
class ConsensusRules:
    """The consensus rule and the signal thresholds on their own (a `DecisionRules`)."""

    consensus: ConsensusSettings
    signal: SignalSettings


class RiskChoice(Protocol):
    """What `risk_verdict` reads: the name of the risk profile."""

    @property
    def risk_profile(self) -> str: ...


def check_symbols(symbols: Sequence[str], known: list[str], where: str = "--symbols") -> None:
    """DataError naming `where` (--symbols, QUORUM_SYMBOLS) when a symbol is not in the source's `known`."""
    unknown = [s for s in symbols if s not in known]
    if unknown:
        raise DataError(f"{where}: unknown symbol(s) {', '.join(unknown)}; the source has: {', '.join(sorted(known))}")


def select_candidates(settings: UniverseConfig, tickers: Mapping[str, TickerInfo], known: list[str],
                      requested: list[str] | None = None,
                      hunted: list[Candidate] | None = None) -> tuple[list[Candidate], list[tuple[str, str]], str]:
    """Candidates for this cycle and why others were dropped.

    Order of preference: symbols asked for on the command line (unknown ones are an error), the
    LLM hunter's validated list, the configured fixed universe, else the volume scanner.
    """
    if requested:
        check_symbols(requested, known, "--symbols")
        cands, dropped = fixed_universe(requested, tickers, settings.min_volume_usd, settings.max_spread_pct)
        return cands, dropped, "symbols given on the command line"
    if hunted:
        return hunted, [], "LLM coin hunter"
    if settings.universe == "fixed":
        check_symbols(settings.symbols, known, "QUORUM_SYMBOLS")  # like --symbols: never an empty cycle
        cands, dropped = fixed_universe(settings.symbols, tickers, settings.min_volume_usd, settings.max_spread_pct)
        return cands, dropped, "configured universe"
    cands, dropped = scan_volume(tickers, settings.scanner_top_n, settings.min_volume_usd, settings.max_spread_pct)
    note = "volume scanner" if settings.universe == "scanner" else "volume scanner (LLM hunter unavailable)"
    return cands, dropped, note


def btc_change_4h_pct(snapshots: Mapping[str, MarketSnapshot], source: MarketDataSource,
                      as_of: datetime) -> float | None:
    """BTC's change over the last 4 closed hours, for the BTC-dump filter."""
    snap = snapshots.get(BTC)
    if snap is None:
        try:
            snap = source.snapshot(BTC, as_of)
        except DataError:
            return None
    close = snap.candles["1h"]["close"]
    if len(close) < 5:
        return None
    return float(close.iloc[-1] / close.iloc[-5] - 1) * 100


def decide(symbol: str, as_of: datetime, votes: list[Vote], score: Score, settings: DecisionRules,
           weights: Mapping[str, float] | None = None) -> Decision:
    """Consensus of the panel with the math score, then the daily veto (a deterministic rule)."""
    d = consensus(symbol, as_of, votes, score.final, settings.consensus, settings.signal, weights)
    return daily_veto(d, score)


def member_decision(vote: Vote, score: Score) -> Decision:
    """A member's own call as a Decision: its shadow account (backtest books and the live loop's
    pipeline/shadow.py) trades it through the same risk. An abstention or invalid vote is WAIT."""
    action = vote.action if vote.valid and vote.action is not None else Action.WAIT
    return Decision(symbol=vote.symbol, as_of=score.as_of, action=action, confidence=float(vote.confidence),
                    math_score=score.final, combined_score=score.final, votes_valid=int(vote.valid),
                    votes_total=1, tally={}, dissent=(), fallback_to_math=False,
                    reason=f"shadow account of {vote.member_id}: its own vote {action.value}")


def daily_veto(d: Decision, score: Score) -> Decision:
    """The daily timeframe vetoes a trade it disagrees with (|1D score| >= VETO_MIN, other sign),
    whoever proposed it: the math score (already capped by the engine) or the panel."""
    daily = score.timeframes.get("1d")
    if d.action is Action.WAIT or daily is None or abs(daily.score) < VETO_MIN:
        return d
    if (daily.score > 0) == (d.action is Action.LONG):
        return d
    return replace(d, action=Action.WAIT, reason=f"{d.reason}; daily timeframe vetoes ({daily.score:+.2f})")


def risk_verdict(decision: Decision, score: Score, snapshot: MarketSnapshot, account: AccountState,
                 limits: MarketLimits, settings: RiskChoice, btc_4h: float | None,
                 news: NewsReport | None, track: TrackRecord | None = None):  # -> RiskVerdict
    inp = RiskInput.from_snapshot(decision, score, snapshot, account, limits, btc_change_4h_pct=btc_4h,
                                  news=news, track=track, profile=settings.risk_profile,
                                  atr_1h=_atr_1h(score, snapshot))
    return evaluate(inp)


def _atr_1h(score: Score, snapshot: MarketSnapshot) -> float | None:
    tf = score.timeframes.get("1h")
    if tf is None or not snapshot.last:
        return None
    return tf.atr_pct / 100 * snapshot.last


def score_breakdown(score: Score) -> dict[str, object]:
    return {
        "final": score.final, "signal": score.signal.value, "trend": score.trend.value,
        "vol_state": score.vol_state.value, "vol_ratio": score.vol_ratio, "atr_pct": score.atr_pct,
        "daily_veto": score.daily_veto, "components": score.components,
        "timeframes": {tf: round(t.score, 4) for tf, t in score.timeframes.items()},
        "flags": list(score.flags),
    }


def as_utc(t: datetime | str | pd.Timestamp) -> datetime:
    ts = pd.Timestamp(t)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()
