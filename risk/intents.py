"""Risk checks of the strategies' new intent kinds: resting orders, grid levels, adds, reduces,
cancels and spot rebalance trades. Pure functions; a denial is a value with reasons.

An `Open` of the trend kind still goes through `risk.manager.evaluate` (it sizes the trade); what
is checked here reuses the same profile caps:

- anything that adds exposure (an opening resting order, an add) is denied while a halt or a loss
  breaker is active (`breaker_checks`, the manager's own);
- an opening resting order: quantity on the market's step, ≥ min quantity and min notional;
  leverage ≤ the profile's and the market's cap; a stop on the loss side (when the profile requires
  a stop) and a take-profit on the profit side; the liquidation price beyond the stop by
  `liq_buffer_pct`; the loss at its stop ≤ `risk_per_trade_pct` of equity; the loss at the stops of
  all the strategy's exposure in the account (open order-managed positions, resting entries and
  this one) ≤ `risk_per_trade_pct × max_positions` of equity (the most the profile lets trades risk
  at once); total margin (open + resting entries + this) ≤ `max_total_margin_pct` of equity and
  ≤ the free balance;
- an add: the breakers, the margin, and the position's loss at its stop after the add ≤
  `risk_per_trade_pct` of equity;
- reduce-only orders, reduces and cancels lower risk: approved when they refer to something that
  exists (quantity ≤ the open quantity);
- a rebalance: weights in [0, 1] summing to 1; no trade while halted; each trade ≥ the minimum
  size; sells ≤ holdings; buys paid by the cash after the sells (fees counted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from core.types import Position, RestingOrder, Side
from risk.formulas import liquidation_price
from risk.manager import AccountState, MarketLimits, breaker_checks
from risk.profiles import RiskProfile, get_profile


@dataclass(frozen=True)
class IntentVerdict:
    approved: bool
    reasons: tuple[str, ...]


def _prof(profile: RiskProfile | str) -> RiskProfile:
    return get_profile(profile) if isinstance(profile, str) else profile


def _ok(reasons: list[str]) -> IntentVerdict:
    return IntentVerdict(not reasons, tuple(reasons))


def order_risk(o: RestingOrder) -> float:
    """Loss if an opening order fills and its stop fills (inf without a stop)."""
    if o.stop is None:
        return math.inf
    return abs(o.price - o.stop) * float(o.amount)


def position_risk(p: Position) -> float:
    return abs(p.entry - p.stop) * float(p.qty_open) if p.stop else math.inf


def check_resting_order(order: RestingOrder, account: AccountState, limits: MarketLimits,
                        profile: RiskProfile | str, resting: Iterable[RestingOrder] = ()) -> IntentVerdict:
    """`resting`: the account's other resting orders (their entries reserve margin and risk)."""
    prof = _prof(profile)
    reasons: list[str] = []
    open_pos = account.open_positions
    if order.reduce_only:
        pos = next((p for p in open_pos if p.id == order.position_id), None)
        if pos is None:
            reasons.append(f"reduce-only order {order.id}: no open position {order.position_id!r}")
        elif order.amount > pos.qty_open:
            reasons.append(f"reduce-only order {order.id}: amount {order.amount} > open {pos.qty_open}")
        return _ok(reasons)
    breaker_checks(account, prof, reasons)
    side = order.position_side
    px = float(order.price)
    qty = Decimal(order.amount)
    if not (math.isfinite(px) and px > 0):
        reasons.append(f"order price {order.price} is not positive")
        return _ok(reasons)
    if limits.qty_step > 0 and qty % limits.qty_step != 0:
        reasons.append(f"amount {qty} is not a multiple of the step {limits.qty_step}")
    if qty < limits.min_qty:
        reasons.append(f"amount {qty} is below the market minimum {limits.min_qty}")
    notional = float(qty) * px
    if Decimal(repr(notional)) < limits.min_notional:
        reasons.append(f"notional {notional:.2f} is below the market minimum {limits.min_notional}")
    cap = min(prof.max_leverage, int(limits.max_leverage))
    if order.leverage < 1 or order.leverage > cap:
        reasons.append(f"leverage {order.leverage}x outside 1..{cap}x (profile {prof.max_leverage}x, "
                       f"market {limits.max_leverage}x)")
    if order.stop is None:
        if prof.require_stop:
            reasons.append("profile requires a stop on every trade")
    elif (order.stop - px) * side.sign >= 0 or order.stop <= 0:
        reasons.append(f"stop {order.stop} is not on the loss side of {px}")
    else:
        liq = liquidation_price(px, side, max(1, order.leverage), prof.maintenance_margin_rate)
        if (order.stop - liq) * side.sign < prof.liq_buffer_pct / 100 * px:
            reasons.append(f"liquidation {liq:.6g} lies inside the stop {order.stop} at {order.leverage}x")
    if order.take_profit is not None and (order.take_profit - px) * side.sign <= 0:
        reasons.append(f"take-profit {order.take_profit} is not on the profit side of {px}")
    eq = account.equity
    risk = order_risk(order)
    per_trade = eq * prof.risk_per_trade_pct / 100
    if risk > per_trade + 1e-9:
        reasons.append(f"loss at the stop {risk:.2f} exceeds {prof.risk_per_trade_pct:g}% of equity ({per_trade:.2f})")
    entries = [o for o in resting if not o.reduce_only and o.id != order.id]
    managed = [p for p in open_pos if p.extra.get("managed") == "orders"]
    total_risk = risk + sum(order_risk(o) for o in entries) + sum(position_risk(p) for p in managed)
    budget = eq * prof.risk_per_trade_pct * prof.max_positions / 100
    if total_risk > budget + 1e-9:
        reasons.append(f"loss at the stops of every resting entry and order-managed position {total_risk:.2f} "
                       f"exceeds {prof.risk_per_trade_pct:g}% x {prof.max_positions} of equity ({budget:.2f})")
    margin = notional / max(1, order.leverage)
    reserved = sum(float(o.amount) * o.price / max(1, o.leverage) for o in entries)
    room = eq * prof.max_total_margin_pct / 100 - account.margin_used - reserved
    if margin > room + 1e-9:
        reasons.append(f"margin {margin:.2f} exceeds the room {max(room, 0):.2f} under the "
                       f"{prof.max_total_margin_pct:g}%-of-equity cap (resting entries reserve {reserved:.2f})")
    if margin > account.balance - reserved + 1e-9:
        reasons.append(f"margin {margin:.2f} exceeds the free balance {account.balance:.2f} less resting "
                       f"entries' margin {reserved:.2f}")
    return _ok(reasons)


def check_add(position: Position, qty: Decimal, price: float, account: AccountState, limits: MarketLimits,
              profile: RiskProfile | str) -> IntentVerdict:
    prof = _prof(profile)
    reasons: list[str] = []
    breaker_checks(account, prof, reasons)
    if not position.is_open:
        reasons.append(f"position {position.id} is closed")
    if qty <= 0 or (limits.qty_step > 0 and qty % limits.qty_step != 0):
        reasons.append(f"add amount {qty} is not a positive multiple of the step {limits.qty_step}")
    total = position.qty_open + qty
    entry = (position.entry * float(position.qty_open) + price * float(qty)) / float(total) if total else price
    risk = abs(entry - position.stop) * float(total) if position.stop else math.inf
    per_trade = account.equity * prof.risk_per_trade_pct / 100
    if risk > per_trade + 1e-9:
        reasons.append(f"loss at the stop after the add {risk:.2f} exceeds {prof.risk_per_trade_pct:g}% of equity "
                       f"({per_trade:.2f})")
    margin = float(qty) * price / max(1, position.leverage)
    if margin > account.balance + 1e-9:
        reasons.append(f"margin {margin:.2f} exceeds the free balance {account.balance:.2f}")
    if (entry - position.liquidation_price) * position.side.sign <= 0:
        reasons.append("the add would move the entry beyond the liquidation price")
    return _ok(reasons)


def check_reduce(position: Position | None, qty: Decimal | None) -> IntentVerdict:
    if position is None or not position.is_open:
        return IntentVerdict(False, ("no such open position",))
    if qty is not None and (qty <= 0 or qty > position.qty_open):
        return IntentVerdict(False, (f"reduce {qty} outside (0, {position.qty_open}]",))
    return IntentVerdict(True, ())


def check_rebalance(weights: Mapping[str, float], trades: Iterable[object], holdings: Mapping[str, Decimal],
                    quote: str, min_trade_usd: float, fee: float, halted: bool) -> IntentVerdict:
    reasons: list[str] = []
    if halted:
        reasons.append("account halted: no rebalance")
    if any(not (0 <= w <= 1) for w in weights.values()) or abs(sum(weights.values()) - 1) > 1e-6:
        reasons.append(f"target weights {dict(weights)} are not in [0, 1] summing to 1")
    cash = float(holdings.get(quote, Decimal(0)))
    buys = 0.0
    for t in trades:
        asset, side, qty, px = t.asset, t.side, t.qty, t.price  # type: ignore[attr-defined]
        notional = float(qty) * px
        if notional < min_trade_usd:
            reasons.append(f"{side} {qty} {asset}: {notional:.2f} is below the minimum trade {min_trade_usd:g}")
        if side == "sell":
            if qty > holdings.get(asset, Decimal(0)):
                reasons.append(f"sell {qty} {asset} exceeds the holding {holdings.get(asset, Decimal(0))}")
            cash += notional * (1 - fee)
        else:
            buys += notional * (1 + fee)
    if buys > cash + 1e-6:
        reasons.append(f"buys {buys:.2f} exceed the cash after sells {cash:.2f}")
    return _ok(reasons)


__all__ = ["IntentVerdict", "Side", "check_add", "check_rebalance", "check_reduce", "check_resting_order",
           "order_risk", "position_risk"]
