"""Resting orders and adds in the paper account: gaps, maker/taker, validation, OCO, round trip,
ccxt mapping; the risk checks of adds and reduce-only orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.errors import OrderRejected
from core.types import RestingOrder, Side
from exchange.paper import PaperAccount
from risk.intents import check_add, check_reduce, check_resting_order
from risk.manager import MarketLimits
from tests.unit.risk_builders import account, trade_plan

T = datetime(2025, 3, 3, tzinfo=UTC)
S = "BTC/USDT:USDT"


def _acct() -> PaperAccount:
    return PaperAccount(Decimal(10_000), slippage_bps=Decimal(10))


def _buy(price: float, oid: str = "b1", **kw) -> RestingOrder:
    return RestingOrder(oid, S, "limit", "buy", Decimal("1"), price, leverage=3, stop=kw.pop("stop", price * 0.9),
                        take_profit=kw.pop("tp", price * 1.02), tag="grid:-1", created_at=T, **kw)


def test_limit_fills_at_its_price_as_maker_and_at_the_open_on_a_gap():
    a = _acct()
    a.place_order(_buy(100.0))
    a.match_bar(S, 101, 101.5, 99.5, 100.5, T)
    (p,) = a.open_positions()
    assert p.entry == 100.0 and a.fills[0].fee == Decimal("0.02")  # maker 0.02 %, no slippage
    b = _acct()
    b.place_order(_buy(100.0))
    b.match_bar(S, 97, 98, 96.5, 97.5, T)  # opens below the limit: filled at the open, never worse
    assert b.open_positions()[0].entry == 97.0


def test_attached_exits_become_reduce_only_orders_and_cancel_each_other():
    a = _acct()
    a.place_order(_buy(100.0, stop=95.0, tp=102.0))
    a.match_bar(S, 100.5, 100.6, 99.9, 100.2, T)
    kinds = sorted(o.type for o in a.open_orders(S))
    assert kinds == ["limit", "stop_market"] and all(o.reduce_only for o in a.open_orders(S))
    a.match_bar(S, 100.2, 100.3, 94.0, 94.5, T + timedelta(hours=1))  # the stop: taker with slippage
    pos = next(iter(a.positions.values()))
    assert pos.exit_reason == "stop" and not a.open_orders(S)  # the take-profit was cancelled (OCO)
    fill = a.fills[-1]
    assert fill.price == Decimal("94.905")  # trigger 95 − 10 bps slippage
    assert {r["id"]: r["status"] for r in a.order_log} == {"b1": "filled", "b1:sl": "filled", "b1:tp": "canceled"}


def test_order_validation_and_round_trip():
    a = _acct()
    a.place_order(_buy(100.0))
    with pytest.raises(OrderRejected, match="already used"):
        a.place_order(_buy(100.0))
    with pytest.raises(OrderRejected, match="unknown position"):
        a.place_order(RestingOrder("r1", S, "limit", "sell", Decimal(1), 110.0, reduce_only=True, position_id="nope"))
    with pytest.raises(OrderRejected, match="only limit orders open"):
        a.place_order(RestingOrder("s1", S, "stop_market", "buy", Decimal(1), 110.0))
    with pytest.raises(OrderRejected, match="not positive"):
        a.place_order(_buy(-1.0, "b2"))
    a.match_bar(S, 100.5, 100.6, 99.9, 100.2, T)
    b = PaperAccount.from_dict(a.to_dict())
    assert b.to_dict() == a.to_dict() and b.open_orders(S) == a.open_orders(S)
    with pytest.raises(OrderRejected, match="already used"):
        b.place_order(_buy(100.0))  # ids stay unique across a restart
    assert a.cancel_order("b1:tp") is not None and a.cancel_order("b1:tp") is None


def test_add_averages_the_entry_and_keeps_the_money_identity():
    a = _acct()
    pos, _ = a.open(trade_plan(S, Side.LONG, entry=100.0, qty="1", lev=5), 100.0, T, position_id="P1")
    a.add("P1", Decimal("1"), 110.0, T + timedelta(hours=1))
    p = a.get("P1")
    assert p.qty_open == Decimal("2") and p.entry == pytest.approx((100.1 + 110.11) / 2)
    start = a.starting_balance
    a.close("P1", p.qty_open, 120.0, T + timedelta(hours=2))
    assert a.balance == start + a.realised_pnl - a.fees_paid - a.funding_paid
    with pytest.raises(OrderRejected, match="closed"):
        a.add("P1", Decimal(1), 100.0, T)


def test_risk_checks_of_adds_reduces_and_reduce_only_orders():
    lim = MarketLimits(qty_step=Decimal("0.001"), min_notional=Decimal("5"))
    a = _acct()
    a.open(trade_plan(S, Side.LONG, entry=100.0, qty="10", lev=5, stop_pct=1.0), 100.0, T, position_id="P1")
    p = a.get("P1")
    st = account(equity=10_000, positions=(p,))
    assert check_add(p, Decimal("1"), 100.0, st, lim, "default").approved
    v = check_add(p, Decimal("200"), 100.0, st, lim, "default")
    assert not v.approved and any("loss at the stop" in r for r in v.reasons)
    assert not check_add(p, Decimal("1"), 100.0, account(equity=10_000, positions=(p,), halted=True), lim,
                         "default").approved
    assert check_reduce(p, Decimal("5")).approved and not check_reduce(p, Decimal("11")).approved
    ro = RestingOrder("x", S, "limit", "sell", Decimal("11"), 105.0, reduce_only=True, position_id="P1")
    assert not check_resting_order(ro, st, lim, "default").approved
    no_stop = RestingOrder("y", S, "limit", "buy", Decimal("1"), 90.0, leverage=3)
    assert any("requires a stop" in r for r in check_resting_order(no_stop, st, lim, "default").reasons)
    too_lev = RestingOrder("z", S, "limit", "buy", Decimal("1"), 90.0, leverage=50, stop=85.0)
    assert any("leverage 50x" in r for r in check_resting_order(too_lev, st, lim, "default").reasons)


def test_resting_order_maps_onto_ccxt_create_order():
    o = _buy(100.0, stop=95.0, tp=102.0)
    c = o.to_ccxt()
    assert c["type"] == "limit" and c["side"] == "buy" and c["amount"] == 1.0 and c["price"] == 100.0
    assert c["params"]["clientOrderId"] == "b1" and c["params"]["stopLoss"] == {"triggerPrice": 95.0}
    assert c["params"]["takeProfit"]["price"] == 102.0 and c["params"]["postOnly"] is True
    sl = RestingOrder("b1:sl", S, "stop_market", "sell", Decimal(1), 95.0, reduce_only=True, position_id="P")
    c2 = sl.to_ccxt()
    assert c2["type"] == "market" and c2["price"] is None and c2["params"]["triggerPrice"] == 95.0
    assert c2["params"]["reduceOnly"] is True and sl.position_side is Side.LONG
