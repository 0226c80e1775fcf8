"""Grok on the real `xai_sdk` gRPC client.

`client.chat.create(model, messages=[system(...), user(...)], response_format=<schema>)` then
`chat.sample()`; the content is validated with pydantic here (not `chat.parse`) so the raw text of
a bad answer is kept. The SDK's gRPC retry policy is switched off (the panel retries) and the
per-call timeout is the client's timeout, so one client is kept per distinct timeout.
gRPC status → error: DEADLINE_EXCEEDED → LLMTimeout, RESOURCE_EXHAUSTED → RateLimited,
UNAVAILABLE / INTERNAL / UNKNOWN / ABORTED → TransientError, UNAUTHENTICATED / PERMISSION_DENIED /
NOT_FOUND / INVALID_ARGUMENT → LLMUnavailable.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import xai_sdk
from xai_sdk.chat import assistant, system, user

from agents.llm.base import (
    LLMResult,
    LLMTimeout,
    LLMUnavailable,
    Message,
    T,
    Usage,
    scrub,
)
from agents.llm.common import ClientsByTimeout, ProviderBase
from core.errors import RateLimited, TransientError

DEFAULT_API_HOST = "api.x.ai"
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")


def split_api_host(value: str | None) -> tuple[str, bool]:
    """(host[:port], insecure) from "api.x.ai", "https://api.x.ai", "http://127.0.0.1:50051" or
    "127.0.0.1:50051". http:// and bare loopback hosts are insecure (plaintext) channels."""
    value = (value or DEFAULT_API_HOST).strip().rstrip("/")
    if value.startswith("http://"):
        return value.removeprefix("http://"), True
    if value.startswith("https://"):
        return value.removeprefix("https://"), False
    host = value.rsplit(":", 1)[0] if value.count(":") == 1 or value.startswith("[") else value
    return value, host in _LOOPBACK


class XAIProvider(ProviderBase):
    """One Grok model. `api_host` accepts the forms of `split_api_host`; `use_insecure_channel`
    overrides the guess (plaintext gRPC, e.g. a local test server)."""

    provider = "xai"

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        api_host: str | None = None,
        use_insecure_channel: bool | None = None,
        price_in_per_mtok: float = 0.0,
        price_out_per_mtok: float = 0.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        member_id: str | None = None,
    ):
        if not api_key:
            raise LLMUnavailable("xai: no API key; set XAI_API_KEY")
        self.model = model
        self.member_id = member_id or "xai"
        self.api_host, guessed_insecure = split_api_host(api_host)
        self.insecure = guessed_insecure if use_insecure_channel is None else use_insecure_channel
        self.price_in_per_mtok = price_in_per_mtok
        self.price_out_per_mtok = price_out_per_mtok
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._key = api_key
        self._clients = ClientsByTimeout(self._build_client)

    def __repr__(self) -> str:
        return f"XAIProvider(model={self.model!r}, api_host={self.api_host!r}, insecure={self.insecure})"

    def client(self, timeout_s: float) -> xai_sdk.Client:
        return self._clients.get(timeout_s)

    def _build_client(self, timeout_s: float) -> xai_sdk.Client:
        try:
            return xai_sdk.Client(
                api_key=self._key,
                api_host=self.api_host,
                use_insecure_channel=self.insecure,
                timeout=timeout_s,
                channel_options=[("grpc.enable_retries", 0)],
            )
        except ValueError as exc:
            raise LLMUnavailable(f"xai: cannot build the client ({scrub(exc, self._key)}); "
                                 "check XAI_API_KEY and XAI_API_HOST") from None

    def request_messages(self, messages: list[Message]) -> list[Any]:
        out = []
        for m in messages:
            if m.role == "system":
                out.append(system(m.content))
            elif m.role == "assistant":
                out.append(assistant(m.content))
            else:
                out.append(user(m.content))
        return out

    def ask(self, messages: list[Message], schema: type[T], *, timeout_s: float) -> LLMResult[T]:
        client = self.client(timeout_s)
        extra: dict[str, Any] = {}
        if self.max_tokens is not None:
            extra["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            extra["temperature"] = self.temperature
        start = time.monotonic()
        try:
            chat = client.chat.create(
                model=self.model, messages=self.request_messages(messages), response_format=schema, **extra
            )
            response = chat.sample()
        except grpc.RpcError as exc:
            raise self._translate(exc, timeout_s) from None
        latency = time.monotonic() - start

        u = response.usage
        usage = Usage(
            input_tokens=int(u.prompt_tokens or 0),
            output_tokens=int((u.completion_tokens or 0) + (u.reasoning_tokens or 0)),
        )
        text = response.content or ""
        finish = str(response.finish_reason or "")
        if "MAX_LEN" in finish or "MAX_CONTEXT" in finish:
            raise self._fail(f"xai/{self.model}: answer cut at the token limit", usage, raw=text)
        parsed = self._parse(text, schema, usage)
        return self._result(parsed, text, latency, usage, id=response.id, finish_reason=finish)

    def _translate(self, exc: grpc.RpcError, timeout_s: float) -> Exception:
        who = f"xai/{self.model}"
        code = exc.code() if hasattr(exc, "code") else None
        details = scrub(exc.details() if hasattr(exc, "details") else exc, self._key)
        name = code.name if code is not None else "UNKNOWN"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return LLMTimeout(f"{who}: no answer within {timeout_s:g}s")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return RateLimited(f"{who}: rate limited ({name}): {details}", retry_after=_retry_after(exc))
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return LLMUnavailable(f"{who}: authentication refused ({name}); check XAI_API_KEY")
        if code == grpc.StatusCode.NOT_FOUND:
            return LLMUnavailable(f"{who}: not found ({name}): check the model name and XAI_API_HOST: {details}")
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.UNIMPLEMENTED):
            return LLMUnavailable(f"{who}: request rejected ({name}): {details}")
        if code == grpc.StatusCode.UNAVAILABLE:
            return TransientError(f"{who}: unavailable at {self.api_host} ({details}); check XAI_API_HOST / the network")
        return TransientError(f"{who}: server error ({name}): {details}")

    def close(self) -> None:
        self._clients.close()


def _retry_after(exc: Any) -> float | None:
    try:
        for k, v in exc.trailing_metadata() or ():
            if k.lower() == "retry-after":
                return max(0.0, float(v))
    except (TypeError, ValueError, AttributeError):
        return None
    return None
