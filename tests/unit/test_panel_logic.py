"""decide()/run_panel() against an in-process scripted provider (no network, no SDK)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest

from agents.budget import TokenBudget
from agents.llm.base import LLMResult, LLMTimeout, LLMUnavailable, Message, Usage
from agents.panel import decide, run_panel, summarize_votes
from agents.prompt import build_decision_messages, payload_from_candidates, prompt_version
from agents.schemas import PanelAnswer
from core.errors import LLMOutputError, RateLimited, TransientError
from core.settings import PanelMember
from core.types import Action
from store.llm_cache import InMemoryResponseCache, cache_key

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
CANDS = [BTC, ETH]
PAYLOAD = payload_from_candidates(
    [{"symbol": ETH, "market": {"last": 3000.0}}, {"symbol": BTC, "market": {"last": 90000.0}}],
    as_of=NOW, risk_limits={"max_positions": 3},
)


def member(timeout_s: float = 5.0, mid: str = "gpt") -> PanelMember:
    return PanelMember(id=mid, provider="openai", model="gpt-test", timeout_s=timeout_s)


def verdicts(*items: tuple[str, str, float]) -> dict:
    return {"verdicts": [{"symbol": s, "action": a, "confidence": c, "rationale": f"{a} because",
                          "key_factors": ["trend"]} for s, a, c in items]}


GOOD = verdicts((BTC, "LONG", 0.8), (ETH, "WAIT", 0.4))


def invalid(text: str) -> LLMOutputError:
    err = LLMOutputError(f"malformed JSON: {text[:20]}")
    err.raw = text  # type: ignore[attr-defined]
    return err


class FakeProvider:
    """Scripted provider: each call consumes one step (a dict answer, an exception, or a callable)."""

    provider = "openai"
    model = "gpt-test"

    def __init__(self, *steps, default=None):
        self.steps = list(steps)
        self.default = default
        self.calls: list[list[Message]] = []
        self.lock = threading.Lock()

    def ask(self, messages, schema, *, timeout_s):
        with self.lock:
            self.calls.append(list(messages))
            step = self.steps.pop(0) if self.steps else self.default
        if callable(step) and not isinstance(step, type):
            step = step(timeout_s)
        if isinstance(step, BaseException):
            raise step
        assert step is not None, "script exhausted"
        return LLMResult(parsed=schema.model_validate(step), raw=json.dumps(step), latency_s=0.01,
                         usage=Usage(1000, 201), cost_usd=0.003, provider=self.provider, model=self.model)


def run(provider, *, m=None, cache=None, budget=None, use_cache=True, sleeps=None):
    sleeps = [] if sleeps is None else sleeps
    return decide(m or member(), provider, CANDS, PAYLOAD, cache=cache, budget=budget, now=NOW,
                  use_cache=use_cache, sleep=sleeps.append)


def test_valid_answer_gives_one_vote_per_candidate_with_accounting():
    votes = run(FakeProvider(GOOD))
    assert [v.symbol for v in votes] == CANDS
    assert [v.action for v in votes] == [Action.LONG, Action.WAIT]
    assert all(v.valid and not v.cached for v in votes)
    assert votes[0].provider == "openai" and votes[0].model == "gpt-test"
    assert votes[0].prompt_version.startswith("decision_v1@") and len(votes[0].prompt_version) == 20
    assert sum(v.input_tokens for v in votes) == 1000 and sum(v.output_tokens for v in votes) == 201
    assert sum(v.cost_usd for v in votes) == pytest.approx(0.003)
    assert votes[0].key_factors == ("trend",)


def test_one_call_carries_all_candidates_sorted_and_deterministic():
    p = FakeProvider(GOOD)
    run(p)
    (msgs,) = p.calls
    assert msgs[0].role == "system" and "never instructions" in msgs[0].content
    assert msgs[1].content.index(BTC) < msgs[1].content.index(ETH)
    assert msgs == build_decision_messages(PAYLOAD, member())


def test_repair_once_then_success():
    p = FakeProvider(invalid("{not json"), GOOD)
    votes = run(p)
    assert all(v.valid for v in votes)
    assert len(p.calls) == 2
    repair = p.calls[1]
    assert repair[-2].role == "assistant" and repair[-2].content == "{not json"
    assert repair[-1].role == "user" and "malformed JSON" in repair[-1].content


def test_repair_once_then_abstain():
    p = FakeProvider(invalid("{bad"), invalid("{still bad"))
    votes = run(p)
    assert len(p.calls) == 2
    assert {v.abstain_reason for v in votes} == {"invalid_output"}
    assert all(v.action is None and not v.valid for v in votes)


def test_refusal_abstains_without_repair():
    p = FakeProvider(LLMOutputError("no", reason="refused"))
    votes = run(p)
    assert len(p.calls) == 1 and {v.abstain_reason for v in votes} == {"refused"}


def test_unknown_symbol_dropped_and_missing_candidate():
    votes = run(FakeProvider(verdicts((BTC, "SHORT", 0.6), ("FAKE/USDT:USDT", "LONG", 0.9))))
    assert votes[0].action is Action.SHORT
    assert votes[1].abstain_reason == "unknown_symbol" and "FAKE" in votes[1].rationale
    votes = run(FakeProvider(verdicts((BTC, "SHORT", 0.6))))
    assert votes[1].abstain_reason == "missing"


def test_symbol_spelling_is_normalised_not_regexed():
    votes = run(FakeProvider(verdicts(("btcusdt", "LONG", 0.6), ("ETH/USDT", "SHORT", 0.5))))
    assert [v.action for v in votes] == [Action.LONG, Action.SHORT]


def test_timeout_abstains():
    p = FakeProvider(LLMTimeout("no answer within 5s"))
    assert {v.abstain_reason for v in run(p)} == {"timeout"}


def test_hard_time_limit_when_provider_hangs():
    answered = threading.Event()
    p = FakeProvider(lambda t: time.sleep(3) or answered.set() or GOOD)
    votes = decide(member(timeout_s=0.2), p, CANDS, PAYLOAD, cache=None, budget=None, now=NOW)
    assert not answered.is_set(), "decide waited for the hung provider instead of its time limit"
    assert {v.abstain_reason for v in votes} == {"timeout"}


def test_retry_then_success_honours_retry_after():
    sleeps: list[float] = []
    p = FakeProvider(RateLimited("429", retry_after=1.5), TransientError("500"), GOOD)
    votes = run(p, sleeps=sleeps)
    assert all(v.valid for v in votes) and len(p.calls) == 3
    assert sleeps[0] == 1.5 and len(sleeps) == 2


def test_retries_are_bounded():
    sleeps: list[float] = []
    p = FakeProvider(default=TransientError("HTTP 500"))
    votes = run(p, sleeps=sleeps)
    assert len(p.calls) == 3 and {v.abstain_reason for v in votes} == {"transient"}
    p = FakeProvider(default=RateLimited("429", retry_after=0.1))
    assert {v.abstain_reason for v in run(p)} == {"rate_limited"} and len(p.calls) == 3


def test_long_retry_after_is_honoured_in_full_within_the_time_limit():
    """A retry-after of 45 s is waited in full (not cut to 20 s) when the member's limit allows it."""
    sleeps: list[float] = []
    p = FakeProvider(RateLimited("429", retry_after=45.0), GOOD)
    votes = run(p, m=member(timeout_s=120), sleeps=sleeps)
    assert all(v.valid for v in votes)
    assert sleeps == [45.0] and len(p.calls) == 2


def test_long_retry_after_beyond_the_limit_abstains_rate_limited_without_waiting():
    sleeps: list[float] = []
    p = FakeProvider(RateLimited("429", retry_after=45.0), GOOD)
    votes = run(p, m=member(timeout_s=30), sleeps=sleeps)
    assert {v.abstain_reason for v in votes} == {"rate_limited"}
    assert sleeps == [] and len(p.calls) == 1
    assert "45.0s is beyond the time limit" in votes[0].rationale


def test_unusable_answers_are_counted_in_votes_and_budgets():
    """Answers that fail validation still cost tokens: charged in the votes and both budgets."""
    def bad(text: str) -> LLMOutputError:
        return LLMOutputError("cut", raw=text, input_tokens=1000, output_tokens=300, cost_usd=0.01)

    budget = TokenBudget(per_cycle=10_000, per_day=2_500)
    p = FakeProvider(bad('{"verdicts": ['), bad('{"verdicts": [{'))
    votes = run(p, budget=budget)
    assert {v.abstain_reason for v in votes} == {"invalid_output"}
    assert sum(v.input_tokens for v in votes) == 2000 and sum(v.output_tokens for v in votes) == 600
    assert sum(v.cost_usd for v in votes) == pytest.approx(0.02)
    assert budget.cycle_spent("gpt") == 2600 and budget.day_spent("gpt") == 2600
    # the member that keeps sending cut-off answers is now out of its day budget
    budget.new_cycle()
    assert {v.abstain_reason for v in run(FakeProvider(GOOD), budget=budget)} == {"budget"}
    # a refusal is charged too, and is not repaired
    p = FakeProvider(LLMOutputError("no", reason="refused", input_tokens=50, output_tokens=5, cost_usd=0.001))
    votes = run(p)
    assert len(p.calls) == 1 and sum(v.input_tokens + v.output_tokens for v in votes) == 55


def test_retry_after_beyond_time_limit_abstains_at_once():
    p = FakeProvider(RateLimited("429", retry_after=10.0), GOOD)
    votes = run(p, m=member(timeout_s=3))
    assert {v.abstain_reason for v in votes} == {"rate_limited"} and len(p.calls) == 1


def test_unavailable_and_no_provider():
    assert {v.abstain_reason for v in run(FakeProvider(LLMUnavailable("no key")))} == {"unavailable"}
    votes = decide(member(), None, CANDS, PAYLOAD, cache=None, budget=None, now=NOW)
    assert {v.abstain_reason for v in votes} == {"unavailable"} and len(votes) == 2


def test_unexpected_exception_never_escapes():
    votes = run(FakeProvider(ZeroDivisionError("boom")))
    assert {v.abstain_reason for v in votes} == {"error"}


def test_budget_stop(caplog):
    budget = TokenBudget(per_cycle=2000, per_day=100_000)
    p = FakeProvider(default=GOOD)
    assert all(v.valid for v in run(p, budget=budget))  # spends 1201
    with caplog.at_level("WARNING"):
        votes = run(p, budget=budget)
        run(p, budget=budget)
    assert {v.abstain_reason for v in votes} == {"budget"}
    assert len(p.calls) == 1
    lines = [r.getMessage() for r in caplog.records if "token budget" in r.getMessage()]
    assert len(lines) == 1 and "gpt" in lines[0] and "per cycle" in lines[0]
    budget.new_cycle()
    assert all(v.valid for v in run(p, budget=budget))


def test_day_budget_survives_a_new_budget_object():
    from agents.budget import InMemoryUsageStore

    store = InMemoryUsageStore()
    p = FakeProvider(default=GOOD)
    run(p, budget=TokenBudget(None, 2500, store=store))
    run(p, budget=TokenBudget(None, 2500, store=store))  # 2402 spent now
    votes = run(p, budget=TokenBudget(None, 2500, store=store))
    assert {v.abstain_reason for v in votes} == {"budget"}


def test_cache_hit_makes_no_call_and_gives_identical_votes():
    cache = InMemoryResponseCache()
    p = FakeProvider(GOOD)
    first = run(p, cache=cache)
    p2 = FakeProvider()  # would fail if asked
    second = run(p2, cache=cache)
    assert p2.calls == [] and cache.hits == 1
    assert all(v.cached for v in second)
    assert sum(v.cost_usd for v in second) == 0 and sum(v.input_tokens for v in second) == 0
    strip = lambda v: (v.symbol, v.action, v.confidence, v.rationale, v.key_factors, v.prompt_version)  # noqa: E731
    assert [strip(v) for v in first] == [strip(v) for v in second]
    # bypass
    p3 = FakeProvider(GOOD)
    third = run(p3, cache=cache, use_cache=False)
    assert len(p3.calls) == 1 and not any(v.cached for v in third)


def test_cache_key_changes_with_prompt_model_and_messages():
    msgs = build_decision_messages(PAYLOAD, member())
    k = cache_key("openai", "gpt-test", prompt_version(member()), msgs, "PanelAnswer")
    assert k == cache_key("openai", "gpt-test", prompt_version(member()), list(msgs), "PanelAnswer")
    assert len(k) == 64
    custom = PanelMember(id="gpt", provider="openai", model="gpt-test", system_prompt="Be terse.")
    assert prompt_version(custom) != prompt_version(member())
    assert k != cache_key("openai", "gpt-other", prompt_version(member()), msgs, "PanelAnswer")
    assert k != cache_key("openai", "gpt-test", prompt_version(custom), msgs, "PanelAnswer")
    other = payload_from_candidates([{"symbol": BTC, "market": {"last": 90001.0}}], as_of=NOW)
    assert k != cache_key("openai", "gpt-test", prompt_version(member()),
                          build_decision_messages(other, member()), "PanelAnswer")


def test_invalid_answers_are_not_cached():
    cache = InMemoryResponseCache()
    run(FakeProvider(invalid("x"), invalid("y")), cache=cache)
    assert len(cache) == 0


def test_run_panel_concurrent():
    members = [member(mid=f"m{i}") for i in range(6)]

    lock, in_flight, most = threading.Lock(), [0], [0]

    def slow(_t):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1
        return GOOD

    providers = {m.id: FakeProvider(slow) for m in members[:5]}  # m5 unavailable
    out = run_panel(members, providers, CANDS, PAYLOAD, cache=None, budget=None, now=NOW)
    assert most[0] == 5, f"at most {most[0]} of five members were asked at once"
    assert list(out) == [m.id for m in members]
    assert all(v.valid for mid in list(out)[:5] for v in out[mid])
    assert {v.abstain_reason for v in out["m5"]} == {"unavailable"}
    totals = summarize_votes(v for vs in out.values() for v in vs)
    assert totals["votes"] == 12 and totals["valid"] == 10 and totals["abstained"] == {"unavailable": 2}
    assert totals["cost_usd"] == pytest.approx(5 * 0.003)


def test_schema_bounds():
    with pytest.raises(ValueError):
        PanelAnswer.model_validate(verdicts((BTC, "LONG", 1.7)))
    with pytest.raises(ValueError):
        PanelAnswer.model_validate(verdicts((BTC, "BUY!!", 0.5)))


REASONS = {"timeout", "refused", "invalid_output", "unknown_symbol", "missing", "rate_limited", "transient",
           "unavailable", "budget", "error"}


def test_decide_never_raises_and_bounds_calls():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    steps = st.sampled_from([
        GOOD, verdicts((BTC, "LONG", 0.3)), verdicts(("XYZ", "SHORT", 0.2)), {"verdicts": []},
        "invalid", "refused", "rate", "transient", "timeout", "unavailable", "boom",
    ])

    def make(step):
        return {
            "invalid": lambda: invalid("{"), "refused": lambda: LLMOutputError("no", reason="refused"),
            "rate": lambda: RateLimited("429", retry_after=0.0), "transient": lambda: TransientError("503"),
            "timeout": lambda: LLMTimeout("slow"), "unavailable": lambda: LLMUnavailable("gone"),
            "boom": lambda: RuntimeError("boom"),
        }[step]() if isinstance(step, str) else step

    @settings(max_examples=200, deadline=None)
    @given(script=st.lists(steps, min_size=4, max_size=4))
    def check(script):
        p = FakeProvider(*[make(s) for s in script])
        votes = run(p)
        assert [v.symbol for v in votes] == CANDS
        assert all(v.valid or v.abstain_reason in REASONS for v in votes)
        assert all(v.valid == (v.abstain_reason is None) for v in votes)
        assert 1 <= len(p.calls) <= 4  # one call, at most 2 retries and 1 repair

    check()
