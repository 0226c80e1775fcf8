"""Every LLM adapter on its real SDK against a local server speaking that SDK's wire protocol.

One contract, six providers (openai, deepseek, openrouter, anthropic, ollama, xai): a valid answer,
malformed JSON, a schema violation, a timeout, a 429 (then success), a 500, a 401, a refusal; the
request the server received (model, structured-output parameter, auth) is checked too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, Field

from agents.llm.anthropic_adapter import AnthropicProvider
from agents.llm.base import LLMTimeout, LLMUnavailable, Message
from agents.llm.ollama_adapter import OllamaProvider
from agents.llm.openai_adapter import OpenAIProvider
from agents.llm.registry import build_provider
from agents.llm.xai_adapter import XAIProvider
from core.errors import LLMOutputError, RateLimited, TransientError
from core.settings import PanelMember
from core.types import Action
from tests.fakes.llm_servers import (
    AnthropicServer,
    FakeLLMServer,
    OllamaServer,
    OpenAIServer,
    RecordedRequest,
    XAIServer,
    answer,
    delay,
    http_error,
    malformed,
    max_in_flight,
    rate_limited,
    refusal,
    schema_violation,
    server_error,
)


class Verdict(BaseModel):
    """The model's verdict on one candidate."""

    action: Action
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str


VALID = {"action": "LONG", "confidence": 0.72, "rationale": "trend and volume agree"}
MESSAGES = [
    Message("system", "You are a careful crypto-futures analyst."),
    Message("user", "BTC/USDT:USDT: price above MA200, RSI 61. Verdict?"),
]
PRICE_IN, PRICE_OUT = 2.0, 8.0  # $ per million tokens

KEYS = {
    "openai": "sk-test-openai-0123456789",
    "deepseek": "sk-test-deepseek-0123456789",
    "openrouter": "sk-or-test-0123456789",
    "anthropic": "sk-ant-test-0123456789",
    "xai": "xai-test-0123456789",
}


@pytest.fixture(autouse=True)
def _loopback_bypasses_proxies(monkeypatch):
    """CI machines with HTTP(S)_PROXY set must still reach the fakes on 127.0.0.1 directly."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


# --------------------------------------------------------------------------- servers (module scope)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, FakeLLMServer]]:
    started: dict[str, FakeLLMServer] = {
        "openai": OpenAIServer().start(),
        "anthropic": AnthropicServer().start(),
        "ollama": OllamaServer().start(),
        "xai": XAIServer().start(),
    }
    try:
        yield started
    finally:
        for srv in started.values():
            srv.stop()


# --------------------------------------------------------------------------- per-provider harness


def _check_openai(req: RecordedRequest) -> None:
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEYS['openai']}"
    rf = req.body["response_format"]
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["name"] == "Verdict"
    schema = rf["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["action", "confidence", "rationale"]
    assert schema["properties"]["confidence"]["maximum"] == 1.0
    assert [m["role"] for m in req.body["messages"]] == ["system", "user"]


def _check_deepseek(req: RecordedRequest) -> None:
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEYS['deepseek']}"
    assert req.body["response_format"] == {"type": "json_object"}
    system = req.body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are a careful crypto-futures analyst.")
    assert "```json" in system["content"] and '"confidence"' in system["content"]


def _check_openrouter(req: RecordedRequest) -> None:
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEYS['openrouter']}"
    assert req.headers.get("x-title") == "Quorum"
    assert req.body["response_format"]["type"] == "json_schema"


def _check_anthropic(req: RecordedRequest) -> None:
    assert req.path.startswith("/v1/messages")
    # anthropic 2.x sends the API key as a bearer token (1.x used x-api-key): accept either
    assert KEYS["anthropic"] in (req.headers.get("x-api-key"), req.headers.get("authorization", "")[7:])
    assert req.headers.get("anthropic-version")
    (tool,) = req.body["tools"]
    assert req.body["tool_choice"] == {"type": "tool", "name": tool["name"]}
    assert set(tool["input_schema"]["properties"]) == {"action", "confidence", "rationale"}
    assert tool["description"]
    assert req.body["system"] == "You are a careful crypto-futures analyst."
    assert [m["role"] for m in req.body["messages"]] == ["user"]
    assert req.body["max_tokens"] > 0


def _check_ollama(req: RecordedRequest) -> None:
    assert req.path == "/api/chat"
    assert req.body["stream"] is False
    fmt = req.body["format"]
    assert fmt["type"] == "object" and set(fmt["properties"]) == {"action", "confidence", "rationale"}


def _check_xai(req: RecordedRequest) -> None:
    assert req.path == "/xai_api.Chat/GetCompletion"
    assert req.headers["authorization"] == f"Bearer {KEYS['xai']}"
    rf = req.body["response_format"]
    assert rf["format_type"] == "FORMAT_TYPE_JSON_SCHEMA"
    assert set(json.loads(rf["schema"])["properties"]) == {"action", "confidence", "rationale"}
    assert [m["role"] for m in req.body["messages"]] == ["ROLE_SYSTEM", "ROLE_USER"]
    assert req.body["messages"][1]["text"].startswith("BTC/USDT:USDT")


@dataclass
class Case:
    name: str
    server: FakeLLMServer
    provider: Any
    check_request: Callable[[RecordedRequest], None]
    refusal_reason: str
    key: str | None


SERVER_OF = {"openai": "openai", "deepseek": "openai", "openrouter": "openai",
             "anthropic": "anthropic", "ollama": "ollama", "xai": "xai"}
CHECKS = {"openai": _check_openai, "deepseek": _check_deepseek, "openrouter": _check_openrouter,
          "anthropic": _check_anthropic, "ollama": _check_ollama, "xai": _check_xai}
# every adapter recognises a refusal: by the provider's own field, or by a prose answer that declines
REFUSAL = dict.fromkeys(["openai", "deepseek", "openrouter", "anthropic", "ollama", "xai"], "refused")
PROVIDERS = list(SERVER_OF)


def _env_for(name: str, srv: FakeLLMServer) -> tuple[dict[str, str], str | None]:
    """The environment a user would set to point `name` at `srv`; openrouter uses member.base_url."""
    if name == "openai":
        return {"OPENAI_API_KEY": KEYS[name], "OPENAI_BASE_URL": srv.base_url}, None
    if name == "deepseek":
        return {"DEEPSEEK_API_KEY": KEYS[name], "DEEPSEEK_BASE_URL": srv.base_url}, None
    if name == "openrouter":
        return {"OPENROUTER_API_KEY": KEYS[name]}, srv.base_url
    if name == "anthropic":
        return {"ANTHROPIC_API_KEY": KEYS[name], "ANTHROPIC_BASE_URL": srv.base_url}, None
    if name == "ollama":
        return {"OLLAMA_HOST": srv.base_url}, None
    return {"XAI_API_KEY": KEYS[name], "XAI_API_HOST": srv.api_host}, None  # type: ignore[attr-defined]


@pytest.fixture(params=PROVIDERS)
def case(request, servers) -> Iterator[Case]:
    name = request.param
    srv = servers[SERVER_OF[name]]
    srv.clear()
    env, base_url = _env_for(name, srv)
    member = PanelMember(id=f"m-{name}", provider=name, model=f"{name}-test-model", base_url=base_url,
                         price_in_per_mtok=PRICE_IN, price_out_per_mtok=PRICE_OUT)
    provider = build_provider(member, env)
    yield Case(name, srv, provider, CHECKS[name], REFUSAL[name], KEYS.get(name))
    provider.close()
    srv.clear()


def _ask(c: Case, timeout_s: float = 5.0) -> Any:
    return c.provider.ask(MESSAGES, Verdict, timeout_s=timeout_s)


def _no_secret(c: Case, exc: BaseException) -> None:
    if c.key:
        assert c.key not in str(exc)
        assert c.key not in repr(exc.args)


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


# --------------------------------------------------------------------------- provider specifics


def test_anthropic_text_without_tool_use_is_invalid_output(servers):
    srv = servers["anthropic"]
    srv.clear()
    srv.enqueue(answer("Sure! I think LONG with 0.7 confidence."))
    p = AnthropicProvider("claude-test", api_key=KEYS["anthropic"], base_url=srv.base_url)
    with pytest.raises(LLMOutputError) as ei:
        p.ask(MESSAGES, Verdict, timeout_s=5)
    assert ei.value.reason == "invalid_output"
    assert "LONG with 0.7" in ei.value.raw


def test_anthropic_overloaded_529_is_transient(servers):
    srv = servers["anthropic"]
    srv.clear()
    srv.enqueue(http_error(529, "Overloaded"))
    p = AnthropicProvider("claude-test", api_key=KEYS["anthropic"], base_url=srv.base_url)
    with pytest.raises(TransientError):
        p.ask(MESSAGES, Verdict, timeout_s=5)
    assert srv.calls == 1


def test_deepseek_without_system_message_gets_one_with_the_schema(servers):
    srv = servers["openai"]
    srv.clear()
    p = OpenAIProvider("deepseek-chat", api_key=KEYS["deepseek"], base_url=srv.base_url, provider="deepseek")
    res = p.ask([Message("user", "Verdict?")], Verdict, timeout_s=5)
    assert isinstance(res.parsed, Verdict)
    msgs = srv.last_request.body["messages"]
    assert msgs[0]["role"] == "system" and "```json" in msgs[0]["content"]
    assert msgs[1] == {"role": "user", "content": "Verdict?"}


def test_openai_strict_schema_for_nested_models():
    from agents.llm.openai_adapter import strict_json_schema

    class Leg(BaseModel):
        symbol: str
        size: float = 1.0
        note: str | None = None

    class Plan(BaseModel):
        legs: list[Leg]
        default: int = 3  # a property literally named "default" survives

    schema = strict_json_schema(Plan)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node["additionalProperties"] is False
                assert sorted(node["required"]) == sorted(node["properties"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert "default" in schema["properties"]
    assert "default" not in schema["properties"]["default"]
    assert "default" not in schema["$defs"]["Leg"]["properties"]["size"]
    assert "default" not in json.dumps(schema["$defs"])


def test_openai_connection_refused_is_transient():
    srv = OpenAIServer().start()
    url = srv.base_url
    srv.stop()
    p = OpenAIProvider("gpt-test", api_key=KEYS["openai"], base_url=url)
    with pytest.raises(TransientError) as ei:
        p.ask(MESSAGES, Verdict, timeout_s=2)
    assert KEYS["openai"] not in str(ei.value)


def test_ollama_connection_refused_is_transient():
    srv = OllamaServer().start()
    url = srv.base_url
    srv.stop()
    with pytest.raises(TransientError):
        OllamaProvider("qwen3:8b", host=url).ask(MESSAGES, Verdict, timeout_s=2)


def test_xai_unavailable_host_is_transient_quickly():
    srv = XAIServer().start()
    host = srv.api_host
    srv.stop()
    p = XAIProvider("grok-test", api_key=KEYS["xai"], api_host=host)
    start = time.monotonic()
    with pytest.raises((TransientError, LLMTimeout)):
        p.ask(MESSAGES, Verdict, timeout_s=1.0)
    assert time.monotonic() - start < 8  # fails within its limit, not after a long reconnect wait
    p.close()


def test_xai_host_forms():
    from agents.llm.xai_adapter import split_api_host

    assert split_api_host(None) == ("api.x.ai", False)
    assert split_api_host("https://api.x.ai") == ("api.x.ai", False)
    assert split_api_host("http://10.0.0.5:50051") == ("10.0.0.5:50051", True)
    assert split_api_host("127.0.0.1:50051") == ("127.0.0.1:50051", True)
    assert split_api_host("localhost:50051") == ("localhost:50051", True)
    assert split_api_host("grpc.example.com:443") == ("grpc.example.com:443", False)


def test_xai_reasoning_tokens_count_as_output(servers):
    """Usage comes from the response proto: completion + reasoning tokens are billed as output."""
    srv = servers["xai"]
    srv.clear()
    srv.enqueue(answer(VALID, usage=(300, 70)))
    p = XAIProvider("grok-test", api_key=KEYS["xai"], api_host=srv.api_host,
                    price_in_per_mtok=3.0, price_out_per_mtok=15.0)
    res = p.ask(MESSAGES, Verdict, timeout_s=5)
    assert (res.usage.input_tokens, res.usage.output_tokens) == (300, 70)
    assert res.cost_usd == pytest.approx(300 * 3.0 / 1e6 + 70 * 15.0 / 1e6)
    p.close()


# --------------------------------------------------------------------------- concurrency (the benchmark shape)


def test_six_members_answer_concurrently_each_after_one_second():
    """Six servers each answering after 1 s: the six calls are in flight at the same moment."""
    fakes = {
        "openai": OpenAIServer(delay_s=1.0), "deepseek": OpenAIServer(delay_s=1.0),
        "openrouter": OpenAIServer(delay_s=1.0), "anthropic": AnthropicServer(delay_s=1.0),
        "ollama": OllamaServer(delay_s=1.0), "xai": XAIServer(delay_s=1.0),
    }
    providers = []
    try:
        for name, srv in fakes.items():
            srv.start()
            env, base_url = _env_for(name, srv)
            providers.append(build_provider(
                PanelMember(id=name, provider=name, model=f"{name}-m", base_url=base_url), env))
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda p: p.ask(MESSAGES, Verdict, timeout_s=5), providers))
    finally:
        for p in providers:
            p.close()
        for srv in fakes.values():
            srv.stop()
    assert [r.provider for r in results] == list(fakes)
    assert all(r.latency_s >= 0.95 for r in results)
    in_flight = max_in_flight(*fakes.values())
    assert in_flight == 6, f"at most {in_flight} of six calls were in flight together: not concurrent"
