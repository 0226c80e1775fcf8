"""Build a panel member's provider from settings and the environment; say why one is unavailable.

A member is available when its SDK imports, it is not disabled (`enabled: false`), and its key (or,
for ollama, its host) is present. `member.enabled is None` means "enabled when the key/host is
present"; `member.base_url` overrides the endpoint from the environment.

Environment: OPENAI_API_KEY, OPENAI_BASE_URL, DEEPSEEK_API_KEY, DEEPSEEK_BASE_URL, ANTHROPIC_API_KEY,
ANTHROPIC_BASE_URL, XAI_API_KEY, XAI_API_HOST, OLLAMA_HOST, OPENROUTER_API_KEY, OPENROUTER_BASE_URL.

`probe(member)` is a cheap reachability check for `quorum doctor` (a model list or a gRPC channel
handshake, short timeout, no tokens spent).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass

from agents.llm.base import LLMProvider, LLMUnavailable
from core.settings import PanelMember

KEY_ENV: dict[str, str | None] = {
    "openai": "OPENAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "xai": "XAI_API_KEY",
    "ollama": None,
}
ENDPOINT_ENV: dict[str, str] = {
    "openai": "OPENAI_BASE_URL",
    "deepseek": "DEEPSEEK_BASE_URL",
    "openrouter": "OPENROUTER_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "xai": "XAI_API_HOST",
    "ollama": "OLLAMA_HOST",
}
DEFAULT_ENDPOINT: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "deepseek": "https://api.deepseek.com",
    "openrouter": "https://openrouter.ai/api/v1",
    "anthropic": "https://api.anthropic.com",
    "xai": "api.x.ai",
    "ollama": None,  # no default: a local model is used only when OLLAMA_HOST (or base_url) is set
}
SDK_MODULE = {
    "openai": ("openai", "openai"),
    "deepseek": ("openai", "openai"),
    "openrouter": ("openai", "openai"),
    "anthropic": ("anthropic", "anthropic"),
    "xai": ("xai_sdk", "xai-sdk"),
    "ollama": ("ollama", "ollama"),
}
ADAPTER_MODULE = {
    "openai": "agents.llm.openai_adapter",
    "deepseek": "agents.llm.openai_adapter",
    "openrouter": "agents.llm.openai_adapter",
    "anthropic": "agents.llm.anthropic_adapter",
    "xai": "agents.llm.xai_adapter",
    "ollama": "agents.llm.ollama_adapter",
}


@dataclass(frozen=True)
class MemberStatus:
    member_id: str
    available: bool
    reason: str
    provider: str = ""
    model: str = ""
    endpoint: str | None = None


def _get(env: Mapping[str, str], name: str | None) -> str | None:
    if not name:
        return None
    value = env.get(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def endpoint_for(member: PanelMember, env: Mapping[str, str] = os.environ) -> str | None:
    """member.base_url, else the provider's endpoint variable, else its public default."""
    return member.base_url or _get(env, ENDPOINT_ENV[member.provider]) or DEFAULT_ENDPOINT[member.provider]


def _sdk_missing(member: PanelMember, load: bool = True) -> str | None:
    """Why the member's SDK cannot be used, or None. `load=False` only looks for it on the path (no
    import: the SDKs take seconds to import, wasted on a member without a key, which is not used)."""
    module, dist = SDK_MODULE[member.provider]
    try:
        if not load:
            if importlib.util.find_spec(module) is None:
                raise ModuleNotFoundError(module)
            return None
        importlib.import_module(module)
        importlib.import_module(ADAPTER_MODULE[member.provider])
    except ImportError as exc:
        return f"SDK {module!r} cannot be imported ({exc.__class__.__name__}); install it: pip install {dist}"
    return None


def member_status(member: PanelMember, env: Mapping[str, str] = os.environ) -> MemberStatus:
    """Whether `member` can be used with this environment, and a human reason (how to fix it)."""
    endpoint = endpoint_for(member, env)

    def status(ok: bool, reason: str) -> MemberStatus:
        return MemberStatus(member.id, ok, reason, member.provider, member.model, endpoint)

    if member.enabled is False:
        return status(False, f"disabled in settings (panel member {member.id!r} has enabled: false)")
    missing = _sdk_missing(member, load=False)
    if missing:
        return status(False, missing)
    key_env = KEY_ENV[member.provider]
    if key_env and not _get(env, key_env):
        return status(False, f"no API key: set {key_env}")
    missing = _sdk_missing(member)  # it will be used: does it import (a broken install says so here)?
    if missing:
        return status(False, missing)
    if member.provider == "ollama" and not endpoint:
        return status(False, "no Ollama host: set OLLAMA_HOST (e.g. http://127.0.0.1:11434) "
                             "or the member's base_url")
    how = "enabled in settings" if member.enabled else (
        f"{key_env} is set" if key_env else "OLLAMA_HOST is set" if not member.base_url else "base_url is set")
    return status(True, f"{how}; endpoint {endpoint}")


def build_provider(member: PanelMember, env: Mapping[str, str] = os.environ) -> LLMProvider:
    """The adapter for `member`, configured from `env`. Raises LLMUnavailable (with how to fix it)
    when member_status says it is unavailable."""
    st = member_status(member, env)
    if not st.available:
        raise LLMUnavailable(f"{member.id}: {st.reason}")
    endpoint = st.endpoint
    prices = {"price_in_per_mtok": member.price_in_per_mtok, "price_out_per_mtok": member.price_out_per_mtok}
    p = member.provider
    if p in ("openai", "deepseek", "openrouter"):
        from agents.llm.openai_adapter import OpenAIProvider

        return OpenAIProvider(member.model, api_key=_get(env, KEY_ENV[p]) or "", base_url=endpoint,
                              provider=p, member_id=member.id, **prices)
    if p == "anthropic":
        from agents.llm.anthropic_adapter import AnthropicProvider

        return AnthropicProvider(member.model, api_key=_get(env, "ANTHROPIC_API_KEY") or "", base_url=endpoint,
                                 member_id=member.id, **prices)
    if p == "xai":
        from agents.llm.xai_adapter import XAIProvider

        return XAIProvider(member.model, api_key=_get(env, "XAI_API_KEY") or "", api_host=endpoint,
                           member_id=member.id, **prices)
    if p == "ollama":
        from agents.llm.ollama_adapter import OllamaProvider

        return OllamaProvider(member.model, host=endpoint, member_id=member.id, **prices)
    raise LLMUnavailable(f"{member.id}: unknown provider {p!r}")  # pragma: no cover - Literal in settings


def probe(member: PanelMember, env: Mapping[str, str] = os.environ, timeout_s: float = 3.0) -> MemberStatus:
    """member_status plus a cheap reachability check of the endpoint (no tokens spent)."""
    st = member_status(member, env)
    if not st.available:
        return st

    def status(ok: bool, reason: str) -> MemberStatus:
        return MemberStatus(member.id, ok, reason, member.provider, member.model, st.endpoint)

    try:
        provider = build_provider(member, env)
    except LLMUnavailable as exc:
        return status(False, str(exc))
    try:
        return status(True, _reach(provider, member, timeout_s))
    except LLMUnavailable as exc:
        return status(False, str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable", never a crash
        from agents.llm.base import scrub

        secrets = [_get(env, k) for k in KEY_ENV.values() if k]
        return status(False, f"unreachable at {st.endpoint}: {type(exc).__name__}: {scrub(exc, *secrets)}")
    finally:
        close = getattr(provider, "close", None)
        if close:
            close()


def _reach(provider: object, member: PanelMember, timeout_s: float) -> str:
    p = member.provider
    if p in ("openai", "deepseek", "openrouter", "anthropic"):
        import anthropic
        import openai

        client = provider.client  # type: ignore[attr-defined]
        try:
            if p == "anthropic":
                client.models.list(limit=1, timeout=timeout_s)
            else:
                client.models.list(timeout=timeout_s)
        except (openai.AuthenticationError, openai.PermissionDeniedError,
                anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
            raise LLMUnavailable(f"authentication refused (HTTP {exc.status_code}); check {KEY_ENV[p]}") from None
        except (openai.APIStatusError, anthropic.APIStatusError) as exc:
            # the endpoint answered: reachable even when it has no model list
            return f"reachable at {getattr(provider, 'base_url', '')} (model list: HTTP {exc.status_code})"
        return f"reachable at {getattr(provider, 'base_url', '')}"
    if p == "ollama":
        client = provider.client(timeout_s)  # type: ignore[attr-defined]
        names = {getattr(m, "model", None) for m in client.list().models}
        if member.model not in names and f"{member.model}:latest" not in names:
            raise LLMUnavailable(f"model {member.model!r} not pulled at {provider.host}: "  # type: ignore[attr-defined]
                                 f"run `ollama pull {member.model}`")
        return f"reachable at {provider.host}, model {member.model} present"  # type: ignore[attr-defined]
    if p == "xai":
        import grpc

        host, insecure = provider.api_host, provider.insecure  # type: ignore[attr-defined]
        channel = grpc.insecure_channel(host) if insecure else grpc.secure_channel(
            host, grpc.ssl_channel_credentials())
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise LLMUnavailable(f"unreachable: no gRPC connection to {host} within {timeout_s:g}s; "
                                 "check XAI_API_HOST / the network") from None
        finally:
            channel.close()
        return f"reachable at {host}"
    raise LLMUnavailable(f"unknown provider {p!r}")  # pragma: no cover
