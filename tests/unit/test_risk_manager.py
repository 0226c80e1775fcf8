"""Risk manager: hand-computed plans, every veto, every profile approving and denying, properties."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ConfigError
from core.types import Action, Side, VolState
from risk import PROFILES, MarketLimits, TrackRecord, evaluate, get_profile, liquidation_price
from risk.formulas import base_asset, correlation_group, kelly_star, leverage_for_atr
from tests.unit.risk_builders import account, critical_news, examples, position, risk_input

# ------------------------------------------------------------------------------------------------
# hand-computed default plan


def test_default_long_plan_hand_computed():
    v = evaluate(risk_input(price=60_000.0, spread_pct=0.02, atr_pct=2.5))
    assert v.approved, v.reasons
    p = v.plan
    assert p is not None and v.profile == "default"
    # ask = 60000 + 60000*0.02/200 = 60006; stop 2.5% below, floored to the 0.01 tick
    assert p.entry == pytest.approx(60_006.0)
    assert p.stop == pytest.approx(58_505.85)
    r = 60_006.0 - 58_505.85
    assert p.tp1 == pytest.approx(60_006.0 + 1.5 * r, abs=0.01)
    assert p.tp2 == pytest.approx(60_006.0 + 2.5 * r, abs=0.01)
    assert p.leverage == 7  # ATR 2.5% >= 2% -> 7x
    assert p.qty == Decimal("0.099")  # 150 / 1500.15 = 0.09999 -> down to 0.001 step
    assert p.risk_usd == pytest.approx(0.099 * r)
    assert p.risk_usd <= 150.0
    assert p.margin == pytest.approx(0.099 * 60_006.0 / 7)
    assert p.liquidation_price == pytest.approx(60_006.0 * (1 - 1 / 7 + 0.005))
    assert p.tp1_fraction == 0.5
    assert any("risk 1.5% of equity" in r for r in v.reasons)
    assert any("leverage 7x" in r for r in v.reasons)


def test_short_uses_bid_and_stop_above():
    v = evaluate(risk_input(action=Action.SHORT, price=100.0, spread_pct=0.1, atr_pct=3.5))
    assert v.approved, v.reasons
    p = v.plan
    assert p.side is Side.SHORT
    assert p.entry == pytest.approx(99.95)
    assert p.stop > p.entry and p.tp1 < p.entry and p.tp2 < p.tp1
    assert p.stop == pytest.approx(103.45)  # 99.95 * 1.035 = 103.448.. ceil to tick
    assert p.leverage == 5  # ATR 3.5% >= 3% -> 5x


@pytest.mark.parametrize(("atr", "lev"), [(5.0, 3), (4.0, 3), (3.2, 5), (2.0, 7), (1.0, 10), (0.1, 10)])
def test_leverage_tiers(atr, lev):
    assert leverage_for_atr(atr, get_profile("default")) == lev


def test_stop_bounded_and_regime_multipliers():
    calm = evaluate(risk_input(atr_pct=0.5)).plan
    assert calm.stop_pct == pytest.approx(1.5, abs=0.01)
    wild = evaluate(risk_input(atr_pct=9.0)).plan
    assert wild.stop_pct == pytest.approx(5.0, abs=0.01)
    assert wild.leverage == 3
    panic = evaluate(risk_input(atr_pct=2.5, vol=VolState.PANIC))
    assert panic.approved
    assert panic.plan.stop_pct == pytest.approx(2.5 * 1.5, abs=0.01)
    assert panic.plan.leverage == 3  # floor(7 * 0.5)
    dig = evaluate(risk_input(atr_pct=2.5, vol=VolState.DIGESTING)).plan
    assert dig.stop_pct == pytest.approx(2.5 * 1.2, abs=0.01)
    assert dig.leverage == 5  # floor(7 * 0.8)
    # risk stays 1.5% of equity whatever the regime: size = risk / stop distance
    assert panic.plan.risk_usd <= 150.0 and panic.plan.risk_usd > 145.0


def test_quantile_stop_alternative():
    prof = dataclasses.replace(get_profile("default"), name="q", stop_method="quantile")
    p = evaluate(risk_input(profile=prof, quantile_stop_pct=3.3)).plan
    assert p.stop_pct == pytest.approx(3.3, abs=0.01)
    p = evaluate(risk_input(profile=prof, quantile_stop_pct=12.0)).plan
    assert p.stop_pct == pytest.approx(5.0, abs=0.01)
    p = evaluate(risk_input(profile=prof, atr_pct=2.0)).plan  # no quantile given: ATR stop
    assert p.stop_pct == pytest.approx(2.0, abs=0.01)


# ------------------------------------------------------------------------------------------------
# denials, all reasons listed


def test_wait_is_denied_with_its_reason():
    v = evaluate(risk_input(action=Action.WAIT))
    assert not v.approved and v.reasons == ("decision is WAIT",) and v.plan is None


def test_every_failing_check_is_listed():
    acct = account(equity=9_400.0, day_start_equity=10_000.0,
                   positions=(position("BTC/USDT:USDT", pid="a"), position("ETH/USDT:USDT", pid="b"),
                              position("DOGE/USDT:USDT", pid="c", entry=0.1, qty="1000")))
    v = evaluate(risk_input(symbol="BTC/USDT:USDT", spread_pct=0.5, funding_rate=0.004,
                            btc_change_4h_pct=-3.1, news=critical_news(), acct=acct))
    assert not v.approved and v.plan is None
    text = " | ".join(v.reasons)
    for needle in ("daily loss -6.00%", "3 open positions, the limit is 3", "already open",
                   "spread 0.500%", "funding +0.4000%/8h against the long", "BTC fell -3.10%",
                   "critical negative news"):
        assert needle in text, (needle, v.reasons)


def test_funding_veto_is_side_aware():
    assert not evaluate(risk_input(action=Action.SHORT, funding_rate=-0.003)).approved
    assert evaluate(risk_input(action=Action.LONG, funding_rate=-0.003)).approved
    assert evaluate(risk_input(action=Action.SHORT, funding_rate=0.003)).approved
    assert evaluate(risk_input(funding_rate=0.0025)).approved  # at the limit, not beyond


def test_btc_dump_blocks_longs_only():
    assert not evaluate(risk_input(symbol="SOL/USDT:USDT", price=150, btc_change_4h_pct=-2.5)).approved
    assert evaluate(risk_input(symbol="SOL/USDT:USDT", price=150, action=Action.SHORT,
                               btc_change_4h_pct=-2.5)).approved
    assert evaluate(risk_input(symbol="SOL/USDT:USDT", price=150, btc_change_4h_pct=-1.9)).approved


def test_correlation_groups_and_override():
    acct = account(positions=(position("ETH/USDT:USDT"),))
    v = evaluate(risk_input(symbol="SOL/USDT:USDT", price=150.0, acct=acct))
    assert not v.approved
    assert any("correlation group 'layer1' already holds ETH/USDT:USDT" in r for r in v.reasons)
    # BTC is another group: fine
    assert evaluate(risk_input(symbol="BTC/USDT:USDT", acct=acct)).approved
    # a configured map that separates them
    v = evaluate(risk_input(symbol="SOL/USDT:USDT", price=150.0, acct=acct,
                            correlation_groups={"ETH": "eth", "SOL": "sol"}))
    assert v.approved, v.reasons
    assert base_asset("1000PEPE/USDT:USDT") == "PEPE"
    assert correlation_group("1000PEPE/USDT:USDT", get_profile("default").correlation_groups) == "meme"


def test_quantity_rounding_to_zero_and_minimums():
    tiny = account(equity=20.0)
    v = evaluate(risk_input(acct=tiny, limits=MarketLimits(qty_step=Decimal("0.001"))))
    assert not v.approved
    assert any("rounds to zero at step 0.001" in r for r in v.reasons)
    v = evaluate(risk_input(acct=account(equity=1_000.0),
                            limits=MarketLimits(qty_step=Decimal("0.0001"), min_qty=Decimal("0.01"))))
    assert not v.approved and any("below the market minimum 0.01" in r for r in v.reasons)
    v = evaluate(risk_input(price=2.0, acct=account(equity=100.0),
                            limits=MarketLimits(qty_step=Decimal("1"), min_qty=Decimal("1"),
                                                min_notional=Decimal("100"))))
    assert not v.approved and any("notional" in r and "below the market minimum 100" in r for r in v.reasons)


def test_liquidation_before_stop_reduces_leverage():
    wide = dataclasses.replace(get_profile("default"), name="wide", stop_method="fixed", fixed_stop_pct=12.0,
                               leverage_by_atr=(), max_leverage=20)
    v = evaluate(risk_input(profile=wide, limits=MarketLimits(max_leverage=50)))
    assert v.approved, v.reasons
    p = v.plan
    # at 20x a long is liquidated ~4.5% below entry, far inside a 12% stop: leverage comes down
    assert p.leverage < 20
    assert p.liquidation_price < p.stop
    assert any("reduced to" in r and "liquidation lies beyond the stop" in r for r in v.reasons)
    # and one more step up would have crossed the stop (minus the buffer)
    higher = liquidation_price(p.entry, Side.LONG, p.leverage + 1, wide.maintenance_margin_rate)
    assert higher > p.stop - wide.liq_buffer_pct / 100 * p.entry


def test_unknown_volatility_uses_the_most_cautious_leverage():
    v = evaluate(risk_input(profile="arena", atr_pct=float("nan")))
    assert v.approved and v.plan.leverage == 3
    v = evaluate(risk_input(profile="default", atr_pct=float("nan")))
    assert not v.approved and any("no stop can be set" in r for r in v.reasons)


def test_numpy_inputs_give_plain_floats():
    import numpy as np

    inp = risk_input(price=100.0, atr_pct=2.0)
    inp = dataclasses.replace(inp, bid=np.float64(99.99), ask=np.float64(100.01),
                              score=dataclasses.replace(inp.score, atr_pct=np.float64(2.0)))
    v = evaluate(inp)
    assert v.approved and type(v.plan.entry) is float and type(v.plan.stop) is float
    # stop 100.01 * 0.98 = 98.0098 floored to 98.00; 150 / 2.01 = 74.6268.. down to the 0.001 step
    assert v.plan.stop == 98.0 and v.plan.qty == Decimal("74.626")

    p = evaluate(risk_input(atr_pct=1.0, limits=MarketLimits(max_leverage=4))).plan
    assert p.leverage == 4


def test_unknown_profile_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown risk profile 'yolo'"):
        evaluate(risk_input(profile="yolo"))


# ------------------------------------------------------------------------------------------------
# every profile: one approval, one denial, with reasons


def test_conservative_approves_and_denies():
    v = evaluate(risk_input(profile="conservative", atr_pct=1.0))
    assert v.approved, v.reasons
    assert v.plan.leverage == 5  # calm: capped at 5x
    assert v.plan.risk_usd <= 100.0
    assert v.plan.stop < v.plan.entry
    # weekly -10% and drawdown -20% breakers
    acct = account(equity=7_900.0, day_start_equity=7_950.0, week_start_equity=8_900.0, peak_equity=10_000.0)
    v = evaluate(risk_input(profile="conservative", acct=acct))
    assert not v.approved
    text = " | ".join(v.reasons)
    assert "weekly loss -11.24% reached the -10% limit" in text
    assert "drawdown -21.00% from peak reached the -20% breaker" in text
    assert "daily" not in text
    # the default profile has the same weekly and drawdown breakers (issue 13, item 12); kelly has neither
    assert " | ".join(evaluate(risk_input(profile="default", acct=acct)).reasons) == text
    assert not any("weekly" in r or "drawdown" in r for r in evaluate(risk_input(profile="kelly", acct=acct)).reasons)


def test_kelly_approves_and_denies():
    v = evaluate(risk_input(profile="kelly", atr_pct=2.0, atr_1h=300.0,
                            track=TrackRecord(win_rate=0.55, win_loss_ratio=1.5, n_trades=60)))
    assert v.approved, v.reasons
    assert kelly_star(0.55, 1.5) == pytest.approx(0.25)
    # the record (60 trades) is shrunk towards the prior of 10 pseudo-trades at 0.5 / 1.5 (risk/track.py)
    w = (0.55 * 60 + 0.5 * 10) / 70
    f = kelly_star(w, 1.5)  # 0.2381
    # 0.15 * f* = 3.57% (vol adj 1 at ATR 2%, regime 1), under the 12% tier cap of a $10k account
    assert v.plan.risk_pct == pytest.approx(15 * f, abs=0.05)
    assert v.plan.stop_pct == pytest.approx(3 * 300 / 60_006 * 100, abs=0.01)  # Chandelier 3xATR
    assert any(f"kelly: f*={f:.3f}" in r for r in v.reasons)
    # no edge -> denied
    v = evaluate(risk_input(profile="kelly", track=TrackRecord(0.3, 1.2, 60)))
    assert not v.approved and any("kelly: no edge" in r for r in v.reasons)


def test_kelly_account_tiers():
    # $80 account: tier < $100 allows 3% risk and 1 position
    acct = account(equity=80.0, positions=(position("ETH/USDT:USDT", qty="0.001", margin=0.6),),
                   balance=79.0)
    v = evaluate(risk_input(profile="kelly", acct=acct, limits=MarketLimits(qty_step=Decimal("0.00001"),
                                                                            min_notional=Decimal("1"))))
    assert not v.approved
    assert any("1 open positions, the limit is 1 (account tier" in r for r in v.reasons)
    v = evaluate(risk_input(profile="kelly", acct=account(equity=80.0), atr_pct=1.0, atr_1h=200.0,
                            track=TrackRecord(0.7, 3.0, 100),
                            limits=MarketLimits(qty_step=Decimal("0.00001"), min_notional=Decimal("1"))))
    assert v.approved, v.reasons
    assert v.plan.risk_usd <= 80.0 * 0.03 + 1e-9
    assert any("capped by account tier at 3%" in r for r in v.reasons)
    assert get_profile("kelly").position_limit(300) == 2
    assert get_profile("kelly").position_limit(1_500) == 3
    assert get_profile("kelly").position_limit(50_000) == 5


def test_arena_approves_and_denies():
    v = evaluate(risk_input(profile="arena", price=100.0, atr_pct=2.5,
                            limits=MarketLimits(price_tick=Decimal("0.001"))))
    assert v.approved, v.reasons
    p = v.plan
    # the caps hold on NOTIONAL exposure (issue 13 item 11): a 50% single position, not 50% margin at
    # up to 10x (~5x equity in notional, ~15% of equity lost per 3% stop)
    assert p.notional <= 0.5 * 10_000 + 1e-6 and p.notional > 0.49 * 10_000
    assert p.margin == pytest.approx(p.notional / p.leverage)
    assert p.stop_pct == pytest.approx(3.0, abs=0.01)
    assert p.risk_usd <= 0.5 * 10_000 * 0.0301  # a stop costs at most ~1.5% of equity
    assert p.tp1 == p.tp2 == pytest.approx(p.entry * 1.10, abs=0.001)
    assert p.tp1_fraction == 1.0
    assert any("notional cap 50% of equity" in r for r in v.reasons)
    # with a position open: 30% of equity
    acct = account(equity=10_000.0, balance=7_000.0,
                   positions=(position("ETH/USDT:USDT", qty="1", entry=3000.0, leverage=1),))
    p = evaluate(risk_input(profile="arena", price=100.0, acct=acct)).plan
    assert p.notional <= 0.3 * 10_000 + 1e-6 and p.notional > 0.29 * 10_000
    # total notional capped at 80% of equity: 7,500 open leaves 500
    acct = account(equity=10_000.0, balance=8_500.0,
                   positions=(position("ETH/USDT:USDT", qty="2.5", entry=3000.0, leverage=5),))
    p = evaluate(risk_input(profile="arena", price=100.0, acct=acct)).plan
    assert p.notional <= 500.0 + 1e-6 and p.notional > 490.0
    # full: no room, a clear denial
    acct = account(equity=10_000.0, balance=8_400.0,
                   positions=(position("ETH/USDT:USDT", qty="2.7", entry=3000.0, leverage=5),))
    v = evaluate(risk_input(profile="arena", price=100.0, acct=acct))
    assert not v.approved and any("rounds to zero" in r for r in v.reasons)
    # denial: daily -15%
    acct = account(equity=8_400.0, day_start_equity=10_000.0)
    v = evaluate(risk_input(profile="arena", acct=acct))
    assert not v.approved and any("daily loss -16.00% reached the -15% limit" in r for r in v.reasons)
    # -6% is fine for arena but not for default
    acct = account(equity=9_400.0, day_start_equity=10_000.0)
    assert evaluate(risk_input(profile="arena", acct=acct)).approved
    assert not evaluate(risk_input(profile="default", acct=acct)).approved


def test_default_approves_and_denies_on_max_positions():
    acct = account(positions=(position("XRP/USDT:USDT", pid="a", entry=0.5, qty="100"),
                              position("DOGE/USDT:USDT", pid="b", entry=0.1, qty="100")))
    assert evaluate(risk_input(acct=acct)).approved
    acct3 = account(positions=acct.positions + (position("ADA/USDT:USDT", pid="c", entry=0.5, qty="10"),))
    v = evaluate(risk_input(acct=acct3))
    assert not v.approved and any("3 open positions, the limit is 3" in r for r in v.reasons)


# ------------------------------------------------------------------------------------------------
# properties

PROFILE_NAMES = sorted(PROFILES)


@st.composite
def scenarios(draw):
    prof = draw(st.sampled_from(PROFILE_NAMES))
    price = draw(st.floats(0.0005, 150_000, allow_nan=False, allow_infinity=False))
    equity = draw(st.floats(10.0, 2_000_000.0))
    used = draw(st.floats(0.0, 0.9))
    n_pos = draw(st.integers(0, 6))
    symbols = ["XRP/USDT:USDT", "DOGE/USDT:USDT", "ETH/USDT:USDT", "LINK/USDT:USDT", "AAVE/USDT:USDT",
               "UNI/USDT:USDT"]
    margin_each = equity * used / max(n_pos, 1) if n_pos else 0.0
    lev_pos = draw(st.sampled_from([1, 3, 10]))  # notional of the open positions = margin x leverage
    positions = tuple(position(symbols[i], pid=f"p{i}", entry=1.0, qty=f"{max(margin_each * lev_pos, 0.001):.6f}",
                               margin=margin_each) for i in range(n_pos))
    balance = equity - margin_each * n_pos
    action = draw(st.sampled_from([Action.LONG, Action.SHORT, Action.WAIT]))
    vol = draw(st.sampled_from(list(VolState)))
    atr = draw(st.floats(0.0, 15.0))
    step_exp = draw(st.integers(-6, 0))
    tick_exp = draw(st.integers(-8, -1))
    limits = MarketLimits(qty_step=Decimal(1).scaleb(step_exp), price_tick=Decimal(1).scaleb(tick_exp),
                          min_qty=Decimal(1).scaleb(step_exp), min_notional=Decimal(draw(st.sampled_from([0, 1, 5]))),
                          max_leverage=draw(st.sampled_from([2, 5, 10, 20, 100])))
    track = TrackRecord(draw(st.floats(0.0, 1.0)), draw(st.floats(0.1, 5.0)), draw(st.integers(0, 200)))
    inp = risk_input(symbol="BTC/USDT:USDT", action=action, price=price,
                     spread_pct=draw(st.floats(0.0, 0.4)), atr_pct=atr, vol=vol,
                     acct=account(equity=equity, balance=balance, positions=positions),
                     limits=limits, profile=prof, track=track,
                     funding_rate=draw(st.floats(-0.004, 0.004)),
                     btc_change_4h_pct=draw(st.none() | st.floats(-5, 5)),
                     atr_1h=draw(st.none() | st.floats(0.0, price * 0.05)))
    return inp


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_no_plan_exceeds_its_caps(inp):
    v = evaluate(inp)
    prof = get_profile(inp.profile)
    assert v.reasons, "every verdict explains itself"
    if not v.approved:
        assert v.plan is None
        return
    p = v.plan
    acct = inp.account
    eq = acct.equity
    tol = 1e-6 * max(1.0, eq)
    # stop on the loss side, targets on the profit side
    s = p.side.sign
    assert (p.entry - p.stop) * s > 0
    assert (p.tp1 - p.entry) * s > 0 and (p.tp2 - p.tp1) * s >= 0 and p.tp2 > 0
    # leverage caps and liquidation beyond the stop
    assert 1 <= p.leverage <= min(prof.max_leverage, inp.limits.max_leverage)
    assert (p.stop - p.liquidation_price) * s > 0
    # quantity: on the step grid and above the market minimums
    assert p.qty > 0 and p.qty % inp.limits.qty_step == 0
    assert p.qty >= inp.limits.min_qty
    assert Decimal(repr(p.entry)) * p.qty >= inp.limits.min_notional
    assert p.risk_usd == pytest.approx(float(p.qty) * abs(p.entry - p.stop), rel=1e-9)
    # risk caps per sizing method
    if prof.sizing == "fixed_risk":
        assert p.risk_usd <= eq * prof.risk_per_trade_pct / 100 + tol
    elif prof.sizing == "kelly":
        assert p.risk_usd <= eq * prof.tier_for(eq).max_risk_pct / 100 + tol
    # exposure caps: margin fits the free balance with the fee reserve and the profile's margin caps
    trade_cap = prof.trade_margin_pct_with_positions if acct.open_positions else prof.trade_margin_pct_empty
    assert p.margin <= acct.balance * trade_cap / 100 + tol
    assert p.margin + acct.margin_used <= eq * prof.max_total_margin_pct / 100 + tol
    assert p.margin + p.notional * prof.fee_reserve_pct / 100 <= acct.balance + tol
    # exposure caps on notional (arena): one trade and all positions together, % of equity
    n_cap = prof.trade_notional_pct_with_positions if acct.open_positions else prof.trade_notional_pct_empty
    if n_cap is not None:
        assert p.notional <= eq * n_cap / 100 + tol
    if prof.max_total_notional_pct is not None:
        assert p.notional + acct.notional_used <= eq * prof.max_total_notional_pct / 100 + tol
    # position caps
    assert len(acct.open_positions) < prof.position_limit(eq)
    # vetoes respected
    assert inp.spread_pct <= prof.max_spread_pct
    if p.side is Side.LONG and inp.btc_change_4h_pct is not None:
        assert inp.btc_change_4h_pct >= -prof.btc_dump_pct
    if inp.funding_rate is not None:
        assert inp.funding_rate * 100 * s <= prof.funding_veto_pct + 1e-12


@settings(max_examples=examples(150), deadline=None)
@given(st.sampled_from(PROFILE_NAMES), st.floats(0.0, 0.99), st.floats(100.0, 1e6), st.floats(0, 12))
def test_property_daily_loss_beyond_limit_always_denies(prof_name, loss, equity, atr):
    prof = get_profile(prof_name)
    start = equity
    now_equity = start * (1 - max(loss, prof.daily_loss_pct / 100))
    v = evaluate(risk_input(profile=prof_name, atr_pct=atr,
                            acct=account(equity=now_equity, day_start_equity=start)))
    assert not v.approved
    assert any("daily loss" in r for r in v.reasons)
