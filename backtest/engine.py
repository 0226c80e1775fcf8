"""Backtest engine: replay a date range bar by bar through the live cycle's own functions.

Plain functions, no Prefect inside the loop (the `backtest` flow wraps ONE call of `run_backtest`).

Simulated clock. Decision times are `start, start + interval, ..., end` with the interval of the
settings (`cycle_interval_minutes`, 60 by default). A decision at time t sees only bars whose CLOSE
is <= t (open + 1h <= t), exactly like `ReplaySource.snapshot(symbol, t)`; an entry fills at the OPEN
of the first bar starting at or after t (`ReplaySource.price_after`), never at the decision bar's
close. Per decision time, in the live cycle's order (flows/trading_cycle.py):

1. monitor: every open position is walked through the bars that closed since its last check with
   `tasks.execution.monitor_bar` (funding at each funding time, `risk.exits.step`, liquidation), the
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
   via `pipeline.stages.btc_change_4h_pct`, account state via `risk.manager.account_state_from_history`
   from the per-step equity snapshots (breakers exactly as live; the history is compressed to an
   equivalent subsequence so a year stays fast, see `EquityHistory`), later candidates see planned
   positions (`tasks.execution.with_planned`);
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
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from agents import math_engine
from core.errors import DataError, OrderRejected
from core.frames import TF_DELTA, to_utc
from core.leaderboard import CONSENSUS_ID, LeaderboardRow, MemberResult, VoteOutcome, leaderboard
from core.metrics import (
    Metrics,
    MonteCarloResult,
    TradeRecord,
    buy_and_hold,
    compute_metrics,
    json_safe,
    monte_carlo,
    trade_records_from_positions,
)
from core.settings import PanelMember, Settings
from core.types import Action, Decision, MarketSnapshot, NewsReport, Position, RiskVerdict, Score, Vote
from exchange.base import TickerInfo
from exchange.paper import PaperAccount
from pipeline.stages import BTC, btc_change_4h_pct, daily_veto, decide, risk_verdict, select_candidates
from risk.manager import AccountState, MarketLimits, account_state_from_history
from risk.profiles import RiskProfile, get_profile
from tasks import execution

H1_NS = 3_600_000_000_000
PanelMode = str  # "math" | "cache" | "live"
PANEL_MODES = ("math", "cache", "live")
_SIGNAL_CODE = {Action.LONG: 1, Action.SHORT: -1, Action.WAIT: 0}

__all__ = [
    "BacktestResult",
    "DecisionRecord",
    "EquityHistory",
    "WalkForwardResult",
    "decision_times",
    "run_backtest",
    "walk_forward",
]


# ------------------------------------------------------------------------------------------------
# equity history (breakers) -- an exact, compressed subsequence of the per-step snapshots


class EquityHistory:
    """Per-step equity snapshots, kept so that `account_state_from_history(history.points() + ...)`
    returns exactly what it returns on the FULL list, while staying short over a long backtest.

    Kept: every point from the last snapshot at or before the current week's Monday 00:00 UTC (the
    daily and weekly breakers and the day/week start equity read nothing older); of the older points,
    the all-time peak, the deepest drawdown trough and the running peak before that trough (so the
    drawdown breaker and the peak equity are unchanged). Valid without a manual resume (`reset_at`),
    which a backtest never has.
    """

    def __init__(self) -> None:
        self.recent: list[tuple[datetime, float]] = []
        self._peak: tuple[datetime, float] | None = None  # all-time peak of the folded points
        self._worst: float = 0.0
        self._worst_pair: tuple[tuple[datetime, float], tuple[datetime, float]] | None = None

    def add(self, t: datetime, equity: float) -> None:
        self.recent.append((t, float(equity)))
        week = _week_start(t)
        # keep the last point at or before `week`; fold everything before it
        k = 0
        while k + 1 < len(self.recent) and self.recent[k + 1][0] <= week:
            k += 1
        for p in self.recent[:k]:
            self._fold(p)
        if k:
            del self.recent[:k]

    def _fold(self, p: tuple[datetime, float]) -> None:
        if self._peak is None or p[1] > self._peak[1]:
            self._peak = p
        if self._peak[1] > 0:
            dd = p[1] / self._peak[1] - 1.0
            if dd < self._worst:
                self._worst = dd
                self._worst_pair = (self._peak, p)

    def points(self) -> list[tuple[datetime, float]]:
        old: dict[datetime, float] = {}
        for p in ([self._peak] if self._peak else []) + (list(self._worst_pair) if self._worst_pair else []):
            old[p[0]] = p[1]
        return sorted(old.items()) + self.recent


def _week_start(t: datetime) -> datetime:
    m = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return m - timedelta(days=m.weekday())


# ------------------------------------------------------------------------------------------------
# per-symbol point-in-time arrays


class _Row(dict):
    """A score-frame row as a dict with `.name` (the decision time), read by `score_from_row`."""

    __slots__ = ("name",)


@dataclass
class _SymbolData:
    symbol: str
    open_ns: np.ndarray
    o: np.ndarray
    h: np.ndarray
    lo: np.ndarray
    c: np.ndarray
    qv: np.ndarray  # close * volume
    funding_ns: np.ndarray
    funding_rate: np.ndarray
    funding_ts: list[pd.Timestamp]
    limits: MarketLimits
    h1: pd.DataFrame
    futures_start_ns: int
    frame: pd.DataFrame | None = None  # score frame at the decision times
    columns: dict[str, np.ndarray] | None = None  # the score frame's columns as arrays
    pre_final: np.ndarray | None = None  # final score per decision time (same as Score.final unrounded)
    pre_signal: np.ndarray | None = None  # 1 LONG, -1 SHORT, 0 WAIT
    n_closed: np.ndarray | None = None  # bars closed by each decision time
    vol24: np.ndarray | None = None
    funding_at: np.ndarray | None = None  # last funding rate at or before each decision time (nan: none)
    atr: np.ndarray | None = None  # 1h ATR(14) per bar (known at its close), for the Chandelier exit
    _scores: dict[int, Score] = field(default_factory=dict)

    def score(self, k: int, signal: Any) -> Score:
        s = self._scores.get(k)
        if s is None:
            assert self.columns is not None and self.frame is not None
            row = _Row({c: a[k].item() for c, a in self.columns.items()})
            row.name = self.frame.index[k]
            s = math_engine.score_from_row(self.symbol, row, 0.0, ("oi_missing",), None, signal)
            self._scores[k] = s
        return s


def _load_symbol(source: Any, symbol: str, times: pd.DatetimeIndex, end: pd.Timestamp,
                 settings: Settings, timings: dict[str, float] | None = None) -> _SymbolData:
    timings = timings if timings is not None else {}
    t0 = time.perf_counter()
    hist = source.history(symbol)
    h1 = hist.h1
    # never hand the scorer a bar that closes after `end` (the engine is causal anyway; belt and braces)
    h1 = h1[h1.index + TF_DELTA["1h"] <= end]
    open_ns = hist.h1.index.as_unit("ns").asi8
    cols = hist.h1[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
    fund = hist.funding
    sd = _SymbolData(
        symbol=symbol, open_ns=open_ns, o=cols[:, 0], h=cols[:, 1], lo=cols[:, 2], c=cols[:, 3],
        qv=cols[:, 3] * cols[:, 4], funding_ns=pd.DatetimeIndex(fund.index).as_unit("ns").asi8, funding_rate=fund.to_numpy(dtype=float),
        funding_ts=list(fund.index), limits=MarketLimits.from_rules(source.market_rules(symbol)), h1=hist.h1,
        futures_start_ns=pd.Timestamp(hist.futures_start).as_unit("ns").value,
        atr=math_engine.hourly_atr(hist.h1),
    )
    from core.frames import resample

    t1 = time.perf_counter()
    timings["load"] = timings.get("load", 0.0) + (t1 - t0)
    frames = {tf: resample(h1, tf) for tf in ("1h", "4h", "1d")}
    t_ns = times.as_unit("ns").asi8
    sd.n_closed = np.searchsorted(open_ns + H1_NS, t_ns, side="right")
    try:
        series = math_engine.score_frames(frames, times, settings.signal)
    except DataError:
        series = None
    n = len(times)
    if series is not None:
        fr = series.frame
        sd.frame = fr
        sd.columns = {c: fr[c].to_numpy() for c in fr.columns}
        tech = fr["tech"].to_numpy(dtype=float)
        tw = fr["tech_weight"].to_numpy(dtype=float)
        t1d = fr["tech_1d"].to_numpy(dtype=float) if "tech_1d" in fr else np.full(n, np.nan)
        st4 = fr["state_4h"].to_numpy()
        pre_final = np.empty(n)
        pre_sig = np.zeros(n, dtype=np.int8)
        for k in range(n):
            tk = tech[k] if np.isfinite(tech[k]) else 0.0
            f, _ = math_engine.finalize(float(tk), float(tw[k]), float(t1d[k]), 0.0, 0.0, int(st4[k]),
                                        settings.signal)
            pre_final[k] = f
            pre_sig[k] = _SIGNAL_CODE[math_engine.signal_of(f, settings.signal)]
        sd.pre_final, sd.pre_signal = pre_final, pre_sig
    else:  # too little history: never a candidate with a score
        sd.pre_final = np.zeros(n)
        sd.pre_signal = np.zeros(n, dtype=np.int8)
    # 24 h quote volume of the bars closed by t with open >= t - 24 h (as ReplaySource.tickers)
    lo_idx = np.searchsorted(open_ns, t_ns - 24 * H1_NS, side="left")
    vol = np.zeros(n)
    for k in range(n):
        a, b = lo_idx[k], sd.n_closed[k]
        if b > a:
            vol[k] = float(sd.qv[a:b].sum())
    sd.vol24 = vol
    fi = np.searchsorted(sd.funding_ns, t_ns, side="right") - 1
    sd.funding_at = np.where(fi >= 0, sd.funding_rate[np.clip(fi, 0, None)] if len(sd.funding_rate) else np.nan,
                             np.nan)
    timings["indicators"] = timings.get("indicators", 0.0) + (time.perf_counter() - t1)
    return sd


def decision_times(start: datetime | str, end: datetime | str, interval_minutes: int) -> pd.DatetimeIndex:
    s, e = to_utc(start), to_utc(end)
    if e < s:
        raise DataError(f"end {e.isoformat()} is before start {s.isoformat()}")
    return pd.date_range(s, e, freq=pd.Timedelta(minutes=interval_minutes))


# ------------------------------------------------------------------------------------------------
# one account (the consensus, or a member's shadow)


@dataclass
class _Book:
    name: str
    acct: PaperAccount
    profile: RiskProfile
    history: EquityHistory = field(default_factory=EquityHistory)
    curve: list[tuple[datetime, float]] = field(default_factory=list)
    next_bar: dict[str, int] = field(default_factory=dict)  # position id -> next bar index to monitor
    next_funding: dict[str, int] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)

    def monitor(self, data: Mapping[str, _SymbolData], k: int) -> None:
        for pos in self.acct.open_positions():
            sd = data[pos.symbol]
            j, stop = self.next_bar[pos.id], int(sd.n_closed[k])
            fp = self.next_funding[pos.id]
            while j < stop:
                if not self.acct.get(pos.id).is_open:
                    break
                close_ns = sd.open_ns[j] + H1_NS
                due = []
                while fp < len(sd.funding_ns) and sd.funding_ns[fp] <= close_ns:
                    due.append((sd.funding_ts[fp], float(sd.funding_rate[fp])))
                    fp += 1
                t_open = pd.Timestamp(int(sd.open_ns[j]), tz="UTC")
                execution.monitor_bar(self.acct, pos.id, t_open, float(sd.o[j]), float(sd.h[j]),
                                      float(sd.lo[j]), float(sd.c[j]), due, self.profile,
                                      atr=float(sd.atr[j]), qty_step=sd.limits.qty_step)
                j += 1
            self.next_bar[pos.id], self.next_funding[pos.id] = j, fp

    def marks(self, data: Mapping[str, _SymbolData], k: int) -> dict[str, float]:
        out = {}
        for p in self.acct.open_positions():
            n = int(data[p.symbol].n_closed[k])
            if n:
                out[p.symbol] = float(data[p.symbol].c[n - 1])
        return out

    def account_state(self, t: datetime, equity: float) -> AccountState:
        return account_state_from_history(
            self.history.points() + [(t, equity)], equity=equity, balance=float(self.acct.balance),
            positions=self.acct.open_positions(), now=t, profile=self.profile)

    def open(self, verdict: RiskVerdict, sd: _SymbolData, k: int, t: datetime, cycle_id: str) -> dict[str, Any]:
        i = int(np.searchsorted(sd.open_ns, pd.Timestamp(t).as_unit("ns").value, side="left"))  # price_after(symbol, t)
        if i >= len(sd.open_ns):
            return {"status": "not_filled", "note": "no price after the decision time"}
        fill_ts = pd.Timestamp(int(sd.open_ns[i]), tz="UTC").to_pydatetime()
        fill_px = float(sd.o[i])
        pid = f"{sd.symbol.split('/')[0]}-{t:%Y%m%d%H%M}"
        try:
            pos, fill = self.acct.open(verdict.plan, fill_px, fill_ts, position_id=pid, cycle_id=cycle_id)
        except OrderRejected as exc:
            return {"status": "rejected", "note": str(exc)}
        self.next_bar[pid] = i
        self.next_funding[pid] = int(np.searchsorted(sd.funding_ns, sd.open_ns[i], side="right"))
        rec = {"time": t, "symbol": sd.symbol, "position_id": pid, "side": pos.side.value,
               "fill_time": fill_ts, "bar_open": fill_px, "fill_price": float(fill.price),
               "qty": str(fill.qty), "fee": float(fill.fee)}
        self.fills.append(rec)
        return {"status": "filled", **rec}

    def snapshot(self, t: datetime, prices: Mapping[str, float]) -> float:
        eq = float(self.acct.equity(prices))
        self.history.add(t, eq)
        self.curve.append((t, eq))
        return eq

    def equity_series(self, opening: tuple[datetime, float] | None = None) -> pd.Series:
        """The equity curve; `opening` (time, starting balance) is prepended so the first decision's
        fees and slippage count in the returns."""
        pts = ([opening] if opening is not None else []) + self.curve
        if not pts:
            return pd.Series(dtype=float)
        return pd.Series([e for _, e in pts], index=pd.DatetimeIndex([t for t, _ in pts]), dtype=float)


# ------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class DecisionRecord:
    time: datetime
    symbol: str
    action: str
    score: float  # math final score
    combined: float  # consensus combined score
    votes_valid: int
    approved: bool
    reasons: tuple[str, ...]
    filled: bool = False

    def key(self) -> tuple[Any, ...]:
        return (self.time, self.symbol, self.action, round(self.score, 10), round(self.combined, 10),
                self.approved, self.reasons)


@dataclass
class BacktestResult:
    start: datetime
    end: datetime
    panel_mode: str
    symbols: list[str]
    settings_summary: dict[str, Any]
    equity: pd.Series
    trades: list[TradeRecord]
    positions: list[Position]
    open_at_end: list[dict[str, Any]]
    metrics: Metrics
    monte_carlo: MonteCarloResult
    buy_and_hold: dict[str, float]
    decisions: list[DecisionRecord]
    fills: list[dict[str, Any]]
    votes: list[tuple[datetime, Vote]]
    leaderboard: list[LeaderboardRow]
    member_results: dict[str, MemberResult]
    member_positions: dict[str, list[Position]]
    member_decisions: dict[str, list[DecisionRecord]]
    counters: dict[str, Any]
    timings: dict[str, float]
    stopped_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything that must be identical between two runs on the same inputs."""
        return (
            tuple(d.key() for d in self.decisions),
            tuple((f["time"], f["symbol"], f["fill_price"], f["qty"]) for f in self.fills),
            tuple(tuple(sorted(t.to_dict().items())) for t in self.trades),
            tuple(self.equity.round(8).items()),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary: metrics, Monte Carlo, buy-and-hold, counters, leaderboard, notes."""
        return json_safe({
            "start": self.start, "end": self.end, "panel": self.panel_mode, "symbols": self.symbols,
            "settings": self.settings_summary, "metrics": self.metrics.to_dict(),
            "monte_carlo": self.monte_carlo.to_dict(), "buy_and_hold": self.buy_and_hold,
            "counters": self.counters, "open_at_end": self.open_at_end,
            "leaderboard": [r.to_dict() for r in self.leaderboard], "stopped_reason": self.stopped_reason,
            "notes": self.notes, "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        })


# ------------------------------------------------------------------------------------------------
# the panel in the loop


class _CacheOnly:
    """A provider that never answers: with `agents.panel.decide` it turns every cache miss into an
    abstention (relabelled "cache_miss"), while a hit returns the stored answer."""

    def __init__(self, member: PanelMember) -> None:
        self.provider = member.provider
        self.model = member.model

    def ask(self, messages: Any, schema: Any, *, timeout_s: float) -> Any:
        from agents.llm.base import LLMUnavailable

        raise LLMUnavailable("cache_miss")


def _panel_votes(mode: str, members: Sequence[PanelMember], providers: Mapping[str, Any], candidates: list[str],
                 payload: Mapping[str, Any], cache: Any, budget: Any, now: datetime) -> list[Vote]:
    from agents.panel import decide as panel_decide

    votes: list[Vote] = []
    for m in members:  # sequential: deterministic order, and a backtest is not latency-bound
        prov = _CacheOnly(m) if mode == "cache" else providers.get(m.id)
        vs = panel_decide(m, prov, candidates, payload, cache=cache, budget=budget if mode == "live" else None,
                          now=now, use_cache=True)
        if mode == "cache":
            vs = [replace(v, abstain_reason="cache_miss") if v.abstain_reason == "unavailable" else v for v in vs]
        votes.extend(vs)
    return votes


def _no_news_note(settings: Settings) -> str:
    """The note of the 'unavailable' news report the live cycle builds (tasks.execution.news_reports)
    when its news analyst is off, so that the panel prompt, hence the cache key, is the same."""
    try:
        from agents.llm.registry import member_status
        from tasks.panel import news_member

        return f"news analyst off: {member_status(news_member(settings)).reason}"
    except Exception:  # noqa: BLE001 - the panel tasks module is optional here
        return "news analyst off"


def _member_decision(vote: Vote, score: Score) -> Decision:
    """A member's own call as a Decision (its shadow account trades it through the same risk)."""
    action = vote.action if vote.valid and vote.action is not None else Action.WAIT
    return Decision(symbol=vote.symbol, as_of=score.as_of, action=action, confidence=float(vote.confidence),
                    math_score=score.final, combined_score=score.final, votes_valid=int(vote.valid),
                    votes_total=1, tally={}, dissent=(), fallback_to_math=False,
                    reason=f"shadow account of {vote.member_id}: its own vote {action.value}")


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
    ranges = [source.data_range(s) for s in universe]
    # from the first symbol with a futures bar (a symbol without data yet is simply not a candidate)
    # to the last bar all symbols share (every decision has a fill bar)
    lo, hi = min(r[0] for r in ranges), min(r[1] for r in ranges)
    last_close = hi + TF_DELTA["1h"]
    times = times[(times >= lo) & (times <= hi)]  # hi: the last bar's open, so every decision has a fill bar
    if len(times) == 0:
        raise DataError(f"no decision time between {start} and {end} inside the replay data of "
                        f"{', '.join(universe)} ({lo.isoformat()} .. {last_close.isoformat()})")
    end_ts = times[-1]
    load = sorted(set(universe) | ({BTC} if BTC in known else set()))
    data = {s: _load_symbol(source, s, times, end_ts, settings, timings) for s in load}

    prof = get_profile(settings.risk_profile)
    mm = prof.maintenance_margin_rate
    main = _Book(CONSENSUS_ID, PaperAccount.from_settings(settings.paper, mm), prof)
    panel_members = list(members if members is not None else settings.panel) if panel_mode != "math" else []
    if panel_mode == "cache" and cache is None:
        raise ValueError("panel mode 'cache' needs a response cache (cache=...)")
    budget = None
    run_notes: list[str] = []
    run_budget = token_budget if token_budget is not None else settings.token_budget_day
    if panel_mode == "live":
        from agents.budget import TokenBudget

        budget = TokenBudget(per_cycle=settings.token_budget_cycle or None, per_day=None)
        if providers is None:
            from agents.llm.registry import build_provider, member_status

            providers = {m.id: build_provider(m) for m in panel_members if member_status(m).available}
        missing = [m.id for m in panel_members if providers.get(m.id) is None]
        if missing:
            run_notes.append(f"live: {len(panel_members) - len(missing)}/{len(panel_members)} panel members available; "
                             f"not called (no key/endpoint): {', '.join(missing)}")
            panel_members = [m for m in panel_members if providers.get(m.id) is not None]
    no_news_note = _no_news_note(settings) if panel_members else ""
    shadows = {m.id: _Book(m.id, PaperAccount.from_settings(settings.paper, mm), prof) for m in panel_members}
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
            # 1. monitor
            for b in books:
                b.monitor(data, k)
            # 2. candidates from point-in-time tickers
            tickers: dict[str, TickerInfo] = {}
            for s in universe:
                sd = data[s]
                n = int(sd.n_closed[k])
                if n == 0 or sd.open_ns[n - 1] < sd.futures_start_ns:
                    continue  # no futures bar closed yet (spot warm-up only): not tradable at t
                last = float(sd.c[n - 1])
                half = last * spread / 200
                tickers[s] = TickerInfo(s, last, last - half, last + half, float(sd.vol24[k]))
            cands, _dropped, _note = select_candidates(settings, tickers, known, requested)
            counters["candidates"] += len(cands)
            # 3. scores
            scores: dict[str, Score] = {}
            for c in cands:
                sd = data[c.symbol]
                if sd.frame is None:
                    continue
                if panel_mode == "math" and sd.pre_signal[k] == 0:
                    decisions.append(DecisionRecord(t, c.symbol, "WAIT", round(float(sd.pre_final[k]), 4),
                                                    round(float(sd.pre_final[k]), 4), 0, False, ("decision is WAIT",)))
                    cons_calls.append((k, c.symbol, Action.WAIT, 0.0))
                    continue
                scores[c.symbol] = sd.score(k, settings.signal)
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
                from agents.panel import build_payload

                # exactly as the live cycle builds it (tasks.execution.run_panel_tasks): same facts, same
                # prompt, same response-cache key
                # (no historical news in a backtest: the same 'unavailable' report the live cycle
                # builds when its news analyst is off)
                news = {s: NewsReport(s, t, available=False, note=no_news_note) for s in snaps}
                payload = build_payload(snaps, scores, news, main.acct.open_positions(), settings, as_of=t)
                votes = _panel_votes(panel_mode, panel_members, providers or {}, list(snaps), payload, cache,
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
            _trade_book(main, sym_decisions, scores, data, k, t, settings, spread, decisions, counters,
                        deny_reasons, record=True)
            for d in sym_decisions.values():
                cons_calls.append((k, d.symbol, d.action, d.confidence))
            for mid, book in shadows.items():
                mine = {v.symbol: v for v in votes if v.member_id == mid}
                md = {s: daily_veto(_member_decision(mine[s], scores[s]), scores[s]) for s in scores if s in mine}
                _trade_book(book, md, scores, data, k, t, settings, spread, member_decisions[mid], None, None,
                            record=True)
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

    def finish(book: _Book) -> tuple[pd.Series, list[TradeRecord], list[dict[str, Any]]]:
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
    metrics = compute_metrics(equity, trades, start_used, end_used, main.acct.open_positions())
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
    board = leaderboard(list(results.values()), start_used, end_used, runs=leaderboard_runs, seed=seed)
    timings["post"] = time.perf_counter() - t_post
    timings["total"] = time.perf_counter() - t0
    notes = [
        "replay: no open interest and no news in the bundled history (both components neutral)",
        f"replay: spread is an estimate ({spread:g}%), fills at the next bar's open with "
        f"{settings.paper.slippage_bps:g} bps slippage and {settings.paper.taker_fee:.4%} taker fee",
    ]
    notes += run_notes
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


def _light_snapshot(sd: _SymbolData, k: int, t: datetime, spread: float, with_candles: int = 0) -> MarketSnapshot:
    """What the risk step reads of a snapshot at t: last close, bid/ask (estimated spread), funding."""
    n = int(sd.n_closed[k])
    last = float(sd.c[n - 1])
    half = last * spread / 200
    f = float(sd.funding_at[k])
    candles = {"1h": sd.h1.iloc[max(0, n - with_candles):n]} if with_candles else {}
    return MarketSnapshot(symbol=sd.symbol, as_of=t, candles=candles, last=last, bid=last - half, ask=last + half,
                          volume_24h_quote=float(sd.vol24[k]), funding_rate=f if math.isfinite(f) else None)


def _trade_book(book: _Book, sym_decisions: Mapping[str, Decision], scores: Mapping[str, Score],
                data: Mapping[str, _SymbolData], k: int, t: datetime, settings: Settings, spread: float,
                decisions: list[DecisionRecord] | None, counters: dict[str, Any] | None,
                deny_reasons: dict[str, int] | None, *, record: bool) -> None:
    """Risk and fills of one book at decision time t, then its equity snapshot (as the live cycle)."""
    prices_pre = book.marks(data, k)
    account: AccountState | None = None
    btc4h: float | None = None
    btc_done = False
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
        if not btc_done:
            btc_done = True
            if BTC in data and data[BTC].n_closed[k] > 0:
                btc4h = btc_change_4h_pct({BTC: _light_snapshot(data[BTC], k, t, spread, with_candles=5)}, None, t)
        snap = _light_snapshot(data[sym], k, t, spread)
        v = risk_verdict(d, scores[sym], snap, account, data[sym].limits, settings, btc4h, None,
                         execution.track_record_from([p for p in book.acct.positions.values() if not p.is_open]))
        filled = False
        if v.approved and v.plan is not None:
            res = book.open(v, data[sym], k, t, cycle_id)
            filled = res["status"] == "filled"
            account = execution.with_planned(account, v.plan, t)
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


def _forward_returns(data: Mapping[str, _SymbolData], times: pd.DatetimeIndex) -> Callable[[int, str], tuple]:
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


# ------------------------------------------------------------------------------------------------
# walk-forward


@dataclass
class WalkForwardResult:
    windows: list[dict[str, Any]]  # per test window: train (warm-up) range, test range, metrics
    results: list[BacktestResult]
    note: str

    def summary(self) -> dict[str, Any]:
        return json_safe({"note": self.note, "windows": self.windows})


WALK_FORWARD_NOTE = (
    "The math engine has no fitted parameters: each train window is used as indicator warm-up only "
    "(nothing is optimised on it). Only the test windows are reported; each starts with a fresh account."
)


def walk_forward(settings: Settings, source: Any, start: datetime | str, end: datetime | str, train_days: int,
                 test_days: int, **kwargs: Any) -> WalkForwardResult:
    """Rolling windows [train | test] from `start`: train_days of warm-up (honestly: the engine fits
    nothing, so the train window only guarantees the indicators are warm), then a backtest over the
    next test_days; the windows roll by test_days until `end`. Reports the test windows only."""
    if train_days < 0 or test_days <= 0:
        raise ValueError("train days must be >= 0 and test days > 0")
    s, e = to_utc(start), to_utc(end)
    windows, results = [], []
    cur = s + pd.Timedelta(days=train_days)
    while cur < e:
        t_end = min(cur + pd.Timedelta(days=test_days) - pd.Timedelta(minutes=settings.cycle_interval_minutes), e)
        res = run_backtest(settings, source, cur, t_end, **kwargs)
        results.append(res)
        m = res.metrics
        windows.append({"train_start": cur - pd.Timedelta(days=train_days), "train_end": cur,
                        "test_start": res.start, "test_end": res.end, "total_return": m.total_return,
                        "sharpe": m.sharpe, "max_drawdown": m.max_drawdown, "n_trades": m.n_trades,
                        "win_rate": m.win_rate, "profit_factor": m.profit_factor,
                        "open_at_end": len(res.open_at_end)})
        cur = cur + pd.Timedelta(days=test_days)
    return WalkForwardResult(windows, results, WALK_FORWARD_NOTE)
