"""rebalance (drift band, minimum trade, fees, panel tilt, tracking error) and volatility (breakout,
mean reversion, time exit) on crafted inputs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from agents.strategies.base import Open, Reduce
from agents.strategies.rebalance import (
    PortfolioFacts,
    RebalanceStrategy,
    drift,
    plan_trades,
    tilted_targets,
    weights,
)
from agents.strategies.volatility import VolatilityStrategy, features
from core.baselines import tracking_error_vs_benchmark, tracking_error_vs_target
from core.errors import OrderRejected
from core.settings import RebalanceSettings, VolatilitySettings
from core.types import Action, Trend
from exchange.spot import SpotAccount
from risk.intents import check_rebalance
from tests.unit.risk_builders import NOW, decision, position, score
from tests.unit.strategy_driver import SYM, Driver

CFG = RebalanceSettings()  # 1/3 BTC, 1/3 XRP, 1/3 USDT; band 5 points; min 10 USD; fee 0.1 %


def test_no_trade_inside_the_drift_band():
    h = {"BTC": Decimal("1"), "XRP": Decimal("100"), "USDT": Decimal("100")}
    st = RebalanceStrategy(CFG).step(PortfolioFacts(NOW, h, {"BTC": 104.0, "XRP": 1.0}))
    assert not st.intents and "within the 5-point band" in st.note


def test_drift_beyond_the_band_trades_back_to_target_with_fees_counted():
    h = {"BTC": Decimal("1"), "XRP": Decimal("100"), "USDT": Decimal("100")}
    prices = {"BTC": 150.0, "XRP": 1.0}  # BTC 42.9 %, XRP 28.6 %, USDT 28.6 %
    st = RebalanceStrategy(CFG).step(PortfolioFacts(NOW, h, prices))
    (rb,) = st.intents
    sides = {t.asset: t.side for t in rb.trades}
    assert sides == {"BTC": "sell", "XRP": "buy"}
    acct = SpotAccount(holdings=h, slippage_bps=Decimal(2))
    for t in rb.trades:
        acct.trade(t.asset, t.side, t.qty, t.price, NOW)
    w = weights(acct.holdings, prices, "USDT")
    assert drift(w, CFG.targets) < 0.005  # back within half a point
    assert acct.holdings["USDT"] >= 0 and acct.fees_paid > 0
    assert acct.value(prices) < Decimal(350)  # fees and slippage were paid
    assert check_rebalance(rb.weights, rb.trades, h, "USDT", CFG.min_trade_usd, CFG.fee, False).approved


def test_minimum_trade_size_skips_small_trades():
    h = {"BTC": Decimal("1"), "XRP": Decimal("100"), "USDT": Decimal("100")}
    big_min = CFG.model_copy(update={"min_trade_usd": 30.0})
    trades = plan_trades(h, {"BTC": 150.0, "XRP": 1.0}, CFG.targets, big_min)
    assert {t.asset for t in trades} == {"BTC"}  # XRP needs ~16.7 USD: below 30
    v = check_rebalance(CFG.targets, [replace(trades[0], qty=Decimal("0.01"))], h, "USDT", 30.0, 0.001, False)
    assert not v.approved and "below the minimum trade" in v.reasons[0]


def test_buys_never_exceed_the_cash_after_fees():
    h = {"USDT": Decimal("1000")}
    trades = plan_trades(h, {"BTC": 100.0, "XRP": 0.5}, CFG.targets, CFG)
    cost = sum(t.notional * (1 + CFG.fee + CFG.slippage_bps / 1e4) for t in trades)
    assert cost <= 1000 and cost > 660
    acct = SpotAccount(holdings=h)
    for t in trades:
        acct.trade(t.asset, t.side, t.qty, t.price, NOW)
    assert acct.holdings["USDT"] > 0
    with pytest.raises(OrderRejected, match="exceeds the holding"):
        acct.trade("BTC", "sell", Decimal("100"), 100.0, NOW)


def test_panel_tilt_within_limits():
    d_long = replace(decision("BTC/USDT:USDT", Action.LONG), confidence=1.0)
    d_short = replace(decision("XRP/USDT:USDT", Action.SHORT), confidence=0.5)
    t = tilted_targets(CFG.targets, {"BTC": d_long, "XRP": d_short}, 10.0, "USDT")
    assert t["BTC"] == pytest.approx(1 / 3 + 0.10)
    assert t["XRP"] == pytest.approx(1 / 3 - 0.05)
    assert sum(t.values()) == pytest.approx(1.0) and min(t.values()) >= 0
    assert tilted_targets(CFG.targets, {"BTC": d_long}, 0.0, "USDT") == CFG.targets  # off by default
    st = RebalanceStrategy(CFG.model_copy(update={"panel_tilt_pct": 10.0})).step(
        PortfolioFacts(NOW, {"BTC": Decimal(1), "XRP": Decimal(100), "USDT": Decimal(100)},
                       {"BTC": 100.0, "XRP": 1.0}, {"BTC": d_long}))
    (rb,) = st.intents
    assert rb.weights["BTC"] == pytest.approx(1 / 3 + 0.1) and rb.trades[0].side == "buy"


def test_halted_account_does_not_rebalance():
    h = {"BTC": Decimal("1"), "XRP": Decimal("100"), "USDT": Decimal("100")}
    st = RebalanceStrategy(CFG).step(PortfolioFacts(NOW, h, {"BTC": 150.0, "XRP": 1.0}, halted=True))
    assert not st.intents


def test_tracking_errors():
    idx = pd.date_range("2025-01-01", periods=5, freq="h", tz="UTC")
    w = pd.DataFrame({"BTC": [1 / 3, 0.4, 1 / 3, 0.3, 1 / 3], "XRP": [1 / 3] * 5, "USDT": [1 / 3, 4 / 15, 1 / 3,
                                                                                         11 / 30, 1 / 3]}, index=idx)
    te = tracking_error_vs_target(w, CFG.targets)
    assert te["max_drift"] == pytest.approx(1 / 15)
    assert 0 < te["rms"] < 1 / 15
    eq = pd.Series([100, 101, 102, 101, 103], index=idx, dtype=float)
    assert tracking_error_vs_benchmark(eq, eq) == 0.0
    bench = pd.Series([100, 100, 100, 100, 100], index=idx, dtype=float)
    assert tracking_error_vs_benchmark(eq, bench) > 0


# ---------------------------------------------------------------------------------------- volatility

VCFG = VolatilitySettings(bb_length=20, bb_std=2.0, atr_fast=4, atr_slow=30, expansion=1.5, momentum_bars=4,
                          hold_hours=6)


def _bars(closes: np.ndarray, wick: np.ndarray) -> pd.DataFrame:
    idx = pd.date_range("2025-01-01", periods=len(closes), freq="h", tz="UTC")
    o = np.r_[closes[0], closes[:-1]]
    return pd.DataFrame({"open": o, "high": np.maximum(o, closes) + wick, "low": np.minimum(o, closes) - wick,
                         "close": closes, "volume": 1.0}, index=idx)


def test_breakout_on_volatility_expansion_in_the_direction_of_momentum():
    rng = np.random.default_rng(1)
    calm = 100 + np.cumsum(rng.normal(0, 0.05, 60))
    jump = calm[-1] + np.cumsum([1.0, 1.5, 2.0])
    closes = np.r_[calm, jump]
    wick = np.r_[np.full(60, 0.05), np.full(3, 1.0)]
    f = features(_bars(closes, wick), VCFG)
    row = f.iloc[-1].to_dict()
    s = VolatilityStrategy(VCFG)
    assert s.signal(row, "TREND_UP")[0] is Action.LONG
    down = features(_bars(np.r_[calm, calm[-1] - np.cumsum([1.0, 1.5, 2.0])], wick), VCFG).iloc[-1].to_dict()
    assert s.signal(down, "TREND_DOWN")[0] is Action.SHORT
    # no look-ahead: the feature row of a bar does not change when later bars are appended
    f_short = features(_bars(closes[:61], wick[:61]), VCFG)
    pd.testing.assert_series_equal(f_short.iloc[-1], f.iloc[60], check_names=False)
    # calm: nothing
    assert s.signal(f.iloc[59].to_dict(), "RANGE")[0] is Action.WAIT


def test_mean_reversion_back_inside_the_bands_in_a_range_only():
    rng = np.random.default_rng(2)
    calm = 100 + rng.normal(0, 0.2, 60)
    closes = np.r_[calm, 98.6, 99.9]  # a dip below the lower band, then back inside
    f = features(_bars(closes, np.full(62, 0.1)), VCFG)
    row = f.iloc[-1].to_dict()
    assert row["prev_close"] < row["prev_lower"] and row["close"] > row["bb_lower"]
    s = VolatilityStrategy(VCFG)
    if row["atr_ratio"] < VCFG.expansion:
        assert s.signal(row, "RANGE")[0] is Action.LONG
        assert s.signal(row, "TREND_UP")[0] is Action.WAIT
    off = VolatilityStrategy(VCFG.model_copy(update={"mean_reversion": False}))
    assert off.signal(row, "RANGE")[0] is Action.WAIT


def test_volatility_opens_through_the_risk_manager_and_exits_on_time():
    row = {"close": 105.0, "prev_close": 101.0, "bb_lower": 98.0, "bb_mid": 100.0, "bb_upper": 103.0,
           "prev_lower": 98.0, "prev_upper": 102.5, "atr_ratio": 2.0, "mom": 0.04}
    d = Driver(VolatilityStrategy(VCFG))
    d.last = 105.0
    sc = replace(score(SYM, atr_pct=2.5), trend=Trend.UP)
    st = d.decide(sc, features=row)
    (op,) = st.intents
    assert isinstance(op, Open) and op.hold_hours == 6 and op.decision.action is Action.LONG
    (res,) = d.results
    assert res.status == "filled", res.reasons
    pos = d.acct.get(res.position_id)
    assert pos.stop < 105 and pos.extra["strategy"] == "volatility"
    d.t += timedelta(hours=5)
    assert not d.decide(sc, features=row).intents  # still holding, no second entry
    d.t += timedelta(hours=1)
    st = d.decide(sc, features=row)
    assert [type(i) for i in st.intents] == [Reduce] and st.intents[0].kind == "time"
    assert not d.acct.open_positions() and d.acct.get(pos.id).exit_reason == "time"


def test_volatility_leaves_other_strategies_positions_alone():
    row = {"close": 105.0, "prev_close": 101.0, "bb_lower": 98.0, "bb_mid": 100.0, "bb_upper": 103.0,
           "prev_lower": 98.0, "prev_upper": 102.5, "atr_ratio": 2.0, "mom": 0.04}
    from agents.strategies.base import AccountView, Facts

    other = position(SYM, opened_at=NOW - timedelta(days=3))
    st = VolatilityStrategy(VCFG).step(Facts(SYM, NOW, 105, 105, 105, AccountView(1e4, 1e4, (other,)),
                                             features=row))
    assert not st.intents  # not its position, and no entry while a position is open
