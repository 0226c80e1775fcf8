"""Benchmarks of the cycle: one offline cycle split by stage, and the math engine's load target.

    .venv/bin/python bench/cycle.py [--no-flow]

1. One full offline cycle (replay, paper, no keys) through the real Prefect flow, timings by stage
   (excluding the temporary Prefect server's start-up, reported separately).
2. Math engine: 100 symbols x 3 timeframes x 500 bars scored (target <= 1 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def bench_math_engine(n_symbols: int = 100, bars: int = 500, repeats: int = 3) -> dict[str, float]:
    from agents.math_engine import score_snapshot
    from core.settings import load_settings
    from core.types import MarketSnapshot

    signal = load_settings().signal
    rng = np.random.default_rng(42)
    snaps = []
    end = pd.Timestamp("2025-05-31", tz="UTC")
    for i in range(n_symbols):
        frames = {}
        for tf, step in (("1h", "1h"), ("4h", "4h"), ("1d", "1D")):
            idx = pd.date_range(end=end - pd.Timedelta(step), periods=bars, freq=step)
            close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))
            open_ = np.r_[close[0], close[:-1]]
            high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, bars))
            low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, bars))
            frames[tf] = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                                       "volume": rng.uniform(1e3, 1e5, bars)}, index=idx)
        c = float(frames["1h"]["close"].iloc[-1])
        snaps.append(MarketSnapshot(f"S{i}/USDT:USDT", end.to_pydatetime(), frames, c, c, c, 1e8))
    score_snapshot(snaps[0], signal)  # warm-up (numba JIT in pandas-ta)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for s in snaps:
            score_snapshot(s, signal)
        best = min(best, time.perf_counter() - t)
    return {"symbols": n_symbols, "timeframes": 3, "bars": bars, "best_of": repeats, "seconds": best,
            "per_symbol_ms": best / n_symbols * 1000}


def bench_cycle() -> dict[str, float]:
    tmp = tempfile.mkdtemp()
    os.environ["QUORUM_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
    from tasks import prefect_env

    prefect_env.apply()
    from prefect.testing.utilities import prefect_test_harness

    from flows.trading_cycle import trading_cycle

    t0 = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        startup = time.perf_counter() - t0
        trading_cycle(as_of="2025-05-23T03:00:00Z", broadcast=False)  # warm-up run (imports, JIT)
        t1 = time.perf_counter()
        report = trading_cycle(as_of="2025-05-23T04:00:00Z", broadcast=False)
        wall = time.perf_counter() - t1
    out = {"prefect_server_startup_s": startup, "cycle_wall_s": wall}
    out.update({f"stage_{k}_s": v for k, v in report["timings_s"].items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-flow", action="store_true", help="skip the Prefect cycle benchmark")
    args = ap.parse_args()
    m = bench_math_engine()
    print(f"math engine: {m['symbols']} symbols x {m['timeframes']} timeframes x {m['bars']} bars: "
          f"{m['seconds']:.3f} s (best of {m['best_of']}; {m['per_symbol_ms']:.1f} ms/symbol; target <= 1 s)")
    if not args.no_flow:
        c = bench_cycle()
        print(f"offline cycle (6 symbols, paper, replay) through Prefect: {c['cycle_wall_s']:.2f} s wall "
              f"(temporary Prefect server start-up {c['prefect_server_startup_s']:.1f} s, not included)")
        for k, v in c.items():
            if k.startswith("stage_"):
                print(f"  {k[6:-2]:<18} {v:.3f} s")


if __name__ == "__main__":
    main()
