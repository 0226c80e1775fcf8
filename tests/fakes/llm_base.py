"""What every fake LLM server shares: behaviours (answer, malformed, delay, 429, 5xx, refusal), example
answers built from the request's JSON schema, the recorded requests and the base server."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Responder = Callable[[dict[str, Any]], str]


# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Behaviour:
    """One scripted reaction. kind: answer | refusal | status | delay."""

    kind: str
    text: str = ""
    status: int = 200
    retry_after: float | None = None
    delay_s: float = 0.0
    then: Behaviour | None = None
    usage: tuple[int, int] | None = None


def _text(obj: Any) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


def answer(obj: Any, usage: tuple[int, int] | None = None) -> Behaviour:
    """A normal answer whose content is `obj` (a dict/list is JSON-encoded, a str is sent as is)."""
    return Behaviour("answer", text=_text(obj), usage=usage)


def malformed(text: str = '{"action": "LONG", "confidence": 0.8, "rationale": "trend up') -> Behaviour:
    """An answer whose text is not valid JSON (truncated by default)."""
    return Behaviour("answer", text=text)


def schema_violation(obj: Any = None) -> Behaviour:
    """Valid JSON that breaks the schema (defaults to action 'BUY!!', confidence 1.7)."""
    if obj is None:
        obj = {"action": "BUY!!", "confidence": 1.7, "rationale": "to the moon"}
    return Behaviour("answer", text=_text(obj))


def delay(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Wait `seconds` before answering with `then` (default responder when None)."""
    return Behaviour("delay", delay_s=seconds, then=then)


def rate_limited(retry_after: float | None = 2, message: str = "Rate limit reached") -> Behaviour:
    """HTTP 429 with a retry-after header (gRPC: RESOURCE_EXHAUSTED with retry-after trailer)."""
    return Behaviour("status", status=429, retry_after=retry_after, text=message)


def server_error(status: int = 500, message: str = "internal server error") -> Behaviour:
    return Behaviour("status", status=status, text=message)


def http_error(status: int, message: str = "error") -> Behaviour:
    """Any HTTP error status (401, 403, 404, 503, 529...)."""
    return Behaviour("status", status=status, text=message)


def refusal(text: str = "I can't help with that request.") -> Behaviour:
    """A refusal in the provider's own shape (anthropic stop_reason 'refusal', openai message.refusal)."""
    return Behaviour("refusal", text=text)


# --------------------------------------------------------------------------- schema examples


def example_from_schema(schema: Mapping[str, Any] | None, root: Mapping[str, Any] | None = None) -> Any:
    """A small instance that satisfies `schema` (objects, arrays, enums, bounds, $ref, anyOf)."""
    if not schema:
        return {}
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return example_from_schema(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_from_schema(options[0], root)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: example_from_schema(sub, root) for name, sub in props.items()}
    if typ == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        return [example_from_schema(schema.get("items", {}), root) for _ in range(n)]
    if typ in ("number", "integer"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        if lo is not None and hi is not None:
            value = (lo + hi) / 2
        elif lo is not None:
            value = lo + 1
        elif hi is not None:
            value = hi - 1
        else:
            value = 0.5 if typ == "number" else 1
        return int(value) if typ == "integer" else float(value)
    if typ == "boolean":
        return False
    if typ == "null":
        return None
    if typ == "string":
        n = int(schema.get("minLength", 0))
        return "fake" + "x" * max(0, n - 4)
    return {}


_JSON_BLOCK = re.compile(r"```json\s*(\{.*?\})\s*```", re.S)


def schema_in_text(text: str) -> dict[str, Any] | None:
    """The first ```json {...}``` block of `text` parsed, or None."""
    m = _JSON_BLOCK.search(text or "")
    if not m:
        return None
    try:
        value = json.loads(m.group(1))
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- base server


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON (dict) when the body was JSON, else None
    raw: bytes = b""
    at: float = field(default_factory=time.monotonic)


class FakeLLMServer:
    """Shared machinery: script queue, request log, default responder, fixed delay, lifecycle."""

    protocol = "base"

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        delay_s: float = 0.0,
        usage: tuple[int, int] = (120, 45),
        model: str | None = None,
    ):
        self.responder = responder
        self.delay_s = delay_s
        self.usage = usage
        self.model = model
        self.requests: list[RecordedRequest] = []
        self.spans: list[tuple[float, float]] = []  # (start, end) of each answer's wait: who was in flight when
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.port: int | None = None

    # -- script -------------------------------------------------------------------------
    def enqueue(self, *behaviours: Behaviour) -> FakeLLMServer:
        with self._lock:
            self._script.extend(behaviours)
        return self

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.spans.clear()

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError(f"{type(self).__name__} received no request")
        return self.requests[-1]

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _next(self) -> Behaviour | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _resolve(self, body: dict[str, Any]) -> Behaviour:
        """Apply the fixed delay and any scripted delays; return the behaviour to render."""
        t0 = time.monotonic()
        self._sleep(self.delay_s)
        with self._lock:
            self.spans.append((t0, time.monotonic()))
        b = self._next()
        while b is not None and b.kind == "delay":
            self._sleep(b.delay_s)
            b = b.then
        if b is None:
            b = Behaviour("answer", text=self.default_answer(body))
        return b

    def _usage(self, b: Behaviour) -> tuple[int, int]:
        return b.usage or self.usage

    def default_answer(self, body: dict[str, Any]) -> str:
        if self.responder is not None:
            return self.responder(body)
        return json.dumps(example_from_schema(self.request_schema(body)))

    def request_schema(self, body: dict[str, Any]) -> dict[str, Any] | None:  # pragma: no cover
        return None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()




def max_in_flight(*servers: FakeLLMServer) -> int:
    """The most requests any of these servers were holding at the same moment (their answer delays
    overlapping): 6 for six calls sent concurrently, 1 for six sent one after another. Evidence of
    concurrency that does not depend on how fast the machine is."""
    edges = sorted((t, d) for s in servers for a, b in s.spans for t, d in ((a, 1), (b, -1)))
    best = cur = 0
    for _, d in edges:  # at equal times the end (-1) sorts first: touching spans do not overlap
        cur += d
        best = max(best, cur)
    return best
