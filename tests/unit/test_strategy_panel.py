"""The panel in `backtest --strategy hybrid --panel live|cache`: hybrid's trend half is decided by the
consensus of the members (asked once per decision time about the symbols in a trend regime, with the
live cycle's prompt); a cached rerun gives the same run with no model called; the other strategies
refuse a panel with the reason."""

from __future__ import annotations

import pytest

from backtest.strategies import run_strategy_backtest
from core.errors import ConfigError
from store.llm_cache import InMemoryResponseCache
from tests.unit.test_backtest import MEMBERS, FakeProvider

SYMS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"]
WINDOW = ("2025-03-03", "2025-03-06 23:00")
KW = dict(symbols=SYMS, mc_runs=20, leaderboard_runs=10)


def test_hybrid_trend_half_follows_the_panel_and_a_cached_rerun_is_the_same_run(settings, source) -> None:
    math_run = run_strategy_backtest(settings, source, *WINDOW, strategy="hybrid", **KW)
    cache = InMemoryResponseCache()
    providers = {m.id: FakeProvider(m, "long") for m in MEMBERS}  # every member says LONG, confidence 0.9
    live = run_strategy_backtest(settings, source, *WINDOW, strategy="hybrid", panel_mode="live", cache=cache,
                                 providers=providers, members=MEMBERS, **KW)
    assert all(p.calls > 0 for p in providers.values())
    assert live.panel_mode == "live" and live.counters["votes"] == len(live.votes) > 0
    assert {v.member_id for _, v in live.votes} == {m.id for m in MEMBERS}
    # the consensus of three LONG votes opens trend positions the math score alone did not
    opens = [d for d in live.decisions if d.action == "OPEN LONG"]
    assert len(opens) > sum(d.action == "OPEN LONG" for d in math_run.decisions)
    voted = {(t, v.symbol) for t, v in live.votes}
    assert all((d.time, d.symbol) in voted for d in opens)  # each one on a symbol the panel was asked about
    assert live.fingerprint() != math_run.fingerprint()
    assert any("panel live" in n for n in live.notes)
    # the same prompts again: every answer from the cache, the same run
    calls = {k: p.calls for k, p in providers.items()}
    cached = run_strategy_backtest(settings, source, *WINDOW, strategy="hybrid", panel_mode="cache", cache=cache,
                                   members=MEMBERS, **KW)
    assert cached.counters["cache_miss"] == 0 and cached.fingerprint() == live.fingerprint()
    assert {k: p.calls for k, p in providers.items()} == calls


@pytest.mark.parametrize("name", ["grid", "volatility", "rebalance"])
def test_strategies_that_read_no_panel_refuse_one_with_the_reason(settings, source, name) -> None:
    with pytest.raises(ConfigError, match="only hybrid's trend half reads the panel"):
        run_strategy_backtest(settings, source, *WINDOW, strategy=name, panel_mode="cache",
                              cache=InMemoryResponseCache(), **KW)
