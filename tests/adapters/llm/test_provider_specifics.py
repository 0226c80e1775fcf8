"""What only one provider does (Anthropic's tool use and 529, DeepSeek's system message, OpenAI's strict
schema, xAI's hosts and reasoning tokens), connection failures, and six members answering concurrently,
each adapter on its real SDK against a local server speaking that SDK's wire protocol (`harness`)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import BaseModel

from agents.llm.anthropic_adapter import AnthropicProvider
from agents.llm.base import LLMTimeout, Message
from agents.llm.ollama_adapter import OllamaProvider
from agents.llm.openai_adapter import OpenAIProvider
from agents.llm.registry import build_provider
from agents.llm.xai_adapter import XAIProvider
from core.errors import LLMOutputError, TransientError
from core.settings import PanelMember
from tests.adapters.llm.harness import (
    KEYS,
    MESSAGES,
    VALID,
    Verdict,
    _env_for,
)
from tests.fakes.llm_servers import (
    AnthropicServer,
    OllamaServer,
    OpenAIServer,
    XAIServer,
    answer,
    http_error,
    max_in_flight,
)

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
