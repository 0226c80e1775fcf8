"""Kelly's way back (issue 13, item 10): a rolling window, a minimum sample and a prior, so a bad start
cannot lock the kelly profile out for good; the live cycle and the backtest read the same record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.positions import track_record_from
from risk import evaluate, get_profile
from risk.formulas import kelly_star
from risk.track import TrackRecord, track_record, with_prior
from tests.unit.risk_builders import position, risk_input

KELLY = get_profile("kelly")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def closed(i: int, pnl: float, at: datetime) -> object:
    p = position(pid=f"P{i}", opened_at=at - timedelta(hours=5))
    return p.with_(qty_open=0, closed_at=at, realised_pnl=pnl, fees_paid=1.0, funding_paid=0.0, exit_reason="stop")


def kelly_verdict(track: TrackRecord | None, at: datetime):
    return evaluate(risk_input(profile="kelly", atr_pct=2.0, atr_1h=300.0, track=track,
                               acct=replace(risk_input().account, now=at)))


def test_rolling_window_by_count_and_by_age_and_only_the_past():
    prof = KELLY
    trades = [closed(i, -50.0 if i < 30 else 80.0, T0 + timedelta(hours=i)) for i in range(80)]
    at = T0 + timedelta(days=5)
    tr = track_record(trades, at, prof)
    assert tr.n_trades == prof.kelly_window_trades == 50  # the last 50: 30..79, all wins
    assert tr.win_rate == 1.0
    # a trade closed after the decision time is not in the record (a rerun at an earlier time)
    assert track_record(trades, T0 + timedelta(hours=9, minutes=30), prof).n_trades == 10
    # trades older than the window have aged out
    assert track_record(trades, T0 + timedelta(days=prof.kelly_window_days, hours=39, minutes=30), prof).n_trades == 40
    assert track_record(trades, T0 + timedelta(days=prof.kelly_window_days + 10), prof) is None
    # the pipeline function the live cycle and the backtest call is the same rule
    assert track_record_from(trades, at, "kelly") == tr


def test_prior_shrinks_a_few_unlucky_trades_towards_the_prior():
    raw = TrackRecord(0.45, 1.2, 20)
    assert kelly_star(raw.win_rate, raw.win_loss_ratio) < 0
    post = with_prior(raw, KELLY)
    assert post.n_trades == 20
    assert post.win_rate == pytest.approx((0.45 * 20 + 0.5 * 10) / 30)
    assert post.win_loss_ratio == pytest.approx((1.2 * 20 + 1.5 * 10) / 30)
    assert kelly_star(post.win_rate, post.win_loss_ratio) > 0
    v = kelly_verdict(raw, T0)
    assert v.approved, v.reasons
    # a record that is clearly bad stays "no edge"
    v = kelly_verdict(TrackRecord(0.2, 0.8, 50), T0)
    assert not v.approved and any("kelly: no edge over the last 50 trades" in r for r in v.reasons)


def test_kelly_recovers_after_a_losing_start():
    """A simulated account: the first 25 trades lose, after that the strategy has an edge (60% wins at
    2:1). Once Kelly says "no edge" the profile waits; the losers age out of the window, it trades the
    fallback size again, rebuilds its record and sizes by Kelly again. Before the fix (all trades, no
    window) it was denied at every later decision and never traded again."""
    pnl_seq = [-100.0] * 25 + [200.0, 200.0, -100.0, 200.0, -100.0] * 400
    trades: list = []
    verdicts = []
    t = T0
    for _ in range(24 * 200):  # a decision every hour for 200 days; at most one trade per 6 h
        t += timedelta(hours=1)
        if trades and t - trades[-1].closed_at < timedelta(hours=6):
            continue
        v = kelly_verdict(track_record(trades, t, KELLY), t)
        verdicts.append((t, v))
        if v.approved:
            trades.append(closed(len(trades), pnl_seq[len(trades)] + 1.0, t + timedelta(hours=5)))
    denied = [tt for tt, v in verdicts if any("no edge" in r for r in v.reasons)]
    assert denied, "the losing start must first make Kelly say no edge"
    first_denial = denied[0]
    later = [tt for tt, v in verdicts if v.approved and tt > first_denial]
    assert later, "locked out for good"
    # it comes back within the window, first at the fallback size, then by Kelly on its new record
    assert later[0] - first_denial <= timedelta(days=KELLY.kelly_window_days + 1)
    notes = [" ".join(v.reasons) for tt, v in verdicts if v.approved and tt > first_denial]
    assert any("fallback" in n for n in notes) and any("kelly: f*=" in n for n in notes[-20:])
    assert len(trades) > 60
