"""Registry: which panel members are usable with this environment, how they are built, and probes."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from agents.llm import registry
from agents.llm.anthropic_adapter import AnthropicProvider
from agents.llm.base import LLMUnavailable, Message
from agents.llm.ollama_adapter import OllamaProvider
from agents.llm.openai_adapter import OpenAIProvider
from agents.llm.registry import build_provider, member_status, probe
from agents.llm.xai_adapter import XAIProvider
from core.settings import PanelMember, default_panel
from tests.fakes.llm_servers import AnthropicServer, OllamaServer, OpenAIServer, XAIServer, answer


class Pick(BaseModel):
    symbol: str
    confidence: float = Field(ge=0, le=1)


ALL_KEYS = {
    "OPENAI_API_KEY": "sk-o-secret-1111",
    "DEEPSEEK_API_KEY": "sk-d-secret-2222",
    "ANTHROPIC_API_KEY": "sk-a-secret-3333",
    "XAI_API_KEY": "xai-secret-4444",
    "OPENROUTER_API_KEY": "sk-or-secret-5555",
    "OLLAMA_HOST": "http://127.0.0.1:11434",
}


@pytest.fixture(autouse=True)
def _loopback_bypasses_proxies(monkeypatch):
    """CI machines with HTTP(S)_PROXY set must still reach the fakes on 127.0.0.1 directly."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


def member(provider: str, **kw) -> PanelMember:
    return PanelMember(id=kw.pop("id", f"m-{provider}"), provider=provider, model=kw.pop("model", "m"), **kw)


@pytest.mark.parametrize("provider, var", [
    ("openai", "OPENAI_API_KEY"), ("deepseek", "DEEPSEEK_API_KEY"), ("openrouter", "OPENROUTER_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"), ("xai", "XAI_API_KEY"), ("ollama", "OLLAMA_HOST"),
])
def test_unavailable_without_key_or_host_says_how_to_fix(provider, var):
    env = {k: v for k, v in ALL_KEYS.items() if k != var}
    st = member_status(member(provider), env)
    assert st.available is False
    assert f"set {var}" in st.reason
    assert st.member_id == f"m-{provider}"
    with pytest.raises(LLMUnavailable, match=f"set {var}"):
        build_provider(member(provider), env)


def test_empty_key_counts_as_absent():
    assert member_status(member("openai"), {"OPENAI_API_KEY": "  "}).available is False


def test_enabled_when_key_present_and_the_right_adapter_is_built():
    env = dict(ALL_KEYS)
    expected = {"openai": OpenAIProvider, "deepseek": OpenAIProvider, "openrouter": OpenAIProvider,
                "anthropic": AnthropicProvider, "xai": XAIProvider, "ollama": OllamaProvider}
    for provider, cls in expected.items():
        st = member_status(member(provider), env)
        assert st.available, st.reason
        p = build_provider(member(provider, price_in_per_mtok=1.5, price_out_per_mtok=6.0), env)
        assert isinstance(p, cls)
        assert p.provider == provider and p.model == "m"
        assert (p.price_in_per_mtok, p.price_out_per_mtok) == (1.5, 6.0)
        assert not any(v in st.reason for k, v in env.items() if k.endswith("_KEY"))
        p.close()


def test_default_panel_follows_the_environment():
    panel = default_panel()
    assert [member_status(m, {}).available for m in panel] == [False] * len(panel)
    assert all(member_status(m, ALL_KEYS).available for m in panel)
    only_anthropic = {"ANTHROPIC_API_KEY": "k" * 10}
    assert {m.id for m in panel if member_status(m, only_anthropic).available} == {"claude-sonnet", "claude-opus"}


def test_explicitly_disabled_member_is_unavailable_even_with_a_key():
    st = member_status(member("openai", enabled=False), ALL_KEYS)
    assert not st.available and "enabled: false" in st.reason


def test_explicitly_enabled_member_still_needs_its_key():
    st = member_status(member("xai", enabled=True), {})
    assert not st.available and "set XAI_API_KEY" in st.reason


def test_missing_sdk_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(registry.SDK_MODULE, "xai", ("xai_sdk_not_installed_here", "xai-sdk"))
    st = member_status(member("xai"), ALL_KEYS)
    assert not st.available
    assert "pip install xai-sdk" in st.reason


def test_default_endpoints_and_env_endpoints():
    assert build_provider(member("deepseek"), ALL_KEYS).base_url == "https://api.deepseek.com"
    assert build_provider(member("openrouter"), ALL_KEYS).base_url == "https://openrouter.ai/api/v1"
    assert build_provider(member("openai"), ALL_KEYS).base_url == "https://api.openai.com/v1"
    assert build_provider(member("xai"), ALL_KEYS).api_host == "api.x.ai"
    env = {**ALL_KEYS, "DEEPSEEK_BASE_URL": "http://ds.local/v1", "XAI_API_HOST": "127.0.0.1:9999"}
    assert build_provider(member("deepseek"), env).base_url == "http://ds.local/v1"
    x = build_provider(member("xai"), env)
    assert (x.api_host, x.insecure) == ("127.0.0.1:9999", True)


def test_member_base_url_overrides_the_environment_endpoint():
    """env points at server A, the member's base_url at server B: the call lands on B."""
    with OpenAIServer() as a, OpenAIServer() as b:
        env = {"OPENAI_API_KEY": "sk-test-override", "OPENAI_BASE_URL": a.base_url}
        m = member("openai", model="gpt-x", base_url=b.base_url)
        st = member_status(m, env)
        assert st.endpoint == b.base_url
        b.enqueue(answer({"symbol": "SOL/USDT:USDT", "confidence": 0.4}))
        p = build_provider(m, env)
        res = p.ask([Message("user", "pick one")], Pick, timeout_s=5)
        assert res.parsed.symbol == "SOL/USDT:USDT"
        assert a.calls == 0 and b.calls == 1
        assert b.last_request.body["model"] == "gpt-x"
        p.close()


def test_ollama_base_url_alone_enables_it():
    st = member_status(member("ollama", base_url="http://10.0.0.7:11434"), {})
    assert st.available and st.endpoint == "http://10.0.0.7:11434"


# --------------------------------------------------------------------------- probe


def test_probe_reachable_servers():
    with OpenAIServer() as o, AnthropicServer() as a, OllamaServer(models=("qwen3:8b",)) as ol, XAIServer() as x:
        env = {"OPENAI_API_KEY": "sk-1234", "OPENAI_BASE_URL": o.base_url,
               "ANTHROPIC_API_KEY": "sk-ant-1234", "ANTHROPIC_BASE_URL": a.base_url,
               "OLLAMA_HOST": ol.base_url, "XAI_API_KEY": "xai-1234", "XAI_API_HOST": x.api_host}
        for m in (member("openai"), member("anthropic"), member("ollama", model="qwen3:8b"), member("xai")):
            st = probe(m, env, timeout_s=2)
            assert st.available, (m.provider, st.reason)
            assert "reachable" in st.reason
        assert o.calls == 1 and o.last_request.path == "/v1/models"
        assert a.last_request.path.startswith("/v1/models")
        assert ol.last_request.path == "/api/tags"
        # a model that is not pulled is reported with the fix
        st = probe(member("ollama", model="llama9:70b"), env, timeout_s=2)
        assert not st.available and "ollama pull llama9:70b" in st.reason


def test_probe_down_endpoints_are_unavailable_quickly():
    import time

    o, ol, x = OpenAIServer().start(), OllamaServer().start(), XAIServer().start()
    env = {"OPENAI_API_KEY": "sk-secret-9876", "OPENAI_BASE_URL": o.base_url,
           "OLLAMA_HOST": ol.base_url, "XAI_API_KEY": "xai-secret-9876", "XAI_API_HOST": x.api_host}
    for s in (o, ol, x):
        s.stop()
    start = time.monotonic()
    for m in (member("openai"), member("ollama"), member("xai")):
        st = probe(m, env, timeout_s=0.5)
        assert not st.available, m.provider
        assert "secret-9876" not in st.reason
    assert time.monotonic() - start < 10  # three probes of 0.5 s, not the SDKs' default timeouts


def test_auth_refused_names_the_key_variable_not_the_key():
    with OpenAIServer() as o:
        from tests.fakes.llm_servers import http_error

        env = {"DEEPSEEK_API_KEY": "sk-bad-0000", "DEEPSEEK_BASE_URL": o.base_url}
        o.enqueue(http_error(401, "bad key sk-bad-0000"))
        p = build_provider(member("deepseek"), env)
        with pytest.raises(LLMUnavailable) as ei:
            p.ask([Message("user", "x")], Pick, timeout_s=2)
        assert "DEEPSEEK_API_KEY" in str(ei.value) and "sk-bad-0000" not in str(ei.value)
        p.close()


def test_probe_of_unavailable_member_does_not_touch_the_network():
    st = probe(member("anthropic"), {})
    assert not st.available and "set ANTHROPIC_API_KEY" in st.reason
