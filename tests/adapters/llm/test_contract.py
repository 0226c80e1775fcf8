"""Every LLM adapter on its real SDK against a local server speaking that SDK's wire protocol.

One contract, six providers (openai, deepseek, openrouter, anthropic, ollama, xai): a valid answer,
malformed JSON, a schema violation, a timeout, a 429 (then success), a 500, a 401, a refusal; the
request the server received (model, structured-output parameter, auth) is checked too.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from agents.llm.base import LLMTimeout, LLMUnavailable
from core.errors import LLMOutputError, RateLimited, TransientError
from core.types import Action
from tests.adapters.llm.harness import (
    PRICE_IN,
    PRICE_OUT,
    VALID,
    Case,
    Verdict,
    _ask,
    _no_secret,
)
from tests.fakes.llm_servers import (
    answer,
    delay,
    http_error,
    malformed,
    rate_limited,
    refusal,
    schema_violation,
    server_error,
)

# --------------------------------------------------------------------------- the contract


def test_valid_answer_is_parsed_with_usage_and_cost(case: Case):
    case.server.enqueue(answer(VALID, usage=(1000, 250)))
    res = _ask(case)
    assert res.parsed == Verdict(action=Action.LONG, confidence=0.72, rationale="trend and volume agree")
    assert json.loads(res.raw) == VALID
    assert (res.usage.input_tokens, res.usage.output_tokens) == (1000, 250)
    assert res.cost_usd == pytest.approx(1000 / 1e6 * PRICE_IN + 250 / 1e6 * PRICE_OUT)
    assert res.provider == case.name
    assert res.model == f"{case.name}-test-model"
    assert 0 < res.latency_s < 5
    assert case.server.calls == 1
    req = case.server.last_request
    if case.name != "xai":
        assert req.body["model"] == f"{case.name}-test-model"
    else:
        assert req.body["model"] == "xai-test-model"
    case.check_request(req)


def test_default_responder_answers_from_the_request_schema(case: Case):
    """No script: the fake derives a schema-valid answer from the schema the adapter sent."""
    res = _ask(case)
    assert isinstance(res.parsed, Verdict)
    assert 0.0 <= res.parsed.confidence <= 1.0
    assert res.usage.input_tokens == 120 and res.usage.output_tokens == 45


def test_malformed_json_is_invalid_output_with_raw_text(case: Case):
    case.server.enqueue(malformed('{"action": "LONG", "confidence": 0.8, "rationale": "cut'))
    with pytest.raises(LLMOutputError) as ei:
        _ask(case)
    assert ei.value.reason == "invalid_output"
    assert '"rationale": "cut' in ei.value.raw
    _no_secret(case, ei.value)


@pytest.mark.parametrize("bad", [
    {"action": "BUY!!", "confidence": 0.5, "rationale": "x"},
    {"action": "LONG", "confidence": 1.7, "rationale": "x"},
    {"action": "LONG", "confidence": 0.5},
])
def test_schema_violation_is_invalid_output(case: Case, bad: dict[str, Any]):
    case.server.enqueue(schema_violation(bad))
    with pytest.raises(LLMOutputError) as ei:
        _ask(case)
    assert ei.value.reason == "invalid_output"
    assert json.loads(ei.value.raw) == bad
    assert "schema violation" in str(ei.value)


def test_timeout_raises_llm_timeout_within_the_limit(case: Case):
    case.server.enqueue(delay(6.0, then=answer(VALID)))
    start = time.monotonic()
    with pytest.raises(LLMTimeout) as ei:
        _ask(case, timeout_s=0.3)
    elapsed = time.monotonic() - start
    # it waited for the limit, and gave up long before the server's answer (6 s) came
    assert 0.25 <= elapsed < 4.0, elapsed
    assert case.server.calls == 1  # the SDK did not retry on its own
    _no_secret(case, ei.value)


def test_rate_limit_then_success(case: Case):
    case.server.enqueue(rate_limited(retry_after=2), answer(VALID))
    with pytest.raises(RateLimited) as ei:
        _ask(case)
    assert isinstance(ei.value, TransientError)
    assert ei.value.retry_after == pytest.approx(2.0)
    assert case.server.calls == 1  # no hidden SDK retry
    _no_secret(case, ei.value)
    res = _ask(case)  # the panel's retry
    assert res.parsed.action is Action.LONG
    assert case.server.calls == 2


def test_rate_limit_without_retry_after(case: Case):
    case.server.enqueue(rate_limited(retry_after=None))
    with pytest.raises(RateLimited) as ei:
        _ask(case)
    assert ei.value.retry_after is None


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_is_transient_and_not_retried_by_the_sdk(case: Case, status: int):
    case.server.enqueue(server_error(status))
    with pytest.raises(TransientError) as ei:
        _ask(case)
    assert not isinstance(ei.value, RateLimited)
    assert case.server.calls == 1
    _no_secret(case, ei.value)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_unavailable_and_names_the_fix_not_the_key(case: Case, status: int):
    leaked = f"Incorrect API key provided: {case.key}" if case.key else "bad key"
    case.server.enqueue(http_error(status, leaked))
    with pytest.raises(LLMUnavailable) as ei:
        _ask(case)
    _no_secret(case, ei.value)
    fix = {"openai": "OPENAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY", "openrouter": "OPENROUTER_API_KEY",
           "anthropic": "ANTHROPIC_API_KEY", "xai": "XAI_API_KEY", "ollama": "OLLAMA_API_KEY"}[case.name]
    assert fix in str(ei.value)


def test_not_found_is_unavailable(case: Case):
    case.server.enqueue(http_error(404, "model not found"))
    with pytest.raises(LLMUnavailable):
        _ask(case)


def test_refusal(case: Case):
    case.server.enqueue(refusal("I can't give trading advice."))
    with pytest.raises(LLMOutputError) as ei:
        _ask(case)
    assert ei.value.reason == case.refusal_reason
    assert "trading advice" in ei.value.raw


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't provide trading recommendations.",
    "I cannot help with financial decisions like this one.",
    "As an AI, I must decline to give investment advice.",
])
def test_prose_refusal_is_refused_not_invalid(case: Case, text: str):
    """A plain-text refusal sent as the answer (no refusal field, no JSON) is a refusal for every adapter."""
    case.server.enqueue(answer(text, usage=(400, 20)))
    with pytest.raises(LLMOutputError) as ei:
        _ask(case)
    assert ei.value.reason == "refused"
    assert ei.value.raw == text
    assert (ei.value.input_tokens, ei.value.output_tokens) == (400, 20)


def test_prose_that_is_not_a_refusal_stays_invalid_output(case: Case):
    case.server.enqueue(answer("LONG, I think, with 0.7 confidence: the trend is up."))
    with pytest.raises(LLMOutputError) as ei:
        _ask(case)
    assert ei.value.reason == "invalid_output"


@pytest.mark.parametrize("wrap", [
    "```json\n{}\n```",
    "```\n{}\n```",
    "  ```JSON\n{}\n```  \n",
    "Here is my verdict:\n```json\n{}\n```\nGood luck.",
])
def test_json_in_a_markdown_fence_is_unwrapped(case: Case, wrap: str):
    case.server.enqueue(answer(wrap.replace("{}", json.dumps(VALID, indent=2)), usage=(90, 30)))
    res = _ask(case)
    assert res.parsed.action is Action.LONG and res.parsed.confidence == pytest.approx(0.72)
    assert (res.usage.input_tokens, res.usage.output_tokens) == (90, 30)


@pytest.mark.parametrize("behaviour", ["malformed", "schema", "refusal"])
def test_unusable_answer_carries_its_tokens_and_cost(case: Case, behaviour: str):
    """Tokens of an answer that fails validation are still spent: the error carries them."""
    b = {"malformed": answer('{"action": "LONG", "confidence": 0.8', usage=(1000, 250)),
         "schema": answer({"action": "BUY!!", "confidence": 3, "rationale": "x"}, usage=(1000, 250)),
         "refusal": answer("I can't help with that request.", usage=(1000, 250))}[behaviour]
    case.server.enqueue(b)
    with pytest.raises(LLMOutputError) as ei:
        _ask(case)
    assert (ei.value.input_tokens, ei.value.output_tokens) == (1000, 250)
    assert ei.value.cost_usd == pytest.approx(1000 / 1e6 * PRICE_IN + 250 / 1e6 * PRICE_OUT)


def test_per_call_timeout_is_honoured_after_a_longer_one(case: Case):
    """A long timeout on one call does not leak into the next, shorter one (clients are per timeout)."""
    case.server.enqueue(answer(VALID), delay(1.2, then=answer(VALID)))
    assert _ask(case, timeout_s=10).parsed.action is Action.LONG
    with pytest.raises(LLMTimeout):
        _ask(case, timeout_s=0.3)
