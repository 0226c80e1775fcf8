"""Scenarios on the bundled real history (data/binance, BTC/USDT perpetual, 1h, 2025).

Each scenario replays a position bar by bar through `risk.exits.step` (and `PaperAccount`) and
checks every event against figures computed independently here: prices read off the data by hand
(written in the comments) and a second, vectorised pandas computation of when each rule fires.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core.types import Position, Side
from exchange.paper import PaperAccount
from risk import Bar, get_profile, step
from tests.unit.risk_builders import trade_plan as mk_plan

DATA = Path(__file__).resolve().parents[2] / "data" / "binance" / "futures"
DEFAULT = get_profile("default")


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return pd.read_feather(DATA / "BTC_USDT_USDT-1h-futures.feather").set_index("date")


def open_long(df: pd.DataFrame, i: int, stop_pct: float = 2.0, qty: str = "1") -> Position:
    t0 = df.index[i]
    entry = float(df.open.iloc[i])
    stop = entry * (1 - stop_pct / 100)
    r = entry - stop
    return Position(id="H1", symbol="BTC/USDT:USDT", side=Side.LONG, entry=entry, qty_initial=Decimal(qty),
                    qty_open=Decimal(qty), stop=stop, initial_stop=stop, tp1=entry + 1.5 * r, tp2=entry + 2.5 * r,
                    leverage=5, margin=entry / 5, liquidation_price=entry * 0.805, opened_at=t0, best_price=entry)


def replay(df: pd.DataFrame, pos: Position, i: int, n: int = 200, account: PaperAccount | None = None):
    """Feed bars i, i+1, ... (each stamped with its close time) until the position closes."""
    events = []
    for j in range(i, min(i + n, len(df))):
        row = df.iloc[j]
        res = step(pos, Bar(df.index[j] + timedelta(hours=1), row.open, row.high, row.low, row.close), DEFAULT)
        if account is not None:
            account.apply_exit_step(res)
        pos = res.position
        events += [(j - i, e) for e in res.events]
        if not pos.is_open:
            break
    return pos, events


def test_tp1_breakeven_trailing_tp2_on_btc_2025_01_01(btc):
    i = 0  # 2025-01-01 00:00 UTC, open 93548.8
    pos = open_long(btc, i)
    assert pos.entry == 93548.8
    assert pos.stop == pytest.approx(91677.824)  # -2 %
    assert pos.tp1 == pytest.approx(96355.264)  # +1.5R = +3 %
    assert pos.tp2 == pytest.approx(98226.24)  # +2.5R = +5 %

    acct = PaperAccount(Decimal(100_000), slippage_bps=Decimal(0), taker_fee=Decimal(0), maker_fee=Decimal(0))
    # mirror the position into the account at the same entry (no fees/slippage: pure price P&L)
    p0, _ = acct.open(mk_plan(entry=pos.entry, qty="1", lev=5, stop_pct=2.0), pos.entry, pos.opened_at,
                      position_id="H1")
    assert p0.tp1 == pytest.approx(pos.tp1) and p0.tp2 == pytest.approx(pos.tp2)
    final, events = replay(btc, pos, i, account=acct)
    kinds = [(k, e.kind) for k, e in events]

    # --- independent computation ---------------------------------------------------------------
    seg = btc.iloc[i:i + 200]
    e = pos.entry
    be_bar = int((seg.high >= e * 1.025).to_numpy().argmax())  # first +2.5 % high
    tp1_bar = int((seg.high >= pos.tp1).to_numpy().argmax())
    tp2_bar = int((seg.high >= pos.tp2).to_numpy().argmax())
    assert (be_bar, tp1_bar, tp2_bar) == (28, 33, 64)
    # bar 28 (2025-01-02 04:00): high 96031.4 >= 95887.52; bar 33: high 96800; bar 64: high 98423
    assert seg.high.iloc[28] == 96031.4 and seg.high.iloc[33] == 96800.0 and seg.high.iloc[64] == 98423.0
    assert (seg.low.iloc[:be_bar + 1] > pos.stop).all()  # the initial stop was never touched
    be_stop = e * 1.0015  # 93689.1232
    assert (seg.low.iloc[be_bar + 1:tp1_bar + 1] > be_stop).all()
    # after TP1 the stop in force at bar j is max(breakeven, 0.98 * highest high up to bar j-1)
    trail = (seg.high.iloc[tp1_bar:tp2_bar].cummax() * 0.98).clip(lower=be_stop)
    moved = [tp1_bar + k for k in range(len(trail)) if k == 0 or trail.iloc[k] > trail.iloc[k - 1]]
    assert moved == [33, 35, 36, 37, 38, 40, 43, 44]
    in_force = trail.shift(1).iloc[1:]  # bars tp1_bar+1 .. tp2_bar-1
    assert (seg.low.iloc[tp1_bar + 1:tp2_bar].to_numpy() > in_force.to_numpy()).all()
    assert (seg.low.iloc[tp2_bar] > trail.iloc[-1])  # the TP2 bar did not touch the trailing stop first

    expected = ([(be_bar, "stop_moved"), (tp1_bar, "tp1")] + [(m, "stop_moved") for m in moved]
                + [(tp2_bar, "tp2")])
    assert kinds == expected
    ev = {k: x for k, x in events if x.kind in ("tp1", "tp2")}
    assert ev[33].price == pytest.approx(96355.264) and ev[33].qty == Decimal("0.5")
    assert ev[33].pnl == pytest.approx(0.5 * 2806.464)  # 0.5 * (96355.264 - 93548.8)
    assert ev[64].price == pytest.approx(98226.24) and ev[64].pnl == pytest.approx(0.5 * 4677.44)
    first_move = events[0][1]
    assert first_move.old_stop == pytest.approx(91677.824) and first_move.new_stop == pytest.approx(be_stop)
    assert final.stop == pytest.approx(trail.iloc[-1])  # 0.98 * highest high before TP2
    assert final.exit_reason == "tp2" and final.closed_at == btc.index[64] + timedelta(hours=1)
    # the account realised exactly the two target fills (maker, zero fees here)
    assert acct.realised_pnl == Decimal("1403.23200000") + Decimal("2338.72000000")
    assert acct.balance == Decimal(100_000) + acct.realised_pnl and acct.margin_total == 0


def test_stop_on_btc_2025_01_06(btc):
    i = 140  # 2025-01-06 20:00 UTC, open 101771.7
    pos = open_long(btc, i)
    assert pos.entry == 101771.7 and pos.stop == pytest.approx(99736.266)
    final, events = replay(btc, pos, i)
    seg = btc.iloc[i:i + 200]
    hit = int((seg.low <= pos.stop).to_numpy().argmax())
    assert hit == 18  # 2025-01-07 14:00: open 100590.1, low 99702.0
    assert (seg.high.iloc[:hit + 1] < pos.entry * 1.025).all()  # no breakeven move before
    assert seg.open.iloc[hit] > pos.stop  # no gap: fills at the stop
    assert [(k, e.kind) for k, e in events] == [(18, "stop")]
    ev = events[0][1]
    assert ev.price == pytest.approx(99736.266) and ev.pnl == pytest.approx(-2035.434)
    assert ev.r_multiple == pytest.approx(-1.0)
    assert final.exit_reason == "stop"


def test_stale_exit_on_btc_2025_01_02(btc):
    i = 35  # 2025-01-02 11:00 UTC, open 96693.9
    pos = open_long(btc, i)
    final, events = replay(btc, pos, i)
    seg = btc.iloc[i:i + 200]
    e = pos.entry
    close_time_h = pd.Series(range(1, len(seg) + 1), index=seg.index)  # hours since entry at bar close
    stale = (close_time_h >= 48) & (seg.close < e * 1.01)
    first = int(stale.to_numpy().argmax())
    assert first == 52
    # nothing else fired before: no stop, no +2.5 %, no TP1
    assert (seg.low.iloc[:first + 1] > pos.stop).all() and (seg.high.iloc[:first + 1] < e * 1.025).all()
    assert [(k, x.kind) for k, x in events] == [(52, "stale")]
    ev = events[0][1]
    assert ev.price == seg.close.iloc[52]
    assert ev.pnl == pytest.approx(seg.close.iloc[52] - e)
    assert "open 53.0h" in ev.reason


def test_funding_heavy_hold_btc_february_2025():
    """Hold 2 BTC long and 2 BTC short for 30 days from 2025-02-01: every 8h funding event from the
    funding series, at the mark price of that hour, is paid by the long and received by the short."""
    fr = pd.read_feather(DATA / "BTC_USDT_USDT-1h-funding_rate.feather").set_index("date")["open"]
    mark = pd.read_feather(DATA / "BTC_USDT_USDT-1h-mark.feather").set_index("date")
    px = pd.read_feather(DATA / "BTC_USDT_USDT-1h-futures.feather").set_index("date")
    t0 = pd.Timestamp("2025-02-01 00:00", tz="UTC")
    t1 = t0 + pd.Timedelta(days=30)
    window = fr[(fr.index > t0) & (fr.index <= t1)]
    assert len(window) == 90  # 3 a day
    acct = PaperAccount(Decimal(1_000_000), taker_fee=Decimal("0.0005"), slippage_bps=Decimal(0))
    entry = float(px.open.loc[t0])
    lp, _ = acct.open(mk_plan(entry=entry, qty="2", lev=3), entry, t0.to_pydatetime())
    sp, _ = acct.open(mk_plan(symbol="BTC/USDT:USDT", side=Side.SHORT, entry=entry, qty="2", lev=3), entry,
                      t0.to_pydatetime())
    long_paid = Decimal(0)
    for ts, rate in window.items():
        m = mark.open.loc[ts]
        long_paid += acct.apply_funding(lp.id, rate, m, ts.to_pydatetime())
        acct.apply_funding(sp.id, rate, m, ts.to_pydatetime())
        # replaying the same event after a "restart" charges nothing
        assert acct.apply_funding(lp.id, rate, m, ts.to_pydatetime()) == 0
    # independent: sum(qty * mark * rate) with pandas floats
    expected = float((2 * mark.open.reindex(window.index) * window).sum())
    assert float(long_paid) == pytest.approx(expected, abs=0.01)
    assert expected > 50  # a real cost: mostly positive funding in February 2025
    assert acct.get(lp.id).funding_paid == pytest.approx(expected, abs=0.01)
    assert acct.get(sp.id).funding_paid == pytest.approx(-expected, abs=0.01)
    assert acct.funding_paid == 0  # long pays exactly what the short receives
    exit_px = float(px.close.loc[t1 - pd.Timedelta(hours=1)])
    acct.close(lp.id, Decimal(2), exit_px, t1.to_pydatetime(), "end")
    acct.close(sp.id, Decimal(2), exit_px, t1.to_pydatetime(), "end")
    # hedged book: price P&L cancels, only fees remain
    assert acct.realised_pnl == 0
    assert acct.balance == Decimal(1_000_000) - acct.fees_paid
    fees = 2 * (2 * entry * 0.0005) + 2 * (2 * exit_px * 0.0005)
    assert float(acct.fees_paid) == pytest.approx(fees, abs=1e-6)
