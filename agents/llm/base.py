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

from core.errors import LLMOutputError, QuorumError

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


def validate_output[M: BaseModel](text: str | None, schema: type[M]) -> M:
    """Parse `text` as JSON into `schema`; on failure raise LLMOutputError(reason="invalid_output")
    with the raw text on its `raw` attribute (for one repair attempt by the caller)."""
    from pydantic import ValidationError

    raw = text or ""
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        kinds = {e.get("type", "") for e in exc.errors()}
        what = "malformed JSON" if kinds & {"json_invalid", "json_type"} else "schema violation"
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "answer"
        raise LLMOutputError(f"{what} for {schema.__name__} at {where}: {first.get('msg', 'invalid')}",
                             reason="invalid_output", raw=raw) from None


def output_error(message: str, reason: str = "invalid_output", raw: str = "") -> LLMOutputError:
    """An LLMOutputError carrying the model's raw text on `.raw`."""
    return LLMOutputError(message, reason=reason, raw=raw)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or an HTTP date), else None."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
    except Exception:  # noqa: BLE001 - headers of an unexpected shape
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(str(value))
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def scrub(text: object, *secrets: str | None, limit: int = 300) -> str:
    """`text` as one short line with every secret replaced by '***'."""
    out = " ".join(str(text).split())
    for s in secrets:
        if s and len(s) >= 4:
            out = out.replace(s, "***")
    return out if len(out) <= limit else out[: limit - 1] + "…"
