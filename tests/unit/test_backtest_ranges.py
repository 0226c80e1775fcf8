"""Backtest ranges (issue 13, items 7-9): a symbol whose history ends early runs to its own end without
cutting the others; a `--to` beyond the data is said, not silently clipped; a walk-forward window past
the data is skipped without losing the finished windows; the curve's opening point (the starting
balance) counts in the metrics even when the first decision trades."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from backtest.engine import run_backtest
from backtest.run import write_backtest_report
from backtest.walkforward import walk_forward
from core.errors import DataError
from exchange.replay import ReplaySource, SymbolHistory

SYMS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
ETH = "ETH/USDT:USDT"
START, END = "2025-03-01", "2025-03-21 23:00"
KW = dict(symbols=SYMS, progress=False, mc_runs=20, leaderboard_runs=10)


class TruncatedSource(ReplaySource):
    """The bundled history with one symbol's bars (and funding) cut after `cut` (bars opening at or
    after `cut` are gone)."""

    def __init__(self, base: ReplaySource, symbol: str, cut: pd.Timestamp):
        super().__init__(base.root.parent, base.root.name, base.spread_pct)
        self.symbol, self.cut = symbol, cut

    def history(self, symbol: str) -> SymbolHistory:
        h = super().history(symbol)
        if symbol != self.symbol:
            return h
        return SymbolHistory(symbol, h.h1[h.h1.index < self.cut], h.futures_start,
                             h.funding[h.funding.index < self.cut], h.spot_warmup)


@pytest.fixture(scope="module")
def base_run(settings, source):
    return run_backtest(settings, source, START, END, **KW)


def _eth_position_open_for_a_day(run) -> tuple[pd.Timestamp, str]:
    for p in run.positions:
        if p.symbol == ETH and p.closed_at is not None and p.closed_at - p.opened_at >= pd.Timedelta(hours=6):
            return pd.Timestamp(p.opened_at).floor("h") + pd.Timedelta(hours=3), p.id
    pytest.skip("no ETH position held 6 h in the base window")


def test_a_symbol_ending_early_runs_to_its_own_end_and_the_others_continue(settings, source, base_run, tmp_path):
    cut, pid = _eth_position_open_for_a_day(base_run)
    src = TruncatedSource(source, ETH, cut)
    r = run_backtest(settings, src, START, END, **KW)
    # the whole range is replayed (not cut at ETH's last bar)
    assert r.counters["decision_times"] == base_run.counters["decision_times"] == 21 * 24
    assert r.end == pd.Timestamp(END, tz="UTC").to_pydatetime()
    # ETH is no candidate once its history has ended; BTC still is
    assert all(d.time < cut for d in r.decisions if d.symbol == ETH)
    assert any(d.time > cut for d in r.decisions if d.symbol == "BTC/USDT:USDT")
    # the ETH position open at the cut is closed at the last close of its history, and said so
    eth = {p.id: p for p in r.positions}[pid]
    assert eth.exit_reason == "data_end" and eth.closed_at == cut.to_pydatetime()
    last_close = float(src.history(ETH).h1["close"].iloc[-1])
    tr = next(t for t in r.trades if t.symbol == ETH and t.closed_at == cut.to_pydatetime())
    assert tr.reason == "data_end" and tr.exit == pytest.approx(last_close, rel=5e-4)
    assert not any(p.symbol == ETH for p in r.open_at_end)
    # until the cut the two runs are identical (nothing of ETH's missing future leaks back)
    assert [d.key() for d in r.decisions if d.time < cut] == [d.key() for d in base_run.decisions if d.time < cut]
    note = [n for n in r.notes if n.startswith(ETH)]
    assert note and "history ends at" in note[0] and cut.isoformat() in note[0]
    _html, js = write_backtest_report(r, tmp_path)
    assert note[0] in json.loads(js.read_text())["params"]["notes"]


def test_to_beyond_the_data_is_said_not_silently_clipped(settings, source, tmp_path):
    r = run_backtest(settings, source, "2025-05-29", "2025-07-01", **KW)
    last_open = source.data_range()[1]
    assert r.end == last_open.to_pydatetime()
    beyond = [n for n in r.notes if n.startswith("--to")]
    assert beyond and "beyond the data" in beyond[0] and last_open.isoformat() in beyond[0]
    assert "2025-07-01" in beyond[0]
    assert beyond[0] in r.summary()["notes"]
    # a --to inside the data says nothing
    assert not [n for n in run_backtest(settings, source, "2025-05-29", "2025-05-30", **KW).notes
                if n.startswith("--to")]


def test_no_decision_time_in_the_data_is_one_clear_error(settings, source):
    with pytest.raises(DataError, match="no decision time between 2025-07-01"):
        run_backtest(settings, source, "2025-07-01", "2025-07-05", **KW)


def test_walk_forward_keeps_finished_windows_when_a_late_window_has_no_data(settings, source):
    wf = walk_forward(settings, source, "2025-05-18", "2025-06-20", train_days=3, test_days=5, **KW)
    # windows from 05-21, 05-26 and 05-31 (the last one clipped to the data, with a note) run;
    # 06-05, 06-10 and 06-15 have no decision time in the data and are skipped, not fatal
    assert [w["test_start"].date().isoformat() for w in wf.windows] == ["2025-05-21", "2025-05-26", "2025-05-31"]
    assert len(wf.results) == 3
    assert [sk["test_start"].date().isoformat() for sk in wf.skipped] == ["2025-06-05", "2025-06-10", "2025-06-15"]
    assert all("no decision time" in sk["reason"] for sk in wf.skipped)
    assert any(n.startswith("--to") for n in wf.results[-1].notes)
    assert json.dumps(wf.summary())
    with pytest.raises(DataError, match="no test window"):
        walk_forward(settings, source, "2025-06-05", "2025-06-20", train_days=1, test_days=5, **KW)


def test_start_equity_is_the_starting_balance_when_the_first_decision_trades(settings, source, base_run):
    first_fill = base_run.fills[0]["time"]
    r = run_backtest(settings, source, first_fill, first_fill + pd.Timedelta(days=3), **KW)
    assert r.fills and r.fills[0]["time"] == first_fill  # the first decision trades
    start_bal = settings.paper.starting_balance
    assert r.equity.iloc[0] == start_bal
    assert r.equity.iloc[1] < start_bal  # after the entry fee and slippage
    m = r.metrics
    assert m.start_equity == start_bal
    assert m.total_return == pytest.approx(m.end_equity / start_bal - 1, rel=1e-12)
    # the consensus row of the leaderboard agrees
    assert r.leaderboard[0].total_return == pytest.approx(m.total_return, rel=1e-12)


@pytest.mark.parametrize("strategy", ["grid", "rebalance"])
def test_strategy_backtests_open_their_metrics_at_the_starting_balance(settings, source, strategy):
    from backtest.strategies import run_strategy_backtest

    r = run_strategy_backtest(settings, source, "2025-03-01", "2025-03-05 23:00", strategy=strategy,
                              **({"symbols": SYMS} if strategy == "grid" else {}), mc_runs=10, leaderboard_runs=10)
    start_bal = settings.paper.starting_balance
    assert r.equity.iloc[0] == start_bal
    assert r.metrics.start_equity == start_bal
    assert r.metrics.total_return == pytest.approx(r.metrics.end_equity / start_bal - 1, rel=1e-12)
