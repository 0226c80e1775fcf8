"""Pure position functions shared by the live cycle, the position monitor and the backtest: the account
as later candidates of a cycle see it, market limits, marks, and the track record for Kelly sizing. One
bar of the monitor (`monitor_bar`) and walking a position through bars (`advance_position`) live with the
brokers, in exchange/walk.py. No database, no Prefect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from core.errors import DataError
from core.types import Position, TradePlan
from exchange.base import MarketDataSource
from risk.manager import AccountState, MarketLimits, TrackRecord
from risk.profiles import RiskProfile, get_profile
from risk.track import track_record

ATR_WARMUP_H = 72  # 1h bars before a monitor window, so ATR(14) is settled at its first bar


def marks(source: MarketDataSource, symbols: Sequence[str], t: datetime,
          known: Mapping[str, float] | None = None) -> dict[str, float]:
    """The latest close at `t` per symbol; a symbol without usable bars (none in 48 h, or quarantined
    data) has no mark, and counts at its entry price."""
    out = dict(known or {})
    for sym in symbols:
        if sym not in out:
            try:
                bars = source.bars_between(sym, t - timedelta(hours=48), t)
            except DataError:
                continue
            if len(bars):
                out[sym] = float(bars["close"].iloc[-1])
    return out


def with_planned(account: AccountState, plan: TradePlan | None, now: datetime) -> AccountState:
    """The account as later candidates of the same cycle should see it (the plan counted as open)."""
    if plan is None:
        return account
    ghost = Position(id=f"planned-{plan.symbol}", symbol=plan.symbol, side=plan.side, entry=plan.entry,
                     qty_initial=plan.qty, qty_open=plan.qty, stop=plan.stop, initial_stop=plan.stop, tp1=plan.tp1,
                     tp2=plan.tp2, leverage=plan.leverage, margin=plan.margin,
                     liquidation_price=plan.liquidation_price, opened_at=now, best_price=plan.entry)
    return replace(account, positions=account.positions + (ghost,), balance=account.balance - plan.margin)


def limits_for(source: MarketDataSource, symbol: str) -> MarketLimits:
    return MarketLimits.from_rules(source.market_rules(symbol))


def track_record_from(closed: Sequence[Position], now: datetime | None = None,
                      profile: RiskProfile | str = "default") -> TrackRecord | None:
    """Win rate and win/loss ratio of the closed positions in the profile's rolling window before `now`
    (net of fees and funding), for Kelly sizing; shared by the live cycle and the backtest
    (`risk.track.track_record`)."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    return track_record(closed, now, prof)
