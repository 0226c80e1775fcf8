"""OpenAI-compatible chat completions on the real `openai` client: OpenAI, DeepSeek and OpenRouter.

Structured output:
- OpenAI and OpenRouter: `response_format={"type": "json_schema", "json_schema": {name, schema, strict}}`
  with the schema made strict (every property required, no additional properties);
- DeepSeek (no json_schema support): `response_format={"type": "json_object"}` and the JSON schema
  appended to the system message in a ```json block.
The answer text is validated with pydantic; the SDK's own retries are off (the panel retries).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any, Literal

import openai

from agents.llm.base import LLMResult, LLMUnavailable, Message, T, Usage, scrub
from agents.llm.common import ProviderBase, api_error
from core.errors import TransientError

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "deepseek": "https://api.deepseek.com",
    "openrouter": "https://openrouter.ai/api/v1",
}
KEY_ENV = {"openai": "OPENAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY", "openrouter": "OPENROUTER_API_KEY"}
URL_ENV = {"openai": "OPENAI_BASE_URL", "deepseek": "DEEPSEEK_BASE_URL", "openrouter": "OPENROUTER_BASE_URL"}
STRUCTURED = {"openai": "json_schema", "deepseek": "json_object", "openrouter": "json_schema"}


def strict_json_schema(schema: type[Any]) -> dict[str, Any]:
    """The pydantic model's JSON schema in OpenAI's strict form (the SDK's own transformation)."""
    try:
        from openai.lib._pydantic import to_strict_json_schema

        strict = to_strict_json_schema(schema)
    except ImportError:  # pragma: no cover - older/newer SDK layout
        strict = _strict(schema.model_json_schema())
    return _drop_defaults(strict)


def _drop_defaults(node: Any) -> Any:
    """Strict mode has no use for `default` (every property is required): remove it everywhere."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "default":
                continue
            if k in ("properties", "$defs", "definitions") and isinstance(v, dict):
                out[k] = {name: _drop_defaults(sub) for name, sub in v.items()}
            else:
                out[k] = _drop_defaults(v)
        return out
    if isinstance(node, list):
        return [_drop_defaults(v) for v in node]
    return node


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" or "properties" in node:
            node.setdefault("additionalProperties", False)
            node["required"] = list(node.get("properties", {}))
        if node.get("default", 0) is None:
            node.pop("default")
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def schema_instruction(schema: type[Any]) -> str:
    return (
        "Answer with one JSON object only (no prose, no code fences), matching this JSON schema:\n"
        f"```json\n{json.dumps(schema.model_json_schema(), separators=(',', ':'))}\n```"
    )


def _schema_name(schema: type[Any]) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64] or "answer"


class OpenAIProvider(ProviderBase):
    """One model behind an OpenAI-compatible endpoint.

    provider: "openai" | "deepseek" | "openrouter" (decides the default base URL, the key's env name
    in messages, and the structured-output mode unless `structured` is given).
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        provider: Literal["openai", "deepseek", "openrouter"] = "openai",
        structured: Literal["json_schema", "json_object"] | None = None,
        price_in_per_mtok: float = 0.0,
        price_out_per_mtok: float = 0.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        default_headers: Mapping[str, str] | None = None,
        member_id: str | None = None,
    ):
        if not api_key:
            raise LLMUnavailable(f"{provider}: no API key; set {KEY_ENV.get(provider, 'the API key')}")
        self.provider = provider
        self.model = model
        self.member_id = member_id or provider
        self.base_url = base_url or DEFAULT_BASE_URLS.get(provider, DEFAULT_BASE_URLS["openai"])
        self.structured = structured or STRUCTURED.get(provider, "json_schema")
        self.price_in_per_mtok = price_in_per_mtok
        self.price_out_per_mtok = price_out_per_mtok
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._key = api_key
        headers = dict(default_headers or {})
        if provider == "openrouter":
            headers.setdefault("X-Title", "Quorum")
        self.client = openai.OpenAI(
            api_key=api_key,
            base_url=self.base_url,
            max_retries=0,
            default_headers=headers or None,
        )

    def __repr__(self) -> str:
        return f"OpenAIProvider(provider={self.provider!r}, model={self.model!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------------------------------
    def request_kwargs(self, messages: list[Message], schema: type[T]) -> dict[str, Any]:
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if self.structured == "json_schema":
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(schema),
                    "schema": strict_json_schema(schema),
                    "strict": True,
                },
            }
        else:
            response_format = {"type": "json_object"}
            instruction = schema_instruction(schema)
            for m in msgs:
                if m["role"] == "system":
                    m["content"] = f"{m['content']}\n\n{instruction}"
                    break
            else:
                msgs.insert(0, {"role": "system", "content": instruction})
        kwargs: dict[str, Any] = {"model": self.model, "messages": msgs, "response_format": response_format}
        if self.max_tokens is not None:
            # OpenAI's reasoning models accept only max_completion_tokens; compatible APIs use max_tokens
            kwargs["max_completion_tokens" if self.provider == "openai" else "max_tokens"] = self.max_tokens
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        return kwargs

    def ask(self, messages: list[Message], schema: type[T], *, timeout_s: float) -> LLMResult[T]:
        kwargs = self.request_kwargs(messages, schema)
        start = time.monotonic()
        try:
            completion = self.client.chat.completions.create(**kwargs, timeout=timeout_s)
        except openai.OpenAIError as exc:
            raise self._translate(exc, timeout_s) from None
        latency = time.monotonic() - start

        usage = Usage(
            input_tokens=int(getattr(completion.usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(completion.usage, "completion_tokens", 0) or 0),
        )
        if not completion.choices:
            raise self._fail(f"{self.provider}/{self.model}: answer without choices", usage)
        choice = completion.choices[0]
        message = choice.message
        text = message.content or ""
        refusal = getattr(message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            raise self._fail(
                f"{self.provider}/{self.model} refused: {scrub(refusal or 'content filter', limit=200)}",
                usage, reason="refused", raw=refusal or text,
            )
        if choice.finish_reason == "length":
            raise self._fail(f"{self.provider}/{self.model}: answer cut at the token limit", usage, raw=text)
        parsed = self._parse(text, schema, usage)
        return self._result(parsed, text, latency, usage, id=completion.id, finish_reason=choice.finish_reason)

    def _translate(self, exc: openai.OpenAIError, timeout_s: float) -> Exception:
        who = f"{self.provider}/{self.model}"
        if isinstance(exc, openai.APIResponseValidationError):
            return TransientError(f"{who}: unexpected response shape")
        return api_error(
            openai, exc, who=who, timeout_s=timeout_s, base_url=self.base_url, secret=self._key,
            key_env=KEY_ENV.get(self.provider, "the API key"), url_env=URL_ENV.get(self.provider, "the base URL"),
            error_message=_error_message,
        )

    def close(self) -> None:
        self.client.close()


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(exc, "message", "") or exc)
