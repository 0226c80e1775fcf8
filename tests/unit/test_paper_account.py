"""PaperAccount: hand-computed fills, fees, slippage, funding, liquidation, serialisation, conservation."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import OrderRejected
from core.settings import PaperSettings
from core.types import Side
from exchange.paper import PaperAccount
from risk import Bar, evaluate, get_profile, step
from tests.unit.risk_builders import NOW, examples, risk_input
from tests.unit.risk_builders import trade_plan as plan

CENT = Decimal("0.01")


def ledger_identity(a: PaperAccount) -> Decimal:
    """(balance + margin) − (start + realised − fees − funding): exactly zero when conserved."""
    return (a.balance + a.margin_total) - (a.starting_balance + a.realised_pnl - a.fees_paid - a.funding_paid)


def test_open_partial_close_funding_close_hand_computed():
    a = PaperAccount.from_settings(PaperSettings(starting_balance=10_000, taker_fee=0.0005, maker_fee=0.0002,
                                                 slippage_bps=2))
    pos, fill = a.open(plan(), 100.0, NOW)
    assert fill.price == Decimal("100.02")  # 2 bps against a buyer
    assert fill.fee == Decimal("0.00500100")  # 10.002 * 0.0005
    assert a.margin_of(pos.id) == Decimal("2.00040000")  # 10.002 / 5
    assert a.balance == Decimal("10000") - Decimal("2.0004") - Decimal("0.005001")
    assert pos.liquidation_price == pytest.approx(100.02 * (1 - 0.2 + 0.005))
    assert pos.id == "P000001" and pos.qty_open == Decimal("0.1")

    fill, pnl = a.close(pos.id, Decimal("0.05"), 110.0, NOW + timedelta(hours=1), "tp1", kind="tp1")
    assert fill.price == Decimal("109.97800000")  # 2 bps against a seller
    assert pnl == Decimal("0.49790000")  # (109.978 - 100.02) * 0.05
    assert fill.fee == Decimal("0.00274945")
    assert a.margin_of(pos.id) == Decimal("1.00020000")
    assert a.get(pos.id).qty_open == Decimal("0.05") and a.get(pos.id).is_open

    paid = a.apply_funding(pos.id, 0.0001, 110.0, NOW + timedelta(hours=8))
    assert paid == Decimal("0.00055000")  # a long pays positive funding: 0.05 * 110 * 0.0001
    assert a.apply_funding(pos.id, 0.0001, 110.0, NOW + timedelta(hours=8)) == 0  # same time: once only

    fill, pnl = a.close(pos.id, Decimal("0.05"), 120.0, NOW + timedelta(hours=9), "tp2", maker=True, kind="tp2")
    assert fill.price == Decimal("120.00000000") and fill.fee == Decimal("0.00120000")  # maker: no slippage
    assert pnl == Decimal("0.99900000")
    closed = a.get(pos.id)
    assert not closed.is_open and closed.exit_reason == "tp2" and a.margin_total == 0
    expected = (Decimal(10_000) + Decimal("0.4979") + Decimal("0.999") - Decimal("0.005001")
                - Decimal("0.00274945") - Decimal("0.0012") - Decimal("0.00055"))
    assert a.balance == expected
    assert ledger_identity(a) == 0
    assert [e.kind for e in a.events] == ["opened", "tp1", "funding", "tp2"]
    assert a.events[1].r_multiple == pytest.approx((109.978 - 100.02) / (100.02 - 97.0))  # R from the fill
    assert closed.realised_pnl == pytest.approx(0.4979 + 0.999)


def test_short_receives_positive_funding_and_pays_negative():
    a = PaperAccount(Decimal(1_000), slippage_bps=Decimal(0))
    pos, _ = a.open(plan(side=Side.SHORT, qty="2", entry=50.0), 50.0, NOW)
    assert a.apply_funding(pos, 0.001, 50.0, NOW + timedelta(hours=8)) == Decimal("-0.1")
    assert a.apply_funding(pos, -0.001, 50.0, NOW + timedelta(hours=16)) == Decimal("0.1")
    assert a.funding_paid == 0 and ledger_identity(a) == 0
    # unrealised for a short: price falls -> gain
    assert a.unrealised({"BTC/USDT:USDT": 45.0}) == Decimal("10.0")
    assert a.equity({"BTC/USDT:USDT": 45.0}) == a.balance + a.margin_total + Decimal(10)


def test_rejections():
    a = PaperAccount(Decimal(100))
    with pytest.raises(OrderRejected, match="exceeds free balance"):
        a.open(plan(qty="10", lev=2), 100.0, NOW)
    pos, _ = a.open(plan(qty="0.1"), 100.0, NOW)
    with pytest.raises(OrderRejected, match="close qty"):
        a.close(pos.id, Decimal("0.2"), 100.0, NOW)
    a.close(pos.id, Decimal("0.1"), 100.0, NOW)
    with pytest.raises(OrderRejected, match="already closed"):
        a.close(pos.id, Decimal("0.1"), 100.0, NOW)
    assert a.balance + a.margin_total == a.starting_balance + a.realised_pnl - a.fees_paid - a.funding_paid


def test_liquidation_closes_at_the_liquidation_price():
    a = PaperAccount(Decimal(1_000), slippage_bps=Decimal(0))
    pos, _ = a.open(plan(qty="1", lev=10), 100.0, NOW)
    liq = a.liquidation_price(pos.id)
    assert liq == Decimal("90.50000000")  # 100 * (1 - 0.1 + 0.005)
    assert a.check_liquidation(pos.id, high=101, low=91, ts=NOW + timedelta(hours=1)) is None
    fill = a.check_liquidation(pos.id, high=95, low=89, ts=NOW + timedelta(hours=2))
    assert fill is not None and fill.price == liq
    p = a.get(pos.id)
    assert p.exit_reason == "liquidation" and not p.is_open
    # the loss is the margin minus the maintenance part, plus fees; the account never goes negative
    assert a.realised_pnl == Decimal("-9.5")
    assert ledger_identity(a) == 0


def test_serialisation_round_trip_is_exact_and_json_safe():
    a = PaperAccount(Decimal("5000.5"))
    p1, _ = a.open(plan(qty="0.3"), 101.37, NOW, cycle_id="c1")
    p2, _ = a.open(plan(symbol="ETH/USDT:USDT", side=Side.SHORT, qty="1.7", entry=33.3), 33.3, NOW)
    a.close(p1.id, Decimal("0.1"), 104.11, NOW + timedelta(hours=1), "partial")
    a.apply_funding(p2.id, "0.00013", "33.9", NOW + timedelta(hours=8))
    d = a.to_dict()
    text = json.dumps(d)
    b = PaperAccount.from_dict(json.loads(text))
    assert b.to_dict() == d
    assert b.balance == a.balance and b.margin_total == a.margin_total
    assert b.get(p1.id) == a.get(p1.id) and b.fills == a.fills and b.events == a.events
    # it keeps working after a restore: next id continues, money identical
    p3, _ = b.open(plan(qty="0.01"), 100.0, NOW + timedelta(hours=9))
    assert p3.id == "P000003"
    assert ledger_identity(b) == 0


def test_monitor_path_risk_plan_to_exit_step_to_account():
    """evaluate -> open -> exits.step -> apply_exit_step, end to end with the default profile."""
    v = evaluate(risk_input(price=100.0, atr_pct=2.0))
    assert v.approved
    a = PaperAccount(Decimal(10_000), slippage_bps=Decimal(0))
    pos, _ = a.open(v.plan, v.plan.entry, NOW)
    prof = get_profile("default")
    res = step(a.get(pos.id), Bar(NOW + timedelta(hours=1), 100, v.plan.tp1 + 0.5, 99.5, v.plan.tp1), prof)
    out = a.apply_exit_step(res)
    assert len(out) == 1
    p = a.get(pos.id)
    assert p.tp1_done and p.phase == "trailing" and p.qty_open == pos.qty_initial - out[0][0].qty
    assert p.stop > p.entry  # trailing 2% behind the best price, above entry
    assert out[0][0].fee == (out[0][0].price * out[0][0].qty * a.maker_fee).quantize(Decimal("1e-8"))
    assert any(e.kind == "stop_moved" for e in a.events)
    assert ledger_identity(a) == 0


# ------------------------------------------------------------------------------------------------
# conservation property

op = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]),
              st.sampled_from([Side.LONG, Side.SHORT]), st.integers(1, 5_000), st.integers(1, 20),
              st.floats(0.01, 100_000)),
    st.tuples(st.just("partial"), st.integers(0, 50), st.floats(0.05, 0.95), st.floats(0.5, 1.5)),
    st.tuples(st.just("close"), st.integers(0, 50), st.floats(0.5, 1.5)),
    st.tuples(st.just("funding"), st.integers(0, 50), st.floats(-0.003, 0.003), st.floats(0.8, 1.2)),
)


@settings(max_examples=examples(200), deadline=None)
@given(start=st.integers(100, 1_000_000), ops=st.lists(op, max_size=25),
       fee=st.sampled_from(["0", "0.0002", "0.0005", "0.001"]), slip=st.sampled_from(["0", "2", "10"]))
def test_property_equity_is_conserved_to_the_cent(start, ops, fee, slip):
    a = PaperAccount(Decimal(start), taker_fee=Decimal(fee), slippage_bps=Decimal(slip))
    marks: dict[str, float] = {}
    t = NOW
    for o in ops:
        t += timedelta(hours=1)
        opened = a.open_positions()
        if o[0] == "open":
            _, sym, side, qty_units, lev, price = o
            qty = Decimal(qty_units) / 1000
            try:
                a.open(plan(symbol=sym, side=side, qty=str(qty), lev=lev, entry=price), price, t)
            except OrderRejected:
                continue
            marks[sym] = price
        elif not opened:
            continue
        elif o[0] == "partial":
            p = opened[o[1] % len(opened)]
            q = (p.qty_open * Decimal(repr(o[2]))).quantize(Decimal("0.001"), rounding="ROUND_DOWN")
            if q <= 0:
                continue
            price = p.entry * o[3]
            a.close(p.id, q, price, t, "partial")
            marks[p.symbol] = price
        elif o[0] == "close":
            p = opened[o[1] % len(opened)]
            price = p.entry * o[2]
            a.close(p.id, p.qty_open, price, t, "close")
            marks[p.symbol] = price
        else:
            p = opened[o[1] % len(opened)]
            a.apply_funding(p.id, o[2], p.entry * o[3], t)
        # the ledger identity holds exactly, and equity to the cent
        assert ledger_identity(a) == 0
        unreal = a.unrealised(marks)
        expected = a.starting_balance + a.realised_pnl - a.fees_paid - a.funding_paid + unreal
        assert abs(a.equity(marks) - expected) < CENT
        assert a.fees_paid >= 0
    restored = PaperAccount.from_dict(json.loads(json.dumps(a.to_dict())))
    assert restored.equity(marks) == a.equity(marks)
    # close everything at the marks: equity == balance, margin all released
    for p in a.open_positions():
        a.close(p.id, p.qty_open, marks.get(p.symbol, p.entry), t + timedelta(hours=1), "final")
    assert a.margin_total == 0
    assert a.balance == a.starting_balance + a.realised_pnl - a.fees_paid - a.funding_paid
