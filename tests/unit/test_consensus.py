"""Consensus: hand-checked cases and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.consensus import consensus, vote_score
from core.settings import ConsensusSettings, SignalSettings
from core.types import Action, Vote

SYM = "BTC/USDT:USDT"
T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
SIG = SignalSettings()
CS = ConsensusSettings()  # quorum 3, agreement 0.6, panel_weight 0.6


def v(member: str, action: Action | None, conf: float = 0.8, reason: str | None = None, symbol: str = SYM) -> Vote:
    return Vote(member_id=member, symbol=symbol, action=action, confidence=conf,
                abstain_reason=reason if action is None else None)


def test_vote_score_maps_into_the_signal_zones():
    assert vote_score(Action.LONG, 0.0, SIG) == pytest.approx(0.45)
    assert vote_score(Action.LONG, 1.0, SIG) == pytest.approx(1.0)
    assert vote_score(Action.SHORT, 0.5, SIG) == pytest.approx(-0.725)
    assert vote_score(Action.WAIT, 0.9, SIG) == 0.0


def test_unanimous_long_by_hand():
    votes = [v("a", Action.LONG, 1.0), v("b", Action.LONG, 1.0), v("c", Action.LONG, 0.0)]
    d = consensus(SYM, T0, votes, 0.5, CS, SIG)
    panel = (1.0 + 1.0 + 0.45) / 3
    assert d.tally["panel_score"] == pytest.approx(panel, abs=1e-6)
    assert d.combined_score == pytest.approx(0.6 * panel + 0.4 * 0.5)
    assert d.action is Action.LONG and not d.fallback_to_math
    assert d.dissent == ()
    assert d.votes_valid == 3 and d.votes_total == 3


def test_dissent_and_abstentions_recorded():
    votes = [v("a", Action.LONG, 0.9), v("b", Action.LONG, 0.9), v("c", Action.LONG, 0.9),
             v("d", Action.SHORT, 0.7), v("e", None, reason="timeout")]
    d = consensus(SYM, T0, votes, 0.6, CS, SIG)
    assert d.action is Action.LONG
    assert d.dissent == ("d:SHORT(0.70)",)
    assert d.votes_valid == 4 and d.votes_total == 5
    assert d.tally["LONG"] == pytest.approx(0.75)


def test_no_quorum_falls_back_to_math():
    votes = [v("a", Action.SHORT, 1.0), v("b", None, reason="timeout"), v("c", None, reason="invalid_output")]
    d = consensus(SYM, T0, votes, 0.7, CS, SIG)
    assert d.fallback_to_math and d.action is Action.LONG
    assert "no quorum" in d.reason and "math score alone" in d.reason
    assert d.dissent == ("a:SHORT(1.00)",)
    d0 = consensus(SYM, T0, [], -0.2, CS, SIG)
    assert d0.fallback_to_math and d0.action is Action.WAIT and d0.votes_total == 0


def test_agreement_threshold_blocks_split_panel():
    votes = [v("a", Action.LONG, 1.0), v("b", Action.LONG, 1.0), v("c", Action.LONG, 1.0),
             v("d", Action.WAIT, 0.5), v("e", Action.WAIT, 0.5), v("f", Action.SHORT, 0.1)]
    d = consensus(SYM, T0, votes, 0.9, CS, SIG)
    assert d.action is Action.WAIT  # LONG share 0.5 < 0.6
    assert "agreement" in d.reason


def test_weights_from_track_record():
    votes = [v("a", Action.LONG, 1.0), v("b", Action.LONG, 1.0), v("c", Action.LONG, 1.0),
             v("d", Action.SHORT, 1.0), v("e", Action.SHORT, 1.0)]
    assert consensus(SYM, T0, votes, 0.5, CS, SIG).action is Action.WAIT  # share 0.6 but combined low
    heavy = consensus(SYM, T0, votes, 0.5, CS, SIG, weights={"d": 0.1, "e": 0.1})
    assert heavy.action is Action.LONG


def test_other_symbols_ignored():
    votes = [v("a", Action.SHORT, 1.0, symbol="ETH/USDT:USDT")] * 3
    d = consensus(SYM, T0, votes, 0.0, CS, SIG)
    assert d.votes_total == 0 and d.fallback_to_math


# --------------------------------------------------------------------------- properties

members = [f"m{i}" for i in range(8)]
vote_st = st.builds(
    lambda action, conf, reason: (action, conf, reason),
    st.sampled_from([Action.LONG, Action.SHORT, Action.WAIT, None]),
    st.floats(0, 1),
    st.sampled_from(["timeout", "invalid_output", "refused"]),
)
settings_st = st.builds(
    ConsensusSettings,
    quorum=st.integers(1, 5),
    agreement=st.floats(0.34, 1.0),
    panel_weight=st.floats(0.0, 1.0),
)


def _votes(raw: list) -> list[Vote]:
    return [v(members[i], a, c, r) for i, (a, c, r) in enumerate(raw)]


weights_st = st.one_of(st.none(), st.dictionaries(st.sampled_from(members), st.floats(0.0, 3.0)))


@settings(max_examples=300, deadline=None)
@given(raw=st.lists(vote_st, max_size=8), math_score=st.floats(-1, 1), cs=settings_st,
       weights=weights_st, data=st.data())
def test_vote_order_never_matters(raw, math_score, cs, weights, data):
    votes = _votes(raw)
    shuffled = data.draw(st.permutations(votes))
    assert consensus(SYM, T0, votes, math_score, cs, SIG, weights) == \
        consensus(SYM, T0, shuffled, math_score, cs, SIG, weights)


@settings(max_examples=400, deadline=None)
@given(raw=st.lists(vote_st, max_size=7), math_score=st.floats(-1, 1), cs=settings_st,
       wait_conf=st.floats(0, 1), weights=weights_st)
def test_adding_a_wait_vote_never_turns_wait_into_a_trade(raw, math_score, cs, wait_conf, weights):
    votes = _votes(raw)
    before = consensus(SYM, T0, votes, math_score, cs, SIG, weights)
    extra = Vote(member_id="zz-new", symbol=SYM, action=Action.WAIT, confidence=wait_conf)
    after = consensus(SYM, T0, [*votes, extra], math_score, cs, SIG, weights)
    if before.action is Action.WAIT:
        assert after.action is Action.WAIT


@settings(max_examples=300, deadline=None)
@given(side=st.sampled_from([Action.LONG, Action.SHORT]), confs=st.lists(st.floats(0, 1), min_size=0, max_size=8),
       n_abstain=st.integers(0, 3), past=st.floats(1e-6, 0.55), cs=settings_st)
def test_unanimous_votes_with_math_past_threshold_are_followed(side, confs, n_abstain, past, cs):
    # panel_weight == 1 ignores the math score; unanimous zero-confidence votes then sit exactly on
    # the threshold (WAIT): the only corner where the property needs the math score to count.
    if cs.panel_weight == 1.0 and all(c == 0.0 for c in confs):
        cs = cs.model_copy(update={"panel_weight": 0.99})
    sign = 1 if side is Action.LONG else -1
    math_score = sign * (0.45 + past)
    votes = [v(members[i], side, c) for i, c in enumerate(confs)]
    votes += [Vote(member_id=f"x{i}", symbol=SYM, action=None, abstain_reason="timeout") for i in range(n_abstain)]
    d = consensus(SYM, T0, votes, math_score, cs, SIG)
    assert d.action is side
    assert d.dissent == ()


@settings(max_examples=200, deadline=None)
@given(raw=st.lists(vote_st, max_size=8), math_score=st.floats(-1, 1), cs=settings_st)
def test_no_quorum_means_fallback_to_math(raw, math_score, cs):
    votes = _votes(raw)
    d = consensus(SYM, T0, votes, math_score, cs, SIG)
    n_valid = sum(1 for x in votes if x.valid)
    assert d.fallback_to_math == (n_valid < cs.quorum)
    if d.fallback_to_math:
        expected = Action.LONG if math_score > 0.45 else Action.SHORT if math_score < -0.45 else Action.WAIT
        assert d.action is expected
        assert "no quorum" in d.reason
