"""Builders shared by the risk and paper-account tests (plain functions, no fixtures)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from core.types import Action, Decision, NewsReport, Position, Score, Side, TradePlan, Trend, VolState
from risk import AccountState, MarketLimits, RiskInput, TrackRecord

NOW = datetime(2025, 3, 5, 12, 0, tzinfo=UTC)  # a Wednesday


def decision(symbol: str = "BTC/USDT:USDT", action: Action = Action.LONG, at: datetime = NOW) -> Decision:
    return Decision(symbol=symbol, as_of=at, action=action, confidence=0.7, math_score=0.6,
                    combined_score=0.6, votes_valid=4, votes_total=6, tally={}, dissent=(),
                    fallback_to_math=False, reason="test")


def score(symbol: str = "BTC/USDT:USDT", atr_pct: float = 2.5, vol: VolState = VolState.NORMAL,
          final: float = 0.6, at: datetime = NOW) -> Score:
    return Score(symbol=symbol, as_of=at, final=final, signal=Action.LONG if final > 0 else Action.SHORT,
                 timeframes={}, components={}, weights={}, trend=Trend.UP, vol_state=vol, vol_ratio=1.0,
                 atr_pct=atr_pct, daily_veto=False)


def position(symbol: str = "ETH/USDT:USDT", side: Side = Side.LONG, entry: float = 3000.0,
             qty: str = "0.1", stop_pct: float = 2.0, leverage: int = 5, pid: str = "P1",
             opened_at: datetime = NOW, margin: float | None = None) -> Position:
    s = side.sign
    stop = entry * (1 - s * stop_pct / 100)
    r = abs(entry - stop)
    q = Decimal(qty)
    return Position(id=pid, symbol=symbol, side=side, entry=entry, qty_initial=q, qty_open=q, stop=stop,
                    initial_stop=stop, tp1=entry + s * 1.5 * r, tp2=entry + s * 2.5 * r, leverage=leverage,
                    margin=margin if margin is not None else float(q) * entry / leverage,
                    liquidation_price=entry * (1 - s * (1 / leverage - 0.005)), opened_at=opened_at,
                    best_price=entry)


def account(equity: float = 10_000.0, balance: float | None = None, positions: tuple[Position, ...] = (),
            now: datetime = NOW, **kw: object) -> AccountState:
    return AccountState(equity=equity, balance=equity if balance is None else balance, positions=positions,
                        day_start_equity=kw.pop("day_start_equity", equity),  # type: ignore[arg-type]
                        week_start_equity=kw.pop("week_start_equity", equity),  # type: ignore[arg-type]
                        peak_equity=kw.pop("peak_equity", equity),  # type: ignore[arg-type]
                        now=now, **kw)  # type: ignore[arg-type]


def risk_input(symbol: str = "BTC/USDT:USDT", action: Action = Action.LONG, price: float = 60_000.0,
               spread_pct: float = 0.02, atr_pct: float = 2.5, vol: VolState = VolState.NORMAL,
               acct: AccountState | None = None, limits: MarketLimits | None = None,
               profile: object = "default", **kw: object) -> RiskInput:
    half = price * spread_pct / 200
    kw.setdefault("track", TrackRecord(0.55, 1.6, 50))
    kw.setdefault("funding_rate", 0.0001)
    return RiskInput(decision=decision(symbol, action), score=score(symbol, atr_pct, vol),
                     account=acct or account(), limits=limits or MarketLimits(), bid=price - half,
                     ask=price + half, profile=profile, **kw)  # type: ignore[arg-type]


def critical_news(symbol: str = "BTC/USDT:USDT") -> NewsReport:
    return NewsReport(symbol=symbol, as_of=NOW, critical_negative=True, available=True, note="hack")


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def examples(n: int) -> int:
    """Hypothesis example count, scaled by RISK_EXAMPLES_SCALE (e.g. 50 for a long soak run)."""
    return max(1, int(n * float(os.environ.get("RISK_EXAMPLES_SCALE", "1"))))


def trade_plan(symbol="BTC/USDT:USDT", side=Side.LONG, entry=100.0, qty="0.1", lev=5, stop_pct=3.0) -> TradePlan:
    s = side.sign
    stop = entry * (1 - s * stop_pct / 100)
    r = abs(entry - stop)
    q = Decimal(qty)
    return TradePlan(symbol=symbol, side=side, entry=entry, stop=stop, tp1=entry + s * 1.5 * r,
                     tp2=entry + s * 2.5 * r, leverage=lev, qty=q, notional=float(q) * entry,
                     margin=float(q) * entry / lev, risk_usd=float(q) * r, risk_pct=0.0,
                     liquidation_price=0.0, stop_pct=stop_pct, reason="test plan")
