"""Executing a strategy's intents on the paper account (plain functions, shared by the paper cycle
and the backtest).

`execute_intents(acct, intents, ctx)` checks every intent with the risk manager and applies the
approved ones: cancels and reduces first (they free margin), then adds, opens and resting orders.

- `Open` of the trend kind: `pipeline.stages.risk_verdict` sizes it exactly as the trend cycle
  does; it fills at `ctx.fill_price` (the first price after the decision);
- `Place`: `risk.intents.check_resting_order`, then the order rests in the account until a bar
  trades through it (`PaperAccount.match_bar`);
- `Add` / `Reduce`: `risk.intents.check_add` / `check_reduce`, market at `ctx.fill_price`;
- `Cancel`: always allowed.
A denial is a result with its reasons; nothing raises for a denial or an exchange rejection.

`monitor_order_managed_bar` is the monitor step of a position whose exits are resting orders
(a grid level): funding and liquidation only; its take-profit and stop are orders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from agents.strategies.base import Add, Cancel, Intent, Open, Place, Reduce
from core.errors import OrderRejected
from core.settings import Settings
from core.types import MarketSnapshot, NewsReport, Score, TradePlan
from exchange.paper import PaperAccount
from pipeline.stages import risk_verdict
from risk.intents import check_add, check_reduce, check_resting_order
from risk.manager import AccountState, MarketLimits, TrackRecord
from risk.profiles import RiskProfile

_ORDER = {Cancel: 0, Reduce: 1, Add: 2, Open: 3, Place: 4}


@dataclass
class ExecContext:
    as_of: datetime
    strategy: str
    account: AccountState  # the account as the risk manager sees it at the decision
    limits: MarketLimits
    profile: RiskProfile
    settings: Settings
    fill_ts: datetime | None = None  # first price after the decision (market intents)
    fill_price: float | None = None
    score: Score | None = None
    snapshot: MarketSnapshot | None = None
    btc_4h: float | None = None
    news: NewsReport | None = None
    track: TrackRecord | None = None
    allow_entries: bool = True  # False: the symbol failed the liquidity filters (no new exposure)
    cycle_id: str | None = None  # the paper cycle's id (entry posts); the backtest names its own


@dataclass(frozen=True)
class IntentResult:
    intent: Any
    status: str  # filled | placed | canceled | denied | rejected | not_filled
    reasons: tuple[str, ...] = ()
    position_id: str | None = None
    plan: TradePlan | None = None  # an open's plan as the risk manager sized it


def _view(acct: PaperAccount, base: AccountState) -> AccountState:
    return replace(base, balance=float(acct.balance), positions=tuple(acct.open_positions()))


def execute_intents(acct: PaperAccount, intents: Iterable[Intent], ctx: ExecContext) -> list[IntentResult]:
    out: list[IntentResult] = []
    for it in sorted(intents, key=lambda x: _ORDER.get(type(x), 9)):
        out.append(_one(acct, it, ctx))
    return out


def _one(acct: PaperAccount, it: Intent, ctx: ExecContext) -> IntentResult:
    adds_exposure = isinstance(it, Open | Add) or (isinstance(it, Place) and not it.order.reduce_only)
    if adds_exposure and not ctx.allow_entries:
        return IntentResult(it, "denied", (f"{it.symbol} fails the liquidity filters: no new exposure",))
    if isinstance(it, Cancel):
        o = acct.cancel_order(it.order_id, ctx.as_of, it.reason)
        return IntentResult(it, "canceled" if o is not None else "not_filled",
                            () if o is not None else ("no such resting order",))
    if isinstance(it, Place):
        v = check_resting_order(it.order, _view(acct, ctx.account), ctx.limits, ctx.profile, acct.open_orders())
        if not v.approved:
            return IntentResult(it, "denied", v.reasons)
        try:
            acct.place_order(it.order)
        except OrderRejected as exc:
            return IntentResult(it, "rejected", (str(exc),))
        return IntentResult(it, "placed")
    if ctx.fill_price is None or ctx.fill_ts is None:
        return IntentResult(it, "not_filled", ("no price after the decision time",))
    if isinstance(it, Reduce):
        pos = acct.positions.get(it.position_id)
        v = check_reduce(pos, it.qty)
        if not v.approved or pos is None:
            return IntentResult(it, "denied", v.reasons)
        try:
            acct.close(pos.id, it.qty if it.qty is not None else pos.qty_open, ctx.fill_price, ctx.fill_ts,
                       it.reason, kind=it.kind)
        except OrderRejected as exc:
            return IntentResult(it, "rejected", (str(exc),), pos.id)
        return IntentResult(it, "filled", (), pos.id)
    if isinstance(it, Add):
        pos = acct.positions.get(it.position_id)
        if pos is None:
            return IntentResult(it, "denied", ("no such position",))
        v = check_add(pos, Decimal(it.qty), float(ctx.fill_price), _view(acct, ctx.account), ctx.limits, ctx.profile)
        if not v.approved:
            return IntentResult(it, "denied", v.reasons, pos.id)
        try:
            acct.add(pos.id, it.qty, ctx.fill_price, ctx.fill_ts, reason=it.reason)
        except OrderRejected as exc:
            return IntentResult(it, "rejected", (str(exc),), pos.id)
        return IntentResult(it, "filled", (), pos.id)
    if isinstance(it, Open):
        if ctx.score is None or ctx.snapshot is None:
            return IntentResult(it, "denied", ("no score or snapshot for the risk manager",))
        verdict = risk_verdict(it.decision, ctx.score, ctx.snapshot, _view(acct, ctx.account), ctx.limits,
                               ctx.settings, ctx.btc_4h, ctx.news, ctx.track)
        if not verdict.approved or verdict.plan is None:
            return IntentResult(it, "denied", verdict.reasons)
        pid = f"{it.symbol.split('/')[0]}-{ctx.as_of:%Y%m%d%H%M}"
        try:
            pos, _ = acct.open(verdict.plan, ctx.fill_price, ctx.fill_ts, position_id=pid,
                               cycle_id=ctx.cycle_id or f"{ctx.strategy}-{ctx.as_of:%Y%m%dT%H%M}")
        except OrderRejected as exc:
            return IntentResult(it, "rejected", (str(exc),))
        extra: dict[str, Any] = {"strategy": ctx.strategy, "plan_entry": verdict.plan.entry}
        if it.hold_hours is not None:
            extra["hold_hours"] = it.hold_hours
        if ctx.cycle_id is not None:
            extra["entry_post_key"] = f"{ctx.cycle_id}:{it.symbol}:entry"
        acct.positions[pid] = pos.with_(extra=extra)
        return IntentResult(it, "filled", verdict.reasons, pid, verdict.plan)
    return IntentResult(it, "denied", (f"intent {type(it).__name__} is not executed on a futures account",))


def monitor_order_managed_bar(acct: PaperAccount, position_id: str, t_open: pd.Timestamp, o: float, h: float,
                              lo: float, c: float, funding_due: Sequence[tuple[pd.Timestamp, float]]) -> datetime:
    """Funding (as `monitor_bar` settles it) and liquidation for a position whose exits are orders.

    A resting order that fills inside this bar opens its position with the fill stamped at the bar's close,
    but the position was open before that: a funding time equal to the bar's close is paid by it (a position
    open at the funding time pays it, as in the trend engine), unless it closed inside the bar."""
    t_close = (t_open + pd.Timedelta(hours=1)).to_pydatetime()

    def settle(ft: pd.Timestamp, rate: float, mark: float) -> None:
        cur = acct.get(position_id)
        f = ft.to_pydatetime()
        inside = f == t_close and cur.opened_at == t_close  # filled inside this bar, before its close
        if cur.is_open and (f > cur.opened_at or inside):
            acct.apply_funding(cur.id, float(rate), mark, f, held_at_open=inside)

    for ft, rate in funding_due:
        if ft.to_pydatetime() < t_close:
            settle(ft, rate, o)
    if acct.get(position_id).is_open:
        acct.check_liquidation(position_id, h, lo, t_close)
    for ft, rate in funding_due:
        if ft.to_pydatetime() >= t_close:
            settle(ft, rate, c)
    return t_close


def summarize(results: Iterable[IntentResult]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for r in results:
        key = f"{type(r.intent).__name__.lower()}_{r.status}"
        out[key] = out.get(key, 0) + 1
    return out
