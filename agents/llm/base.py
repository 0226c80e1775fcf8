"""The one small provider protocol every LLM adapter implements.

`ask(messages, schema)` asks for a structured answer validated against a pydantic model and returns
the parsed object together with latency, token counts and cost. Adapters raise:
- core.errors.TransientError / RateLimited for retryable transport failures (5xx, 429, connection),
- TimeoutError-like `LLMTimeout` when the member's time limit is exceeded,
- core.errors.LLMOutputError(reason=...) when the answer is unusable (malformed JSON, schema
  violation: reason "invalid_output"; a refusal: reason "refused"); `raw` carries the text so the
  caller can attempt one repair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from core.errors import QuorumError

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class LLMResult[T: BaseModel]:
    parsed: T
    raw: str
    latency_s: float
    usage: Usage
    cost_usd: float
    provider: str
    model: str
    cached: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


class LLMTimeout(QuorumError):
    pass


class LLMUnavailable(QuorumError):
    """SDK missing, key absent or endpoint down: the member is skipped."""


class LLMProvider(Protocol):
    provider: str
    model: str

    def ask(self, messages: list[Message], schema: type[T], *, timeout_s: float) -> LLMResult[T]: ...


def cost_usd(usage: Usage, price_in_per_mtok: float, price_out_per_mtok: float) -> float:
    return usage.input_tokens / 1e6 * price_in_per_mtok + usage.output_tokens / 1e6 * price_out_per_mtok
