"""The shared harness of the LLM adapter tests: the answer model, the messages, the fake keys, what each
provider's request must look like, and the `Case` a test receives (one provider built from the
environment a user would set, pointed at its local fake server)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from agents.llm.base import Message
from core.types import Action
from tests.fakes.llm_servers import (
    FakeLLMServer,
    RecordedRequest,
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


def _ask(c: Case, timeout_s: float = 5.0) -> Any:
    return c.provider.ask(MESSAGES, Verdict, timeout_s=timeout_s)


def _no_secret(c: Case, exc: BaseException) -> None:
    if c.key:
        assert c.key not in str(exc)
        assert c.key not in repr(exc.args)
