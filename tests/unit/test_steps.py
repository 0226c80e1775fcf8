"""The cycle's glue rules: the daily veto applies to any proposer; the kelly Chandelier trails."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd

from agents.math_engine import hourly_atr, score_snapshot
from core.settings import load_settings
from core.types import Action, Side, TradePlan, Vote
from exchange.paper import PaperAccount
from exchange.replay import ReplaySource
from exchange.walk import advance_position
from pipeline.stages import decide

S = load_settings()
BTC = "BTC/USDT:USDT"


def test_daily_veto_also_stops_a_panel_that_overrides_the_math_score() -> None:
    src = ReplaySource(S.data_dir)
    t = datetime(2025, 1, 7, 1, tzinfo=UTC)
    score = score_snapshot(src.snapshot(BTC, t), S.signal)
    daily = score.timeframes["1d"].score
    assert daily > 0.1 and not score.daily_veto  # math agrees with the daily timeframe
    against = Action.SHORT
    votes = [Vote(f"m{i}", BTC, against, 0.95, "x") for i in range(5)]
    d = decide(BTC, t, votes, score, S)
    assert d.action is Action.WAIT and "daily timeframe vetoes" in d.reason
    with_daily = [Vote(f"m{i}", BTC, Action.LONG, 0.95, "x") for i in range(5)]
    assert decide(BTC, t, with_daily, score, S).action is Action.LONG


def test_kelly_chandelier_trails_with_the_hourly_atr() -> None:
    src = ReplaySource(S.data_dir)
    start = pd.Timestamp("2025-01-13 00:00", tz="UTC")  # BTC rallied from ~90k to ~106k over the next week
    bars = src.bars_between(BTC, start, start + pd.Timedelta(days=7))
    warm = src.bars_between(BTC, start - pd.Timedelta(hours=72), start + pd.Timedelta(days=7))
    atr = pd.Series(hourly_atr(warm), index=warm.index)
    entry = float(bars["open"].iloc[0])
    plan = TradePlan(BTC, Side.LONG, entry, entry * 0.95, entry * 1.075, entry * 1.125, 3, Decimal("0.01"),
                     entry * 0.01, entry * 0.01 / 3, entry * 0.0005, 0.5, entry * 0.68, 5.0)

    def run(with_atr: bool) -> list[float]:
        acct = PaperAccount(starting_balance=Decimal(10_000))
        pos, _ = acct.open(plan, entry, start.to_pydatetime(), position_id="P1")
        advance_position(acct, pos, bars, pd.Series(dtype=float), "kelly", atr=atr if with_atr else None)
        return [e.new_stop for e in acct.events if e.kind == "stop_moved"]

    moves = run(True)
    assert moves and all(b >= a for a, b in zip(moves, moves[1:], strict=False))  # only ever up
    assert moves[-1] > entry * 0.95
    assert run(False) == []  # without the ATR the kelly profile has no trailing rule at all


def test_no_funding_after_a_stop_inside_the_bar() -> None:
    """Funding at a bar's close is owed only by a position still open then."""
    from exchange.walk import monitor_bar
    from risk.profiles import get_profile

    t_open = pd.Timestamp("2025-03-01 07:00", tz="UTC")
    plan = TradePlan(BTC, Side.LONG, 100.0, 98.0, 103.0, 105.0, 3, Decimal("1"), 100.0, 33.3, 2.0, 0.02, 60.0, 2.0)

    def run(low: float) -> PaperAccount:
        acct = PaperAccount(starting_balance=Decimal(10_000), slippage_bps=Decimal(0))
        acct.open(plan, 100.0, (t_open - pd.Timedelta(hours=1)).to_pydatetime(), position_id="P1")
        monitor_bar(acct, "P1", t_open, 100.0, 100.5, low, 99.5, [(t_open + pd.Timedelta(hours=1), 0.01)],
                    get_profile("default"))
        return acct

    stopped = run(97.0)  # the stop at 98 fills inside the bar, before the 08:00 funding time
    assert not stopped.get("P1").is_open and stopped.funding_paid == 0
    held = run(99.0)  # still open at 08:00: pays 1 × 99.5 × 1%
    assert held.get("P1").is_open and held.funding_paid == Decimal("0.995")


def test_configured_universe_with_an_unknown_symbol_is_an_error_not_an_empty_cycle():
    """Issue 13 item 27: QUORUM_SYMBOLS naming a symbol the source lacks fails like --symbols does."""
    import pytest

    from core.errors import DataError
    from pipeline.stages import select_candidates

    settings = load_settings(symbols=["BTC/USDT:USDT", "PEPE/USDT:USDT"])
    with pytest.raises(DataError, match=r"QUORUM_SYMBOLS: unknown symbol\(s\) PEPE/USDT:USDT"):
        select_candidates(settings, {}, ["BTC/USDT:USDT", "ETH/USDT:USDT"])
    with pytest.raises(DataError, match=r"--symbols: unknown symbol\(s\) DOGE/USDT:USDT"):
        select_candidates(settings, {}, ["BTC/USDT:USDT"], requested=["DOGE/USDT:USDT"])


def test_the_stages_take_only_the_settings_they_read():
    """select_candidates and decide need no whole Settings: the few values they read, as frozen
    objects, give the same results as the Settings they came from."""
    from core.settings import ConsensusSettings, SignalSettings
    from exchange.base import TickerInfo
    from pipeline.stages import ConsensusRules, UniverseRules, select_candidates

    tickers = {s: TickerInfo(s, 100.0, 99.99, 100.01, vol) for s, vol in
               [("BTC/USDT:USDT", 9e9), ("ETH/USDT:USDT", 5e9), ("DOGE/USDT:USDT", 1e5), ("SOL/USDT:USDT", 2e9)]}
    known = list(tickers)
    for universe in ("fixed", "scanner"):
        sett = load_settings(universe=universe, symbols=["ETH/USDT:USDT", "DOGE/USDT:USDT"], scanner_top_n=2)
        rules = UniverseRules(universe, ("ETH/USDT:USDT", "DOGE/USDT:USDT"), sett.min_volume_usd,
                              sett.max_spread_pct, 2)
        assert select_candidates(rules, tickers, known) == select_candidates(sett, tickers, known)
    fixed = select_candidates(UniverseRules("fixed", ("ETH/USDT:USDT", "DOGE/USDT:USDT"), 1e6, 0.2, 2), tickers, known)
    assert [c.symbol for c in fixed[0]] == ["ETH/USDT:USDT"] and [d[0] for d in fixed[1]] == ["DOGE/USDT:USDT"]

    src = ReplaySource(S.data_dir)
    t = datetime(2025, 1, 7, 1, tzinfo=UTC)
    score = score_snapshot(src.snapshot(BTC, t), S.signal)
    votes = [Vote(f"m{i}", BTC, Action.LONG, 0.95, "x") for i in range(5)]
    strict = ConsensusRules(ConsensusSettings(quorum=6), SignalSettings())
    assert decide(BTC, t, votes, score, ConsensusRules(S.consensus, S.signal)) == decide(BTC, t, votes, score, S)
    assert "need 6" in decide(BTC, t, votes, score, strict).reason  # five votes, a quorum of six
