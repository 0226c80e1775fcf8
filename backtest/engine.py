"""Backtest engine: replay a date range bar by bar through the live cycle's own functions.

Plain functions, no Prefect inside the loop (the `backtest` flow wraps ONE call of `run_backtest`).

Simulated clock. Decision times are `start, start + interval, ..., end` with the interval of the
settings (`cycle_interval_minutes`, 60 by default). A decision at time t sees only bars whose CLOSE
is <= t (open + 1h <= t), exactly like `ReplaySource.snapshot(symbol, t)`; an entry fills at the OPEN
of the first bar starting at or after t (`ReplaySource.price_after`), never at the decision bar's
close. Per decision time, in the live cycle's order (flows/trading_cycle.py):

1. monitor: every open position is walked through the bars that closed since its last check with
   `exchange.walk.monitor_bar` (funding at each funding time, `risk.exits.step`, liquidation), the
   very function the live position monitor uses;
2. candidates: `pipeline.stages.select_candidates` on point-in-time tickers (last close, estimated
   spread, 24 h quote volume of the bars closed by t, as `ReplaySource.tickers(t)` computes them);
3. scores: rows of `agents.math_engine.score_frames` computed ONCE per symbol (vectorised and causal:
   row t uses bars closed by t only), turned into a `Score` by `score_from_row`, the same function the
   live `score_snapshot` ends with. In `math` mode a row whose math signal is WAIT cannot trade (no
   panel, so the consensus falls back to the math signal): its Score is not materialised; its final
   score comes from `math_engine.finalize`, the function `score_from_row` uses (tested equal);
4. panel: `math` none; `cache` `agents.panel.decide` against the response cache only (a miss
   abstains with reason "cache_miss" and is counted); `live` the models themselves, with a run-wide
   token budget that stops the run cleanly when spent (the result says where);
5. consensus + daily veto `pipeline.stages.decide`, risk `pipeline.stages.risk_verdict` (a light snapshot with
   bid/ask/funding/last of time t, which is all the risk step reads from a snapshot), BTC 4 h change
   as `pipeline.stages.btc_change_4h_pct` computes it (`backtest.data.change_4h_pct`, over arrays, tested
   equal), account state via `risk.manager.account_state_from_history`
   from the per-step equity snapshots (breakers exactly as live; the history is compressed to an
   equivalent subsequence so a year stays fast, see `EquityHistory`), later candidates see planned
   positions (`pipeline.positions.with_planned`);
6. fills: `PaperAccount.open(plan, price_after(symbol, t))`, fees and slippage of the settings; then
   one equity snapshot at t.

Positions still open at `end` are marked to market at the last close (NOT closed): the equity curve
includes their unrealised P&L, the trade list does not; `BacktestResult.open_at_end` lists them.

Model leaderboard: each panel member gets a shadow PaperAccount trading its own valid LONG/SHORT votes
on the same snapshots through the same risk function and fills; the consensus account is the main
one. `core.leaderboard.leaderboard` ranks them. In `math` mode there are no members.

Deterministic: no wall clock, no randomness in the loop (the Monte Carlo uses `seed`); the same
inputs give identical decisions, fills, trades and equity. (Vote latencies measured by the panel are
wall time and are reported, not used in any decision.)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from backtest.book import Book
from backtest.data import H1_NS, NoDecisionTime, SymbolData, change_4h_pct, decision_times, load_symbol
from backtest.panel import no_news_note_for, panel_setup, panel_votes
from backtest.result import BacktestResult, DecisionRecord
from core.baselines import buy_and_hold, monte_carlo
from core.errors import DataError
from core.frames import TF_DELTA, to_utc
from core.leaderboard import CONSENSUS_ID, MemberResult, VoteOutcome, leaderboard
from core.metrics import TradeRecord, compute_metrics, trade_records_from_positions
from core.settings import PanelMember, Settings
from core.types import Action, Decision, MarketSnapshot, NewsReport, Position, Score, Vote
from exchange.base import TickerInfo
from exchange.paper import PaperAccount
from pipeline import positions as pos_fns
from pipeline.stages import BTC, daily_veto, decide, member_decision, risk_verdict, select_candidates
from risk.manager import AccountState
from risk.profiles import get_profile

PanelMode = str  # "math" | "cache" | "live"
WAIT_REASONS = ("decision is WAIT",)
PANEL_MODES = ("math", "cache", "live")

__all__ = ["PANEL_MODES", "run_backtest"]


# ------------------------------------------------------------------------------------------------
# run


def _progress(enabled: bool, total: int, label: str) -> Any:
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                 transient=False)
    p.start()
    p.add_task(label, total=total, info="")
    return p


def run_backtest(
    settings: Settings,
    source: Any,
    start: datetime | str,
    end: datetime | str,
    *,
    panel_mode: str = "math",
    symbols: Sequence[str] | None = None,
    progress: bool = True,
    cache: Any = None,
    seed: int = 0,
    providers: Mapping[str, Any] | None = None,
    members: Sequence[PanelMember] | None = None,
    token_budget: int | None = None,
    mc_runs: int = 1000,
    leaderboard_runs: int = 1000,
) -> BacktestResult:
    """Replay [start, end] (decision times, UTC) through the live cycle's functions; see the module doc.

    `panel_mode`: "math" (no models), "cache" (response cache only; needs `cache`), "live" (calls the
    models; `providers` maps member id -> provider, default built from the environment; `token_budget`
    caps the tokens of the whole run, default `settings.token_budget_day`). `members` defaults to
    `settings.panel`. `symbols` restricts the universe (default: the settings' universe).
    """
    if panel_mode not in PANEL_MODES:
        raise ValueError(f"panel mode {panel_mode!r}: expected one of {', '.join(PANEL_MODES)}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    times = decision_times(start, end, settings.cycle_interval_minutes)
    known = source.symbols()
    requested = list(symbols) if symbols else None
    if requested:
        unknown = [s for s in requested if s not in known]
        if unknown:
            raise DataError(f"unknown symbol(s) {', '.join(unknown)}; the source has: {', '.join(known)}")
        universe = list(requested)
    elif settings.universe == "fixed":
        universe = [s for s in settings.symbols if s in known]
    else:
        universe = list(known)
    ranges = {s: source.data_range(s) for s in universe}
    # from the first symbol with a futures bar (a symbol without data yet is simply not a candidate) to
    # the last bar of the longest history: each symbol runs to its own end (after its last bar it is no
    # longer a candidate and a position in it is closed at its last close), and the run says so
    lo, hi = min(r[0] for r in ranges.values()), max(r[1] for r in ranges.values())
    last_close = hi + TF_DELTA["1h"]
    req_start, req_end = (times[0], times[-1]) if len(times) else (to_utc(start), to_utc(end))
    times = times[(times >= lo) & (times <= hi)]  # hi: the last bar's open, so every decision has a fill bar
    if len(times) == 0:
        raise NoDecisionTime(f"no decision time between {req_start.isoformat()} and {req_end.isoformat()} inside "
                             f"the replay data of {', '.join(universe)} ({lo.isoformat()} .. {last_close.isoformat()})")
    range_notes = _range_notes(req_start, req_end, times, ranges)
    end_ts = times[-1]
    load = sorted(set(universe) | ({BTC} if BTC in known else set()))
    data = {s: load_symbol(source, s, times, end_ts, settings, timings) for s in load}

    btc4h_at = change_4h_pct(data[BTC]) if BTC in data else [None] * len(times)
    prof = get_profile(settings.risk_profile)
    mm = prof.maintenance_margin_rate
    main = Book(CONSENSUS_ID, PaperAccount.from_settings(settings.paper, mm), prof)
    panel_members, providers, budget, run_notes = panel_setup(settings, panel_mode, members, providers, cache)
    run_budget = token_budget if token_budget is not None else settings.token_budget_day
    no_news_note = no_news_note_for(settings) if panel_members else ""
    shadows = {m.id: Book(m.id, PaperAccount.from_settings(settings.paper, mm), prof) for m in panel_members}
    books = [main, *shadows.values()]

    decisions: list[DecisionRecord] = []
    member_decisions: dict[str, list[DecisionRecord]] = {mid: [] for mid in shadows}
    all_votes: list[tuple[datetime, Vote]] = []
    member_outcomes: dict[str, list[tuple[datetime, Vote]]] = {m.id: [] for m in panel_members}
    cons_calls: list[tuple[int, str, Action, float]] = []  # (k, symbol, action, confidence) for the leaderboard
    counters: dict[str, Any] = {"decision_times": 0, "candidates": 0, "scored": 0, "non_wait_decisions": 0,
                                "approved": 0, "denied_non_wait": 0, "filled": 0, "rejected": 0,
                                "cache_miss": 0, "votes": 0, "valid_votes": 0, "tokens": 0, "llm_cost_usd": 0.0}
    deny_reasons: dict[str, int] = {}
    stopped: str | None = None
    spread = float(getattr(source, "spread_pct", settings.replay_spread_pct))
    cand_at = fixed_candidates(settings, universe, data, spread, requested)
    py_times = list(times.to_pydatetime())
    prog = _progress(progress, len(times), f"backtest {panel_mode}")
    t_loop = time.perf_counter()
    tokens_used = 0
    panel_log = logging.getLogger("agents.panel")
    panel_level = panel_log.level
    if panel_mode == "cache":  # a miss is expected and counted: not one warning per member per bar
        panel_log.setLevel(logging.ERROR)
    try:
        for k, t in enumerate(py_times):
            if budget is not None and run_budget and tokens_used >= run_budget:
                stopped = (f"token budget of {run_budget:,} tokens spent ({tokens_used:,} used): stopped cleanly "
                           f"before {t.isoformat()}")
                break
            counters["decision_times"] += 1
            # 1. monitor (a position whose symbol's history has ended is closed at its last close)
            for b in books:
                b.monitor(data, k)
                b.close_ended(data, k)
            # 2. candidates from point-in-time tickers
            if cand_at is not None:  # a fixed universe: precomputed, equal to select_candidates (tested)
                cand_syms = cand_at[k]
            else:
                tickers: dict[str, TickerInfo] = {}
                for s in universe:
                    sd = data[s]
                    # None: no futures bar closed yet (spot warm-up only), or its history has ended (no bar
                    # to fill at): not a candidate at t
                    last = sd.ticker_last[k]
                    if last is None:
                        continue
                    half = last * spread / 200
                    tickers[s] = TickerInfo(s, last, last - half, last + half, sd.vol24_l[k])
                cand_syms = [c.symbol for c in select_candidates(settings, tickers, known, requested)[0]]
            counters["candidates"] += len(cand_syms)
            # 3. scores
            scores: dict[str, Score] = {}
            for sym in cand_syms:
                sd = data[sym]
                if sd.frame is None:
                    continue
                if panel_mode == "math" and sd.pre_signal[k] == 0:
                    f4 = sd.pre_final_r4[k]
                    decisions.append(DecisionRecord(t, sym, "WAIT", f4, f4, 0, False, WAIT_REASONS))
                    cons_calls.append((k, sym, Action.WAIT, 0.0))
                    continue
                scores[sym] = sd.score(k, settings.signal)
            counters["scored"] += len(scores)
            # 4. panel
            votes: list[Vote] = []
            if panel_members and scores:
                snaps = {}
                for s in scores:
                    try:
                        snaps[s] = source.snapshot(s, t)  # the point-in-time view the live cycle collects
                    except DataError:  # outside the source's common range: no prompt for it this time
                        continue
                from agents.prompt import build_payload

                # exactly as the live cycle builds it (tasks.fanout.run_panel_tasks): same facts, same
                # prompt, same response-cache key
                # (no historical news in a backtest: the same 'unavailable' report the live cycle
                # builds when its news analyst is off)
                news = {s: NewsReport(s, t, available=False, note=no_news_note) for s in snaps}
                payload = build_payload(snaps, scores, news, main.acct.open_positions(), settings, as_of=t)
                votes = panel_votes(panel_mode, panel_members, providers or {}, list(snaps), payload, cache,
                                     budget, t) if snaps else []
                for v in votes:
                    all_votes.append((t, v))
                    member_outcomes.setdefault(v.member_id, []).append((t, v))
                    counters["votes"] += 1
                    counters["valid_votes"] += int(v.valid)
                    counters["cache_miss"] += int(v.abstain_reason == "cache_miss")
                    tokens_used += v.input_tokens + v.output_tokens
                    counters["llm_cost_usd"] += v.cost_usd
                if budget is not None:
                    budget.new_cycle()
            # 5. consensus -> risk -> fills, for the consensus book then each shadow
            sym_decisions = {s: decide(s, t, [v for v in votes if v.symbol == s], sc, settings)
                             for s, sc in scores.items()}
            _trade_book(main, sym_decisions, scores, data, k, t, settings, spread, btc4h_at[k], decisions, counters,
                        deny_reasons, record=True)
            for d in sym_decisions.values():
                cons_calls.append((k, d.symbol, d.action, d.confidence))
            for mid, book in shadows.items():
                mine = {v.symbol: v for v in votes if v.member_id == mid}
                md = {s: daily_veto(member_decision(mine[s], scores[s]), scores[s]) for s in scores if s in mine}
                _trade_book(book, md, scores, data, k, t, settings, spread, btc4h_at[k], member_decisions[mid], None,
                            None, record=True)
            if prog is not None and (k % 24 == 0 or k == len(times) - 1):
                prog.update(prog.task_ids[0], completed=k + 1,
                            info=f"{t:%Y-%m-%d %H:%M} equity {main.curve[-1][1]:,.0f} "
                                 f"fills {counters['filled']}")
    finally:
        panel_log.setLevel(panel_level)
        if prog is not None:
            prog.stop()
    timings["loop"] = time.perf_counter() - t_loop
    t_post = time.perf_counter()
    done_times = times[: counters["decision_times"]]
    end_used = done_times[-1].to_pydatetime() if len(done_times) else times[0].to_pydatetime()
    start_used = times[0].to_pydatetime()
    counters["deny_reasons"] = dict(sorted(deny_reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:15])
    counters["tokens"] = tokens_used

    opening = ((times[0] - pd.Timedelta(minutes=settings.cycle_interval_minutes)).to_pydatetime(),
               float(settings.paper.starting_balance))

    def finish(book: Book) -> tuple[pd.Series, list[TradeRecord], list[dict[str, Any]]]:
        eq = book.equity_series(opening)
        trades = trade_records_from_positions(book.acct.positions.values())
        k_end = len(done_times) - 1
        marks = book.marks(data, k_end) if k_end >= 0 else {}
        open_end = []
        for p in book.acct.open_positions():
            mk = marks.get(p.symbol, p.entry)
            open_end.append({"position_id": p.id, "symbol": p.symbol, "side": p.side.value, "entry": p.entry,
                             "qty_open": str(p.qty_open), "mark": mk,
                             "unrealised": float((mk - p.entry) * float(p.qty_open) * p.side.sign),
                             "opened_at": p.opened_at, "note": "still open at the end: marked to market, not closed"})
        return eq, trades, open_end

    equity, trades, open_end = finish(main)
    # the metrics window opens at the curve's opening point (the starting balance one interval before
    # the first decision): the point AT the first decision is already after its fills, so a window
    # from it would drop the first entry's fees and slippage and start from the wrong equity
    metrics_start = opening[0]
    metrics = compute_metrics(equity, trades, metrics_start, end_used, main.acct.open_positions())
    mc = monte_carlo([tr.pnl for tr in trades], settings.paper.starting_balance, runs=mc_runs, seed=seed)
    bh = {}
    for s in universe:
        sd = data[s]
        close = pd.Series(sd.c, index=pd.DatetimeIndex(sd.open_ns + H1_NS, tz="UTC"))
        close = close[close.index >= pd.Timestamp(sd.futures_start_ns, tz="UTC")]
        bh[s] = buy_and_hold(close, start_used, end_used)

    # leaderboard: the consensus and every member's shadow account
    fwd = _forward_returns(data, done_times)
    results: dict[str, MemberResult] = {}
    none2 = (None, None)  # WAIT is not directional: its forward returns are never read
    cons_votes = [VoteOutcome(a, conf, *(none2 if a is Action.WAIT else fwd(kk, s)), latency_s=None, symbol=s,
                              as_of=py_times[kk]) for kk, s, a, conf in cons_calls]
    results[CONSENSUS_ID] = MemberResult(CONSENSUS_ID, equity, trades, cons_votes)
    member_positions: dict[str, list[Position]] = {}
    k_of = {ts.to_pydatetime(): i for i, ts in enumerate(done_times)}
    for mid, book in shadows.items():
        eq_m, tr_m, _ = finish(book)
        vo = [VoteOutcome.from_vote(v, vt, *fwd(k_of[vt], v.symbol)) for vt, v in member_outcomes.get(mid, [])]
        results[mid] = MemberResult(mid, eq_m, tr_m, vo)
        member_positions[mid] = list(book.acct.positions.values())
    board = leaderboard(list(results.values()), metrics_start, end_used, runs=leaderboard_runs, seed=seed)
    timings["post"] = time.perf_counter() - t_post
    timings["total"] = time.perf_counter() - t0
    notes = [
        "replay: no open interest and no news in the bundled history (both components neutral)",
        f"replay: spread is an estimate ({spread:g}%), fills at the next bar's open with "
        f"{settings.paper.slippage_bps:g} bps slippage and {settings.paper.taker_fee:.4%} taker fee",
    ]
    notes += range_notes + run_notes
    if open_end:
        notes.append(f"{len(open_end)} position(s) still open at the end: marked to market at the last close, "
                     "not closed (not in the trade list)")
    if panel_mode == "cache" and counters["cache_miss"]:
        notes.append(f"{counters['cache_miss']} cache miss(es): those votes abstained (reason cache_miss)")
    if stopped:
        notes.append(stopped)
    return BacktestResult(
        start=start_used, end=end_used, panel_mode=panel_mode, symbols=universe,
        settings_summary={"risk_profile": settings.risk_profile, "cycle_interval_minutes": settings.cycle_interval_minutes,
                          "starting_balance": settings.paper.starting_balance, "universe": settings.universe,
                          "members": [m.id for m in panel_members], "seed": seed},
        equity=equity, trades=trades, positions=list(main.acct.positions.values()), open_at_end=open_end,
        metrics=metrics, monte_carlo=mc, buy_and_hold=bh, decisions=decisions, fills=main.fills, votes=all_votes,
        leaderboard=board, member_results=results, member_positions=member_positions,
        member_decisions=member_decisions, counters=counters,
        timings=timings, stopped_reason=stopped, notes=notes,
    )


def fixed_candidates(settings: Settings, universe: Sequence[str], data: Mapping[str, SymbolData], spread: float,
                     requested: Sequence[str] | None) -> list[list[str]] | None:
    """Per decision time, the candidate symbols of a fixed universe (the configured one, or --symbols):
    what `pipeline.stages.select_candidates` returns on the point-in-time tickers (the universe's order,
    tradable at t, 24 h volume >= the minimum, spread <= the maximum; `agents.scanner.liquidity_reason`
    with the same float operations), over arrays. None for the volume scanner (ranked per time)."""
    if requested:
        order = list(requested)
    elif settings.universe == "fixed":
        order = [s for s in settings.symbols if s in data]
    else:
        return None
    n = len(next(iter(data.values())).ticker_last or [])
    ok_by_sym = []
    for s in order:
        if s not in universe:
            continue
        sd = data[s]
        last = np.array([np.nan if x is None else x for x in sd.ticker_last], dtype=float)
        half = last * spread / 200
        bid, ask = last - half, last + half
        mid = (bid + ask) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            sp = np.where(mid <= 0, 0.0, (ask - bid) / mid * 100.0)
        vol = np.asarray(sd.vol24_l, dtype=float)
        ok = ~np.isnan(last) & ~(vol < settings.min_volume_usd) & ~(sp > settings.max_spread_pct)
        ok_by_sym.append((s, ok.tolist()))
    return [[s for s, ok in ok_by_sym if ok[k]] for k in range(n)]


def _range_notes(req_start: pd.Timestamp, req_end: pd.Timestamp, times: pd.DatetimeIndex,
                 ranges: Mapping[str, tuple[pd.Timestamp, pd.Timestamp]]) -> list[str]:
    """What the run did with the requested range and each symbol's own history (said, never silent)."""
    notes = []
    first, last = times[0], times[-1]
    if req_start < first:
        notes.append(f"--from {req_start.isoformat()} is before the data: the first decision is at {first.isoformat()}")
    if req_end > last:
        notes.append(f"--to {req_end.isoformat()} is beyond the data: the last bar opens at {last.isoformat()}, "
                     f"so the last decision is at {last.isoformat()}")
    for sym, (s_lo, s_hi) in ranges.items():
        if s_hi < last:
            notes.append(f"{sym}: history ends at {(s_hi + TF_DELTA['1h']).isoformat()} (last bar opens at "
                         f"{s_hi.isoformat()}): no candidate after it; a position still open is closed at its "
                         "last close (reason data_end)")
        if s_lo > first:
            notes.append(f"{sym}: history starts later, first decision with a futures bar at {s_lo.isoformat()}")
    return notes


def _light_snapshot(sd: SymbolData, k: int, t: datetime, spread: float) -> MarketSnapshot:
    """What the risk step reads of a snapshot at t: last close, bid/ask (estimated spread), funding."""
    n = int(sd.n_closed[k])
    last = float(sd.c[n - 1])
    half = last * spread / 200
    f = float(sd.funding_at[k])
    return MarketSnapshot(symbol=sd.symbol, as_of=t, candles={}, last=last, bid=last - half, ask=last + half,
                          volume_24h_quote=float(sd.vol24[k]), funding_rate=f if math.isfinite(f) else None)


def _trade_book(book: Book, sym_decisions: Mapping[str, Decision], scores: Mapping[str, Score],
                data: Mapping[str, SymbolData], k: int, t: datetime, settings: Settings, spread: float,
                btc4h: float | None, decisions: list[DecisionRecord] | None, counters: dict[str, Any] | None,
                deny_reasons: dict[str, int] | None, *, record: bool) -> None:
    """Risk and fills of one book at decision time t, then its equity snapshot (as the live cycle)."""
    prices_pre = book.marks(data, k)
    account: AccountState | None = None
    cycle_id = f"backtest-{book.name}-{t:%Y%m%dT%H%M}"
    for sym, d in sym_decisions.items():
        if d.action is Action.WAIT:
            if record and decisions is not None:
                why = ("decision is WAIT",) + (("daily timeframe vetoes",) if "daily timeframe vetoes" in d.reason else ())
                decisions.append(DecisionRecord(t, sym, "WAIT", scores[sym].final, d.combined_score, d.votes_valid,
                                                False, why))
            continue
        if account is None:
            equity_now = float(book.acct.equity(prices_pre))
            account = book.account_state(t, equity_now)
        snap = _light_snapshot(data[sym], k, t, spread)
        v = risk_verdict(d, scores[sym], snap, account, data[sym].limits, settings, btc4h, None,
                         book.track_record(t))
        filled = False
        if v.approved and v.plan is not None:
            res = book.open(v, data[sym], k, t, cycle_id)
            filled = res["status"] == "filled"
            account = pos_fns.with_planned(account, v.plan, t)
            if counters is not None:
                counters["approved"] += 1
                counters["filled" if filled else "rejected"] += 1
        elif counters is not None and deny_reasons is not None:
            counters["denied_non_wait"] += 1
            for r in v.reasons:
                key = r.split(":")[0].split("(")[0].strip()[:60]
                deny_reasons[key] = deny_reasons.get(key, 0) + 1
        if counters is not None:
            counters["non_wait_decisions"] += 1
        if record and decisions is not None:
            decisions.append(DecisionRecord(t, sym, d.action.value, scores[sym].final, d.combined_score,
                                            d.votes_valid, v.approved, tuple(v.reasons), filled))
    book.snapshot(t, book.marks(data, k))


def _forward_returns(data: Mapping[str, SymbolData], times: pd.DatetimeIndex) -> Callable[[int, str], tuple]:
    """fwd(k, symbol) -> (4 h, 24 h) simple returns from decision time k, as
    `core.leaderboard.forward_return` defines them (last close at or before each time), None beyond the data."""
    t_ns = times.as_unit("ns").asi8

    def fwd(k: int, sym: str) -> tuple[float | None, float | None]:
        sd = data.get(sym)
        if sd is None:
            return None, None
        close_ns = sd.open_ns + H1_NS
        out = []
        i0 = int(np.searchsorted(close_ns, t_ns[k], side="right")) - 1
        for hrs in (4, 24):
            t1 = t_ns[k] + hrs * H1_NS
            if i0 < 0 or t1 > close_ns[-1]:
                out.append(None)
                continue
            i1 = int(np.searchsorted(close_ns, t1, side="right")) - 1
            p0, p1 = float(sd.c[i0]), float(sd.c[i1])
            out.append(p1 / p0 - 1.0 if p0 and math.isfinite(p0) and math.isfinite(p1) else None)
        return out[0], out[1]

    return fwd


