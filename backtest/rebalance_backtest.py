"""The `rebalance` strategy's backtest (`quorum backtest --strategy rebalance`): spot holdings
(`SpotAccount`) over the prices of its target assets, traded by the same functions as the paper cycle
(`pipeline.rebalance.execute_rebalance`, `risk.intents.check_rebalance`). Split from
backtest/strategies.py, which dispatches to it."""

from __future__ import annotations

import math
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from agents.strategies import build
from agents.strategies.rebalance import PortfolioFacts, weights
from backtest.data import NoDecisionTime, decision_times, load_symbol
from backtest.result import BacktestResult, DecisionRecord
from core.baselines import buy_and_hold, monte_carlo, tracking_error_vs_benchmark, tracking_error_vs_target
from core.errors import DataError
from core.frames import TF_DELTA
from core.leaderboard import CONSENSUS_ID, MemberResult, leaderboard
from core.metrics import compute_metrics
from core.settings import Settings
from exchange.money import D
from exchange.spot import SpotAccount
from pipeline.rebalance import execute_rebalance
from pipeline.stages import decide
from risk.intents import check_rebalance


def _next_open(idx: np.ndarray, val: np.ndarray, t_ns: int) -> tuple[datetime, float] | None:
    """The open of the first bar starting at or after t (the first price after the decision)."""
    i = int(np.searchsorted(idx, t_ns, side="left"))
    return None if i >= len(idx) else (pd.Timestamp(int(idx[i]), tz="UTC").to_pydatetime(), float(val[i]))


def _params(strategy: str, settings: Settings) -> dict[str, Any]:
    p = settings.strategies
    if strategy == "hybrid":
        return {"grid": p.grid.model_dump(), "hybrid": p.hybrid.model_dump()}
    return getattr(p, strategy).model_dump()


def _describe(strategy: str, settings: Settings) -> str:
    return ", ".join(f"{k}={v}" for k, v in _flat(_params(strategy, settings)).items())


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "targets":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ------------------------------------------------------------------------------------------------
# rebalance


def run_rebalance_backtest(settings: Settings, source: Any, start: datetime | str, end: datetime | str, *,
                           seed: int = 0, mc_runs: int = 1000, leaderboard_runs: int = 1000) -> BacktestResult:
    """Target weights on spot holdings, from all quote at the start (the first allocation is the
    first rebalance). Prices: the 1h history of each asset's `ASSET/QUOTE:QUOTE` market in the
    replay store: its spot bars where the store has them, the perpetual's after (stated in the notes).
    A decision at t sees closes by t; trades fill at the next bar's open with the spot fee and
    slippage of the settings; buys are cut to the cash available at the fill."""
    t0 = time.perf_counter()
    cfg = settings.strategies.rebalance
    strat = build("rebalance", settings)
    quote = cfg.quote
    assets = [a for a in cfg.targets if a != quote]
    syms = {a: f"{a}/{quote}:{quote}" for a in assets}
    known = source.symbols()
    missing = [s for s in syms.values() if s not in known]
    if missing:
        raise DataError(f"rebalance: no history for {', '.join(missing)}; the source has: {', '.join(known)}")
    hist = {a: source.history(s) for a, s in syms.items()}
    opens = {a: h.h1["open"] for a, h in hist.items()}
    closes = {a: pd.Series(h.h1["close"].to_numpy(dtype=float), index=h.h1.index + TF_DELTA["1h"])
              for a, h in hist.items()}
    times = decision_times(start, end, settings.cycle_interval_minutes)
    req_end = times[-1] if len(times) else None
    first = max(c.index[0] for c in closes.values())
    last_open = min(o.index[-1] for o in opens.values())
    times = times[(times >= first) & (times <= last_open)]
    if len(times) == 0:
        raise NoDecisionTime(f"rebalance: no decision time between {start} and {end} inside the history of "
                        f"{', '.join(syms.values())} ({first} .. {last_open})")
    steps = {a: source.market_rules(s).qty_step for a, s in syms.items()}
    # panel tilt (when configured): in math mode the "panel" is the consensus falling back to the math score
    tilt_data = ({a: load_symbol(source, sym, times, times[-1], settings) for a, sym in syms.items()}
                 if cfg.panel_tilt_pct > 0 else {})
    spot = SpotAccount(quote=quote, fee=D(cfg.fee), slippage_bps=D(cfg.slippage_bps),
                       holdings={quote: D(settings.paper.starting_balance), **{a: Decimal(0) for a in assets}})
    close_idx = {a: c.index.as_unit("ns").asi8 for a, c in closes.items()}
    close_val = {a: c.to_numpy() for a, c in closes.items()}
    open_idx = {a: o.index.as_unit("ns").asi8 for a, o in opens.items()}
    open_val = {a: o.to_numpy(dtype=float) for a, o in opens.items()}
    curve: list[tuple[datetime, float]] = []
    wrows: list[dict[str, float]] = []
    st_state: Any = None
    counters: dict[str, Any] = {"decision_times": 0, "rebalances": 0, "trades": 0, "denied": 0, "rejected": 0,
                                "fees": 0.0, "turnover": 0.0, "candidates": 0, "scored": 0, "non_wait_decisions": 0,
                                "approved": 0, "denied_non_wait": 0, "filled": 0, "cache_miss": 0, "votes": 0,
                                "valid_votes": 0, "tokens": 0, "llm_cost_usd": 0.0}
    decisions: list[DecisionRecord] = []
    fills: list[dict[str, Any]] = []
    bh_holdings: dict[str, Decimal] | None = None
    bh_curve: list[tuple[datetime, float]] = []
    for k, t in enumerate(times.to_pydatetime()):
        counters["decision_times"] += 1
        tn = pd.Timestamp(t).as_unit("ns").value
        prices = {a: float(close_val[a][np.searchsorted(close_idx[a], tn, side="right") - 1]) for a in assets}
        decided = {a: decide(syms[a], t, [], sd.score(k, settings.signal), settings) for a, sd in tilt_data.items()
                   if sd.frame is not None and sd.pre_signal[k] != 0}
        facts = PortfolioFacts(t, dict(spot.holdings), prices, decided, steps, False, st_state)
        st = strat.step(facts)
        st_state = st.state
        for rb in st.intents:
            v = check_rebalance(rb.weights, rb.trades, spot.holdings, quote, cfg.min_trade_usd, cfg.fee, False)
            if not v.approved:
                counters["denied"] += 1
                decisions.append(DecisionRecord(t, "portfolio", "REBALANCE", 0.0, 0.0, 0, False, v.reasons))
                continue
            counters["rebalances"] += 1
            decisions.append(DecisionRecord(t, "portfolio", "REBALANCE", 0.0, 0.0, 0, True, (rb.reason,), True))
            done = execute_rebalance(spot, rb, lambda a, tn=tn: _next_open(open_idx[a], open_val[a], tn), cfg, steps)
            counters["rejected"] += len(done["rejected"])
            for rec in done["trades"]:
                counters["trades"] += 1
                counters["fees"] += float(rec["fee"])
                counters["turnover"] += float(rec["notional"])
                fills.append({"time": rec["ts"], "symbol": syms[rec["asset"]], "side": rec["side"], "kind": "spot",
                              "fill_price": float(rec["price"]), "qty": rec["qty"], "fee": float(rec["fee"])})
            if bh_holdings is None:
                bh_holdings = dict(spot.holdings)  # buy-and-hold of the start allocation
        eq = float(spot.value(prices))
        curve.append((t, eq))
        wrows.append(weights({a: spot.holdings.get(a, Decimal(0)) for a in cfg.targets}, prices, quote))
        if bh_holdings is not None:
            bh_curve.append((t, float(sum((q if a == quote else q * D(prices[a])) for a, q in bh_holdings.items()))))
    start_used, end_used = times[0].to_pydatetime(), times[-1].to_pydatetime()
    opening = ((times[0] - pd.Timedelta(minutes=settings.cycle_interval_minutes)).to_pydatetime(),
               float(settings.paper.starting_balance))
    idx = pd.DatetimeIndex([opening[0]] + [t for t, _ in curve])
    equity = pd.Series([opening[1]] + [e for _, e in curve], index=idx, dtype=float)
    bench = pd.Series([e for _, e in bh_curve], index=pd.DatetimeIndex([t for t, _ in bh_curve]), dtype=float)
    w = pd.DataFrame(wrows, index=pd.DatetimeIndex([t for t, _ in curve]))
    te_target = tracking_error_vs_target(w.iloc[1:] if len(w) > 1 else w, cfg.targets)
    te_bh = tracking_error_vs_benchmark(equity.loc[bench.index] if len(bench) else equity, bench)
    metrics = compute_metrics(equity, [], opening[0], end_used)
    mc = monte_carlo([], settings.paper.starting_balance, runs=mc_runs, seed=seed)
    bh: dict[str, float] = {}
    for a in assets:
        bh[syms[a]] = buy_and_hold(closes[a], start_used, end_used)
    bh["start allocation (held)"] = float(bench.iloc[-1] / bench.iloc[0] - 1) if len(bench) > 1 else math.nan
    counters["tracking_error_vs_target"] = te_target
    counters["tracking_error_vs_buy_and_hold"] = te_bh
    counters["return_vs_buy_and_hold"] = (float(equity.iloc[-1] / bench.iloc[-1] - 1) if len(bench) else math.nan)
    board = leaderboard([MemberResult(CONSENSUS_ID, equity, [], [])], opening[0], end_used, runs=leaderboard_runs,
                        seed=seed)
    spot_end = {a: h.futures_start for a, h in hist.items()}
    notes = [f"strategy rebalance: {_describe('rebalance', settings)}",
             f"tracking error vs target: RMS {te_target['rms']:.2%} of weight, largest drift {te_target['max_drift']:.2%}, "
             f"mean largest drift {te_target['mean_drift']:.2%}; vs buy-and-hold of the start allocation: "
             f"{te_bh:.2%} annualised",
             "prices: each asset's spot bars in the replay store, then its perpetual's bars from "
             + ", ".join(f"{a} {ts:%Y-%m-%d}" for a, ts in spot_end.items())
             + " (the bundled spot history ends there); no funding on spot holdings",
             f"spot fee {cfg.fee:.3%} and {cfg.slippage_bps:g} bps slippage on every trade, at the next bar's open"]
    if req_end is not None and req_end > times[-1]:
        short = min(opens, key=lambda a: opens[a].index[-1])
        notes.append(f"the run ends at {times[-1].isoformat()}, the last bar of {syms[short]}: a portfolio is "
                     "valued and traded only while every target asset has a price (the other assets' longer "
                     "histories are not used past it)")
    if tilt_data:
        notes.append(f"panel tilt up to {cfg.panel_tilt_pct:g} points per asset from the math-mode decisions "
                     "(no models in a backtest of this strategy)")
    timings = {"total": time.perf_counter() - t0}
    return BacktestResult(
        start=start_used, end=end_used, panel_mode="math", symbols=list(syms.values()),
        settings_summary={"strategy": "rebalance", "risk_profile": settings.risk_profile,
                          "cycle_interval_minutes": settings.cycle_interval_minutes,
                          "starting_balance": settings.paper.starting_balance, "universe": "rebalance targets",
                          "members": [], "seed": seed, "strategy_settings": _params("rebalance", settings)},
        equity=equity, trades=[], positions=[], open_at_end=[], metrics=metrics, monte_carlo=mc, buy_and_hold=bh,
        decisions=decisions, fills=fills, votes=[], leaderboard=board,
        member_results={CONSENSUS_ID: MemberResult(CONSENSUS_ID, equity, [], [])}, member_positions={},
        member_decisions={}, counters=counters, timings=timings, notes=notes)

