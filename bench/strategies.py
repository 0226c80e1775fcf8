"""Benchmark and figures: every strategy over the bundled history (`quorum backtest --strategy NAME`),
next to buy-and-hold.

    .venv/bin/python bench/strategies.py [--from 2025-01-01] [--to 2025-05-31] [--strategies trend,grid]

Prints, per strategy, the wall time of the run (loading, indicators, bar loop, metrics) and its
figures: total return, Sharpe, max drawdown, trades, win rate; then buy-and-hold of each symbol over
the same window. `rebalance` also runs over 2024-05-02 .. 2024-12-31, where the bundle has spot
bars for BTC and XRP (after 2024 its prices are the perpetuals').
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backtest.run import parse_range, replay_source  # noqa: E402
from backtest.strategies import run_strategy_backtest  # noqa: E402
from core.settings import STRATEGIES, load_settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="start", default="2025-01-01")
    ap.add_argument("--to", dest="end", default="2025-05-31")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args()
    settings = load_settings()
    source = replay_source(settings)
    runs = [(n, args.start, args.end) for n in args.strategies.split(",")]
    if "rebalance" in args.strategies:
        runs.append(("rebalance", "2024-05-02", "2024-12-31"))
    bh = None
    print(f"{'strategy':<11} {'window':<23} {'wall s':>7} {'return':>8} {'Sharpe':>7} {'max DD':>7} {'trades':>7} "
          f"{'win':>6}  notes")
    for name, a, b in runs:
        t0 = time.perf_counter()
        r = run_strategy_backtest(settings, source, *parse_range(a, b), strategy=name, progress=False)
        wall = time.perf_counter() - t0
        m = r.metrics
        c = r.counters
        extra = ""
        if name == "rebalance":
            te = c["tracking_error_vs_target"]
            extra = (f"{c['rebalances']} rebalances, {c['trades']} trades, fees {c['fees']:.2f}; TE vs target RMS "
                     f"{te['rms']:.2%} (max drift {te['max_drift']:.2%}), vs buy-and-hold {c['tracking_error_vs_buy_and_hold']:.2%}"
                     f"/yr; buy-and-hold: " + ", ".join(f"{k.split(':')[0]} {v:+.2%}" for k, v in r.buy_and_hold.items()))
        elif name != "trend":
            extra = (f"resting fills {c.get('resting_fills', 0)}, repositions {c.get('repositions', 0)}, "
                     f"handovers {c.get('handovers', 0)}")
        win = "—" if m.win_rate != m.win_rate else f"{m.win_rate:.0%}"
        print(f"{name:<11} {a} .. {b} {wall:7.1f} {m.total_return:+8.2%} {m.sharpe:7.2f} {m.max_drawdown:7.2%} "
              f"{m.n_trades:7d} {win:>6}  {extra}")
        if name != "rebalance" and bh is None:
            bh = (a, b, r.buy_and_hold)
    if bh is not None:
        print(f"buy-and-hold {bh[0]} .. {bh[1]}: " + ", ".join(f"{s.split('/')[0]} {v:+.2%}" for s, v in bh[2].items()))


if __name__ == "__main__":
    main()
