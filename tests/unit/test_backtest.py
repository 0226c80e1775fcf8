"""Backtest engine: determinism, the look-ahead property, fills at the next bar's open, the math
pre-screen and the compressed equity history are exact, and the shadow accounts reconcile with the
votes (fake panel through the real agents.panel.decide, then replayed from the response cache)."""

from __future__ import annotations

import json
import math
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from agents import math_engine
from agents.llm.base import LLMResult, Usage
from agents.schemas import PanelAnswer
from backtest.book import EquityHistory
from backtest.data import decision_times, load_symbol
from backtest.engine import run_backtest
from backtest.walkforward import walk_forward
from core.settings import PanelMember
from core.types import Action
from exchange.replay import ReplaySource, SymbolHistory
from risk.breakers import account_state_from_history
from store.llm_cache import InMemoryResponseCache

SYMS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
START, END = "2025-03-01", "2025-03-21 23:00"


@pytest.fixture(scope="module")
def base_run(settings, source):
    return run_backtest(settings, source, START, END, symbols=SYMS, progress=False, mc_runs=200,
                        leaderboard_runs=100)


# ------------------------------------------------------------------------------------------------
def test_short_backtest_runs_and_is_deterministic(settings, source, base_run):
    r = base_run
    assert r.counters["decision_times"] == 21 * 24
    assert r.metrics.n_trades + len(r.open_at_end) == len(r.fills) > 0
    # the curve opens one interval before the first decision at the starting balance, so the first
    # decision's fees and slippage count in the returns
    assert r.equity.index[0] == pd.Timestamp("2025-02-28 23:00", tz="UTC")
    assert r.equity.iloc[0] == settings.paper.starting_balance
    assert r.equity.index[1] == pd.Timestamp("2025-03-01", tz="UTC")
    again = run_backtest(settings, source, START, END, symbols=SYMS, progress=False, mc_runs=200,
                         leaderboard_runs=100)
    assert again.fingerprint() == r.fingerprint()
    assert again.summary()["metrics"] == r.summary()["metrics"]
    assert again.monte_carlo.to_dict() == r.monte_carlo.to_dict()


def test_fills_use_the_next_bar_open_never_the_decision_close(source, base_run, settings):
    bps = settings.paper.slippage_bps / 10_000
    assert base_run.fills
    for f in base_run.fills:
        t = f["time"]
        ts, px = source.price_after(f["symbol"], t)
        assert ts == f["fill_time"] == t  # the bar that OPENS at the decision time
        assert f["bar_open"] == px
        side = 1 if f["side"] == "LONG" else -1
        assert f["fill_price"] == pytest.approx(px * (1 + side * bps), rel=1e-12)
        # the decision bar is the one closing at t: its close is not the fill price's basis
        h1 = source.history(f["symbol"]).h1
        decision_bar = h1.loc[t - timedelta(hours=1)]
        if decision_bar["close"] != px:
            assert f["fill_price"] != pytest.approx(decision_bar["close"] * (1 + side * bps), rel=1e-12)


# ------------------------------------------------------------------------------------------------
class PerturbedSource(ReplaySource):
    """The same history, with EVERY 1h bar that closes after `cut` (open >= cut) and every funding
    event after `cut` replaced by random values."""

    def __init__(self, base: ReplaySource, cut: pd.Timestamp, seed: int):
        super().__init__(base.root.parent, base.root.name, base.spread_pct)
        self.cut, self.seed = cut, seed
        self._perturbed: dict[str, SymbolHistory] = {}

    def history(self, symbol: str) -> SymbolHistory:
        if symbol not in self._perturbed:
            h = super().history(symbol)
            rng = np.random.default_rng([self.seed, zlib.crc32(symbol.encode())])
            h1 = h.h1.copy()
            m = h1.index >= self.cut
            n = int(m.sum())
            f = rng.uniform(0.8, 1.25, size=n)
            o = h1.loc[m, "open"].to_numpy() * f
            c = o * rng.uniform(0.95, 1.05, size=n)
            h1.loc[m, "open"] = o
            h1.loc[m, "close"] = c
            h1.loc[m, "high"] = np.maximum(o, c) * rng.uniform(1.0, 1.04, size=n)
            h1.loc[m, "low"] = np.minimum(o, c) * rng.uniform(0.96, 1.0, size=n)
            h1.loc[m, "volume"] = h1.loc[m, "volume"].to_numpy() * rng.uniform(0.1, 10, size=n)
            fund = h.funding.copy()
            fm = fund.index > self.cut
            fund[fm] = rng.uniform(-0.003, 0.003, size=int(fm.sum()))
            self._perturbed[symbol] = SymbolHistory(symbol, h1, h.futures_start, fund, h.spot_warmup)
        return self._perturbed[symbol]


def test_lookahead_perturbing_the_future_leaves_past_decisions_identical(settings, source, base_run):
    times = decision_times(START, END, settings.cycle_interval_minutes)
    rng = np.random.default_rng(7)
    # sample decision times, including one right after a fill (an open position is being monitored)
    cuts = sorted({times[int(i)] for i in rng.integers(24, len(times) - 24, size=6)}
                  | {pd.Timestamp(base_run.fills[0]["time"]) + pd.Timedelta(hours=3)})
    changed_after = 0
    for cut in cuts:
        src = PerturbedSource(source, cut, seed=int(cut.value % 1_000_003))
        r = run_backtest(settings, src, START, END, symbols=SYMS, progress=False, mc_runs=10, leaderboard_runs=10)
        before = [d.key() for d in base_run.decisions if d.time <= cut]
        assert [d.key() for d in r.decisions if d.time <= cut] == before, f"decisions up to {cut} changed"
        fills_before = [(f["time"], f["symbol"], f["fill_price"], f["qty"]) for f in base_run.fills if f["time"] < cut]
        assert [(f["time"], f["symbol"], f["fill_price"], f["qty"]) for f in r.fills if f["time"] < cut] == fills_before
        assert r.equity.loc[: cut - pd.Timedelta(hours=1)].equals(base_run.equity.loc[: cut - pd.Timedelta(hours=1)])
        after = [d.key() for d in base_run.decisions if d.time > cut]
        changed_after += int([d.key() for d in r.decisions if d.time > cut] != after)
    assert changed_after > 0  # the perturbation has power: later decisions do change


# ------------------------------------------------------------------------------------------------
def test_math_prescreen_equals_score_from_row_and_tickers_equal_the_source(settings, source):
    times = decision_times("2025-02-01", "2025-02-10", 60)
    sd = load_symbol(source, "ETH/USDT:USDT", times, times[-1], settings)
    for k in range(len(times)):
        sc = sd.score(k, settings.signal)
        row_series = sd.frame.iloc[k]
        assert sc == math_engine.score_from_row("ETH/USDT:USDT", row_series, 0.0, ("oi_missing",), None,
                                                settings.signal)
        assert sc.final == round(float(sd.pre_final[k]), 4)
        assert {1: Action.LONG, -1: Action.SHORT, 0: Action.WAIT}[int(sd.pre_signal[k])] is sc.signal
    for k in (0, 50, len(times) - 1):
        # the very Score the live cycle computes from its point-in-time snapshot
        live = math_engine.score_snapshot(source.snapshot("ETH/USDT:USDT", times[k]), settings.signal)
        assert live == sd.score(k, settings.signal)
        tk = source.tickers(times[k])["ETH/USDT:USDT"]
        n = int(sd.n_closed[k])
        assert tk.last == sd.c[n - 1]
        assert tk.volume_24h_quote == pytest.approx(sd.vol24[k], rel=1e-12)
        snap = source.snapshot("ETH/USDT:USDT", times[k])
        assert (snap.funding_rate if snap.funding_rate is not None else math.nan) == pytest.approx(
            sd.funding_at[k], nan_ok=True)


@pytest.mark.parametrize("profile", ["default", "conservative"])
def test_compressed_equity_history_gives_the_same_account_state(profile):
    rng = np.random.default_rng(3)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    eq = 10_000 * np.cumprod(1 + rng.normal(0, 0.01, size=24 * 60))
    full: list[tuple[datetime, float]] = []
    comp = EquityHistory()
    for i, e in enumerate(eq):
        t = t0 + timedelta(hours=i)
        if i % 5 == 0:
            now_eq = float(e * 0.999)
            kw = dict(equity=now_eq, balance=now_eq, positions=[], now=t, profile=profile)
            assert account_state_from_history(comp.points() + [(t, now_eq)], **kw) == \
                account_state_from_history(full + [(t, now_eq)], **kw)
        full.append((t, float(e)))
        comp.add(t, float(e))
    assert len(comp.points()) < 24 * 8 + 4


# ------------------------------------------------------------------------------------------------
class FakeProvider:
    """A deterministic fake model: reads the candidates from the prompt, answers by a fixed rule."""

    def __init__(self, member: PanelMember, rule: str):
        self.provider, self.model, self.rule = member.provider, member.model, rule
        self.calls = 0

    def ask(self, messages, schema, *, timeout_s):
        self.calls += 1
        body = messages[-1].content.split("Decision input (JSON):\n", 1)[1]
        payload = json.loads(body)
        verdicts = []
        for c in payload["candidates"]:
            final = (c.get("math") or {}).get("final") or 0.0
            if self.rule == "long":
                action, conf = "LONG", 0.9
            elif self.rule == "contrarian":
                action, conf = ("SHORT" if final > 0 else "LONG"), 0.6
            else:  # follow the math score
                action, conf = ("LONG" if final > 0.2 else "SHORT" if final < -0.2 else "WAIT"), 0.7
            verdicts.append({"symbol": c["symbol"], "action": action, "confidence": conf,
                             "rationale": f"{self.rule} rule", "key_factors": ["fake"]})
        parsed = PanelAnswer.model_validate({"verdicts": verdicts})
        return LLMResult(parsed=parsed, raw=json.dumps({"verdicts": verdicts}), latency_s=0.0,
                         usage=Usage(100, 20), cost_usd=0.001, provider=self.provider, model=self.model)


MEMBERS = [PanelMember(id="m-long", provider="openai", model="fake-long"),
           PanelMember(id="m-contra", provider="openai", model="fake-contra"),
           PanelMember(id="m-follow", provider="openai", model="fake-follow")]
RULES = {"m-long": "long", "m-contra": "contrarian", "m-follow": "follow"}
P_START, P_END = "2025-03-03", "2025-03-06 23:00"


@pytest.fixture(scope="module")
def panel_runs(settings, source):
    cache = InMemoryResponseCache()
    providers = {m.id: FakeProvider(m, RULES[m.id]) for m in MEMBERS}
    live = run_backtest(settings, source, P_START, P_END, panel_mode="live", symbols=SYMS, progress=False,
                        cache=cache, providers=providers, members=MEMBERS, token_budget=10**9, mc_runs=50,
                        leaderboard_runs=50)
    cached = run_backtest(settings, source, P_START, P_END, panel_mode="cache", symbols=SYMS, progress=False,
                          cache=cache, members=MEMBERS, mc_runs=50, leaderboard_runs=50)
    return live, cached, providers


def test_shadow_accounts_reconcile_with_the_votes(panel_runs):
    live, _, providers = panel_runs
    assert all(p.calls > 0 for p in providers.values())
    votes = {(t, v.member_id, v.symbol): v for t, v in live.votes}
    assert live.counters["votes"] == len(votes) > 0
    for mid in RULES:
        decisions = live.member_decisions[mid]
        positions = live.member_positions[mid]
        # every shadow decision is that member's own vote on that snapshot
        for d in decisions:
            v = votes[(d.time, mid, d.symbol)]
            own = v.action.value if v.valid else "WAIT"
            # the member's own vote, unless the daily timeframe vetoes it (the same rule as the consensus)
            assert d.action == own or (d.action == "WAIT" and "daily timeframe vetoes" in d.reasons)
        # every valid non-WAIT vote the daily timeframe did not veto went through risk (approved or
        # denied with reasons); the vetoed ones are WAIT decisions that say so
        directional = {(t, s) for (t, m, s), v in votes.items() if m == mid and v.valid and v.action is not Action.WAIT}
        vetoed = {(d.time, d.symbol) for d in decisions if "daily timeframe vetoes" in d.reasons}
        assert {(d.time, d.symbol) for d in decisions if d.action != "WAIT"} == directional - vetoed
        assert vetoed <= directional
        assert all(d.reasons for d in decisions)
        # its positions are exactly its approved and filled decisions, on the side it voted
        opened = {(p.opened_at, p.symbol, p.side.value) for p in positions}
        filled = {(d.time, d.symbol, d.action) for d in decisions if d.filled}
        assert opened == filled
        assert all(d.approved for d in decisions if d.filled)
    assert len(live.member_positions["m-long"]) > 0
    assert {p.side.value for p in live.member_positions["m-long"]} == {"LONG"}
    ids = [row.member_id for row in live.leaderboard]
    assert sorted(ids) == sorted([*RULES, "consensus"])
    assert live.member_results["m-long"].equity.index.equals(live.equity.index)


def test_cache_mode_replays_the_live_answers(panel_runs, settings, source):
    live, cached, _ = panel_runs
    assert cached.counters["cache_miss"] == 0
    assert all(v.cached for _, v in cached.votes)
    assert [(t, v.member_id, v.symbol, v.action, v.confidence) for t, v in cached.votes] == \
        [(t, v.member_id, v.symbol, v.action, v.confidence) for t, v in live.votes]
    assert cached.fingerprint() == live.fingerprint()
    for mid in RULES:
        assert [p.id for p in cached.member_positions[mid]] == [p.id for p in live.member_positions[mid]]
    empty = run_backtest(settings, source, P_START, "2025-03-03 05:00", panel_mode="cache", symbols=SYMS,
                         progress=False, cache=InMemoryResponseCache(), members=MEMBERS, mc_runs=10,
                         leaderboard_runs=10)
    assert empty.counters["cache_miss"] == empty.counters["votes"] > 0
    assert all(v.abstain_reason == "cache_miss" for _, v in empty.votes)


def test_live_token_budget_stops_the_run_cleanly(settings, source):
    providers = {m.id: FakeProvider(m, RULES[m.id]) for m in MEMBERS}
    r = run_backtest(settings, source, P_START, P_END, panel_mode="live", symbols=SYMS, progress=False,
                     cache=None, providers=providers, members=MEMBERS, token_budget=1000, mc_runs=10,
                     leaderboard_runs=10)
    assert r.stopped_reason and "token budget" in r.stopped_reason
    assert 0 < r.counters["decision_times"] < 4 * 24
    assert r.counters["tokens"] >= 1000
    assert len(r.equity) == r.counters["decision_times"] + 1  # + the opening point at the starting balance


def test_walk_forward_reports_test_windows_only(settings, source):
    wf = walk_forward(settings, source, "2025-03-01", "2025-03-15", train_days=7, test_days=3, symbols=SYMS,
                      progress=False, mc_runs=10, leaderboard_runs=10)
    assert "warm-up only" in wf.note
    assert [w["test_start"] for w in wf.windows] == [pd.Timestamp(x, tz="UTC").to_pydatetime()
                                                    for x in ("2025-03-08", "2025-03-11", "2025-03-14")]
    assert all(r.start >= datetime(2025, 3, 8, tzinfo=UTC) for r in wf.results)


def test_positions_open_at_the_end_are_marked_not_closed(base_run):
    r = base_run
    last_eq = float(r.equity.iloc[-1])
    start = Decimal(str(r.settings_summary["starting_balance"]))
    closed_net = sum(t.pnl for t in r.trades)
    open_part = last_eq - float(start) - closed_net
    if r.open_at_end:
        assert all("marked to market" in o["note"] for o in r.open_at_end)
    else:
        assert abs(open_part) < 1e-6


def test_backtest_positions_match_the_live_monitor_path(settings, source, base_run):
    """Each closed position of the backtest, replayed alone through the live monitor
    (exchange.walk.advance_position over bars_between/funding_between), ends the same way."""
    from core.types import TradePlan
    from exchange.paper import PaperAccount
    from exchange.walk import advance_position
    from risk.profiles import get_profile

    closed = [p for p in base_run.positions if not p.is_open]
    assert closed
    prof = get_profile(settings.risk_profile)
    for p in closed:
        acct = PaperAccount.from_settings(settings.paper, prof.maintenance_margin_rate)
        plan = TradePlan(symbol=p.symbol, side=p.side, entry=p.entry, stop=p.initial_stop, tp1=p.tp1, tp2=p.tp2,
                         leverage=p.leverage, qty=p.qty_initial, notional=0.0, margin=0.0, risk_usd=0.0,
                         risk_pct=0.0, liquidation_price=p.liquidation_price, stop_pct=0.0)
        ts, px = source.price_after(p.symbol, p.opened_at)
        pos, _ = acct.open(plan, px, ts, position_id=p.id)
        until = p.opened_at + timedelta(days=30)
        advance_position(acct, pos, source.bars_between(p.symbol, p.opened_at, until),
                         source.funding_between(p.symbol, p.opened_at, until), settings.risk_profile)
        live = acct.get(p.id)
        assert (live.closed_at, live.exit_reason) == (p.closed_at, p.exit_reason)
        assert (live.realised_pnl, live.fees_paid, live.funding_paid) == (p.realised_pnl, p.fees_paid, p.funding_paid)
