"""core.metrics against hand-computed examples (the arithmetic is in the comments)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.baselines import buy_and_hold, monte_carlo
from core.equity_stats import exposure, max_drawdown, periods_per_year, sharpe_ratio, sortino_ratio
from core.metrics import compute_metrics
from core.trades import TradeRecord, trade_records_from_positions
from core.types import Position, Side

D0 = datetime(2025, 1, 1, tzinfo=UTC)


def day(i: float) -> datetime:
    return D0 + timedelta(days=i)


# Five daily points: returns +10 %, -10 %, 0 %, +20 %.
EQUITY = pd.Series([100.0, 110.0, 99.0, 99.0, 118.8], index=pd.DatetimeIndex([day(i) for i in range(5)]))


def tr(symbol, side, o, c, pnl, fees, funding, r) -> TradeRecord:
    return TradeRecord(symbol, side, o, c, 100.0, 100.0, 1.0, pnl, fees, funding, r, "test")


# Four trades (times in hours from 2025-01-01 00:00):
#   A BTC long  [0h, 24h]   pnl +10 fees 1.0 funding +0.5 R +2
#   B ETH short [12h, 36h]  pnl  -5 fees 1.0 funding  0.0 R -1
#   C BTC long  [48h, 60h]  pnl +20 fees 0.5 funding -0.2 R +4
#   D SOL long  [72h, 78h]  pnl -10 fees 0.5 funding +0.2 R -2
H = timedelta(hours=1)
TRADES = [
    tr("BTC/USDT", Side.LONG, D0, D0 + 24 * H, 10.0, 1.0, 0.5, 2.0),
    tr("ETH/USDT", Side.SHORT, D0 + 12 * H, D0 + 36 * H, -5.0, 1.0, 0.0, -1.0),
    tr("BTC/USDT", Side.LONG, D0 + 48 * H, D0 + 60 * H, 20.0, 0.5, -0.2, 4.0),
    tr("SOL/USDT", Side.LONG, D0 + 72 * H, D0 + 78 * H, -10.0, 0.5, 0.2, -2.0),
]


@pytest.fixture(scope="module")
def m():
    return compute_metrics(EQUITY, TRADES, day(0), day(4))


def test_total_return(m):
    # 118.8 / 100 - 1 = 0.188
    assert m.total_return == pytest.approx(0.188)
    assert m.start_equity == 100.0 and m.end_equity == 118.8
    assert m.days == 4.0


def test_cagr_two_years():
    # 100 -> 121 over 730 days: (1.21) ** (365/730) - 1 = 1.1 - 1 = 0.10
    eq = pd.Series([100.0, 121.0], index=pd.DatetimeIndex([day(0), day(730)]))
    mm = compute_metrics(eq, [], day(0), day(730))
    assert mm.annualised_return == pytest.approx(0.10)


def test_cagr_uses_window_not_bars(m):
    # 1.188 ** (365 / 4) - 1
    assert m.annualised_return == pytest.approx(1.188 ** (365 / 4) - 1)


def test_periods_per_year_inferred():
    assert periods_per_year(EQUITY.index) == pytest.approx(365.0)
    hourly = pd.date_range("2025-01-01", periods=10, freq="1h", tz="UTC")
    assert periods_per_year(hourly) == pytest.approx(8760.0)


def test_sharpe(m):
    # r = [0.1, -0.1, 0, 0.2], mean 0.05; deviations 0.05,-0.15,-0.05,0.15 -> squares sum 0.05;
    # sample var 0.05/3 = 0.0166667, sd 0.1290994; Sharpe = 0.3872983 * sqrt(365) = 0.3872983 * 19.1049732 = 7.39932
    assert m.sharpe == pytest.approx(0.05 / math.sqrt(0.05 / 3) * math.sqrt(365))
    assert m.sharpe == pytest.approx(7.39932, abs=1e-4)
    assert m.volatility == pytest.approx(math.sqrt(0.05 / 3) * math.sqrt(365))


def test_sortino(m):
    # downside = sqrt(mean(min(r,0)^2)) = sqrt((0+0.01+0+0)/4) = 0.05; Sortino = 0.05/0.05*sqrt(365)
    assert m.sortino == pytest.approx(math.sqrt(365))


def test_sortino_sharpe_edge_cases():
    assert sortino_ratio([0.01, 0.02, 0.0], 365) == math.inf
    assert math.isnan(sharpe_ratio([0.01, 0.01], 365))
    assert math.isnan(sharpe_ratio([0.01], 365))


def test_max_drawdown_and_duration(m):
    # peak 110 on day 1, trough 99 on day 2: 1 - 99/110 = 0.1; back to >= 110 on day 4 (118.8)
    assert m.max_drawdown == pytest.approx(0.1)
    assert m.max_drawdown_peak_at == day(1)
    assert m.max_drawdown_trough_at == day(2)
    assert m.max_drawdown_end_at == day(4)
    assert m.max_drawdown_recovered
    assert m.max_drawdown_duration == timedelta(days=3)


def test_drawdown_not_recovered_runs_to_end():
    # 100, 120, 90, 100: peak 120 (day 1), trough 90 (1 - 90/120 = 0.25), never back: ends day 3
    eq = pd.Series([100.0, 120.0, 90.0, 100.0], index=pd.DatetimeIndex([day(i) for i in range(4)]))
    dd = max_drawdown(eq)
    assert dd.depth == pytest.approx(0.25)
    assert not dd.recovered
    assert dd.end_at - dd.peak_at == timedelta(days=2)


def test_trade_statistics(m):
    # wins 10 + 20 = 30, losses 5 + 10 = 15: profit factor 2.0; win rate 2/4
    assert m.n_trades == 4 and m.wins == 2 and m.losses == 2
    assert m.gross_profit == 30.0 and m.gross_loss == 15.0
    assert m.profit_factor == pytest.approx(2.0)
    assert m.win_rate == pytest.approx(0.5)
    # expectancy = (10 - 5 + 20 - 10) / 4 = 3.75; avg R = (2 - 1 + 4 - 2) / 4 = 0.75
    assert m.expectancy == pytest.approx(3.75)
    assert m.avg_r == pytest.approx(0.75) and m.expectancy_r == pytest.approx(0.75)
    assert m.avg_win == pytest.approx(15.0) and m.avg_loss == pytest.approx(-7.5)
    assert m.best_trade == 20.0 and m.worst_trade == -10.0
    assert m.net_pnl == pytest.approx(15.0)


def test_costs_and_rate(m):
    # fees 1 + 1 + 0.5 + 0.5 = 3; funding 0.5 + 0 - 0.2 + 0.2 = 0.5; 4 trades / 4 days = 1 per day
    assert m.fees_paid == pytest.approx(3.0)
    assert m.funding_paid == pytest.approx(0.5)
    assert m.trades_per_day == pytest.approx(1.0)


def test_exposure(m):
    # union: [0h, 36h] (A and B overlap) + [48h, 60h] + [72h, 78h] = 36 + 12 + 6 = 54 h of 96 h
    assert m.exposure == pytest.approx(54 / 96)
    # clipped to the window: only [12h, 24h] of A inside [12h, 24h] -> 100 %
    assert exposure(TRADES[:1], D0 + 12 * H, D0 + 24 * H) == pytest.approx(1.0)


def test_profit_factor_conventions():
    win = tr("X", Side.LONG, D0, D0 + H, 5.0, 0, 0, 1.0)
    flat = tr("X", Side.LONG, D0, D0 + H, 0.0, 0, 0, 0.0)
    assert compute_metrics(EQUITY, [win], day(0), day(4)).profit_factor == math.inf
    assert math.isnan(compute_metrics(EQUITY, [flat], day(0), day(4)).profit_factor)
    empty = compute_metrics(EQUITY, [], day(0), day(4))
    assert math.isnan(empty.win_rate) and empty.n_trades == 0


def test_to_dict_is_json_safe(m):
    d = m.to_dict()
    assert d["max_drawdown_duration_days"] == 3.0
    assert d["max_drawdown_peak_at"] == "2025-01-02T00:00:00+00:00"
    win = tr("X", Side.LONG, D0, D0 + H, 5.0, 0, 0, 1.0)
    d2 = compute_metrics(EQUITY, [win], day(0), day(4)).to_dict()
    assert d2["profit_factor"] is None
    json.dumps(d2, allow_nan=False)


def test_window_restricts_equity():
    # only days 1..3 in the window: 110 -> 99: -10 %
    mm = compute_metrics(EQUITY, [], day(1), day(3))
    assert mm.total_return == pytest.approx(-0.1)


def test_trade_records_from_positions():
    long = Position(
        id="p1",
        symbol="BTC/USDT",
        side=Side.LONG,
        entry=100.0,
        qty_initial=Decimal("2"),
        qty_open=Decimal(0),
        stop=95.0,
        initial_stop=95.0,
        tp1=107.5,
        tp2=112.5,
        leverage=5,
        margin=40.0,
        liquidation_price=80.0,
        opened_at=D0,
        best_price=111.0,
        realised_pnl=20.0,
        fees_paid=1.0,
        funding_paid=0.5,
        closed_at=D0 + 5 * H,
        exit_reason="tp2",
    )
    short = Position(
        id="p2",
        symbol="ETH/USDT",
        side=Side.SHORT,
        entry=100.0,
        qty_initial=Decimal("1"),
        qty_open=Decimal(0),
        stop=104.0,
        initial_stop=104.0,
        tp1=94.0,
        tp2=90.0,
        leverage=3,
        margin=33.0,
        liquidation_price=130.0,
        opened_at=D0,
        best_price=91.0,
        realised_pnl=8.0,
        fees_paid=0.4,
        funding_paid=0.0,
        closed_at=D0 + 2 * H,
        exit_reason="stop",
    )
    still_open = long.with_(id="p3", closed_at=None)
    recs = trade_records_from_positions([long, short, still_open])
    assert [r.symbol for r in recs] == ["ETH/USDT", "BTC/USDT"]  # sorted by close time
    eth, btc = recs
    # long: gross 20 -> net 20 - 1 - 0.5 = 18.5; exit = 100 + 20/2 = 110; R = 18.5 / (5 * 2) = 1.85
    assert btc.pnl == pytest.approx(18.5) and btc.exit == pytest.approx(110.0)
    assert btc.r_multiple == pytest.approx(1.85) and btc.qty == 2.0 and btc.reason == "tp2"
    assert btc.gross_pnl == pytest.approx(20.0)
    # short: gross 8 -> net 7.6; exit = 100 + 8/(-1) = 92; R = 7.6 / (4 * 1) = 1.9
    assert eth.pnl == pytest.approx(7.6) and eth.exit == pytest.approx(92.0)
    assert eth.r_multiple == pytest.approx(1.9)
    # producer-supplied exit average and net pnl
    net = trade_records_from_positions([long.with_(extra={"exit_avg": 109.0})], realised_is_net=True)[0]
    assert net.exit == 109.0 and net.pnl == 20.0


def test_buy_and_hold():
    idx = pd.date_range("2025-01-01", periods=5, freq="1D", tz="UTC")
    close = pd.Series([50.0, 100.0, 80.0, 120.0, 10.0], index=idx)
    # first close at/after Jan 2 = 100, last at/before Jan 4 = 120: +20 %
    assert buy_and_hold(close, day(1), day(3)) == pytest.approx(0.2)
    # start between bars: first bar at/after Jan 1 12:00 is Jan 2
    assert buy_and_hold(close, D0 + 12 * H, day(3)) == pytest.approx(0.2)
    assert math.isnan(buy_and_hold(close, day(10), day(11)))


# ---------------------------------------------------------------- Monte Carlo

PNLS = [50.0, -30.0, 20.0, -60.0, 40.0, 10.0, -20.0, 35.0]


def test_monte_carlo_reproducible():
    a = monte_carlo(PNLS, 1000.0, runs=500, seed=7)
    b = monte_carlo(PNLS, 1000.0, runs=500, seed=7)
    c = monte_carlo(PNLS, 1000.0, runs=500, seed=8)
    assert a == b
    assert a.max_drawdowns != c.max_drawdowns


def test_monte_carlo_all_winners_never_ruined():
    r = monte_carlo([10.0, 5.0, 1.0], 100.0, runs=200, seed=1)
    assert r.risk_of_ruin == 0.0
    assert r.max_dd_p95 == 0.0 and r.max_dd_mean == 0.0
    assert r.final_equity_p5 >= 103.0  # at least 3 x the smallest win


def test_monte_carlo_certain_ruin():
    # every trade loses 60 of 100: after one trade equity is 40 < 50 -> ruin in every run
    r = monte_carlo([-60.0, -60.0], 100.0, runs=50, seed=1)
    assert r.risk_of_ruin == 1.0


def test_monte_carlo_shuffle_keeps_final_equity():
    r = monte_carlo(PNLS, 1000.0, runs=300, seed=3, method="shuffle")
    total = 1000.0 + sum(PNLS)  # 1045
    assert r.final_equity_p5 == pytest.approx(total) and r.final_equity_p95 == pytest.approx(total)
    # hand check of one path: the original order 1000 ->1050 ->1020 ->1040 ->980 ... has
    # max dd 1 - 980/1050 = 0.0667; shuffling can only produce drawdowns within [0, worst run of losses]
    worst = 1 - (1000 - 110) / 1000  # all three losers first: 1000 -> 890 = 11 %
    assert 0.0 <= r.max_dd_p5 <= r.max_dd_p50 <= r.max_dd_p95 <= worst + 1e-12
    assert len(r.max_drawdowns) == 300
    assert np.isfinite(r.max_dd_mean)
    with pytest.raises(ValueError):
        monte_carlo(PNLS, 1000.0, method="nope")  # type: ignore[arg-type]


def test_monte_carlo_to_dict():
    r = monte_carlo(PNLS, 1000.0, runs=20, seed=0)
    d = r.to_dict()
    assert "max_drawdowns" not in d and d["runs"] == 20 and d["method"] == "bootstrap"
    assert len(r.to_dict(include_runs=True)["max_drawdowns"]) == 20
    json.dumps(d, allow_nan=False)


def test_monte_carlo_large_sequences_chunked():
    # 5000 trades x 600 runs is processed in chunks; still reproducible and sane
    pnls = np.random.default_rng(0).normal(1.0, 20.0, 5000)
    a = monte_carlo(pnls, 10_000.0, runs=600, seed=11)
    assert a == monte_carlo(pnls, 10_000.0, runs=600, seed=11)
    assert len(a.max_drawdowns) == 600 and 0 < a.max_dd_p5 <= a.max_dd_p95 < 1


# ---------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_values = st.lists(st.floats(min_value=1.0, max_value=1e6, allow_nan=False), min_size=2, max_size=40)


@settings(max_examples=60, deadline=None)
@given(_values)
def test_property_drawdown_bounds_and_return_identity(vals):
    idx = pd.date_range("2025-01-01", periods=len(vals), freq="1h", tz="UTC")
    eq = pd.Series(vals, index=idx)
    mm = compute_metrics(eq, [], idx[0], idx[-1])
    assert 0.0 <= mm.max_drawdown < 1.0
    assert mm.total_return == pytest.approx(vals[-1] / vals[0] - 1)
    # the drawdown is at least the fall from the running peak to the last value
    assert mm.max_drawdown >= 1 - vals[-1] / max(vals) - 1e-12
    assert mm.max_drawdown_duration is not None and mm.max_drawdown_duration >= timedelta(0)


_intervals = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 50)), max_size=15)


@settings(max_examples=60, deadline=None)
@given(_intervals)
def test_property_exposure_in_unit_interval(ivs):
    trades = [tr("X", Side.LONG, D0 + a * H, D0 + (a + b) * H, 0.0, 0, 0, 0.0) for a, b in ivs]
    e = exposure(trades, D0, D0 + 100 * H)
    assert 0.0 <= e <= 1.0
    # brute force on an hourly grid (integer endpoints make it exact)
    covered = sum(1 for h in range(100) if any(a <= h < a + b for a, b in ivs))
    assert e == pytest.approx(covered / 100)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(min_value=-50, max_value=50, allow_nan=False), min_size=1, max_size=30),
    st.integers(0, 99),
)
def test_property_monte_carlo_ordered(pnls, seed):
    r = monte_carlo(pnls, 1000.0, runs=50, seed=seed)
    assert 0.0 <= r.max_dd_p5 <= r.max_dd_p50 <= r.max_dd_p95 <= 1.0
    assert r.final_equity_p5 <= r.final_equity_p50 <= r.final_equity_p95
    assert 0.0 <= r.risk_of_ruin <= 1.0


def test_positions_open_at_the_end_count_in_exposure_and_costs() -> None:
    """Window 10 days; one closed trade days 1-3 (fees 2, funding 1); one position still open from
    day 6 to the end (fees 3, funding 0.5): exposure = (2 + 4) / 10 = 0.6, fees 5, funding 1.5."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    import pandas as pd

    from core.metrics import TradeRecord, compute_metrics
    from core.types import Position, Side

    d0 = datetime(2025, 1, 1, tzinfo=UTC)
    day = timedelta(days=1)
    tr = TradeRecord("BTC/USDT:USDT", Side.LONG, d0 + day, d0 + 3 * day, 100.0, 110.0, 1.0, 7.0, fees=2.0,
                     funding=1.0, r_multiple=1.0)
    op = Position("P2", "ETH/USDT:USDT", Side.SHORT, 50.0, Decimal(1), Decimal(1), 55.0, 55.0, 42.5, 37.5, 3, 16.7,
                  66.0, d0 + 6 * day, 50.0, fees_paid=3.0, funding_paid=0.5)
    eq = pd.Series([100.0, 101.0, 102.0], index=pd.DatetimeIndex([d0, d0 + 5 * day, d0 + 10 * day]))
    m = compute_metrics(eq, [tr], d0, d0 + 10 * day, [op])
    assert m.exposure == pytest.approx(0.6)
    assert m.fees_paid == pytest.approx(5.0) and m.funding_paid == pytest.approx(1.5)
    assert m.n_trades == 1 and m.net_pnl == pytest.approx(7.0)  # trade statistics: closed trades only
    assert compute_metrics(eq, [tr], d0, d0 + 10 * day).exposure == pytest.approx(0.2)
