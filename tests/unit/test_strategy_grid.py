"""grid and hybrid on crafted price paths, through the paper account's resting orders."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from agents.strategies.base import Cancel, Open, Place, Reduce
from agents.strategies.grid import GridState, GridStrategy
from agents.strategies.hybrid import HybridState, HybridStrategy
from core.settings import GridSettings, HybridSettings
from core.types import Action, Trend
from tests.unit.risk_builders import decision, score
from tests.unit.strategy_driver import SYM, Driver

# ref 100, spacing 1 (floor 1 % of 100): buys at 99/98/97, sells at 101/102/103, stops at 96 / 104
CFG = GridSettings(levels=3, spacing_floor_pct=1.0, atr_mult=1.0, size_pct=5.0, leverage=3, stop_levels=1.0,
                   reposition_levels=1.0)


def _range_score(trend: Trend = Trend.RANGE):
    return replace(score(SYM), trend=trend)


def test_grid_builds_levels_with_take_profit_at_the_next_level_and_stop_outside_the_range():
    d = Driver(GridStrategy(CFG))
    st = d.decide(_range_score(), atr_1h=0.2)  # ATR below the floor: spacing = 1 % of 100
    places = [i for i in st.intents if isinstance(i, Place)]
    by_price = {p.order.price: p.order for p in places}
    assert sorted(by_price) == [97.0, 98.0, 99.0, 101.0, 102.0, 103.0]
    assert by_price[99.0].side == "buy" and by_price[99.0].take_profit == 100.0 and by_price[99.0].stop == 96.0
    assert by_price[97.0].take_profit == 98.0
    assert by_price[101.0].side == "sell" and by_price[101.0].take_profit == 100.0 and by_price[101.0].stop == 104.0
    assert all(r.status == "placed" for r in d.results), d.results
    assert len(d.acct.open_orders(SYM)) == 6
    # qty: 5 % of 10,000 equity at 100 = 5 units per level
    assert {o.amount for o in d.acct.open_orders(SYM)} == {Decimal("5.000")}
    # ATR above the floor sets the spacing
    wide = GridStrategy(CFG).step(replace(_facts_like(d), state=None))
    assert isinstance(wide.state, GridState)


def _facts_like(d: Driver):
    from agents.strategies.base import AccountView, Facts

    return Facts(SYM, d.t, 100.0, 100.0, 100.0, AccountView(10_000, 10_000), score=_range_score(), atr_1h=2.0)


def test_atr_spacing_above_the_floor():
    st = GridStrategy(CFG).step(_facts_like(Driver(GridStrategy(CFG))))
    assert st.state.spacing == 2.0
    prices = sorted(i.order.price for i in st.intents)
    assert prices == [94.0, 96.0, 98.0, 102.0, 104.0, 106.0]


def test_range_fills_and_takes_profit_at_every_level():
    d = Driver(GridStrategy(CFG))
    d.decide(_range_score(), atr_1h=0.2)
    d.bar(100, 100.2, 96.5, 97)  # buys at 99, 98, 97 fill (stop 96 not reached)
    d.decide(_range_score(), atr_1h=0.2)
    d.bar(97, 103.5, 96.8, 103)  # the longs take profit on the way up, the shorts at 101..103 fill
    d.decide(_range_score(), atr_1h=0.2)
    d.bar(103, 103.2, 99.8, 100)  # the shorts take profit at 102, 101, 100
    closed = [p for p in d.acct.positions.values() if not p.is_open]
    tags = sorted(p.extra["tag"] for p in closed)
    assert tags == ["grid:+1", "grid:+2", "grid:+3", "grid:-1", "grid:-2", "grid:-3"]
    assert all(p.exit_reason == "tp" for p in closed)
    for p in closed:  # one spacing per unit, minus two maker fees (0.02 %)
        gross = p.realised_pnl
        assert abs(gross - 5.0) < 1e-6, (p.id, gross)
        assert p.fees_paid < 0.25
    assert not d.acct.open_positions()
    # every take-profit and entry filled as maker (no slippage, maker fee)
    fills = [f for f in d.acct.fills]
    assert len(fills) == 12 and all(f.fee <= Decimal("5") * f.price * Decimal("0.0002") + Decimal("1e-8") for f in fills)
    # after the longs took profit, their levels were placed again (below the price)
    resting = sorted(o.price for o in d.acct.open_orders(SYM))
    assert resting == [97.0, 98.0, 99.0]
    eq = d.acct.equity({SYM: 100.0})
    assert eq == Decimal(10_000) + Decimal(30) - d.acct.fees_paid  # 6 levels × 5 units × 1, less the maker fees
    assert d.acct.fees_paid == Decimal("1.2")  # 12 maker fills of 5 units at ~100, 0.02 %


def test_breakout_stops_the_losing_side_and_repositions_the_grid():
    d = Driver(GridStrategy(CFG))
    d.decide(_range_score(), atr_1h=0.2)
    d.bar(100, 106.5, 99.9, 106)  # shorts fill at 101..103, then their stops at 104 trigger
    shorts = [p for p in d.acct.positions.values() if p.side.value == "SHORT"]
    assert len(shorts) == 3 and all(p.exit_reason == "stop" for p in shorts)
    assert all(p.realised_pnl < 0 for p in shorts)
    st = d.decide(_range_score(), atr_1h=0.2)
    assert "left the grid range" in st.note
    cancels = [i for i in st.intents if isinstance(i, Cancel)]
    assert len(cancels) == 3  # the buy entries at 97..99
    assert st.state.ref == 106 and st.state.repositions == 1 and st.state.generation == 2
    prices = sorted(o.price for o in d.acct.open_orders(SYM))
    assert prices == [102.82, 103.88, 104.94, 107.06, 108.12, 109.18]  # spacing 1.06 = 1 % of 106


def test_regime_turning_to_trend_repositions():
    d = Driver(GridStrategy(CFG))
    d.decide(_range_score(), atr_1h=0.2)
    d.bar(100, 100.1, 98.5, 99)  # the buy at 99 fills
    assert len(d.acct.open_positions()) == 1
    st = d.decide(_range_score(Trend.UP), atr_1h=0.2)
    assert "regime turned to TREND_UP" in st.note
    assert any(isinstance(i, Reduce) for i in st.intents)
    assert not d.acct.open_positions() and st.state.ref == 99
    st2 = d.decide(_range_score(Trend.UP), atr_1h=0.2)  # still a trend: no second reposition
    assert st2.state.repositions == 1


def test_risk_denies_grid_levels_beyond_the_caps():
    big = CFG.model_copy(update={"size_pct": 60.0, "leverage": 3})
    d = Driver(GridStrategy(big))
    d.decide(_range_score(), atr_1h=0.2)
    denied = [r for r in d.results if r.status == "denied"]
    assert denied and any("exceeds" in " ".join(r.reasons) for r in denied)


def test_hybrid_hands_over_to_trend_and_back():
    h = HybridStrategy(CFG, HybridSettings(handover="close"))
    d = Driver(h)
    d.decide(_range_score(), atr_1h=0.2)
    assert isinstance(d.state, HybridState) and d.state.mode == "grid"
    d.bar(100, 100.1, 97.5, 98)  # buys at 99 and 98 fill
    assert len(d.acct.open_positions()) == 2
    st = d.decide(_range_score(Trend.UP), decision=decision(SYM, Action.LONG, d.t), atr_1h=0.2)
    kinds = [type(i).__name__ for i in st.intents]
    assert kinds.count("Reduce") == 2 and "Cancel" in kinds and kinds[-1] == "Open"
    assert d.state.mode == "trend" and d.state.handovers == 1
    opened = [r for r in d.results if isinstance(r.intent, Open)]
    assert opened and opened[0].status == "filled", opened
    trend_pos = d.acct.open_positions()
    assert len(trend_pos) == 1 and trend_pos[0].extra["strategy"] == "hybrid" and not d.acct.open_orders(SYM)
    # back in a range: the grid waits for the trend position to close
    st = d.decide(_range_score(), atr_1h=0.2)
    assert not st.intents and "waiting for the trend position" in st.note
    d.acct.close(trend_pos[0].id, trend_pos[0].qty_open, 98.0, d.t, "test")
    st = d.decide(_range_score(), atr_1h=0.2)
    assert sum(isinstance(i, Place) for i in st.intents) == 6 and d.state.handovers == 2


def test_hybrid_finish_lets_grid_positions_run_and_blocks_trend_meanwhile():
    h = HybridStrategy(CFG, HybridSettings(handover="finish"))
    d = Driver(h)
    d.decide(_range_score(), atr_1h=0.2)
    d.bar(100, 100.1, 98.5, 99)  # the buy at 99 fills
    st = d.decide(_range_score(Trend.UP), decision=decision(SYM, Action.LONG, d.t), atr_1h=0.2)
    assert all(isinstance(i, Cancel) for i in st.intents) and len(st.intents) == 5  # 2 buys + 3 sells
    assert "still finishing" in st.note
    pos = d.acct.open_positions()
    assert len(pos) == 1 and {o.id.split(":")[-1] for o in d.acct.open_orders(SYM)} == {"tp", "sl"}
    d.bar(99, 100.5, 98.9, 100.4)  # its take-profit at 100 fills
    assert not d.acct.open_positions()
    st = d.decide(_range_score(Trend.UP), decision=decision(SYM, Action.LONG, d.t), atr_1h=0.2)
    assert [type(i).__name__ for i in st.intents] == ["Open"]


def test_a_level_filled_inside_a_bar_pays_the_funding_at_that_bar_s_close():
    """A grid level filled inside the bar 07:00-08:00 is stamped at 08:00 but was open before it: it pays
    the 08:00 funding, as a trend position open at a funding time does; a level that also took profit
    inside the bar does not."""
    import pandas as pd

    from pipeline.strategy import monitor_order_managed_bar

    d = Driver(GridStrategy(CFG))
    d.decide(_range_score(), atr_1h=0.2)
    t_open = pd.Timestamp(d.t)
    d.bar(100, 100.2, 98.5, 98.6)  # buy 99 fills inside the bar; its take-profit (100) is not reached
    [pos] = d.acct.open_positions()
    assert pos.opened_at == d.t  # stamped at the bar's close
    funding = [(pd.Timestamp(d.t), 0.001)]  # a funding time at that close
    monitor_order_managed_bar(d.acct, pos.id, t_open, 100, 100.2, 98.5, 98.6, funding)
    paid = d.acct.get(pos.id).funding_paid
    assert paid == pytest.approx(float(pos.qty_open) * 98.6 * 0.001)
    monitor_order_managed_bar(d.acct, pos.id, t_open, 100, 100.2, 98.5, 98.6, funding)  # once only
    assert d.acct.get(pos.id).funding_paid == paid
    # a level that filled and took profit inside the bar is closed at the funding time: pays nothing
    d2 = Driver(GridStrategy(CFG))
    d2.decide(_range_score(), atr_1h=0.2)
    d2.bar(100, 100.1, 98.9, 100.05)  # down to 98.9 (buy 99), back up through 100 (its take-profit)
    [closed] = [p for p in d2.acct.positions.values() if not p.is_open]
    monitor_order_managed_bar(d2.acct, closed.id, pd.Timestamp(d2.t) - pd.Timedelta(hours=1), 100, 100.1, 98.9,
                              100.05, [(pd.Timestamp(d2.t), 0.001)])
    assert d2.acct.get(closed.id).funding_paid == 0
