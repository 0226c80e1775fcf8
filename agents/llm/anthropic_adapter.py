"""Claude on the real `anthropic` client; structured output through one forced tool.

The schema becomes a tool (`input_schema`), `tool_choice` forces it, and the tool_use block's input
is validated with pydantic. stop_reason "refusal", or a prose answer that declines instead of calling
the tool → LLMOutputError(reason="refused"); a text answer carrying the JSON (fenced or not) is
parsed; any other answer without a tool_use block → LLMOutputError(reason="invalid_output") with the
text on `.raw`. Every such error carries the answer's tokens and cost.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anthropic

from agents.llm.base import LLMResult, LLMUnavailable, Message, T, Usage, scrub
from agents.llm.common import ProviderBase, api_error, reads_as_refusal

DEFAULT_BASE_URL = "https://api.anthropic.com"


def _tool_name(schema: type[Any]) -> str:
    return ("submit_" + re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__).lower())[:64]


class AnthropicProvider(ProviderBase):
    """One Claude model. `max_tokens` bounds the answer (required by the Messages API)."""

    provider = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        price_in_per_mtok: float = 0.0,
        price_out_per_mtok: float = 0.0,
        max_tokens: int = 4096,
        temperature: float | None = None,
        member_id: str | None = None,
    ):
        if not api_key:
            raise LLMUnavailable("anthropic: no API key; set ANTHROPIC_API_KEY")
        self.model = model
        self.member_id = member_id or "anthropic"
        self.base_url = base_url or DEFAULT_BASE_URL
        self.price_in_per_mtok = price_in_per_mtok
        self.price_out_per_mtok = price_out_per_mtok
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._key = api_key
        self.client = anthropic.Anthropic(api_key=api_key, base_url=self.base_url, max_retries=0)

    def __repr__(self) -> str:
        return f"AnthropicProvider(model={self.model!r}, base_url={self.base_url!r})"

    def request_kwargs(self, messages: list[Message], schema: type[T]) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
        if not turns:
            turns = [{"role": "user", "content": "Answer now."}]
        name = _tool_name(schema)
        doc = (schema.__doc__ or "").strip()
        tool = {
            "name": name,
            "description": (doc + "\n\n" if doc else "")
            + f"Submit your answer as {schema.__name__}. Always answer by calling this tool.",
            "input_schema": schema.model_json_schema(),
        }
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": turns,
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": name},
        }
        if system:
            kwargs["system"] = system
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        return kwargs

    def ask(self, messages: list[Message], schema: type[T], *, timeout_s: float) -> LLMResult[T]:
        kwargs = self.request_kwargs(messages, schema)
        start = time.monotonic()
        try:
            msg = self.client.messages.create(**kwargs, timeout=timeout_s)
        except anthropic.AnthropicError as exc:
            raise self._translate(exc, timeout_s) from None
        latency = time.monotonic() - start

        usage = Usage(
            input_tokens=int(getattr(msg.usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(msg.usage, "output_tokens", 0) or 0),
        )
        texts = [getattr(b, "text", "") for b in msg.content if getattr(b, "type", "") == "text"]
        text = "\n".join(t for t in texts if t)
        who = f"anthropic/{self.model}"
        if msg.stop_reason == "refusal":
            raise self._fail(f"{who} refused: {scrub(text or 'no reason given', limit=200)}", usage,
                             reason="refused", raw=text)
        tool_uses = [b for b in msg.content if getattr(b, "type", "") == "tool_use"]
        if not tool_uses:
            if msg.stop_reason == "max_tokens":
                raise self._fail(f"{who}: cut at max_tokens in the answer", usage, raw=text)
            if reads_as_refusal(text):  # declined in prose instead of calling the tool
                raise self._fail(f"{who} refused: {scrub(text, limit=200)}", usage, reason="refused", raw=text)
            if "{" not in text:
                raise self._fail(f"{who}: no tool_use block in the answer", usage, raw=text)
            return self._result(self._parse(text, schema, usage), text, latency, usage, id=msg.id,
                                stop_reason=msg.stop_reason)  # the JSON came as text (maybe fenced)
        raw = json.dumps(tool_uses[0].input)
        parsed = self._parse(raw, schema, usage)
        return self._result(parsed, raw, latency, usage, id=msg.id, stop_reason=msg.stop_reason)

    def _translate(self, exc: anthropic.AnthropicError, timeout_s: float) -> Exception:
        return api_error(
            anthropic, exc, who=f"anthropic/{self.model}", timeout_s=timeout_s, base_url=self.base_url,
            secret=self._key, key_env="ANTHROPIC_API_KEY", url_env="ANTHROPIC_BASE_URL",
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
    return str(getattr(exc, "message", "") or exc)
