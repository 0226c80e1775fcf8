"""Backtests of the strategies other than `trend` (`quorum backtest --strategy NAME`).

`trend` is the engine's own `run_backtest` (unchanged). For `grid`, `volatility` and `hybrid` the
bar loop below drives the same functions the paper cycle uses (`pipeline.strategy`):

per decision time t (the engine's clock: a decision sees bars closed by t; market intents fill at
the open of the first bar starting at or after t):
1. every 1h bar that closed since the previous decision, per symbol: resting orders are matched
   (`PaperAccount.match_bar`: entries and take-profits as maker at their limit, stops as taker);
   then each open position: an order-managed one (a grid level) gets funding and the liquidation
   check (`monitor_order_managed_bar`), any other the live exit rules (`exchange.walk.monitor_bar`);
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
from typing import Any

import numpy as np
import pandas as pd

from agents import math_engine
from agents.strategies import build
from agents.strategies.base import AccountView, Facts, Open
from backtest.book import Book
from backtest.data import H1_NS, NoDecisionTime, change_4h_pct, decision_times, load_symbol
from backtest.engine import _light_snapshot, _range_notes, run_backtest
from backtest.rebalance_backtest import _describe, _params, run_rebalance_backtest
from backtest.result import BacktestResult, DecisionRecord
from core.baselines import buy_and_hold, monte_carlo
from core.errors import ConfigError, DataError
from core.leaderboard import CONSENSUS_ID, MemberResult, leaderboard
from core.metrics import compute_metrics, trade_records_from_positions
from core.settings import STRATEGIES, Settings
from core.types import Action
from exchange.base import TickerInfo
from exchange.paper import PaperAccount
from exchange.walk import monitor_bar
from pipeline.stages import BTC, decide, select_candidates
from pipeline.strategy import ExecContext, execute_intents, monitor_order_managed_bar
from risk.profiles import get_profile

__all__ = ["WHY_MATH", "run_rebalance_backtest", "run_strategy_backtest"]
# the strategies whose backtest asks the panel (--panel cache|live): hybrid's trend half reads the consensus
PANEL_STRATEGIES = ("hybrid",)
# why the others backtest in math mode only (said with the error)
WHY_MATH = ("only hybrid's trend half reads the panel's consensus in a backtest; grid and volatility decide from "
            "prices and the regime alone (the panel would change nothing), and rebalance's tilt reads the "
            "math-mode decisions in a backtest (the paper cycle tilts by the panel): use --panel math")
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
    panel_mode = kwargs.get("panel_mode", "math")
    if panel_mode != "math" and strategy not in PANEL_STRATEGIES:
        raise ConfigError(f"--strategy {strategy}: --panel {panel_mode}: {WHY_MATH}")
    if strategy == "rebalance":
        return run_rebalance_backtest(settings, source, start, end, seed=seed, mc_runs=mc_runs,
                                      leaderboard_runs=leaderboard_runs)
    panel = None
    if panel_mode != "math":
        from backtest.panel import panel_setup

        panel = (panel_mode, *panel_setup(settings, panel_mode, kwargs.get("members"), kwargs.get("providers"),
                                          kwargs.get("cache")), kwargs.get("cache"))
    return _run_futures(settings, source, start, end, strategy, symbols, seed, mc_runs, leaderboard_runs, panel)


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
                 symbols: Sequence[str] | None, seed: int, mc_runs: int, leaderboard_runs: int,
                 panel: tuple[Any, ...] | None = None) -> BacktestResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    times = decision_times(start, end, settings.cycle_interval_minutes)
    known = source.symbols()
    universe, requested = _universe(settings, source, symbols)
    ranges = {s: source.data_range(s) for s in universe}
    # as the trend engine (backtest/engine.py): from the first symbol's data to the end of the longest
    # history (or --to); each symbol runs to its own end, then its resting orders are cancelled and its
    # positions closed at its last close (reason data_end), and the report says so
    lo, hi = min(r[0] for r in ranges.values()), max(r[1] for r in ranges.values())
    req_start, req_end = (times[0], times[-1]) if len(times) else (pd.Timestamp(start), pd.Timestamp(end))
    times = times[(times >= lo) & (times <= hi)]
    if len(times) == 0:
        raise NoDecisionTime(f"no decision time between {start} and {end} inside the replay data of "
                             f"{', '.join(universe)}")
    range_notes = _range_notes(req_start, req_end, times, ranges)
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
    ended: set[str] = set()  # symbols whose history has ended (after their last bar: no candidate, no orders)
    all_votes: list[tuple[datetime, Any]] = []
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
                        monitor_bar(acct, pos.id, t_open, o, h, lw, c, due, prof, atr=float(sd.atr[j]),
                                              qty_step=sd.limits.qty_step)
            next_bar[s], next_fund[s] = max(next_bar[s], j1), fp
            if not sd.has_fill[k] and next_bar[s] >= len(sd.open_ns) and s not in ended:
                ended.add(s)
                _end_symbol(acct, s, sd)
        # 2. candidates (liquidity filters)
        tickers: dict[str, TickerInfo] = {}
        for s in universe:
            sd = data[s]
            n = int(sd.n_closed[k])
            if n == 0 or sd.open_ns[n - 1] < sd.futures_start_ns or s in ended:
                continue
            last = float(sd.c[n - 1])
            half = last * spread / 200
            tickers[s] = TickerInfo(s, last, last - half, last + half, float(sd.vol24[k]))
        cands, _dropped, _note = select_candidates(settings, tickers, known, requested)
        allowed = {c.symbol for c in cands}
        counters["candidates"] += len(cands)
        # 3. the strategy per symbol (with a panel: hybrid's trend-regime symbols are asked first, in one
        # prompt, as the live cycle asks about its candidates)
        prices = book.marks(data, k)
        asked = _ask_panel(panel, settings, source, universe, tickers, data, k, t, acct, counters, all_votes) \
            if panel is not None else {}
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
            if s in asked:
                score, dec = asked[s]
            else:
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
    notes = list(range_notes)
    if panel is not None:
        notes = panel[4] + [f"panel {panel[0]}: {len(panel[1])} member(s) asked about each trend-regime symbol of "
                            "hybrid (its grid half reads no panel); the leaderboard has the consensus account only "
                            "(no shadow accounts in a strategy backtest)"] + notes
        if counters.get("panel_stopped"):
            notes.append(counters["panel_stopped"])
    res = _finish(settings, strategy, times, data, universe, book, decisions, counters, timings, t0, seed, mc_runs,
                  leaderboard_runs, spread, notes)
    if panel is not None:
        from dataclasses import replace as _replace

        res = _replace(res, panel_mode=panel[0], votes=all_votes)
    return res


def _ask_panel(panel: tuple[Any, ...], settings: Settings, source: Any, universe: Sequence[str],
               tickers: dict[str, TickerInfo], data: dict[str, Any], k: int, t: datetime, acct: PaperAccount,
               counters: dict[str, Any], all_votes: list[tuple[datetime, Any]]) -> dict[str, tuple[Any, Any]]:
    """hybrid with a panel: the Score and the consensus decision of each symbol in a trend regime at t, the
    panel asked once about all of them with the live cycle's prompt (backtest/panel.py); the math score
    alone once the run's token budget is spent."""
    from agents.prompt import build_payload
    from backtest.panel import no_news_note_for, panel_votes
    from core.types import NewsReport

    mode, members, providers, budget, _notes, cache = panel
    scores = {}
    for s in universe:
        sd = data[s]
        if s not in tickers or sd.frame is None or sd.columns is None:
            continue
        if _REGIME.get(int(sd.columns["state_4h"][k]), "RANGE") != "RANGE":
            scores[s] = sd.score(k, settings.signal)
    counters["scored"] += len(scores)
    run_budget = settings.token_budget_day
    votes: list[Any] = []
    if scores and members and not (mode == "live" and run_budget and counters["tokens"] >= run_budget):
        snaps = {}
        for s in scores:
            try:
                snaps[s] = source.snapshot(s, t)
            except DataError:
                continue
        note = no_news_note_for(settings)
        news = {s: NewsReport(s, t, available=False, note=note) for s in snaps}
        payload = build_payload(snaps, scores, news, acct.open_positions(), settings, as_of=t)
        votes = panel_votes(mode, members, providers, list(snaps), payload, cache, budget, t) if snaps else []
        for v in votes:
            all_votes.append((t, v))
            counters["votes"] += 1
            counters["valid_votes"] += int(v.valid)
            counters["cache_miss"] += int(v.abstain_reason == "cache_miss")
            counters["tokens"] += v.input_tokens + v.output_tokens
            counters["llm_cost_usd"] += v.cost_usd
        if budget is not None:
            budget.new_cycle()
    elif scores and members and "panel_stopped" not in counters:
        counters["panel_stopped"] = (f"token budget of {run_budget:,} tokens spent by {t.isoformat()}: later "
                                     "decisions by the math score alone")
    return {s: (sc, decide(s, t, [v for v in votes if v.symbol == s], sc, settings)) for s, sc in scores.items()}


def _end_symbol(acct: PaperAccount, symbol: str, sd: Any) -> None:
    """The history of `symbol` has ended and its last bar was walked: its resting orders are cancelled and
    its open positions closed at the last close (a market order: slippage and taker fee), reason data_end,
    as the trend engine's `Book.close_ended`."""
    ts = pd.Timestamp(int(sd.open_ns[-1]) + H1_NS, tz="UTC").to_pydatetime()
    for o in acct.open_orders(symbol):
        if not o.reduce_only:
            acct.cancel_order(o.id, ts, f"history of {symbol} ends at {ts.isoformat()}")
    for pos in acct.open_positions():
        if pos.symbol == symbol:
            acct.close(pos.id, pos.qty_open, float(sd.c[-1]), ts, reason=f"history of {symbol} ends at "
                       f"{ts.isoformat()}", kind="data_end")
    for o in acct.open_orders(symbol):  # the reduce-only orders of positions that closed another way
        acct.cancel_order(o.id, ts, "position closed")


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
            t0: float, seed: int, mc_runs: int, leaderboard_runs: int, spread: float,
            range_notes: Sequence[str] = ()) -> BacktestResult:
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
    notes = [f"strategy {strategy}: {_describe(strategy, settings)}",
             "replay: no open interest and no news in the bundled history (both components neutral)",
             f"replay: spread is an estimate ({spread:g}%); market intents fill at the next bar's open with "
             f"{settings.paper.slippage_bps:g} bps slippage and {settings.paper.taker_fee:.4%} taker fee; resting "
             f"limit orders fill at their price as maker ({settings.paper.maker_fee:.4%}) when a bar trades through "
             "them (path open-low-high-close on an up bar, open-high-low-close on a down bar)"]
    notes += list(range_notes)
    if open_end:
        notes.append(f"{len(open_end)} position(s) still open at the end: marked to market at the last close, "
                     "not closed (not in the trade list)")
    return BacktestResult(
        start=start_used, end=end_used, panel_mode="math", symbols=universe,
        settings_summary={"strategy": strategy, "risk_profile": settings.risk_profile,
                          "cycle_interval_minutes": settings.cycle_interval_minutes,
                          "starting_balance": settings.paper.starting_balance, "universe": settings.universe,
                          "members": [], "seed": seed, "strategy_settings": _params(strategy, settings)},
        equity=equity, trades=trades, positions=list(book.acct.positions.values()), open_at_end=open_end,
        metrics=metrics, monte_carlo=mc, buy_and_hold=bh, decisions=decisions, fills=fills, votes=[],
        leaderboard=board, member_results={CONSENSUS_ID: MemberResult(CONSENSUS_ID, equity, trades, [])},
        member_positions={}, member_decisions={}, counters=counters, timings=timings, notes=notes)
