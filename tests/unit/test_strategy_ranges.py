"""`backtest --strategy` ranges (issue 13 item 7 for the strategies): a symbol whose history ends early
runs to its own end (its resting orders cancelled, its positions closed at its last close, reason
data_end) without cutting the others, and the report says so, as the trend engine does."""

from __future__ import annotations

import pandas as pd
import pytest

from backtest.run import parse_range
from backtest.strategies import run_strategy_backtest
from tests.unit.test_backtest_ranges import TruncatedSource

SYMS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
ETH = "ETH/USDT:USDT"
WINDOW = parse_range("2025-03-01", "2025-03-08 23:00")
CUT = pd.Timestamp("2025-03-05 12:00", tz="UTC")
KW = dict(symbols=SYMS, mc_runs=20, leaderboard_runs=10)


@pytest.mark.parametrize("strategy", ["grid", "hybrid"])
def test_a_symbol_ending_early_runs_to_its_own_end_and_the_others_continue(settings, source, strategy) -> None:
    src = TruncatedSource(source, ETH, CUT)
    base = run_strategy_backtest(settings, source, *WINDOW, strategy=strategy, **KW)
    r = run_strategy_backtest(settings, src, *WINDOW, strategy=strategy, **KW)
    assert r.counters["decision_times"] == base.counters["decision_times"] == 8 * 24
    assert r.end == pd.Timestamp("2025-03-08 23:00", tz="UTC").to_pydatetime()
    # ETH trades nothing after its last close; BTC goes on to the end
    assert all(pd.Timestamp(f["time"]) <= CUT for f in r.fills if f["symbol"] == ETH)
    assert any(pd.Timestamp(f["time"]) > CUT for f in r.fills if f["symbol"] == "BTC/USDT:USDT")
    assert not any(p["symbol"] == ETH for p in r.open_at_end)
    eth_open_at_cut = [p for p in base.positions if p.symbol == ETH and p.opened_at < CUT
                       and (p.closed_at is None or p.closed_at > CUT)]
    ended = [t for t in r.trades if t.symbol == ETH and t.reason == "data_end"]
    assert ended or strategy != "grid"  # the grid holds ETH levels at the cut in this window
    if eth_open_at_cut:
        assert ended and all(t.closed_at == CUT.to_pydatetime() for t in ended)
        last_close = float(src.history(ETH).h1["close"].iloc[-1])
        assert all(t.exit == pytest.approx(last_close, rel=5e-4) for t in ended)
    # what ran before the cut is the same run (nothing of ETH's missing future leaks back)
    before = [f for f in base.fills if pd.Timestamp(f["time"]) < CUT]
    assert [f for f in r.fills if pd.Timestamp(f["time"]) < CUT] == before
    note = [n for n in r.notes if n.startswith(ETH)]
    assert note and "history ends at" in note[0] and CUT.isoformat() in note[0]


def test_to_beyond_the_data_is_said(settings, source) -> None:
    r = run_strategy_backtest(settings, source, *parse_range("2025-05-30", "2025-07-01"), strategy="grid", **KW)
    assert any(n.startswith("--to ") and "beyond the data" in n for n in r.notes)
