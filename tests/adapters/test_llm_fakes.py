"""The fake LLM servers themselves: schema examples, raw wire shapes, and the six-server LocalPanel."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import BaseModel, Field

from agents.llm.base import Message
from agents.llm.registry import build_provider, member_status
from core.settings import default_panel
from core.types import Action
from tests.fakes.llm_servers import (
    LocalPanel,
    OllamaServer,
    OpenAIServer,
    example_from_schema,
    rate_limited,
    schema_in_text,
)


class CandidateVote(BaseModel):
    symbol: str = Field(min_length=3)
    action: Action
    confidence: float = Field(ge=0, le=1)
    key_factors: list[str] = Field(default_factory=list, max_length=5)
    stop_hint: float | None = None


class PanelAnswer(BaseModel):
    votes: list[CandidateVote] = Field(min_length=1)
    summary: str


@pytest.fixture(autouse=True)
def _loopback_bypasses_proxies(monkeypatch):
    """CI machines with HTTP(S)_PROXY set must still reach the fakes on 127.0.0.1 directly."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


def test_example_from_schema_is_valid_for_nested_models():
    value = example_from_schema(PanelAnswer.model_json_schema())
    parsed = PanelAnswer.model_validate(value)
    assert parsed.votes[0].action is Action.LONG
    assert 0 <= parsed.votes[0].confidence <= 1


def test_schema_in_text_finds_the_json_block():
    text = 'Rules...\n```json\n{"type": "object", "properties": {"a": {"type": "integer"}}}\n```\nend'
    assert schema_in_text(text) == {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert schema_in_text("no block") is None


def test_raw_http_429_carries_retry_after_and_requests_are_recorded():
    with OpenAIServer() as srv:
        srv.enqueue(rate_limited(retry_after=7))
        req = urllib.request.Request(srv.base_url + "/chat/completions", data=b'{"model": "m"}',
                                     headers={"Authorization": "Bearer k", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req, timeout=2)
        assert ei.value.code == 429
        assert ei.value.headers["retry-after"] == "7"
        assert json.loads(ei.value.read())["error"]["type"] == "rate_limit_error"
        assert srv.last_request.body == {"model": "m"}
        assert srv.last_request.headers["authorization"] == "Bearer k"


def test_ollama_tags_and_version():
    with OllamaServer(models=("qwen3:8b", "llama3.2:3b")) as srv:
        tags = json.loads(urllib.request.urlopen(srv.base_url + "/api/tags", timeout=2).read())
        assert [m["name"] for m in tags["models"]] == ["qwen3:8b", "llama3.2:3b"]
        version = json.loads(urllib.request.urlopen(srv.base_url + "/api/version", timeout=2).read())
        assert version["version"]


def test_stop_interrupts_a_scripted_delay():
    from tests.fakes.llm_servers import delay

    srv = OllamaServer().start()
    srv.enqueue(delay(30))
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(lambda: urllib.request.urlopen(urllib.request.Request(
            srv.base_url + "/api/chat", data=b"{}", method="POST"), timeout=5).read())
        while srv.calls == 0:
            time.sleep(0.01)
        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < 10  # stop() does not wait out the 30 s answer
        fut.result(timeout=5)


def test_default_panel_against_local_panel_with_nested_schema():
    """All six default members, configured only by LocalPanel.env, answer a nested schema."""
    with LocalPanel() as panel:
        env = panel.env
        members = default_panel()
        assert all(member_status(m, env).available for m in members)
        providers = [build_provider(m, env) for m in members]
        msgs = [Message("system", "Vote on each candidate."), Message("user", "BTC, ETH")]
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda p: p.ask(msgs, PanelAnswer, timeout_s=5), providers))
        for p in providers:
            p.close()
    assert [r.provider for r in results] == ["openai", "xai", "deepseek", "anthropic", "anthropic", "ollama"]
    assert all(isinstance(r.parsed, PanelAnswer) and r.parsed.votes for r in results)
    assert panel.calls == {"openai": 1, "deepseek": 1, "openrouter": 0, "anthropic": 2, "ollama": 1, "xai": 1}
    # prices from the default panel reach the cost: gpt-5.1 at 1.25/10 per Mtok, 120 in / 45 out
    assert results[0].cost_usd == pytest.approx(120 * 1.25 / 1e6 + 45 * 10.0 / 1e6)
    assert results[5].cost_usd == 0.0


def test_local_panel_custom_responder_reaches_every_server():
    seen: list[str] = []

    def responder(body: dict) -> str:
        seen.append(body.get("model", ""))
        return json.dumps({"votes": [{"symbol": "ETH/USDT:USDT", "action": "SHORT", "confidence": 0.3,
                                      "key_factors": [], "stop_hint": None}], "summary": "s"})

    with LocalPanel(responder=responder) as panel:
        p = build_provider(default_panel()[1], panel.env)  # grok over gRPC
        res = p.ask([Message("user", "x")], PanelAnswer, timeout_s=5)
        p.close()
    assert res.parsed.votes[0].action is Action.SHORT
    assert seen == ["grok-4"]
