"""core.leaderboard against hand-computed examples."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.leaderboard import (
    MemberResult,
    VoteOutcome,
    bootstrap_diff_ci,
    brier_score,
    hit_stats,
    leaderboard,
    member_row,
    vote_stats,
)
from core.metrics import TradeRecord
from core.types import Action, Side

D0 = datetime(2025, 1, 1, tzinfo=UTC)
L, S, W = Action.LONG, Action.SHORT, Action.WAIT

# Five votes of one member:
#   1 LONG  conf 0.8  fwd4h +1 %  fwd24h +2 %   -> hit at 4h, hit at 24h
#   2 SHORT conf 0.6  fwd4h +1 %  fwd24h -3 %   -> miss at 4h, hit at 24h
#   3 LONG  conf 0.9  fwd4h -2 %  fwd24h None   -> miss at 4h, unknown at 24h (excluded)
#   4 WAIT  conf 0.5                            -> not directional (excluded)
#   5 abstained (timeout)                       -> not directional (excluded)
VOTES = [
    VoteOutcome(L, 0.8, 0.01, 0.02, latency_s=2.0, cost_usd=0.010),
    VoteOutcome(S, 0.6, 0.01, -0.03, latency_s=4.0, cost_usd=0.020),
    VoteOutcome(L, 0.9, -0.02, None, latency_s=3.0, cost_usd=0.015),
    VoteOutcome(W, 0.5, 0.0, 0.0, latency_s=1.0, cost_usd=0.005),
    VoteOutcome(None, 0.0, 0.01, 0.01, latency_s=30.0, cost_usd=0.0),
]


def test_brier_hand_example():
    # (0.8-1)^2 + (0.6-0)^2 + (0.9-0)^2 = 0.04 + 0.36 + 0.81 = 1.21; / 3 = 0.403333
    assert brier_score([0.8, 0.6, 0.9], [1, 0, 0]) == pytest.approx(1.21 / 3)
    assert brier_score([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.25)
    assert math.isnan(brier_score([], []))


def test_hit_rate_and_brier_4h():
    h = hit_stats(VOTES, "4h")
    # directional with a 4h return: votes 1, 2, 3 -> hits 1 (only vote 1): 1/3
    assert (h.n, h.hits) == (3, 1)
    assert h.hit_rate == pytest.approx(1 / 3)
    # Brier: (0.8-1)^2 + (0.6-0)^2 + (0.9-0)^2 = 1.21 / 3
    assert h.brier == pytest.approx(1.21 / 3)


def test_hit_rate_and_brier_24h():
    h = hit_stats(VOTES, "24h")
    # votes 1 and 2 (vote 3 unknown): both hit -> 1.0; Brier ((0.8-1)^2 + (0.6-1)^2)/2 = (0.04+0.16)/2 = 0.1
    assert (h.n, h.hits) == (2, 2)
    assert h.hit_rate == 1.0
    assert h.brier == pytest.approx(0.1)


def test_vote_stats():
    v = vote_stats(VOTES)
    # 1 abstention of 5 = 0.2; 1 WAIT of 5 = 0.2; latencies 1,2,3,4,30 -> median 3
    # cost 0.01+0.02+0.015+0.005+0 = 0.05 -> 0.01 per decision
    assert v["n_votes"] == 5
    assert v["abstention_rate"] == pytest.approx(0.2)
    assert v["wait_rate"] == pytest.approx(0.2)
    assert v["median_latency_s"] == pytest.approx(3.0)
    assert v["total_cost_usd"] == pytest.approx(0.05)
    assert v["cost_per_decision"] == pytest.approx(0.01)


def test_bootstrap_ci_contains_true_difference():
    rng = np.random.default_rng(42)
    cons = rng.normal(0.0, 0.01, 500)
    member = cons + 0.005 + rng.normal(0.0, 0.002, 500)  # true mean difference 0.005
    ci = bootstrap_diff_ci(member, cons, runs=2000, seed=1)
    assert ci.paired
    assert ci.low < 0.005 < ci.high
    assert ci.low > 0 and ci.significant
    assert ci.mean_diff == pytest.approx(float(np.mean(member - cons)))
    # reproducible
    assert bootstrap_diff_ci(member, cons, runs=2000, seed=1) == ci


def test_bootstrap_ci_unpaired_and_null():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.01, 300)
    b = rng.normal(0.0, 0.01, 200)  # different lengths -> unpaired; same true mean
    ci = bootstrap_diff_ci(a, b, runs=1000, seed=3)
    assert not ci.paired and ci.low < 0 < ci.high and not ci.significant
    empty = bootstrap_diff_ci([], [0.1], runs=10, seed=0)
    assert math.isnan(empty.mean_diff)
    json.dumps(empty.to_dict(), allow_nan=False)


def _curve(rets: list[float]) -> pd.Series:
    idx = pd.DatetimeIndex([D0 + timedelta(hours=4 * i) for i in range(len(rets) + 1)])
    return pd.Series(100.0 * np.cumprod([1.0, *[1.0 + r for r in rets]]), index=idx)


def _trade(pnl: float) -> TradeRecord:
    return TradeRecord(
        "BTC/USDT", Side.LONG, D0, D0 + timedelta(hours=4), 100.0, 101.0, 1.0, pnl, 0.1, 0.0, 1.0
    )


def test_member_row_and_leaderboard_ranking():
    end = D0 + timedelta(hours=40)
    good = MemberResult("gpt", _curve([0.02, 0.01] * 5), [_trade(2.0), _trade(-1.0)], VOTES)
    bad = MemberResult("grok", _curve([-0.01, 0.005] * 5), [_trade(-1.0)], VOTES[:2])
    cons = MemberResult("consensus", _curve([0.01, 0.0] * 5), [_trade(1.0)], [])
    rows = leaderboard([bad, cons, good], D0, end, runs=300, seed=5)
    assert [r.member_id for r in rows] == ["gpt", "consensus", "grok"]
    assert [r.rank for r in rows] == [1, 2, 3]
    gpt = rows[0]
    # 1.02^5 * 1.01^5 - 1
    assert gpt.total_return == pytest.approx(1.02**5 * 1.01**5 - 1)
    assert gpt.win_rate == 0.5 and gpt.n_trades == 2
    assert gpt.hit_rate_4h == pytest.approx(1 / 3) and gpt.brier_24h == pytest.approx(0.1)
    assert gpt.abstention_rate == pytest.approx(0.2)
    # per-period differences are +0.01 every period -> CI collapses on 0.01
    ci = gpt.diff_vs_consensus
    assert ci is not None and ci.mean_diff == pytest.approx(0.01)
    assert ci.low == pytest.approx(0.01) and ci.high == pytest.approx(0.01)
    assert rows[1].diff_vs_consensus is None  # consensus vs itself
    assert math.isnan(rows[1].abstention_rate)  # no votes recorded for the consensus
    d = gpt.to_dict()
    json.dumps([r.to_dict() for r in rows], allow_nan=False)
    assert d["diff_vs_consensus_significant"] is True and d["member_id"] == "gpt" and d["rank"] == 1
    # rank by drawdown: lower is better
    by_dd = leaderboard([bad, cons, good], D0, end, sort_by="max_drawdown", runs=50)
    assert by_dd[-1].member_id == "grok"
    with pytest.raises(ValueError):
        leaderboard([good], D0, end, sort_by="nope")


def test_member_row_without_consensus():
    r = member_row(MemberResult("qwen", _curve([0.0, 0.01]), (), ()), D0, D0 + timedelta(hours=8))
    assert r.rank == 0 and r.diff_vs_consensus is None and r.n_votes == 0


def test_forward_return_point_in_time():
    from core.leaderboard import forward_return

    # closes known at 00:00, 04:00, 08:00 ... = 100, 102, 99, 110, ...
    idx = pd.date_range(D0, periods=8, freq="4h")
    close = pd.Series([100.0, 102.0, 99.0, 110.0, 120.0, 90.0, 95.0, 100.0], index=idx)
    # from 00:00 to 04:00: 102/100 - 1 = 0.02
    assert forward_return(close, D0, timedelta(hours=4)) == pytest.approx(0.02)
    # decision at 02:00 uses the last known price (100 at 00:00); +4h -> 06:00 -> last known 102
    assert forward_return(close, D0 + timedelta(hours=2), timedelta(hours=4)) == pytest.approx(0.02)
    # 24h after 00:00 is beyond the last point (28:00 is the last) -> 24:00 = 95: 95/100 - 1
    assert forward_return(close, D0, timedelta(hours=24)) == pytest.approx(-0.05)
    # 24h after 08:00 = 32:00 is not known yet
    assert forward_return(close, D0 + timedelta(hours=8), timedelta(hours=24)) is None


def test_vote_outcome_from_vote():
    from core.types import Vote

    v = Vote("gpt", "BTC/USDT", Action.LONG, 0.7, latency_s=1.5, cost_usd=0.02)
    o = VoteOutcome.from_vote(v, D0, 0.01, -0.02)
    assert (o.action, o.confidence, o.latency_s, o.cost_usd) == (Action.LONG, 0.7, 1.5, 0.02)
    bad = Vote("gpt", "BTC/USDT", Action.LONG, 0.7, abstain_reason="invalid_output")
    assert VoteOutcome.from_vote(bad, D0, None, None).action is None


def test_block_bootstrap_widens_the_ci_for_autocorrelated_returns() -> None:
    """Differences that persist for a day at a time (a position held 24 h): the i.i.d. resample
    understates the uncertainty of their mean; the day-block resample does not."""
    import numpy as np

    from core.leaderboard import bootstrap_diff_ci

    rng = np.random.default_rng(3)
    d = np.repeat(rng.normal(0, 0.01, 40), 24)  # 40 days, each difference held 24 periods
    iid = bootstrap_diff_ci(d, np.zeros_like(d), runs=2000, seed=1)
    blk = bootstrap_diff_ci(d, np.zeros_like(d), runs=2000, seed=1, block=24)
    assert (blk.high - blk.low) > 2.5 * (iid.high - iid.low)
    assert blk.low <= d.mean() <= blk.high
    same = bootstrap_diff_ci(d, np.zeros_like(d), runs=200, seed=1, block=1)
    assert same == bootstrap_diff_ci(d, np.zeros_like(d), runs=200, seed=1)  # block=1 is the i.i.d. resample
