"""Pure position-monitor rules: one bar in, the new position state, events and exit orders out.

`step(position, bar, profile, news_critical=False, atr=None, qty_step=None)` applies, IN ORDER:

1. **stop hit** — the stop in force at the start of the bar (moves made while processing a bar only
   apply from the next bar). Long: low ≤ stop; short: high ≥ stop. Fill at the stop price, or at
   the bar open when the bar opened beyond the stop (a gap: worse for the trader). The exit kind
   says which stop it was: ``stop`` (the initial stop loss), ``breakeven_stop`` (after the move to
   entry +0.15 %) or ``trailing_stop`` (after TP1's trail, or a Chandelier pull).
2. **TP1** (1.5R by default) — closes `tp1_fraction` of the initial quantity at the TP1 price.
3. **TP2** (2.5R) — closes the rest at the TP2 price.
4. **trailing phases** — the best price since entry takes this bar's high (long) / low (short);
   below +`breakeven_trigger_pct` the stop stays; at +2.5 % it moves to entry +0.15 % (phase
   ``breakeven``); after TP1 it trails `trail_after_tp1_pct` (2 %) behind the best price (phase
   ``trailing``); with a Chandelier profile (kelly) it is also pulled to best ∓ mult × ATR when
   `atr` is given. The stop NEVER moves against the position (only up for a long, down for a
   short).
5. **stale exit** — open ≥ `stale_hours` (48 h) with profit at the bar close < 1 %.
6. **time exit** — open ≥ `time_exit_hours` where the profile has one (kelly: 24 h).
7. **news-panic exit** — `news_critical=True` closes the rest. The caller sets it when critical
   news goes against the position (critical negative news for a long; the news analyst's
   `NewsReport.critical_negative`), when the profile has `close_on_critical_news`.
Exits 5–7 fill at the bar close.

Bars whose close time is at or before `position.opened_at` are ignored (no pre-fill prices).

Intrabar ordering: an hourly bar does not say whether its high or its low came first. When one
bar touches both the stop and a target, this module assumes the WORSE outcome for the trader: the
stop fills and the targets are ignored. TP1 and TP2 in the same bar both fill (both favourable).

`bar.ts` is the time the bar CLOSED (its information is complete then); exit orders and events
carry it. Quantities are Decimal; when `qty_step` is given the TP1 quantity is rounded down to it
(a TP1 rounding to zero closes everything instead).

The returned Position has updated stop, phase, best_price, tp1_done, qty_open, closed_at and
exit_reason. Money (realised P&L, fees) is the account's job: feed each `ExitOrder` to the
account (e.g. `exchange.paper.PaperAccount.close`). Event `pnl` is the gross price P&L of the
exit quantity, for messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import NamedTuple

from core.types import Position, PositionEvent, Side
from risk.profiles import RiskProfile, get_profile


@dataclass(frozen=True)
class Bar:
    ts: datetime  # bar CLOSE time (UTC)
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True)
class ExitOrder:
    position_id: str
    symbol: str
    side: Side  # side of the position being (partly) closed
    qty: Decimal
    price: float  # expected fill (stop / target / bar close)
    kind: str  # stop | breakeven_stop | trailing_stop | tp1 | tp2 | stale | time | news
    ts: datetime
    reason: str
    maker: bool = False  # resting take-profit limit orders fill as maker


# the stop in force when it is hit, by the position's phase: the exit kind stored on the position and
# its trade record (a breakeven or trailing exit is not a stop loss) and the label of its reason
STOP_KINDS = {"initial": ("stop", "stop loss"), "breakeven": ("breakeven_stop", "breakeven stop"),
              "trailing": ("trailing_stop", "trailing stop")}
# the exits a resting order on an exchange fills by itself (a broker without simulated fills leaves them to
# the exchange): the stop in every phase and the two take-profits
RESTING_EXITS = frozenset({kind for kind, _ in STOP_KINDS.values()} | {"tp1", "tp2"})


class StepResult(NamedTuple):
    position: Position
    events: list[PositionEvent]
    orders: list[ExitOrder]


def _utc(ts: datetime) -> datetime:
    tz = ts.tzinfo
    if tz is UTC:  # the common case (the backtest's and the store's times): no conversion
        return ts
    return ts.replace(tzinfo=UTC) if tz is None else ts.astimezone(UTC)


def _r_multiple(pos: Position, price: float) -> float:
    r = abs(pos.entry - pos.initial_stop)
    return 0.0 if r <= 0 else (price - pos.entry) * pos.side.sign / r


def step(
    position: Position,
    bar: Bar,
    profile: RiskProfile | str,
    news_critical: bool = False,
    atr: float | None = None,
    qty_step: Decimal | None = None,
) -> StepResult:
    prof = get_profile(profile) if isinstance(profile, str) else profile
    pos = position
    events: list[PositionEvent] = []
    orders: list[ExitOrder] = []
    if not pos.is_open or pos.qty_open <= 0:
        return StepResult(pos, events, orders)
    s = pos.side.sign
    ts = _utc(bar.ts)
    if ts <= _utc(pos.opened_at):  # a bar that closed before the fill says nothing about the position
        return StepResult(pos, events, orders)

    def close(qty: Decimal, price: float, kind: str, reason: str, maker: bool = False) -> None:
        nonlocal pos
        qty = min(qty, pos.qty_open)
        pnl = float(qty) * (price - pos.entry) * s
        orders.append(ExitOrder(pos.id, pos.symbol, pos.side, qty, price, kind, ts, reason, maker))
        events.append(PositionEvent(pos.id, pos.symbol, kind, ts, price, qty, pnl,
                                    _r_multiple(pos, price), reason))
        left = pos.qty_open - qty
        if left <= 0:
            pos = pos.with_(qty_open=Decimal(0), closed_at=ts, exit_reason=kind)
        else:
            pos = pos.with_(qty_open=left)

    # 1. stop (the stop in force when the bar opened)
    stop_hit = bar.low <= pos.stop if s > 0 else bar.high >= pos.stop
    if stop_hit:
        gapped = bar.open < pos.stop if s > 0 else bar.open > pos.stop
        fill = bar.open if gapped else pos.stop
        kind, label = STOP_KINDS.get(pos.phase, ("stop", "stop"))
        close(pos.qty_open, fill, kind,
              f"{label} {pos.stop:.6g} hit" + (f" (gapped, filled at open {fill:.6g})" if gapped else ""))
        return StepResult(pos, events, orders)

    favourable = bar.high if s > 0 else bar.low
    # 2. TP1
    if not pos.tp1_done and (favourable - pos.tp1) * s >= 0:
        q = pos.qty_initial * Decimal(repr(float(prof.tp1_fraction)))
        if qty_step is not None and qty_step > 0:
            q = (q / qty_step).to_integral_value(rounding=ROUND_DOWN) * qty_step
        if q <= 0 or q >= pos.qty_open:
            q = pos.qty_open
        close(q, pos.tp1, "tp1", f"TP1 {pos.tp1:.6g} reached ({_r_multiple(pos, pos.tp1):.2f}R)", maker=True)
        pos = pos.with_(tp1_done=True)
        if not pos.is_open:
            return StepResult(pos, events, orders)
    # 3. TP2
    if pos.tp1_done and (favourable - pos.tp2) * s >= 0:
        close(pos.qty_open, pos.tp2, "tp2", f"TP2 {pos.tp2:.6g} reached ({_r_multiple(pos, pos.tp2):.2f}R)",
              maker=True)
        return StepResult(pos, events, orders)

    # 4. trailing
    best = max(pos.best_price, bar.high) if s > 0 else min(pos.best_price, bar.low)
    pos = pos.with_(best_price=best)
    candidates: list[tuple[float, str, str]] = []
    gain_pct = (best - pos.entry) * s / pos.entry * 100
    phase = pos.phase
    if prof.breakeven_trigger_pct is not None and gain_pct >= prof.breakeven_trigger_pct - 1e-12:
        be = pos.entry * (1 + s * prof.breakeven_offset_pct / 100)
        candidates.append((be, "breakeven", f"+{gain_pct:.2f}% reached: stop to entry "
                                             f"{'+' if s > 0 else '-'}{prof.breakeven_offset_pct:g}%"))
    if pos.tp1_done and prof.trail_after_tp1_pct is not None:
        tr = best * (1 - s * prof.trail_after_tp1_pct / 100)
        candidates.append((tr, "trailing", f"trailing {prof.trail_after_tp1_pct:g}% behind best {best:.6g}"))
    if prof.chandelier_atr_mult is not None and atr is not None and atr > 0:
        ch = best - s * prof.chandelier_atr_mult * atr
        candidates.append((ch, "trailing", f"Chandelier {prof.chandelier_atr_mult:g}xATR {atr:.6g} "
                                           f"from extreme {best:.6g}"))
    if pos.tp1_done and phase != "trailing" and prof.trail_after_tp1_pct is not None:
        phase = "trailing"
    new_stop, why = pos.stop, ""
    for level, ph, reason in candidates:
        if (level - new_stop) * s > 1e-12:  # only in the position's favour
            new_stop, why = level, reason
            if ph == "breakeven" and phase == "initial":
                phase = "breakeven"
            if ph == "trailing":
                phase = "trailing"
    if phase == "initial" and any(ph == "breakeven" for _, ph, _ in candidates):
        phase = "breakeven"
    if new_stop != pos.stop:
        events.append(PositionEvent(pos.id, pos.symbol, "stop_moved", ts, bar.close, Decimal(0), 0.0,
                                    _r_multiple(pos, bar.close), why, old_stop=pos.stop, new_stop=new_stop))
        pos = pos.with_(stop=new_stop)
    if phase != pos.phase:
        pos = pos.with_(phase=phase)

    # 5-7. time-based and news exits at the bar close
    age_h = (ts - _utc(pos.opened_at)).total_seconds() / 3600
    profit_pct = (bar.close - pos.entry) * s / pos.entry * 100
    if prof.stale_hours is not None and age_h >= prof.stale_hours and profit_pct < prof.stale_min_profit_pct:
        close(pos.qty_open, bar.close, "stale",
              f"stale: open {age_h:.1f}h with {profit_pct:+.2f}% < {prof.stale_min_profit_pct:g}%")
        return StepResult(pos, events, orders)
    if prof.time_exit_hours is not None and age_h >= prof.time_exit_hours:
        close(pos.qty_open, bar.close, "time", f"time exit after {age_h:.1f}h (limit {prof.time_exit_hours:g}h)")
        return StepResult(pos, events, orders)
    if news_critical and prof.close_on_critical_news:
        close(pos.qty_open, bar.close, "news", "critical negative news: closing")
    return StepResult(pos, events, orders)
