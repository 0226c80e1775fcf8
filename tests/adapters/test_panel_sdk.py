"""The decision panel through each default member's REAL SDK against local wire-protocol servers.

For each of the six default members (gpt, grok, deepseek, claude-sonnet, claude-opus, qwen-local):
a valid answer, malformed JSON (repaired, or abstaining after one repair), schema-violating answers
(confidence 1.7, action "BUY!!", an unknown symbol), a timeout, a 429 then success, and a 500 —
each ends in votes or abstentions with the right reason, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from agents.budget import TokenBudget
from agents.llm.registry import build_provider
from agents.panel import decide
from agents.prompt import payload_from_candidates
from core.settings import PanelMember, default_panel
from core.types import Action
from store.llm_cache import InMemoryResponseCache
from tests.fakes.llm_servers import (
    LocalPanel,
    answer,
    delay,
    malformed,
    rate_limited,
    schema_violation,
    server_error,
)

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
CANDS = [BTC, ETH]
PAYLOAD = payload_from_candidates(
    [{"symbol": BTC, "market": {"last": 90000.0}, "math": {"final": 0.5}},
     {"symbol": ETH, "market": {"last": 3000.0}, "math": {"final": -0.1}}],
    as_of=NOW, risk_limits={"max_positions": 3},
)
MEMBERS = {m.id: m for m in default_panel()}
SERVER_OF = {"openai": "openai", "deepseek": "deepseek", "openrouter": "openrouter", "anthropic": "anthropic",
             "xai": "xai", "ollama": "ollama"}


def verdict(symbol: str, action: str = "LONG", confidence: float = 0.7) -> dict:
    return {"symbol": symbol, "action": action, "confidence": confidence, "rationale": "trend up",
            "key_factors": ["4h trend"]}


GOOD = {"verdicts": [verdict(BTC, "LONG", 0.8), verdict(ETH, "WAIT", 0.4)]}


@pytest.fixture(autouse=True)
def _loopback_bypasses_proxies(monkeypatch):
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def panel() -> Iterator[LocalPanel]:
    with LocalPanel() as p:
        yield p


@pytest.fixture(params=list(MEMBERS))
def setup(request, panel):
    """(member with a short time limit, its provider on the real SDK, its fake server)."""
    member: PanelMember = MEMBERS[request.param].model_copy(update={"timeout_s": 3.0})
    server = panel.servers[SERVER_OF[member.provider]]
    server.clear()
    provider = build_provider(member, env=panel.env)
    yield member, provider, server
    server.clear()
    close = getattr(provider, "close", None)
    if close:
        close()


def run(member, provider, *, cache=None, budget=None, timeout_s=None):
    if timeout_s is not None:
        member = member.model_copy(update={"timeout_s": timeout_s})
    return decide(member, provider, CANDS, PAYLOAD, cache=cache, budget=budget, now=NOW,
                  sleep=lambda s: None)


def reasons(votes) -> list[str | None]:
    return [v.abstain_reason for v in votes]


def test_valid_answer(setup):
    member, provider, server = setup
    server.enqueue(answer(GOOD, usage=(1000, 100)))
    votes = run(member, provider)
    assert [v.action for v in votes] == [Action.LONG, Action.WAIT]
    assert all(v.valid for v in votes)
    assert votes[0].provider == member.provider and votes[0].model == member.model
    assert votes[0].prompt_version.startswith("decision_v1@")
    assert sum(v.input_tokens for v in votes) == 1000 and sum(v.output_tokens for v in votes) == 100
    expected_cost = 1000 / 1e6 * member.price_in_per_mtok + 100 / 1e6 * member.price_out_per_mtok
    assert sum(v.cost_usd for v in votes) == pytest.approx(expected_cost)
    assert server.calls == 1


def test_cache_hit_makes_no_call(setup):
    member, provider, server = setup
    cache = InMemoryResponseCache()
    server.enqueue(answer(GOOD))
    first = run(member, provider, cache=cache)
    second = run(member, provider, cache=cache)
    assert server.calls == 1
    assert [(v.action, v.confidence) for v in first] == [(v.action, v.confidence) for v in second]
    assert all(v.cached and v.cost_usd == 0 for v in second)


def test_malformed_json_repaired(setup):
    member, provider, server = setup
    server.enqueue(malformed('{"verdicts": [{"symbol": "BTC/USDT:USDT", "action": "LO'), answer(GOOD))
    votes = run(member, provider)
    assert all(v.valid for v in votes)
    assert server.calls == 2


def test_malformed_json_twice_abstains(setup):
    member, provider, server = setup
    server.enqueue(malformed(), malformed("not json at all"))
    votes = run(member, provider)
    assert reasons(votes) == ["invalid_output", "invalid_output"]
    assert server.calls == 2


@pytest.mark.parametrize("bad", [
    {"verdicts": [verdict(BTC, "LONG", 1.7), verdict(ETH)]},
    {"verdicts": [verdict(BTC, "BUY!!", 0.7), verdict(ETH)]},
], ids=["confidence-1.7", "action-BUY!!"])
def test_schema_violation_abstains_after_one_repair(setup, bad):
    member, provider, server = setup
    server.enqueue(schema_violation(bad), schema_violation(bad))
    votes = run(member, provider)
    assert reasons(votes) == ["invalid_output", "invalid_output"]
    assert server.calls == 2


def test_unknown_symbol_dropped(setup):
    member, provider, server = setup
    server.enqueue(answer({"verdicts": [verdict(BTC, "SHORT", 0.6), verdict("MOON/USDT:USDT", "LONG", 0.9)]}))
    votes = run(member, provider)
    assert votes[0].action is Action.SHORT and votes[0].valid
    assert votes[1].abstain_reason == "unknown_symbol"
    assert server.calls == 1


def test_timeout(setup):
    member, provider, server = setup
    server.enqueue(delay(3.0, answer(GOOD)))
    votes = run(member, provider, timeout_s=0.5)
    assert reasons(votes) == ["timeout", "timeout"]
    assert all(v.latency_s < 3.0 for v in votes)


def test_429_then_success(setup):
    member, provider, server = setup
    server.enqueue(rate_limited(retry_after=0.05), answer(GOOD))
    votes = run(member, provider)
    assert all(v.valid for v in votes)
    assert server.calls == 2


def test_500_retried_then_abstains(setup):
    member, provider, server = setup
    server.enqueue(server_error(500), server_error(500), server_error(500))
    votes = run(member, provider)
    assert reasons(votes) == ["transient", "transient"]
    assert server.calls == 3


def test_500_then_success(setup):
    member, provider, server = setup
    server.enqueue(server_error(500), answer(GOOD))
    assert all(v.valid for v in run(member, provider))


def test_budget_stop_makes_no_call(setup):
    member, provider, server = setup
    votes = run(member, provider, budget=TokenBudget(per_cycle=10, per_day=None))
    assert reasons(votes) == ["budget", "budget"]
    assert server.calls == 0


def test_six_members_run_concurrently(monkeypatch):
    """Six real SDKs, six servers each answering after 1 s: all six calls are in flight at once."""
    from agents.panel import run_panel, summarize_votes
    from tests.fakes.panel_answers import panel_responder

    with LocalPanel(delay_s=1.0, responder=panel_responder) as slow:
        members = [m.model_copy(update={"timeout_s": 10.0}) for m in default_panel()]
        providers = {m.id: build_provider(m, env=slow.env) for m in members}
        out = run_panel(members, providers, CANDS, PAYLOAD, cache=None, budget=None, now=NOW)
        in_flight = slow.max_in_flight
        for p in providers.values():
            getattr(p, "close", lambda: None)()
    votes = [v for vs in out.values() for v in vs]
    assert summarize_votes(votes)["valid"] == 12, [(v.member_id, v.abstain_reason, v.rationale) for v in votes]
    assert in_flight >= 6, f"at most {in_flight} calls were in flight together: not concurrent"
    # the candidate-aware responder: BTC's math score +0.5 -> LONG, ETH's -0.1 -> WAIT, for every SDK
    assert {(v.symbol, v.action) for v in votes} == {(BTC, Action.LONG), (ETH, Action.WAIT)}


def test_refusal(setup):
    from tests.fakes.llm_servers import refusal

    member, provider, server = setup
    server.enqueue(refusal("I can't give trading advice."), refusal("Still no."))
    votes = run(member, provider)
    # every SDK: a refusal (the provider's field or a prose refusal) abstains at once, no repair call
    assert set(reasons(votes)) == {"refused"}
    assert server.calls == 1


def test_fenced_json_answer_is_a_valid_vote(setup):
    member, provider, server = setup
    server.enqueue(answer("```json\n" + __import__("json").dumps(GOOD, indent=2) + "\n```"))
    votes = run(member, provider)
    assert [v.action for v in votes] == [Action.LONG, Action.WAIT]


def test_invalid_answers_are_charged_in_votes_and_budget(setup):
    """Two cut-off answers (the first, then the repair): both calls' tokens are on the votes and spent."""
    member, provider, server = setup
    server.enqueue(malformed('{"verdicts": [{"symbol": "BTC'), malformed('{"verdicts": ['))
    budget = TokenBudget(per_cycle=None, per_day=None)
    votes = run(member, provider, budget=budget)
    assert set(reasons(votes)) == {"invalid_output"}
    assert server.calls == 2
    assert sum(v.input_tokens for v in votes) == 2 * 120
    assert sum(v.output_tokens for v in votes) == 2 * 45
    assert budget.cycle_spent(member.id) == 2 * 165
    if member.price_in_per_mtok:
        assert sum(v.cost_usd for v in votes) > 0
