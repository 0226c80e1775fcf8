"""A local model on the real `ollama` client: `chat(model, messages, format=<JSON schema>)`.

The ollama client takes its timeout at construction, so one client is kept per distinct timeout.
Its ResponseError carries no headers, so a response hook keeps the last retry-after per thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import ollama

from agents.llm.base import (
    LLMResult,
    LLMTimeout,
    Message,
    T,
    Usage,
    parse_retry_after,
    scrub,
)
from agents.llm.common import ClientsByTimeout, ProviderBase, http_status_error
from core.errors import TransientError

DEFAULT_HOST = "http://127.0.0.1:11434"


class OllamaProvider(ProviderBase):
    """One Ollama model at `host` (e.g. http://127.0.0.1:11434)."""

    provider = "ollama"

    def __init__(
        self,
        model: str,
        *,
        host: str | None = None,
        price_in_per_mtok: float = 0.0,
        price_out_per_mtok: float = 0.0,
        temperature: float | None = None,
        keep_alive: str | float | None = None,
        think: bool | None = None,
        member_id: str | None = None,
    ):
        self.model = model
        self.host = host or DEFAULT_HOST
        self.member_id = member_id or "ollama"
        self.price_in_per_mtok = price_in_per_mtok
        self.price_out_per_mtok = price_out_per_mtok
        self.temperature = temperature
        self.keep_alive = keep_alive
        self.think = think
        self._clients = ClientsByTimeout(
            lambda timeout_s: ollama.Client(host=self.host, timeout=timeout_s,
                                            event_hooks={"response": [self._on_response]}))
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"OllamaProvider(model={self.model!r}, host={self.host!r})"

    def _on_response(self, response: httpx.Response) -> None:
        self._local.retry_after = parse_retry_after(response.headers) if response.status_code == 429 else None

    def client(self, timeout_s: float) -> ollama.Client:
        return self._clients.get(timeout_s)

    def request_kwargs(self, messages: list[Message], schema: type[T]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "format": schema.model_json_schema(),
            "stream": False,
        }
        if self.temperature is not None:
            kwargs["options"] = {"temperature": self.temperature}
        if self.keep_alive is not None:
            kwargs["keep_alive"] = self.keep_alive
        if self.think is not None:
            kwargs["think"] = self.think
        return kwargs

    def ask(self, messages: list[Message], schema: type[T], *, timeout_s: float) -> LLMResult[T]:
        kwargs = self.request_kwargs(messages, schema)
        client = self.client(timeout_s)
        self._local.retry_after = None
        who = f"ollama/{self.model}"
        start = time.monotonic()
        try:
            resp = client.chat(**kwargs)
        except ollama.ResponseError as exc:
            raise self._translate_status(exc) from None
        except httpx.TimeoutException:
            raise LLMTimeout(f"{who}: no answer within {timeout_s:g}s") from None
        except (ConnectionError, httpx.TransportError) as exc:
            raise TransientError(
                f"{who}: cannot reach {self.host} ({type(exc).__name__}); is `ollama serve` running? check OLLAMA_HOST"
            ) from None
        latency = time.monotonic() - start

        usage = Usage(input_tokens=int(resp.prompt_eval_count or 0), output_tokens=int(resp.eval_count or 0))
        text = (resp.message.content if resp.message else "") or ""
        if resp.done_reason == "length":
            raise self._fail(f"{who}: answer cut at the token limit", usage, raw=text)
        parsed = self._parse(text, schema, usage)
        return self._result(parsed, text, latency, usage, done_reason=resp.done_reason)

    def _translate_status(self, exc: ollama.ResponseError) -> Exception:
        who = f"ollama/{self.model}"
        return http_status_error(
            who, exc.status_code, scrub(exc.error), key_env="OLLAMA_API_KEY",
            not_found=f"{who}: model not found at {self.host}; run `ollama pull {self.model}`",
            retry_after=getattr(self._local, "retry_after", None) if exc.status_code == 429 else None,
        )

    def close(self) -> None:
        self._clients.close()
