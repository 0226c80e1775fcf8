"""Consensus → risk for every candidate of a cycle, over the in-memory account: later candidates see
the plans approved before them (position caps, correlation groups)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from core.settings import Settings
from core.types import Decision, MarketSnapshot, NewsReport, RiskVerdict, Score, Vote
from exchange.base import MarketDataSource
from exchange.paper import PaperAccount
from pipeline.account import Factory, account_state, track_record
from pipeline.positions import limits_for, with_planned
from pipeline.stages import btc_change_4h_pct, decide, risk_verdict


def decide_and_check(factory: Factory, source: MarketDataSource, settings: Settings, decision_time: datetime,
                     scores: Mapping[str, Score], snapshots: Mapping[str, MarketSnapshot], votes: Sequence[Vote],
                     news: Mapping[str, NewsReport],
                     acct: PaperAccount) -> tuple[dict[str, Decision], dict[str, RiskVerdict]]:
    account = account_state(factory, source, settings, decision_time, acct)
    btc4h = btc_change_4h_pct(snapshots, source, decision_time)
    track = track_record(factory, settings.mode, decision_time, settings.risk_profile)
    decisions: dict[str, Decision] = {}
    verdicts: dict[str, RiskVerdict] = {}
    for sym, score in scores.items():
        d = decide(sym, decision_time, [v for v in votes if v.symbol == sym], score, settings)
        decisions[sym] = d
        v = risk_verdict(d, score, snapshots[sym], account, limits_for(source, sym), settings, btc4h,
                         news.get(sym), track)
        verdicts[sym] = v
        if v.approved:
            account = with_planned(account, v.plan, decision_time)
    return decisions, verdicts
