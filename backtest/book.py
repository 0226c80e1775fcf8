"""One account of a backtest (the consensus, or a member's shadow) and its equity history for the
breakers (an exact, compressed subsequence of the per-step snapshots)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from backtest.data import H1_NS, SymbolData
from core.errors import OrderRejected
from core.types import RiskVerdict
from exchange.paper import PaperAccount
from exchange.walk import monitor_bar
from pipeline import positions as pos_fns
from risk.breakers import account_state_from_history
from risk.manager import AccountState, TrackRecord
from risk.profiles import RiskProfile

# ------------------------------------------------------------------------------------------------
# equity history (breakers) -- an exact, compressed subsequence of the per-step snapshots


class EquityHistory:
    """Per-step equity snapshots, kept so that `account_state_from_history(history.points() + ...)`
    returns exactly what it returns on the FULL list, while staying short over a long backtest.

    Kept: every point from the last snapshot at or before the current week's Monday 00:00 UTC (the
    daily and weekly breakers and the day/week start equity read nothing older); of the older points,
    the all-time peak, the deepest drawdown trough and the running peak before that trough (so the
    drawdown breaker and the peak equity are unchanged). Valid without a manual resume (`reset_at`),
    which a backtest never has.
    """

    def __init__(self) -> None:
        self.recent: list[tuple[datetime, float]] = []
        self._peak: tuple[datetime, float] | None = None  # all-time peak of the folded points
        self._worst: float = 0.0
        self._worst_pair: tuple[tuple[datetime, float], tuple[datetime, float]] | None = None

    def add(self, t: datetime, equity: float) -> None:
        self.recent.append((t, float(equity)))
        week = _week_start(t)
        # keep the last point at or before `week`; fold everything before it
        k = 0
        while k + 1 < len(self.recent) and self.recent[k + 1][0] <= week:
            k += 1
        for p in self.recent[:k]:
            self._fold(p)
        if k:
            del self.recent[:k]

    def _fold(self, p: tuple[datetime, float]) -> None:
        if self._peak is None or p[1] > self._peak[1]:
            self._peak = p
        if self._peak[1] > 0:
            dd = p[1] / self._peak[1] - 1.0
            if dd < self._worst:
                self._worst = dd
                self._worst_pair = (self._peak, p)

    def points(self) -> list[tuple[datetime, float]]:
        old: dict[datetime, float] = {}
        for p in ([self._peak] if self._peak else []) + (list(self._worst_pair) if self._worst_pair else []):
            old[p[0]] = p[1]
        return sorted(old.items()) + self.recent


HOUR = timedelta(hours=1)


def _week_start(t: datetime) -> datetime:
    m = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return m - timedelta(days=m.weekday())


# ------------------------------------------------------------------------------------------------
# one account (the consensus, or a member's shadow)


@dataclass
class Book:
    name: str
    acct: PaperAccount
    profile: RiskProfile
    history: EquityHistory = field(default_factory=EquityHistory)
    curve: list[tuple[datetime, float]] = field(default_factory=list)
    next_bar: dict[str, int] = field(default_factory=dict)  # position id -> next bar index to monitor
    next_funding: dict[str, int] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)

    def monitor(self, data: Mapping[str, SymbolData], k: int) -> None:
        for pos in self.acct.open_positions():
            sd = data[pos.symbol]
            j, stop = self.next_bar[pos.id], int(sd.n_closed[k])
            if j >= stop:
                continue
            fp = self.next_funding[pos.id]
            opens, o, h, lo, c, atr, f_dt, f_rate = sd.py_bars()
            n_fund = len(f_dt)
            while j < stop:
                if not self.acct.get(pos.id).is_open:
                    break
                t_open = opens[j]
                t_close = t_open + HOUR
                due = []
                while fp < n_fund and f_dt[fp] <= t_close:
                    due.append((f_dt[fp], f_rate[fp]))
                    fp += 1
                monitor_bar(self.acct, pos.id, t_open, o[j], h[j], lo[j], c[j], due, self.profile,
                                    atr=atr[j], qty_step=sd.limits.qty_step)
                j += 1
            self.next_bar[pos.id], self.next_funding[pos.id] = j, fp

    def close_ended(self, data: Mapping[str, SymbolData], k: int) -> None:
        """Close, at the last close of its history (a market order: slippage and taker fee), every open
        position whose symbol's history has ended by decision k, once its last bar has been walked."""
        for pos in self.acct.open_positions():
            sd = data[pos.symbol]
            if sd.has_fill[k] or self.next_bar[pos.id] < len(sd.open_ns):
                continue
            ts = pd.Timestamp(int(sd.open_ns[-1]) + H1_NS, tz="UTC").to_pydatetime()
            self.acct.close(pos.id, pos.qty_open, float(sd.c[-1]), ts,
                            reason=f"history of {pos.symbol} ends at {ts.isoformat()}", kind="data_end")

    def track_record(self, t: datetime) -> TrackRecord | None:
        """The Kelly track record at t (the profile's rolling window), as the live cycle reads it."""
        if self.profile.sizing != "kelly":
            return None  # only Kelly sizing reads it
        return pos_fns.track_record_from([p for p in self.acct.positions.values() if not p.is_open], t,
                                         self.profile)

    def marks(self, data: Mapping[str, SymbolData], k: int) -> dict[str, float]:
        out = {}
        for p in self.acct.open_positions():
            n = int(data[p.symbol].n_closed[k])
            if n:
                out[p.symbol] = float(data[p.symbol].c[n - 1])
        return out

    def account_state(self, t: datetime, equity: float) -> AccountState:
        # the compressed history is in time order and in UTC, t is after all of it: used as given
        return account_state_from_history(
            self.history.points() + [(t, equity)], equity=equity, balance=float(self.acct.balance),
            positions=self.acct.open_positions(), now=t, profile=self.profile, presorted=True)

    def open(self, verdict: RiskVerdict, sd: SymbolData, k: int, t: datetime, cycle_id: str) -> dict[str, Any]:
        i = int(np.searchsorted(sd.open_ns, pd.Timestamp(t).as_unit("ns").value, side="left"))  # price_after(symbol, t)
        if i >= len(sd.open_ns):
            return {"status": "not_filled", "note": "no price after the decision time"}
        fill_ts = pd.Timestamp(int(sd.open_ns[i]), tz="UTC").to_pydatetime()
        fill_px = float(sd.o[i])
        pid = f"{sd.symbol.split('/')[0]}-{t:%Y%m%d%H%M}"
        try:
            pos, fill = self.acct.open(verdict.plan, fill_px, fill_ts, position_id=pid, cycle_id=cycle_id)
        except OrderRejected as exc:
            return {"status": "rejected", "note": str(exc)}
        self.next_bar[pid] = i
        self.next_funding[pid] = int(np.searchsorted(sd.funding_ns, sd.open_ns[i], side="right"))
        rec = {"time": t, "symbol": sd.symbol, "position_id": pid, "side": pos.side.value,
               "fill_time": fill_ts, "bar_open": fill_px, "fill_price": float(fill.price),
               "qty": str(fill.qty), "fee": float(fill.fee)}
        self.fills.append(rec)
        return {"status": "filled", **rec}

    def snapshot(self, t: datetime, prices: Mapping[str, float]) -> float:
        eq = float(self.acct.equity(prices))
        self.history.add(t, eq)
        self.curve.append((t, eq))
        return eq

    def equity_series(self, opening: tuple[datetime, float] | None = None) -> pd.Series:
        """The equity curve; `opening` (time, starting balance) is prepended so the first decision's
        fees and slippage count in the returns."""
        pts = ([opening] if opening is not None else []) + self.curve
        if not pts:
            return pd.Series(dtype=float)
        return pd.Series([e for _, e in pts], index=pd.DatetimeIndex([t for t, _ in pts]), dtype=float)


