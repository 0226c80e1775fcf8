"""Fixtures of the LLM adapter tests: the fake servers (one set per module) and `case`, one per provider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.llm.registry import build_provider
from core.settings import PanelMember
from tests.adapters.llm.harness import (
    CHECKS,
    KEYS,
    PRICE_IN,
    PRICE_OUT,
    PROVIDERS,
    REFUSAL,
    SERVER_OF,
    Case,
    _env_for,
)
from tests.fakes.llm_servers import (
    AnthropicServer,
    FakeLLMServer,
    OllamaServer,
    OpenAIServer,
    XAIServer,
)


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
