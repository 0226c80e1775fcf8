"""The daily stats post's drawdown comes from the intraday equity path (issue 13, item 14): hourly
closes of the open positions between the snapshots, not only the snapshots at cycle/monitor times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from core.types import Position, PositionEvent, Side
from notify.daily_stats import compute_daily_stats
from pipeline.daily import intraday_path

D0 = datetime(2025, 3, 5, tzinfo=UTC)
H = timedelta(hours=1)


def btc_long(**kw) -> Position:
    base = dict(id="BTC-1", symbol="BTC/USDT:USDT", side=Side.LONG, entry=100.0, qty_initial=Decimal("30"),
                qty_open=Decimal("30"), stop=90.0, initial_stop=90.0, tp1=115.0, tp2=125.0, leverage=5, margin=600.0,
                liquidation_price=81.0, opened_at=D0 - 5 * H, best_price=100.0)
    base.update(kw)
    return Position(**base)


def closes(prices: list[float]) -> pd.Series:
    # hourly closes by close time: D0 - 1h .. D0 + 23h
    return pd.Series(prices, index=pd.DatetimeIndex([D0 + (i - 1) * H for i in range(len(prices))]))


def test_a_day_that_lost_3_percent_intraday_reports_it():
    # 30 contracts long from 100; equity 10,000 at midnight with the price at 100. The price slides to
    # 90 by 12:00 (-300, -3%), then recovers to 97.33 at 23:00 (-0.8%); snapshots only at 00:00 and 23:00
    px = [100.0, 100.0] + [100.0 - i * 10 / 12 for i in range(1, 13)] + [90.0 + i * 0.733 for i in range(1, 11)]
    px.append(97.33)
    hours = [D0 + i * H for i in range(1, 24)]
    path = intraday_path((D0, 10_000.0), hours, [btc_long()], [], [], {"BTC/USDT:USDT": closes(px)})
    worst = min(e for _, e in path)
    assert worst == pytest.approx(10_000.0 - 30 * 10.0)  # at 12:00, -3%
    snaps = [(D0, 10_000.0), (D0 + 23 * H, 10_000.0 + 30 * (px[24] - 100.0))]
    only_snaps = compute_daily_stats([], date(2025, 3, 5), snaps)
    with_path = compute_daily_stats([], date(2025, 3, 5), sorted(snaps + path))
    assert only_snaps.max_drawdown_pct == pytest.approx(0.801, abs=1e-3)
    assert with_path.max_drawdown_pct == pytest.approx(3.0, rel=1e-6)


def test_exits_fees_and_funding_move_the_path_like_the_account():
    # 30 long from 100; at 06:00 TP1 closes 15 at 115 (+225 gross, fee 1.5); funding received 2.0 at 08:00;
    # at 10:00 a stop closes the rest at 99 (-15 gross, fee 0.8)
    pos = btc_long(qty_open=Decimal(0), closed_at=D0 + 10 * H, tp1_done=True)
    events = [PositionEvent("BTC-1", pos.symbol, "opened", D0 - 5 * H, 100.0, Decimal(30), 0.0, 0.0, ""),
              PositionEvent("BTC-1", pos.symbol, "tp1", D0 + 6 * H, 115.0, Decimal(15), 225.0, 1.5, ""),
              PositionEvent("BTC-1", pos.symbol, "funding", D0 + 8 * H, 110.0, Decimal(15), 2.0, 0.0, ""),
              PositionEvent("BTC-1", pos.symbol, "stop_moved", D0 + 6 * H, 115.0, Decimal(0), 0.0, 0.0, ""),
              PositionEvent("BTC-1", pos.symbol, "stop", D0 + 10 * H, 99.0, Decimal(15), -15.0, -0.1, "")]
    fees = [(D0 + 6 * H, 1.5), (D0 + 10 * H, 0.8)]
    px = [100.0] * 7 + [115.0] + [110.0] * 3 + [99.0] * 14
    hours = [D0 + i * H for i in range(1, 24)]
    path = dict(intraday_path((D0, 10_000.0), hours, [pos], events, fees, {pos.symbol: closes(px)}))
    assert path[D0 + 5 * H] == pytest.approx(10_000.0)  # still at 100
    assert path[D0 + 6 * H] == pytest.approx(10_000.0 + 225.0 - 1.5 + 15 * 15.0)  # realised + the rest marked
    assert path[D0 + 9 * H] == pytest.approx(10_000.0 + 225.0 - 1.5 + 2.0 + 15 * 10.0)
    end = 10_000.0 + 225.0 - 1.5 + 2.0 - 15.0 - 0.8  # what the account holds after the stop
    assert path[D0 + 10 * H] == pytest.approx(end) and path[D0 + 23 * H] == pytest.approx(end)
