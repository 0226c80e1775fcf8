"""Exit rules: hand-computed scenarios and a property over random bar sequences."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.types import Position, Side
from risk import Bar, get_profile, step
from tests.unit.risk_builders import NOW, examples, hours

DEFAULT = get_profile("default")


def long_pos(**kw) -> Position:
    base = dict(id="L1", symbol="BTC/USDT:USDT", side=Side.LONG, entry=100.0, qty_initial=Decimal("1.0"),
                qty_open=Decimal("1.0"), stop=97.0, initial_stop=97.0, tp1=104.5, tp2=107.5, leverage=5,
                margin=20.0, liquidation_price=80.5, opened_at=NOW, best_price=100.0)
    base.update(kw)
    return Position(**base)


def short_pos(**kw) -> Position:
    base = dict(id="S1", symbol="ETH/USDT:USDT", side=Side.SHORT, entry=100.0, qty_initial=Decimal("2"),
                qty_open=Decimal("2"), stop=103.0, initial_stop=103.0, tp1=95.5, tp2=92.5, leverage=5,
                margin=40.0, liquidation_price=119.5, opened_at=NOW, best_price=100.0)
    base.update(kw)
    return Position(**base)


def bar(h: float, o: float, hi: float, lo: float, c: float) -> Bar:
    return Bar(ts=NOW + hours(h), open=o, high=hi, low=lo, close=c)


def test_long_tp1_breakeven_trailing_tp2_hand_computed():
    p = long_pos()
    # bar 1: best 102.6 = +2.6% >= 2.5% -> stop to entry +0.15% = 100.15
    p, ev, orders = step(p, bar(1, 100, 102.6, 99.5, 102), DEFAULT)
    assert orders == []
    assert p.stop == pytest.approx(100.15) and p.phase == "breakeven" and p.best_price == 102.6
    assert [e.kind for e in ev] == ["stop_moved"] and ev[0].old_stop == 97.0
    assert ev[0].new_stop == pytest.approx(100.15)
    # bar 2: high 105 reaches TP1 104.5 -> close 50% at 104.5; then trail 2% behind 105 = 102.9
    p, ev, orders = step(p, bar(2, 102, 105, 101, 104.8), DEFAULT)
    assert [(o.kind, o.qty, o.price) for o in orders] == [("tp1", Decimal("0.50"), 104.5)]
    assert orders[0].maker
    assert ev[0].kind == "tp1" and ev[0].pnl == pytest.approx(0.5 * 4.5) and ev[0].r_multiple == pytest.approx(1.5)
    assert p.tp1_done and p.qty_open == Decimal("0.50") and p.is_open
    assert p.stop == pytest.approx(102.9) and p.phase == "trailing"
    # bar 3: best 106 -> stop 103.88; low 104 does not touch it
    p, ev, orders = step(p, bar(3, 104.8, 106, 104, 105.5), DEFAULT)
    assert orders == [] and p.stop == pytest.approx(103.88)
    # bar 4: a pull-back (best unchanged) never lowers the stop
    p, ev, orders = step(p, bar(4, 105.5, 105.6, 104.0, 104.2), DEFAULT)
    assert orders == [] and p.stop == pytest.approx(103.88) and ev == []
    # bar 5: TP2 107.5 closes the rest
    p, ev, orders = step(p, bar(5, 104.2, 108, 104.1, 107.9), DEFAULT)
    assert [(o.kind, o.qty, o.price) for o in orders] == [("tp2", Decimal("0.50"), 107.5)]
    assert ev[0].r_multiple == pytest.approx(2.5)
    assert not p.is_open and p.exit_reason == "tp2" and p.qty_open == 0 and p.closed_at == NOW + hours(5)
    # a closed position does nothing more
    assert step(p, bar(6, 100, 200, 1, 100), DEFAULT) == (p, [], [])


def test_trailing_stop_exit_after_tp1():
    p = long_pos()
    p, _, _ = step(p, bar(1, 100, 105, 100, 104.9), DEFAULT)  # TP1 + breakeven + trail 102.9
    assert p.stop == pytest.approx(102.9)
    p, ev, orders = step(p, bar(2, 104.9, 105, 102.0, 102.5), DEFAULT)
    # stored as a trailing exit, not as a stop loss (issue 13 item 13)
    assert [(o.kind, o.qty, o.price) for o in orders] == [("trailing_stop", Decimal("0.50"), pytest.approx(102.9))]
    assert "trailing stop" in orders[0].reason
    assert ev[0].pnl == pytest.approx(0.5 * 2.9) and ev[0].kind == "trailing_stop"
    assert p.exit_reason == "trailing_stop" and not p.is_open


def test_breakeven_stop_exit_is_stored_as_breakeven():
    p, _, _ = step(long_pos(), bar(1, 100, 102.6, 100, 102.0), DEFAULT)  # +2.6%: stop to entry +0.15%
    assert p.phase == "breakeven" and p.stop == pytest.approx(100.15)
    p, ev, orders = step(p, bar(2, 101.0, 101.2, 99.5, 99.8), DEFAULT)
    assert [(o.kind, o.price) for o in orders] == [("breakeven_stop", pytest.approx(100.15))]
    assert p.exit_reason == "breakeven_stop" and ev[0].kind == "breakeven_stop"
    assert "breakeven stop" in orders[0].reason
    # a short's breakeven exit too; the initial stop stays a "stop"
    p, _, _ = step(short_pos(), bar(1, 100, 100, 97.4, 98), DEFAULT)
    assert p.phase == "breakeven"
    p, _, orders = step(p, bar(2, 99, 100.5, 98.5, 100), DEFAULT)
    assert [o.kind for o in orders] == ["breakeven_stop"]
    _, _, orders = step(long_pos(), bar(1, 99, 99.5, 96.5, 97.5), DEFAULT)
    assert [o.kind for o in orders] == ["stop"]


def test_stop_hit_and_gap():
    p, ev, orders = step(long_pos(), bar(1, 99, 99.5, 96.5, 97.5), DEFAULT)
    assert [(o.kind, o.qty, o.price) for o in orders] == [("stop", Decimal("1.0"), 97.0)]
    assert ev[0].pnl == pytest.approx(-3.0) and ev[0].r_multiple == pytest.approx(-1.0)
    assert p.exit_reason == "stop" and not p.is_open
    # gap through the stop: fill at the (worse) open
    p, ev, orders = step(long_pos(), bar(1, 95.0, 96, 94, 95.5), DEFAULT)
    assert orders[0].price == 95.0 and "gapped" in orders[0].reason
    # short stop above
    p, ev, orders = step(short_pos(), bar(1, 101, 103.5, 100, 103), DEFAULT)
    assert orders[0].price == 103.0 and ev[0].pnl == pytest.approx(-6.0)


def test_both_stop_and_target_in_one_bar_assumes_the_stop():
    p, ev, orders = step(long_pos(), bar(1, 100, 110, 96, 105), DEFAULT)
    assert [o.kind for o in orders] == ["stop"] and orders[0].price == 97.0
    assert not p.is_open and not p.tp1_done
    p, ev, orders = step(short_pos(), bar(1, 100, 104, 90, 95), DEFAULT)
    assert [o.kind for o in orders] == ["stop"] and orders[0].price == 103.0


def test_tp1_and_tp2_in_one_bar_both_fill():
    p, ev, orders = step(long_pos(), bar(1, 100, 108, 99, 107), DEFAULT)
    assert [(o.kind, o.qty) for o in orders] == [("tp1", Decimal("0.50")), ("tp2", Decimal("0.50"))]
    assert not p.is_open


def test_short_breakeven_and_tp1():
    p, ev, _ = step(short_pos(), bar(1, 100, 100.5, 97.4, 98), DEFAULT)
    assert p.stop == pytest.approx(99.85) and p.phase == "breakeven"
    p, ev, orders = step(p, bar(2, 98, 98.5, 95, 95.2), DEFAULT)
    assert [(o.kind, o.qty, o.price) for o in orders] == [("tp1", Decimal("1.0"), 95.5)]
    assert p.stop == pytest.approx(95 * 1.02)  # 96.9, below breakeven 99.85: moved down (in favour)


def test_tp1_quantity_rounded_to_step():
    p = long_pos(qty_initial=Decimal("0.003"), qty_open=Decimal("0.003"))
    p, _, orders = step(p, bar(1, 100, 105, 100, 104), DEFAULT, qty_step=Decimal("0.001"))
    assert orders[0].qty == Decimal("0.001") and p.qty_open == Decimal("0.002")


def test_stale_exit_after_48h_below_1pct():
    p = long_pos()
    same, _, orders = step(p, bar(47, 100, 100.6, 99.8, 100.5), DEFAULT)
    assert orders == []
    p2, ev, orders = step(p, bar(48, 100, 100.6, 99.8, 100.5), DEFAULT)
    assert [(o.kind, o.price) for o in orders] == [("stale", 100.5)]
    assert "stale: open 48.0h with +0.50%" in orders[0].reason and p2.exit_reason == "stale"
    # enough profit: it stays
    _, _, orders = step(p, bar(48, 101, 101.5, 100.8, 101.2), DEFAULT)
    assert orders == []


def test_kelly_time_exit_and_chandelier():
    kelly = get_profile("kelly")
    p = long_pos()
    _, _, orders = step(p, bar(23, 100, 100.5, 99.9, 100.2), kelly)
    assert orders == []
    _, _, orders = step(p, bar(24, 100, 100.5, 99.9, 100.2), kelly)
    assert [(o.kind, o.price) for o in orders] == [("time", 100.2)]
    # default has no time exit
    _, _, orders = step(p, bar(24, 100, 100.5, 99.9, 100.2), DEFAULT)
    assert orders == []
    # Chandelier: best 102 - 3 x ATR 0.5 = 100.5
    p2, ev, orders = step(p, bar(1, 100, 102, 99.9, 101.8), kelly, atr=0.5)
    assert orders == [] and p2.stop == pytest.approx(100.5) and p2.phase == "trailing"
    assert "Chandelier" in ev[0].reason
    # a bigger ATR would put it below the current stop: unchanged
    p3, _, _ = step(p, bar(1, 100, 102, 99.9, 101.8), kelly, atr=5.0)
    assert p3.stop == 97.0


def test_news_panic_exit():
    p, ev, orders = step(long_pos(), bar(1, 100, 101, 99, 99.2), DEFAULT, news_critical=True)
    assert [(o.kind, o.price) for o in orders] == [("news", 99.2)] and p.exit_reason == "news"


def test_arena_single_take_profit_closes_all():
    arena = get_profile("arena")
    p = long_pos(stop=97.0, tp1=110.0, tp2=110.0)
    p, _, orders = step(p, bar(1, 100, 111, 100, 110.5), arena)
    assert [(o.kind, o.qty, o.price) for o in orders] == [("tp1", Decimal("1.0"), 110.0)]
    assert not p.is_open
    # arena has no breakeven move
    p, ev, _ = step(long_pos(tp1=110.0, tp2=110.0), bar(1, 100, 105, 100, 104), arena)
    assert p.stop == 97.0 and ev == []


@st.composite
def bar_paths(draw):
    side = draw(st.sampled_from([Side.LONG, Side.SHORT]))
    n = draw(st.integers(1, 60))
    moves = draw(st.lists(st.tuples(st.floats(-0.04, 0.04), st.floats(0, 0.03), st.floats(0, 0.03),
                                    st.floats(-0.02, 0.02)), min_size=n, max_size=n))
    prof = draw(st.sampled_from(["default", "conservative", "kelly", "arena"]))
    atr = draw(st.none() | st.floats(0.01, 5.0))
    news_at = draw(st.none() | st.integers(0, n))
    return side, moves, prof, atr, news_at


@settings(max_examples=examples(300), deadline=None)
@given(bar_paths())
def test_property_stop_never_moves_against_the_position(path):
    side, moves, prof, atr, news_at = path
    p = long_pos() if side is Side.LONG else short_pos()
    if prof == "arena":
        p = p.with_(tp1=p.entry * (1 + side.sign * 0.10), tp2=p.entry * (1 + side.sign * 0.10))
    s = side.sign
    price = 100.0
    closed_qty = Decimal(0)
    for i, (gap, up, down, drift) in enumerate(moves):
        o = price * (1 + gap)
        c = o * (1 + drift)
        hi = max(o, c) * (1 + up)
        lo = min(o, c) * (1 - down)
        prev = p
        p, ev, orders = step(p, Bar(NOW + hours(i + 1), o, hi, lo, c), prof, news_critical=(news_at == i),
                             atr=atr)
        assert (p.stop - prev.stop) * s >= -1e-12, "stop moved against the position"
        assert p.qty_open <= prev.qty_open
        for o_ in orders:
            closed_qty += o_.qty
            if o_.kind == "stop":  # fills at the stop or worse, never better
                assert (o_.price - prev.stop) * s <= 1e-12
        price = c
        if not p.is_open:
            break
    assert closed_qty + p.qty_open == p.qty_initial
    assert (p.entry - p.initial_stop) * s > 0
