"""Benchmark: one year of 1h bars for six symbols through the backtest engine in `math` mode.

    .venv/bin/python bench/backtest.py [--data ../shared/data] [--from 2024-06-01] [--to 2025-05-31]

Data: `<data>/binance` (freqtrade feather files). For each of the six pairs the perpetual's 1h
series is used where it covers the year; where the futures series is shorter (SOL, DOGE, BNB start
2024-12-31 there) the SPOT series stands in for it (BNB spot itself starts 2024-09: before that BNB is
simply not a candidate). A temporary replay directory is assembled from symlinks; funding comes
from the futures funding files (no funding is charged before a perpetual existed).

Prints the wall time and its split: start-up (imports + reading the history), indicator computation
(`score_frames` and the per-row pre-screen), the bar loop, and the post-processing (metrics,
Monte Carlo, leaderboard); bars per second = 1h bars of the six symbols in the window / time; and
the CPU time of the process (steadier than wall time on a shared machine).

freqtrade reference, run in the same minute: when freqtrade is installed (`--freqtrade PYTHON`, or
`QUORUM_FREQTRADE_PYTHON`, or a `freqtrade` on PATH; install it in its OWN virtualenv, e.g.
`python3 -m venv /tmp/ft-venv && /tmp/ft-venv/bin/pip install freqtrade`), the script then runs
`freqtrade backtesting` on the same bars (the same temporary futures directory, with the spot
stand-ins, plus mark and funding files) with `bench/freqtrade_ref/QuorumLike.py`, a strategy doing
comparable work (RSI, MACD, MA20/50/200, ATR, long and short, 3 % stop, take-profit, time-based exit,
3 open trades, futures mode, isolated margin), through `bench/freqtrade_ref/run_ft.py` (binance's
markets are not reachable offline, so ccxt gets static USDM markets; the rest is freqtrade's own
path). It prints freqtrade's wall/CPU/loop times and the ratios. Without freqtrade it says so.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from backtest.engine import run_backtest  # noqa: E402
from core.settings import load_settings  # noqa: E402
from exchange.replay import ReplaySource  # noqa: E402

PAIRS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB")


def assemble(data: Path, start: pd.Timestamp, out: Path) -> list[str]:
    """Temp replay dir: futures series where it starts by `start`, else the spot series."""
    src = data / "binance"
    fut = out / "binance" / "futures"
    fut.mkdir(parents=True)
    used = []
    for base in PAIRS:
        stem = f"{base}_USDT_USDT"
        ff = src / "futures" / f"{stem}-1h-futures.feather"
        first = pd.read_feather(ff, columns=["date"])["date"].iloc[0]
        if pd.Timestamp(first) <= start:
            os.symlink(ff, fut / f"{stem}-1h-futures.feather")
            used.append(f"{base}: futures from {pd.Timestamp(first):%Y-%m-%d}")
        else:
            sp = src / "spot" / f"{base}_USDT-1h.feather"
            os.symlink(sp, fut / f"{stem}-1h-futures.feather")
            sfirst = pd.read_feather(sp, columns=["date"])["date"].iloc[0]
            used.append(f"{base}: SPOT from {pd.Timestamp(sfirst):%Y-%m-%d} (futures only from {pd.Timestamp(first):%Y-%m-%d})")
        fr = src / "futures" / f"{stem}-1h-funding_rate.feather"
        if fr.exists():
            os.symlink(fr, fut / f"{stem}-1h-funding_rate.feather")
    return used


def freqtrade_python(explicit: str | None) -> str | None:
    """The Python of a freqtrade installation, or None."""
    for cand in (explicit, os.environ.get("QUORUM_FREQTRADE_PYTHON")):
        if cand:
            return cand if Path(cand).exists() else None
    exe = shutil.which("freqtrade")
    if exe:
        first = Path(exe).read_text(errors="replace").splitlines()[0] if Path(exe).is_file() else ""
        if first.startswith("#!"):
            return first[2:].strip().split()[0]
    return None


def run_freqtrade(py: str, tmp: Path, start: pd.Timestamp, end: pd.Timestamp, data: Path) -> dict[str, float] | str:
    """freqtrade backtesting on the same bars; its timings (wall, cpu, load, indicators, loop, trades)."""
    ft = tmp / "ft"
    fut = ft / "data" / "binance" / "futures"
    fut.mkdir(parents=True)
    for p in (tmp / "binance" / "futures").iterdir():
        os.symlink(p.resolve(), fut / p.name)
        if p.name.endswith("-1h-futures.feather"):  # mark price: the exchange's mark where it exists, else the candles
            stem = p.name.removesuffix("-1h-futures.feather")
            mark = data / "binance" / "futures" / f"{stem}-1h-mark.feather"
            real_fut = p.resolve().parent.name == "futures"
            os.symlink(mark if real_fut and mark.exists() else p.resolve(), fut / f"{stem}-1h-mark.feather")
    (ft / "strategies").mkdir()
    shutil.copy(ROOT / "bench" / "freqtrade_ref" / "QuorumLike.py", ft / "strategies" / "QuorumLike.py")
    cfg = {
        "trading_mode": "futures", "margin_mode": "isolated", "max_open_trades": 3, "stake_currency": "USDT",
        "stake_amount": 1000, "dry_run": True, "dry_run_wallet": 10000, "timeframe": "1h",
        "futures_funding_rate": 0, "fee": 0.0005,
        "exchange": {"name": "binance", "key": "", "secret": "",
                     "pair_whitelist": [f"{b}/USDT:USDT" for b in PAIRS], "pair_blacklist": []},
        "pairlists": [{"method": "StaticPairList"}],
        "entry_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "exit_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "dataformat_ohlcv": "feather", "user_data_dir": str(ft), "datadir": str(ft / "data" / "binance"),
        "strategy": "QuorumLike", "strategy_path": str(ft / "strategies"), "db_url": "sqlite://",
    }
    (ft / "config.json").write_text(json.dumps(cfg))
    timerange = f"{start:%Y%m%d}-{(end + pd.Timedelta(hours=1)):%Y%m%d}"
    cmd = [py, str(ROOT / "bench" / "freqtrade_ref" / "run_ft.py"), "backtesting", "-c", str(ft / "config.json"),
           "--timerange", timerange, "--cache", "none", "--export", "none"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ft)
    line = next((x for x in (r.stdout + r.stderr).splitlines() if x.startswith("FT_TIMING")), None)
    if r.returncode != 0 or line is None:
        tail = (r.stdout + r.stderr).strip().splitlines()[-5:]
        return f"freqtrade failed (exit {r.returncode}): " + " | ".join(tail)
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--from", dest="start", default="2024-06-01")
    ap.add_argument("--to", dest="end", default="2025-05-31 23:00")
    ap.add_argument("--freqtrade", default=None, help="Python of a freqtrade install (default: autodetect)")
    ap.add_argument("--no-freqtrade", action="store_true", help="skip the freqtrade reference run")
    args = ap.parse_args()
    t_imports = time.perf_counter() - T_START
    start, end = pd.Timestamp(args.start, tz="UTC"), pd.Timestamp(args.end, tz="UTC")
    ft_py = None if args.no_freqtrade else freqtrade_python(args.freqtrade)
    ft_res: dict[str, float] | str | None = None
    with tempfile.TemporaryDirectory() as tmp:
        used = assemble(Path(args.data).resolve(), start, Path(tmp))
        settings = load_settings(data_dir=tmp)
        source = ReplaySource(Path(tmp))
        t0 = time.perf_counter()
        res = run_backtest(settings, source, start, end, panel_mode="math", progress=False)
        wall_run = time.perf_counter() - t0
        wall = time.perf_counter() - T_START
        cpu = time.process_time()
        if ft_py:
            ft_res = run_freqtrade(ft_py, Path(tmp), start, end, Path(args.data).resolve())
    bars = 0
    for s in res.symbols:
        h1 = source.history(s).h1
        bars += int(((h1.index >= start) & (h1.index <= end)).sum())
    tm = res.timings
    startup = t_imports + tm.get("load", 0.0) + (wall - t_imports - wall_run)
    print("Quorum backtest benchmark (math mode)")
    for line in used:
        print(f"  {line}")
    print(f"window {res.start:%Y-%m-%d %H:%M} .. {res.end:%Y-%m-%d %H:%M} UTC, {len(res.symbols)} symbols, "
          f"{res.counters['decision_times']} decision times, {bars} 1h bars")
    print(f"wall time            {wall:7.2f} s   ({bars / wall:,.0f} bars/s; CPU {cpu:.2f} s)")
    print(f"  start-up           {startup:7.2f} s   (imports {t_imports:.2f} s + reading history {tm.get('load', 0):.2f} s"
          f" + temp dir {wall - t_imports - wall_run:.2f} s)")
    print(f"  indicators         {tm.get('indicators', 0):7.2f} s   (score_frames + pre-screen, 6 symbols)")
    print(f"  bar loop           {tm.get('loop', 0):7.2f} s   ({bars / max(tm.get('loop', 1e-9), 1e-9):,.0f} bars/s)")
    print(f"  metrics/MC/board   {tm.get('post', 0):7.2f} s")
    m = res.metrics
    print(f"result: {m.n_trades} trades, total return {m.total_return:+.2%}, max drawdown {m.max_drawdown:.2%}, "
          f"Sharpe {m.sharpe:.2f}")
    halts = {k: v for k, v in res.counters.get("deny_reasons", {}).items() if "breaker" in k or "halted" in k}
    if halts:
        print(f"  (entries denied by breakers: {halts})")
    if ft_res is None and args.no_freqtrade:
        print("freqtrade: skipped (--no-freqtrade)")
    elif ft_res is None:
        print("freqtrade: not installed (install it in its own virtualenv and pass --freqtrade PYTHON, set "
              "QUORUM_FREQTRADE_PYTHON, or put freqtrade on PATH) - no reference figure")
    elif isinstance(ft_res, str):
        print(ft_res)
    else:
        print(f"freqtrade, same bars, same minute: wall {ft_res['wall']:.2f} s (CPU {ft_res['cpu']:.2f} s), "
              f"loading {ft_res['load']:.2f} s, indicators {ft_res['indicators']:.2f} s, backtest loop "
              f"{ft_res['loop']:.2f} s, {int(ft_res['trades'])} trades")
        loop_q = tm.get("loop", 0.0)
        print(f"ratio Quorum / freqtrade: bar loop {loop_q / ft_res['loop']:.2f}x, wall {wall / ft_res['wall']:.2f}x, "
              f"CPU {cpu / ft_res['cpu']:.2f}x  (< 1: Quorum is faster)")


if __name__ == "__main__":
    main()
