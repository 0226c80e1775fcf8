"""The exit rules over hourly bars, for the two brokers (their `walk` port method).

- the paper account simulates everything on the bars: `monitor_bar` (one bar: funding due, the exit rules,
  liquidation) and `advance_position` (a position through its bars), shared with the backtest;
- a position whose stop and targets rest on an exchange gets the same exit rules bar by bar
  (`follow_on_exchange`), and the broker carries out what they decide that is not a resting order (a moved
  stop, stale/time exits at market); the exchange fills the stop and targets, reconcile() records them.

Pure functions over the account or the broker given: no database, no Prefect.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from core.types import Fill, Position, PositionEvent
from exchange.paper import PaperAccount
from risk import exits
from risk.profiles import RiskProfile, get_profile

# exits the exchange fills itself: the stop in every phase (risk.exits names a stop hit by its phase:
# stop, breakeven_stop, trailing_stop) and the two take-profits
RESTING_EXIT_KINDS = frozenset({"stop", "breakeven_stop", "trailing_stop", "tp1", "tp2"})


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



def follow_on_exchange(broker: Any, pos: Position, bars: pd.DataFrame, profile_name: str,
                    atr: pd.Series | None = None, qty_step: Decimal | None = None
                    ) -> tuple[datetime | None, list[Fill], list[PositionEvent]]:
    """The exit rules on each bar for a position whose stops and targets rest on the exchange: the broker
    carries out what they decide (moved stop, stale/time exits at market) and the exchange fills the
    resting orders. Returns the last bar's close time, the fills of the broker's market exits and the
    stop moves (events)."""
    prof = get_profile(profile_name)
    last, fills, moved = None, [], []
    cols = bars[["open", "high", "low", "close"]].to_numpy(dtype=float)
    for t_open, (o, h, lo, c) in zip(bars.index, cols, strict=True):
        cur = next((p for p in broker.positions() if p.id == pos.id), None)
        if cur is None:
            break
        t_close = (t_open + pd.Timedelta(hours=1)).to_pydatetime()
        a = None if atr is None else atr.get(t_open)
        result = exits.step(cur, exits.Bar(t_close, float(o), float(h), float(lo), float(c)), prof,
                            atr=None if a is None or a != a else float(a), qty_step=qty_step)
        # exits the exchange fills itself (stop, TP1, TP2) are not simulated: only what the broker places
        result = result._replace(events=[e for e in result.events if e.kind not in RESTING_EXIT_KINDS])
        fills += broker.apply_exit_step(result)
        moved += [e for e in result.events if e.kind == "stop_moved"]
        last = t_close
    return last, fills, moved
