"""Pure position functions shared by the live cycle, the position monitor and the backtest:
one bar of the monitor, walking a position through bars, the account as later candidates of a cycle
see it, market limits, marks, and the track record for Kelly sizing. No database, no Prefect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd

from core.errors import DataError
from core.types import Position, TradePlan
from exchange.base import MarketDataSource
from exchange.paper import PaperAccount
from risk import exits
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


def _py(t: datetime) -> datetime:
    return t.to_pydatetime() if isinstance(t, pd.Timestamp) else t


HOUR = timedelta(hours=1)


def monitor_bar(acct: PaperAccount, position_id: str, t_open: datetime, o: float, h: float, lo: float,
                c: float, funding_due: Sequence[tuple[datetime, float]], prof: RiskProfile,
                news_critical: bool = False, atr: float | None = None,
                qty_step: Decimal | None = None) -> datetime:
    """One bar of the position monitor, shared by the live monitor (`advance_position`) and the
    backtest: settle the funding events due by this bar's close (`funding_due`, in time order; a
    funding time equal to the bar's open is marked at the open, later ones at the close), apply the
    exit rules to the bar, then check liquidation. Returns the bar's close time. Times may be
    `pd.Timestamp` or `datetime` (UTC)."""
    t_close = _py(t_open) + HOUR

    def settle(ft: datetime, rate: float, mark: float) -> None:
        cur = acct.get(position_id)
        if cur.is_open and _py(ft) > cur.opened_at:
            acct.apply_funding(cur.id, float(rate), mark, _py(ft))

    # funding due before the bar's close (at its open) is settled first, at the open price
    for ft, rate in funding_due:
        if _py(ft) < t_close:
            settle(ft, rate, o)
    if atr is not None and not atr == atr:  # NaN: not enough bars yet
        atr = None
    result = exits.step(acct.get(position_id), exits.Bar(t_close, o, h, lo, c), prof, news_critical=news_critical,
                        atr=atr, qty_step=qty_step)
    acct.apply_exit_step(result)
    if acct.get(position_id).is_open:
        acct.check_liquidation(position_id, h, lo, t_close)
    # funding at the bar's close is owed only by a position still open then (a stop inside the bar
    # closed it before the funding time)
    for ft, rate in funding_due:
        if _py(ft) >= t_close:
            settle(ft, rate, c)
    return t_close


def advance_position(acct: PaperAccount, pos: Position, bars: pd.DataFrame, funding: pd.Series,
                     profile_name: str, news_critical: bool = False,
                     atr: pd.Series | None = None, qty_step: Decimal | None = None) -> datetime | None:
    """Apply funding and the exit rules bar by bar (bars indexed by open time; `atr` the 1h ATR per
    bar for the Chandelier exit). Returns the close time of the last bar processed."""
    prof = get_profile(profile_name)
    last = None
    fund = list(funding.items())
    fi = 0
    cols = bars[["open", "high", "low", "close"]].to_numpy(dtype=float)
    for t_open, (o, h, lo, c) in zip(bars.index, cols, strict=True):
        o, h, lo, c = float(o), float(h), float(lo), float(c)
        t_close = (t_open + pd.Timedelta(hours=1)).to_pydatetime()
        if not acct.get(pos.id).is_open:
            break
        due = []
        while fi < len(fund) and fund[fi][0].to_pydatetime() <= t_close:
            due.append(fund[fi])
            fi += 1
        a = None if atr is None else atr.get(t_open)
        last = monitor_bar(acct, pos.id, t_open, o, h, lo, c, due, prof, news_critical,
                           None if a is None or a != a else float(a), qty_step)
    return last


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
