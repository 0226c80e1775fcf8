"""Backtests of the strategies other than `trend` (`quorum backtest --strategy NAME`).

`trend` is the engine's own `run_backtest` (unchanged). For `grid`, `volatility` and `hybrid` the
bar loop below drives the same functions the paper cycle uses (`pipeline.strategy`):

per decision time t (the engine's clock: a decision sees bars closed by t; market intents fill at
the open of the first bar starting at or after t):
1. every 1h bar that closed since the previous decision, per symbol: resting orders are matched
   (`PaperAccount.match_bar`: entries and take-profits as maker at their limit, stops as taker);
   then each open position: an order-managed one (a grid level) gets funding and the liquidation
   check (`monitor_order_managed_bar`), any other the live exit rules (`tasks.execution.monitor_bar`);
2. candidates: the engine's point-in-time tickers and `select_candidates` (liquidity filters); a
   symbol that fails them gets no new exposure, its existing orders keep running;
3. per symbol: the strategy's `step` on the facts at t (math score and regime from the engine's
   causal score frame, the consensus decision in math mode, the 1h ATR, the strategy's features of
   the last closed bar, the account's positions and orders in the symbol, its previous state);
   `execute_intents` checks each intent with the risk manager and applies it;
4. one equity snapshot at t (open positions marked at the last close).

`rebalance` runs on spot holdings (`SpotAccount`) over the close prices of its target assets; see
`run_rebalance_backtest`.

Results are `BacktestResult`s with the same metrics, Monte Carlo, buy-and-hold, report and
leaderboard (in math mode the leaderboard has the one strategy account).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from agents import math_engine
from agents.strategies import build
from agents.strategies.base import AccountView, Facts, Open
from agents.strategies.rebalance import PortfolioFacts, weights
from backtest.book import Book
from backtest.data import H1_NS, change_4h_pct, decision_times, load_symbol
from backtest.engine import _light_snapshot, run_backtest
from backtest.result import BacktestResult, DecisionRecord
from core.baselines import buy_and_hold, monte_carlo, tracking_error_vs_benchmark, tracking_error_vs_target
from core.errors import ConfigError, DataError
from core.frames import TF_DELTA
from core.leaderboard import CONSENSUS_ID, MemberResult, leaderboard
from core.metrics import compute_metrics, trade_records_from_positions
from core.settings import STRATEGIES, Settings, StrategyParams
from core.types import Action
from exchange.base import TickerInfo
from exchange.money import D
from exchange.paper import PaperAccount
from exchange.spot import SpotAccount
from pipeline import positions as execution
from pipeline.rebalance import execute_rebalance
from pipeline.stages import BTC, decide, select_candidates
from pipeline.strategy import ExecContext, execute_intents, monitor_order_managed_bar
from risk.intents import check_rebalance
from risk.profiles import get_profile

__all__ = ["run_rebalance_backtest", "run_strategy_backtest"]
# the score frame's state_4h -> the Score's trend, as math_engine.score_from_row maps it
_REGIME = {code: trend.value for code, trend in math_engine._TREND_CODE.items()}


def run_strategy_backtest(settings: Settings, source: Any, start: datetime | str, end: datetime | str, *,
                          strategy: str = "trend", symbols: Sequence[str] | None = None, progress: bool = False,
                          seed: int = 0, mc_runs: int = 1000, leaderboard_runs: int = 1000,
                          **kwargs: Any) -> BacktestResult:
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if strategy == "trend":
        return run_backtest(settings, source, start, end, symbols=symbols, progress=progress, seed=seed,
                            mc_runs=mc_runs, leaderboard_runs=leaderboard_runs, **kwargs)
    if kwargs.get("panel_mode", "math") != "math":
        raise ConfigError(f"--strategy {strategy}: backtests of this strategy run in --panel math only")
    if strategy == "rebalance":
        return run_rebalance_backtest(settings, source, start, end, seed=seed, mc_runs=mc_runs,
                                      leaderboard_runs=leaderboard_runs)
    return _run_futures(settings, source, start, end, strategy, symbols, seed, mc_runs, leaderboard_runs)


def _universe(settings: Settings, source: Any, symbols: Sequence[str] | None) -> tuple[list[str], list[str] | None]:
    known = source.symbols()
    requested = list(symbols) if symbols else None
    if requested:
        unknown = [s for s in requested if s not in known]
        if unknown:
            raise DataError(f"unknown symbol(s) {', '.join(unknown)}; the source has: {', '.join(known)}")
        return list(requested), requested
    if settings.universe == "fixed":
        return [s for s in settings.symbols if s in known], None
    return list(known), None


def _run_futures(settings: Settings, source: Any, start: Any, end: Any, strategy: str,
                 symbols: Sequence[str] | None, seed: int, mc_runs: int, leaderboard_runs: int) -> BacktestResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    times = decision_times(start, end, settings.cycle_interval_minutes)
    known = source.symbols()
    universe, requested = _universe(settings, source, symbols)
    ranges = [source.data_range(s) for s in universe]
    lo, hi = min(r[0] for r in ranges), min(r[1] for r in ranges)
    times = times[(times >= lo) & (times <= hi)]
    if len(times) == 0:
        raise DataError(f"no decision time between {start} and {end} inside the replay data of {', '.join(universe)}")
    end_ts = times[-1]
    load = sorted(set(universe) | ({BTC} if BTC in known else set()))
    data = {s: load_symbol(source, s, times, end_ts, settings, timings) for s in load}
    btc4h_at = change_4h_pct(data[BTC]) if BTC in data else [None] * len(times)
    strat = build(strategy, settings)
    feats: dict[str, dict[str, np.ndarray]] = {}
    if strategy == "volatility":
        from agents.strategies.volatility import features

        for s in universe:
            f = features(data[s].h1, settings.strategies.volatility)
            feats[s] = {c: f[c].to_numpy(dtype=float) for c in f.columns}
    prof = get_profile(settings.risk_profile)
    book = Book(CONSENSUS_ID, PaperAccount.from_settings(settings.paper, prof.maintenance_margin_rate), prof)
    acct = book.acct
    spread = float(getattr(source, "spread_pct", settings.replay_spread_pct))
    state: dict[str, Any] = {}
    t_ns = times.as_unit("ns").asi8
    next_bar = {s: int(data[s].n_closed[0]) for s in universe}
    next_fund = {s: int(np.searchsorted(data[s].funding_ns, data[s].open_ns[next_bar[s]] if next_bar[s] < len(
        data[s].open_ns) else np.iinfo(np.int64).max, side="right")) for s in universe}
    decisions: list[DecisionRecord] = []
    counters: dict[str, Any] = {"decision_times": 0, "candidates": 0, "scored": 0, "non_wait_decisions": 0,
                                "approved": 0, "denied_non_wait": 0, "filled": 0, "rejected": 0, "cache_miss": 0,
                                "votes": 0, "valid_votes": 0, "tokens": 0, "llm_cost_usd": 0.0, "intents": {},
                                "resting_fills": 0, "repositions": 0, "handovers": 0}
    deny: dict[str, int] = {}
    t_loop = time.perf_counter()
    for k, t in enumerate(times.to_pydatetime()):
        counters["decision_times"] += 1
        # 1. the bars since the previous decision
        for s in universe:
            sd = data[s]
            j1 = int(sd.n_closed[k])
            fp = next_fund[s]
            for j in range(next_bar[s], j1):
                close_ns = sd.open_ns[j] + H1_NS
                due = []
                while fp < len(sd.funding_ns) and sd.funding_ns[fp] <= close_ns:
                    due.append((sd.funding_ts[fp], float(sd.funding_rate[fp])))
                    fp += 1
                t_open = pd.Timestamp(int(sd.open_ns[j]), tz="UTC")
                o, h, lw, c = float(sd.o[j]), float(sd.h[j]), float(sd.lo[j]), float(sd.c[j])
                if acct.orders:
                    counters["resting_fills"] += len(acct.match_bar(s, o, h, lw, c,
                                                                    (t_open + pd.Timedelta(hours=1)).to_pydatetime()))
                for pos in acct.open_positions():
                    if pos.symbol != s:
                        continue
                    if pos.extra.get("managed") == "orders":
                        monitor_order_managed_bar(acct, pos.id, t_open, o, h, lw, c, due)
                    elif pos.opened_at <= t_open.to_pydatetime():
                        execution.monitor_bar(acct, pos.id, t_open, o, h, lw, c, due, prof, atr=float(sd.atr[j]),
                                              qty_step=sd.limits.qty_step)
            next_bar[s], next_fund[s] = max(next_bar[s], j1), fp
        # 2. candidates (liquidity filters)
        tickers: dict[str, TickerInfo] = {}
        for s in universe:
            sd = data[s]
            n = int(sd.n_closed[k])
            if n == 0 or sd.open_ns[n - 1] < sd.futures_start_ns:
                continue
            last = float(sd.c[n - 1])
            half = last * spread / 200
            tickers[s] = TickerInfo(s, last, last - half, last + half, float(sd.vol24[k]))
        cands, _dropped, _note = select_candidates(settings, tickers, known, requested)
        allowed = {c.symbol for c in cands}
        counters["candidates"] += len(cands)
        # 3. the strategy per symbol
        prices = book.marks(data, k)
        account = None
        btc4h: float | None = None
        btc_done = False
        for s in universe:
            if s not in tickers:
                continue
            sd = data[s]
            n = int(sd.n_closed[k])
            tk = tickers[s]
            reg = _REGIME.get(int(sd.columns["state_4h"][k]), "RANGE") if sd.columns is not None else "RANGE"
            fe = {c: float(a[n - 1]) for c, a in feats[s].items()} if s in feats else {}
            mine = [p for p in acct.open_positions() if p.symbol == s]
            # the Score (and the consensus decision) only where the strategy reads them: the trend side of
            # hybrid, and a volatility entry (its risk check); the grid reads the regime only
            need = sd.frame is not None and (
                (strategy == "hybrid" and reg != "RANGE")
                or (strategy == "volatility" and not mine and strat.signal(fe, reg)[0] is not Action.WAIT))
            score = sd.score(k, settings.signal) if need else None
            counters["scored"] += score is not None
            dec = decide(s, t, [], score, settings) if score is not None else None
            atr = float(sd.atr[n - 1]) if n else math.nan
            if account is None:
                account = book.account_state(t, float(acct.equity(prices)))
            eq = float(acct.equity(prices))
            view = AccountView(eq, float(acct.balance), tuple(mine), tuple(acct.open_orders(s)))
            facts = Facts(s, t, tk.last, tk.bid, tk.ask, view, score=score, decision=dec,
                          atr_1h=atr if math.isfinite(atr) else None, features=fe, qty_step=sd.limits.qty_step,
                          price_tick=sd.limits.price_tick, state=state.get(s), regime=reg)
            st = strat.step(facts)
            state[s] = st.state
            counters["repositions"] += st.note.startswith("grid repositioned")
            counters["handovers"] += st.note.startswith("handover")
            if not st.intents:
                continue
            i = int(np.searchsorted(sd.open_ns, int(t_ns[k]), side="left"))
            fill = (pd.Timestamp(int(sd.open_ns[i]), tz="UTC").to_pydatetime(), float(sd.o[i])) if i < len(
                sd.open_ns) else (None, None)
            has_open = any(isinstance(x, Open) for x in st.intents)
            if has_open and not btc_done:
                btc_done = True
                if BTC in data and data[BTC].n_closed[k] > 0:
                    btc4h = btc4h_at[k]  # as pipeline.stages.btc_change_4h_pct (backtest.data.change_4h_pct)
            ctx = ExecContext(t, strategy, account, sd.limits, prof, settings, fill_ts=fill[0], fill_price=fill[1],
                              score=score, snapshot=_light_snapshot(sd, k, t, spread), btc_4h=btc4h,
                              track=book.track_record(t) if has_open else None, allow_entries=s in allowed)
            for r in execute_intents(acct, st.intents, ctx):
                key = f"{type(r.intent).__name__.lower()}_{r.status}"
                counters["intents"][key] = counters["intents"].get(key, 0) + 1
                if isinstance(r.intent, Open):
                    counters["non_wait_decisions"] += 1
                    counters["approved"] += r.status in ("filled", "rejected")
                    counters["filled"] += r.status == "filled"
                    counters["rejected"] += r.status == "rejected"
                    counters["denied_non_wait"] += r.status == "denied"
                if r.status == "denied":
                    for why in r.reasons:
                        kk = re.sub(r"\d[\d.,]*", "#", why.split("(")[0]).strip()[:90]
                        deny[kk] = deny.get(kk, 0) + 1
                if isinstance(r.intent, Open) or r.status in ("denied", "rejected"):
                    decisions.append(DecisionRecord(t, s, _label(r.intent), score.final if score else 0.0,
                                                    dec.combined_score if dec else 0.0, 0,
                                                    r.status not in ("denied", "rejected"), tuple(r.reasons),
                                                    r.status == "filled"))
        book.snapshot(t, book.marks(data, k))
    timings["loop"] = time.perf_counter() - t_loop
    counters["deny_reasons"] = dict(sorted(deny.items(), key=lambda kv: (-kv[1], kv[0]))[:15])
    counters["orders"] = _order_counts(acct)
    return _finish(settings, strategy, times, data, universe, book, decisions, counters, timings, t0, seed, mc_runs,
                   leaderboard_runs, spread)


def _label(intent: Any) -> str:
    side = getattr(intent, "side", None) or getattr(getattr(intent, "order", None), "side", None)
    return f"{type(intent).__name__.upper()} {getattr(side, 'value', side) or ''}".strip()


def _order_counts(acct: PaperAccount) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in acct.order_log:
        out[r["status"]] = out.get(r["status"], 0) + 1
    out["resting_at_end"] = len(acct.orders)
    return out


def _finish(settings: Settings, strategy: str, times: pd.DatetimeIndex, data: dict[str, Any], universe: list[str],
            book: Book, decisions: list[DecisionRecord], counters: dict[str, Any], timings: dict[str, float],
            t0: float, seed: int, mc_runs: int, leaderboard_runs: int, spread: float) -> BacktestResult:
    start_used, end_used = times[0].to_pydatetime(), times[-1].to_pydatetime()
    opening = ((times[0] - pd.Timedelta(minutes=settings.cycle_interval_minutes)).to_pydatetime(),
               float(settings.paper.starting_balance))
    equity = book.equity_series(opening)
    trades = trade_records_from_positions(book.acct.positions.values())
    marks = book.marks(data, len(times) - 1)
    open_end = [{"position_id": p.id, "symbol": p.symbol, "side": p.side.value, "entry": p.entry,
                 "qty_open": str(p.qty_open), "mark": marks.get(p.symbol, p.entry),
                 "unrealised": float((marks.get(p.symbol, p.entry) - p.entry) * float(p.qty_open) * p.side.sign),
                 "opened_at": p.opened_at, "note": "still open at the end: marked to market, not closed"}
                for p in book.acct.open_positions()]
    # the window opens at the curve's opening point (the starting balance before the first decision's fills)
    metrics = compute_metrics(equity, trades, opening[0], end_used, book.acct.open_positions())
    mc = monte_carlo([tr.pnl for tr in trades], settings.paper.starting_balance, runs=mc_runs, seed=seed)
    bh = {}
    for s in universe:
        sd = data[s]
        close = pd.Series(sd.c, index=pd.DatetimeIndex(sd.open_ns + H1_NS, tz="UTC"))
        bh[s] = buy_and_hold(close[close.index >= pd.Timestamp(sd.futures_start_ns, tz="UTC")], start_used, end_used)
    board = leaderboard([MemberResult(CONSENSUS_ID, equity, trades, [])], opening[0], end_used,
                        runs=leaderboard_runs, seed=seed)
    fills = [{"time": f.ts, "symbol": f.symbol, "side": f.side.value, "kind": f.kind, "fill_price": float(f.price),
              "qty": str(f.qty), "fee": float(f.fee), "reason": f.reason} for f in book.acct.fills]
    timings["total"] = time.perf_counter() - t0
    notes = [f"strategy {strategy}: {_describe(strategy, settings.strategies)}",
             "replay: no open interest and no news in the bundled history (both components neutral)",
             f"replay: spread is an estimate ({spread:g}%); market intents fill at the next bar's open with "
             f"{settings.paper.slippage_bps:g} bps slippage and {settings.paper.taker_fee:.4%} taker fee; resting "
             f"limit orders fill at their price as maker ({settings.paper.maker_fee:.4%}) when a bar trades through "
             "them (path open-low-high-close on an up bar, open-high-low-close on a down bar)"]
    if open_end:
        notes.append(f"{len(open_end)} position(s) still open at the end: marked to market at the last close, "
                     "not closed (not in the trade list)")
    return BacktestResult(
        start=start_used, end=end_used, panel_mode="math", symbols=universe,
        settings_summary={"strategy": strategy, "risk_profile": settings.risk_profile,
                          "cycle_interval_minutes": settings.cycle_interval_minutes,
                          "starting_balance": settings.paper.starting_balance, "universe": settings.universe,
                          "members": [], "seed": seed, "strategy_settings": _params(strategy, settings.strategies)},
        equity=equity, trades=trades, positions=list(book.acct.positions.values()), open_at_end=open_end,
        metrics=metrics, monte_carlo=mc, buy_and_hold=bh, decisions=decisions, fills=fills, votes=[],
        leaderboard=board, member_results={CONSENSUS_ID: MemberResult(CONSENSUS_ID, equity, trades, [])},
        member_positions={}, member_decisions={}, counters=counters, timings=timings, notes=notes)


def _next_open(idx: np.ndarray, val: np.ndarray, t_ns: int) -> tuple[datetime, float] | None:
    """The open of the first bar starting at or after t (the first price after the decision)."""
    i = int(np.searchsorted(idx, t_ns, side="left"))
    return None if i >= len(idx) else (pd.Timestamp(int(idx[i]), tz="UTC").to_pydatetime(), float(val[i]))


def _params(strategy: str, p: StrategyParams) -> dict[str, Any]:
    if strategy == "hybrid":
        return {"grid": p.grid.model_dump(), "hybrid": p.hybrid.model_dump()}
    return getattr(p, strategy).model_dump()


def _describe(strategy: str, p: StrategyParams) -> str:
    return ", ".join(f"{k}={v}" for k, v in _flat(_params(strategy, p)).items())


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
    first = max(c.index[0] for c in closes.values())
    last_open = min(o.index[-1] for o in opens.values())
    times = times[(times >= first) & (times <= last_open)]
    if len(times) == 0:
        raise DataError(f"rebalance: no decision time between {start} and {end} inside the history of "
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
    notes = [f"strategy rebalance: {_describe('rebalance', settings.strategies)}",
             f"tracking error vs target: RMS {te_target['rms']:.2%} of weight, largest drift {te_target['max_drift']:.2%}, "
             f"mean largest drift {te_target['mean_drift']:.2%}; vs buy-and-hold of the start allocation: "
             f"{te_bh:.2%} annualised",
             "prices: each asset's spot bars in the replay store, then its perpetual's bars from "
             + ", ".join(f"{a} {ts:%Y-%m-%d}" for a, ts in spot_end.items())
             + " (the bundled spot history ends there); no funding on spot holdings",
             f"spot fee {cfg.fee:.3%} and {cfg.slippage_bps:g} bps slippage on every trade, at the next bar's open"]
    if tilt_data:
        notes.append(f"panel tilt up to {cfg.panel_tilt_pct:g} points per asset from the math-mode decisions "
                     "(no models in a backtest of this strategy)")
    timings = {"total": time.perf_counter() - t0}
    return BacktestResult(
        start=start_used, end=end_used, panel_mode="math", symbols=list(syms.values()),
        settings_summary={"strategy": "rebalance", "risk_profile": settings.risk_profile,
                          "cycle_interval_minutes": settings.cycle_interval_minutes,
                          "starting_balance": settings.paper.starting_balance, "universe": "rebalance targets",
                          "members": [], "seed": seed, "strategy_settings": _params("rebalance", settings.strategies)},
        equity=equity, trades=[], positions=[], open_at_end=[], metrics=metrics, monte_carlo=mc, buy_and_hold=bh,
        decisions=decisions, fills=fills, votes=[], leaderboard=board,
        member_results={CONSENSUS_ID: MemberResult(CONSENSUS_ID, equity, [], [])}, member_positions={},
        member_decisions={}, counters=counters, timings=timings, notes=notes)

