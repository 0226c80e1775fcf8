"""The deterministic risk manager: one pure function from facts to a verdict.

`evaluate(RiskInput) -> RiskVerdict` never raises for a denial: every failing check adds one
reason, and the verdict lists them all. An approved verdict carries the `TradePlan` and reasons
that explain the sizing. Nothing here reads a clock, a file or the network; `AccountState.now`
is the time of the decision.

Order of work:
1. WAIT → denied with the single reason "decision is WAIT".
2. Account checks: manual/breaker halt (until its `halted_until`), daily/weekly loss and drawdown
   from the equity marks in `AccountState`, position limit (the account tier's for kelly), one
   position per symbol, correlation groups.
3. Market checks: spread, funding against the trade, BTC dump (longs), critical negative news
   (longs).
4. Sizing: entry = ask for LONG / bid for SHORT; stop by the profile's method, × regime multiplier,
   rounded to the price tick AWAY from entry (so the risk per unit is never understated; targets
   are rounded away from entry too, so they always stay on the profit side); leverage
   from the ATR tiers × regime multiplier, capped by the profile and the market, then REDUCED until
   the isolated-margin liquidation price lies beyond the stop (with `liq_buffer_pct`); quantity =
   min(risk budget / stop distance, margin caps × leverage / entry), rounded DOWN to `qty_step`;
   a quantity rounded to zero, below `min_qty` or below `min_notional` is a denial.

Quantities are Decimal (exchange precision); prices and money inside the plan are floats.
"""

from __future__ import annotations

import math
from decimal import Decimal

from core.types import (
    Action,
    RiskVerdict,
    Side,
    TradePlan,
)
from risk.formulas import (
    _utc,
    correlation_group,
    kelly_star,
    leverage_for_atr,
    liquidation_price,
    round_down,
    round_price,
)
from risk.inputs import (  # re-exported: many callers import them from here
    AccountState,
    MarketLimits,
    RiskInput,
)
from risk.profiles import RiskProfile, get_profile
from risk.track import TrackRecord, with_prior

__all__ = ["AccountState", "MarketLimits", "RiskInput", "TrackRecord", "breaker_checks", "evaluate"]


# ------------------------------------------------------------------------------------------------
# evaluate


def _deny(symbol: str, reasons: list[str], profile: str) -> RiskVerdict:
    return RiskVerdict(symbol=symbol, approved=False, reasons=tuple(reasons), plan=None, profile=profile)


def breaker_checks(acct: AccountState, prof: RiskProfile, reasons: list[str]) -> None:
    """Halts and loss breakers: any of them stops new exposure (entries, resting entries, adds)."""
    now = _utc(acct.now)
    if acct.halted and (acct.halted_until is None or now < _utc(acct.halted_until)):
        until = acct.halted_until.isoformat() if acct.halted_until else "a manual resume"
        reasons.append(f"entries halted until {until}: {acct.halt_reason or 'halt'}")
    if prof.daily_loss_pct is not None and acct.day_start_equity and acct.day_start_equity > 0:
        chg = (acct.equity / acct.day_start_equity - 1) * 100
        if chg <= -prof.daily_loss_pct + 1e-12:
            reasons.append(f"daily loss {chg:.2f}% reached the -{prof.daily_loss_pct:g}% limit")
    if prof.weekly_loss_pct is not None and acct.week_start_equity and acct.week_start_equity > 0:
        chg = (acct.equity / acct.week_start_equity - 1) * 100
        if chg <= -prof.weekly_loss_pct + 1e-12:
            reasons.append(f"weekly loss {chg:.2f}% reached the -{prof.weekly_loss_pct:g}% limit")
    if prof.max_drawdown_pct is not None and acct.peak_equity and acct.peak_equity > 0:
        dd = (acct.equity / acct.peak_equity - 1) * 100
        if dd <= -prof.max_drawdown_pct + 1e-12:
            reasons.append(f"drawdown {dd:.2f}% from peak reached the -{prof.max_drawdown_pct:g}% breaker")
    if acct.equity <= 0:
        reasons.append(f"equity {acct.equity:.2f} is not positive")


def _position_checks(inp: RiskInput, prof: RiskProfile, reasons: list[str]) -> None:
    acct = inp.account
    open_pos = acct.open_positions
    limit = prof.position_limit(acct.equity)
    if len(open_pos) >= limit:
        tier = prof.tier_for(acct.equity)
        why = f" (account tier for equity {acct.equity:.2f})" if tier and tier.max_positions == limit else ""
        reasons.append(f"{len(open_pos)} open positions, the limit is {limit}{why}")
    sym = inp.decision.symbol
    if any(p.symbol == sym for p in open_pos):
        reasons.append(f"a position in {sym} is already open")
    groups = inp.correlation_groups if inp.correlation_groups is not None else prof.correlation_groups
    group = correlation_group(sym, groups)
    same = [p.symbol for p in open_pos if correlation_group(p.symbol, groups) == group and p.symbol != sym]
    if len(same) >= prof.max_per_group and same:
        reasons.append(f"correlation group {group!r} already holds {', '.join(same)} "
                       f"(max {prof.max_per_group} per group)")


def _market_checks(inp: RiskInput, prof: RiskProfile, side: Side, reasons: list[str]) -> None:
    if prof.max_spread_pct is not None and inp.spread_pct > prof.max_spread_pct:
        reasons.append(f"spread {inp.spread_pct:.3f}% is above {prof.max_spread_pct:g}%")
    if prof.funding_veto_pct is not None and inp.funding_rate is not None:
        f_pct = inp.funding_rate * 100
        if side is Side.LONG and f_pct > prof.funding_veto_pct:
            reasons.append(f"funding {f_pct:+.4f}%/8h against the long (limit +{prof.funding_veto_pct:g}%)")
        if side is Side.SHORT and f_pct < -prof.funding_veto_pct:
            reasons.append(f"funding {f_pct:+.4f}%/8h against the short (limit -{prof.funding_veto_pct:g}%)")
    if (prof.btc_dump_pct is not None and side is Side.LONG and inp.btc_change_4h_pct is not None
            and inp.btc_change_4h_pct < -prof.btc_dump_pct):
        reasons.append(f"BTC fell {inp.btc_change_4h_pct:.2f}% in 4h (no longs below -{prof.btc_dump_pct:g}%)")
    if (prof.veto_long_on_critical_news and side is Side.LONG and inp.news is not None
            and inp.news.critical_negative):
        reasons.append("critical negative news on the symbol vetoes a long")


def _stop_pct(inp: RiskInput, prof: RiskProfile, entry: float, notes: list[str]) -> float | None:
    atr_pct = inp.score.atr_pct
    lo, hi = prof.stop_min_pct, prof.stop_max_pct

    def bounded(x: float) -> float:
        return min(max(x, lo), hi)

    method = prof.stop_method
    if method == "fixed":
        if prof.fixed_stop_pct is None:
            return None
        base = prof.fixed_stop_pct
        notes.append(f"fixed stop {base:g}%")
    elif method == "quantile" and inp.quantile_stop_pct is not None and math.isfinite(inp.quantile_stop_pct):
        base = bounded(inp.quantile_stop_pct)
        notes.append(f"quantile stop {inp.quantile_stop_pct:.2f}% bounded to {base:.2f}%")
    elif method == "chandelier" and prof.chandelier_atr_mult and inp.atr_1h and inp.atr_1h > 0:
        raw = prof.chandelier_atr_mult * inp.atr_1h / entry * 100
        base = bounded(raw)
        notes.append(f"Chandelier stop {prof.chandelier_atr_mult:g}xATR(1h) = {raw:.2f}% bounded to {base:.2f}%")
    else:
        if not math.isfinite(atr_pct) or atr_pct < 0:
            return None
        base = bounded(atr_pct * prof.atr_stop_mult)
        notes.append(f"ATR stop {atr_pct:.2f}% x{prof.atr_stop_mult:g} bounded to {base:.2f}%")
    mult = prof.regime_stop_mult.get(inp.score.vol_state, 1.0)
    if mult != 1.0:
        notes.append(f"{inp.score.vol_state.value} stop x{mult:g}")
    return base * mult


def _risk_budget(inp: RiskInput, prof: RiskProfile, reasons: list[str], notes: list[str]) -> float | None:
    """Risk budget in % of equity (None: sized by margin instead)."""
    eq = inp.account.equity
    if prof.sizing == "fixed_risk":
        notes.append(f"risk {prof.risk_per_trade_pct:g}% of equity {eq:.2f}")
        return prof.risk_per_trade_pct
    if prof.sizing == "margin_fraction":
        return None
    # kelly
    tier = prof.tier_for(eq)
    cap = tier.max_risk_pct if tier else prof.risk_per_trade_pct
    tr = inp.track
    if tr is None or tr.n_trades < prof.kelly_min_trades:
        n = 0 if tr is None else tr.n_trades
        base = prof.kelly_fallback_risk_pct
        notes.append(f"kelly: {n} trades < {prof.kelly_min_trades}, fallback {base:g}%")
    else:
        tr = with_prior(tr, prof)  # shrunk towards the prior (risk/track.py: the way back)
        f = kelly_star(tr.win_rate, tr.win_loss_ratio)
        if f <= 0:
            reasons.append(f"kelly: no edge over the last {tr.n_trades} trades (win rate {tr.win_rate:.2f}, "
                           f"win/loss {tr.win_loss_ratio:.2f} with the prior, f*={f:.3f}); trades older than "
                           f"{prof.kelly_window_days:g} days age out")
            return 0.0
        base = prof.kelly_fraction * f * 100
        notes.append(f"kelly: f*={f:.3f} x{prof.kelly_fraction:g} = {base:.2f}%")
    atr = inp.score.atr_pct
    vol_adj = 1.0 if not (math.isfinite(atr) and atr > 0) else min(1.0, max(prof.kelly_vol_adj_min,
                                                                           prof.kelly_vol_ref_atr_pct / atr))
    reg = prof.regime_leverage_mult.get(inp.score.vol_state, 1.0)
    pct = base * vol_adj * reg
    if pct > cap:
        notes.append(f"kelly {pct:.2f}% capped by account tier at {cap:g}%")
        pct = cap
    else:
        notes.append(f"x vol {vol_adj:.2f} x regime {reg:g} = {pct:.2f}%")
    return pct


def evaluate(inp: RiskInput) -> RiskVerdict:
    prof = get_profile(inp.profile) if isinstance(inp.profile, str) else inp.profile
    d = inp.decision
    sym = d.symbol
    if d.action is Action.WAIT:
        return _deny(sym, ["decision is WAIT"], prof.name)
    side = Side.from_action(d.action)
    reasons: list[str] = []
    notes: list[str] = []
    if inp.score.symbol != sym:
        reasons.append(f"score is for {inp.score.symbol}, decision for {sym}")
    breaker_checks(inp.account, prof, reasons)
    _position_checks(inp, prof, reasons)
    _market_checks(inp, prof, side, reasons)

    acct = inp.account
    lim = inp.limits
    entry = float(inp.ask if side is Side.LONG else inp.bid)
    if not (math.isfinite(entry) and entry > 0):
        reasons.append(f"no usable entry price (bid {inp.bid}, ask {inp.ask})")
        return _deny(sym, reasons, prof.name)

    # --- stop ----------------------------------------------------------------------------------
    stop_pct = _stop_pct(inp, prof, entry, notes)
    if stop_pct is None or not math.isfinite(stop_pct) or stop_pct <= 0 or stop_pct >= 100:
        reasons.append("no stop can be set (missing volatility estimate or stop setting)")
        return _deny(sym, reasons, prof.name)
    raw_stop = entry * (1 - side.sign * stop_pct / 100)
    stop = round_price(raw_stop, lim.price_tick, "floor" if side is Side.LONG else "ceil")
    r_dist = abs(entry - stop)
    if stop <= 0 or r_dist <= 0 or (stop - entry) * side.sign >= 0:
        reasons.append(f"stop {stop} is not on the loss side of entry {entry}")
        return _deny(sym, reasons, prof.name)
    stop_pct_eff = r_dist / entry * 100

    # --- targets -------------------------------------------------------------------------------
    if prof.fixed_tp_pct is not None:
        tp_raw = entry * (1 + side.sign * prof.fixed_tp_pct / 100)
        tp1_raw = tp2_raw = tp_raw
    else:
        tp1_raw = entry + side.sign * prof.tp1_r * r_dist
        tp2_raw = entry + side.sign * prof.tp2_r * r_dist
    # away from entry: a coarse tick can never pull a target onto or behind the entry
    away = "ceil" if side is Side.LONG else "floor"
    tp1 = round_price(tp1_raw, lim.price_tick, away)
    tp2 = round_price(tp2_raw, lim.price_tick, away)
    if tp1 <= 0 or tp2 <= 0:
        reasons.append(f"targets TP1 {tp1} / TP2 {tp2} are not positive at tick {lim.price_tick}")

    # --- leverage ------------------------------------------------------------------------------
    if math.isfinite(inp.score.atr_pct) and inp.score.atr_pct >= 0:
        atr_pct = inp.score.atr_pct
        lev0 = leverage_for_atr(atr_pct, prof)
    else:  # unknown volatility: the most cautious tier
        atr_pct = float("nan")
        lev0 = min([lv for _, lv in prof.leverage_by_atr] + [prof.max_leverage])
    reg = prof.regime_leverage_mult.get(inp.score.vol_state, 1.0)
    lev = max(1, math.floor(lev0 * reg + 1e-9))
    lev = max(1, min(lev, prof.max_leverage, int(lim.max_leverage)))
    lev_note = f"leverage {lev0}x for ATR {atr_pct:.2f}%"
    if reg != 1.0:
        lev_note += f" x{reg:g} ({inp.score.vol_state.value})"
    if lev != lev0:
        lev_note += f" -> {lev}x"
    mmr = prof.maintenance_margin_rate
    buffer = prof.liq_buffer_pct / 100 * entry

    def liq_ok(lv: int) -> bool:
        liq = liquidation_price(entry, side, lv, mmr)
        return (stop - liq) * side.sign >= buffer

    lev_before = lev
    while lev > 1 and not liq_ok(lev):
        lev -= 1
    if lev != lev_before:
        lev_note += f"; reduced to {lev}x so liquidation lies beyond the stop"
    liq = liquidation_price(entry, side, lev, mmr)
    if not liq_ok(lev):
        reasons.append(f"liquidation {liq:.6g} would be hit before the stop {stop} even at {lev}x")
    notes.append(lev_note)

    # --- quantity ------------------------------------------------------------------------------
    positions = acct.open_positions
    bal = max(acct.balance, 0.0)
    trade_cap_pct = prof.trade_margin_pct_with_positions if positions else prof.trade_margin_pct_empty
    margin_cap = bal * trade_cap_pct / 100
    total_room = max(0.0, acct.equity * prof.max_total_margin_pct / 100 - acct.margin_used)
    margin_cap = min(margin_cap, total_room)
    qty_caps = {
        f"margin cap {trade_cap_pct:g}% of free balance / total {prof.max_total_margin_pct:g}% of equity":
            margin_cap * lev / entry,
        "free balance after the fee reserve": bal / (entry * (1.0 / lev + prof.fee_reserve_pct / 100)),
    }
    notional_note = ""
    if prof.trade_notional_pct_empty is not None or prof.max_total_notional_pct is not None:
        # exposure caps on NOTIONAL (position size), whatever the leverage: % of equity
        eq_pos = max(acct.equity, 0.0)
        n_pct = (prof.trade_notional_pct_with_positions if positions else prof.trade_notional_pct_empty)
        n_cap = eq_pos * n_pct / 100 if n_pct is not None else math.inf
        n_room = (max(0.0, eq_pos * prof.max_total_notional_pct / 100 - acct.notional_used)
                  if prof.max_total_notional_pct is not None else math.inf)
        label = (f"notional cap {n_pct:g}% of equity" if n_pct is not None else "notional cap") + (
            f" / total {prof.max_total_notional_pct:g}% of equity" if prof.max_total_notional_pct is not None else "")
        qty_caps[label] = min(n_cap, n_room) / entry
        notional_note = (f"notional {min(n_cap, n_room):.2f} ({label}: trade {n_cap:.2f}, total room "
                         f"{n_room:.2f} of {eq_pos:.2f})")
    budget_pct = _risk_budget(inp, prof, reasons, notes)
    if budget_pct is None:  # margin_fraction: the tightest cap IS the size
        qty_raw = min(qty_caps.values())
        notes.append(notional_note or f"margin {margin_cap:.2f} ({trade_cap_pct:g}% of free balance {bal:.2f}, "
                                      f"total room {total_room:.2f})")
    else:
        risk_budget = max(0.0, acct.equity) * budget_pct / 100
        qty_risk = risk_budget / r_dist
        qty_raw = qty_risk
        for label, cap in qty_caps.items():
            if cap < qty_raw:
                qty_raw = cap
                notes.append(f"size capped by {label}")
    if not math.isfinite(qty_raw) or qty_raw < 0:
        qty_raw = 0.0
    qty = round_down(Decimal(repr(float(qty_raw))), lim.qty_step)
    if qty <= 0:
        reasons.append(f"quantity {qty_raw:.8g} rounds to zero at step {lim.qty_step}")
    else:
        if qty < lim.min_qty:
            reasons.append(f"quantity {qty} is below the market minimum {lim.min_qty}")
        notional_d = qty * Decimal(repr(float(entry)))
        if notional_d < lim.min_notional:
            reasons.append(f"notional {float(notional_d):.2f} is below the market minimum {lim.min_notional}")
    notional = float(qty) * entry
    margin = notional / lev
    risk_usd = float(qty) * r_dist
    if prof.require_stop and not (stop > 0):
        reasons.append("profile requires a stop on every trade")

    if reasons:
        return _deny(sym, reasons, prof.name)

    risk_pct = risk_usd / acct.equity * 100 if acct.equity > 0 else 0.0
    summary = (f"{side.value} {qty} @ {entry:.6g}, stop {stop:.6g} ({stop_pct_eff:.2f}%), "
               f"TP1 {tp1:.6g} / TP2 {tp2:.6g}, {lev}x, margin {margin:.2f}, "
               f"risk {risk_usd:.2f} ({risk_pct:.2f}% of equity), liquidation {liq:.6g}")
    notes.append(summary)
    plan = TradePlan(
        symbol=sym,
        side=side,
        entry=entry,
        stop=stop,
        tp1=tp1,
        tp2=tp2,
        leverage=lev,
        qty=qty,
        notional=notional,
        margin=margin,
        risk_usd=risk_usd,
        risk_pct=risk_pct,
        liquidation_price=liq,
        stop_pct=stop_pct_eff,
        tp1_fraction=prof.tp1_fraction,
        reason="; ".join(notes),
    )
    return RiskVerdict(symbol=sym, approved=True, reasons=tuple(notes), plan=plan, profile=prof.name)
